"""Per-prompt and per-call state of an attached press (nothing is stored on the model)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers.cache_utils import DynamicCache

from vidpress import functional as F
from vidpress.engine.stats import CallStats


@dataclass
class Plan:
    """A prefill's compression decisions, for ``Run.replay``: stage-1 results and importances."""

    outer: list[F.CompressedTokens]
    importance: list[torch.Tensor | None] | None = None


@dataclass
class Session:
    """A compressed prompt, as its decoding steps need it."""

    prompt_len: int  # L, the uncompressed prompt length generate() counts with
    orig_mask: torch.Tensor  # [B, L]
    outer_mask: torch.Tensor  # [B, L'] for layers < K
    rope_delta: torch.Tensor | None  # [B] M-RoPE: position minus original index after the prompt
    inner_mask: torch.Tensor | None = None  # [B, L''] for layers >= K


@dataclass
class Call:
    """One forward call in flight."""

    session: Session
    cache: DynamicCache | None
    prefill: bool
    stats: CallStats | None = None
    plan: Plan | None = None
    tail: torch.Tensor | None = None  # decode: [B, steps + q] mask columns after the prompt
    visual: torch.Tensor | None = None  # prefill: [B, L'] bool, stage-1 visual tokens
    sizes: torch.Tensor | None = None  # prefill: [B, L'] tokens each row stands for
    span_end: torch.Tensor | None = None  # prefill: [B] last row of the video blocks
    sample_frames: list[torch.Tensor] | None = None  # per sample: (video, frame) of visual rows
    captured: dict = field(default_factory=dict)  # layer K-1's attention input and rotary
    layer_masks: dict = field(default_factory=dict)  # layer type -> mask for layers >= K
    layer_extra: dict = field(default_factory=dict)  # other kwarg replacements for layers >= K
