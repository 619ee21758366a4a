"""SynthVQA's task families: each one plants its evidence into an item's frames and asks its
question (in one of its phrasings) with four options.

A family generator takes (rng, frames [T, 3, S, S] uint8 modified in place, ``ItemContext``) and
returns (question, options, answer index); ``FAMILY_GENERATORS`` maps a family name to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .synthvqa_shapes import COLORS, SHAPES, SIZE_RANGE, Shape, box_side, stamp

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


@dataclass(frozen=True)
class ItemContext:
    """What a family generator needs besides its rng: frame side, shape scale, the scene answer and
    its distractor pool, the medium its question names and the phrasing to use."""

    frame_px: int
    shape_scale: float
    scene_label: str
    scene_pool: tuple[str, ...]
    media: str = VIDEO_MEDIA
    phrasing: int = 0  # index into the family's phrasings (0: canonical)


def _ask(ctx: ItemContext, family: str, **fields) -> str:
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


FAMILY_GENERATORS = {
    "needle_color": _needle_color,
    "needle_shape": _needle_shape,
    "count": _count,
    "order": _order,
    "position": _position,
    "motion": _motion,
    "scene": _scene,
}
