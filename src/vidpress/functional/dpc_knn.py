"""DPC-KNN density-peak clustering (Eqs. 3-4), the one implementation every method shares.

With ``d_ij = ||x_i - x_j|| / sqrt(D)``:
    rho_i   = exp(-(1/k) * sum of d_ij^2 over the k nearest neighbours j of i)       (Eq. 3)
    delta_i = min d_ij over tokens j denser than i; the densest token gets max_j d_ij  (Eq. 4)
    gamma_i = rho_i * delta_i; the tokens with the highest gamma are the cluster centres.
Ties are broken by index, never by random noise: j is "denser" than i when rho_j > rho_i, or
rho_j == rho_i and j < i, so exactly one token (the first densest) has no denser token.

Memory stays bounded: distances are computed in row chunks. Each row keeps its ``NEIGHBOURS``
nearest tokens from the first pass; ``delta_i`` is read from that list when it holds a denser
token (exact: the list is sorted by distance), and only the rows whose list holds none (the
local density peaks, few) get a second pass over all tokens. The nearest tokens of a row are
found in two exact steps: the minimum of each group of ``GROUP`` columns (strided groups),
then a top-k among the columns of the k groups with the smallest minima (no other column can
be nearer).
"""

from __future__ import annotations

import math

import torch

from vidpress.functional.similarity import (
    centred_padded,
    descending_rank,
    nearest,
    row_chunks,
    squared_distances,
    squared_norms,
)

# Neighbours remembered per token from the first pass (at least k).
NEIGHBOURS = 32
# Columns per group in the two-step nearest-neighbour selection.
GROUP = 64


def _nearest_neighbours(
    cols: torch.Tensor, m: int, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``count`` nearest other rows of each of the first ``m`` rows of ``cols: [M', D]``.

    ``cols`` holds the M tokens then zero padding up to a multiple of ALIGN. Returns
    (d^2 [M, count], index [M, count]): the scaled squared distance ||x_i - x_j||^2 / D, sorted
    ascending. Rows are ranked by the closeness 2 x_i.x_j - ||x_j||^2 (one fused matrix product
    in x's dtype; ||x_i||^2 is the same for the whole row and is added to the chosen ``count``).
    """
    x, dim = cols[:m], cols.shape[1]
    sq = squared_norms(x)
    cols_sq = torch.full((cols.shape[0],), math.inf, dtype=cols.dtype, device=cols.device)
    cols_sq[:m] = sq  # padded columns are never near
    d2_out = torch.empty((m, count), dtype=torch.float32, device=x.device)
    idx_out = torch.empty((m, count), dtype=torch.long, device=x.device)
    for rows in row_chunks(m, cols.shape[0], x.device):
        closeness = torch.addmm(cols_sq[None, :], x[rows], cols.T, beta=-1.0, alpha=2.0)
        closeness.diagonal(offset=rows.start).fill_(-math.inf)  # a token is not its neighbour
        values, idx_out[rows] = _largest(closeness, count)
        d2_out[rows] = (sq[rows, None] - values.float()).clamp_(min=0.0)
    return d2_out.div_(dim), idx_out


def _largest(closeness: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``topk(closeness, count, sorted=True)`` of ``closeness: [r, M']`` (M' a multiple
    of GROUP), through the ``count`` groups of columns with the largest maxima.

    Group g holds the GROUP columns g, g + G, g + 2G, ... (G = M' / GROUP): the maxima are a
    reduction over the outer of the two dimensions of a [r, GROUP, G] view, which reads memory
    in full coalesced rows (a reduction over contiguous runs of 64 ran at a seventh of the
    memory bandwidth). Any partition of the columns gives the same top-k values.
    """
    r, width = closeness.shape
    if width < 8 * count * GROUP:
        return torch.topk(closeness, count, dim=1, sorted=True)
    stride = width // GROUP
    group_max = closeness.view(r, GROUP, stride).amax(dim=1)  # [r, G]
    groups = torch.topk(group_max, count, dim=1).indices  # [r, count]
    offsets = torch.arange(GROUP, device=closeness.device) * stride
    columns = (groups[:, :, None] + offsets).view(r, -1)
    values, pick = torch.topk(closeness.gather(1, columns), count, dim=1, sorted=True)
    return values, columns.gather(1, pick)


def dpc_knn_scores(x: torch.Tensor, k: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Density ``rho`` (Eq. 3) and separation ``delta`` (Eq. 4) of each row of ``x: [M, D]``.

    Returns two float32 tensors of shape [M]. With fewer than k + 1 tokens, k shrinks to M - 1.
    """
    return _scores(centred_padded(x), x.shape[0], k)


def _scores(cols: torch.Tensor, m: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``dpc_knn_scores`` of the first ``m`` rows of the padded, centred ``cols: [M', D]``."""
    if m == 1:
        one = torch.ones(1, device=cols.device)
        return one, torch.zeros(1, device=cols.device)
    k = min(k, m - 1)
    d2_near, idx_near = _nearest_neighbours(cols, m, min(max(k, NEIGHBOURS), m - 1))
    rho = torch.exp(-d2_near[:, :k].mean(dim=1))

    order_rank = descending_rank(rho)  # smaller rank = denser
    denser = order_rank[idx_near] < order_rank[:, None]  # [M, count]
    found = denser.any(dim=1)
    first = torch.argmax(denser.to(torch.int8), dim=1)
    delta_d2 = d2_near.gather(1, first[:, None]).squeeze(1)

    peaks = torch.nonzero(~found).squeeze(1)
    if peaks.numel() > 0:
        delta_d2[peaks] = _separation_of_peaks(cols, m, peaks, order_rank)
    return rho, delta_d2.sqrt()


def _separation_of_peaks(
    cols: torch.Tensor, m: int, peaks: torch.Tensor, rank: torch.Tensor
) -> torch.Tensor:
    """Scaled squared delta of the rows ``peaks`` by a full pass over all M tokens."""
    x, dim = cols[:m], cols.shape[1]
    sq = squared_norms(cols)
    out = torch.empty(peaks.numel(), dtype=torch.float32, device=x.device)
    for rows in row_chunks(peaks.numel(), cols.shape[0], x.device):
        ids = peaks[rows]
        d2 = squared_distances(x[ids], cols, sq[ids], sq)[:, :m]  # aligned product, then cut
        denser = rank[None, :] < rank[ids][:, None]
        to_denser = torch.where(denser, d2, math.inf).amin(dim=1)
        out[rows] = torch.where(denser.any(dim=1), to_denser, d2.amax(dim=1))
    return out.div_(dim)


def dpc_knn_scores_batched(
    x: torch.Tensor, valid: torch.Tensor, k: int = 7
) -> tuple[torch.Tensor, torch.Tensor]:
    """``dpc_knn_scores`` within each row of ``x: [B, M, D]``, over its tokens ``valid: [B, M]``.

    Row b gives what ``dpc_knn_scores(x[b][valid[b]], k)`` gives (FastVID's per-frame density
    score): k shrinks to the row's valid count - 1, the densest token's delta is its largest
    distance, a lone token gets rho = 1 and delta = 0. Invalid entries get rho = delta = 0.
    Rows are processed in chunks of at most CHUNK_ELEMENTS distances.
    """
    b, m, _ = x.shape
    rho = torch.zeros(b, m, dtype=torch.float32, device=x.device)
    delta = torch.zeros_like(rho)
    for rows in row_chunks(b, m * m, x.device):
        rho[rows], delta[rows] = _scores_of_rows(x[rows], valid[rows], k)
    return rho, delta


def _scores_of_rows(
    x: torch.Tensor, valid: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 3-4 on a block of rows, ``x: [b, M, D]``, with the full [b, M, M] distances."""
    m, dim = x.shape[1:]
    count_row = valid.sum(dim=1)
    mean = (x.float() * valid[:, :, None]).sum(dim=1) / count_row.clamp(min=1)[:, None]
    x = x - mean[:, None, :].to(x.dtype)  # centred over each row's tokens, as ``centred`` does
    d2 = squared_distances(x, x) / dim
    pair = valid[:, :, None] & valid[:, None, :]
    others = pair & ~torch.eye(m, dtype=torch.bool, device=x.device)
    k_row = (count_row - 1).clamp(max=k)  # [b], 0 for a lone token
    count = min(k, m - 1)
    rho = torch.ones(valid.shape, dtype=torch.float32, device=x.device)
    if count > 0:
        near = torch.where(others, d2, math.inf)
        d2_near = torch.topk(near, count, dim=2, largest=False, sorted=True).values
        used = torch.arange(count, device=x.device) < k_row[:, None, None]
        mean_d2 = torch.where(used, d2_near, 0.0).sum(dim=2) / k_row.clamp(min=1)[:, None]
        rho = torch.exp(-mean_d2)
    rho = torch.where(valid, rho, 0.0)

    rank = descending_rank(torch.where(valid, rho, -1.0))
    denser = pair & (rank[:, None, :] < rank[:, :, None])
    to_denser = torch.where(denser, d2, math.inf).amin(dim=2)
    farthest = torch.where(pair, d2, 0.0).amax(dim=2)
    delta_d2 = torch.where(denser.any(dim=2), to_denser, farthest)
    delta = torch.where(valid & (k_row > 0)[:, None], delta_d2.sqrt(), 0.0)
    return rho, delta


def dpc_knn_centres(x: torch.Tensor, count: int, k: int = 7) -> torch.Tensor:
    """Indices of the ``count`` rows of ``x: [M, D]`` with the highest gamma = rho * delta.

    Sorted by decreasing gamma, ties by index. ``count`` is clamped to [0, M].
    """
    return _centres(centred_padded(x), x.shape[0], count, k)


def _centres(cols: torch.Tensor, m: int, count: int, k: int) -> torch.Tensor:
    """``dpc_knn_centres`` of the first ``m`` rows of the padded, centred ``cols: [M', D]``."""
    count = min(max(count, 0), m)
    if count == 0:
        return torch.empty(0, dtype=torch.long, device=cols.device)
    if count == m:
        return torch.arange(count, device=cols.device)
    rho, delta = _scores(cols, m, k)
    return torch.argsort(-(rho * delta), stable=True)[:count]


def dpc_knn_cluster(x: torch.Tensor, count: int, k: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the rows of ``x: [M, D]`` around ``count`` DPC-KNN centres.

    Returns (centres [count] row indices, labels [M] in [0, count)): every row joins its nearest
    centre by Euclidean distance (ties: the lower label); a centre always joins itself.
    """
    m = x.shape[0]
    cols = centred_padded(x)
    centres = _centres(cols, m, count, k)
    labels = nearest(cols[:m], cols[centres], metric="euclidean")
    labels[centres] = torch.arange(centres.numel(), device=x.device)
    return centres, labels
