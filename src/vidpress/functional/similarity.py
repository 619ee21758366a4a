"""Cosine similarity, the redundancy gate (Eq. 2) and chunked distance helpers.

Everything here is exact and deterministic; nothing loops over tokens in Python.
"""

from __future__ import annotations

import numpy as np
import torch

# Entries per chunk of a distance matrix (float32): 128 MiB on the CPU, 512 MiB on a GPU.
CHUNK_ELEMENTS = 1 << 25
GPU_CHUNK_ELEMENTS = 1 << 27
# Row counts are padded to this multiple before big matrix products (aligned GEMMs are fast).
ALIGN = 64


def unit(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x: [M, D]`` scaled to unit L2 norm, in float32."""
    return torch.nn.functional.normalize(x.float(), dim=-1)


def row_chunks(rows: int, cols: int, device: torch.device | str = "cpu") -> list[slice]:
    """Row slices of a [rows, cols] matrix, each holding at most CHUNK_ELEMENTS entries
    (GPU_CHUNK_ELEMENTS on a CUDA device)."""
    budget = GPU_CHUNK_ELEMENTS if torch.device(device).type == "cuda" else CHUNK_ELEMENTS
    step = max(1, budget // max(cols, 1))
    return [slice(start, start + step) for start in range(0, rows, step)]


def pad_rows(x: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """``x: [M, ...]`` with rows of ``value`` appended up to a multiple of ALIGN rows."""
    extra = -x.shape[0] % ALIGN
    if extra == 0:
        return x
    return torch.cat([x, x.new_full((extra, *x.shape[1:]), value)])


def centred(x: torch.Tensor) -> torch.Tensor:
    """``x: [M, D]`` minus its mean row (the mean taken in float32), in ``x``'s dtype."""
    return x - x.mean(dim=0, dtype=torch.float32).to(x.dtype)


def centred_padded(x: torch.Tensor) -> torch.Tensor:
    """``x: [M, D]`` minus its mean row, in a buffer of zero rows padded to a multiple of ALIGN.

    Distances do not change when every row moves by the same vector, and the dot products in
    ``squared_distances`` lose less precision once the large common component is gone.
    """
    out = x.new_zeros((x.shape[0] + -x.shape[0] % ALIGN, x.shape[1]))
    out[: x.shape[0]] = x
    out[: x.shape[0]] -= x.mean(dim=0, dtype=torch.float32).to(x.dtype)
    return out


def squared_norms(x: torch.Tensor) -> torch.Tensor:
    """[..., M] float32 squared L2 norms of the rows of ``x: [..., M, D]`` (no float32 copy)."""
    return torch.linalg.vector_norm(x, dim=-1, dtype=torch.float32).square_()


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
        t = pad_rows(targets)
        t_sq = pad_rows(squared_norms(targets), value=torch.inf)
    out = torch.empty(queries.shape[0], dtype=torch.long, device=queries.device)
    for rows in row_chunks(queries.shape[0], t.shape[0], queries.device):
        if metric == "cosine":
            out[rows] = torch.argmax(q[rows] @ t.T, dim=1)
        else:
            out[rows] = torch.argmin(squared_distances(queries[rows], t, b_sq=t_sq), dim=1)
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


def _admit_block(conflict: torch.Tensor, limit: int) -> torch.Tensor:
    """Exact greedy admission inside one block of candidates: the first ``limit`` admitted.

    conflict: [b, b] bool, conflict[i, j] for j < i: candidate i is too similar to candidate j.
    Candidate i is admitted iff no admitted j < i conflicts with it. That rule has exactly one
    fixed point (it is forward substitution); iterating it from "all admitted" settles one more
    step of every dependency chain per round, so it arrives in at most b rounds, each one
    matrix-vector product. The rounds run on the host over one copy of the small matrix (no
    device sync per round). Returns the admitted positions ([<= limit] long, ascending) on
    the conflict matrix's device.
    """
    blocks = conflict.cpu().numpy().astype(np.float32)
    admitted = np.ones(blocks.shape[0], dtype=bool)
    for _ in range(blocks.shape[0] + 1):
        nxt = (blocks @ admitted) == 0
        if np.array_equal(nxt, admitted):
            break
        admitted = nxt
    chosen = torch.from_numpy(np.flatnonzero(admitted)[:limit])
    return chosen.to(conflict.device, non_blocking=True)


def cosine_gate(
    features: torch.Tensor,
    tau: float,
    capacity: int,
    order: torch.Tensor | None = None,
    block: int = 512,
) -> torch.Tensor:
    """Eq. 2: greedy redundancy gate over ``features: [M, D]`` visited in ``order`` ([M]).

    A candidate enters the pool P iff ``max_{p in P} cos(c, p) < tau``; the walk stops when
    ``|P| = capacity``. Returns the indices (into ``features``) of the admitted candidates, in
    walk order: at most ``capacity`` of them, fewer when the candidates run out. ``order``
    defaults to the rows' own order.

    Exact and blockwise. A candidate rejected by the pool stays rejected (the pool only
    grows), so after each block every remaining candidate is tested, in one matrix product,
    against the tokens that block admitted, and the rejected ones leave the walk. The greedy
    order inside the next block of survivors is resolved on its [block, block] similarities.
    Rows are normalised as they are gathered (bounded memory); half-precision features stay in
    their dtype for the products (tensor cores), others run in float32.
    """
    remaining = torch.arange(features.shape[0], device=features.device)
    remaining = remaining if order is None else order
    admitted_ids: list[torch.Tensor] = []
    taken = 0
    while taken < capacity and remaining.numel() > 0:
        head, remaining = remaining[:block], remaining[block:]
        cand = _unit_rows(features, head)
        conflict = torch.tril((cand @ cand.T).float() >= tau, diagonal=-1)
        admitted = _admit_block(conflict, capacity - taken)
        local = head[admitted]
        admitted_ids.append(local)
        taken += local.numel()
        if taken < capacity and remaining.numel() > 0:
            remaining = remaining[_below_tau(features, remaining, cand[admitted], tau)]
    if not admitted_ids:
        return torch.empty(0, dtype=torch.long, device=features.device)
    return torch.cat(admitted_ids)


def _unit_rows(features: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The ``rows`` of ``features`` at unit norm; half precision stays half (the norms are
    computed in float32 without a float32 copy of the rows)."""
    picked = features[rows]
    if features.dtype not in (torch.float16, torch.bfloat16):
        return unit(picked)
    norms = torch.linalg.vector_norm(picked, dim=-1, keepdim=True, dtype=torch.float32)
    return picked / norms.clamp_(min=1e-12).to(picked.dtype)


def _below_tau(
    features: torch.Tensor, rows: torch.Tensor, pool: torch.Tensor, tau: float
) -> torch.Tensor:
    """[len(rows)] bool: the ``rows`` of ``features`` whose cosine to every row of the unit
    ``pool`` stays below tau."""
    keep = torch.empty(rows.numel(), dtype=torch.bool, device=features.device)
    for part in row_chunks(rows.numel(), features.shape[1], features.device):
        keep[part] = (_unit_rows(features, rows[part]) @ pool.T).float().amax(dim=1) < tau
    return keep
