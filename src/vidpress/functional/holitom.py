"""HoliTom's outer stage, before the LLM (Shao et al., "HoliTom: Holistic Token Merging for Fast
Video Large Language Models", NeurIPS'25; code cokeshao/HoliTom, ``holitom/llava_arch.py``).

1. Per-position temporal similarity s_t[j] = cos(x_t,j, x_t+1,j) of consecutive frames.
2. Global temporal segmentation: a dynamic programme over the frames picks the windows [s, e]
   that save the most tokens, (e - s) x #positions static throughout (every s_t[j] > tau).
3. r' = min(r T N / (T N - saved), 1), so the total stays r T N.
4. Per window, each static position is averaged over the window's frames into one token;
   dynamic positions keep one token per frame.
5. Dynamic tokens, per frame: the top ceil(n_dyn r') by saliency (contextual share D = 0).
   Static tokens, per window: round(n_static r') DPC-KNN centres (k = 7); every other static
   token joins its nearest centre; a centre with members becomes beta x centre +
   (1 - beta) x mean(members).
The in-LLM stage (K = 18, keep 50%, sequential pairwise merging) is ``inner.inner_compress``.

Defaults, from the official scripts: tau = 0.65 at retention <= 10% (the lowest they run) and
0.8 above (15-25%); beta = 0.6; k = 7; D = 0.

Where this implementation knowingly differs from the official code:
- Exact budget. The official quotas, ceil(n_dyn r') per frame and round(n_static r') per
  window, miss r T N by up to one token per group. Here the budget is split over the groups
  (in time order: each window's static group, then its frames' dynamic groups) in proportion to
  their sizes by ``apportion``: each group gets the floor or the ceiling of r' x its size.
- When the budget exceeds the T N - saved tokens left after temporal merging (the official
  code then keeps all of them and falls short, r' = 1), static positions become dynamic again,
  the least static first (lowest min over the window of s_t[j]; ties by window, then
  position), until enough tokens exist.
- DPC-KNN is the project's shared one (``dpc_knn.py``): a token's k nearest neighbours exclude
  itself (the official code counts it, at distance 0, among its k), ties go by index instead of
  random noise, and the densest token's delta is its own largest distance (officially the
  largest distance in the window). As officially, k = min(k, number of centres).
- The contextual share D of dynamic tokens is not offered: it is fixed at its default 0.
- Positions: a static token takes its window's first frame (the official code inserts it among
  that frame's tokens) and its centre's row and column.
- Saliency is ``scores`` as given (officially SigLIP's last-layer attention, mean over heads and
  queries, pooled like the features).
"""

from __future__ import annotations

import torch

from vidpress.functional._checks import check_int, check_ratio
from vidpress.functional.budgets import apportion, token_budget
from vidpress.functional.dpc_knn import dpc_knn_cluster
from vidpress.functional.merging import blend_into_targets
from vidpress.functional.result import CompressedTokens, finalize, resolve_grid
from vidpress.functional.segmentation import (
    adjacent_similarity,
    best_windows,
    static_runs,
    window_savings,
)
from vidpress.functional.similarity import descending_rank


def default_tau(budget: int, total: int) -> float:
    """HoliTom's scripts: tau = 0.65 at retention 10% and below, 0.8 above."""
    return 0.65 if budget <= token_budget(total, retention=0.10) else 0.8


def static_positions(windows: torch.Tensor, runs: torch.Tensor) -> torch.Tensor:
    """``[W, N]`` bool: the positions static throughout each window (none in a 1-frame window).

    windows: [W, 2] (start, end); runs: [T, N] from ``segmentation.static_runs``.
    """
    steps = windows[:, 1] - windows[:, 0]
    return (runs[windows[:, 0]] >= steps[:, None]) & (steps > 0)[:, None]


def least_static_first(
    similarity: torch.Tensor, window_of: torch.Tensor, static: torch.Tensor
) -> torch.Tensor:
    """Flat indices (w * N + j) of the static positions, by increasing min_t s_t[j] over window w.

    similarity: [T-1, N]; window_of: [T] window of each frame; static: [W, N] bool.
    """
    inside = window_of[:-1] == window_of[1:]  # step t -> t+1 stays in one window
    lowest = torch.full(static.shape, torch.inf, device=static.device)
    rows = window_of[:-1][inside][:, None].expand(-1, static.shape[1])
    lowest.scatter_reduce_(0, rows, similarity[inside].float(), "amin")
    candidates = torch.nonzero(static.flatten()).squeeze(1)
    return candidates[torch.argsort(lowest.flatten()[candidates], stable=True)]


def make_room(
    static: torch.Tensor, order: torch.Tensor, steps: torch.Tensor, shortfall: int
) -> torch.Tensor:
    """Turn static positions dynamic, in ``order``, until ``shortfall`` more tokens exist.

    A static position of window w stands for steps[w] + 1 tokens, so undoing it adds steps[w].
    """
    gain = torch.cumsum(steps[order // static.shape[1]], 0)
    count = int(torch.searchsorted(gain, torch.tensor([shortfall], device=gain.device))) + 1
    static = static.clone()
    static.view(-1)[order[:count]] = False
    return static


def quotas(
    budget: int, windows: torch.Tensor, window_of: torch.Tensor, static_count: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens for each window's static group [W] and each frame's dynamic group [T].

    The groups, in time order (a window's static group before its frames), share ``budget``
    in proportion to their sizes (``apportion``): HoliTom's r' x size, made exact.
    """
    frames, device = window_of.shape[0], windows.device
    static_slot = windows[:, 0] + torch.arange(windows.shape[0], device=device)
    frame_slot = torch.arange(frames, device=device) + window_of + 1
    sizes = torch.empty(frames + windows.shape[0], dtype=torch.long, device=device)
    sizes[static_slot] = static_count
    sizes[frame_slot] = n - static_count[window_of]
    quota = apportion(budget, sizes)
    return quota[static_slot], quota[frame_slot]


def holitom_compress(
    tokens: torch.Tensor,
    scores: torch.Tensor,
    budget: int,
    *,
    grid: tuple[int, int],
    tau: float | None = None,
    beta: float = 0.6,
    k: int = 7,
) -> CompressedTokens:
    """HoliTom's outer stage on ``tokens: [T, N, D]`` with saliency ``scores: [T, N]``.

    ``tau=None`` picks the official scripts' threshold for the retention (``default_tau``).
    Returns exactly ``budget`` tokens.
    """
    frames, n, dim = tokens.shape
    grid = resolve_grid(n, grid)
    if tau is None:
        tau = default_tau(budget, frames * n)
    tau = check_ratio("tau", tau, zero_ok=True)
    beta = check_ratio("beta", beta, zero_ok=True)
    check_int("k", k)
    device = tokens.device

    similarity = adjacent_similarity(tokens)  # [T-1, N]
    runs = static_runs(similarity, tau)  # [T, N]
    windows = best_windows(window_savings(runs))  # [W, 2]
    steps = windows[:, 1] - windows[:, 0]
    window_of = torch.repeat_interleave(torch.arange(windows.shape[0], device=device), steps + 1)
    static = static_positions(windows, runs)  # [W, N]
    shortfall = budget - (frames * n - int((steps[:, None] * static).sum()))
    if shortfall > 0:
        order = least_static_first(similarity, window_of, static)
        static = make_room(static, order, steps, shortfall)
    static_quota, frame_quota = quotas(budget, windows, window_of, static.sum(dim=1), n)

    dynamic = ~static[window_of]  # [T, N]
    rank = descending_rank(torch.where(dynamic, scores.float(), -torch.inf))
    kept = torch.nonzero((dynamic & (rank < frame_quota[:, None])).flatten()).squeeze(1)
    flat = tokens.reshape(-1, dim)
    assignment = torch.full((frames * n,), -1, dtype=torch.long, device=device)
    assignment[kept] = torch.arange(kept.numel(), device=device)
    outputs, sources, done = [flat[kept]], [kept], kept.numel()

    for w in torch.nonzero(static_quota > 0).squeeze(1).tolist():  # windows with static slots
        start, end = windows[w].tolist()
        positions = torch.nonzero(static[w]).squeeze(1)
        merged = tokens[start : end + 1, positions].float().mean(dim=0).to(tokens.dtype)
        count = int(static_quota[w])
        centres, labels = dpc_knn_cluster(merged, count, min(k, count))
        member = torch.ones(positions.numel(), dtype=torch.bool, device=device)
        member[centres] = False
        outputs.append(blend_into_targets(merged[centres], merged[member], labels[member], beta))
        sources.append(start * n + positions[centres])
        window_frames = torch.arange(start, end + 1, device=device)[:, None]
        assignment[window_frames * n + positions[None, :]] = done + labels[None, :]
        done += count
    return finalize(torch.cat(outputs), torch.cat(sources), assignment, grid)
