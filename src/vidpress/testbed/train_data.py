"""Training examples for the testbed: SynthVQA items as token sequences, batched.

Items (``TrainItems``): a SynthVQA item as (media, ids, start, targets, family), ``ids`` the whole
sequence, ``targets[j]`` predicted at ``start + j``; batches (``Batch``) are right-padded and run
without an attention mask (causal attention: padding after a sample never reaches it).
``target_logits`` runs a batch through the stock forward. The v2 mixture of layouts that builds
on these: ``train_mixture``.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import numpy as np
import torch

from .synthvqa import FAMILIES, SynthVQA

FRAME_FAMILIES = ("needle_color", "needle_shape", "position", "scene")  # askable of one frame
OPEN_INSTRUCTION = "Answer with a word or a short phrase."


def open_prompt(item) -> str:
    """The item's question without options, asking for the answer phrase."""
    return f"{item.question}\n{OPEN_INSTRUCTION}"


def text_prompt(item) -> str:
    """A text-only twin of the item: the answer stated as context, then the multiple choice."""
    return f"Context: {item.options[item.answer]}.\n{item.prompt()}"


def chat_ids(tokenizer, text: str) -> list[int]:
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )
    return tokenizer(rendered, add_special_tokens=False)["input_ids"]


class TrainItems(torch.utils.data.Dataset):
    """SynthVQA items as training examples: (frames or None, ids, start, targets, family).

    ``ids`` is the whole sequence; ``targets[j]`` is predicted at position ``start + j``.
    fmt "mcq": the prompt with options, target the letter; "open": the question alone, targets the
    answer phrase's tokens (teacher-forced after the prompt); "text": ``text_prompt``, no video.
    ``open_ratio`` mixes "open" into "mcq" items, chosen per index from ``seed``.
    """

    def __init__(self, suite: SynthVQA, processor, fmt: str = "mcq", open_ratio=0.0, seed=0):
        self.suite = suite
        self.processor = processor
        self.fmt = fmt
        self.open_ratio = open_ratio
        self.seed = seed
        self.letter_ids = [processor.tokenizer.convert_tokens_to_ids(c) for c in "ABCD"]

    def __len__(self) -> int:
        return len(self.suite)

    def __getitem__(self, index: int):
        item = self.suite[index]
        frames = None if self.fmt == "text" else item.frames
        ids, start, targets = self.example(
            item, index, lambda text: self.processor.prompt_ids(text, item.frames.shape[0])
        )
        return frames, ids, start, targets, FAMILIES.index(item.family)

    def example(self, item, index: int, media_ids) -> tuple[list[int], int, list[int]]:
        """(ids, start, targets) of ``item``; ``media_ids(text)``: the prompt ids with the
        media's placeholders."""
        fmt, proc = self.fmt, self.processor
        if fmt == "mcq" and self.open_ratio > 0:
            draw = np.random.default_rng([self.seed, index]).random()
            fmt = "open" if draw < self.open_ratio else "mcq"
        if fmt == "text":
            ids, targets = (
                chat_ids(proc.tokenizer, text_prompt(item)),
                [self.letter_ids[item.answer]],
            )
        elif fmt == "open":
            ids = media_ids(open_prompt(item))
            targets = proc.answer_ids(item.options[item.answer])  # the phrase, then end of turn
        else:
            ids, targets = media_ids(item.prompt()), [self.letter_ids[item.answer]]
        start = len(ids) - 1
        if fmt == "open":
            ids = ids + targets
        return ids, start, targets


class Batch(NamedTuple):
    """frames [B,T,3,S,S] uint8 (videos) or None; ids [B,L]; positions / targets [B,P] (-100 where
    a sample has fewer targets); family [B]; images [N,P,3,S,S] uint8 (N images, P crops each),
    image_sizes [N,2] and num_images [B] for the image path, else None."""

    frames: torch.Tensor | None
    ids: torch.Tensor
    positions: torch.Tensor
    targets: torch.Tensor
    family: torch.Tensor
    images: torch.Tensor | None = None
    image_sizes: torch.Tensor | None = None
    num_images: torch.Tensor | None = None

    def to(self, device) -> Batch:
        return Batch(*(None if t is None else t.to(device, non_blocking=True) for t in self))


def collate(batch, pad_id: int) -> Batch:
    """Right-pad ``TrainItems`` samples into a ``Batch``."""
    frames = None if batch[0][0] is None else torch.stack([b[0] for b in batch])
    length = max(len(b[1]) for b in batch)
    width = max(len(b[3]) for b in batch)
    ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    positions = torch.zeros((len(batch), width), dtype=torch.long)
    targets = torch.full((len(batch), width), -100, dtype=torch.long)
    for i, (_, seq, start, tgt, _) in enumerate(batch):
        ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        positions[i] = start + torch.arange(width).clamp(max=len(tgt) - 1)
        targets[i, : len(tgt)] = torch.tensor(tgt, dtype=torch.long)
    family = torch.tensor([b[4] for b in batch])
    return Batch(frames, ids, positions, targets, family)


def normalise(frames: torch.Tensor, spec, dtype: torch.dtype) -> torch.Tensor:
    """uint8 [..., 3, S, S] on any device -> pixels normalised with ``spec``'s mean / std."""
    mean = torch.tensor(spec.mean, device=frames.device).view(3, 1, 1)
    std = torch.tensor(spec.std, device=frames.device).view(3, 1, 1)
    return ((frames.float() / 255.0 - mean) / std).to(dtype)


@contextlib.contextmanager
def vision_size(model, px: int):
    """Run the stock video path on ``px``-side frames: its pooling reads the patch grid from
    ``config.vision_config.image_size``, set for the block and restored after."""
    config = model.config.vision_config
    before, config.image_size = config.image_size, px
    try:
        yield
    finally:
        config.image_size = before


def target_logits(model, batch: Batch, spec, dtype, positions=None) -> torch.Tensor:
    """[B, P, V] logits at ``positions`` (default: the batch's), stock forward, no mask."""
    media = {}
    px = model.config.vision_config.image_size
    if batch.frames is not None:
        media["pixel_values_videos"] = normalise(batch.frames, spec, dtype)
        px = batch.frames.shape[-1]
    if batch.images is not None:
        media["pixel_values"] = normalise(batch.images, spec, dtype)
        media["image_sizes"], media["batch_num_images"] = batch.image_sizes, batch.num_images
    with vision_size(model, px):
        out = model.model(input_ids=batch.ids, use_cache=False, **media)
    positions = batch.positions if positions is None else positions
    rows = torch.arange(len(batch.ids), device=batch.ids.device)[:, None]
    return model.lm_head(out.last_hidden_state[rows, positions])
