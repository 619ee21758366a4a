"""Choose the adapter of a model from its config."""

from __future__ import annotations

from torch import nn

from vidpress.adapters.base import VideoAdapter
from vidpress.adapters.llava_onevision import LlavaOnevisionAdapter
from vidpress.adapters.qwen2_5_vl import Qwen2_5_VLAdapter

ADAPTERS: dict[str, type[VideoAdapter]] = {
    cls.model_type: cls for cls in (LlavaOnevisionAdapter, Qwen2_5_VLAdapter)
}


def get_adapter(model: nn.Module) -> VideoAdapter:
    """The adapter for ``model`` (a ``...ForConditionalGeneration`` instance), or a ValueError."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    adapter = ADAPTERS.get(model_type)
    if adapter is None or adapter.model_class not in {c.__name__ for c in type(model).__mro__}:
        supported = ", ".join(a.model_class for a in ADAPTERS.values())
        raise ValueError(
            f"vidpress does not support {type(model).__name__} (model_type={model_type!r}); "
            f"supported models: {supported}"
        )
    return adapter(model)
