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
``text_aware_merging`` (False = "w/o merging", the inner stage off); ``centred_gate`` (not the
paper's: the gate's cosine on mean-centred tokens, see ``functional.unified_compress``; on the
testbed it lets the gate fill its slots but lowers accuracy at 2%/1%, 56.6% -> 50.9%:
benchmarks/results/synthvqa_testbed_centred_gate.md).
Known deviations: the paper gives no code; unspecified choices follow docs/method.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidpress.functional._checks import check_choice, check_flag, check_int, check_ratio
from vidpress.presses.base import MERGE_CHOICES, POSITION_MODES, BasePress, InnerStage


@dataclass
class UnifiedPress(BasePress):
    retention: float = 0.02
    tau: float = 0.7
    cluster_ratio: float = 0.3
    k: int = 7
    attention_order: bool = True
    similarity_gate: bool = True
    clustering: bool = True
    centred_gate: bool = False
    text_aware_merging: bool = True
    inner_layer: int = 18
    inner_keep: float = 0.5
    lam: float = 0.5
    merge: str = "mean"
    position_ids: str = "contiguous"

    stage1 = "unified"
    needs = frozenset({"scores"})

    def __post_init__(self):
        check_ratio("retention", self.retention)
        check_ratio("tau", self.tau)
        check_ratio("cluster_ratio", self.cluster_ratio, zero_ok=True)
        check_int("k", self.k, 1)
        for name in (
            "attention_order",
            "similarity_gate",
            "clustering",
            "centred_gate",
            "text_aware_merging",
        ):
            check_flag(name, getattr(self, name))
        check_int("inner_layer", self.inner_layer, 1)
        check_ratio("inner_keep", self.inner_keep)
        check_ratio("lam", self.lam, zero_ok=True)
        check_choice("merge", self.merge, MERGE_CHOICES)
        check_choice("position_ids", self.position_ids, POSITION_MODES)

    def stage1_params(self) -> dict:
        return {
            "tau": self.tau,
            "cluster_ratio": self.cluster_ratio,
            "k": self.k,
            "attention_order": self.attention_order,
            "similarity_gate": self.similarity_gate,
            "clustering": self.clustering,
            "centred_gate": self.centred_gate,
        }

    def inner_stage(self) -> InnerStage | None:
        if not self.text_aware_merging:
            return None
        return InnerStage(self.inner_layer, self.inner_keep, "text_aware", self.merge, self.lam)
