"""Attention rows recomputed from queries and keys (Eq. 1), so the model keeps SDPA/flash kernels.

Only the rows a method needs are formed: the CLS row, the column means of the vision tower's
attention, or the text rows of an LLM layer.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

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

    q, k: [F, H, L, d] -> [F, L] float32. Half-precision inputs on a GPU take two flash
    attention passes (``_received_attention_flash``: no [L, L] map in memory at all); otherwise
    frames are processed in chunks so that the [F, H, L, L] attention tensor is never
    materialised whole.
    """
    if _flash_usable(q, k):
        return _received_attention_flash(q, k)
    return _received_attention_chunked(q, k)


# Elements of the padded [f, H, L, d'] copies per chunk of frames on the flash path.
FLASH_CHUNK_ELEMENTS = 1 << 26
_EXPLICIT_ONLY: ContextVar[bool] = ContextVar("vidpress_explicit_scores", default=False)


@contextmanager
def explicit_scores():
    """Inside this block ``received_attention`` takes the explicit (reference) path everywhere;
    the benchmark uses it to compare the two paths through a whole model."""
    token = _EXPLICIT_ONLY.set(True)
    try:
        yield
    finally:
        _EXPLICIT_ONLY.reset(token)


def _flash_usable(q: torch.Tensor, k: torch.Tensor) -> bool:
    """The flash path: half-precision CUDA inputs on an sm80+ GPU, head dim + 2 <= 256."""
    return (
        not _EXPLICIT_ONLY.get()
        and q.is_cuda
        and q.dtype in (torch.float16, torch.bfloat16)
        and k.dtype == q.dtype
        and q.shape[-1] + 2 <= 256
        and torch.cuda.get_device_capability(q.device) >= (8, 0)
    )


def _flash_lse(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """[..., Lq] float32 log sum_j exp(scale q_i.k_j) from the flash attention kernel."""
    out = torch.ops.aten._scaled_dot_product_flash_attention(q, k, k, scale=scale)
    return out[1][..., : q.shape[-2]]


def _received_attention_flash(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``received_attention`` in two flash passes, exact up to the kernel's float32 sums.

    Pass 1 gives each query's normaliser lse_i = log sum_j exp(s_ij), s = q k^T / sqrt(d).
    The mean received attention of key j is (1/L) sum_i exp(s_ij - lse_i): the exp of the
    normaliser of a second pass in which the keys ask (queries k_j) and the queries answer
    (keys q_i), with -lse_i folded into two extra dimensions (a high and a low half-precision
    part, so the bias keeps about 16 bits): [k_j, 1, 1] . [q_i, hi_i, lo_i] * scale.
    """
    frames, heads, length, dim = q.shape
    width = -(-(dim + 2) // 8) * 8
    scale = dim**-0.5
    out = torch.empty(frames, length, dtype=torch.float32, device=q.device)
    step = max(1, FLASH_CHUNK_ELEMENTS // (heads * length * width))
    for start in range(0, frames, step):
        qs, ks = q[start : start + step], k[start : start + step]
        bias = _flash_lse(qs, ks, scale).div_(-scale)  # [f, H, L]: -lse_i / scale
        high = bias.to(q.dtype)
        low = (bias - high.float()).to(q.dtype)
        asking = ks.new_zeros(*ks.shape[:-1], width)
        asking[..., :dim] = ks
        asking[..., dim : dim + 2] = 1
        answering = qs.new_zeros(*qs.shape[:-1], width)
        answering[..., :dim] = qs
        answering[..., dim] = high
        answering[..., dim + 1] = low
        received = _flash_lse(asking, answering, scale).exp_()  # [f, H, L]: sum_i P_ij
        out[start : start + step] = received.mean(dim=1).div_(length)
    return out


def _received_attention_chunked(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``received_attention`` from explicit softmax rows, a chunk of frames at a time."""
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
    causal row (docs/method.md stage 2). Returns [Q, V] for the columns ``visual``.
    """
    logits = (q_text.float() @ k.float().transpose(-1, -2)) * q_text.shape[-1] ** -0.5
    rows = torch.arange(q_text.shape[1], device=q_text.device)[:, None] + causal_offset
    cols = torch.arange(k.shape[1], device=k.device)[None, :]
    logits = logits.masked_fill(cols > rows, float("-inf"))
    return torch.softmax(logits, dim=-1).mean(dim=0)[:, visual]
