"""Stage 1 of the unified method: one global retention pool across all frames (docs/method.md).

1. Contribution order (Eq. 1): all T x N tokens sorted by the vision encoder's attention score.
2. Redundancy gate (Eq. 2): walk that order; a candidate enters the retention pool unless its
   cosine similarity to a token already there reaches tau; stop at B_sel tokens. Option
   (``centred_gate``): the cosine of the tokens minus the video's mean token.
3. Budget split: B_clu = round(cluster_ratio x B) cluster slots, B_sel = B - B_clu.
4. DPC-KNN (Eqs. 3-4) over the recycle pool (every token not admitted): B_clu centres, every
   recycle token joins its nearest centre, a cluster is the plain mean of its members.
5. Refill: clusters join the pool, everything in original (frame, row, col) order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from vidpress.functional._checks import check_flag, check_int, check_ratio
from vidpress.functional.budgets import split_budget
from vidpress.functional.dpc_knn import dpc_knn_planned, fit_peaks
from vidpress.functional.merging import group_mean
from vidpress.functional.result import CompressedTokens, Planned, finalize, resolve_grid
from vidpress.functional.similarity import centred, cosine_gate, true_indices


def retention_pool(
    x: torch.Tensor,
    walk: torch.Tensor,
    capacity: int,
    tau: float | None,
) -> torch.Tensor:
    """Eq. 2: indices (into ``x: [M, D]``) admitted to the retention pool, in walk order.

    walk: [M] the order candidates are visited in. ``tau=None`` switches the gate off (the first
    ``capacity`` candidates are admitted). May return fewer than ``capacity`` indices when the
    gate rejects the rest.
    """
    if tau is None:
        return walk[:capacity]
    return cosine_gate(x, tau, capacity, order=walk)


def unified_compress(
    tokens: torch.Tensor,
    scores: torch.Tensor,
    budget: int,
    *,
    grid: tuple[int, int],
    tau: float = 0.7,
    cluster_ratio: float = 0.3,
    k: int = 7,
    attention_order: bool = True,
    similarity_gate: bool = True,
    clustering: bool = True,
    centred_gate: bool = False,
    runner: Callable[[Planned], object] | None = None,
) -> CompressedTokens:
    """Compress ``tokens: [T, N, D]`` with contribution ``scores: [T, N]`` to exactly ``budget``.

    Switches for the paper's Table 5 ablation: ``attention_order=False`` walks the tokens in
    original order; ``similarity_gate=False`` admits candidates without the cosine test;
    ``clustering=False`` gives every slot to the retention pool and drops the recycle pool.
    If the gate runs out of candidates, the unfilled slots become cluster slots (or, with
    clustering off, go to the best-ranked rejected candidates), so the total is always B.

    ``centred_gate=True`` (not the paper's; docs/method.md's default is the plain cosine) gates on
    ``tokens`` minus their mean over the video. When every token shares a large common
    component (mean pairwise cosine 0.85 on the trained testbed's projected features), the plain
    gate admits only a handful of tokens before rejecting all the rest, and the clusters take the
    budget; centring measures similarity on what tells tokens apart.

    The gate decides on the host; ``runner`` runs all the device work after it (the recycle
    pool, DPC-KNN, the refill) as one piece (``Planned.run``, CUDA graphs with
    ``engine.graphs.PlannedReplays``). DPC-KNN's room for its local peaks is guessed from the
    pool's size and checked once that piece is queued (``dpc_knn.fit_peaks``).
    """
    tau = check_ratio("tau", tau)
    k = check_int("k", k)
    for name, value in (
        ("attention_order", attention_order),
        ("similarity_gate", similarity_gate),
        ("clustering", clustering),
        ("centred_gate", centred_gate),
    ):
        check_flag(name, value)
    _, n, dim = tokens.shape
    grid = resolve_grid(n, grid)
    x = tokens.reshape(-1, dim)
    m = x.shape[0]
    selected_slots, cluster_slots = split_budget(budget, cluster_ratio if clustering else 0.0)

    flat_scores = scores.reshape(-1)
    walk = (
        torch.argsort(flat_scores, descending=True, stable=True)
        if attention_order
        else torch.arange(m, device=x.device)
    )
    gate_x = centred(x) if centred_gate else x
    selected = retention_pool(gate_x, walk, selected_slots, tau if similarity_gate else None)
    shortfall = selected_slots - selected.numel()
    if shortfall > 0 and clustering:
        cluster_slots += shortfall
    elif shortfall > 0:
        is_selected = torch.zeros(m, dtype=torch.bool, device=x.device)
        is_selected.index_fill_(0, selected, True)
        rejected = walk[true_indices(~is_selected[walk], m - selected.numel())]
        selected = torch.cat([selected, rejected[:shortfall]])

    if cluster_slots == 0:
        refill = functools.partial(_refill, grid=grid)
        return Planned(("unified_refill", grid), (x, selected), refill).run(runner)

    def run_at(room: int):
        piece = functools.partial(
            _pool_and_clusters, grid=grid, clusters=cluster_slots, k=k, room=room
        )
        key = ("unified", grid, selected.numel(), cluster_slots, k, room)
        return Planned(key, (x, selected), piece).run(runner)

    return fit_peaks(run_at, m - selected.numel())  # DPC-KNN's rows: the recycle pool


def _pool_and_clusters(
    x: torch.Tensor,
    selected: torch.Tensor,
    *,
    grid: tuple[int, int],
    clusters: int,
    k: int,
    room: int,
) -> tuple[CompressedTokens, torch.Tensor]:
    """Steps 4-5 after the gate, without a host read: DPC-KNN over the recycle pool (every row
    of ``x: [M, D]`` not in ``selected: [S]``) into ``clusters`` clusters, with ``room`` for
    its local peaks (``dpc_knn_planned``), and the refill. Returns (the result, the count of
    local peaks: the result is exact when it is at most ``room``)."""
    m, count = x.shape[0], selected.numel()
    in_pool = torch.zeros(m, dtype=torch.bool, device=x.device).index_fill_(0, selected, True)
    recycle = true_indices(~in_pool, m - count)
    recycled = x[recycle]
    centres, labels, peaks = dpc_knn_planned(recycled, clusters, k, room)
    return _refill(x, selected, recycle, recycled, centres, labels, grid=grid), peaks


def _refill(
    x: torch.Tensor, selected: torch.Tensor, *clustered: torch.Tensor, grid: tuple[int, int]
) -> CompressedTokens:
    """Step 5: the retention pool and the cluster means (each at its centre's position), in
    original order. x: [M, D]; selected: [S] rows of x; clustered: nothing without clusters,
    else recycle [M - S] (the other rows), recycled (their tokens), centres [C] (into recycle)
    and labels [M - S] (in [0, C))."""
    count = selected.numel()
    assignment = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
    assignment[selected] = torch.arange(count, device=x.device)
    outputs, sources = [x[selected]], [selected]
    if clustered:
        recycle, recycled, centres, labels = clustered
        assignment[recycle] = count + labels
        clusters, _ = group_mean(recycled, labels, centres.numel())
        outputs.append(clusters)
        sources.append(recycle[centres])
    return finalize(torch.cat(outputs), torch.cat(sources), assignment, grid)
