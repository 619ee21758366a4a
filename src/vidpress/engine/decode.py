"""Decoding steps after a compressed prompt: generate()'s bookkeeping translated.

generate() keeps its own, uncompressed bookkeeping (the mask and positions of the original prompt
plus the generated tokens). Each step's mask columns of the prompt are replaced by the compressed
prompt's, and its positions continue from the compressed prompt (or the original one).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache

from vidpress.engine.rows import mask_positions
from vidpress.engine.state import Session


def decode_tail(
    session: Session, cache: DynamicCache, input_ids: torch.Tensor, given: torch.Tensor | None
) -> torch.Tensor:
    """[B, done + step] the mask columns after the prompt of a decoding call (``input_ids``:
    [B, step]; ``given``: generate()'s 2-D mask over the uncompressed prompt, or None)."""
    batch, step = input_ids.shape
    if batch != session.orig_mask.shape[0]:
        raise ValueError(
            f"decoding batch size {batch} differs from the compressed prompt's "
            f"{session.orig_mask.shape[0]} (beam search is not supported)"
        )
    done = cache.get_seq_length(0) - session.outer_mask.shape[1]
    expected = session.prompt_len + done + step
    if given is None:
        return torch.ones(batch, done + step, dtype=torch.long, device=input_ids.device)
    if given.dim() != 2 or given.shape[1] != expected:
        raise ValueError(
            f"attention_mask must be 2-D with {expected} columns (the {session.prompt_len} of "
            f"the uncompressed prompt, {done} generated, {step} new), got {tuple(given.shape)}"
        )
    return given[:, session.prompt_len :].long()


def decode_positions(
    mrope: bool,
    original: bool,
    session: Session,
    tail: torch.Tensor,
    step: int,
    text_row: bool = False,
) -> torch.Tensor:
    """Position ids of the last ``step`` tokens of a decoding call whose mask columns after the
    prompt are ``tail: [B, done + step]``: [B, step] (1-D RoPE), [3, B, step] (M-RoPE; [4, B,
    step] with ``text_row``, the text positions first, as Qwen2.5-VL's generate() passes them).
    They continue the compressed prompt's (docs/method.md: contiguous 1-D ids by default) or the
    original prompt's (``original`` 1-D ids; M-RoPE's offset ``rope_delta``)."""
    outer = torch.cat([session.outer_mask, tail], dim=1)
    full = torch.cat([session.orig_mask, tail], dim=1)
    if mrope:
        base = mask_positions(full)[:, -step:] + session.rope_delta[:, None]
        positions = base[None].expand(3, -1, -1)
        if text_row:
            positions = torch.cat([mask_positions(outer)[None, :, -step:], positions])
        return positions
    if original:
        return mask_positions(full)[:, -step:]
    return mask_positions(outer)[:, -step:]
