"""FrameDropPress: uniform frame dropping to the same budget (a reference baseline: fewer frames;
docs/baselines.md "simple references"). Whole frames at a uniform stride are kept (``functional``'s
"framedrop" method). Default retention 2%.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidpress import functional as F
from vidpress.functional._checks import check_choice, check_ratio
from vidpress.presses.base import POSITION_MODES, BasePress


@dataclass
class FrameDropPress(BasePress):
    """Uniform frame dropping (docs/baselines.md "simple references"), before the LLM.

    retention:    share of the visual tokens entering the LLM (0.02)
    position_ids: "contiguous" or "original" 1-D positions of the kept tokens ("contiguous")
    """

    retention: float = 0.02
    position_ids: str = "contiguous"

    stage1 = staticmethod(F.framedrop_compress)
    title = "Frame dropping"

    def __post_init__(self):
        check_ratio("retention", self.retention)
        check_choice("position_ids", self.position_ids, POSITION_MODES)
