"""`vidpress flops`: JSON and table output, config paths, errors (exit code 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vidpress.cli import main
from vidpress.metrics import count_flops


def run_json(capsys, *args):
    assert main(["flops", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_flops_json_paper_example(capsys):
    out = run_json(
        capsys,
        *("--model", "llava-onevision-7b", "--frames", "32", "--press", "unified"),
        *("--retention", "0.02", "--inner-keep", "0.5", "--convention", "paper"),
    )
    assert out["tflops"] == pytest.approx(1.1, rel=0.05)
    assert out["inputs"]["layer"] == 18 and out["inputs"]["convention"] == "paper"
    assert out["tokens"]["outer_tokens"] == 125 and out["tokens"]["inner_tokens"] == 63
    parts = sum(out[k] for k in ("vision_tower", "projector", "compression", "lm_head"))
    assert out["total"] == parts + out["prefill"]["total"] + out["decode"]["total"]


def test_flops_json_matches_the_library(capsys):
    out = run_json(capsys, "--press", "fastv", "--retention", "0.1", "--layer", "5")
    expected = count_flops(press="fastv:retention=0.1,inner_layer=5")
    assert out["total"] == expected.total
    assert out["tokens"]["short_from_layer"] == 5
    assert out["vision_tower"] > 0 and out["prefill"]["k_proj"] < out["prefill"]["q_proj"]


def test_flops_accepts_a_config_directory(capsys, tmp_path):
    from transformers import LlavaOnevisionConfig

    LlavaOnevisionConfig().save_pretrained(tmp_path)
    out = run_json(capsys, "--model", str(tmp_path), "--press", "uniform", "--retention", "0.1")
    assert out["inputs"]["model"] == str(tmp_path)
    assert out["tokens"]["visual_tokens"] == 32 * 196


def test_flops_table(capsys):
    assert main(["flops", "--press", "holitom", "--retention", "0.05"]) == 0
    text = capsys.readouterr().out
    assert "total" in text and "TFLOPs" in text and "inner keep 0.5" in text


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--retention", "0"], "retention"),
        (["--press", "unified", "--retention", "1.5"], "retention"),
        (["--model", "no-such-model"], "model"),
        (["--press", "nope"], "press"),
        (["--frames", "0"], "frames"),
        (["--press", "uniform", "--retention", "0.1", "--inner-keep", "0.5"], "inner_keep"),
    ],
)
def test_flops_bad_input_exits_2_naming_the_argument(capsys, args, named):
    assert main(["flops", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vidpress: error: ") and named in err and "\n" not in err


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["flops", "--convention", "other"])
    assert exit_info.value.code == 2
    assert "--convention" in capsys.readouterr().err


def test_python_dash_m_vidpress():
    done = subprocess.run(
        [sys.executable, "-m", "vidpress", "flops", "--convention", "paper", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout)["tflops"] == pytest.approx(41.4, rel=0.01)
