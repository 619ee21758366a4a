"""`vidpress bench`: a CPU-sized run end to end (the CI smoke test), settings, bars, errors."""

from __future__ import annotations

import json

import pytest
import torch

from vidpress.cli import main
from vidpress.metrics.architectures import ARCHITECTURES, build_architecture, video_prompt
from vidpress.metrics.bench.config import BenchConfig
from vidpress.metrics.bench.measure import run_bench
from vidpress.metrics.bench.targets import evaluate_bars
from vidpress.metrics.latency import Clock, decode_speed, prefill_phases, summarize, time_call
from vidpress.presses.settings import grid_settings, make_press, parse_retention


def test_bench_tiny_cpu_run_writes_json_markdown_and_png(tmp_path, capsys):
    prefix = tmp_path / "bench_tiny"
    args = ["bench", "--model", "llava-onevision-tiny", "--device", "cpu", "--frames", "4"]
    args += ["--presses", "unified", "fastvid", "fastv", "--retentions", "100", "2/1", "5"]
    args += ["--warmup", "0", "--repeats", "1", "--decode-tokens", "3", "--sweep-frames", "4"]
    assert main([*args, "--fast", "--out", str(prefix)]) == 0
    report = json.loads((tmp_path / "bench_tiny.json").read_text())
    assert report["command"].startswith("vidpress bench --model llava-onevision-tiny")
    assert "--fast" in report["command"]
    assert report["device"] == "cpu" and report["date"]
    record = report["provenance"]
    assert record["vidpress"]["version"] != "unknown" and record["packages"]["torch"]
    assert record["frames"] == report["model"]["frames"] and record["seed"] == 0
    rows = {(r["press"], r["retention"]): r for r in report["rows"]}
    assert set(rows) == {("vanilla", "100%")} | {
        (p, r) for p in ("unified", "fastvid", "fastv") for r in ("2%/1%", "5%")
    }
    unified = rows["unified", "2%/1%"]
    assert unified["tokens_in"] == 4 * 49 and unified["kept_outer"] == 4
    assert unified["kept_inner"] == 2 and rows["unified", "5%"]["kept_inner"] is None
    assert rows["fastv", "2%/1%"]["kept_outer"] == 196  # FastV: everything enters the LLM
    for row in report["rows"]:
        for key in ("vision_ms", "prefill_ms", "ttft_ms", "forward_ms"):
            assert row[key]["median"] > 0
        assert row["decode_tok_s"] > 0 and row["decode_tokens"] == 3
        fast = row.get("fast")
        assert (fast is None) == (row["press"] == "vanilla")  # the fast path needs a press
        if fast is not None:  # eager on a CPU: the same static-shape code, no graphs
            assert fast["graphs"] is False and fast["decode_tok_s"] > 0
            assert fast["ttft_ms"]["median"] > fast["prefill_ms"]["median"] > 0
    assert unified["process_ms"]["median"] > 0 and unified["scores_ms"]["median"] > 0
    vision = report["vision"]
    assert vision["checks"]["features_equal_stock"]
    assert vision["checks"]["scores_max_rel_diff"] < 1e-4
    assert vision["naive_ms"]["median"] > 0  # the eager output_attentions path ran
    (sweep,) = report["sweep"]
    assert sweep["frames"] == 4 and sweep["kept_outer"] == 4
    names = [b["bar"] for b in report["bars"]]
    assert len(names) == 11 and any("prefill" in n for n in names)
    fast_ttft = next(b for b in report["bars"] if b["bar"] == "TTFT at 2%/1%, fast path")
    assert fast_ttft["measured"] == unified["fast"]["ttft_ms"]["median"]
    markdown = (tmp_path / "bench_tiny.md").read_text()
    assert "| unified | 2%/1% | 4 -> 2 |" in markdown and "## Bars" in markdown
    assert (tmp_path / "bench_tiny.png").read_bytes()[:4] == b"\x89PNG"
    # re-rendering a saved report measures nothing
    assert main(["bench", "--from-json", str(prefix) + ".json", "--out", str(tmp_path / "re")]) == 0
    assert (tmp_path / "re.md").read_text() == markdown


def test_bench_tiny_qwen_runs():
    config = BenchConfig(
        model="qwen2.5-vl-tiny",
        device="cpu",
        frames=4,
        presses=["unified"],
        retentions=["100", "2/1"],
        warmup=0,
        repeats=1,
        decode_tokens=2,
        vision_check=False,
    )
    report = run_bench(config, log=lambda text: None)
    unified = report["rows"][1]
    assert unified["tokens_in"] == 2 * 16 and unified["kept_outer"] == 1
    assert report["model"]["family"] == "qwen2_5_vl"


def test_full_size_models_need_a_gpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "--model", "llava-onevision-7b"]) == 2
    err = capsys.readouterr().err
    assert "needs a CUDA GPU" in err and "llava-onevision-tiny" in err
    assert main(["bench", "--model", "qwen2.5-vl-tiny", "--device", "cuda"]) == 2
    assert "device cuda was asked for but no CUDA device is available" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "label", "outer", "inner"),
    [
        ("100", "100%", None, None),
        ("100%", "100%", None, None),
        ("2/1", "2%/1%", 0.02, 0.01),
        ("10%/5%", "10%/5%", 0.1, 0.05),
        ("5", "5%", 0.05, None),
        ("1/0.5", "1%/0.5%", 0.01, 0.005),
    ],
)
def test_parse_retention(text, label, outer, inner):
    cell = parse_retention(text)
    assert cell.label == label
    if outer is None:  # the uncompressed model's cell
        assert cell.uncompressed
    else:
        press = make_press(grid_settings("unified", cell), 28)
        assert press.retention == pytest.approx(outer)
        kept = press.retention * press.inner_keep if press.inner_merging else None
        assert kept == pytest.approx(inner) if inner else kept is None


@pytest.mark.parametrize("text", ["0", "2/4", "abc", "1/2/3", "150", "-1"])
def test_parse_retention_rejects(text):
    with pytest.raises(ValueError, match="retention"):
        parse_retention(text)


def test_make_press_settings():
    def press(name, cell, layers=28):
        return make_press(grid_settings(name, cell), layers)

    unified = press("unified", "2/1")
    assert (unified.retention, unified.inner_keep, unified.inner_layer) == (0.02, 0.5, 18)
    assert press("unified", "2").inner_merging is False
    holitom = press("holitom", "2/1")
    assert holitom.inner_keep == 0.5 and holitom.inner_merging
    fastv = press("fastv", "2/1")
    assert fastv.retention == 0.02 and fastv.inner_layer == 2
    assert press("fastvid", "2/1").retention == 0.02
    assert parse_retention("100").uncompressed
    assert press("unified", "2/1", 10).inner_layer == 9
    with pytest.raises(ValueError, match="press must be one of"):
        press("nope", "2/1")


def test_bench_rejects_bad_options(capsys):
    assert main(["bench", "--model", "nope"]) == 2
    assert "model must be one of" in capsys.readouterr().err
    base = ["bench", "--model", "llava-onevision-tiny", "--device", "cpu"]
    assert main([*base, "--presses", "nope"]) == 2
    assert "press must be one of" in capsys.readouterr().err
    assert main([*base, "--repeats", "0"]) == 2
    assert "repeats must be >= 1" in capsys.readouterr().err


def _row(press, retention, **medians):
    return {
        "press": press,
        "retention": retention,
        **{k: {"median": v} for k, v in medians.items()},
    }


def test_bars_from_a_report():
    report = {
        "rows": [
            _row("vanilla", "100%", prefill_ms=700.0, ttft_ms=1000.0),
            _row("unified", "2%/1%", process_ms=4.0, prefill_ms=30.0, ttft_ms=300.0),
            _row("fastvid", "2%/1%", process_ms=8.0),
        ],
        "vision": {"scores_pct_of_vision": 3.0},
        "sweep": [
            {"frames": 32, "process_ms": {"median": 4.0}, "compress_extra_mib": 200.0},
            {"frames": 256, "process_ms": {"median": 60.0}, "compress_extra_mib": 1500.0},
        ],
    }
    bars = {b["bar"]: b for b in evaluate_bars(report)}
    assert [b["met"] for b in bars.values()] == [True, True, True, True, True, False, True]
    assert bars["LLM prefill speed-up, 100% / 2%/1%"]["measured"] == pytest.approx(700 / 30)
    assert bars["unified process / FastVID process at 2% (same run)"]["measured"] == 0.5
    assert evaluate_bars({"rows": []})[0]["met"] is None


def test_latency_helpers_on_cpu():
    clock = Clock("cpu")
    times = time_call(lambda: sum(range(1000)), clock, warmup=1, repeats=3)
    assert len(times) == 3 and all(t >= 0 for t in times)
    assert summarize([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    with pytest.raises(ValueError):
        summarize([])
    model = build_architecture("qwen2.5-vl-tiny")
    inputs = video_prompt(model, "qwen2_5_vl", 4, 112)
    with torch.no_grad():
        phases = prefill_phases(model, inputs, clock)
        decode = decode_speed(model, inputs, 4, clock)
    assert set(phases) == {"vision_ms", "gap_ms", "prefill_ms", "forward_ms"}
    assert phases["forward_ms"] >= phases["prefill_ms"] > 0
    assert decode["decode_step_ms"]["n"] == 4 and decode["decode_tok_s"] > 0


def test_architectures_are_the_published_sizes():
    assert set(ARCHITECTURES) == {
        "llava-onevision-7b",
        "qwen2.5-vl-7b",
        "llava-onevision-tiny",
        "qwen2.5-vl-tiny",
    }
    from vidpress.adapters.registry import get_family

    ov = get_family("llava_onevision").random_config(tiny=False)
    assert ov.vision_config.num_hidden_layers == 26 and ov.vision_config.hidden_size == 1152
    assert ov.text_config.hidden_size == 3584 and ov.text_config.num_hidden_layers == 28
    assert ov.text_config.num_key_value_heads == 4 and ov.text_config.intermediate_size == 18944
    qw = get_family("qwen2_5_vl").random_config(tiny=False)
    assert qw.vision_config.depth == 32 and qw.vision_config.fullatt_block_indexes == [
        7,
        15,
        23,
        31,
    ]
    assert qw.text_config.hidden_size == 3584


def test_timing_breakdown_names_only_functions_that_exist(monkeypatch):
    from vidpress.metrics.bench import profiles

    resolved = profiles.breakdown_targets()
    assert [qual for _, _, qual, _ in resolved] == [q for _, q in profiles.BREAKDOWN_TARGETS]
    assert all(callable(getattr(owner, attr)) for owner, attr, _, _ in resolved)

    stale = (*profiles.BREAKDOWN_TARGETS, ("vidpress.functional.unified", "no_such_function"))
    monkeypatch.setattr(profiles, "BREAKDOWN_TARGETS", stale)
    with pytest.raises(LookupError, match="vidpress.functional.unified.no_such_function"):
        profiles.breakdown_targets()
