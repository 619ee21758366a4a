"""VisionZip, per frame, before the LLM (Yang et al., "VisionZip: Longer is Better but Not
Necessary in Vision Language Models", CVPR'25; code dvlab-research/VisionZip, and its video port
for LLaVA-OneVision / LLaVA-Video in cokeshao/HoliTom ``visionzip/llava_arch.py``).

Each frame keeps n tokens, split 54:10 (of 64) as the video port does: dominant =
floor(n x 54/64), contextual = n - dominant.
1. Dominant tokens: the top ``dominant`` of the frame by the vision encoder's attention score.
2. Contextual tokens: of the remaining tokens (in original order), the targets sit at a uniform
   stride, max(1, remaining // contextual), starting at the first. Every other remaining token
   joins the target whose key is most cosine-similar (keys of the score layer, averaged over
   heads). A contextual token is the target plus the mean of the tokens that joined it: the
   official code adds the two, it does not average them.
No temporal processing.

Defaults: ``dominant_ratio`` = 54/64; ``keys`` = the tokens themselves when not given.

Where this implementation knowingly differs from the official code:
- Exact budget: the official code keeps the same count in every frame; here the budget is
  spread over frames by ``spread_counts`` (floor(B/T) each, one more in the first B mod T
  frames), then each frame's n is split 54:10 as above.
- With a budget below T, the frames given n = 0 keep nothing (any n >= 1 has at least one
  contextual slot, as the floor leaves n - floor(54 n / 64) >= 1).
- Ties in the top-k go to the lower index.
- Positions: a contextual token takes its target's position.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from vidpress.functional._checks import check_ratio, check_tensor
from vidpress.functional.budgets import send_plan, spread_counts
from vidpress.functional.merging import group_mean
from vidpress.functional.result import CompressedTokens, Planned, finalize, resolve_grid
from vidpress.functional.similarity import descending_rank, nearest_per_batch, true_indices


def contextual_targets(rest: torch.Tensor, contextual: torch.Tensor) -> torch.Tensor:
    """``[T, N]`` long: slot of each contextual target in its frame, -1 for other tokens.

    rest: [T, N] bool, the frame's non-dominant tokens; contextual: [T] target count per frame.
    Targets are every ``max(1, remaining // contextual)``-th remaining token, from the first.
    """
    order = torch.cumsum(rest.long(), dim=1) - 1  # index among the remaining tokens
    step = (rest.sum(dim=1) // contextual.clamp(min=1)).clamp(min=1)[:, None]
    slot = order // step
    is_target = rest & (order % step == 0) & (slot < contextual[:, None])
    return torch.where(is_target, slot, -1)


def nearest_target(
    keys: torch.Tensor, slot: torch.Tensor, contextual: torch.Tensor, most: int, total: int
) -> torch.Tensor:
    """``[T, N]`` long: the slot of each token's most cosine-similar target key in its frame.

    keys: [T, N, Dk]; slot: [T, N] from ``contextual_targets``; contextual: [T] targets per
    frame, at most ``most`` in a frame and ``total`` in all.
    """
    frames, _, width = keys.shape
    where = torch.nonzero_static(slot >= 0, size=total)  # [targets, 2] (frame, token)
    index = torch.zeros(frames, most, dtype=torch.long, device=keys.device)
    index[where[:, 0], slot[where[:, 0], where[:, 1]]] = where[:, 1]
    valid = torch.arange(index.shape[1], device=keys.device) < contextual[:, None]
    target_keys = torch.gather(keys, 1, index[:, :, None].expand(-1, -1, width))
    return nearest_per_batch(keys, target_keys, valid)


def visionzip_compress(
    tokens: torch.Tensor,
    scores: torch.Tensor,
    budget: int,
    *,
    grid: tuple[int, int],
    keys: torch.Tensor | None = None,
    dominant_ratio: float = 54 / 64,
    runner: Callable[[Planned], object] | None = None,
) -> CompressedTokens:
    """VisionZip on ``tokens: [T, N, D]`` with attention ``scores: [T, N]``, per frame.

    keys: [T, N, Dk] the features compared to pick each remaining token's target (default:
    ``tokens``). Returns exactly ``budget`` tokens. runner: runs the device work after the
    host's plan, whose key is (T, N, budget) in effect (``Planned.run``; CUDA graphs with
    ``engine.graphs.PlannedReplays``).
    """
    frames, n, _ = tokens.shape
    grid = resolve_grid(n, grid)
    dominant_ratio = check_ratio("dominant_ratio", dominant_ratio, zero_ok=True)
    if keys is not None:
        check_tensor("keys", keys, 3, "[T, N, Dk]", finite=keys is not tokens)
        if tuple(keys.shape[:2]) != (frames, n):
            raise ValueError(
                f"keys must have shape [T, N, Dk] with (T, N) = {(frames, n)}, "
                f"got {tuple(keys.shape)}"
            )
    per_frame = spread_counts(budget, [n] * frames)
    dominant_of = [math.floor(count * dominant_ratio) for count in per_frame]  # int(n * 54/64)
    contextual_of = [count - d for count, d in zip(per_frame, dominant_of, strict=True)]
    counts = VisionZipCounts(
        dominant=sum(dominant_of),
        targets=sum(contextual_of),
        merging=sum(n - c for c, ctx in zip(per_frame, contextual_of, strict=True) if ctx > 0),
        most_targets=max(contextual_of),
    )
    plan = send_plan([dominant_of, contextual_of], tokens.device)  # [2, T]
    inputs = (tokens, scores, plan) if keys is None else (tokens, scores, plan, keys)
    apply = functools.partial(_visionzip_apply, grid=grid, counts=counts)
    return Planned(("visionzip", grid, counts), inputs, apply).run(runner)


@dataclass(frozen=True)
class VisionZipCounts:
    """Totals of a VisionZip plan: dominant tokens, contextual targets, tokens merged into them,
    and the most targets of a frame."""

    dominant: int
    targets: int
    merging: int
    most_targets: int


def _visionzip_apply(
    tokens: torch.Tensor,
    scores: torch.Tensor,
    plan: torch.Tensor,
    keys: torch.Tensor | None = None,
    *,
    grid: tuple[int, int],
    counts: VisionZipCounts,
) -> CompressedTokens:
    """VisionZip's device work. plan: [2, T] long, the dominant and contextual count of each
    frame (planned in ``visionzip_compress``)."""
    frames, n, dim = tokens.shape
    keys = tokens if keys is None else keys
    device = tokens.device
    dominant, contextual = plan
    first = counts.dominant
    is_dominant = descending_rank(scores) < dominant[:, None]  # [T, N]
    slot = contextual_targets(~is_dominant, contextual)  # [T, N]

    # outputs: the dominant tokens, then the contextual ones, each in flat (frame, token) order
    flat_dominant = true_indices(is_dominant.flatten(), first)
    flat_targets = true_indices((slot >= 0).flatten(), counts.targets)
    assignment = torch.full((frames * n,), -1, dtype=torch.long, device=device)
    assignment[flat_dominant] = torch.arange(first, device=device)
    assignment[flat_targets] = first + torch.arange(flat_targets.numel(), device=device)

    merges = ((~is_dominant) & (slot < 0) & (contextual > 0)[:, None]).flatten()
    members = true_indices(merges, counts.merging)
    if counts.merging > 0:
        choice = nearest_target(keys, slot, contextual, counts.most_targets, counts.targets)
        first_target = first + torch.cumsum(contextual, 0) - contextual  # [T]
        assignment[members] = first_target[members // n] + choice.flatten()[members]

    flat = tokens.reshape(-1, dim)
    means, _ = group_mean(flat[members], assignment[members] - first, flat_targets.numel())
    contextual_tokens = flat[flat_targets] + means  # target + mean of its members (official)
    return finalize(
        torch.cat([flat[flat_dominant], contextual_tokens]),
        torch.cat([flat_dominant, flat_targets]),
        assignment,
        grid,
    )
