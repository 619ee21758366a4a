"""Answer a question about a video file with a local Video-LLM checkpoint, with or without a press.

Used by ``vidpress run``, ``vidpress demo``, ``vidpress viz`` and the lmms-eval plugin, with
``vidpress.loading.load_model(dir)`` (a checkpoint of a family of ``adapters.registry``):

- ``prepare(loaded, video, question)``: decode the video with PyAV, sample and resize frames the
  way the family's own processor does (its ``Family.prepare``: ``adapters/<family>_inputs.py``,
  the testbed's ``testbed/processor.py``), build the chat prompt, return the model inputs.
- ``generate(loaded, prepared, press)``: greedy answer, ``run.stats`` of the press, timings.
- ``flops(loaded, prepared, press, decode_tokens)``: the analytic FLOPs of the call.

Frame sampling: vidpress's, as the stock pipelines sample (transformers 5.17), with the settings
of the checkpoint's ``video_preprocessor_config.json`` (else ``preprocessor_config.json``), else
the class defaults (``Family.sample_count``). Only the sampled frames are decoded; the processor
is then called with ``do_sample_frames=False``. A clip with fewer frames than the default count
gives all of them, with a note (``Prepared.notes``); fewer than an explicit ``num_frames``
(--frames) is a ValueError naming --frames, the file and its frame count (``frame_count``).
``--fps`` must be finite and > 0.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vidpress.adapters.inputs import Prepared
from vidpress.adapters.registry import get_family
from vidpress.loading import LoadedModel, inspect_model_dir, read_video_config
from vidpress.video_io import VideoInfo, probe_video

# ---------------------------------------------------------------------------- frame sampling


def check_sampling(num_frames: int | None = None, fps: float | None = None) -> None:
    """ValueError naming --frames or --fps unless ``num_frames`` is None or an integer >= 1 and
    ``fps`` is None or a finite number > 0."""
    if num_frames is not None and (
        isinstance(num_frames, bool)
        or not isinstance(num_frames, numbers.Integral)
        or num_frames < 1
    ):
        raise ValueError(f"--frames must be an integer >= 1, got {num_frames!r}")
    if fps is not None and (
        isinstance(fps, bool)
        or not isinstance(fps, numbers.Real)
        or not math.isfinite(fps)
        or fps <= 0
    ):
        raise ValueError(f"--fps must be a finite number > 0 (frames per second), got {fps!r}")


def frame_count(
    family: str,
    video_config: dict,
    info: VideoInfo,
    num_frames: int | None = None,
    fps: float | None = None,
    cap_frames: bool = False,
) -> tuple[int, list[str]]:
    """(frames to sample from ``info``'s file, notes) for a checkpoint of ``family`` with
    ``video_config`` (``loading.read_video_config``): ``num_frames`` (--frames), else the
    family's default (``Family.sample_count``). Needs no loaded model, so commands check it
    before loading one.

    A clip with fewer frames than the default count gives all of them and a note saying so; with
    fewer than an explicit ``num_frames``, a ValueError naming --frames, the file and its frame
    count (with ``cap_frames``: all its frames and a note).
    """
    check_sampling(num_frames, fps)
    total, cfg = info.total_frames, video_config
    if cap_frames and num_frames is not None and num_frames > total:
        temporal = get_family(family).temporal_patch(cfg)
        count, _ = frame_count(family, cfg, info, max(total - total % temporal, 1), fps)
        return count, [
            f"{info.path} has {total} frames, fewer than the {num_frames} asked for: sampling "
            f"{count}"
        ]
    return get_family(family).sample_count(cfg, info, num_frames, fps)


def check_run_inputs(model_dir, videos: list, num_frames: int | None, fps: float | None) -> None:
    """A ValueError for bad sampling arguments, a folder that is no supported checkpoint, or a
    video whose frames do not fit, before any weights load (``run`` and ``viz`` call it)."""
    check_sampling(num_frames, fps)
    family, _ = inspect_model_dir(model_dir)
    video_config = read_video_config(Path(model_dir))
    for video in videos:
        frame_count(family, video_config, probe_video(video), num_frames, fps)


# ---------------------------------------------------------------------------- inputs


def prepare(
    loaded: LoadedModel,
    video,
    question: str,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    max_pixels: int | None = None,
    cap_frames: bool = False,
) -> Prepared:
    """Decode ``video``, sample and preprocess its frames, build the prompt; inputs on the device.

    num_frames: frames to sample (default: the family's, see the module doc); fps: Qwen2.5-VL's
    frames per second when ``num_frames`` is None; max_pixels: Qwen2.5-VL's per-frame pixel cap
    (default: the checkpoint's). A clip shorter than ``num_frames`` is a ValueError, or with
    ``cap_frames`` gives all its frames; shorter than the default count, it gives all its frames;
    both with a note in ``Prepared.notes`` (:func:`frame_count`).
    """
    check_sampling(num_frames, fps)
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a non-empty text")
    start = time.perf_counter()
    info = probe_video(video)
    count, notes = frame_count(
        loaded.family, loaded.video_config, info, num_frames, fps, cap_frames
    )
    prepared = get_family(loaded.family).prepare(loaded, info, question, count, max_pixels)
    prepared.notes = notes
    dtype, device = loaded.dtype, loaded.device
    prepared.inputs = {
        k: (v.to(device, dtype) if v.is_floating_point() else v.to(device))
        if torch.is_tensor(v)
        else v
        for k, v in prepared.inputs.items()
    }
    prepared.preprocess_seconds = time.perf_counter() - start - prepared.decode_seconds
    return prepared


# ---------------------------------------------------------------------------- generation


class _Clock:
    """A generate() streamer: times the first new token and calls ``on_token(count)``."""

    def __init__(self, on_token=None):
        self.on_token = on_token
        self.start = time.perf_counter()
        self.first = None
        self.count = 0
        self._prompt_seen = False

    def put(self, value):
        if not self._prompt_seen:  # generate() first passes the prompt
            self._prompt_seen = True
            return
        if self.first is None:
            self.first = time.perf_counter()
        self.count += int(value.numel()) if torch.is_tensor(value) else 1
        if self.on_token is not None:
            self.on_token(self.count)

    def end(self):
        pass


@dataclass
class Answer:
    """One generated answer: text, the press's stats for the call (None without a press), timings
    in seconds (``prefill``: to the first new token; ``decode``: the rest)."""

    text: str
    new_tokens: int
    stats: Any
    timings: dict


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def generate(
    loaded: LoadedModel,
    prepared: Prepared,
    press=None,
    *,
    max_new_tokens: int = 32,
    on_token=None,
) -> Answer:
    """Greedy answer to ``prepared``; with ``press`` the call runs inside ``with press(model)``."""
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 1
    ):
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    model, tokenizer = loaded.model, loaded.tokenizer
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id
    kwargs = dict(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=pad,
    )
    clock = _Clock(on_token)
    device = loaded.device
    stats = None
    _sync(device)
    clock.start = time.perf_counter()
    with torch.inference_mode():
        if press is None:
            out = model.generate(**prepared.inputs, streamer=clock, **kwargs)
        else:
            with press(model) as run:
                out = model.generate(**prepared.inputs, streamer=clock, **kwargs)
            stats = run.stats[0]
    _sync(device)
    end = time.perf_counter()
    new = out[0, prepared.inputs["input_ids"].shape[1] :]
    text = tokenizer.decode(
        new, skip_special_tokens=True, clean_up_tokenization_spaces=False
    ).strip()
    first = clock.first or end
    timings = {
        "prefill": first - clock.start,
        "decode": end - first,
        "generate": end - clock.start,
        "decode_tokens_per_s": (len(new) - 1) / (end - first)
        if len(new) > 1 and end > first
        else None,
    }
    if stats is not None:
        timings["compression_outer"] = stats.outer_seconds
        timings["compression_inner"] = stats.inner_seconds
    return Answer(text, int(len(new)), stats, timings)


def stats_dict(stats, sample: int = 0) -> dict | None:
    """JSON-ready ``run.stats`` entry of one sample (one video)."""
    if stats is None:
        return None
    out = {
        "tokens_in": stats.tokens_in[sample],
        "kept_outer": stats.kept_outer[sample],
        "kept_inner": None if stats.kept_inner is None else stats.kept_inner[sample],
        "kept_per_frame": stats.kept_per_frame[sample],
        "kept_per_frame_inner": (
            None if stats.kept_per_frame_inner is None else stats.kept_per_frame_inner[sample]
        ),
        "outer_seconds": stats.outer_seconds,
        "inner_seconds": stats.inner_seconds,
        "kept_positions": stats.kept_positions[sample].tolist(),
        "kept_sizes": stats.kept_sizes[sample].tolist(),
    }
    return out


# ---------------------------------------------------------------------------- FLOPs


def flops_spec(loaded: LoadedModel, prepared: Prepared):
    """The analytic FLOPs ``ModelSpec`` of the loaded model (its family's ``flops_spec``), at the
    frames it was given."""
    spec = get_family(loaded.family).flops_spec(loaded.model.config, str(loaded.path))
    tokens_per_frame = prepared.visual_tokens // prepared.num_frames
    return dataclasses.replace(spec, frames=prepared.num_frames, tokens_per_frame=tokens_per_frame)


def flops(loaded: LoadedModel, prepared: Prepared, press, decode_tokens: int) -> dict:
    """{"paper": tflops, "exact": tflops} of this call (FLOPs of ``vidpress flops``)."""
    from vidpress.metrics.flops import count_flops

    spec = flops_spec(loaded, prepared)
    text_tokens = prepared.prompt_tokens - prepared.visual_tokens
    out = {}
    for convention in ("paper", "exact"):
        result = count_flops(
            spec,
            convention=convention,
            text_tokens=max(text_tokens, 0),
            decode_tokens=decode_tokens,
            press=press,
        )
        out[convention] = {"tflops": result.tflops, "llm_visual_tokens": result.tokens.outer_tokens}
    return out


def print_notes(notes: list[str], stream=None) -> None:
    """Each note on one line of ``stream`` (default stderr): ``vidpress: note: ...``."""
    import sys

    for note in notes:
        print(f"vidpress: note: {note}", file=stream or sys.stderr, flush=True)
