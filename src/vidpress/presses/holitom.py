"""HoliTomPress: HoliTom (Shao et al., "HoliTom: Holistic Token Merging for Fast Video Large
Language Models", NeurIPS 2025): outer merge before the LLM plus inner merge at layer K.

Outer: global temporal segmentation by dynamic programming over per-position frame similarity
(tau), static positions averaged over each window, dynamic tokens top-k by saliency per frame,
static tokens merged around DPC-KNN centres (k = 7, beta = 0.6), ratio rescaled so the total stays
the budget. Inner at K = 18: layer K-1's last-token attention ranks the visual tokens, 50% are
kept, each dropped token is merged into its most similar kept one by sequential pairwise averaging.
Defaults: tau None = the official scripts' choice (0.65 at retention <= 10%, else 0.8), beta 0.6,
k 7, contextual share D = 0 (fixed), K 18, keep 50%. ``inner_merging=False`` leaves the outer
stage only. Known deviations: those of ``functional.holitom`` (exact budget, shared DPC-KNN);
contiguous 1-D positions, as the official outer stage.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidpress import functional as F
from vidpress.functional._checks import check_choice, check_flag, check_int, check_ratio
from vidpress.presses.base import (
    POSITION_MODES,
    BasePress,
    InnerStage,
    frame_similarity_flops,
    stage1_field,
)


@dataclass
class HoliTomPress(BasePress):
    """HoliTom (Shao et al., NeurIPS 2025; docs/baselines.md): outer merge, inner merge at K.

    retention:     share of the visual tokens entering the LLM (0.02)
    tau:           static-position similarity threshold (None: 0.65 at retention <= 10%, else 0.8)
    beta:          a static centre's weight against its members' mean (0.6); k: DPC-KNN's (7)
    inner_merging: the inner stage at layer K (on; off: "w/o merging")
    inner_layer:   K (18); inner_keep: the share of the stage-1 tokens kept from K on (0.5)
    position_ids:  "contiguous" or "original" 1-D positions of the kept tokens ("contiguous")
    """

    retention: float = 0.02
    tau: float | None = stage1_field(None)
    beta: float = stage1_field(0.6)
    k: int = stage1_field(7)
    inner_merging: bool = True
    inner_layer: int = 18
    inner_keep: float = 0.5
    position_ids: str = "contiguous"

    stage1 = staticmethod(F.holitom_compress)
    needs = frozenset({"scores"})
    title = "HoliTom"

    def __post_init__(self):
        check_ratio("retention", self.retention)
        if self.tau is not None:
            check_ratio("tau", self.tau, zero_ok=True)
        check_ratio("beta", self.beta, zero_ok=True)
        check_int("k", self.k, 1)
        check_flag("inner_merging", self.inner_merging)
        check_int("inner_layer", self.inner_layer, 1)
        check_ratio("inner_keep", self.inner_keep)
        check_choice("position_ids", self.position_ids, POSITION_MODES)

    def inner_stage(self) -> InnerStage | None:
        if not self.inner_merging:
            return None
        return InnerStage(self.inner_layer, self.inner_keep, "last_token", "sequential")

    def stage1_flops(self, frames: int, tokens_per_frame: int, budget: int, hidden: int) -> int:
        return frame_similarity_flops(frames, tokens_per_frame, hidden)
