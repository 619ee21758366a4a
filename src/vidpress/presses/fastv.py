"""FastVPress: FastV (Chen et al., "An Image is Worth 1/2 Tokens After Layer 2", ECCV 2024).

No stage 1: every visual token enters the LLM. At decoder layer K (default 2) the last prompt
token's attention row of layer K-1 (head mean, recomputed from q/k) ranks the visual tokens; the
top ``retention`` stay, the rest are dropped (no merging); kept tokens keep their position ids
and layers >= K hold only them in their KV cache.
Defaults: K = 2, keep 50% (the paper's R = 50%). The target paper runs FastV at "100%/x%"
(``retention`` = x%).
Known deviations: the official code prunes by slicing one sample's sequence; here any batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidpress.functional._checks import check_int, check_ratio
from vidpress.presses.base import BasePress, InnerStage


@dataclass
class FastVPress(BasePress):
    """FastV (Chen et al., ECCV 2024; docs/baselines.md), inside the LLM only.

    retention:   share of the visual tokens kept from layer K on (0.5; the paper's "100%/x%")
    inner_layer: K (2)
    """

    retention: float = 0.5
    inner_layer: int = 2

    title = "FastV"

    def __post_init__(self):
        check_ratio("retention", self.retention)
        check_int("inner_layer", self.inner_layer, 1)

    def inner_stage(self) -> InnerStage:
        return InnerStage(self.inner_layer, self.retention, "last_token", "none")
