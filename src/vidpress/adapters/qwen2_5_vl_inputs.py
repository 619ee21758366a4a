"""Qwen2.5-VL's preprocessing: frames sampled, resized and patchified as its video processor does.

``Qwen2VLVideoProcessor.sample_frames``: ``num_frames`` rounded to the temporal patch (2), or by
default ``fps`` (2.0) frames per second of video, clamped to [min_frames, max_frames] and floored
to the temporal patch; indices ``arange(0, n, n / k).int()``. Pixels: the stock video processor
when torchvision imports, else its steps with torch: ``smart_resize`` to multiples of patch x merge
(28) within [min_pixels, max_pixels] (with the optional ``cap_pixels_per_frame``), normalise, then
``patchify`` into [t*h*w, 3*2*14*14]. ``second_per_grid_ts`` is ``temporal_patch / sampled_fps``,
as ``Qwen2_5_VLProcessor`` computes it; the prompt holds t*h*w / merge^2 video placeholders.
"""

from __future__ import annotations

import math
import time

import torch

from vidpress.adapters.inputs import (
    Prepared,
    arange_indices,
    normalize,
    render_prompt,
    resample_mode,
    resize_frames,
    tokenize,
)
from vidpress.video_io import VideoInfo, read_frames

DEFAULT_FPS = 2.0
SIZE = {"shortest_edge": 128 * 28 * 28, "longest_edge": 28 * 28 * 768}  # pixels per frame


def temporal_patch(cfg: dict) -> int:
    """Frames per temporal patch of a video processor config ``cfg`` (Qwen2-VL's default: 2)."""
    return int(cfg.get("temporal_patch_size", 2))


def mm_token_types(ids: torch.Tensor, config) -> torch.Tensor:
    """Qwen2.5-VL's ``mm_token_type_ids`` of ``ids``: 2 on video tokens, 1 on image tokens (when
    the model ``config`` has an image token), 0 elsewhere."""
    types = (ids == config.video_token_id).int() * 2
    image_id = getattr(config, "image_token_id", None)
    return types + (ids == image_id).int() if image_id is not None else types


def qwen_num_frames(info: VideoInfo, cfg: dict, num_frames: int | None, fps: float | None) -> int:
    """``Qwen2VLVideoProcessor.sample_frames``'s frame count.

    ``num_frames`` (--frames) is rounded to the temporal patch (2) and must stay within the file's
    frames; without it, ``fps`` (--fps; default the config's, else 2) frames per second of video,
    clamped to [min_frames, max_frames] and to the file, floored to the temporal patch.
    """
    temporal = temporal_patch(cfg)
    total = info.total_frames
    if total < temporal:
        raise ValueError(
            f"{info.path} has {total} frame(s); Qwen2.5-VL samples frames in groups of its "
            f"temporal patch and needs at least {temporal}"
        )
    if num_frames is not None:
        count = round(num_frames / temporal) * temporal
        if num_frames > total or not 1 <= count <= total:
            raise ValueError(
                f"--frames must be in [1, {total}] for {info.path} ({total} frames) and, rounded "
                f"to a multiple of {temporal} for Qwen2.5-VL, stay in that range; got {num_frames} "
                f"(rounds to {count})"
            )
        return count
    fps = fps or cfg.get("fps") or DEFAULT_FPS
    min_frames = int(cfg.get("min_frames", 4))
    max_frames = int(cfg.get("max_frames", 768))
    max_frames = math.floor(min(max_frames, total) / temporal) * temporal
    count = total / (info.fps or 24) * fps
    count = min(max(count, min_frames), max_frames, total)
    count = math.floor(count / temporal) * temporal
    if count < 1:
        raise ValueError(
            f"--fps {fps:g} samples no frames of {info.path} ({total} frames); Qwen2.5-VL needs "
            f"at least {temporal}: raise --fps or pass --frames"
        )
    return count


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int):
    """Qwen2-VL's ``smart_resize``: sides multiple of ``factor``, area in [min, max] pixels."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"video aspect ratio must be below 200, got {width}x{height}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def patchify(x: torch.Tensor, patch: int, merge: int, temporal: int):
    """Qwen2-VL's ``patchify`` of one video [T, C, H, W] -> ([t*h*w, C*temporal*patch^2], t, h, w);
    frames are padded with copies of the last to a multiple of ``temporal``."""
    if pad := -x.shape[0] % temporal:
        x = torch.cat([x, x[-1:].expand(pad, -1, -1, -1)])
    frames, channels, height, width = x.shape
    t, h, w = frames // temporal, height // patch, width // patch
    p = x.view(t, temporal, channels, h // merge, merge, patch, w // merge, merge, patch)
    p = p.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return p.reshape(t * h * w, channels * temporal * patch * patch), t, h, w


def qwen_pixel_bounds(cfg: dict, max_pixels: int | None, num_frames: int) -> tuple[int, int]:
    """(min, max) pixels per frame of ``Qwen2VLVideoProcessor.resize``: the config's (or the
    ``max_pixels`` argument), with its optional ``cap_pixels_per_frame`` share of
    ``max_video_tokens`` (90% of them) per temporal patch."""
    size = cfg.get("size") or SIZE
    min_pixels = cfg.get("min_pixels") or size.get("shortest_edge")
    max_pixels = max_pixels or cfg.get("max_pixels") or size.get("longest_edge")
    if cfg.get("cap_pixels_per_frame"):
        factor = int(cfg.get("patch_size", 14)) * int(cfg.get("merge_size", 2))
        total = int(int(cfg.get("max_video_tokens", 128000)) * factor * factor * 0.9)
        share = total * temporal_patch(cfg) // num_frames
        max_pixels = max(min(max_pixels, share), int(min_pixels * 1.05))
    return min_pixels, max_pixels


def qwen_pixels(loaded, frames: torch.Tensor, max_pixels: int | None):
    """uint8 frames [T, 3, H, W] -> (pixel_values_videos [t*h*w, 3*2*14*14], (t, h, w), the
    resized uint8 frames): the stock video processor's, else its steps reproduced."""
    cfg, stock = loaded.video_config, loaded.video_processor
    if stock is not None:
        size = {"shortest_edge": stock.size.shortest_edge, "longest_edge": max_pixels}
        kwargs = {"size": size} if max_pixels else {}
        out = stock(videos=[frames], do_sample_frames=False, return_tensors="pt", **kwargs)
        t, h, w = out["video_grid_thw"][0].tolist()
        side = stock.patch_size
        resized = resize_frames(frames, h * side, w * side, resample_mode(cfg))
        return out["pixel_values_videos"], (t, h, w), resized
    patch, merge = int(cfg.get("patch_size", 14)), int(cfg.get("merge_size", 2))
    temporal = temporal_patch(cfg)
    min_pixels, max_pixels = qwen_pixel_bounds(cfg, max_pixels, len(frames))
    height, width = smart_resize(*frames.shape[-2:], patch * merge, min_pixels, max_pixels)
    resized = resize_frames(frames, height, width, resample_mode(cfg))
    flat, t, h, w = patchify(normalize(resized, cfg), patch, merge, temporal)
    return flat, (t, h, w), resized


def prepare_video(loaded, info, question: str, count: int, max_pixels: int | None) -> Prepared:
    """``count`` frames of ``info``'s file and ``question`` as Qwen2.5-VL inputs."""
    cfg, config = loaded.video_config, loaded.model.config
    merge = int(cfg.get("merge_size", 2))
    temporal = temporal_patch(cfg)
    indices = arange_indices(info.total_frames, count)
    t0 = time.perf_counter()
    frames = read_frames(info.path, indices)
    decode_seconds = time.perf_counter() - t0
    flat, (t, h, w), frames = qwen_pixels(loaded, frames, max_pixels)
    height, width = frames.shape[-2:]
    sampled_fps = len(indices) / info.total_frames * (info.fps or 24)
    video_id = config.video_token_id
    token = loaded.tokenizer.convert_ids_to_tokens(video_id)
    text = render_prompt(loaded, question, token)
    text = text.replace(token, token * (t * h * w // merge**2))
    ids = tokenize(loaded.tokenizer, text)
    return Prepared(
        inputs={
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "pixel_values_videos": flat,
            "video_grid_thw": torch.tensor([[t, h, w]]),
            "second_per_grid_ts": torch.tensor([temporal / sampled_fps]),
            "mm_token_type_ids": mm_token_types(ids, config),
        },
        info=info,
        frames=frames[::temporal],
        frame_indices=indices,
        grid=(h // merge, w // merge),
        resolution=(height, width),
        question=question,
        prompt_tokens=int(ids.shape[1]),
        decode_seconds=decode_seconds,
    )
