"""Simple references every results table carries (docs/baselines.md), at exactly the same budget.

- ``uniform``: spatial average pooling of each frame (what a user gets by lowering resolution).
- ``framedrop``: fewer frames, whole frames kept at a uniform spacing.
- ``random``: a uniform random choice of tokens with a fixed seed.

Exact budgets: the budget is spread over frames by ``spread_evenly`` (floor(B/T) each, one
more in the first B mod T frames) for pooling; frame dropping fills whole frames and keeps the
first tokens (row-major) of the last one.
"""

from __future__ import annotations

import math

import torch

from vidpress.functional._checks import check_int
from vidpress.functional.budgets import round_half_up, spread_evenly
from vidpress.functional.merging import group_mean
from vidpress.functional.result import CompressedTokens, finalize, resolve_grid


def _split_points(length: int, parts: torch.Tensor) -> torch.Tensor:
    """Part of each of ``length`` cells split into ``parts`` near-equal runs (broadcast).

    Run i covers [floor(i length / parts), floor((i + 1) length / parts)); parts <= length.
    """
    cell = torch.arange(length)
    return ((cell + 1) * parts + length - 1) // length - 1


def pool_cells(count: int, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Partition a rows x cols grid into ``count`` rectangular cells of near-equal area.

    Returns (cell of each grid position [N] in 0..count-1, row-major; centre position of each
    cell [count]). The grid is cut into r row bands, r = round(sqrt(count rows / cols)) kept in
    [ceil(count / cols), min(rows, count)]; band i is cut into count // r columns, one more in the
    first count % r bands. When r divides count this is r x (count / r) average pooling with
    floor boundaries (a partition: torch's adaptive pooling lets cells overlap instead).
    """
    rows, cols = grid
    bands = round_half_up(math.sqrt(count * rows / cols))
    bands = min(max(bands, -(-count // cols), 1), rows, count)
    per_band = count // bands + (torch.arange(bands) < count % bands).long()  # [r]
    before = torch.cumsum(per_band, 0) - per_band
    band = _split_points(rows, torch.tensor(bands))  # [rows]
    column = _split_points(cols, per_band[band][:, None])  # [rows, cols]
    cell = (before[band][:, None] + column).flatten()

    band_start = (torch.arange(bands + 1) * rows) // bands
    cell_band = torch.repeat_interleave(torch.arange(bands), per_band)  # [count]
    index = torch.arange(count) - before[cell_band]
    width = per_band[cell_band]
    col_start, col_end = (index * cols) // width, ((index + 1) * cols) // width
    centre_row = (band_start[cell_band] + band_start[cell_band + 1] - 1) // 2
    centre = centre_row * cols + (col_start + col_end - 1) // 2
    return cell, centre


def uniform_compress(
    tokens: torch.Tensor, scores: torch.Tensor, budget: int, *, grid: tuple[int, int]
) -> CompressedTokens:
    """Average-pool each frame of ``tokens: [T, N, D]`` to its share of ``budget`` (``scores``
    unused). A pooled token takes its cell's centre position (the upper-left of the middle
    four when even) and stands for the cell."""
    frames, n, dim = tokens.shape
    grid = resolve_grid(n, grid)
    device = tokens.device
    per_frame = spread_evenly(budget, frames, n)
    first = torch.cumsum(per_frame, 0) - per_frame  # first output of each frame
    cell = torch.empty(frames, n, dtype=torch.long)
    sources = torch.empty(budget, dtype=torch.long)
    for count in torch.unique(per_frame[per_frame > 0]).tolist():  # at most two counts
        in_frames = torch.nonzero(per_frame == count).squeeze(1)
        frame_cell, centre = pool_cells(count, grid)
        cell[in_frames] = first[in_frames, None] + frame_cell
        sources[(first[in_frames, None] + torch.arange(count)).flatten()] = (
            in_frames[:, None] * n + centre
        ).flatten()
    cell[per_frame == 0] = -1
    assignment = cell.flatten().to(device)
    pooled, _ = group_mean(tokens.reshape(-1, dim), assignment, budget)
    return finalize(pooled, sources.to(device), assignment, grid)


def framedrop_compress(
    tokens: torch.Tensor, scores: torch.Tensor, budget: int, *, grid: tuple[int, int]
) -> CompressedTokens:
    """Keep ``budget`` tokens as whole frames at a uniform spacing (``scores`` unused).

    f = ceil(budget / N) frames, frame i of them = floor((i + 1/2) T / f) (the middle of the
    i-th of f equal spans); all but the last are whole, the last keeps its first budget - (f - 1) N
    tokens in row-major order.
    """
    frames, n, _ = tokens.shape
    device = tokens.device
    chosen = -(-budget // n)
    frame = ((2 * torch.arange(chosen, device=device) + 1) * frames) // (2 * chosen)
    keep = (frame[:, None] * n + torch.arange(n, device=device)).flatten()[:budget]
    return _keep_only(tokens, keep, grid)


def random_compress(
    tokens: torch.Tensor, scores: torch.Tensor, budget: int, *, grid: tuple[int, int], seed: int = 0
) -> CompressedTokens:
    """Keep ``budget`` tokens chosen uniformly at random without replacement (``scores`` unused).

    The choice comes from a CPU ``torch.Generator`` seeded with ``seed``, so it is the same on
    every device.
    """
    check_int("seed", seed, minimum=0)
    m = tokens.shape[0] * tokens.shape[1]
    generator = torch.Generator().manual_seed(seed)
    keep = torch.randperm(m, generator=generator)[:budget].to(tokens.device)
    return _keep_only(tokens, keep, grid)


def _keep_only(tokens: torch.Tensor, keep: torch.Tensor, grid: tuple[int, int]) -> CompressedTokens:
    """The tokens at flat indices ``keep``, unchanged; every other token is dropped."""
    m = tokens.shape[0] * tokens.shape[1]
    grid = resolve_grid(tokens.shape[1], grid)
    assignment = torch.full((m,), -1, dtype=torch.long, device=tokens.device)
    assignment[keep] = torch.arange(keep.numel(), device=tokens.device)
    return finalize(tokens.reshape(m, -1)[keep], keep, assignment, grid)
