"""The testbed diagnostics (benchmarks/gate_admissions.py, benchmarks/evidence_kept.py) build the
testbed with the weights they are given (both once measured an untrained projector under the
committed weights' name)."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


class Built(Exception):
    """Raised by the stand-in testbed builder: the script got as far as building it."""


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["gate_admissions", "evidence_kept"])
@pytest.mark.parametrize(
    ("given", "built_with"),
    [("committed", "committed"), ("untrained", None), ("w.safetensors", "w.safetensors")],
)
def test_the_testbed_is_built_with_the_weights_named(monkeypatch, name, given, built_with):
    script = load_script(name)
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
