"""Answer a question about a video file with a local Video-LLM checkpoint, with or without a press.

Used by ``vidpress run``, ``vidpress demo``, ``vidpress viz`` and the lmms-eval plugin:

- ``load_model(dir)``: a local transformers checkpoint of a supported family, chosen from its
  ``config.json`` before any weight is read: ``testbed`` (the project's LLaVA-OneVision, a folder
  written by ``build_testbed``), ``llava_onevision`` (``LlavaOnevisionForConditionalGeneration``,
  also LLaVA-Video checkpoints converted to it) or ``qwen2_5_vl``.
- ``prepare(loaded, video, question)``: decode the video with PyAV, sample and resize frames the
  way the family's own processor does, build the chat prompt, return the model inputs.
- ``generate(loaded, prepared, press)``: greedy answer, ``run.stats`` of the press, timings.

Frame sampling: vidpress's, as the stock pipelines sample (transformers 5.17). The settings
are read from the checkpoint's ``video_preprocessor_config.json`` (else
``preprocessor_config.json``), else the class defaults:

- testbed: ``num_frames`` (default 32) frames uniformly over the file (``round(linspace(0, n-1))``),
  shorter side scaled to the model resolution and centre-cropped (``testbed.video.decode_clip``,
  what SynthVQA feeds it), then ``TestbedProcessor``.
- llava_onevision: ``LlavaOnevisionVideoProcessor`` has ``do_sample_frames=False``: it uses the
  frames it is given, and the reference pipelines (the model card, lmms-eval) give it
  ``np.linspace(0, n-1, num_frames, dtype=int)`` (default 32 frames). With ``do_sample_frames`` set
  in the config, ``BaseVideoProcessor.sample_frames``: ``arange(0, n, n / num_frames).int()``.
- qwen2_5_vl: ``Qwen2VLVideoProcessor.sample_frames``: ``num_frames`` rounded to the temporal patch
  (2), or by default ``fps`` (2.0) frames per second of video, clamped to [min_frames, max_frames]
  and floored to the temporal patch; indices ``arange(0, n, n / k).int()``.

Only the sampled frames are decoded; the processor is then called with ``do_sample_frames=False``.
A clip with fewer frames than the default count gives all of them, with a note
(``Prepared.notes``); fewer than an explicit ``num_frames`` (--frames) is a ValueError naming
--frames, the file and its frame count (``frame_count``). ``--fps`` must be finite and > 0.

Pixels, two paths (``LoadedModel.video_processor`` says which):

- torchvision imports: the checkpoint's stock video processor (``AutoProcessor``'s, else
  ``AutoVideoProcessor``'s, else the family's class defaults) turns the decoded uint8 frames (on
  the CPU) into ``pixel_values_videos`` (and Qwen's ``video_grid_thw``): the stock inputs.
- no torchvision: its steps reproduced with torch. LLaVA-OV: resize to ``size`` (384 x 384), Qwen:
  ``smart_resize`` to multiples of patch x merge (28) within [min_pixels, max_pixels] (with the
  optional ``cap_pixels_per_frame``), then ``patchify`` into [t*h*w, 3*2*14*14]. The resize is
  torchvision 0.29's ``resize_image`` rule for uint8 on the frames' device
  (``native_uint8_resize``): on CPU torch's antialiased uint8 kernel (bicubic; bilinear with
  AVX2/AVX512 or on ARM), elsewhere interpolation of float values, clamped and rounded; then the
  fused ``(x - 255 mean) / (255 std)`` of transformers' ``rescale_and_normalize``.

On bikes.mp4 at the class defaults (32 frames at 384 x 384; Qwen 20 frames at 280 x 644) the
no-torchvision path equals the stock processors bit for bit on CPU (AVX2); interpolating float
values instead (torchvision's rule on CUDA, vidpress's before) changes 14.0% (OV) and 12.0%
(Qwen) of the normalised values, by up to 0.057 (``benchmarks/pixel_parity.py``, torch 2.14.1,
torchvision 0.29.1, transformers 5.17.0, 2026-12-02; ``tests/test_pixels.py`` checks both paths
on the tiny checkpoints). Qwen's second_per_grid_ts is ``temporal_patch / sampled_fps``, as
``Qwen2_5_VLProcessor`` computes it.

Prompts: the checkpoint's chat template (the stock processor's when ``AutoProcessor`` loads, else
the tokenizer's) renders one user turn (video, then the question); the single video placeholder is
expanded as the stock processor does (OV: frames x ceil(g/2)^2 + 1; Qwen: t*h*w / merge^2).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import numbers
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vidpress.video_io import VideoInfo, one_line, probe_video, read_frames

FAMILIES = ("testbed", "llava_onevision", "qwen2_5_vl")
MODEL_CLASSES = {
    "llava_onevision": "LlavaOnevisionForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
}
SUPPORTED_TEXT = (
    "LLaVA-OneVision (LlavaOnevisionForConditionalGeneration, model_type 'llava_onevision'; also "
    "LLaVA-Video checkpoints converted to it, and the vidpress testbed) and Qwen2.5-VL "
    "(Qwen2_5_VLForConditionalGeneration, model_type 'qwen2_5_vl')"
)
DEFAULT_FRAMES = {"testbed": 32, "llava_onevision": 32, "qwen2_5_vl": None}
QWEN_DEFAULT_FPS = 2.0
QWEN_SIZE = {"shortest_edge": 128 * 28 * 28, "longest_edge": 28 * 28 * 768}  # pixels per frame
VIDEO_CONFIG_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")
# transformers' OPENAI_CLIP_MEAN / STD (the video processors' class defaults)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL codes used by the processors' configs
VIDEO_PROCESSOR_CLASSES = {
    "llava_onevision": "LlavaOnevisionVideoProcessor",
    "qwen2_5_vl": "Qwen2VLVideoProcessor",
}


# ---------------------------------------------------------------------------- frame sampling


def linspace_indices(total: int, num: int) -> list[int]:
    """``np.linspace(0, total - 1, num, dtype=int)`` (LLaVA-OV's reference sampling)."""
    return np.linspace(0, total - 1, num, dtype=int).tolist()


def arange_indices(total: int, num: int) -> list[int]:
    """transformers' ``sample_frames``: ``torch.arange(0, total, total / num).int()``."""
    return torch.arange(0, total, total / num).int().tolist()


def qwen_num_frames(info: VideoInfo, cfg: dict, num_frames: int | None, fps: float | None) -> int:
    """``Qwen2VLVideoProcessor.sample_frames``'s frame count.

    ``num_frames`` (--frames) is rounded to the temporal patch (2) and must stay within the file's
    frames; without it, ``fps`` (--fps; default the config's, else 2) frames per second of video,
    clamped to [min_frames, max_frames] and to the file, floored to the temporal patch.
    """
    temporal = int(cfg.get("temporal_patch_size", 2))
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
    fps = fps or cfg.get("fps") or QWEN_DEFAULT_FPS
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
    ``video_config`` (``read_video_config``): ``num_frames`` (--frames), else the family's default
    (see the module doc). Needs no loaded model, so commands check it before loading one.

    A clip with fewer frames than the default count gives all of them and a note saying so; with
    fewer than an explicit ``num_frames``, a ValueError naming --frames, the file and its frame
    count (with ``cap_frames``: all its frames and a note).
    """
    check_sampling(num_frames, fps)
    total, cfg = info.total_frames, video_config
    if cap_frames and num_frames is not None and num_frames > total:
        temporal = int(cfg.get("temporal_patch_size", 2)) if family == "qwen2_5_vl" else 1
        count, _ = frame_count(family, cfg, info, max(total - total % temporal, 1), fps)
        return count, [
            f"{info.path} has {total} frames, fewer than the {num_frames} asked for: sampling "
            f"{count}"
        ]
    if family == "qwen2_5_vl":
        return qwen_num_frames(info, cfg, num_frames, fps), []
    if num_frames is None:
        default = DEFAULT_FRAMES[family]
        if family == "llava_onevision":
            default = cfg.get("num_frames") or default
        if default > total:
            return total, [
                f"{info.path} has {total} frames, fewer than the default {default}: sampling all "
                f"{total} (--frames sets the count)"
            ]
        return default, []
    if num_frames > total:
        raise ValueError(
            f"--frames must be in [1, {total}] for {info.path} ({total} frames), got {num_frames}"
        )
    return num_frames, []


# ---------------------------------------------------------------------------- pixels


def native_uint8_resize(device: torch.device, mode: str) -> bool:
    """Whether torchvision 0.29's ``resize_image`` resizes uint8 with torch's uint8 kernel here
    (``_do_native_uint8_resize_on_cpu``): on CPU, bicubic always, bilinear with AVX2/AVX512 or
    on ARM; elsewhere (CUDA) it resizes float values."""
    if device.type != "cpu":
        return False
    if mode == "bilinear":
        simd = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
        return simd or platform.machine() in ("aarch64", "arm64")
    return mode == "bicubic"


def resize_frames(frames: torch.Tensor, height: int, width: int, mode: str = "bicubic"):
    """uint8 [T, 3, H, W] -> uint8 [T, 3, height, width], as torchvision resizes uint8 tensors on
    their device: torch's antialiased uint8 kernel where ``native_uint8_resize``, else antialiased
    interpolation on float values, clamped (bicubic) and rounded."""
    if tuple(frames.shape[-2:]) == (height, width):
        return frames
    size = (height, width)
    if native_uint8_resize(frames.device, mode):
        return F.interpolate(frames, size=size, mode=mode, antialias=True, align_corners=False)
    x = F.interpolate(frames.float(), size=size, mode=mode, antialias=True, align_corners=False)
    if mode == "bicubic":
        x = x.clamp_(0, 255)
    return x.round_().to(torch.uint8)


def normalize(frames: torch.Tensor, cfg: dict) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> float32, rescaled and normalised with the config's mean/std the
    way transformers' ``rescale_and_normalize`` does (one fused (x - 255 mean) / (255 std))."""
    do_rescale, do_normalize = cfg.get("do_rescale", True), cfg.get("do_normalize", True)
    factor = float(cfg.get("rescale_factor", 1 / 255))
    if not do_normalize:
        return frames * factor if do_rescale else frames.float()
    mean = torch.tensor(cfg.get("image_mean", CLIP_MEAN))
    std = torch.tensor(cfg.get("image_std", CLIP_STD))
    if do_rescale:
        mean, std = mean * (1.0 / factor), std * (1.0 / factor)
    return frames.float().sub(mean.view(3, 1, 1)).div_(std.view(3, 1, 1))


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


# ---------------------------------------------------------------------------- models


class CheckpointError(ValueError):
    """A checkpoint folder with a missing or unreadable file; the one-line message names it."""


WEIGHTS_FILE, WEIGHTS_INDEX = "model.safetensors", "model.safetensors.index.json"
TORCH_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
# the JSON files transformers (and the testbed processor) read from a checkpoint folder
JSON_FILES = (
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "chat_template.json",
    "processor_config.json",
    *VIDEO_CONFIG_FILES,
)


def read_json(path: Path):
    """The JSON value in ``path``; CheckpointError naming it when it is not valid JSON."""
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"invalid JSON in {path}: {one_line(err)}") from err


def check_safetensors(path: Path) -> None:
    """CheckpointError naming ``path`` unless it is a safetensors file whose header reads and
    whose size is the one its header says (a truncated download fails)."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise CheckpointError(f"missing weights file {path}")
    try:
        with safe_open(str(path), "pt"):
            pass
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"corrupt weights file {path}: {one_line(err)}") from err


def check_checkpoint_files(model_dir) -> tuple[str, dict]:
    """(family, raw config) of a checkpoint folder whose files loading needs are there and read.

    Checks, without loading any weight: config.json (``inspect_model_dir``); the weights,
    ``model.safetensors`` or ``model.safetensors.index.json`` and every shard it names (each
    header read, each size as its header says; PyTorch ``.bin`` weights are only looked for); a
    tokenizer (one of ``TOKENIZER_FILES``); every JSON file of ``JSON_FILES`` present (and the
    testbed's processor file) parses. Raises CheckpointError (a ValueError) naming the file.
    """
    family, raw = inspect_model_dir(model_dir)
    path = Path(model_dir)
    if (path / WEIGHTS_FILE).is_file():
        check_safetensors(path / WEIGHTS_FILE)
    elif (path / WEIGHTS_INDEX).is_file():
        index = read_json(path / WEIGHTS_INDEX)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"invalid {path / WEIGHTS_INDEX}: no weight_map")
        for shard in sorted(set(weight_map.values())):
            check_safetensors(path / shard)
    elif not any((path / name).is_file() for name in TORCH_WEIGHTS):
        raise CheckpointError(
            f"no model weights in {path}: expected {WEIGHTS_FILE}, {WEIGHTS_INDEX} with its "
            f"shards, or {TORCH_WEIGHTS[0]}"
        )
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(
            f"no tokenizer in {path}: expected one of {', '.join(TOKENIZER_FILES)}"
        )
    names = list(JSON_FILES)
    if family == "testbed":
        from vidpress.testbed.processor import PROCESSOR_FILE

        names.append(PROCESSOR_FILE)
    for name in names:
        if (path / name).is_file():
            read_json(path / name)
    return family, raw


def inspect_model_dir(model_dir) -> tuple[str, dict]:
    """(family, raw config) of a local checkpoint folder, without loading weights.

    Raises ValueError for a missing folder, a folder without config.json, or an unsupported model.
    """
    path = Path(model_dir)
    if not path.is_dir():
        raise ValueError(f"model directory not found: {path}")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"no config.json in {path}: not a transformers checkpoint folder")
    raw = read_json(config_file)
    if not isinstance(raw, dict):
        raise CheckpointError(
            f"invalid {config_file}: a JSON object expected, got {type(raw).__name__}"
        )
    model_type = raw.get("model_type")
    if model_type == "llava_onevision":
        from vidpress.testbed.processor import PROCESSOR_FILE

        return ("testbed" if (path / PROCESSOR_FILE).is_file() else "llava_onevision"), raw
    if model_type == "qwen2_5_vl":
        return "qwen2_5_vl", raw
    arch = ", ".join(raw.get("architectures") or []) or "unknown architecture"
    raise ValueError(
        f"unsupported model in {path} (model_type {model_type!r}, {arch}); vidpress supports "
        f"{SUPPORTED_TEXT}"
    )


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but no CUDA device is available")
    return device


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    choices = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in choices:
        raise ValueError(f"dtype must be one of auto, {', '.join(choices)}, got {dtype!r}")
    return choices[dtype]


@dataclass
class LoadedModel:
    """A model, its family and what turns (video, question) into its inputs."""

    model: Any
    family: str
    path: Path
    tokenizer: Any
    processor: Any = None  # TestbedProcessor (testbed) or the stock processor when it loads
    video_config: dict = field(default_factory=dict)
    chat_template: str | None = None
    video_processor: Any = None  # the stock video processor when torchvision imports

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


def read_video_config(path: Path) -> dict:
    """The checkpoint's video processor settings (first file of ``VIDEO_CONFIG_FILES`` found)."""
    for name in VIDEO_CONFIG_FILES:
        if (path / name).is_file():
            return read_json(path / name)
    return {}


def stock_video_processor(family: str, path: Path, processor=None):
    """The checkpoint's stock video processor (``processor.video_processor``, else the one its
    config files name, else the family's class defaults); None when torchvision does not import
    (the stock processors need it)."""
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):  # absent, or built for another torch
        return None
    import transformers

    if processor is not None:
        return processor.video_processor
    cfg = read_video_config(path)
    # A fresh size dict: transformers 5.17's Qwen2VLVideoProcessor writes min_pixels/max_pixels
    # into its class default when given none, which the next checkpoint would inherit.
    kwargs = {"size": dict(cfg.get("size") or QWEN_SIZE)} if family == "qwen2_5_vl" else {}
    if not cfg:
        return getattr(transformers, VIDEO_PROCESSOR_CLASSES[family])(**kwargs)
    try:
        return transformers.AutoVideoProcessor.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot load the video processor of {path}: {one_line(err)}") from err


def _chat_template(path: Path, tokenizer) -> str | None:
    if getattr(tokenizer, "chat_template", None):
        return None  # the tokenizer renders it
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text()
    if (path / "chat_template.json").is_file():
        return read_json(path / "chat_template.json").get("chat_template")
    return None


@contextlib.contextmanager
def _loading_errors(what: str, path: Path):
    """transformers' OSError / ValueError while loading ``what`` becomes a CheckpointError
    naming the folder."""
    try:
        yield
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot load {what} in {path}: {one_line(err)}") from err


def load_model(model_dir, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load a supported local checkpoint (stock transformers classes) in eval mode.

    The folder's files are checked first (``check_checkpoint_files``); a file transformers still
    cannot load is a CheckpointError naming the folder.
    """
    family, raw = check_checkpoint_files(model_dir)
    path = Path(model_dir)
    device_ = resolve_device(device)
    dtype_ = resolve_dtype(dtype, device_)
    import transformers

    cls = getattr(transformers, MODEL_CLASSES.get(family, MODEL_CLASSES["llava_onevision"]))
    with _loading_errors("the model", path):
        model = cls.from_pretrained(path, dtype=dtype_).to(device_).eval()
    if family == "testbed":
        from vidpress.testbed.processor import TestbedProcessor

        with _loading_errors("the tokenizer", path):
            processor = TestbedProcessor.from_pretrained(path)
        return LoadedModel(model, family, path, processor.tokenizer, processor)
    processor = None
    try:  # the stock processor needs torchvision for its video part; use it when it loads
        processor = transformers.AutoProcessor.from_pretrained(path)
        tokenizer = processor.tokenizer
    except Exception:
        with _loading_errors("the tokenizer", path):
            tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    template = None if processor is not None else _chat_template(path, tokenizer)
    video_config = read_video_config(path)
    stock = stock_video_processor(family, path, processor)
    return LoadedModel(model, family, path, tokenizer, processor, video_config, template, stock)


# ---------------------------------------------------------------------------- prompts and inputs


@dataclass
class Prepared:
    """Model inputs for one (video, question) and what the visualisations need.

    frames:          uint8 [T', 3, H, W], one picture per LLM token frame, as the model sees it
                     (Qwen2.5-VL: the first frame of each 2-frame temporal patch)
    frame_indices:   frame numbers in the file, one per sampled frame
    grid:            (rows, cols) of LLM tokens per token frame
    visual_tokens:   T' x rows x cols
    notes:           one-line notes on the sampling (a clip with fewer frames than asked)
    """

    inputs: dict
    info: VideoInfo
    frames: torch.Tensor
    frame_indices: list[int]
    grid: tuple[int, int]
    resolution: tuple[int, int]
    question: str
    prompt_tokens: int
    decode_seconds: float = 0.0
    preprocess_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def visual_tokens(self) -> int:
        return self.frames.shape[0] * self.grid[0] * self.grid[1]

    @property
    def num_frames(self) -> int:
        return len(self.frame_indices)


CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json", "tokenizer_config.json")


@contextlib.contextmanager
def chat_template_errors(loaded: LoadedModel):
    """A chat template that fails to render becomes a one-line ValueError naming its file (the
    first of ``CHAT_TEMPLATE_FILES`` in the checkpoint folder, else the folder)."""
    import jinja2

    try:
        yield
    except jinja2.TemplateError as err:
        files = [loaded.path / name for name in CHAT_TEMPLATE_FILES]
        source = next((f for f in files if f.is_file()), loaded.path)
        raise ValueError(f"cannot render the chat template in {source}: {one_line(err)}") from err


def render_prompt(loaded: LoadedModel, question: str, video_token: str) -> str:
    """The chat-formatted prompt text with one ``video_token``, ready for expansion."""
    messages = [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}
    ]
    renderer = loaded.processor if loaded.processor is not None else loaded.tokenizer
    kwargs = {"chat_template": loaded.chat_template} if loaded.chat_template else {}
    if loaded.processor is not None or getattr(loaded.tokenizer, "chat_template", None) or kwargs:
        with chat_template_errors(loaded):
            text = renderer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False, **kwargs
            )
    else:
        text = f"{video_token}\n{question}\n"
    if text.count(video_token) != 1:
        raise ValueError(
            f"the chat template of {loaded.path} rendered {text.count(video_token)} video "
            f"placeholders ({video_token!r}), expected 1"
        )
    return text


def _tokenize(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor([tokenizer(text)["input_ids"]], dtype=torch.long)


def _config_value(config, *names, default=None):
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


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
    builder = {"testbed": _prepare_testbed, "llava_onevision": _prepare_ov}.get(
        loaded.family, _prepare_qwen
    )
    prepared = builder(loaded, info, question, count, max_pixels)
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


def _prepare_testbed(loaded, info, question, count, max_pixels) -> Prepared:
    from vidpress.testbed.video import decode_clip

    spec = loaded.processor.spec
    t0 = time.perf_counter()
    clip = decode_clip(info.path, size=spec.frames_px, max_frames=count)
    decode_seconds = time.perf_counter() - t0
    with chat_template_errors(loaded):
        inputs = loaded.processor(clip.frames, question)
    side = math.ceil(spec.grid / 2)
    return Prepared(
        inputs=inputs,
        info=info,
        frames=clip.frames,
        frame_indices=list(clip.source_indices),
        grid=(side, side),
        resolution=(spec.frames_px, spec.frames_px),
        question=question,
        prompt_tokens=int(inputs["input_ids"].shape[1]),
        decode_seconds=decode_seconds,
    )


def _prepare_ov(loaded, info, question, count, max_pixels) -> Prepared:
    cfg, config = loaded.video_config, loaded.model.config
    if cfg.get("do_sample_frames"):
        indices = arange_indices(info.total_frames, count)
    else:
        indices = linspace_indices(info.total_frames, count)
    t0 = time.perf_counter()
    frames = read_frames(info.path, indices)  # unique: count <= total frames
    decode_seconds = time.perf_counter() - t0
    pixels, frames = _ov_pixels(loaded, frames)
    height, width = frames.shape[-2:]
    vision = config.vision_config
    patches = vision.image_size // vision.patch_size
    side = math.ceil(patches / 2)
    video_id = _config_value(config, "video_token_id", "video_token_index")
    token = loaded.tokenizer.convert_ids_to_tokens(video_id)
    text = render_prompt(loaded, question, token)
    text = text.replace(token, token * (len(indices) * side * side + 1))
    ids = _tokenize(loaded.tokenizer, text)
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


def _resample(cfg: dict) -> str:
    return RESAMPLE.get(cfg.get("resample", 3), "bicubic")


def _ov_pixels(loaded, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 frames [T, 3, H, W] -> (pixel_values_videos [1, T, 3, h, w], the resized uint8
    frames [T, 3, h, w]): the stock video processor's, else its steps reproduced."""
    cfg, stock = loaded.video_config, loaded.video_processor
    if stock is not None:
        out = stock(videos=[frames], do_sample_frames=False, return_tensors="pt")
        pixels = out["pixel_values_videos"]
        return pixels, resize_frames(frames, *pixels.shape[-2:], _resample(cfg))
    if cfg.get("do_resize", True):
        height, width = ov_resize_to(cfg, *frames.shape[-2:])
        frames = resize_frames(frames, height, width, _resample(cfg))
    return normalize(frames, cfg)[None], frames


def qwen_pixel_bounds(cfg: dict, max_pixels: int | None, num_frames: int) -> tuple[int, int]:
    """(min, max) pixels per frame of ``Qwen2VLVideoProcessor.resize``: the config's (or the
    ``max_pixels`` argument), with its optional ``cap_pixels_per_frame`` share of
    ``max_video_tokens`` (90% of them) per temporal patch."""
    size = cfg.get("size") or QWEN_SIZE
    min_pixels = cfg.get("min_pixels") or size.get("shortest_edge")
    max_pixels = max_pixels or cfg.get("max_pixels") or size.get("longest_edge")
    if cfg.get("cap_pixels_per_frame"):
        factor = int(cfg.get("patch_size", 14)) * int(cfg.get("merge_size", 2))
        total = int(int(cfg.get("max_video_tokens", 128000)) * factor * factor * 0.9)
        share = total * int(cfg.get("temporal_patch_size", 2)) // num_frames
        max_pixels = max(min(max_pixels, share), int(min_pixels * 1.05))
    return min_pixels, max_pixels


def _qwen_pixels(loaded, frames: torch.Tensor, max_pixels: int | None):
    """uint8 frames [T, 3, H, W] -> (pixel_values_videos [t*h*w, 3*2*14*14], (t, h, w), the
    resized uint8 frames): the stock video processor's, else its steps reproduced."""
    cfg, stock = loaded.video_config, loaded.video_processor
    if stock is not None:
        size = {"shortest_edge": stock.size.shortest_edge, "longest_edge": max_pixels}
        kwargs = {"size": size} if max_pixels else {}
        out = stock(videos=[frames], do_sample_frames=False, return_tensors="pt", **kwargs)
        t, h, w = out["video_grid_thw"][0].tolist()
        side = stock.patch_size
        resized = resize_frames(frames, h * side, w * side, _resample(cfg))
        return out["pixel_values_videos"], (t, h, w), resized
    patch, merge = int(cfg.get("patch_size", 14)), int(cfg.get("merge_size", 2))
    temporal = int(cfg.get("temporal_patch_size", 2))
    min_pixels, max_pixels = qwen_pixel_bounds(cfg, max_pixels, len(frames))
    height, width = smart_resize(*frames.shape[-2:], patch * merge, min_pixels, max_pixels)
    resized = resize_frames(frames, height, width, _resample(cfg))
    flat, t, h, w = patchify(normalize(resized, cfg), patch, merge, temporal)
    return flat, (t, h, w), resized


def _prepare_qwen(loaded, info, question, count, max_pixels) -> Prepared:
    cfg, config = loaded.video_config, loaded.model.config
    merge = int(cfg.get("merge_size", 2))
    temporal = int(cfg.get("temporal_patch_size", 2))
    indices = arange_indices(info.total_frames, count)
    t0 = time.perf_counter()
    frames = read_frames(info.path, indices)
    decode_seconds = time.perf_counter() - t0
    flat, (t, h, w), frames = _qwen_pixels(loaded, frames, max_pixels)
    height, width = frames.shape[-2:]
    sampled_fps = len(indices) / info.total_frames * (info.fps or 24)
    video_id = config.video_token_id
    token = loaded.tokenizer.convert_ids_to_tokens(video_id)
    text = render_prompt(loaded, question, token)
    text = text.replace(token, token * (t * h * w // merge**2))
    ids = _tokenize(loaded.tokenizer, text)
    image_id = getattr(config, "image_token_id", None)
    types = (ids == video_id).int() * 2 + ((ids == image_id).int() if image_id else 0)
    return Prepared(
        inputs={
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "pixel_values_videos": flat,
            "video_grid_thw": torch.tensor([[t, h, w]]),
            "second_per_grid_ts": torch.tensor([temporal / sampled_fps]),
            "mm_token_type_ids": types,
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
    """The analytic FLOPs ``ModelSpec`` of the loaded model, at the frames it was given."""
    from vidpress.metrics.model_specs import (
        LLMSpec,
        ModelSpec,
        VisionSpec,
        _llava_projector,
        spec_from_config,
    )

    config = loaded.model.config
    if loaded.family == "testbed":  # DINOv2 vision tower: spec_from_config reads CLIP/SigLIP only
        v, t = config.vision_config, config.text_config
        vision = VisionSpec(
            layers=v.num_hidden_layers,
            hidden=v.hidden_size,
            heads=v.num_attention_heads,
            mlp=int(v.hidden_size * v.mlp_ratio),
            patch_size=v.patch_size,
            image_size=v.image_size,
            class_token=True,
        )
        llm = LLMSpec(
            layers=t.num_hidden_layers,
            hidden=t.hidden_size,
            heads=t.num_attention_heads,
            kv_heads=t.num_key_value_heads,
            head_dim=getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads,
            mlp=t.intermediate_size,
            vocab=t.vocab_size,
        )
        spec = ModelSpec(
            name=f"testbed ({loaded.path})",
            llm=llm,
            vision=vision,
            projector=_llava_projector(vision.hidden, llm.hidden),
            frames=prepared.num_frames,
            tokens_per_frame=prepared.grid[0] * prepared.grid[1],
        )
    else:
        spec = spec_from_config(config)
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
