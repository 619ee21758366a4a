"""Model adapters, one file per family, and the machinery that attaches a press to a model."""

from vidpress.adapters.base import Prompt, VideoAdapter, VideoInput
from vidpress.adapters.registry import ADAPTERS, get_adapter
from vidpress.adapters.run import CallStats, Run

__all__ = ["ADAPTERS", "CallStats", "Prompt", "Run", "VideoAdapter", "VideoInput", "get_adapter"]
