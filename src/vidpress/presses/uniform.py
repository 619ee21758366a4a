"""UniformPoolPress: uniform spatial pooling per frame to the same budget (a reference baseline:
what a user gets by lowering the resolution; docs/baselines.md "simple references").

Each frame keeps an even share of the budget, spread on a uniform grid; the tokens of each kept
cell are averaged (``functional``'s "uniform" method). Default retention 2%.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidpress.functional._checks import check_choice, check_ratio
from vidpress.presses.base import POSITION_MODES, BasePress


@dataclass
class UniformPoolPress(BasePress):
    retention: float = 0.02
    position_ids: str = "contiguous"

    stage1 = "uniform"

    def __post_init__(self):
        check_ratio("retention", self.retention)
        check_choice("position_ids", self.position_ids, POSITION_MODES)
