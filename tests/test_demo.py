"""``vidpress demo``: the main job end to end, at a small size (8 frames, 112 px)."""

from __future__ import annotations

import io
import json

from vidpress import demo
from vidpress.cli import main


def test_progress_steps_without_a_terminal():
    stream = io.StringIO()
    progress = demo.Progress(2, stream)
    with progress.step("first"):
        progress.status("1/3 tokens")
    progress.note("a note")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[1/2] first ..."
    assert lines[1].startswith("[1/2] first: done in ")
    assert lines[2].strip() == "a note"


def test_demo_end_to_end(tmp_path, capsys):
    argv = ["demo", "--frames", "8", "--size", "112", "--max-new-tokens", "4"]
    argv += ["--device", "cpu", "--out", str(tmp_path / "out"), "--model-dir", str(tmp_path / "tb")]
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = captured.out
    for text in (
        "answer, uncompressed:",
        "answer, unified 2%/1%:",
        "FLOPs, paper convention",
        "FLOPs, exact (all)",
        "prefill (to 1st token)",
        "kept per frame (stage 1)",
    ):
        assert text in out
    assert "[6/6] drawing the kept tokens: done in" in captured.err
    png = tmp_path / "out" / "bikes_viz.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    record = json.loads((tmp_path / "out" / "demo.json").read_text())
    runs = record["runs"]
    unified = runs["unified 2%/1%"]
    visual = record["video"]["visual_tokens"]
    assert visual == 8 * 16 and runs["uncompressed"]["stats"] is None
    assert unified["stats"]["kept_outer"] == 3 and unified["stats"]["kept_inner"] == 2
    assert unified["flops"]["paper"]["tflops"] < runs["uncompressed"]["flops"]["paper"]["tflops"]
    assert record["model"]["projector"] == "trained weights (testbed.safetensors)"
    prov = record["provenance"]
    assert prov["press"]["name"] == "unified" and prov["frames"] == 8
    assert prov["resolution"] == [112, 112] and prov["vidpress"]["version"]
    # a second run reuses the built model
    assert main(argv) == 0
    assert "reused" in capsys.readouterr().err


def test_demo_errors(tmp_path, capsys):
    assert main(["demo", "--video", str(tmp_path / "none.mp4")]) == 2
    assert "video file not found" in capsys.readouterr().err
    assert main(["demo", "--size", "100"]) == 2
    assert "frames_px must be a positive multiple of 14" in capsys.readouterr().err
    assert main(["demo", "--retention", "0"]) == 2
    assert "retention must be in (0, 1]" in capsys.readouterr().err
