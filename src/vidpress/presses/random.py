"""RandomPress: random token selection with a fixed seed, to the same budget (a reference
baseline; docs/baselines.md "simple references"). Default retention 2%, seed 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidpress.functional._checks import check_choice, check_int, check_ratio
from vidpress.presses.base import POSITION_MODES, BasePress


@dataclass
class RandomPress(BasePress):
    retention: float = 0.02
    seed: int = 0
    position_ids: str = "contiguous"

    stage1 = "random"

    def __post_init__(self):
        check_ratio("retention", self.retention)
        check_int("seed", self.seed, 0)
        check_choice("position_ids", self.position_ids, POSITION_MODES)

    def stage1_params(self) -> dict:
        return {"seed": self.seed}
