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

from vidpress.functional._checks import check_choice, check_ratio
from vidpress.presses.base import POSITION_MODES, BasePress


@dataclass
class VisionZipPress(BasePress):
    retention: float = 0.02
    dominant_ratio: float = 54 / 64
    position_ids: str = "contiguous"

    stage1 = "visionzip"
    needs = frozenset({"scores", "keys"})

    def __post_init__(self):
        check_ratio("retention", self.retention)
        check_ratio("dominant_ratio", self.dominant_ratio, zero_ok=True)
        check_choice("position_ids", self.position_ids, POSITION_MODES)

    def stage1_params(self) -> dict:
        return {"dominant_ratio": self.dominant_ratio}
