"""Presses on a model dispatched by accelerate's device map (the machinery of sharded models).

Multi-GPU ``device_map="auto"`` places each module on a device and wraps it in accelerate's hooks
that move inputs and weights. The CPU twin: offload decoder layers and the LM head to disk, so
the same hooks run on every forward. Every press must keep the same tokens and generate the same
text as on the model without a device map.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import dispatch_model

import tiny_models as tm
from vidpress.presses import PRESSES

FAMILIES = tuple(tm.TINY_FAMILIES)

pytestmark = pytest.mark.usefixtures("tiny_cpu")


def dispatched(family: str, offload_dir) -> torch.nn.Module:
    """The tiny model of ``family`` with its second decoder layer and LM head offloaded to disk."""
    model = tm.family_model(family)
    device_map = {"": "cpu", "model.language_model.layers.1": "disk", "lm_head": "disk"}
    return dispatch_model(model, device_map=device_map, offload_dir=str(offload_dir))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", sorted(PRESSES))
def test_press_on_a_dispatched_model_matches_the_plain_model(family, name, tmp_path):
    inputs = tm.family_batch(family, tm.family_prompts(family)[:1])
    press = tm.tiny_press(name)
    model = tm.family_model(family)
    with press(model) as run:
        expected, _, _ = tm.greedy(model, inputs, steps=6)
        expected_stats = run.stats[0]
    model = dispatched(family, tmp_path)
    # Offloaded weights wait on the meta device: accelerate's hooks load them on each forward.
    assert model.lm_head.weight.device.type == "meta"
    assert model.model.language_model.layers[1].mlp.up_proj.weight.device.type == "meta"
    with press(model) as run:
        got, _, _ = tm.greedy(model, inputs, steps=6)
        stats = run.stats[0]
    assert torch.equal(got, expected)
    assert stats.kept_outer == expected_stats.kept_outer
    assert stats.kept_inner == expected_stats.kept_inner
    for got_positions, expected_positions in zip(
        stats.kept_positions, expected_stats.kept_positions, strict=True
    ):
        assert torch.equal(got_positions, expected_positions)


def test_cuda_and_cpu_split_script_on_cpu(tmp_path):
    """The GPU check (benchmarks/gpu_device_map_check.py: last layers placed on "cpu", the rest on
    cuda:0) at tiny size on the CPU: every press keeps the same tokens and text."""
    import runpy
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_device_map_check.py"
    out = tmp_path / "check.json"
    argv = [str(script), "--tiny", "--cpu-layers", "1", "--families", "llava_onevision"]
    old, sys.argv = sys.argv, [*argv, "--out", str(out)]
    try:
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = old
    assert done.value.code == 0
    report = json.loads(out.read_text())
    runs = report["families"][0]["runs"]
    assert sorted(r["press"] for r in runs) == sorted(PRESSES)
    assert all(r["same_kept_positions"] and r["same_greedy_tokens"] for r in runs)
