"""LLaVA-OneVision's preprocessing: frames sampled and resized as its video processor does.

``LlavaOnevisionVideoProcessor`` has ``do_sample_frames=False``: it uses the frames it is given,
and the reference pipelines (the model card, lmms-eval) give it
``np.linspace(0, n-1, num_frames, dtype=int)`` (default 32 frames). With ``do_sample_frames`` set
in the config, ``BaseVideoProcessor.sample_frames``: ``arange(0, n, n / num_frames).int()``.
Pixels: the stock video processor when torchvision imports, else its steps with torch: resize to
``size`` (384 x 384), normalise (``adapters.inputs``). The prompt holds frames x ceil(g/2)^2 + 1
video placeholders (the pooled grid plus one newline).
"""

from __future__ import annotations

import math
import time

import torch

from vidpress.adapters.inputs import (
    Prepared,
    arange_indices,
    config_value,
    linspace_indices,
    normalize,
    render_prompt,
    resample_mode,
    resize_frames,
    tokenize,
)
from vidpress.video_io import read_frames


def pooled_side(patches: int) -> int:
    """Tokens per side of a frame after LLaVA-OneVision's 2x2 bilinear video pooling of its
    ``patches`` x ``patches`` grid: ceil(patches / 2)."""
    return math.ceil(patches / 2)


def ov_resize_to(cfg: dict, height: int, width: int) -> tuple[int, int]:
    """The output size of LLaVA-OV's video processor for frames of ``height`` x ``width``:
    ``size`` {height, width}, or {shortest_edge} (aspect kept, the long side truncated)."""
    size = cfg.get("size") or {"height": 384, "width": 384}
    if "height" in size and "width" in size:
        return size["height"], size["width"]
    if set(size) == {"shortest_edge"}:
        short = size["shortest_edge"]
        if width <= height:
            return int(short * height / width), short
        return short, int(short * width / height)
    raise ValueError(
        f"video processor size must be {{height, width}} or {{shortest_edge}} without "
        f"torchvision, got {size}"
    )


def ov_pixels(loaded, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 frames [T, 3, H, W] -> (pixel_values_videos [1, T, 3, h, w], the resized uint8
    frames [T, 3, h, w]): the stock video processor's, else its steps reproduced."""
    cfg, stock = loaded.video_config, loaded.video_processor
    if stock is not None:
        out = stock(videos=[frames], do_sample_frames=False, return_tensors="pt")
        pixels = out["pixel_values_videos"]
        return pixels, resize_frames(frames, *pixels.shape[-2:], resample_mode(cfg))
    if cfg.get("do_resize", True):
        height, width = ov_resize_to(cfg, *frames.shape[-2:])
        frames = resize_frames(frames, height, width, resample_mode(cfg))
    return normalize(frames, cfg)[None], frames


def prepare_video(loaded, info, question: str, count: int) -> Prepared:
    """``count`` frames of ``info``'s file and ``question`` as LLaVA-OneVision inputs."""
    cfg, config = loaded.video_config, loaded.model.config
    if cfg.get("do_sample_frames"):
        indices = arange_indices(info.total_frames, count)
    else:
        indices = linspace_indices(info.total_frames, count)
    t0 = time.perf_counter()
    frames = read_frames(info.path, indices)  # unique: count <= total frames
    decode_seconds = time.perf_counter() - t0
    pixels, frames = ov_pixels(loaded, frames)
    height, width = frames.shape[-2:]
    vision = config.vision_config
    patches = vision.image_size // vision.patch_size
    side = pooled_side(patches)
    video_id = config_value(config, "video_token_id", "video_token_index")
    token = loaded.tokenizer.convert_ids_to_tokens(video_id)
    text = render_prompt(loaded, question, token)
    text = text.replace(token, token * (len(indices) * side * side + 1))
    ids = tokenize(loaded.tokenizer, text)
    return Prepared(
        inputs={
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "pixel_values_videos": pixels,
        },
        info=info,
        frames=frames,
        frame_indices=indices,
        grid=(side, side),
        resolution=(height, width),
        question=question,
        prompt_tokens=int(ids.shape[1]),
        decode_seconds=decode_seconds,
    )
