"""Model families, one file each: their adapter (what the press engine needs to know about a
model) and their ``Family`` (checkpoints, preprocessing, FLOPs spec, random architectures)."""

from vidpress.adapters.base import Prompt, VideoAdapter, VideoInput
from vidpress.adapters.family import Family
from vidpress.adapters.registry import ADAPTERS, FAMILIES, get_adapter, get_family

__all__ = [
    "ADAPTERS",
    "FAMILIES",
    "Family",
    "Prompt",
    "VideoAdapter",
    "VideoInput",
    "get_adapter",
    "get_family",
]
