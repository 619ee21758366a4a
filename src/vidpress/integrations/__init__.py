"""Integrations with other tools (lmms-eval)."""
