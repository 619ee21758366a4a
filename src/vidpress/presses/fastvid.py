"""FastVIDPress: FastVID (Shen et al., "FastVID: Dynamic Density Pruning for Fast Video Large
Language Models", NeurIPS 2025), before the LLM.

DySeg cuts the video where consecutive frame features differ (the c - 1 lowest similarities or
below tau); per frame, ATS keeps the most salient tokens, and DTM merges the rest into
density-peak anchors of anchor frames (every p-th frame of a segment) with weight
max(1/(n+1), beta). Defaults for LLaVA-OV: segments c = 8, tau = 0.9, context_ratio d = 0.4,
anchor_period p = 4, beta = 0.6, k = 4.
Known deviations: the frame feature is the mean frame token (the official code uses SigLIP's
attention-pooling head, which LLaVA discards) and the saliency is the adapter's vision score;
the exact-budget and tie rules of ``functional.fastvid``. Original position ids are the default
for 1-D RoPE, as in the official code.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidpress import functional as F
from vidpress.functional._checks import check_choice, check_int, check_ratio
from vidpress.presses.base import (
    POSITION_MODES,
    BasePress,
    frame_similarity_flops,
    stage1_field,
)


@dataclass
class FastVIDPress(BasePress):
    """FastVID (Shen et al., NeurIPS 2025; docs/baselines.md), before the LLM.

    retention:     share of the visual tokens entering the LLM (0.02)
    segments:      DySeg's segment count c (8); tau: its similarity threshold (0.9)
    context_ratio: d, each frame's share of context tokens (0.4)
    anchor_period: p, the anchor frame period in a segment (4)
    beta:          DTM's minimum target weight (0.6); k: DPC-KNN neighbours (4)
    position_ids:  "original" or "contiguous" 1-D positions of the kept tokens ("original")
    """

    retention: float = 0.02
    segments: int = stage1_field(8)
    tau: float = stage1_field(0.9)
    context_ratio: float = stage1_field(0.4)
    anchor_period: int = stage1_field(4)
    beta: float = stage1_field(0.6)
    k: int = stage1_field(4)
    position_ids: str = "original"

    stage1 = staticmethod(F.fastvid_compress)
    needs = frozenset({"scores"})
    title = "FastVID"

    def __post_init__(self):
        check_ratio("retention", self.retention)
        check_int("segments", self.segments, 1)
        check_ratio("tau", self.tau)
        check_ratio("context_ratio", self.context_ratio, zero_ok=True)
        check_int("anchor_period", self.anchor_period, 1)
        check_ratio("beta", self.beta, zero_ok=True)
        check_int("k", self.k, 1)
        check_choice("position_ids", self.position_ids, POSITION_MODES)

    def stage1_flops(self, frames: int, tokens_per_frame: int, budget: int, hidden: int) -> int:
        return frame_similarity_flops(frames, tokens_per_frame, hidden)
