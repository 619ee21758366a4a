"""UnifiedPress: the paper's method (arXiv 2603.21957, "Unified Spatiotemporal Token Compression
for Video-LLMs at Ultra-Low Retention", Du et al., CVPR 2026).

Stage 1 (``functional.unified_compress``): one global retention pool over all T x N tokens, walked
in descending vision-attention order (Eq. 1) through a cosine redundancy gate (Eq. 2, tau); 30% of
the budget becomes DPC-KNN clusters of the rest (Eqs. 3-4); everything in original order.
Stage 2 at layer K: text-aware importance (Eq. 9) over the text rows after the video, keep R,
size-weighted merge of the dropped tokens into their most similar kept token.

Defaults: the paper's (retention 2%, tau 0.7, cluster ratio 0.3, K 18, R 50%, lambda 0.5) and
docs/method.md's decisions (k = 7, head-mean scores, mean merging, contiguous 1-D positions).
Switches: ``attention_order``, ``similarity_gate``, ``clustering`` (Table 5) and
``inner_merging`` (False = "w/o merging", the inner stage off); ``centred_gate`` (not the
paper's: the gate's cosine on mean-centred tokens, see ``functional.unified_compress``; on the
testbed it lets the gate fill its slots but lowers accuracy at 2%/1%, 56.6% -> 50.9%:
benchmarks/results/synthvqa_testbed_centred_gate.md).
Known deviations: the paper gives no code; unspecified choices follow docs/method.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from vidpress import functional as F
from vidpress.functional._checks import check_choice, check_flag, check_int, check_ratio
from vidpress.presses.base import (
    MERGE_CHOICES,
    POSITION_MODES,
    BasePress,
    InnerStage,
    stage1_field,
)


@dataclass
class UnifiedPress(BasePress):
    """The paper's unified press (Du et al., CVPR 2026, arXiv 2603.21957; docs/method.md).

    retention:        share of the visual tokens entering the LLM (0.02)
    tau:              Eq. 2's cosine gate threshold (0.7)
    cluster_ratio:    share of the budget made of DPC-KNN clusters (0.3); k: their neighbours (7)
    attention_order, similarity_gate, clustering: Table 5's stage-1 components (all on)
    centred_gate:     the gate's cosine on mean-centred tokens (off; not the paper's)
    inner_merging:    the inner stage at layer K (on; off: "w/o merging")
    inner_layer:      K (18); inner_keep: R, the share of the stage-1 tokens kept from K on (0.5)
    lam:              Eq. 9's lambda (0.5); merge: "mean", "sequential" or "none" ("mean")
    position_ids:     "contiguous" or "original" 1-D positions of the kept tokens ("contiguous")
    """

    retention: float = 0.02
    tau: float = stage1_field(0.7)
    cluster_ratio: float = stage1_field(0.3)
    k: int = stage1_field(7)
    attention_order: bool = stage1_field(True)
    similarity_gate: bool = stage1_field(True)
    clustering: bool = stage1_field(True)
    centred_gate: bool = stage1_field(False)
    inner_merging: bool = True
    inner_layer: int = 18
    inner_keep: float = 0.5
    lam: float = 0.5
    merge: str = "mean"
    position_ids: str = "contiguous"

    stage1 = staticmethod(F.unified_compress)
    needs = frozenset({"scores"})
    title = "Unified"
    COMPONENTS: ClassVar[dict[str, str]] = {
        "attention_order": "Attn",
        "similarity_gate": "Sim",
        "clustering": "Cluster",
    }  # Table 5's stage-1 components and their short names

    def __post_init__(self):
        check_ratio("retention", self.retention)
        check_ratio("tau", self.tau)
        check_ratio("cluster_ratio", self.cluster_ratio, zero_ok=True)
        check_int("k", self.k, 1)
        for name in (*self.COMPONENTS, "centred_gate", "inner_merging"):
            check_flag(name, getattr(self, name))
        check_int("inner_layer", self.inner_layer, 1)
        check_ratio("inner_keep", self.inner_keep)
        check_ratio("lam", self.lam, zero_ok=True)
        check_choice("merge", self.merge, MERGE_CHOICES)
        check_choice("position_ids", self.position_ids, POSITION_MODES)

    def inner_stage(self) -> InnerStage | None:
        if not self.inner_merging:
            return None
        return InnerStage(self.inner_layer, self.inner_keep, "text_aware", self.merge, self.lam)

    @property
    def label(self) -> str:
        """The title, with the stage-1 components on when some are off ("Unified: Attn + Sim
        only"), and "w/o merging" when the inner stage is off."""
        on = [short for name, short in self.COMPONENTS.items() if getattr(self, name)]
        label = self.title
        if len(on) < len(self.COMPONENTS):
            label += f": {' + '.join(on) if on else 'none'} only"
        return label if self.inner_merging else f"{label} w/o merging"

    def stage1_flops(self, frames: int, tokens_per_frame: int, budget: int, hidden: int) -> int:
        """The gate ``2 N B_sel D`` (every candidate against the full pool, an upper bound), and
        with clustering the DPC-KNN distances ``2 M^2 D`` on the recycle pool ``M = N - B_sel``
        and its assignment ``2 M B_clu D``."""
        visual = frames * tokens_per_frame
        selected, clusters = F.split_budget(budget, self.cluster_ratio if self.clustering else 0.0)
        recycle = visual - selected if clusters else 0
        return 2 * hidden * (visual * selected + recycle * recycle + recycle * clusters)
