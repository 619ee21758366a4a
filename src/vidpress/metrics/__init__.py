"""Measurements of a Video-LLM's cost: analytic FLOPs (``vidpress.metrics.flops``)."""

from vidpress.metrics.flops import (
    CONVENTIONS,
    FlopsBreakdown,
    FlopsInputs,
    LayerFlops,
    TokenPlan,
    count_flops,
)
from vidpress.metrics.model_specs import (
    MODEL_SPECS,
    LLMSpec,
    ModelSpec,
    VisionSpec,
    get_spec,
    spec_from_config,
)

__all__ = [
    "CONVENTIONS",
    "MODEL_SPECS",
    "FlopsBreakdown",
    "FlopsInputs",
    "LayerFlops",
    "LLMSpec",
    "ModelSpec",
    "TokenPlan",
    "VisionSpec",
    "count_flops",
    "get_spec",
    "spec_from_config",
]
