"""The inner stage at decoder layer K: score and merge the visual tokens, shorten layers >= K.

Layer K-1's attention input and rotary embedding are recorded by a hook (``Call.captured``);
at layer K the attention rows of the text (or the last token) are recomputed from their q/k
through the adapter, the importance comes from ``functional.visual_importance`` (Eq. 9), and
``functional.inner_compress`` keeps and merges the tokens. Layers >= K then get the shortened
hidden states with a matching mask, rotary embedding and position ids, so their KV cache holds
only the kept tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import DynamicCache
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

from vidpress import functional as F
from vidpress.adapters.base import Timer, VideoAdapter
from vidpress.engine.rows import gather_rows, left_aligned
from vidpress.engine.state import Call, Plan
from vidpress.engine.stats import record_inner
from vidpress.functional.similarity import true_indices


@dataclass(frozen=True)
class InnerPlan:
    """The layout of one prefill's inner stage, read on the host before it runs, so that its
    tensor work (``merge_rows``) takes no host sync and can be captured in a CUDA graph.

    visual:   per sample, [V_b] rows of its stage-1 visual tokens in the compressed prompt
    text:     per sample, the first row after its video (``F.importance_queries``' text_start)
    pads:     per sample, the left padding rows of the compressed prompt
    keeps:    per sample, visual tokens kept from layer K on (0 without visual tokens)
    width:    L'', the rows of the shortened prompt
    """

    visual: list[torch.Tensor]
    text: list[int]
    pads: list[int]
    keeps: list[int]
    width: int

    def key(self) -> tuple:
        """What a CUDA graph of ``merge_rows`` depends on besides its input tensors."""
        return (
            tuple(v.numel() for v in self.visual),
            tuple(self.text),
            tuple(self.pads),
            tuple(self.keeps),
            self.width,
        )


def inner_plan(inner, call: Call) -> InnerPlan:
    """The inner stage's layout for ``call``'s compressed prompt (reads it on the host)."""
    width = call.visual.shape[1]
    layout = [call.visual.sum(dim=1), call.session.outer_mask.sum(dim=1), call.span_end + 1]
    counts, real, text = torch.stack([x.long() for x in layout]).tolist()  # one host read
    visual = [true_indices(call.visual[b], count) for b, count in enumerate(counts)]
    keeps = [F.token_budget(count, retention=inner.keep) if count else 0 for count in counts]
    rows = [r - c + k for r, c, k in zip(real, counts, keeps, strict=True)]
    return InnerPlan(visual, text, [width - r for r in real], keeps, max(rows))


def merge_rows(
    adapter: VideoAdapter,
    inner,
    plan: InnerPlan,
    captured: dict,
    hidden: torch.Tensor,
    valid: torch.Tensor,
    sizes: torch.Tensor,
    importance: list[torch.Tensor | None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor | None]]:
    """The inner stage's tensor work at layer K, without a host sync.

    hidden: [B, L', D] entering layer K; valid: [B, L'] its real rows; sizes: [B, L'] tokens
    each row stands for; captured: layer K-1's attention input and rotary embedding;
    importance: per sample, the importances of an earlier prefill to reuse (else computed).
    Returns the shortened hidden states [B, L'', D], the row of each ([B, L''], -1: padding),
    and per sample the indices of its kept visual tokens and their importances.
    """
    hidden = hidden.clone()
    keep = valid.clone()
    keep_index, importances = [], []
    for b, rows in enumerate(plan.visual):
        if rows.numel() == 0:
            keep_index.append(rows)
            importances.append(None)
            continue
        if importance is not None:
            scores = importance[b].to(hidden.device)
        else:
            scores = sample_importance(adapter, inner, plan, captured, hidden, b)
        res = F.inner_compress(
            hidden[b, rows], scores, plan.keeps[b], merge=inner.merge, sizes=sizes[b, rows]
        )
        kept_rows = rows[res.keep_index]
        keep[b].index_fill_(0, rows, False).index_fill_(0, kept_rows, True)  # no host copy
        hidden[b, kept_rows] = res.hidden.to(hidden.dtype)
        keep_index.append(res.keep_index)
        importances.append(scores)
    index = left_aligned(keep, plan.width)  # [B, L''] into the compressed prompt's rows
    return gather_rows(hidden, index), index, keep_index, importances


def shorten(
    adapter: VideoAdapter,
    inner,
    call: Call,
    hidden: torch.Tensor,
    rope: tuple,
    position_ids: torch.Tensor | None,
    replay: Plan | None,
) -> torch.Tensor:
    """Layer K at prefill: choose and merge visual tokens, shorten what layers >= K see.

    inner: the press's ``InnerStage``; hidden: [B, L', D] entering layer K; rope: the (cos, sin)
    of the compressed prompt; position_ids: the ids the decoder layers are given (or None);
    replay: the importances of an earlier prefill to reuse. Returns [B, L'', D]; ``call`` gets
    the inner mask, the gathered rotary embedding and position ids for layers >= K, and the
    stats of the inner stage.
    """
    timer = Timer(hidden.device)
    with timer:
        plan = inner_plan(inner, call)
        short, index, keep_index, importances = merge_rows(
            adapter,
            inner,
            plan,
            call.captured,
            hidden,
            call.session.outer_mask.bool(),
            call.sizes,
            None if replay is None else replay.importance,
        )
    finish_inner(call, index, keep_index, importances, timer.seconds)
    call.layer_extra = shortened_layer_inputs(index, rope, position_ids)
    return short


def finish_inner(
    call: Call,
    index: torch.Tensor,
    keep_index: list[torch.Tensor],
    importances: list[torch.Tensor | None],
    seconds: float,
) -> None:
    """Record the inner stage's outcome in ``call``: the mask of layers >= K, the importances
    (for ``Run.replay``) and the stats."""
    call.session.inner_mask = (index >= 0).long()
    call.plan.importance = importances
    record_inner(call.stats, keep_index, index, call.sample_frames, seconds)


def shortened_layer_inputs(index: torch.Tensor, rope: tuple, position_ids) -> dict:
    """The rotary embedding (and position ids, when given) of the rows ``index: [B, L'']``
    kept from layer K on, as the decoder layers' keyword arguments."""
    batch = index.shape[0]
    cos, sin = rope
    extra = {
        "position_embeddings": (
            gather_rows(cos.expand(batch, -1, -1), index),
            gather_rows(sin.expand(batch, -1, -1), index),
        )
    }
    if position_ids is not None:
        extra["position_ids"] = gather_rows(position_ids.expand(batch, -1), index)
    return extra


def sample_importance(
    adapter: VideoAdapter,
    inner,
    plan: InnerPlan,
    captured: dict,
    hidden: torch.Tensor,
    b: int,
) -> torch.Tensor:
    """[V] importance of sample ``b``'s visual tokens (rows ``plan.visual[b]`` of ``hidden``),
    from the q/k of layer K-1 recomputed for the query rows and the sample's real rows."""
    pad, rows, width = plan.pads[b], plan.visual[b], hidden.shape[1]
    query = F.importance_queries(width, plan.text[b], inner.importance, hidden.device)
    x = captured["hidden"][b]  # [L', D], after the layer's input norm
    cos, sin = captured["rope"]
    rope = (cos[b if cos.shape[0] > 1 else 0], sin[b if sin.shape[0] > 1 else 0])
    q, k = adapter.attention_query_key(inner.layer - 1, x, rope, query, slice(pad, None))
    return F.visual_importance(
        q,
        k,
        rows - pad,
        F.query_start(width, plan.text[b], inner.importance) - pad,
        hidden[b, rows],
        hidden[b, query],
        kind=inner.importance,
        lam=inner.lam,
    )


def layer_masks(
    adapter: VideoAdapter,
    first: int,
    hidden: torch.Tensor,
    mask2d: torch.Tensor,
    cache: DynamicCache | None,
) -> dict:
    """Masks for layers >= ``first`` (K), sized by layer K's KV cache, one per attention type.

    hidden: [B, S, D] entering layer K; mask2d: [B, L'' + generated] its 2-D mask."""
    config = adapter.language_model.config
    masks = {}
    for i, kind in enumerate(adapter.layer_types()[first:], start=first):
        if kind in masks:
            continue
        make = create_causal_mask if kind == "full_attention" else create_sliding_window_causal_mask
        masks[kind] = make(
            config=config,
            inputs_embeds=hidden,
            attention_mask=mask2d,
            past_key_values=cache,
            layer_idx=i,
        )
    return masks
