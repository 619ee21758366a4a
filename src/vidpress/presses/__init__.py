"""Presses: one file per method, a validated dataclass each, applied with ``with press(model)``.

``PRESSES`` is the one place where short names map to press classes; settings texts such as
"unified@2/1" become presses in ``vidpress.presses.settings``.
"""

from vidpress.presses.base import BasePress, InnerStage, PressPlan
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


#: presses with a stage 1 before the LLM (``functional.compress_video_tokens`` runs them by name)
STAGE1_PRESSES: tuple[str, ...] = tuple(name for name, c in PRESSES.items() if c.stage1 is not None)

#: the paper's method (its bars, ablations and the commands' default press)
PAPER_PRESS = "unified"


def press_name(press: BasePress | type[BasePress]) -> str:
    """The short name of a press or press class in ``PRESSES`` (its class name if not there)."""
    cls = press if isinstance(press, type) else type(press)
    return next((name for name, c in PRESSES.items() if c is cls), cls.__name__)


__all__ = [
    "PAPER_PRESS",
    "PRESSES",
    "STAGE1_PRESSES",
    "BasePress",
    "FastVIDPress",
    "FastVPress",
    "FrameDropPress",
    "HoliTomPress",
    "InnerStage",
    "PressPlan",
    "RandomPress",
    "UniformPoolPress",
    "UnifiedPress",
    "VisionZipPress",
    "press_name",
]
