"""SynthVQA's planted shapes: their kinds, colours, sizes and how they are drawn into a frame."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

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
SIZE_RANGE = (0.112, 0.153)  # shape side / frame side: 44-60 px at 392 px
MAX_SHAPE_SCALE = 2.8  # the largest shape, outline included, still fits a quadrant
OUTLINE = 0.012  # black outline width / frame side (about 5 px at 392)


@dataclass(frozen=True)
class Shape:
    """A planted object: kind, colour name and side length in pixels."""

    kind: str
    color: str
    size: int

    @property
    def name(self) -> str:
        return f"{self.color} {self.kind}"


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
