"""SynthVQA: generated multiple-choice video QA on real footage, with planted visual evidence.

Each item takes ``num_frames`` (32) frames sampled uniformly over a random time segment of a real
clip, plants small outlined shapes (about 11-15% of the frame side: 44-60 px at 392 px, i.e.
3-4 patches of 14 px, 1.5-2 tokens after OV's 2x2 pooling), and asks one question with four
options (A-D). Seven task families, balanced exactly in every block of seven items:

- ``needle_color`` / ``needle_shape``: a shape visible in only 1-3 consecutive frames; its
  colour / its shape.
- ``count``: a shape flashes 1-4 times (each flash 1-2 frames at a new place); how many times.
- ``order``: two shapes (different colour and shape) flash at different moments; which first.
- ``position``: a shape flashes in one quadrant; which quadrant.
- ``motion``: a shape travels across many frames; in which direction.
- ``scene``: nothing planted; which source clip the background comes from.

Determinism and splits: item ``i`` of split ``s`` with seed ``k`` is generated from
``SeedSequence([split code, k, i])`` alone (random access, lazy). The split code is part of every
item seed, so train and test seed spaces are disjoint even for equal ``k``. Each clip's decoded
frames are split in time: train items sample only the first half, test items only the second
half. A background file that cannot be decoded, or has fewer than ``2 * num_frames`` frames,
raises ValueError naming the file.

Training variety (``variety=True``, off by default, so the committed splits are unchanged): each
item also draws, from a stream of its own (``SeedSequence([item seed, 1])``, so the planted
evidence is the same as without it), one of several phrasings of its family's question
(``synthvqa_families.QUESTIONS``; the first is the suite's canonical one) and a background
variant (mirrored left to right and / or a random crop of 70-100% of the side, resized back)
before the shapes are planted.
``media`` names what the question is about ("the video"; training's image items say "the image"
or "the second image"); with another medium only the phrasings that name it are used.

This module holds the suite, its items and seeds; ``synthvqa_families`` the family generators and
their questions, ``synthvqa_shapes`` the planted shapes and their drawing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .synthvqa_families import FAMILY_GENERATORS, QUESTIONS, VIDEO_MEDIA, ItemContext
from .synthvqa_shapes import MAX_SHAPE_SCALE
from .video import Clip, load_clip

FAMILIES = ("needle_color", "needle_shape", "count", "order", "position", "motion", "scene")
SPLITS = {"train": 0x7472, "test": 0x7465}  # split codes mixed into every item seed
DEFAULT_SEEDS = {"train": 0, "test": 1}
LETTERS = "ABCD"
SCENE_QUESTION = QUESTIONS["scene"][0]
CROP_RANGE = (0.7, 1.0)  # background variants: crop side / frame side
SCENE_FILLERS = ("a cooking show", "a football match", "an ocean beach", "a city at night")
MIN_FRAMES = 8  # count / order / motion spread their events over 8 time slots
TIMED_FAMILIES = ("count", "order", "motion")  # need MIN_FRAMES; the others work on one frame


@dataclass(frozen=True)
class SynthVQAItem:
    """One question. frames: [T, 3, H, W] uint8; answer: index into options (0..3)."""

    frames: torch.Tensor
    question: str
    options: tuple[str, str, str, str]
    answer: int
    family: str
    source: str  # background clip file name
    seed: int  # the item seed (all randomness of the item comes from it)
    split: str
    index: int
    frame_indices: tuple[int, ...]  # frame numbers in the source file, len T

    @property
    def answer_letter(self) -> str:
        return LETTERS[self.answer]

    def prompt(self) -> str:
        """Question, lettered options and the usual multiple-choice instruction."""
        lines = [self.question] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(self.options)]
        lines.append("Answer with the option's letter from the given choices directly.")
        return "\n".join(lines)


def clip_label(path: Path) -> str:
    """Scene answer label of a clip file: lower-case stem up to the first '_'."""
    return Path(path).stem.split("_")[0].lower()


def item_seed(split: str, seed: int, index: int) -> int:
    """64-bit seed of one item; the split code makes train and test seeds disjoint streams."""
    return int(np.random.SeedSequence([SPLITS[split], seed, index]).generate_state(1, np.uint64)[0])


def vary_background(rng: np.random.Generator, frames: torch.Tensor) -> torch.Tensor:
    """A background variant of uint8 [T, 3, S, S] ``frames`` (the same for every frame): mirrored
    left to right (half the time) and / or cropped to a random square of ``CROP_RANGE`` of the
    side, resized back to S (half the time)."""
    if rng.random() < 0.5:
        frames = frames.flip(-1)
    if rng.random() < 0.5:
        size = frames.shape[-1]
        side = int(round(size * rng.uniform(*CROP_RANGE)))
        top, left = (int(v) for v in rng.integers(0, size - side + 1, 2))
        crop = frames[..., top : top + side, left : left + side].float()
        frames = nn.functional.interpolate(crop, size=(size, size), mode="bilinear", antialias=True)
        frames = frames.round().clamp(0, 255).to(torch.uint8)
    return frames.contiguous()


def split_range(num_frames_clip: int, split: str) -> tuple[int, int]:
    """[lo, hi) of the decoded clip frames a split may sample: first / second half."""
    half = num_frames_clip // 2
    return (0, half) if split == "train" else (half, 2 * half)


def sample_segment(rng, lo: int, hi: int, num_frames: int) -> np.ndarray:
    """num_frames indices spread uniformly over a random segment of [lo, hi) (len >= T)."""
    length = int(rng.integers(num_frames, hi - lo + 1))
    start = int(rng.integers(lo, hi - length + 1))
    return np.round(np.linspace(start, start + length - 1, num_frames)).astype(int)


@dataclass
class SynthVQA:
    """A lazily generated SynthVQA split (random access by index, iterable).

    videos: background video files (any decodable file with >= 2 * num_frames frames).
    families: the task families asked, balanced in blocks of ``len(families)`` (default: all).
    Without count / order / motion, ``num_frames`` may go down to 1 (training's single-frame
    warm-up). Decodes every clip once at construction (cached per process) and validates it.
    """

    videos: list
    split: str = "train"
    size: int = 700
    seed: int | None = None
    num_frames: int = 32
    frames_px: int = 392
    max_clip_frames: int = 160
    families: tuple[str, ...] = FAMILIES
    shape_scale: float = 1.0  # x SIZE_RANGE (training's curriculum starts with larger shapes)
    variety: bool = False  # phrasings and background variants (training; module docstring)
    media: str = VIDEO_MEDIA  # what the questions are about ("the image", "the second image")
    clips: list[Clip] = field(init=False, repr=False)
    labels: list[str] = field(init=False, repr=False)

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {self.split!r}")
        self.families = tuple(self.families)
        unknown = [f for f in self.families if f not in FAMILIES]
        if not self.families or unknown:
            raise ValueError(f"families must be a non-empty subset of {FAMILIES}, got {unknown}")
        if not 0 < self.shape_scale <= MAX_SHAPE_SCALE:
            raise ValueError(
                f"shape_scale must be in (0, {MAX_SHAPE_SCALE}] (a shape must fit a quadrant), "
                f"got {self.shape_scale}"
            )
        least = MIN_FRAMES if set(self.families) & set(TIMED_FAMILIES) else 1
        if self.num_frames < least:
            raise ValueError(
                f"num_frames must be >= {least} for families {self.families}, got {self.num_frames}"
            )
        if self.max_clip_frames < 2 * self.num_frames:
            raise ValueError(
                f"max_clip_frames must be >= 2 * num_frames, got {self.max_clip_frames}"
            )
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")
        if not self.videos:
            raise ValueError("videos must name at least one background video file")
        self.videos = [Path(v) for v in self.videos]
        self.seed = DEFAULT_SEEDS[self.split] if self.seed is None else int(self.seed)
        self.clips = [self._checked_clip(p) for p in self.videos]
        self.labels = _unique_labels(self.videos)

    def _checked_clip(self, path: Path) -> Clip:
        clip = load_clip(path, self.frames_px, self.max_clip_frames)
        if clip.num_frames < 2 * self.num_frames:
            raise ValueError(
                f"video file {path} has {clip.num_frames} frames; SynthVQA needs at least "
                f"{2 * self.num_frames} (two disjoint halves of {self.num_frames})"
            )
        return clip

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[SynthVQAItem]:
        return (self[i] for i in range(self.size))

    def family_of(self, index: int) -> str:
        """Family of item ``index``: each block of len(families) items holds every family once,
        shuffled."""
        n = len(self.families)
        block = np.random.default_rng([SPLITS[self.split], self.seed, index // n])
        return self.families[int(block.permutation(n)[index % n])]

    def first_indices(self, per_family: int, families: tuple[str, ...] | None = None) -> list[int]:
        """The first ``per_family`` item indices of each family in ``families`` (default: all the
        suite asks), ascending: a small balanced sample for diagnostics."""
        families = self.families if families is None else tuple(families)
        unknown = [f for f in families if f not in self.families]
        if unknown:
            raise ValueError(f"families must be a subset of {self.families}, got {unknown}")
        wanted: dict[str, list[int]] = {f: [] for f in families}
        for index in range(self.size):
            picked = wanted.get(self.family_of(index))
            if picked is not None and len(picked) < per_family:
                picked.append(index)
        return sorted(i for picked in wanted.values() for i in picked)

    def __getitem__(self, index: int) -> SynthVQAItem:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for a split of {self.size}")
        seed = item_seed(self.split, self.seed, index)
        rng = np.random.default_rng(seed)
        family = self.family_of(index)
        c = int(rng.integers(len(self.clips)))
        clip = self.clips[c]
        idx = sample_segment(rng, *split_range(clip.num_frames, self.split), self.num_frames)
        frames = clip.frames[torch.from_numpy(idx)].clone()  # [T, 3, S, S] uint8
        phrasing = 0
        if self.variety:
            extra = np.random.default_rng([seed, 1])
            phrasing = int(extra.integers(len(QUESTIONS[family])))
            frames = vary_background(extra, frames)
        pool = tuple(dict.fromkeys(self.labels + list(SCENE_FILLERS)))
        ctx = ItemContext(
            self.frames_px, self.shape_scale, self.labels[c], pool, self.media, phrasing
        )
        question, options, answer = FAMILY_GENERATORS[family](rng, frames, ctx)
        return SynthVQAItem(
            frames=frames,
            question=question,
            options=tuple(options),
            answer=int(answer),
            family=family,
            source=clip.path.name,
            seed=seed,
            split=self.split,
            index=index,
            frame_indices=tuple(clip.source_indices[i] for i in idx),
        )


def _unique_labels(paths: list[Path]) -> list[str]:
    """Scene labels per file; falls back to full stems when short labels collide."""
    labels = [clip_label(p) for p in paths]
    if len(set(labels)) < len(labels):
        labels = [Path(p).stem.lower() for p in paths]
    return labels
