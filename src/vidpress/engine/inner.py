"""The inner stage at decoder layer K: score and merge the visual tokens, shorten layers >= K.

Layer K-1's attention input and rotary embedding are recorded by a hook (``Call.captured``);
at layer K the attention rows of the text (or the last token) are recomputed from their q/k
through the adapter, the importance comes from ``functional.visual_importance`` (Eq. 9), and
``functional.inner_compress`` keeps and merges the tokens. Layers >= K then get the shortened
hidden states with a matching mask, rotary embedding and position ids, so their KV cache holds
only the kept tokens.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

from vidpress import functional as F
from vidpress.adapters.base import Timer, VideoAdapter
from vidpress.engine.rows import gather_rows, left_aligned
from vidpress.engine.state import Call, Plan
from vidpress.engine.stats import record_inner


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
        hidden = hidden.clone()
        keep = call.session.outer_mask.bool().clone()
        keep_index, importances = [], []
        for b in range(hidden.shape[0]):
            vis_rows = call.visual[b].nonzero().squeeze(1)
            if vis_rows.numel() == 0:
                keep_index.append(vis_rows)
                importances.append(None)
                continue
            if replay is not None:
                importance = replay.importance[b]
            else:
                importance = sample_importance(adapter, inner, call, hidden, b, vis_rows)
            res = F.inner_compress(
                hidden[b, vis_rows],
                importance.to(hidden.device),
                F.token_budget(vis_rows.numel(), retention=inner.keep),
                merge=inner.merge,
                sizes=call.sizes[b, vis_rows],
            )
            keep[b, vis_rows] = False
            kept_rows = vis_rows[res.keep_index]
            keep[b, kept_rows] = True
            hidden[b, kept_rows] = res.hidden.to(hidden.dtype)
            keep_index.append(res.keep_index)
            importances.append(importance)
        index = left_aligned(keep)  # [B, L''] into the compressed prompt's rows
    call.session.inner_mask = (index >= 0).long()
    call.layer_extra = shortened_layer_inputs(index, rope, position_ids)
    call.plan.importance = importances
    record_inner(call.stats, keep_index, index, call.sample_frames, timer.seconds)
    return gather_rows(hidden, index)


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
    adapter: VideoAdapter, inner, call: Call, hidden: torch.Tensor, b: int, vis_rows
) -> torch.Tensor:
    """[V] importance of sample ``b``'s visual tokens (rows ``vis_rows`` of ``hidden``), from
    the q/k of layer K-1 recomputed for the query rows and the sample's real rows."""
    width = hidden.shape[1]
    pad = width - int(call.session.outer_mask[b].sum())
    query = F.importance_queries(
        width, int(call.span_end[b]) + 1, inner.importance, device=hidden.device
    )
    x = call.captured["hidden"][b]  # [L', D], after the layer's input norm
    cos, sin = call.captured["rope"]
    rope = (cos[b if cos.shape[0] > 1 else 0], sin[b if sin.shape[0] > 1 else 0])
    q, k = adapter.attention_query_key(inner.layer - 1, x, rope, query, slice(pad, None))
    return F.visual_importance(
        q,
        k,
        vis_rows - pad,
        int(query[0]) - pad,
        hidden[b, vis_rows],
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
