"""vidpress: training-free visual token compression for Video-LLMs (arXiv 2603.21957)."""

from vidpress.presses import (
    PRESSES,
    FastVIDPress,
    FastVPress,
    FrameDropPress,
    HoliTomPress,
    RandomPress,
    UnifiedPress,
    UniformPoolPress,
    VisionZipPress,
)

__all__ = [
    "PRESSES",
    "FastVIDPress",
    "FastVPress",
    "FrameDropPress",
    "HoliTomPress",
    "RandomPress",
    "UniformPoolPress",
    "UnifiedPress",
    "VisionZipPress",
]
