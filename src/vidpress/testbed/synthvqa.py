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
(``QUESTIONS``; the first is the suite's canonical one) and a background variant (mirrored left to
right and / or a random crop of 70-100% of the side, resized back) before the shapes are planted.
``media`` names what the question is about ("the video"; training's image items say "the image"
or "the second image"); with another medium only the phrasings that name it are used.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .video import Clip, load_clip

FAMILIES = ("needle_color", "needle_shape", "count", "order", "position", "motion", "scene")
SPLITS = {"train": 0x7472, "test": 0x7465}  # split codes mixed into every item seed
DEFAULT_SEEDS = {"train": 0, "test": 1}
LETTERS = "ABCD"
COLORS = {
    "red": (230, 25, 25),
    "green": (30, 200, 40),
    "blue": (30, 80, 240),
    "yellow": (250, 230, 20),
    "magenta": (230, 40, 230),
    "cyan": (20, 220, 230),
    "white": (255, 255, 255),
}
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")
DIRECTIONS = ("left", "right", "up", "down")
VIDEO_MEDIA = "the video"
QUESTIONS = {  # per family: phrasings of its question; the first with VIDEO_MEDIA is canonical
    "needle_color": (
        "A small shape appears briefly in {media}. What colour is it?",
        "What colour is the small shape that appears briefly in {media}?",
        "A small shape shows up for a moment in {media}. Which colour does it have?",
        "Look at {media}: a small shape appears briefly. Name its colour.",
    ),
    "needle_shape": (
        "A small shape appears briefly in {media}. What shape is it?",
        "What kind of shape appears briefly in {media}?",
        "A small shape shows up for a moment in {media}. Which shape is it?",
        "Look at {media}: a small shape appears briefly. What is its form?",
    ),
    "count": (
        "How many times does a {name} flash in {media}?",
        "Count the flashes of the {name} in {media}. How many are there?",
        "In {media}, a {name} appears and disappears. How many times does it appear?",
        "How often does a {name} show up in {media}?",
    ),
    "order": (
        "Two shapes flash at different moments in {media}. Which one appears first?",
        "In {media}, two shapes appear one after the other. Which shape comes first?",
        "Which of the two shapes flashing in {media} is shown earlier?",
    ),
    "position": (
        "A small shape flashes briefly in {media}. In which part of the frame is it?",
        "Where in the frame does the small shape in {media} appear?",
        "A small shape appears for a moment in {media}. Which quadrant of the frame is it in?",
        "In which region of the frame does the small shape in {media} show up?",
    ),
    "motion": (
        "A {name} moves across {media}. In which direction does it move?",
        "In which direction does the {name} travel in {media}?",
        "A {name} crosses {media}. Which way is it going?",
    ),
    "scene": (
        "Which video clip is the background footage taken from?",
        "Which video clip is the background footage of {media} taken from?",
        "From which clip does the background of {media} come?",
        "The background of {media} comes from which source video?",
    ),
}
SCENE_QUESTION = QUESTIONS["scene"][0]
CROP_RANGE = (0.7, 1.0)  # background variants: crop side / frame side
SCENE_FILLERS = ("a cooking show", "a football match", "an ocean beach", "a city at night")
SIZE_RANGE = (0.112, 0.153)  # shape side / frame side: 44-60 px at 392 px
MAX_SHAPE_SCALE = 2.8  # the largest shape, outline included, still fits a quadrant
OUTLINE = 0.012  # black outline width / frame side (about 5 px at 392)
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


@dataclass(frozen=True)
class Shape:
    """A planted object: kind, colour name and side length in pixels."""

    kind: str
    color: str
    size: int

    @property
    def name(self) -> str:
        return f"{self.color} {self.kind}"


# ---------------------------------------------------------------------------- drawing


def shape_mask(kind: str, size: int) -> torch.Tensor:
    """Boolean [size, size] mask of a shape filling its box."""
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1  # [-1, 1]
    y, x = torch.meshgrid(c, c, indexing="ij")
    if kind == "circle":
        return x**2 + y**2 <= 0.97**2
    if kind == "square":
        return (x.abs() <= 0.85) & (y.abs() <= 0.85)
    if kind == "triangle":  # apex up, base at the bottom
        return (y <= 0.85) & (x.abs() <= (y + 0.95) / 1.8 * 0.98)
    if kind == "diamond":
        return x.abs() + y.abs() <= 0.97
    if kind == "cross":
        arm, reach = 0.32, 0.95
        return ((x.abs() <= arm) & (y.abs() <= reach)) | ((y.abs() <= arm) & (x.abs() <= reach))
    if kind == "star":  # five points, radius linear in angle between inner and outer
        theta = torch.atan2(x, -y) % (2 * math.pi)
        a = (theta / (2 * math.pi / 5)) % 1.0
        radius = 0.42 + (0.98 - 0.42) * (2 * a - 1).abs()
        return (x**2 + y**2).sqrt() <= radius
    raise ValueError(f"unknown shape kind {kind!r}; expected one of {SHAPES}")


def _outline_px(frame_px: int) -> int:
    return max(1, round(OUTLINE * frame_px))


def stamp(frame: torch.Tensor, shape: Shape, top: int, left: int) -> None:
    """Draw ``shape`` with a black outline into uint8 [3, H, W] ``frame`` in place.

    (top, left) is the corner of the outlined box of side ``shape.size + 2 * outline``.
    """
    b = _outline_px(frame.shape[-1])
    mask = nn.functional.pad(shape_mask(shape.kind, shape.size), (b, b, b, b))  # [s+2b, s+2b]
    outer = nn.functional.max_pool2d(mask[None, None].float(), 2 * b + 1, 1, b)[0, 0] > 0
    side = mask.shape[0]
    region = frame[:, top : top + side, left : left + side]  # view [3, s+2b, s+2b]
    region[:, outer] = 0
    region[:, mask] = torch.tensor(COLORS[shape.color], dtype=torch.uint8)[:, None]


def box_side(shape: Shape, frame_px: int) -> int:
    """Side of the outlined box of ``shape``."""
    return shape.size + 2 * _outline_px(frame_px)


# ---------------------------------------------------------------------------- sampling helpers


def _pick(rng: np.random.Generator, seq, k: int | None = None):
    """One element (k None) or k distinct elements of ``seq``, in random order."""
    if k is None:
        return seq[int(rng.integers(len(seq)))]
    return [seq[i] for i in rng.permutation(len(seq))[:k]]


def _random_shape(rng: np.random.Generator, ctx, kind=None, color=None) -> Shape:
    lo, hi = (round(f * ctx.shape_scale * ctx.frame_px) for f in SIZE_RANGE)
    return Shape(
        kind=kind or _pick(rng, SHAPES),
        color=color or _pick(rng, list(COLORS)),
        size=int(rng.integers(lo, hi + 1)),
    )


def _random_place(rng, side: int, frame_px: int, box=None) -> tuple[int, int]:
    """(top, left) of a side x side box inside ``box`` = (y0, y1, x0, x1) (default: frame)."""
    y0, y1, x0, x1 = box or (0, frame_px, 0, frame_px)
    return int(rng.integers(y0, y1 - side + 1)), int(rng.integers(x0, x1 - side + 1))


def _flash_run(rng, num_frames: int, max_len: int = 3) -> range:
    """1..max_len consecutive frames (at most all of them) at a random time."""
    length = int(rng.integers(1, min(max_len, num_frames) + 1))
    start = int(rng.integers(0, num_frames - length + 1))
    return range(start, start + length)


def _slot_flashes(rng, num_frames: int, k: int) -> list[range]:
    """k flashes in k distinct time slots (8 slots), each separated by >= 1 empty frame."""
    slot = num_frames // 8
    longest = max(1, slot // 2)
    runs = []
    for s in sorted(_pick(rng, list(range(8)), k)):
        dur = int(rng.integers(1, longest + 1))
        offset = int(rng.integers(0, slot - dur)) if slot - dur > 0 else 0
        runs.append(range(s * slot + offset, s * slot + offset + dur))
    return runs


def _options_with(rng, answer: str, pool) -> tuple[tuple[str, ...], int]:
    """Answer + 3 distractors from ``pool`` (answer excluded), shuffled; (options, answer idx)."""
    options = [answer] + _pick(rng, [p for p in pool if p != answer], 3)
    order = rng.permutation(4)
    shuffled = tuple(options[i] for i in order)
    return shuffled, int(np.flatnonzero(order == 0)[0])


# ---------------------------------------------------------------------------- families
# Each family: (rng, frames [T, 3, S, S] uint8 modified in place, ctx) -> (question, options, ans)


@dataclass(frozen=True)
class _Ctx:
    frame_px: int
    shape_scale: float
    scene_label: str
    scene_pool: tuple[str, ...]
    media: str = VIDEO_MEDIA
    phrasing: int = 0  # index into the family's phrasings (0: canonical)


def _ask(ctx: _Ctx, family: str, **fields) -> str:
    """The family's question in phrasing ``ctx.phrasing``, about ``ctx.media``."""
    phrasings = QUESTIONS[family]
    if ctx.media != VIDEO_MEDIA:
        phrasings = [q for q in phrasings if "{media}" in q]
    return phrasings[ctx.phrasing % len(phrasings)].format(media=ctx.media, **fields)


def _needle(rng, frames, ctx, ask: str):
    t_frames, px = frames.shape[0], ctx.frame_px
    shape = _random_shape(rng, ctx)
    top, left = _random_place(rng, box_side(shape, px), px)
    for t in _flash_run(rng, t_frames):
        stamp(frames[t], shape, top, left)
    if ask == "color":
        options, ans = _options_with(rng, shape.color, list(COLORS))
        return _ask(ctx, "needle_color"), options, ans
    options, ans = _options_with(rng, shape.kind, SHAPES)
    return _ask(ctx, "needle_shape"), options, ans


def _needle_color(rng, frames, ctx):
    return _needle(rng, frames, ctx, "color")


def _needle_shape(rng, frames, ctx):
    return _needle(rng, frames, ctx, "shape")


def _count(rng, frames, ctx):
    px = ctx.frame_px
    k = int(rng.integers(1, 5))
    shape = _random_shape(rng, ctx)
    side = box_side(shape, px)
    for run in _slot_flashes(rng, frames.shape[0], k):
        top, left = _random_place(rng, side, px)
        for t in run:
            stamp(frames[t], shape, top, left)
    question = _ask(ctx, "count", name=shape.name)
    return question, ("1", "2", "3", "4"), k - 1


def _order(rng, frames, ctx):
    px = ctx.frame_px
    kinds, colors = _pick(rng, SHAPES, 4), _pick(rng, list(COLORS), 4)
    shapes = [_random_shape(rng, ctx, kind=k, color=c) for k, c in zip(kinds, colors, strict=True)]
    for shape, run in zip(shapes[:2], _slot_flashes(rng, frames.shape[0], 2), strict=True):
        top, left = _random_place(rng, box_side(shape, px), px)
        for t in run:
            stamp(frames[t], shape, top, left)
    names = [f"the {s.name}" for s in shapes]  # 0 first, 1 second, 2-3 never shown
    order = rng.permutation(4)
    options = tuple(names[i] for i in order)
    question = _ask(ctx, "order")
    return question, options, int(np.flatnonzero(order == 0)[0])


def _position(rng, frames, ctx):
    px = ctx.frame_px
    q = int(rng.integers(4))
    shape = _random_shape(rng, ctx)
    half, margin = px // 2, max(2, round(0.04 * px))
    y0 = half + margin if q >= 2 else 0
    y1 = px if q >= 2 else half - margin
    x0 = half + margin if q % 2 else 0
    x1 = px if q % 2 else half - margin
    top, left = _random_place(rng, box_side(shape, px), px, (y0, y1, x0, x1))
    for t in _flash_run(rng, frames.shape[0]):
        stamp(frames[t], shape, top, left)
    return _ask(ctx, "position"), QUADRANTS, q


def _motion(rng, frames, ctx):
    t_frames, px = frames.shape[0], ctx.frame_px
    d = int(rng.integers(4))
    shape = _random_shape(rng, ctx)
    side = box_side(shape, px)
    length = int(rng.integers(t_frames // 2, t_frames + 1))
    start = int(rng.integers(0, t_frames - length + 1))
    far = px - side
    travel = np.linspace(far, 0, length) if d in (0, 2) else np.linspace(0, far, length)
    across = int(rng.integers(0, far + 1))
    for t, pos in zip(range(start, start + length), np.round(travel).astype(int), strict=True):
        top, left = (across, int(pos)) if d < 2 else (int(pos), across)
        stamp(frames[t], shape, top, left)
    return _ask(ctx, "motion", name=shape.name), DIRECTIONS, d


def _scene(rng, frames, ctx):
    options, ans = _options_with(rng, ctx.scene_label, ctx.scene_pool)
    return _ask(ctx, "scene"), options, ans


_FAMILY_FNS = {
    "needle_color": _needle_color,
    "needle_shape": _needle_shape,
    "count": _count,
    "order": _order,
    "position": _position,
    "motion": _motion,
    "scene": _scene,
}


# ---------------------------------------------------------------------------- the suite


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
        ctx = _Ctx(self.frames_px, self.shape_scale, self.labels[c], pool, self.media, phrasing)
        question, options, answer = _FAMILY_FNS[family](rng, frames, ctx)
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
