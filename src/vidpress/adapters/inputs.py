"""What every family's preprocessing shares: ``Prepared`` inputs, frame sampling, pixels, prompts.

Pixels without torchvision reproduce the stock video processors' steps with torch: the resize is
torchvision 0.29's ``resize_image`` rule for uint8 on the frames' device (``native_uint8_resize``):
on CPU torch's antialiased uint8 kernel (bicubic; bilinear with AVX2/AVX512 or on ARM), elsewhere
interpolation of float values, clamped and rounded; then the fused ``(x - 255 mean) / (255 std)``
of transformers' ``rescale_and_normalize`` (``normalize``). With torchvision, the checkpoint's
stock video processor (``AutoProcessor``'s, else ``AutoVideoProcessor``'s, else the family's class
defaults) turns the decoded uint8 frames (on the CPU) into the stock inputs instead.

On bikes.mp4 at the class defaults (32 frames at 384 x 384; Qwen 20 frames at 280 x 644) the
no-torchvision path equals the stock processors bit for bit on CPU (AVX2); interpolating float
values instead (torchvision's rule on CUDA, vidpress's before) changes 14.0% (OV) and 12.0%
(Qwen) of the normalised values, by up to 0.057 (``benchmarks/pixel_parity.py``, torch 2.14.1,
torchvision 0.29.1, transformers 5.17.0, 2026-12-02; ``tests/test_pixels.py`` checks both paths
on the tiny checkpoints).

Prompts: the checkpoint's chat template (the stock processor's when ``AutoProcessor`` loads, else
the tokenizer's) renders one user turn (video, then the question) with one video placeholder,
which the family then expands to its visual token count.
"""

from __future__ import annotations

import contextlib
import platform
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from vidpress.video_io import VideoInfo, one_line

# transformers' OPENAI_CLIP_MEAN / STD (the video processors' class defaults)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL codes used by the processors' configs
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json", "tokenizer_config.json")


# ---------------------------------------------------------------------------- frame sampling


def linspace_indices(total: int, num: int) -> list[int]:
    """``np.linspace(0, total - 1, num, dtype=int)`` (LLaVA-OV's reference sampling)."""
    return np.linspace(0, total - 1, num, dtype=int).tolist()


def arange_indices(total: int, num: int) -> list[int]:
    """transformers' ``sample_frames``: ``torch.arange(0, total, total / num).int()``."""
    return torch.arange(0, total, total / num).int().tolist()


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


def resample_mode(cfg: dict) -> str:
    return RESAMPLE.get(cfg.get("resample", 3), "bicubic")


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


@contextlib.contextmanager
def chat_template_errors(loaded):
    """A chat template that fails to render becomes a one-line ValueError naming its file (the
    first of ``CHAT_TEMPLATE_FILES`` in the checkpoint folder, else the folder)."""
    import jinja2

    try:
        yield
    except jinja2.TemplateError as err:
        files = [loaded.path / name for name in CHAT_TEMPLATE_FILES]
        source = next((f for f in files if f.is_file()), loaded.path)
        raise ValueError(f"cannot render the chat template in {source}: {one_line(err)}") from err


def render_prompt(loaded, question: str, video_token: str) -> str:
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


def tokenize(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor([tokenizer(text)["input_ids"]], dtype=torch.long)


def config_value(config, *names, default=None):
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default
