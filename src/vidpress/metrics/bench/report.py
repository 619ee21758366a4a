"""A ``vidpress bench`` report on disk: its markdown page, the files it is written to, and
reading a saved one back."""

from __future__ import annotations

import json
import math

from vidpress.metrics.bench.config import SWEEP_RETENTION
from vidpress.metrics.bench.plot import plot
from vidpress.metrics.bench.targets import find_row, median_of
from vidpress.metrics.floors import floors_markdown
from vidpress.metrics.model_specs import PAPER_MODEL


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        value = value.get("median")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None, digits: int = 1) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.{digits}f}"


def markdown(report: dict) -> str:
    """The report as a markdown page: setup, the main table, vision scores, sweep, bars."""
    m, cfg = report["model"], report["config"]
    timer = "CUDA events" if report["device"] != "cpu" else "perf_counter"
    lines = [
        f"# `vidpress bench`: {m['name']} ({m['description']}), random {m['dtype']} weights",
        "",
        f"Command: `{report['command']}`  ",
        f"Device: {report['device']}, torch {report['torch']}, transformers "
        f"{report['transformers']}, Python {report['python']}, {report['date']}.  ",
        f"Model: {m['parameters'] / 1e9:.2f} B parameters, {m['attention']} attention; "
        f"{m['frames']} frames of {m['frame_size']} px, {m['prompt_tokens']} prompt tokens; "
        f"batch 1.  ",
        f"Protocol: {cfg['warmup']} warm-up generate call(s) per setting, medians of "
        f"{cfg['repeats']} repeats ({timer}); decode over {cfg['decode_tokens']} greedy "
        "tokens after the first (EOS ignored); peak = peak allocated GPU memory of that call.",
        "",
        "Columns: *vision* = vision tower + projector in the forward; *scores* = the press's "
        "vision scores; *process* = its stage-1 compression before the LLM (`run.stats`, "
        "scores excluded); *inner* = its in-LLM stage (inside *prefill*); *gap* = everything "
        "between the vision tower and the LLM (scores, process, placing tokens, embeddings); "
        "*prefill* = the LLM forward (decoder + LM head on the last position); *TTFT* = "
        "`generate` of one token from pixel inputs.",
        "",
        "*prefill x* and *TTFT x*: against the uncompressed model (100%). *decode tok/s*: over "
        "all decoded tokens (from the median step in brackets, which host hiccups do not move).",
        "",
        "| press | retention | tokens into LLM | vision ms | scores ms | process ms | inner ms "
        "| gap ms | prefill ms | prefill x | TTFT ms | TTFT x | decode tok/s | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = find_row(report, "vanilla", "100%")
    p0, t0 = median_of(base, "prefill_ms"), median_of(base, "ttft_ms")
    for r in report["rows"]:
        if r["press"] == "vanilla":
            tokens = str(m["prompt_tokens"])
        else:
            kept = r.get("kept_outer")
            inner = r.get("kept_inner")
            tokens = f"{kept}" if inner is None else f"{kept} -> {inner}"
            if kept is None:
                tokens = "-"
        lines.append(
            f"| {r['press']} | {r['retention']} | {tokens} | {_fmt(r.get('vision_ms'))} "
            f"| {_fmt(r.get('scores_ms'), 2)} | {_fmt(r.get('process_ms'), 2)} "
            f"| {_fmt(r.get('inner_ms'), 2)} | {_fmt(r.get('gap_ms'), 1)} "
            f"| {_fmt(r.get('prefill_ms'))} | {_ratio(p0, median_of(r, 'prefill_ms'))} "
            f"| {_fmt(r.get('ttft_ms'))} | {_ratio(median_of(r, 'ttft_ms'), t0, 3)} "
            f"| {_fmt(r.get('decode_tok_s'))} ({_fmt(r.get('decode_tok_s_median_step'))}) "
            f"| {_fmt(r.get('peak_gib'), 2)} |"
        )
    lines.append("")
    lines.append(
        "Tokens into LLM: visual tokens entering the LLM (-> from layer K on); vanilla: the whole"
        " prompt. FastV keeps every token before its layer K. Presses without an inner stage "
        "apply A of 'A/B'. The uncompressed model runs the stock transformers path, whose 2 x 2 "
        "bilinear pooling of the projected features (after *vision*, so inside its *gap*) is a "
        "slow channels-first kernel; the presses' adapter pools the same values channels-last "
        "(see the vision table)."
    )
    vision = report.get("vision")
    if vision:
        checks = vision.get("checks", {})
        lines += [
            "",
            "## Vision scores (once, on the main prompt)",
            "",
            "| path | ms | overhead |",
            "|---|---|---|",
            f"| stock video feature path (`get_video_features`: tower, projector, pooling) | "
            f"{_fmt(vision['vision_ms'])} | |",
            f"| the adapter's video path without scores (the same features, embeddings, "
            f"positions) | {_fmt(vision['prepare_plain_ms'])} | |",
            f"| vidpress scores: the scored layer's q/k, received attention in two flash passes "
            f"| {_fmt(vision['scores_ms'], 2)} | +{_fmt(vision['scores_pct_of_vision'])}% of the "
            "line above |",
            f"| the adapter's video path with scores | {_fmt(vision['prepare_scored_ms'])} "
            f"| +{_fmt(vision['scored_path_pct_over_plain'])}% |",
        ]
        if "scores_reference_ms" in checks:
            lines.append(
                f"| scores from explicit softmax rows in float32 (the reference path) | "
                f"{_fmt(checks['scores_reference_ms'], 2)} | |"
            )
        if "naive_ms" in vision:
            lines.append(
                f"| naive: stock path on eager attention with `output_attentions`, score from "
                f"the maps | {_fmt(vision['naive_ms'])} | +{_fmt(vision['naive_pct_over_vision'])}%"
                " of the stock path |"
            )
        else:
            lines.append(f"| naive (`output_attentions`) | failed: {vision.get('naive_error')} | |")
        if checks:
            lines += [
                "",
                f"Checks: the adapter's features equal the stock path's bitwise: "
                f"{checks.get('features_equal_stock')} (max abs diff "
                f"{checks.get('features_max_abs_diff')}); scores (flash path: "
                f"{checks.get('scores_flash_path')}) against the reference: max relative "
                f"difference {checks.get('scores_max_rel_diff', float('nan')):.2e}, top-2% token "
                f"sets overlap {checks.get('scores_top2pct_overlap', float('nan')):.0%}.",
            ]
        extra = vision.get("scores_extra_mib")
        if extra is not None:
            lines.append("")
            lines.append(
                f"Extra peak memory of the scores: {extra:.0f} MiB; of the naive path: "
                f"{_fmt(vision.get('naive_extra_mib'), 0)} MiB."
            )
    if report.get("sweep"):
        lines += [
            "",
            f"## Scaling: the unified press at {SWEEP_RETENTION:.0%}",
            "",
            "In the model: *process* and *scores* from `run.stats`, *vision* and *prefill* from "
            "the forward's phases. On the model's own features: `press.compress_video` time "
            "and its extra peak memory (over the features already in memory).",
            "",
            "| frames | visual tokens | kept | vision ms | scores ms | process ms | prefill ms "
            "| compress_video ms | extra peak MiB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in report["sweep"]:
            lines.append(
                f"| {r['frames']} | {r['tokens_in']} | {r['kept_outer']} | "
                f"{_fmt(r['vision_ms'])} | {_fmt(r['scores_ms'], 2)} | "
                f"{_fmt(r['process_ms'], 2)} | {_fmt(r['prefill_ms'])} | "
                f"{_fmt(r['compress_ms'], 2)} | {_fmt(r['compress_extra_mib'], 0)} |"
            )
    lines += floors_markdown(report)
    bars = report.get("bars")
    if bars:
        lines += [
            "",
            f"## Bars (issue: {PAPER_MODEL}, 32 frames x 196 tokens, one H100)",
            "",
        ]
        if m["name"] != PAPER_MODEL:
            lines += [f"(Measured on {m['name']}; the bars are set for {PAPER_MODEL}.)", ""]
        lines += ["| bar | target | measured | met |", "|---|---|---|---|"]
        for b in bars:
            met = {True: "yes", False: "NO", None: "not measured"}[b["met"]]
            value = "-" if b["measured"] is None else f"{b['measured']:.2f} {b['unit']}"
            lines.append(f"| {b['bar']} | {b['target']} | {value} | {met} |")
    return "\n".join(lines) + "\n"


def write_outputs(report: dict, prefix: str, png: bool = True) -> list[str]:
    """``prefix``.json, ``prefix``.md and (``png``) ``prefix``.png; returns the paths."""
    paths = [f"{prefix}.json", f"{prefix}.md"]
    profiles = {k: v for k, v in report.items() if k.startswith("profile")}
    with open(paths[0], "w") as f:
        json.dump({k: v for k, v in report.items() if k not in profiles}, f, indent=1)
        f.write("\n")
    if profiles:
        paths.append(f"{prefix}.profile.txt")
        with open(paths[-1], "w") as f:
            for key, text in profiles.items():
                f.write(f"==== {key}\n{text}\n\n")
    with open(paths[1], "w") as f:
        f.write(markdown(report))
    if png:
        plot(report, f"{prefix}.png")
        paths.append(f"{prefix}.png")
    return paths


REPORT_KEYS = ("model", "config", "device", "rows")


def read_report(path) -> dict:
    """A report saved by ``vidpress bench --out``; ValueError naming --from-json and the file
    when it is missing, not JSON or not such a report."""
    try:
        with open(path) as f:
            report = json.load(f)
    except FileNotFoundError as err:
        raise ValueError(f"--from-json: report file not found: {path}") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--from-json: invalid JSON in {path}: {err}") from err
    missing = [k for k in REPORT_KEYS if k not in report] if isinstance(report, dict) else None
    if missing is None or missing:
        raise ValueError(
            f"--from-json: {path} is not a vidpress bench report (a JSON object with "
            f"{', '.join(REPORT_KEYS)})"
        )
    return report
