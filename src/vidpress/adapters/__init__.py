"""Model adapters, one file per family: what the press engine needs to know about a model."""

from vidpress.adapters.base import Prompt, VideoAdapter, VideoInput
from vidpress.adapters.registry import ADAPTERS, get_adapter

__all__ = ["ADAPTERS", "Prompt", "VideoAdapter", "VideoInput", "get_adapter"]
