"""The testbed diagnostics (benchmarks/gate_admissions.py, benchmarks/evidence_kept.py) build the
testbed with the weights they are given (both once measured an untrained projector under the
committed weights' name)."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from benchmark_scripts import load_benchmark


class Built(Exception):
    """Raised by the stand-in testbed builder: the script got as far as building it."""


@pytest.mark.parametrize("name", ["gate_admissions", "evidence_kept"])
@pytest.mark.parametrize(
    ("given", "built_with"),
    [("committed", "committed"), ("untrained", None), ("w.safetensors", "w.safetensors")],
)
def test_the_testbed_is_built_with_the_weights_named(monkeypatch, name, given, built_with):
    script = load_benchmark(name)
    calls = []

    def build(frames_px, projector_state=None):
        calls.append((frames_px, projector_state))
        raise Built

    monkeypatch.setattr(script, "assemble_testbed", build)
    suite = types.SimpleNamespace(first_indices=lambda *args: [])
    monkeypatch.setattr(script, "SynthVQA", lambda *args, **kwargs: suite)
    monkeypatch.setattr(script, "default_clips", lambda: [])
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--weights", given, "--out", "x"])
    with pytest.raises(Built):
        script.main()
    assert calls == [(392, built_with)]


def test_evidence_kept_records_every_option_of_its_run():
    script = load_benchmark("evidence_kept")
    args = script.argparse.Namespace(
        per_family=3,
        configs="fastvid@2",
        weights="w.safetensors",
        grid=["a.json", "b.json"],
        out="o",
    )
    command = script.recorded_command(args)
    for part in (
        "--per-family 3",
        "--configs 'fastvid@2'",
        "--weights w.safetensors",
        "--grid a.json b.json",
        "--out o",
    ):
        assert part in command


def test_likeness_separates_a_common_component_from_the_rest():
    likeness = load_benchmark("gate_admissions").likeness
    distinct = torch.eye(8)  # orthogonal rows
    shared = distinct + 3.0  # the same rows plus one large common component
    assert likeness(distinct)["mean_cosine"] == pytest.approx(0.0, abs=1e-6)
    assert likeness(shared)["mean_cosine"] > 0.9
    assert likeness(shared)["mean_cosine_centred"] == pytest.approx(
        likeness(distinct)["mean_cosine_centred"], abs=1e-6
    )
    assert likeness(shared)["common_share"] > 0.9 > likeness(distinct)["common_share"]
