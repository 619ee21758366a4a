"""What one ``vidpress bench`` run measures: the settings, their defaults and checks, the device."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vidpress import loading
from vidpress.metrics.architectures import ARCHITECTURES, get_architecture
from vidpress.metrics.model_specs import PAPER_MODEL
from vidpress.presses import (
    FastVIDPress,
    FastVPress,
    FrameDropPress,
    HoliTomPress,
    RandomPress,
    UnifiedPress,
    UniformPoolPress,
    VisionZipPress,
    press_name,
)
from vidpress.presses.settings import Retention, parse_retention, press_class

RETENTIONS = ("100", "10/5", "5/2.5", "2/1", "1/0.5")
PRESS_ORDER = tuple(
    press_name(cls)
    for cls in (
        UnifiedPress,
        FastVIDPress,
        VisionZipPress,
        HoliTomPress,
        FastVPress,
        UniformPoolPress,
        FrameDropPress,
        RandomPress,
    )
)
SWEEP_RETENTION = 0.02
REFERENCE = press_name(FastVIDPress)  # the stage-1 speed the paper's method's bar compares with
GIB = 2**30
MIB = 2**20


@dataclass
class BenchConfig:
    """What one ``vidpress bench`` run measures."""

    model: str = PAPER_MODEL
    device: str = "auto"
    frames: int = 32
    size: int | None = None
    presses: list[str] = field(default_factory=lambda: list(PRESS_ORDER))
    retentions: list[str] = field(default_factory=lambda: list(RETENTIONS))
    warmup: int = 1
    repeats: int = 5
    decode_tokens: int = 100
    sweep_frames: list[int] = field(default_factory=list)
    vision_check: bool = True
    profile: bool = False
    text_before: int = 14
    text_after: int = 20
    fast: bool = False
    compile: bool = False  # the fast path with compile=True


def resolve_device(config: BenchConfig) -> torch.device:
    """The device to run on; a clear ValueError where a GPU is needed and none is there."""
    arch = get_architecture(config.model)
    device = loading.resolve_device(config.device)
    if not arch.tiny and device.type != "cuda":
        tiny = ", ".join(name for name, a in ARCHITECTURES.items() if a.tiny)
        raise ValueError(
            f"model {config.model} is a full-size architecture and needs a CUDA GPU (no CUDA "
            f"device here); on a CPU run a tiny one: {tiny}"
        )
    return device


def check_config(config: BenchConfig) -> list[Retention]:
    """The retention cells (``parse_retention``), after checking every option."""
    for name in config.presses:
        press_class(name)
    for name, value, low in (
        ("frames", config.frames, 1),
        ("warmup", config.warmup, 0),
        ("repeats", config.repeats, 1),
        ("decode_tokens", config.decode_tokens, 1),
    ):
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    for frames in config.sweep_frames:
        if frames < 1:
            raise ValueError(f"sweep frames must be >= 1, got {frames}")
    return [parse_retention(r) for r in config.retentions]
