"""benchmarks/gate_admissions.py builds the testbed with the weights it is given and reports them
(it once measured an untrained projector under the committed weights' name)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


class Built(Exception):
    """Raised by the stand-in testbed builder: the script got as far as building it."""


def load_script():
    spec = importlib.util.spec_from_file_location(
        "gate_admissions", ROOT / "benchmarks" / "gate_admissions.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("given", "built_with"),
    [("committed", "committed"), ("untrained", None), ("w.safetensors", "w.safetensors")],
)
def test_the_testbed_is_built_with_the_weights_named(monkeypatch, given, built_with):
    script = load_script()
    calls = []

    def build(frames_px, projector_state=None):
        calls.append((frames_px, projector_state))
        raise Built

    monkeypatch.setattr(script, "assemble_testbed", build)
    monkeypatch.setattr(script, "SynthVQA", lambda *args, **kwargs: None)
    monkeypatch.setattr(script, "default_clips", lambda: [])
    monkeypatch.setattr(sys, "argv", ["gate_admissions.py", "--weights", given, "--out", "x"])
    with pytest.raises(Built):
        script.main()
    assert calls == [(392, built_with)]
