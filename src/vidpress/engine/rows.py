"""Row bookkeeping of compressed sequences: which original rows a shortened batch holds."""

from __future__ import annotations

import torch


def left_aligned(keep: torch.Tensor) -> torch.Tensor:
    """[B, L] bool -> [B, W] long: the kept rows of each sample, right-aligned (left padding -1)."""
    counts = keep.sum(dim=1)
    width = int(counts.max())
    index = torch.full((keep.shape[0], width), -1, dtype=torch.long, device=keep.device)
    sample, row = keep.nonzero(as_tuple=True)
    column = (width - counts)[sample] + (keep.long().cumsum(dim=1) - 1)[sample, row]
    index[sample, column] = row
    return index


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x: [B, L, ...], index: [B, W] (-1 = padding) -> [B, W, ...] with zeros at padding."""
    batch = torch.arange(x.shape[0], device=x.device)[:, None]
    out = x[batch, index.clamp(min=0)]
    pad = (index < 0).view(*index.shape, *([1] * (x.dim() - 2)))
    return out.masked_fill(pad, 0)


def mask_positions(mask: torch.Tensor) -> torch.Tensor:
    """generate()'s 1-D positions of a [B, L] 0/1 mask: running count of real tokens, 0 at pads."""
    return (mask.cumsum(dim=-1) - 1).masked_fill(mask == 0, 0)


def has_text_row(position_ids: torch.Tensor | None) -> bool:
    """Whether M-RoPE ``position_ids`` are [4, B, L]: a row of text positions before (t, h, w),
    as Qwen2.5-VL's generate() passes them."""
    return position_ids is not None and position_ids.dim() == 3 and position_ids.shape[0] == 4
