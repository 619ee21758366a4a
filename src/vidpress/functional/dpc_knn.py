"""DPC-KNN density-peak clustering (Eqs. 3-4), the one implementation every method shares.

With ``d_ij = ||x_i - x_j|| / sqrt(D)``:
    rho_i   = exp(-(1/k) * sum of d_ij^2 over the k nearest neighbours j of i)       (Eq. 3)
    delta_i = min d_ij over tokens j denser than i; the densest token gets max_j d_ij  (Eq. 4)
    gamma_i = rho_i * delta_i; the tokens with the highest gamma are the cluster centres.
Ties are broken by index, never by random noise: j is "denser" than i when rho_j > rho_i, or
rho_j == rho_i and j < i, so exactly one token (the first densest) has no denser token.

Densities are kept as log rho = -(1/k) sum d_ij^2: rho itself is 0 in float32 once that mean
exceeds about 104 (independent tokens of RMS 7.2, at any D), which would tie every density and
every gamma. The centres are the highest log gamma = log rho + log delta, the same order.

Memory stays bounded: distances are computed in row chunks. Each row keeps its ``NEIGHBOURS``
nearest tokens from the first pass; ``delta_i`` is read from that list when it holds a denser
token (exact: the list is sorted by distance), and only the rows whose list holds none (the
local density peaks, few) get a second pass over all tokens. The nearest tokens of a row are
found in two exact steps: the minimum of each group of ``GROUP`` columns (strided groups),
then a top-k among the columns of the k groups with the smallest minima (no other column can
be nearer).

Half precision: the distance products run in the tokens' dtype (bf16 tensor cores on a GPU;
upcasting 50k x 3584 tokens to float32 would make the product several times slower) on the
tokens centred and multiplied by a power of two (``similarity.centred_scaled``), so that
squared norms and products stay inside float16's range whatever the tokens' magnitude. Norms
and distances are float32; dividing them by the scale's square gives the tokens' distances.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from vidpress.functional.result import Planned
from vidpress.functional.similarity import (
    accumulation_dtype,
    by_row_chunks,
    centred_padded,
    centred_scaled,
    descending_rank,
    nearest,
    squared_distances,
    squared_norms,
)

# Neighbours remembered per token from the first pass (at least k).
NEIGHBOURS = 32
# Columns per group in the two-step nearest-neighbour selection.
GROUP = 64
# The second pass makes room for one local peak per PEAK_SHARE rows before their count is read
# (``peak_room``); more peaks than that cost a second run (``fit_peaks``).
PEAK_SHARE = 16


def _nearest_neighbours(
    cols: torch.Tensor, m: int, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``count`` nearest other rows of each of the first ``m`` rows of ``cols: [M', D]``.

    ``cols`` holds the M (centred, scaled) tokens then zero padding up to a multiple of ALIGN.
    Returns (d^2 [M, count], index [M, count]): the squared distances between rows of
    ``cols``, float32, sorted ascending. Rows are ranked by the closeness 2 x_i.x_j - ||x_j||^2
    (one fused matrix product in x's dtype; ||x_i||^2 is the same for the whole row and is
    added to the chosen ``count``).
    """
    x = cols[:m]
    sq = squared_norms(x)
    cols_sq = torch.full((cols.shape[0],), math.inf, dtype=cols.dtype, device=cols.device)
    cols_sq[:m] = sq  # padded columns are never near

    def neighbours_of(rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        closeness = torch.addmm(cols_sq[None, :], x[rows], cols.T, beta=-1.0, alpha=2.0)
        closeness.diagonal(offset=rows.start).fill_(-math.inf)  # a token is not its neighbour
        values, index = _largest(closeness, count)
        return (sq[rows, None] - values.float()).float().clamp_(min=0.0), index

    return by_row_chunks(neighbours_of, m, cols.shape[0], x.device)


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
    """Log density ``log rho`` (Eq. 3) and separation ``delta`` (Eq. 4) of the rows of
    ``x: [M, D]``.

    Returns two float32 tensors of shape [M]. With fewer than k + 1 tokens, k shrinks to M - 1.
    """
    return _scores(*centred_padded(x), x.shape[0], k)


class Density(NamedTuple):
    """The first pass of DPC-KNN over ``m`` centred, scaled, padded rows ``cols: [M', D]``
    (``centred_padded``): everything but the separation of the local peaks.

    log_rho, delta_d2: [m] float32 (Eq. 3; Eq. 4 squared, right for the rows with a denser
    neighbour among their ``NEIGHBOURS`` nearest); rank: [m] long, 0 = densest; found: [m]
    bool, that neighbour exists; to_d2: the float32 scalar from cols' squared distances to
    ||x_i - x_j||^2 / D.
    """

    cols: torch.Tensor
    log_rho: torch.Tensor
    delta_d2: torch.Tensor
    rank: torch.Tensor
    found: torch.Tensor
    to_d2: torch.Tensor


def _density(cols: torch.Tensor, scale: torch.Tensor, m: int, k: int) -> Density:
    """DPC-KNN's first pass (``Density``) over ``m >= 2`` rows, k < m."""
    to_d2 = scale.square().mul_(cols.shape[1]).reciprocal_()  # cols' d^2 -> ||x_i - x_j||^2 / D
    d2_near, idx_near = _nearest_neighbours(cols, m, min(max(k, NEIGHBOURS), m - 1))
    d2_near.mul_(to_d2)
    log_rho = d2_near[:, :k].mean(dim=1).neg_()

    rank = descending_rank(log_rho)  # smaller rank = denser
    denser = rank[idx_near] < rank[:, None]  # [M, count]
    found = denser.any(dim=1)
    first = torch.argmax(denser.to(torch.int8), dim=1)
    delta_d2 = d2_near.gather(1, first[:, None]).squeeze(1)
    return Density(cols, log_rho, delta_d2, rank, found, to_d2)


def peak_room(m: int, peaks: int = 1) -> int:
    """Room for the local peaks (rows with no denser token among their ``NEIGHBOURS``
    nearest) of ``m`` rows, before their count is known: a power of two, at least
    ``m / PEAK_SHARE`` and ``peaks``. Known from ``m`` alone, it keys ``_delta``'s shapes (a
    CUDA graph) without a host read; ``fit_peaks`` tries again, with room for ``peaks``, in
    the rare case that more rows were peaks."""
    need = max(-(-m // PEAK_SHARE), peaks, 1)
    return 1 << (need - 1).bit_length()


def fit_peaks(run_at: Callable[[int], tuple], m: int):
    """``run_at(room)`` at ``peak_room(m)``: it returns its outputs followed by the count of
    local peaks (a device scalar), read on the host after all of its work is queued (one sync
    at the end, none in between). When the peaks did not fit, ``run_at`` runs again with room
    for every one of them. Returns the outputs without the count."""
    room = peak_room(m)
    *outputs, peaks = run_at(room)
    peaks = int(peaks)
    if peaks > room:
        *outputs, _ = run_at(peak_room(m, peaks))
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


def _delta(density: Density, m: int, room: int) -> torch.Tensor:
    """[m] delta (Eq. 4): the first pass's, the local peaks' (at most ``room``, from a second
    pass over every row) put in. Rows past the peaks fill the room and write a spare slot."""
    peaks = torch.nonzero_static(~density.found, size=room, fill_value=m).squeeze(1)
    spare = peaks.clamp(max=m - 1)  # a real row, computed and dropped
    separation = _separation_of_peaks(density.cols, m, spare, density.rank).mul_(density.to_d2)
    delta_d2 = torch.cat([density.delta_d2, density.delta_d2.new_zeros(1)])
    return delta_d2.index_copy_(0, peaks, separation)[:m].sqrt_()


def _scores(
    cols: torch.Tensor, scale: torch.Tensor, m: int, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``dpc_knn_scores`` of the first ``m`` rows of ``cols: [M', D]``, the tokens centred,
    multiplied by ``scale`` and padded (``centred_padded``)."""
    if m == 1:
        return torch.zeros(1, device=cols.device), torch.zeros(1, device=cols.device)
    density = _density(cols, scale, m, min(k, m - 1))
    return density.log_rho, _delta(density, m, int((~density.found).sum()))  # exact room


def _separation_of_peaks(
    cols: torch.Tensor, m: int, peaks: torch.Tensor, rank: torch.Tensor
) -> torch.Tensor:
    """Squared delta of the rows ``peaks`` (in ``cols``' units) by a full pass over all M rows."""
    x = cols[:m]
    sq = squared_norms(cols)

    def separation_of(rows: slice) -> torch.Tensor:
        ids = peaks[rows]
        d2 = squared_distances(x[ids], cols, sq[ids], sq)[:, :m]  # aligned product, then cut
        denser = rank[None, :] < rank[ids][:, None]
        to_denser = torch.where(denser, d2, math.inf).amin(dim=1)
        return torch.where(denser.any(dim=1), to_denser, d2.amax(dim=1)).float()

    return by_row_chunks(separation_of, peaks.numel(), cols.shape[0], x.device)


def log_gamma(log_rho: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """log gamma = log rho + log delta (-inf where delta = 0): the order of the centres."""
    return log_rho + delta.log()


def dpc_knn_scores_batched(
    x: torch.Tensor, valid: torch.Tensor, k: int = 7
) -> tuple[torch.Tensor, torch.Tensor]:
    """``dpc_knn_scores`` within each row of ``x: [B, M, D]``, over its tokens ``valid: [B, M]``.

    Row b gives what ``dpc_knn_scores(x[b][valid[b]], k)`` gives (FastVID's per-frame density
    score): k shrinks to the row's valid count - 1, the densest token's delta is its largest
    distance, a lone token gets log rho = 0 and delta = 0. Invalid entries get log rho = -inf
    and delta = 0. Rows are processed in chunks of at most CHUNK_ELEMENTS distances.
    """
    b, m, _ = x.shape
    return by_row_chunks(lambda rows: _scores_of_rows(x[rows], valid[rows], k), b, m * m, x.device)


def _scores_of_rows(
    x: torch.Tensor, valid: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 3-4 on a block of rows, ``x: [b, M, D]``, with the full [b, M, M] distances."""
    m, dim = x.shape[1:]
    count_row = valid.sum(dim=1)
    total = x.masked_fill(~valid[:, :, None], 0).sum(dim=1, dtype=accumulation_dtype(x))
    # centred over each row's valid tokens and scaled per row, as ``centred_padded`` does
    x, scale = centred_scaled(x, total / count_row.clamp(min=1)[:, None])
    to_d2 = scale.square().mul_(dim).reciprocal_()[:, None, None]
    d2 = squared_distances(x, x).mul_(to_d2)  # ||x_i - x_j||^2 / D
    pair = valid[:, :, None] & valid[:, None, :]
    others = pair & ~torch.eye(m, dtype=torch.bool, device=x.device)
    k_row = (count_row - 1).clamp(max=k)  # [b], 0 for a lone token
    count = min(k, m - 1)
    log_rho = torch.zeros(valid.shape, dtype=torch.float32, device=x.device)
    if count > 0:
        near = torch.where(others, d2, math.inf)
        d2_near = torch.topk(near, count, dim=2, largest=False, sorted=True).values
        used = torch.arange(count, device=x.device) < k_row[:, None, None]
        sum_d2 = torch.where(used, d2_near, 0.0).sum(dim=2)
        log_rho = sum_d2.div_(k_row.clamp(min=1)[:, None]).neg_()
    log_rho = torch.where(valid, log_rho, -math.inf)

    rank = descending_rank(log_rho)
    denser = pair & (rank[:, None, :] < rank[:, :, None])
    to_denser = torch.where(denser, d2, math.inf).amin(dim=2)
    farthest = torch.where(pair, d2, 0.0).amax(dim=2)
    delta_d2 = torch.where(denser.any(dim=2), to_denser, farthest)
    delta = torch.where(valid & (k_row > 0)[:, None], delta_d2.sqrt(), 0.0)
    return log_rho.float(), delta.float()  # float32 for float64 tokens too


def dpc_knn_centres(x: torch.Tensor, count: int, k: int = 7) -> torch.Tensor:
    """Indices of the ``count`` rows of ``x: [M, D]`` with the highest gamma = rho * delta.

    Sorted by decreasing gamma, ties by index. ``count`` is clamped to [0, M].
    """
    return _centres(*centred_padded(x), x.shape[0], count, k)


def _centres(cols: torch.Tensor, scale: torch.Tensor, m: int, count: int, k: int) -> torch.Tensor:
    """``dpc_knn_centres`` of the first ``m`` rows of the centred, scaled, padded ``cols``."""
    count = min(max(count, 0), m)
    if count == 0:
        return torch.empty(0, dtype=torch.long, device=cols.device)
    if count == m:
        return torch.arange(count, device=cols.device)
    return _highest_gamma(*_scores(cols, scale, m, k), count)


def _highest_gamma(log_rho: torch.Tensor, delta: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` rows with the highest log gamma, highest first, ties by index."""
    return torch.argsort(log_gamma(log_rho, delta), descending=True, stable=True)[:count]


def dpc_knn_cluster(
    x: torch.Tensor,
    count: int,
    k: int = 7,
    runner: Callable[[Planned], object] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the rows of ``x: [M, D]`` around ``count`` DPC-KNN centres.

    Returns (centres [count] row indices, labels [M] in [0, count)): every row joins its nearest
    centre by Euclidean distance (ties: the lower label); a centre always joins itself.
    runner: runs the device work (``Planned.run``; CUDA graphs with
    ``engine.graphs.PlannedReplays``); the host reads the count of local peaks after it.
    """
    m = x.shape[0]
    if count < 1 or m < 1:
        raise ValueError(f"count and the rows of x must be >= 1, got count={count} and {m} rows")
    count = min(count, m)

    def run_at(room: int):
        piece = functools.partial(dpc_knn_planned, count=count, k=k, room=room)
        return Planned(("dpc_knn_cluster", count, k, room), (x,), piece).run(runner)

    return fit_peaks(run_at, m)


def dpc_knn_planned(x: torch.Tensor, count: int, k: int, room: int):
    """``dpc_knn_cluster`` of ``x: [M, D]`` (0 < count <= M) with ``room`` for the local peaks,
    without a host read: (centres, labels, the count of local peaks). The result is exact when
    the count is at most ``room`` (``fit_peaks`` checks it)."""
    m = x.shape[0]
    if count == m:  # every row is a centre of its own
        centres = torch.arange(m, device=x.device)
        return centres, centres.clone(), torch.zeros((), dtype=torch.long, device=x.device)
    density = _density(*centred_padded(x), m, min(k, m - 1))
    centres = _highest_gamma(density.log_rho, _delta(density, m, room), count)
    return (*_with_labels(density.cols, m, centres), (~density.found).sum())


def _with_labels(cols: torch.Tensor, m: int, centres: torch.Tensor):
    """(centres, labels [m]): each of the first ``m`` rows of ``cols`` joins its nearest
    centre; a centre joins itself."""
    labels = nearest(cols[:m], cols[centres], metric="euclidean")
    labels[centres] = torch.arange(centres.numel(), device=cols.device)
    return centres, labels
