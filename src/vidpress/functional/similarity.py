"""Cosine similarity, the redundancy gate (Eq. 2) and chunked distance helpers.

Everything here is exact and deterministic; nothing loops over tokens in Python.
"""

from __future__ import annotations

import torch

# Rows per chunk of a distance matrix: bounds memory at CHUNK_ELEMENTS floats per matrix.
CHUNK_ELEMENTS = 1 << 25


def unit(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x: [M, D]`` scaled to unit L2 norm, in float32."""
    return torch.nn.functional.normalize(x.float(), dim=-1)


def row_chunks(rows: int, cols: int) -> list[slice]:
    """Row slices of a [rows, cols] matrix, each holding at most CHUNK_ELEMENTS entries."""
    step = max(1, CHUNK_ELEMENTS // max(cols, 1))
    return [slice(start, start + step) for start in range(0, rows, step)]


def squared_norms(x: torch.Tensor) -> torch.Tensor:
    """[..., M] float32 squared L2 norms of the rows of ``x: [..., M, D]``."""
    x32 = x.float()
    return (x32 * x32).sum(-1)


def descending_rank(values: torch.Tensor) -> torch.Tensor:
    """``[..., M]`` long: the place of each entry when its row (the last dimension) is sorted in
    descending order, ties by index. ``rank < count`` selects a row's top ``count`` entries."""
    order = torch.argsort(values, dim=-1, descending=True, stable=True)
    places = torch.arange(order.shape[-1], device=values.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, places)


def squared_distances(
    a: torch.Tensor,
    b: torch.Tensor,
    a_sq: torch.Tensor | None = None,
    b_sq: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[..., Ma, Mb]`` squared Euclidean distances between rows of ``a: [..., Ma, D]`` and
    ``b: [..., Mb, D]`` (float32, >= 0); leading dimensions are batch dimensions.

    ``a_sq``/``b_sq``: the rows' squared norms when the caller has them (chunked loops compute
    them once). The dot products run in the inputs' dtype (tensor cores for bf16 on a GPU).
    """
    a_sq = squared_norms(a) if a_sq is None else a_sq
    b_sq = squared_norms(b) if b_sq is None else b_sq
    d2 = (a @ b.transpose(-1, -2)).float().mul_(-2.0)
    d2 = d2.add_(a_sq.unsqueeze(-1)).add_(b_sq.unsqueeze(-2))
    return d2.clamp_(min=0.0)


def nearest(queries: torch.Tensor, targets: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """``[Mq]`` index of the nearest row of ``targets`` for each row of ``queries``.

    metric "cosine" (highest cosine similarity) or "euclidean" (smallest distance). Ties go to
    the lowest target index. Computed in row chunks.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    if metric == "cosine":
        q, t = unit(queries), unit(targets)
    else:
        t_sq = squared_norms(targets)
    out = torch.empty(queries.shape[0], dtype=torch.long, device=queries.device)
    for rows in row_chunks(queries.shape[0], targets.shape[0]):
        if metric == "cosine":
            out[rows] = torch.argmax(q[rows] @ t.T, dim=1)
        else:
            out[rows] = torch.argmin(squared_distances(queries[rows], targets, b_sq=t_sq), dim=1)
    return out


def nearest_per_batch(
    queries: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """``[B, Mq]`` index of the most cosine-similar valid target of each query, batch by batch.

    queries: [B, Mq, D]; targets: [B, Mt, D]; valid: [B, Mt] bool (each batch needs one valid
    target for its answers to mean anything). Ties go to the lowest target index, as in
    ``nearest``. Computed in batch chunks.
    """
    q, t = unit(queries), unit(targets)
    out = torch.empty(q.shape[:2], dtype=torch.long, device=q.device)
    for rows in row_chunks(q.shape[0], q.shape[1] * t.shape[1]):
        sims = q[rows] @ t[rows].transpose(1, 2)
        sims = sims.masked_fill(~valid[rows, None, :], -torch.inf)
        out[rows] = torch.argmax(sims, dim=2)
    return out


def _admit_block(alive: torch.Tensor, conflict: torch.Tensor) -> torch.Tensor:
    """Exact greedy admission inside one block of candidates, without a loop over candidates.

    alive:    [b] bool, candidate survives the tokens already in the pool
    conflict: [b, b] bool, conflict[i, j] for j < i: candidate i is too similar to candidate j
    Candidate i is admitted iff alive[i] and no admitted j < i conflicts with it. The admission
    vector is the fixed point of that rule; iterating it from "all alive admitted" settles one
    more position of every dependency chain per step, so it converges in at most b steps.
    """
    admitted = alive.clone()
    conflict_f = conflict.to(torch.float32)
    for _ in range(alive.numel() + 1):
        blocked = (conflict_f @ admitted.to(torch.float32)) > 0
        nxt = alive & ~blocked
        if torch.equal(nxt, admitted):
            return admitted
        admitted = nxt
    raise AssertionError("unreachable: a dependency chain in a block is at most b long")


def cosine_gate(
    candidates: torch.Tensor, tau: float, capacity: int, block: int = 512
) -> torch.Tensor:
    """Eq. 2: greedy redundancy gate over candidates in the given (priority) order.

    candidates: [M, D] features, already in walk order (most important first)
    A candidate enters the pool P iff ``max_{p in P} cos(c, p) < tau``; the walk stops when
    ``|P| = capacity``. Returns the walk-order indices of the admitted candidates, ascending
    (at most ``capacity`` of them; fewer when the candidates run out).

    Exact and blockwise: a block's similarities to the pool are one matrix product, and the
    greedy order inside a block is resolved on the small [block, block] similarity matrix.
    """
    x = unit(candidates)
    pool = x.new_empty((0, x.shape[1]))
    admitted_ids: list[torch.Tensor] = []
    taken = 0
    for start in range(0, x.shape[0], block):
        if taken >= capacity:
            break
        cand = x[start : start + block]
        alive = torch.ones(cand.shape[0], dtype=torch.bool, device=x.device)
        if pool.shape[0] > 0:
            alive = (cand @ pool.T).amax(dim=1) < tau
        conflict = torch.tril((cand @ cand.T) >= tau, diagonal=-1)
        local = torch.nonzero(_admit_block(alive, conflict)).squeeze(1)[: capacity - taken]
        admitted_ids.append(local + start)
        pool = torch.cat([pool, cand[local]])
        taken += local.numel()
    if not admitted_ids:
        return torch.empty(0, dtype=torch.long, device=x.device)
    return torch.cat(admitted_ids)
