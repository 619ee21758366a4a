"""vidpress.functional: the algorithms as pure, deterministic torch functions.

Stage 1 (before the LLM) has one entry point for every method::

    res = compress_video_tokens("unified", tokens, scores, budget=125)

Where the paper's pieces live:
- Eq. 1 (contribution scores from q/k):        attention.cls_attention / received_attention
- Eq. 2 (redundancy gate, retention pool):      similarity.cosine_gate, unified.retention_pool
- Eqs. 3-4 (DPC-KNN density and separation):    dpc_knn.dpc_knn_scores (log rho, delta) /
                                                dpc_knn_cluster
- Stage 1 as a whole (split, cluster, refill):  unified.unified_compress
- Eq. 9 (text-aware importance) and merging:    inner.visual_importance (from q/k),
                                                text_aware_importance / inner_compress
- Budget rounding:                              budgets.token_budget
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch

from vidpress.functional._checks import check_video_inputs, values_unread
from vidpress.functional.attention import (
    cls_attention,
    received_attention,
    text_to_visual_attention,
)
from vidpress.functional.budgets import (
    apportion,
    round_half_up,
    split_budget,
    spread_evenly,
    token_budget,
)
from vidpress.functional.dpc_knn import (
    dpc_knn_centres,
    dpc_knn_cluster,
    dpc_knn_scores,
    dpc_knn_scores_batched,
    log_gamma,
)
from vidpress.functional.fastvid import fastvid_compress
from vidpress.functional.holitom import holitom_compress
from vidpress.functional.inner import (
    IMPORTANCE_KINDS,
    MERGE_MODES,
    InnerResult,
    importance_queries,
    inner_compress,
    query_start,
    text_aware_importance,
    top_indices,
    visual_importance,
)
from vidpress.functional.merging import blend_into_targets, group_mean, sequential_pairwise_mean
from vidpress.functional.references import framedrop_compress, random_compress, uniform_compress
from vidpress.functional.result import CompressedTokens, Planned, finalize, resolve_grid
from vidpress.functional.segmentation import (
    adjacent_similarity,
    best_windows,
    dyseg_cuts,
    segment_ids,
    static_runs,
    window_savings,
)
from vidpress.functional.similarity import (
    centred,
    cosine_gate,
    descending_rank,
    nearest,
    nearest_per_batch,
)
from vidpress.functional.unified import retention_pool, unified_compress
from vidpress.functional.visionzip import visionzip_compress


def identity(tokens: torch.Tensor, grid: tuple[int, int]) -> CompressedTokens:
    """Every token kept, unchanged and in order (what any method returns at retention 1.0)."""
    m = tokens.shape[0] * tokens.shape[1]
    grid = resolve_grid(tokens.shape[1], grid)
    index = torch.arange(m, device=tokens.device)
    return finalize(tokens.reshape(m, -1), index, index, grid)


def compress_video_tokens(
    name: str,
    tokens: torch.Tensor,
    scores: torch.Tensor,
    budget: int | None = None,
    retention: float | None = None,
    grid: tuple[int, int] | None = None,
    **params,
) -> CompressedTokens:
    """Compress ``tokens: [T, N, D]`` with ``scores: [T, N]`` by the stage 1 of the press called
    ``name`` (one of ``vidpress.presses.STAGE1_PRESSES``); the rest as :func:`compress_with`."""
    from vidpress.presses import PRESSES, STAGE1_PRESSES  # the registry (it imports this package)

    if name not in STAGE1_PRESSES:
        raise ValueError(f"name must be one of {', '.join(STAGE1_PRESSES)}, got {name!r}")
    return compress_with(
        PRESSES[name].stage1,
        tokens,
        scores,
        budget=budget,
        retention=retention,
        grid=grid,
        **params,
    )


@functools.cache
def _accepted_parameters(method: Callable[..., CompressedTokens]) -> list[str]:
    """The parameters of a stage-1 function after ``tokens`` and ``scores`` (read once per
    function: ``inspect.signature`` takes ~50 us, a tenth of a host-bound stage 1's budget)."""
    return [p for p in inspect.signature(method).parameters if p not in ("tokens", "scores")]


def compress_with(
    method: Callable[..., CompressedTokens],
    tokens: torch.Tensor,
    scores: torch.Tensor,
    budget: int | None = None,
    retention: float | None = None,
    grid: tuple[int, int] | None = None,
    runner: Callable[[Planned], object] | None = None,
    **params,
) -> CompressedTokens:
    """Compress ``tokens: [T, N, D]`` with ``scores: [T, N]`` by the stage-1 function ``method``
    (e.g. ``unified_compress``).

    Give ``budget`` (tokens to keep, 1..T*N) or ``retention`` (a ratio in (0, 1], rounded by
    ``token_budget``). ``grid=(rows, cols)`` when N is not a square. ``params`` are the method's
    hyper-parameters (keyword arguments of its function, the papers' defaults otherwise).
    The result holds exactly ``budget`` tokens; a budget of every token returns the input.
    runner: what runs the device work of the methods that take one (their ``runner``
    parameter: VisionZip, FastVID, unified), e.g. ``engine.graphs.PlannedReplays`` (CUDA
    graphs); the other methods run as they are.
    """
    check_video_inputs(tokens, scores)
    frames, per_frame, _ = tokens.shape
    count = token_budget(frames * per_frame, retention=retention, budget=budget)
    if count < 1:
        raise ValueError(f"budget must be in [1, {frames * per_frame}], got {count}")
    grid = resolve_grid(per_frame, grid)
    accepted = _accepted_parameters(method)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"{method.__name__} does not take {unknown}; accepted parameters: {accepted[2:]}"
        )
    if count == frames * per_frame:
        return identity(tokens, grid)
    if runner is not None and "runner" in accepted:
        params["runner"] = runner
    return method(tokens, scores, count, grid=grid, **params)


__all__ = [
    "IMPORTANCE_KINDS",
    "MERGE_MODES",
    "CompressedTokens",
    "InnerResult",
    "Planned",
    "adjacent_similarity",
    "apportion",
    "best_windows",
    "blend_into_targets",
    "cls_attention",
    "compress_video_tokens",
    "compress_with",
    "centred",
    "cosine_gate",
    "descending_rank",
    "dpc_knn_centres",
    "dpc_knn_cluster",
    "dpc_knn_scores",
    "dpc_knn_scores_batched",
    "dyseg_cuts",
    "fastvid_compress",
    "finalize",
    "framedrop_compress",
    "group_mean",
    "holitom_compress",
    "identity",
    "importance_queries",
    "query_start",
    "inner_compress",
    "log_gamma",
    "nearest",
    "nearest_per_batch",
    "random_compress",
    "received_attention",
    "resolve_grid",
    "retention_pool",
    "round_half_up",
    "segment_ids",
    "sequential_pairwise_mean",
    "split_budget",
    "spread_evenly",
    "static_runs",
    "text_aware_importance",
    "text_to_visual_attention",
    "token_budget",
    "top_indices",
    "unified_compress",
    "uniform_compress",
    "visionzip_compress",
    "visual_importance",
    "values_unread",
    "window_savings",
]
