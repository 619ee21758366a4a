"""Result writers: one JSON (everything, per-item predictions included), a markdown table and a
PNG plot (matplotlib, optional: skipped with a note when it is not installed)."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from vidpress.evaluation.configs import ablation_configs
from vidpress.provenance import git_revision
from vidpress.testbed.synthvqa import FAMILIES

SCORING_NOTE = (
    "Scoring: one prefill per item and configuration; the prediction is the argmax of the logits "
    'of the option-letter tokens "A" "B" "C" "D" at the last prompt position (the chat '
    "template's assistant turn), no generation. Chance is 25%."
)


def machine_info(device: str = "auto") -> dict:
    """Where the run happened: GPU or CPU name, threads, library versions, git commit."""
    import transformers

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available() and device != "cpu":
        info["device"] = torch.cuda.get_device_name(0)
    else:
        info["device"] = f"CPU ({platform.processor() or platform.machine()})"
    # A copy of the tree without .git (the GPU machine) is told its commit.
    info["git_commit"] = os.environ.get("VIDPRESS_GIT_COMMIT") or git_revision()["commit"]
    return info


def file_sha256(path) -> str | None:
    if path is None or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_header(command: list[str] | None = None, device: str = "auto") -> dict:
    return {
        "command": " ".join(command if command is not None else ["vidpress", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(device),
    }


def cpu_diagnostic_record(command: str, start: float, **fields) -> dict:
    """The head of a CPU diagnostic's result (benchmarks/*.py): its command, machine, date and
    seconds since ``start`` (a ``time.perf_counter()``), then ``fields``."""
    return {
        "command": command,
        "machine": f"CPU ({torch.get_num_threads()} threads), torch {torch.__version__}",
        "date": datetime.date.today().isoformat(),
        "seconds": time.perf_counter() - start,
        **fields,
    }


def write_json_and_markdown(stem, result: dict, text: str) -> None:
    """Write ``result`` to ``stem``.json and ``text`` to ``stem``.md."""
    stem = Path(stem)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(text)


def write_results(result: dict, out_dir, name: str, plot: bool = True) -> list[Path]:
    """Write ``name``.json, ``name``.md and (if matplotlib is there) ``name``.png."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md"]
    paths[0].write_text(json.dumps(result, indent=1) + "\n")
    png = out_dir / f"{name}.png"
    made_plot = plot and plot_results(result, png)
    paths[1].write_text(markdown(result, png.name if made_plot else None))
    if made_plot:
        paths.append(png)
    return paths


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def markdown(result: dict, png_name: str | None = None) -> str:
    """The markdown report: header, main grid, per-family table, ablation, bars."""
    configs = result["configs"]
    rows = {c["name"]: c for c in configs}
    run, suite = result.get("run", {}), result.get("suite", {})
    n = configs[0]["n"] if configs else 0
    lines = [
        f"# SynthVQA: {suite.get('split', 'test')} split, {n} items",
        "",
        f"- command: `{run.get('command', '')}`",
        f"- machine: {run.get('machine', {}).get('device', '?')}, torch "
        f"{run.get('machine', {}).get('torch', '?')}, transformers "
        f"{run.get('machine', {}).get('transformers', '?')}; date {run.get('date', '?')}; "
        f"commit {str(run.get('machine', {}).get('git_commit'))[:12]}",
        f"- model: {result.get('model', {}).get('description', '')}",
        f"- suite: {suite.get('num_frames')} frames at {suite.get('frames_px')} px, "
        f"{suite.get('tokens_per_frame')} tokens per frame "
        f"({suite.get('visual_tokens')} visual tokens), seed {suite.get('seed')}, clips: "
        f"{', '.join(suite.get('clip_names', []))}",
        f"- {SCORING_NOTE}",
        "- Vision features are computed once per video and shared by every configuration.",
    ]
    if result.get("stopped_early"):
        lines.append("- **The run hit its time limit: only the items above were evaluated.**")
    lines += ["", "## Accuracy (%) by press and retention (in brackets: % of uncompressed)", ""]
    main = [c for c in configs if c["group"] == "main" and c["press"] is not None]
    settings = sorted({c["row"] for c in main}, reverse=True)
    methods = list(dict.fromkeys(c["label"] for c in main))
    base = result.get("uncompressed_accuracy")
    lines.append(f"Uncompressed: **{_pct(base)}** (n = {n}).")
    lines.append("")
    if main:
        lines.append("| method | " + " | ".join(f"{s:g}%" for s in settings) + " |")
        lines.append("|---|" + "---|" * len(settings))
        for label in methods:
            cells = []
            for s in settings:
                hit = [c for c in main if c["label"] == label and c["row"] == s]
                if not hit:
                    cells.append("")
                    continue
                c = hit[0]
                cells.append(f"{_pct(c['accuracy'])} ({_pct(c['relative'])}) `{c['setting']}`")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "## Per task family (%)", ""]
    lines.append("| config | " + " | ".join(FAMILIES) + " | overall | ±95% | tokens in LLM |")
    lines.append("|---|" + "---|" * (len(FAMILIES) + 3))
    for c in configs:
        fam = " | ".join(_pct(c["per_family"][f]["accuracy"]) for f in FAMILIES)
        tokens = c["visual_tokens_outer"]
        inner = c["visual_tokens_inner"]
        tok = "-" if tokens is None else f"{tokens:.0f}"
        if inner is not None and tokens is not None and round(inner) != round(tokens):
            tok += f" -> {inner:.0f}"
        lines.append(
            f"| `{c['name']}` | {fam} | **{_pct(c['accuracy'])}** | {100 * c['ci95']:.1f} | {tok} |"
        )
    ablation = [rows.get(a.name) for a in ablation_configs()]
    if all(a is not None for a in ablation):
        lines += ["", "## Ablation at 2% without inner merging (paper Table 5)", ""]
        lines.append("| Attn | Sim | Cluster | accuracy | % of uncompressed |")
        lines.append("|---|---|---|---|---|")
        for a in ablation:
            p = a["params"]
            flags = [
                "x" if p.get(s, True) else ""
                for s in ("attention_order", "similarity_gate", "clustering")
            ]
            lines.append(f"| {' | '.join(flags)} | {_pct(a['accuracy'])} | {_pct(a['relative'])} |")
    bars = result.get("bars", {})
    if bars.get("checks"):
        lines += ["", "## The issue's bars", ""]
        lines.append("| check | value | passed | McNemar p (ours-only / theirs-only right) |")
        lines.append("|---|---|---|---|")
        for chk in bars["checks"]:
            val = chk["value"]
            val_s = f"{100 * val:+.1f} pts" if "ahead" in chk["check"] else f"{100 * val:.1f}%"
            extra = ""
            if "mcnemar_p" in chk:
                extra = (
                    f"{chk['mcnemar_p']:.3g} ({chk['only_ours_right']} / "
                    f"{chk['only_theirs_right']})"
                )
            lines.append(
                f"| {chk['check']} | {val_s} | {'yes' if chk['passed'] else '**no**'} | {extra} |"
            )
        lines.append("")
        lines.append(f"All bars met: **{'yes' if bars.get('all_passed') else 'no'}**.")
    if png_name:
        lines += ["", f"![accuracy vs retention]({png_name})"]
    return "\n".join(lines) + "\n"


def _grid_panel(ax, main: list[dict], base: float | None, n: int) -> None:
    """Accuracy vs retention, one line per press."""
    for label in dict.fromkeys(c["label"] for c in main):
        pts = sorted((c["row"], c["accuracy"]) for c in main if c["label"] == label)
        style = (
            {"linewidth": 2.6, "marker": "o"} if label.startswith("Unified") else {"marker": "."}
        )
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], label=label, **style)
    if base is not None:
        ax.axhline(100 * base, color="black", linestyle="--", linewidth=1, label="Uncompressed")
        ax.axhline(90 * base, color="grey", linestyle=":", linewidth=1, label="90% of uncompressed")
    ax.axhline(25, color="red", linestyle=":", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_xticks(sorted({c["row"] for c in main}), minor=False)
    ax.set_xticks([], minor=True)
    ax.xaxis.set_major_formatter(lambda value, _: f"{value:g}")
    ax.set_xlabel("visual tokens entering the LLM (%; FastV: kept after layer K)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"SynthVQA ({n} items)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def _wrapped(label: str, width: int = 44) -> str:
    """A configuration name broken after commas into lines of about ``width`` characters."""
    lines = [""]
    for part in label.replace(",", ", ").split(" "):
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def _bar_panel(ax, labels: list[str], accuracies: list[float], base, title: str) -> None:
    """Horizontal accuracy bars, the uncompressed accuracy as a dashed line."""
    ax.barh([_wrapped(label) for label in labels], [100 * a for a in accuracies], color="tab:blue")
    ax.tick_params(axis="y", labelsize=7)
    if base is not None:
        ax.axvline(100 * base, color="black", linestyle="--", linewidth=1)
    ax.axvline(25, color="red", linestyle=":", linewidth=1)
    ax.set_xlabel("accuracy (%)")
    ax.set_title(title)
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")


def plot_results(result: dict, path) -> bool:
    """Accuracy vs retention per press, the ablation bars and the extra (--config) configurations'
    bars, each panel when the result has its rows. False when there is nothing to plot or
    matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    configs = result["configs"]
    base = result.get("uncompressed_accuracy")
    main = [c for c in configs if c["group"] == "main" and c["press"] is not None]
    custom = [c for c in configs if c["group"] == "custom" and c["press"] is not None]
    rows = {c["name"]: c for c in configs}
    ablation_specs = ablation_configs()
    ablation = [rows.get(a.name) for a in ablation_specs]
    panels = []
    if main:
        panels.append(lambda ax: _grid_panel(ax, main, base, configs[0]["n"]))
    if all(a is not None for a in ablation):
        labels = [a.label for a in ablation_specs]
        accuracies = [a["accuracy"] for a in ablation]
        panels.append(
            lambda ax: _bar_panel(ax, labels, accuracies, base, "Stage-1 ablation, 2% w/o merging")
        )
    if custom:
        labels = [c["name"] for c in custom]
        accuracies = [c["accuracy"] for c in custom]
        panels.append(lambda ax: _bar_panel(ax, labels, accuracies, base, "Extra configurations"))
    if not panels:
        return False
    lines_per_bar = max((_wrapped(c["name"]).count("\n") + 1 for c in custom), default=1)
    height = max(4.8, 1.0 + 0.17 * lines_per_bar * len(custom))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), height), squeeze=False)
    for draw, ax in zip(panels, axes[0], strict=True):
        draw(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
