"""Row bookkeeping of compressed sequences: which original rows a shortened batch holds."""

from __future__ import annotations

import torch


def left_aligned(keep: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """[B, L] bool -> [B, W] long: the kept rows of each sample, right-aligned (left padding -1).

    width: W, when the caller knows it (at least the most rows a sample keeps); by default the
    most kept rows, read from the device (a host sync).
    """
    counts = keep.sum(dim=1, keepdim=True)  # [B, 1]
    if width is None:
        width = int(counts.max())
    kept_first = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)  # [B, L]
    place = torch.arange(width, device=keep.device) - (width - counts)  # [B, W] in kept order
    index = kept_first.gather(1, place.clamp(min=0, max=keep.shape[1] - 1))
    return index.masked_fill(place < 0, -1)


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
