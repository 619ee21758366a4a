"""RandomPress: random token selection with a fixed seed, to the same budget (a reference
baseline; docs/baselines.md "simple references"). Default retention 2%, seed 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidpress import functional as F
from vidpress.functional._checks import check_choice, check_int, check_ratio
from vidpress.presses.base import POSITION_MODES, BasePress, stage1_field


@dataclass
class RandomPress(BasePress):
    """Seeded random selection (docs/baselines.md "simple references"), before the LLM.

    retention:    share of the visual tokens entering the LLM (0.02)
    seed:         the generator's seed (0)
    position_ids: "contiguous" or "original" 1-D positions of the kept tokens ("contiguous")
    """

    retention: float = 0.02
    seed: int = stage1_field(0)
    position_ids: str = "contiguous"

    stage1 = staticmethod(F.random_compress)
    title = "Random"

    def __post_init__(self):
        check_ratio("retention", self.retention)
        check_int("seed", self.seed, 0)
        check_choice("position_ids", self.position_ids, POSITION_MODES)
