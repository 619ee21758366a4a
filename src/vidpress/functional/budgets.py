"""Token budgets: the one place where a ratio becomes a token count.

Rounding rule (used everywhere in vidpress): ``count = floor(ratio * total + 0.5)``, i.e. round half
up, so 2% of 6,272 tokens is 125 and 50% of 125 is 63 (docs/method.md). A ratio never rounds down to
0 tokens: the result is at least 1. Only an explicit ``budget=0`` gives 0.
"""

from __future__ import annotations

import math

import torch

from vidpress.functional._checks import check_int, check_ratio, is_integer


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (``round`` in Python rounds halves to even)."""
    return math.floor(round(x, 9) + 0.5)


def token_budget(total: int, retention: float | None = None, budget: int | None = None) -> int:
    """Number of tokens to keep out of ``total``, from a ratio or an absolute count.

    Exactly one of ``retention`` (in (0, 1]) and ``budget`` (an int in [0, total]) is given.
    """
    check_int("total", total)
    if (retention is None) == (budget is None):
        raise ValueError("give exactly one of retention (a ratio in (0, 1]) or budget (a count)")
    if budget is not None:
        if not is_integer(budget) or not 0 <= budget <= total:
            raise ValueError(
                f"budget must be an integer in [0, {total}] (the tokens), got {budget!r}"
            )
        return int(budget)
    retention = check_ratio("retention", retention)
    return min(total, max(1, round_half_up(retention * total)))


def split_budget(budget: int, ratio: float) -> tuple[int, int]:
    """Split ``budget`` into ``(rest, part)`` with ``part = round_half_up(ratio * budget)``.

    Used for the unified method's cluster ratio (docs/method.md stage 1 step 3): ``B_clu`` cluster
    slots and ``B_sel = B - B_clu`` selected slots. ``ratio`` may be 0.
    """
    ratio = check_ratio("cluster_ratio", ratio, zero_ok=True)
    part = round_half_up(ratio * budget)
    return budget - part, part


def spread_evenly(budget: int, bins: int, capacity: int | torch.Tensor) -> torch.Tensor:
    """Split ``budget`` over ``bins`` (e.g. frames) as evenly as possible: [bins] long (CPU).

    Each bin holds at most ``capacity`` (an int, or a [bins] tensor of per-bin capacities).
    Every bin gets floor(budget / bins); the remainder goes one token each to the first bins
    with room; what a full bin cannot hold moves on to the next bins with room. The counts sum
    to ``budget`` exactly (``budget`` must not exceed the total capacity).
    """
    capacities = torch.as_tensor(capacity, dtype=torch.long).expand(bins).tolist()
    return torch.tensor(spread_counts(budget, capacities), dtype=torch.long)


def spread_counts(budget: int, capacities: list[int]) -> list[int]:
    """``spread_evenly`` on Python integers: the counts of the bins of ``capacities``.

    Plain Python, since the bins are few (frames, anchor frames): planning a video's budget
    then costs microseconds of host time instead of a few tensor operations per bin.
    """
    if budget > sum(capacities):
        raise ValueError(f"budget {budget} exceeds the total capacity {sum(capacities)}")
    counts = [0] * len(capacities)
    left = budget
    while left > 0:
        open_bins = [i for i, cap in enumerate(capacities) if cap > counts[i]]
        share = left // len(open_bins)
        if share == 0:
            for i in open_bins[:left]:
                counts[i] += 1
            break
        for i in open_bins:
            add = min(capacities[i] - counts[i], share)
            counts[i] += add
            left -= add
    return counts


def send_plan(rows: list[list[int]], device: torch.device) -> torch.Tensor:
    """Per-frame counts planned on the host (Python integers, ``[T]`` each), as one
    ``[len(rows), T]`` long tensor on ``device`` in one asynchronous copy (through pinned memory
    on CUDA, so the host does not wait for the GPU)."""
    packed = torch.tensor(rows, dtype=torch.long)
    if torch.device(device).type == "cuda":
        return packed.pin_memory().to(device, non_blocking=True)
    return packed.to(device)


def apportion(budget: int, sizes: torch.Tensor) -> torch.Tensor:
    """Split ``budget`` over groups in proportion to their ``sizes: [G]``: [G] long.

    Cumulative rounding: with S_g = sizes[0] + ... + sizes[g] and S the total, group g gets
    round_half_up(budget S_g / S) - round_half_up(budget S_(g-1) / S), in exact integer
    arithmetic. The counts sum to ``budget``, each is the floor or the ceiling of the group's
    share budget x sizes[g] / S, so never above its size (``budget`` must not exceed S).
    HoliTom's per-window and per-frame quotas (r' x group size) made exact.
    """
    sizes = sizes.to(torch.long)
    total = int(sizes.sum())
    if not 0 <= budget <= total:
        raise ValueError(f"budget {budget} must be in [0, {total}] (the total size)")
    if total == 0:
        return torch.zeros_like(sizes)
    cumulative = torch.cumsum(sizes, 0)
    rounded = (2 * budget * cumulative + total) // (2 * total)
    return torch.diff(rounded, prepend=rounded.new_zeros(1))
