"""Masks and token rules of greedy decoding at static shapes (``engine.fast``)."""

from __future__ import annotations

import torch


def causal_allowed(valid: torch.Tensor, width: int) -> torch.Tensor:
    """[B, 1, S, width] bool: prompt row i may attend to column j <= i when column j is a real
    token of ``valid: [B, S]`` (columns >= S are later cache slots, closed). Padding rows attend
    to themselves, so no row is fully masked (fully masked rows give NaN keys and values)."""
    batch, length = valid.shape
    rows = torch.arange(length, device=valid.device)
    cols = torch.arange(width, device=valid.device)
    causal = cols[None, :] <= rows[:, None]  # [S, width]
    real = torch.zeros(batch, width, dtype=torch.bool, device=valid.device)
    real[:, :length] = valid
    allowed = causal[None] & real[:, None, :]
    allowed |= cols[None, None, :] == rows[None, :, None]
    return allowed[:, None]


def greedy(logits: torch.Tensor, suppress: torch.Tensor | None) -> torch.Tensor:
    """[B] argmax of ``logits: [B, V]`` over the ids not suppressed."""
    if suppress is not None:
        logits = logits.masked_fill(suppress, -torch.inf)
    return logits.argmax(dim=-1)


def prompt_columns(valid: torch.Tensor, width: int) -> torch.Tensor:
    """[B, 1, 1, width] bool: the real prompt columns of ``valid: [B, S]`` open, the rest shut."""
    out = torch.zeros(valid.shape[0], 1, 1, width, dtype=torch.bool, device=valid.device)
    out[:, 0, 0, : valid.shape[1]] = valid
    return out


def after_eos(tokens: torch.Tensor, eos: torch.Tensor, pad: int | None) -> torch.Tensor:
    """What ``generate`` returns for greedy ``tokens: [B, n]``: after a sample's first EOS
    (kept) every token is ``pad`` (default: the first EOS id), and once every sample has ended
    the tokens stop at the last of those EOS."""
    is_eos = torch.isin(tokens, eos)
    seen = is_eos.long().cumsum(dim=1)
    out = tokens.masked_fill((seen - is_eos.long()) > 0, int(eos[0]) if pad is None else pad)
    if bool(is_eos.any(dim=1).all()):
        out = out[:, : int(is_eos.long().argmax(dim=1).max()) + 1]
    return out
