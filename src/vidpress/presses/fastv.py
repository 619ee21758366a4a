"""FastVPress: FastV (Chen et al., "An Image is Worth 1/2 Tokens After Layer 2", ECCV 2024).

No stage 1: every visual token enters the LLM. At decoder layer K (default 2) the last prompt
token's attention row of layer K-1 (head mean, recomputed from q/k) ranks the visual tokens; the
top ``inner_keep`` stay, the rest are dropped (no merging); kept tokens keep their position ids
and layers >= K hold only them in their KV cache.
Defaults: K = 2, keep 50% (the paper's R = 50%). The target paper runs FastV at "100%/x%".
Known deviations: the official code prunes by slicing one sample's sequence; here any batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidpress.functional._checks import check_int, check_ratio
from vidpress.presses.base import BasePress, InnerStage


@dataclass
class FastVPress(BasePress):
    inner_layer: int = 2
    inner_keep: float = 0.5

    def __post_init__(self):
        check_int("inner_layer", self.inner_layer, 1)
        check_ratio("inner_keep", self.inner_keep)

    def inner_stage(self) -> InnerStage:
        return InnerStage(self.inner_layer, self.inner_keep, "last_token", "none")
