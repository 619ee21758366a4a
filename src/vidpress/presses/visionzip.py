"""VisionZipPress: VisionZip (Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision
Language Models", CVPR 2025; video port as in HoliTom's code), applied per frame before the LLM.

Per frame: dominant tokens are the top by vision attention (CLS row when the tower has one, else
the mean received attention); contextual tokens: targets at a uniform stride among the rest, every
other remaining token joins the target with the most similar key (head-mean keys of the scored
layer), and each contextual token is the target plus the mean of its members (the official code
adds). Split dominant : contextual = 54 : 10. No temporal processing.
Known deviations: the per-frame budget is the video budget spread evenly over frames.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidpress import functional as F
from vidpress.functional._checks import check_choice, check_ratio
from vidpress.functional.budgets import round_half_up
from vidpress.presses.base import POSITION_MODES, BasePress, stage1_field


@dataclass
class VisionZipPress(BasePress):
    """VisionZip (Yang et al., CVPR 2025; docs/baselines.md), per frame before the LLM.

    retention:      share of the visual tokens entering the LLM (0.02)
    dominant_ratio: share of each frame's tokens that are dominant (54/64), the rest contextual
    position_ids:   "contiguous" or "original" 1-D positions of the kept tokens ("contiguous")
    """

    retention: float = 0.02
    dominant_ratio: float = stage1_field(54 / 64)
    position_ids: str = "contiguous"

    stage1 = staticmethod(F.visionzip_compress)
    needs = frozenset({"scores", "keys"})
    title = "VisionZip"

    def __post_init__(self):
        check_ratio("retention", self.retention)
        check_ratio("dominant_ratio", self.dominant_ratio, zero_ok=True)
        check_choice("position_ids", self.position_ids, POSITION_MODES)

    def stage1_flops(self, frames: int, tokens_per_frame: int, budget: int, hidden: int) -> int:
        """Contextual merging ``2 (N - B_dom) B_ctx D``."""
        contextual = round_half_up((1 - self.dominant_ratio) * budget)
        return 2 * (frames * tokens_per_frame - (budget - contextual)) * contextual * hidden
