"""UniformPoolPress: uniform spatial pooling per frame to the same budget (a reference baseline:
what a user gets by lowering the resolution; docs/baselines.md "simple references").

Each frame keeps an even share of the budget, spread on a uniform grid; the tokens of each kept
cell are averaged (``functional``'s "uniform" method). Default retention 2%.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidpress import functional as F
from vidpress.functional._checks import check_choice, check_ratio
from vidpress.presses.base import POSITION_MODES, BasePress


@dataclass
class UniformPoolPress(BasePress):
    """Uniform spatial pooling per frame (docs/baselines.md "simple references"), before the LLM.

    retention:    share of the visual tokens entering the LLM (0.02)
    position_ids: "contiguous" or "original" 1-D positions of the kept tokens ("contiguous")
    """

    retention: float = 0.02
    position_ids: str = "contiguous"

    stage1 = staticmethod(F.uniform_compress)
    title = "Uniform pooling"

    def __post_init__(self):
        check_ratio("retention", self.retention)
        check_choice("position_ids", self.position_ids, POSITION_MODES)
