"""Press dataclasses: registry, paper defaults, validation with clear errors."""

from __future__ import annotations

import sys

import pytest

import vidpress
from vidpress.presses import InnerStage, PressPlan
from vidpress.presses.settings import grid_settings, make_press, parse_settings, with_options


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


def test_stage1_params_are_the_marked_fields():
    assert vidpress.UnifiedPress().stage1_params() == {
        "tau": 0.7,
        "cluster_ratio": 0.3,
        "k": 7,
        "attention_order": True,
        "similarity_gate": True,
        "clustering": True,
        "centred_gate": False,
    }
    assert vidpress.HoliTomPress().stage1_params() == {"tau": None, "beta": 0.6, "k": 7}
    assert vidpress.VisionZipPress().stage1_params() == {"dominant_ratio": 54 / 64}
    assert vidpress.RandomPress(seed=3).stage1_params() == {"seed": 3}
    assert vidpress.UniformPoolPress().stage1_params() == {}


def test_plan_label_and_setting():
    assert vidpress.UnifiedPress().plan(6272, 28) == PressPlan(6272, 125, 18, 63)
    assert vidpress.FastVPress(retention=0.02).plan(6272, 28) == PressPlan(6272, 6272, 2, 125)
    assert vidpress.VisionZipPress().plan(6272, 28) == PressPlan(6272, 125, None, 125)
    assert vidpress.VisionZipPress(retention=0.1).plan(6272, 28, frames=32).outer_tokens == 640
    with pytest.raises(ValueError, match=r"inner_layer must be in \[1, 9\]"):
        vidpress.UnifiedPress().plan(6272, 10)
    assert (vidpress.UnifiedPress().label, vidpress.UnifiedPress().setting) == ("Unified", "2/1")
    ablated = vidpress.UnifiedPress(clustering=False, inner_merging=False)
    assert (ablated.label, ablated.setting) == ("Unified: Attn + Sim only w/o merging", "2")
    assert (vidpress.FastVPress(retention=0.1).label, vidpress.FastVPress().setting) == (
        "FastV",
        "100/50",
    )
    assert vidpress.HoliTomPress(inner_merging=False).label == "HoliTom w/o merging"


def test_settings_grammar():
    settings = parse_settings("Unified:tau=0.8,inner-merging=true,position_ids=original@2/0.5")
    assert settings.params == {"tau": 0.8, "inner_merging": True, "position_ids": "original"}
    press = make_press(settings)
    assert (press.retention, press.inner_keep, press.tau) == (0.02, 0.25, 0.8)
    assert settings.text == "unified:tau=0.8,inner_merging=true,position_ids=original@2/0.5"
    assert parse_settings("unified:retention=0.1").text == "unified@10/5"
    assert make_press("fastv@100/3").retention == make_press("fastv@3").retention == 0.03
    assert make_press("holitom:tau=none@5").tau is None
    assert make_press("none") is None and make_press("100") is None
    assert make_press("unified@2/1", layers=12).inner_layer == 11
    assert make_press("unified:inner_layer=4@2/1", layers=12).inner_layer == 4
    assert with_options("unified@2", ["tau=0.8"]) == "unified:tau=0.8@2"
    assert with_options("unified:k=5", ["tau=0.8"]) == "unified:k=5,tau=0.8"
    for name, cell, text in [
        ("unified", "2/1", "unified@2/1"),
        ("unified", "2", "unified:inner_merging=false@2"),
        ("holitom", "10/5", "holitom@10/5"),
        ("fastv", "2/1", "fastv@100/2"),
        ("visionzip", "2/1", "visionzip@2"),
    ]:
        assert grid_settings(name, cell).text == text


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("nope@2", "unknown press 'nope'; press must be one of unified, fastv"),
        ("unified:k=1,k=2", "'k' is given twice"),
        ("unified:k", "must be key=value"),
        ("unified:bogus=1", "has no parameter 'bogus'; its parameters: retention, tau"),
        ("unified:k=0", "k must be an integer >= 1"),
        ("unified@2/1/0.5", "retention must be A or A/B"),
        ("unified@x", "numbers of percent"),
        ("unified:inner_keep=0.5@2/1", "inner_keep through @A/B or as an option"),
        ("visionzip@2/1", "no inner stage; write @2"),
        ("fastv@50/2", "FastV keeps every token before its layer K"),
        ("none@2", "the uncompressed model takes no options or retention"),
    ],
)
def test_settings_errors_name_what_is_wrong(text, match):
    with pytest.raises(ValueError, match=match):
        parse_settings(text)
