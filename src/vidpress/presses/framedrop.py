"""FrameDropPress: uniform frame dropping to the same budget (a reference baseline: fewer frames;
docs/baselines.md "simple references"). Whole frames at a uniform stride are kept (``functional``'s
"framedrop" method). Default retention 2%.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidpress.functional._checks import check_choice, check_ratio
from vidpress.presses.base import POSITION_MODES, BasePress


@dataclass
class FrameDropPress(BasePress):
    retention: float = 0.02
    position_ids: str = "contiguous"

    stage1 = "framedrop"

    def __post_init__(self):
        check_ratio("retention", self.retention)
        check_choice("position_ids", self.position_ids, POSITION_MODES)
