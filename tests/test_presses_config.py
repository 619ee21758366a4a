"""Press dataclasses: registry, paper defaults, validation with clear errors."""

from __future__ import annotations

import sys

import pytest

import vidpress
from vidpress.presses import InnerStage


def test_registry_and_docstrings():
    assert set(vidpress.PRESSES) == {
        "unified",
        "fastv",
        "visionzip",
        "fastvid",
        "holitom",
        "uniform",
        "framedrop",
        "random",
    }
    for name, cls in vidpress.PRESSES.items():
        doc = sys.modules[cls.__module__].__doc__
        assert doc.startswith(cls.__name__)
        assert name in ("uniform", "framedrop", "random") or "Known deviations" in doc


def test_paper_defaults():
    press = vidpress.UnifiedPress()
    assert (press.retention, press.tau, press.cluster_ratio, press.k) == (0.02, 0.7, 0.3, 7)
    assert press.inner_stage() == InnerStage(18, 0.5, "text_aware", "mean", 0.5)
    assert vidpress.UnifiedPress(inner_merging=False).inner_stage() is None
    assert vidpress.FastVPress().inner_stage() == InnerStage(2, 0.5, "last_token", "none")
    assert vidpress.HoliTomPress().inner_stage() == InnerStage(18, 0.5, "last_token", "sequential")
    assert vidpress.FastVPress.stage1 is None
    assert vidpress.FastVIDPress().position_ids == "original"


@pytest.mark.parametrize(
    "cls, field, value",
    [
        (vidpress.UnifiedPress, "retention", 0.0),
        (vidpress.UnifiedPress, "retention", 1.5),
        (vidpress.UnifiedPress, "tau", 0),
        (vidpress.UnifiedPress, "cluster_ratio", -0.1),
        (vidpress.UnifiedPress, "k", 0),
        (vidpress.UnifiedPress, "clustering", "yes"),
        (vidpress.UnifiedPress, "inner_layer", 0),
        (vidpress.UnifiedPress, "inner_keep", 0.0),
        (vidpress.UnifiedPress, "lam", 2.0),
        (vidpress.UnifiedPress, "merge", "max"),
        (vidpress.UnifiedPress, "position_ids", "gaps"),
        (vidpress.FastVPress, "retention", 1.2),
        (vidpress.FastVPress, "inner_layer", 1.5),
        (vidpress.VisionZipPress, "dominant_ratio", 1.1),
        (vidpress.FastVIDPress, "segments", 0),
        (vidpress.FastVIDPress, "anchor_period", 0),
        (vidpress.HoliTomPress, "beta", -1),
        (vidpress.HoliTomPress, "tau", 1.5),
        (vidpress.UniformPoolPress, "retention", 0),
        (vidpress.FrameDropPress, "retention", None),
        (vidpress.RandomPress, "seed", -1),
    ],
)
def test_bad_values_name_the_argument(cls, field, value):
    with pytest.raises(ValueError, match=field):
        cls(**{field: value})
