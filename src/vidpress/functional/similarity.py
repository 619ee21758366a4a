"""Cosine similarity, the redundancy gate (Eq. 2) and chunked distance helpers.

Everything here is exact and deterministic; nothing loops over tokens in Python.

Half precision (float16, bfloat16). The big matrix products run in the inputs' dtype (tensor
cores on a GPU: upcasting 50k x 3584 tokens to float32 would make them several times slower);
norms, distances and divisions by norms are float32. float16 stores at most 65,504 and goes
subnormal below 2^-14, so a squared norm or a dot product of two rows leaves its range long
before the rows do (D = 3584 at a token RMS of 4.5 is |x|^2 ~ 72,000). Two fixes, neither of
which copies a whole [M, D] matrix to float32:
- Cosines divide the rows by their float32 norms before any product (``unit``).
- Euclidean distances multiply the rows by ``power_of_two_scale`` first, which puts the largest
  squared norm in (2^12, 2^14]: every entry of 2 x.y - |y|^2 then fits float16 with room to
  spare and is far above its subnormals, whatever the tokens' magnitude. A power of two is
  exact in every dtype, so dividing the distances by its square gives those of the tokens.
"""

from __future__ import annotations

import numpy as np
import torch

# Entries per chunk of a distance matrix (float32): 128 MiB on the CPU, 512 MiB on a GPU.
CHUNK_ELEMENTS = 1 << 25
GPU_CHUNK_ELEMENTS = 1 << 27
# Row counts are padded to this multiple before big matrix products (aligned GEMMs are fast).
ALIGN = 64


# The largest squared row norm after ``power_of_two_scale``; then |2 x.y - |y|^2| <= 3 x 2^14,
# below float16's largest number 65,504.
SCALED_SQUARED_NORM = 2.0**14


def accumulation_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the norms and means of ``x`` are computed in: float32 (float64 for float64)."""
    return torch.promote_types(x.dtype, torch.float32)


def unit(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Rows of ``x: [..., D]`` scaled to unit L2 norm, in ``dtype``; a zero row stays zero.

    The norms and the division are float32 (``accumulation_dtype``) whatever ``dtype`` is, so
    rows of any magnitude that ``x`` stores (up to 65,504 x sqrt(D) in float16, down to 1e-19)
    come out exact to ``dtype``'s precision.
    """
    norms = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=accumulation_dtype(x))
    return x.to(dtype, copy=True).div_(norms.clamp_(min=torch.finfo(torch.float32).tiny))


def power_of_two_scale(largest_sq: torch.Tensor) -> torch.Tensor:
    """The power of two s (float32, shaped like ``largest_sq``) with s^2 * largest_sq in
    (2^12, 2^14] (SCALED_SQUARED_NORM): rows scaled by s keep squared norms, and dot products
    of two rows, inside float16's range and above its subnormals.

    largest_sq: a bound on the squared norms of the rows (float32). Multiplying by a power of
    two is exact, so distances divided by s^2 afterwards are those of the unscaled rows. The
    exponent is kept in [-32, 32] (zero rows get 2^32), so s^2 x D stays a float32 number.
    """
    exponent = torch.floor(0.5 * torch.log2(SCALED_SQUARED_NORM / largest_sq.float()))
    return torch.exp2(exponent.clamp_(min=-32.0, max=32.0))


def row_chunks(rows: int, cols: int, device: torch.device | str = "cpu") -> list[slice]:
    """Row slices of a [rows, cols] matrix, each holding at most CHUNK_ELEMENTS entries
    (GPU_CHUNK_ELEMENTS on a CUDA device)."""
    budget = GPU_CHUNK_ELEMENTS if torch.device(device).type == "cuda" else CHUNK_ELEMENTS
    step = max(1, budget // max(cols, 1))
    return [slice(start, start + step) for start in range(0, rows, step)]


def by_row_chunks(chunk_fn, rows: int, cols: int, device: torch.device | str = "cpu"):
    """``chunk_fn(row_slice)`` over the ``row_chunks`` of a [rows, cols] matrix, its outputs (a
    tensor, or a tuple of tensors, with the chunk's rows first) concatenated. A single chunk's
    output is returned as it is: no buffer to fill, no copy (a launch and an allocation less
    each, which add up on a host-bound GPU)."""
    parts = [chunk_fn(rows_) for rows_ in row_chunks(rows, cols, device) or [slice(0, 0)]]
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], tuple):
        return tuple(torch.cat(column) for column in zip(*parts, strict=True))
    return torch.cat(parts)


def pad_rows(x: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """``x: [M, ...]`` with rows of ``value`` appended up to a multiple of ALIGN rows."""
    extra = -x.shape[0] % ALIGN
    if extra == 0:
        return x
    return torch.cat([x, x.new_full((extra, *x.shape[1:]), value)])


def centred(x: torch.Tensor) -> torch.Tensor:
    """``x: [M, D]`` minus its mean row (mean and difference in float32), in ``x``'s dtype."""
    return torch.sub(x, x.mean(dim=0, dtype=accumulation_dtype(x)), out=torch.empty_like(x))


def centred_scaled(
    x: torch.Tensor, mean: torch.Tensor, out: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``((x - mean) * s, s)`` for ``x: [..., M, D]`` and a float32 ``mean: [..., D]`` (float64
    for float64 ``x``).

    s ([...] float32) is the ``power_of_two_scale`` of the bound (max_i |x_i| + |mean|)^2 on
    the centred rows' squared norms; the difference and the product are computed in float32
    and stored in ``x``'s dtype (in ``out`` when given), so neither overflows float16.
    """
    largest = squared_norms(x).amax(dim=-1).sqrt_() + torch.linalg.vector_norm(mean, dim=-1)
    scale = power_of_two_scale(largest.square())
    out = torch.empty_like(x) if out is None else out
    torch.addcmul((mean * -scale[..., None])[..., None, :], x, scale[..., None, None], out=out)
    return out, scale


def centred_padded(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``centred_scaled(x)`` around the mean row of ``x: [M, D]``, in a buffer of zero rows
    padded to a multiple of ALIGN: (rows [M', D] in x's dtype, scale s, a float32 scalar).

    Distances do not change when every row moves by the same vector, and the dot products in
    ``squared_distances`` lose less precision once the large common component is gone; the
    distances of the buffer's rows are s^2 times those of ``x``.
    """
    out = x.new_zeros((x.shape[0] + -x.shape[0] % ALIGN, x.shape[1]))
    mean = x.mean(dim=0, dtype=accumulation_dtype(x))
    _, scale = centred_scaled(x, mean, out=out[: x.shape[0]])
    return out, scale


def squared_norms(x: torch.Tensor) -> torch.Tensor:
    """[..., M] squared L2 norms of the rows of ``x: [..., M, D]`` in ``accumulation_dtype``
    (float32 for half precision, without a float32 copy of ``x``)."""
    return torch.linalg.vector_norm(x, dim=-1, dtype=accumulation_dtype(x)).square_()


def descending_rank(values: torch.Tensor) -> torch.Tensor:
    """``[..., M]`` long: the place of each entry when its row (the last dimension) is sorted in
    descending order, ties by index. ``rank < count`` selects a row's top ``count`` entries."""
    order = torch.argsort(values, dim=-1, descending=True, stable=True)
    places = torch.arange(order.shape[-1], device=values.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, places)


def true_indices(mask: torch.Tensor, count: int) -> torch.Tensor:
    """``[count]`` long: the positions of the True entries of the 1-D ``mask``, ascending, for
    a caller that knows there are ``count`` of them (``torch.nonzero`` would wait for the
    device to learn the count)."""
    return torch.nonzero_static(mask, size=count).squeeze(1)


def squared_distances(
    a: torch.Tensor,
    b: torch.Tensor,
    a_sq: torch.Tensor | None = None,
    b_sq: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[..., Ma, Mb]`` squared Euclidean distances between rows of ``a: [..., Ma, D]`` and
    ``b: [..., Mb, D]`` (float32, >= 0); leading dimensions are batch dimensions.

    ``a_sq``/``b_sq``: the rows' squared norms when the caller has them (chunked loops compute
    them once). The dot products run in the inputs' dtype (tensor cores for bf16 on a GPU): in
    float16 the rows must be in range, e.g. scaled by ``power_of_two_scale``.
    """
    a_sq = squared_norms(a) if a_sq is None else a_sq
    b_sq = squared_norms(b) if b_sq is None else b_sq
    d2 = (a @ b.transpose(-1, -2)).float().mul_(-2.0)
    d2 = d2.add_(a_sq.unsqueeze(-1)).add_(b_sq.unsqueeze(-2))
    return d2.clamp_(min=0.0)


def nearest(queries: torch.Tensor, targets: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """``[Mq]`` index of the nearest row of ``targets`` for each row of ``queries``.

    metric "cosine" (highest cosine similarity) or "euclidean" (smallest distance). Ties go to
    the lowest target index. Computed in row chunks; for "euclidean" both sides are first
    multiplied by one ``power_of_two_scale`` (the nearest row does not change).
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    if metric == "cosine":
        q, t = unit(queries), unit(targets)
    else:
        largest = torch.maximum(squared_norms(queries).max(), squared_norms(targets).max())
        scale = power_of_two_scale(largest)
        queries, t = queries * scale, pad_rows(targets * scale)
        t_sq = pad_rows(squared_norms(t[: targets.shape[0]]), value=torch.inf)

    def nearest_of(rows: slice) -> torch.Tensor:
        if metric == "cosine":
            return torch.argmax(q[rows] @ t.T, dim=1)
        return torch.argmin(squared_distances(queries[rows], t, b_sq=t_sq), dim=1)

    return by_row_chunks(nearest_of, queries.shape[0], t.shape[0], queries.device)


def nearest_per_batch(
    queries: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """``[B, Mq]`` index of the most cosine-similar valid target of each query, batch by batch.

    queries: [B, Mq, D]; targets: [B, Mt, D]; valid: [B, Mt] bool (each batch needs one valid
    target for its answers to mean anything). Ties go to the lowest target index, as in
    ``nearest``. Computed in batch chunks.
    """
    q, t = unit(queries), unit(targets)

    def nearest_of(rows: slice) -> torch.Tensor:
        sims = q[rows] @ t[rows].transpose(1, 2)
        return torch.argmax(sims.masked_fill(~valid[rows, None, :], -torch.inf), dim=2)

    return by_row_chunks(nearest_of, q.shape[0], q.shape[1] * t.shape[1])


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
    Rows are normalised as they are gathered (bounded memory, ``unit``: float32 norms) and stay
    in the features' dtype for the products (tensor cores for half precision).
    """
    remaining = torch.arange(features.shape[0], device=features.device)
    remaining = remaining if order is None else order
    admitted_ids: list[torch.Tensor] = []
    taken = 0
    while taken < capacity and remaining.numel() > 0:
        head, remaining = remaining[:block], remaining[block:]
        cand = unit(features[head], features.dtype)
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


def _below_tau(
    features: torch.Tensor, rows: torch.Tensor, pool: torch.Tensor, tau: float
) -> torch.Tensor:
    """[len(rows)] bool: the ``rows`` of ``features`` whose cosine to every row of the unit
    ``pool`` stays below tau."""

    def below(part: slice) -> torch.Tensor:
        part_unit = unit(features[rows[part]], features.dtype)
        return (part_unit @ pool.T).float().amax(dim=1) < tau

    return by_row_chunks(below, rows.numel(), features.shape[1], features.device)
