"""Temporal segmentation of a video: FastVID's DySeg cuts and HoliTom's static windows.

- DySeg (FastVID, Shen et al., NeurIPS'25): with c_t = cos(g_t, g_t+1) between consecutive frame
  features, a segment ends after frame t when t is among the (c - 1) smallest c_t or c_t < tau.
- Global redundancy-aware segmentation (HoliTom, Shao et al., NeurIPS'25): with per-position
  similarities s_t[j] = cos(x_t,j, x_t+1,j), a window [s, e] saves (e - s) tokens for each
  position static throughout it (s_t[j] > tau for t = s..e-1); a dynamic programme over the
  frames picks the windows that save the most tokens in total.
"""

from __future__ import annotations

import torch

from vidpress.functional.similarity import unit


def adjacent_similarity(x: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of consecutive frames along dim 0: ``x: [T, ..., D]`` -> ``[T-1, ...]``.

    Frame features ``[T, D]`` give DySeg's c_t; tokens ``[T, N, D]`` give HoliTom's s_t[j].
    """
    u = unit(x)
    return (u[:-1] * u[1:]).sum(dim=-1)


def dyseg_cuts(similarity: torch.Tensor, segments: int, tau: float) -> torch.Tensor:
    """DySeg: ``[T-1]`` bool, True where a segment ends after frame t.

    similarity: [T-1] c_t. Cut where t is among the ``segments - 1`` smallest c_t (ties: the
    lower t) or c_t < tau, so there are at least min(segments, T) segments.
    """
    cuts = similarity < tau
    lowest = torch.argsort(similarity, stable=True)[: segments - 1]
    return cuts.index_fill_(0, lowest, True)


def segment_ids(cuts: torch.Tensor) -> torch.Tensor:
    """``[T]`` long: the segment of each frame, from ``cuts: [T-1]`` (True = cut after t)."""
    return torch.cat([cuts.new_zeros(1, dtype=torch.long), torch.cumsum(cuts.long(), 0)])


def static_runs(similarity: torch.Tensor, tau: float) -> torch.Tensor:
    """``[T, N]`` long: for how many consecutive steps from frame t position j stays static.

    similarity: [T-1, N] s_t[j]. runs[t, j] = the largest L with s_u[j] > tau for u = t..t+L-1,
    so position j is static throughout the window [t, t + L] iff runs[t, j] >= L.
    """
    frames = similarity.shape[0] + 1
    static = torch.cat([similarity > tau, similarity.new_zeros(1, similarity.shape[1]).bool()])
    index = torch.arange(frames, device=similarity.device)[:, None].expand_as(static)
    breaks = torch.where(static, frames - 1, index)
    next_break = torch.cummin(breaks.flip(0), dim=0).values.flip(0)
    return next_break - index


def window_savings(runs: torch.Tensor) -> torch.Tensor:
    """``[T, T]`` long: tokens saved by the window [s, e] (HoliTom's pruned static count).

    savings[s, e] = (e - s) x #{positions static throughout [s, e]}, 0 when e <= s.
    """
    frames = runs.shape[0]
    hist = torch.zeros(frames, frames, dtype=torch.long, device=runs.device)
    hist.scatter_add_(1, runs, torch.ones_like(runs))
    at_least = hist.flip(1).cumsum(1).flip(1)  # at_least[s, L] = #{j: runs[s, j] >= L}
    steps = torch.arange(frames, device=runs.device)
    length = (steps[None, :] - steps[:, None]).clamp(min=0)  # e - s
    return length * at_least.gather(1, length)


def best_windows(savings: torch.Tensor) -> torch.Tensor:
    """HoliTom's dynamic programme: ``[W, 2]`` long (start, end) windows covering all frames.

    savings: [T, T] from ``window_savings``. best(i) = max(best(i-1), max over s < i of
    best(s-1) + savings[s, i]); as in the official code a window must save strictly more than
    leaving frame i alone, and among equal windows the shortest wins. Windows are in time order.
    """
    device, saved = savings.device, savings.tolist()  # a sequential loop, on Python integers
    frames = len(saved)
    best = [0] * (frames + 1)  # best[i + 1]: frames 0..i
    start = list(range(frames))
    for i in range(1, frames):
        value = [best[s] + saved[s][i] for s in range(i)]  # window [s, i] for s = 0..i-1
        top = max(value)
        s = i - 1 - value[::-1].index(top)  # the largest s among the maxima
        if top > best[i]:
            best[i + 1], start[i] = top, s
        else:
            best[i + 1] = best[i]
    windows = []
    end = frames - 1
    while end >= 0:
        windows.append((start[end], end))
        end = start[end] - 1
    return torch.tensor(windows[::-1], dtype=torch.long, device=device)
