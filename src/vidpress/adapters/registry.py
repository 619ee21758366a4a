"""The one list of model families (``FAMILIES``) and the look-ups everything else goes through."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from vidpress.adapters.base import VideoAdapter
from vidpress.adapters.family import Family
from vidpress.adapters.llava_onevision import LlavaOnevisionFamily, TestbedFamily
from vidpress.adapters.qwen2_5_vl import Qwen2_5_VLFamily

FAMILIES: dict[str, Family] = {
    family.name: family for family in (LlavaOnevisionFamily(), TestbedFamily(), Qwen2_5_VLFamily())
}
#: the family of each config ``model_type`` (its variants are told apart by ``Family.matches``)
MODEL_TYPES: dict[str, Family] = {f.model_type: f for f in FAMILIES.values() if not f.variant}
ADAPTERS: dict[str, type[VideoAdapter]] = {t: f.adapter for t, f in MODEL_TYPES.items()}


def get_family(name: str) -> Family:
    """The family called ``name``, or a ValueError listing them."""
    if name not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {name!r}")
    return FAMILIES[name]


def checkpoint_family(path: Path, model_type: str | None) -> Family | None:
    """The family of the checkpoint folder ``path`` whose config has ``model_type`` (a variant
    that matches the folder first), or None."""
    candidates = [f for f in FAMILIES.values() if f.model_type == model_type]
    variants_first = sorted(candidates, key=lambda f: not f.variant)
    return next((f for f in variants_first if f.matches(path)), None)


def supported_text() -> str:
    """The supported models, for error messages."""
    return "; ".join(f.description for f in FAMILIES.values())


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
