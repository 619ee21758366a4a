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

from vidpress.functional._checks import check_choice, check_int, check_ratio
from vidpress.presses.base import POSITION_MODES, BasePress


@dataclass
class FastVIDPress(BasePress):
    retention: float = 0.02
    segments: int = 8
    tau: float = 0.9
    context_ratio: float = 0.4
    anchor_period: int = 4
    beta: float = 0.6
    k: int = 4
    position_ids: str = "original"

    stage1 = "fastvid"
    needs = frozenset({"scores"})

    def __post_init__(self):
        check_ratio("retention", self.retention)
        check_int("segments", self.segments, 1)
        check_ratio("tau", self.tau)
        check_ratio("context_ratio", self.context_ratio, zero_ok=True)
        check_int("anchor_period", self.anchor_period, 1)
        check_ratio("beta", self.beta, zero_ok=True)
        check_int("k", self.k, 1)
        check_choice("position_ids", self.position_ids, POSITION_MODES)

    def stage1_params(self) -> dict:
        return {
            "segments": self.segments,
            "tau": self.tau,
            "context_ratio": self.context_ratio,
            "anchor_period": self.anchor_period,
            "beta": self.beta,
            "k": self.k,
        }
