"""Attention rows recomputed from queries and keys (Eq. 1), so the model keeps SDPA/flash kernels.

Only the rows a method needs are formed: the CLS row, the column means of the vision tower's
attention, or the text rows of an LLM layer.
"""

from __future__ import annotations

import torch

from vidpress.functional.similarity import CHUNK_ELEMENTS


def _probs(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) in float32: q [..., Lq, d], k [..., Lk, d] -> [..., Lq, Lk]."""
    scale = q.shape[-1] ** -0.5
    return torch.softmax((q.float() @ k.float().transpose(-1, -2)) * scale, dim=-1)


def cls_attention(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Eq. 1 with a CLS token: the head-mean attention from CLS (index 0) to every patch.

    q, k: [F, H, L, d] (L = 1 + patches) -> [F, L - 1]
    """
    return _probs(q[:, :, :1], k)[:, :, 0, 1:].mean(dim=1)


def received_attention(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Eq. 1 without a CLS token: the attention each token receives, mean over queries and heads.

    q, k: [F, H, L, d] -> [F, L]. Frames are processed in chunks so that the [F, H, L, L]
    attention tensor is never materialised whole.
    """
    frames, heads, length, _ = q.shape
    step = max(1, CHUNK_ELEMENTS // (heads * length * length))
    out = torch.empty(frames, length, dtype=torch.float32, device=q.device)
    for start in range(0, frames, step):
        out[start : start + step] = _probs(q[start : start + step], k[start : start + step]).mean(
            dim=(1, 2)
        )
    return out


def text_to_visual_attention(
    q_text: torch.Tensor, k: torch.Tensor, visual: slice, causal_offset: int
) -> torch.Tensor:
    """Head-mean attention of text queries over the visual columns of one LLM layer.

    q_text: [H, Q, d] queries of the Q text rows (RoPE applied); k: [H, L, d] all keys (RoPE
    applied, KV heads already repeated to H). ``causal_offset`` is the sequence index of the
    first text row: row i attends to keys 0..causal_offset + i. The softmax runs over the full
    causal row (METHOD.md stage 2). Returns [Q, V] for the columns ``visual``.
    """
    logits = (q_text.float() @ k.float().transpose(-1, -2)) * q_text.shape[-1] ** -0.5
    rows = torch.arange(q_text.shape[1], device=q_text.device)[:, None] + causal_offset
    cols = torch.arange(k.shape[1], device=k.device)[None, :]
    logits = logits.masked_fill(cols > rows, float("-inf"))
    return torch.softmax(logits, dim=-1).mean(dim=0)[:, visual]
