"""Stage 2, inside the LLM at layer K: choose the visual tokens to keep and merge the rest.

- ``importance_queries`` / ``visual_importance``: the importance of each visual token from layer
  K-1's q/k, either Eq. 9 over the text after the video or the last prompt token's row.
- ``text_aware_importance``: the unified method's Eq. 9, I = (1 - lambda) A_m + lambda S_m.
- ``inner_compress``: keep the top tokens by an importance and merge each dropped token into
  its most cosine-similar kept token (size-weighted mean, HoliTom's sequential pairwise mean,
  or no merge for FastV).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vidpress.functional._checks import check_ratio, check_tensor
from vidpress.functional.attention import text_to_visual_attention
from vidpress.functional.merging import group_mean, sequential_pairwise_mean
from vidpress.functional.similarity import nearest, true_indices, unit

MERGE_MODES = ("mean", "sequential", "none")
IMPORTANCE_KINDS = ("text_aware", "last_token")


def min_max(x: torch.Tensor) -> torch.Tensor:
    """Min-max normalise ``x`` to [0, 1]; a constant vector becomes zeros."""
    low, high = x.min(), x.max()
    span = high - low
    return torch.where(span > 0, (x - low) / span.clamp(min=torch.finfo(x.dtype).tiny), 0 * x)


def text_aware_importance(
    text_attention: torch.Tensor,
    visual_hidden: torch.Tensor,
    text_hidden: torch.Tensor,
    lam: float = 0.5,
) -> torch.Tensor:
    """Eq. 9: importance of each visual token from text attention and text similarity.

    text_attention: [Q, V] head-mean attention of the Q text rows over the V visual columns
    visual_hidden:  [V, D] hidden states of the visual tokens entering layer K
    text_hidden:    [Q, D] hidden states of the text tokens entering layer K
    A_m = min-max(max over text rows of the attention); S_m = min-max(max over text tokens of the
    cosine similarity). Returns [V] float32 = (1 - lam) A_m + lam S_m.
    """
    check_tensor("text_attention", text_attention, 2, "[Q, V]")
    check_tensor("visual_hidden", visual_hidden, 2, "[V, D]")
    check_tensor("text_hidden", text_hidden, 2, "[Q, D]")
    lam = check_ratio("lam", lam, zero_ok=True)
    q, v = text_attention.shape
    if visual_hidden.shape[0] != v or text_hidden.shape[0] != q:
        raise ValueError(
            f"text_attention [Q, V] = {(q, v)} must match visual_hidden [V, D] "
            f"{tuple(visual_hidden.shape)} and text_hidden [Q, D] {tuple(text_hidden.shape)}"
        )
    attention_max = min_max(text_attention.float().amax(dim=0))
    similarity_max = min_max((unit(visual_hidden) @ unit(text_hidden).T).amax(dim=1))
    return (1 - lam) * attention_max + lam * similarity_max


def query_start(width: int, text_start: int, kind: str) -> int:
    """The first of the ``importance_queries`` rows (they run from it to ``width - 1``)."""
    if kind not in IMPORTANCE_KINDS:
        raise ValueError(f"kind must be one of {IMPORTANCE_KINDS}, got {kind!r}")
    if kind == "last_token" or text_start >= width:
        return width - 1
    return text_start


def importance_queries(width: int, text_start: int, kind: str, device=None) -> torch.Tensor:
    """[Q] long: the rows of a ``width``-row sequence whose attention rates the visual tokens.

    "text_aware": the text rows ``text_start .. width - 1`` after the video (Eq. 9);
    "last_token", or no text after the video: the last row only.
    """
    return torch.arange(query_start(width, text_start, kind), width, device=device)


def visual_importance(
    q_text: torch.Tensor,
    k: torch.Tensor,
    visual: torch.Tensor,
    causal_offset: int,
    visual_hidden: torch.Tensor,
    text_hidden: torch.Tensor,
    kind: str = "text_aware",
    lam: float = 0.5,
) -> torch.Tensor:
    """[V] importance of the visual tokens from one layer's queries and keys.

    q_text: [H, Q, d] queries of the ``importance_queries`` rows; k: [H_kv, L, d] keys of the
    sequence (RoPE applied to both; KV heads are repeated to H here); visual: [V] columns of
    ``k`` holding the visual tokens; causal_offset: sequence index of the first query row.
    visual_hidden: [V, D], text_hidden: [Q, D] hidden states entering layer K.
    "text_aware": Eq. 9 (``text_aware_importance``) from the head-mean attention rows;
    "last_token": the last query row's attention (FastV, HoliTom).
    """
    if kind not in IMPORTANCE_KINDS:
        raise ValueError(f"kind must be one of {IMPORTANCE_KINDS}, got {kind!r}")
    k = k.repeat_interleave(q_text.shape[0] // k.shape[0], dim=0)
    attention = text_to_visual_attention(q_text, k, slice(None), causal_offset)[:, visual]
    if kind == "last_token":
        return attention[-1]  # [Q, V] -> [V]
    return text_aware_importance(attention, visual_hidden, text_hidden, lam=lam)


@dataclass(frozen=True)
class InnerResult:
    """keep_index: [K] ascending indices of kept visual tokens; hidden: [K, D]; sizes: [K]."""

    keep_index: torch.Tensor
    hidden: torch.Tensor
    sizes: torch.Tensor


def top_indices(importance: torch.Tensor, keep: int) -> torch.Tensor:
    """[keep] ascending indices of the ``keep`` highest entries (ties: the lower index)."""
    return torch.sort(torch.argsort(importance, descending=True, stable=True)[:keep]).values


def inner_compress(
    visual_hidden: torch.Tensor,
    importance: torch.Tensor,
    keep: int,
    merge: str = "mean",
    sizes: torch.Tensor | None = None,
) -> InnerResult:
    """Keep the ``keep`` most important of ``visual_hidden: [V, D]`` and merge the dropped ones.

    importance: [V]; sizes: [V] how many original tokens each row stands for (default ones).
    merge "mean": each dropped token joins its most cosine-similar kept token, and every kept
    token becomes the size-weighted mean of itself and its members; "sequential": HoliTom's
    pairwise averaging in token order; "none": FastV, dropped tokens vanish.
    """
    check_tensor("visual_hidden", visual_hidden, 2, "[V, D]")
    v = visual_hidden.shape[0]
    if importance.shape != (v,):
        raise ValueError(f"importance must have shape [V] = ({v},), got {tuple(importance.shape)}")
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= v:
        raise ValueError(f"keep must be an integer in [1, {v}] (the visual tokens), got {keep!r}")
    if merge not in MERGE_MODES:
        raise ValueError(f"merge must be one of {MERGE_MODES}, got {merge!r}")
    if sizes is None:
        sizes = torch.ones(v, dtype=torch.long, device=visual_hidden.device)
    kept = top_indices(importance, keep)
    if merge == "none" or keep == v:
        return InnerResult(kept, visual_hidden[kept], sizes[kept])

    is_kept = torch.zeros(v, dtype=torch.bool, device=visual_hidden.device)
    is_kept.index_fill_(0, kept, True)  # a scalar fill: no host copy (CUDA graphs)
    dropped = true_indices(~is_kept, v - keep)
    target = nearest(visual_hidden[dropped], visual_hidden[kept], metric="cosine")
    new_sizes = sizes[kept].clone().index_add_(0, target, sizes[dropped])
    if merge == "sequential":
        hidden = sequential_pairwise_mean(visual_hidden[kept], visual_hidden[dropped], target)
        return InnerResult(kept, hidden, new_sizes)
    labels = torch.empty(v, dtype=torch.long, device=visual_hidden.device)
    labels[kept] = torch.arange(keep, device=visual_hidden.device)
    labels[dropped] = target
    hidden, _ = group_mean(visual_hidden, labels, keep, weights=sizes.float())
    return InnerResult(kept, hidden, new_sizes)
