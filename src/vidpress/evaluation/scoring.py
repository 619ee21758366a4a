"""Multiple-choice scoring from the option letters' logits.

The testbed prompt ends with the assistant turn (``...<|im_start|>assistant\\n``), so the next
token is the answer. An item is scored by reading the logits of the four option-letter tokens at
that last prompt position and taking the argmax: no generation, no answer parsing, no
temperature. For SmolLM2's tokenizer the letters right after ``assistant\\n`` are the single
tokens ``"A" "B" "C" "D"`` (ids 49-52; the space-prefixed ``" A"`` is a different token and is
not the answer format the chat template produces). ``letter_token_ids`` checks that each letter
is exactly one token and raises otherwise.
"""

from __future__ import annotations

import torch

LETTERS = "ABCD"


def letter_token_ids(tokenizer, letters: str = LETTERS) -> list[int]:
    """Token ids of the option letters as the answer's first token (no leading space)."""
    ids = []
    for letter in letters:
        enc = tokenizer(letter, add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            raise ValueError(f"option letter {letter!r} is not one token for this tokenizer: {enc}")
        ids.append(enc[0])
    return ids


def letter_scores(logits: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """[B, V] logits at the answer position -> [B, len(ids)] float32 letter logits."""
    if logits.dim() != 2:
        raise ValueError(f"logits must be [batch, vocab], got {tuple(logits.shape)}")
    return logits[:, ids].float()


def predictions(scores: torch.Tensor) -> torch.Tensor:
    """[B, 4] letter logits -> [B] predicted option index (ties: the first letter)."""
    return scores.argmax(dim=-1)
