"""``run.stats``: what each compressed call (a prefill) did."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vidpress import functional as F
from vidpress.adapters.base import Prompt
from vidpress.engine.rows import gather_rows


@dataclass
class CallStats:
    """What one compressed call (a prefill) did. Lists run over samples unless said otherwise.

    tokens_in:            visual tokens entering compression
    kept_outer:           visual tokens entering the LLM (stage 1)
    kept_inner:           visual tokens from layer K on (None without an inner stage)
    kept_per_frame:       per video, [T] kept tokens per frame after stage 1
    kept_per_frame_inner: per video, [T] kept tokens per frame from layer K on (or None)
    outer_seconds:        scoring + stage-1 compression time (the vision tower itself excluded)
    score_seconds:        the vision-score part of ``outer_seconds``
    inner_seconds:        in-LLM scoring + merging time
    kept_positions:       per video, [B_v, 3] (frame, row, col) of each kept token (a cluster:
                          its centre), in sequence order
    kept_sizes:           per video, [B_v] input tokens each kept token stands for
    inner_keep:           per sample, indices into its stage-1 visual tokens kept at layer K
    rows:                 [B, L'] original row of each row of the compressed prompt (-1: padding)
    rows_inner:           [B, L''] the same for layers >= K (or None)
    positions:            position ids given to the LLM for the compressed prompt
    """

    tokens_in: list[int]
    kept_outer: list[int]
    kept_per_frame: list[list[int]]
    outer_seconds: float
    kept_positions: list[torch.Tensor] = field(repr=False)
    kept_sizes: list[torch.Tensor] = field(repr=False)
    rows: torch.Tensor = field(repr=False)
    positions: torch.Tensor = field(repr=False)
    kept_inner: list[int] | None = None
    kept_per_frame_inner: list[list[int]] | None = None
    inner_seconds: float = 0.0
    score_seconds: float = 0.0
    inner_keep: list[torch.Tensor] | None = field(default=None, repr=False)
    rows_inner: torch.Tensor | None = field(default=None, repr=False)


def stage1_stats(
    prompt: Prompt,
    results: list[F.CompressedTokens],
    batch: int,
    seconds: tuple[float, float],
    index: torch.Tensor,
    positions: torch.Tensor,
) -> CallStats:
    """The stats of a prefill's stage 1. seconds: (scoring, compression); index: [B, L'] the
    original row of each compressed row; positions: the compressed prompt's position ids."""
    tokens_in, kept = [0] * batch, [0] * batch
    for video, res in zip(prompt.videos, results, strict=True):
        tokens_in[video.sample] += video.tokens.shape[0] * video.tokens.shape[1]
        kept[video.sample] += len(res)
    per_frame = [
        res.kept_per_frame(v.tokens.shape[0]).tolist()
        for v, res in zip(prompt.videos, results, strict=True)
    ]
    score_seconds, compress_seconds = seconds
    return CallStats(
        tokens_in,
        kept,
        per_frame,
        score_seconds + compress_seconds,
        [res.positions for res in results],
        [res.sizes for res in results],
        index,
        positions,
        score_seconds=score_seconds,
    )


def record_inner(
    stats: CallStats,
    keep_index: list[torch.Tensor],
    index: torch.Tensor,
    sample_frames: list[torch.Tensor],
    seconds: float,
) -> None:
    """Add the inner stage to ``stats``. keep_index: per sample, its stage-1 visual tokens kept;
    index: [B, L''] row of the compressed prompt of each row from layer K on (-1: padding);
    sample_frames: per sample, [V_b, 2] (video number, frame) of its stage-1 visual tokens."""
    stats.inner_seconds = seconds
    stats.inner_keep = keep_index
    stats.kept_inner = [int(k.numel()) for k in keep_index]
    stats.rows_inner = gather_rows(stats.rows, index).masked_fill(index < 0, -1)
    per_frame = [torch.zeros(len(f), dtype=torch.long) for f in stats.kept_per_frame]
    for frames, kept in zip(sample_frames, keep_index, strict=True):
        for video, frame in frames[kept.to(frames.device)].tolist():
            per_frame[video][frame] += 1
    stats.kept_per_frame_inner = [f.tolist() for f in per_frame]
