"""The v2 training mixture: generic variation of the input layout, as real Video-LLMs are
trained, never a press's output. Each batch draws one layout (``Layout``) from its step's seed:

- "keep": the layout the committed weights were trained and are evaluated on (``num_frames``
  frames at ``frames_px``, canonical questions and backgrounds), so the model does not forget it;
- "video": ``MIX_FRAMES`` frames (1-64) at a square side of ``MIX_PX`` (224-448 px: 8x8 to 16x16
  tokens per frame after the stock 2x2 pooling), at most ``MAX_VIDEO_TOKENS`` visual tokens per
  video (more frames at lower resolution, as the LM's context is 8,192 positions); the stock
  video path pools the ``config.vision_config.image_size / 14`` patch grid, so a batch runs with
  that set to its side (``train_data.vision_size``; DINOv2 interpolates its position grid);
- "image": one frame through the stock image path (AnyRes: the whole image at ``frames_px``, then
  its crops on the best of the config's grid pinpoints, ``image_newline`` after every row),
  ``IMAGE_PX`` sides: 1x1 or 2x2 crops;
- "multi": 2-4 separate images (each the stock path's one-crop image plus a newline), the
  question about one of them ("in the second image"), the others with evidence of their own.

Fewer than 8 frames or images ask only the one-frame families (``FRAME_FAMILIES``). Shapes keep
their width in tokens: at a side of ``px``, ``shape_scale`` x 14 / (tokens per side) of the
suite's size (1.5-2 tokens wide, as at 392 px). Every layout but "keep" asks its questions in
varied phrasings on varied backgrounds (``SynthVQA(variety=True)``). Items come from SynthVQA's
train split only. Batches are sized to a visual-token budget (``tokens``, at most
``MAX_MIX_BATCH`` items); the same seed gives the same batches.
"""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from vidpress.adapters.llava_onevision_inputs import pooled_side

from .convert_dinov2 import PATCH
from .synthvqa import FAMILIES, MIN_FRAMES, SynthVQA
from .synthvqa_families import VIDEO_MEDIA
from .train_data import FRAME_FAMILIES, Batch, TrainItems, collate
from .video import load_clip

MIX_FRAMES = "1+2+4+8+16+32+48+64"  # defaults of the mix phase's frame_counts, sides, image_sides
MIX_PX = "224+280+336+392+448"
IMAGE_PX = "392+784"  # single images: 1x1, 2x2 crops of 392
MULTI_IMAGES = (2, 3, 4)
ORDINALS = ("first", "second", "third", "fourth")
IMAGE_MEDIA = ("the image", *(f"the {o} image" for o in ORDINALS))
KINDS = ("keep", "video", "image", "multi")
SEED_OFFSET = 300  # mixture suites' item seeds: SeedSequence([train_seed, 300, kind, ...])
MAX_VIDEO_TOKENS = 8192
MAX_MIX_BATCH = 32
SLOTS = 4 * MAX_MIX_BATCH  # item indices per step and suite
MAX_CLIP_FRAMES = 160
IMAGE_CLIP_FRAMES = 16  # decoded frames per clip for the large single images


# ---------------------------------------------------------------------------- image path


def _resized(frames: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [..., 3, S, S] -> uint8 [..., 3, size, size] (bilinear, antialiased)."""
    if frames.shape[-1] == size:
        return frames
    flat = frames.reshape(-1, *frames.shape[-3:]).float()
    out = nn.functional.interpolate(flat, size=(size, size), mode="bilinear", antialias=True)
    return out.round().clamp(0, 255).to(torch.uint8).reshape(*frames.shape[:-2], size, size)


def anyres_grid(side: int, crop: int, pinpoints) -> tuple[int, int]:
    """(rows, cols) of crops the stock image path picks for a square image of ``side`` px."""
    from transformers.image_processing_utils import select_best_resolution

    height, width = select_best_resolution((side, side), pinpoints)
    if height != width:
        raise ValueError(f"a square image of {side} px needs a square pinpoint, got {pinpoints}")
    return height // crop, width // crop


def anyres_pixels(frame: torch.Tensor, crop: int, pinpoints) -> torch.Tensor:
    """A square uint8 [3, S, S] image as the stock image path's input [1 + rows x cols, 3, crop,
    crop]: the whole image at ``crop``, then its crops in row-major order."""
    rows, cols = anyres_grid(frame.shape[-1], crop, pinpoints)
    big = _resized(frame, rows * crop)
    tiles = big.unflatten(1, (rows, crop)).unflatten(3, (cols, crop)).permute(1, 3, 0, 2, 4)
    return torch.cat([_resized(frame, crop)[None], tiles.flatten(0, 1)])


def anyres_tokens(side: int, crop: int, pinpoints, patch: int = PATCH) -> int:
    """Visual tokens of one square image on the stock image path (no pooling): the whole image's
    grid, then the crops' grid with a newline after every row (square: nothing unpadded)."""
    g = crop // patch
    rows, cols = anyres_grid(side, crop, pinpoints)
    return g * g + rows * g * (cols * g + 1)


# ---------------------------------------------------------------------------- the mixture


@dataclasses.dataclass(frozen=True)
class Layout:
    """One batch's layout: kind "keep" / "video" / "image" / "multi", frames (video frames or
    images per item), px (frame or image side), batch (items)."""

    kind: str
    frames: int
    px: int
    batch: int


def tokens_per_frame(px: int, patch: int = PATCH) -> int:
    """Visual tokens of one frame on the stock video path: ceil(g / 2)^2."""
    return pooled_side(px // patch) ** 2


def video_sides(phase, frames: int) -> list[int]:
    """The sides a ``frames``-frame mixture video may take (at most ``MAX_VIDEO_TOKENS``)."""
    return [p for p in phase.ints("sides") if frames * tokens_per_frame(p) <= MAX_VIDEO_TOKENS]


def draw_layout(rng, phase, num_frames: int, frames_px: int, crop: int, pinpoints) -> Layout:
    """The layout of one mixture batch (``MixBatches``), from ``rng``."""
    r = rng.random()
    if r < phase.keep:
        return Layout("keep", num_frames, frames_px, phase.batch)
    if r < phase.keep + phase.images:
        px = int(rng.choice(phase.ints("image_sides")))
        kind, frames, per_item = "image", 1, anyres_tokens(px, crop, pinpoints)
    elif r < phase.keep + phase.images + phase.multi:
        frames, px = int(rng.choice(MULTI_IMAGES)), int(rng.choice(phase.ints("sides")))
        kind, per_item = "multi", frames * ((px // PATCH) ** 2 + 1)
    else:
        frames = int(rng.choice(phase.ints("frame_counts")))
        px = int(rng.choice(video_sides(phase, frames)))
        kind, per_item = "video", frames * tokens_per_frame(px)
    return Layout(kind, frames, px, int(np.clip(phase.tokens // per_item, 1, MAX_MIX_BATCH)))


class MixSuites:
    """The SynthVQA train suites the mixture draws from, made up front (clips decoded in
    parallel threads, before data workers fork): one per (kind, frames, px, medium)."""

    def __init__(self, clips, phase, cfg, crop: int):
        self.phase, self.cfg, self.clips = phase, cfg, clips
        self.families = phase.family_list()
        self.frame_families = tuple(f for f in self.families if f in FRAME_FAMILIES)
        sides = phase.ints("sides")
        jobs = [(c, p, MAX_CLIP_FRAMES) for c in clips for p in {*sides, cfg.frames_px}]
        jobs += [(c, p, IMAGE_CLIP_FRAMES) for c in clips for p in phase.ints("image_sides")]
        with ThreadPoolExecutor(max(1, min(8, cfg.workers))) as pool:
            decoded = list(pool.map(lambda job: load_clip(*job), jobs))
        self.lengths = {job: clip.num_frames for job, clip in zip(jobs, decoded, strict=True)}
        self.reference = math.isqrt(tokens_per_frame(cfg.frames_px))  # tokens per side
        self.suites: dict = {}
        for frames in phase.ints("frame_counts"):
            for px in video_sides(phase, frames):
                self._add("video", frames, px)
        self._add("keep", cfg.num_frames, cfg.frames_px)
        for px in phase.ints("image_sides"):
            self._add("image", 1, px, IMAGE_MEDIA[0])
        for px in sides:
            for media in IMAGE_MEDIA:
                self._add("multi", 1, px, media)

    def _add(self, kind: str, frames: int, px: int, media: str = VIDEO_MEDIA) -> None:
        longest = IMAGE_CLIP_FRAMES if kind == "image" else MAX_CLIP_FRAMES
        clips = [c for c in self.clips if self.lengths[(c, px, longest)] >= 2 * frames]
        scale = self.phase.shape_scale  # images: no pooling, shapes 2-4 tokens wide as they are
        if kind in ("keep", "video"):  # the width in pooled tokens of the reference side's
            scale *= self.reference / math.isqrt(tokens_per_frame(px))
        codes = [KINDS.index(kind), frames, px, (VIDEO_MEDIA, *IMAGE_MEDIA).index(media)]
        seed = np.random.SeedSequence([self.cfg.train_seed, SEED_OFFSET, *codes])
        self.suites[(kind, frames, px, media)] = SynthVQA(
            clips,
            "train",
            size=10**8,
            seed=int(seed.generate_state(1)[0]),
            num_frames=frames,
            frames_px=px,
            max_clip_frames=longest,
            families=self.families
            if frames >= MIN_FRAMES
            else self.frame_families or FRAME_FAMILIES,
            shape_scale=scale,
            variety=kind != "keep",
            media=media,
        )

    def __getitem__(self, key) -> SynthVQA:
        return self.suites[key]


class MixBatches(torch.utils.data.Dataset):
    """Mixture batch of step ``i`` (module docstring): ``Batch`` of one ``Layout``."""

    def __init__(self, suites: MixSuites, processor, model_config, open_ratio: float, seed: int):
        self.suites, self.processor, self.seed = suites, processor, seed
        self.crop = model_config.vision_config.image_size
        self.pinpoints = model_config.image_grid_pinpoints
        self.open_ratio = open_ratio
        self.pad = processor.tokenizer.pad_token_id

    def __len__(self) -> int:
        return 10**8 // SLOTS

    def layout(self, step: int) -> Layout:
        cfg, rng = self.suites.cfg, np.random.default_rng([self.seed, step])
        return draw_layout(
            rng, self.suites.phase, cfg.num_frames, cfg.frames_px, self.crop, self.pinpoints
        )

    def _items(self, suite, processor) -> TrainItems:
        return TrainItems(suite, processor, "mcq", self.open_ratio, suite.seed)

    def __getitem__(self, step: int) -> Batch:
        lay = self.layout(step)
        first = step * SLOTS
        if lay.kind in ("keep", "video"):
            spec = dataclasses.replace(self.processor.spec, frames_px=lay.px)
            proc = dataclasses.replace(self.processor, spec=spec)
            items = self._items(self.suites[(lay.kind, lay.frames, lay.px, VIDEO_MEDIA)], proc)
            return collate([items[first + j] for j in range(lay.batch)], self.pad)
        samples = [self._image_sample(lay, first + len(ORDINALS) * j) for j in range(lay.batch)]
        base = collate([(None, *s[2:]) for s in samples], self.pad)
        return base._replace(
            images=torch.cat([s[0] for s in samples]),
            image_sizes=torch.cat([s[1] for s in samples]),
            num_images=torch.tensor([len(s[0]) for s in samples]),
        )

    def _image_sample(self, lay: Layout, index: int):
        """(pixels [k, P, 3, S, S], sizes [k, 2], ids, start, targets, family) of one item at
        suite index ``index`` (and the next k - 1, a multi-image item's other images)."""
        if lay.kind == "image":
            suite = self.suites[("image", 1, lay.px, IMAGE_MEDIA[0])]
            item = suite[index]
            pixels = anyres_pixels(item.frames[0], self.crop, self.pinpoints)[None]
            counts = [anyres_tokens(lay.px, self.crop, self.pinpoints)]
        else:
            asked = int(np.random.default_rng([self.seed, index]).integers(lay.frames))
            suite = self.suites[("multi", 1, lay.px, IMAGE_MEDIA[1 + asked])]
            item = suite[index + asked]
            others = self.suites[("multi", 1, lay.px, IMAGE_MEDIA[0])]
            frames = [
                item.frames if m == asked else others[index + m].frames for m in range(lay.frames)
            ]
            pixels = torch.stack(frames)  # [k, 1, 3, S, S]: one crop each
            counts = [(lay.px // PATCH) ** 2 + 1] * lay.frames
        marker = self.processor.spec.image_token
        ids, start, targets = self._items(suite, self.processor).example(
            item, index, lambda text: self.processor.media_prompt_ids(text, marker, counts)
        )
        sizes = torch.tensor([[lay.px, lay.px]] * len(counts))
        return pixels, sizes, ids, start, targets, FAMILIES.index(item.family)
