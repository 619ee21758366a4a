"""Presses: one file per method, a validated dataclass each, applied with ``with press(model)``."""

from vidpress.presses.base import BasePress, InnerStage
from vidpress.presses.fastv import FastVPress
from vidpress.presses.fastvid import FastVIDPress
from vidpress.presses.framedrop import FrameDropPress
from vidpress.presses.holitom import HoliTomPress
from vidpress.presses.random import RandomPress
from vidpress.presses.unified import UnifiedPress
from vidpress.presses.uniform import UniformPoolPress
from vidpress.presses.visionzip import VisionZipPress

PRESSES: dict[str, type[BasePress]] = {
    "unified": UnifiedPress,
    "fastv": FastVPress,
    "visionzip": VisionZipPress,
    "fastvid": FastVIDPress,
    "holitom": HoliTomPress,
    "uniform": UniformPoolPress,
    "framedrop": FrameDropPress,
    "random": RandomPress,
}

__all__ = [
    "PRESSES",
    "BasePress",
    "FastVIDPress",
    "FastVPress",
    "FrameDropPress",
    "HoliTomPress",
    "InnerStage",
    "RandomPress",
    "UniformPoolPress",
    "UnifiedPress",
    "VisionZipPress",
]
