"""The result of every stage-1 method (ENGINEERING.md's public contract)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch

from vidpress.functional._checks import is_integer


@dataclass(frozen=True)
class CompressedTokens:
    """Compressed video tokens, in original (frame, row, col) order.

    tokens:     [B, D]   the tokens that enter the LLM
    positions:  [B, 3]   long, (frame, row, col) of each output token (a cluster: its centre's)
    sizes:      [B]      long, how many input tokens each output token stands for
    assignment: [T*N]    long, the output token each input token went to, -1 if dropped
    """

    tokens: torch.Tensor
    positions: torch.Tensor
    sizes: torch.Tensor
    assignment: torch.Tensor

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def kept_per_frame(self, frames: int) -> torch.Tensor:
        """[T] long: how many output tokens sit in each frame."""
        return torch.bincount(self.positions[:, 0], minlength=frames)

    def clone(self) -> CompressedTokens:
        """A copy that owns its tensors (a CUDA graph's outputs are overwritten by its next
        replay)."""
        return CompressedTokens(*(getattr(self, f.name).clone() for f in fields(self)))


@dataclass(frozen=True)
class Planned:
    """Device work of a stage-1 method that follows a host decision: VisionZip's per-frame plan,
    FastVID's frame plan, the unified gate (DPC-KNN's room for its local peaks is guessed).

    ``apply(*inputs)`` runs without host reads; its shapes and control flow follow from ``key``
    and the inputs' shapes and dtypes, never from the inputs' values. One capture of ``apply``
    per key can therefore be replayed as a CUDA graph on the inputs of another call with the
    same key (``engine.graphs.PlannedReplays``, passed as the methods' ``runner``).

    key:    hashable; the method and every Python value ``apply`` was built with
    inputs: the tensors ``apply`` reads (tokens, scores, the plan sent to the device)
    apply:  returns a ``CompressedTokens``, a tensor or a tuple of tensors
    """

    key: tuple
    inputs: tuple[torch.Tensor, ...]
    apply: Callable

    def run(self, runner: Callable[[Planned], object] | None = None):
        """``apply(*inputs)``: computed eagerly, or by ``runner`` (CUDA graphs) when given."""
        return self.apply(*self.inputs) if runner is None else runner(self)


def finalize(
    tokens_out: torch.Tensor,
    source_index: torch.Tensor,
    assignment: torch.Tensor,
    grid: tuple[int, int],
) -> CompressedTokens:
    """Sort outputs into original order and derive positions and sizes.

    tokens_out:   [B, D]  output tokens, any order
    source_index: [B]     flat input index (t * N + n) whose position each output takes (distinct)
    assignment:   [T*N]   index into ``tokens_out`` for each input token, -1 if dropped
    grid:         (rows, cols) of a frame, rows * cols = N
    """
    rows, cols = grid
    order = torch.argsort(source_index, stable=True)
    source_sorted = source_index[order]
    new_id = torch.empty_like(order)
    new_id[order] = torch.arange(order.numel(), device=order.device)
    kept = assignment >= 0
    assignment = torch.where(kept, new_id[assignment.clamp(min=0)], assignment)
    per_frame = rows * cols
    within = source_sorted % per_frame
    positions = torch.stack([source_sorted // per_frame, within // cols, within % cols], dim=1)
    # index_add_ rather than bincount: bincount reads its maximum on the host (a device sync)
    sizes = torch.zeros(order.numel() + 1, dtype=torch.long, device=assignment.device)
    sizes = sizes.index_add_(
        0, assignment.masked_fill(~kept, order.numel()), torch.ones_like(assignment)
    )
    sizes = sizes[:-1]
    return CompressedTokens(tokens_out[order], positions, sizes, assignment)


def resolve_grid(tokens_per_frame: int, grid: tuple[int, int] | None) -> tuple[int, int]:
    """(rows, cols) of a frame: ``grid`` if given, else the square root of N (must be exact).

    A given grid must be two positive integers (not bools, not floats) with rows * cols = N.
    """
    if grid is None:
        side = math.isqrt(tokens_per_frame)
        if side * side != tokens_per_frame:
            raise ValueError(
                f"grid must be given as (rows, cols) when N={tokens_per_frame} is not a square"
            )
        return side, side
    pair = isinstance(grid, (tuple, list)) and len(grid) == 2
    positive = pair and all(is_integer(v) and v >= 1 for v in grid)
    if not positive or grid[0] * grid[1] != tokens_per_frame:
        raise ValueError(
            "grid must be two positive integers (rows, cols) with rows * cols = "
            f"N = {tokens_per_frame}, got {grid!r}"
        )
    return int(grid[0]), int(grid[1])
