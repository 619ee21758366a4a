"""Which planted evidence survives stage 1: per press, how many of a SynthVQA item's flashes (count,
order), moving-shape frames (motion) and shape tokens (position) are still among the tokens that
enter the LLM. It explains the committed grid (``synthvqa_testbed.md``): why a press keeps the
needle but not the count. CPU, about 15 s per item at 32 frames, 392 px.

    python benchmarks/evidence_kept.py --per-family 15 --weights committed \
        --out benchmarks/results/synthvqa_evidence_kept

``--weights``: the testbed's weights, as ``vidpress eval --weights`` (committed, untrained or a
weights file).

Evidence: the token cells (28 x 28 px at 392 px, one pooled 14 x 14 token each) where the planted
shape covers >= 25% of the pixels, found by comparing the item's frames with its background clip.
An event: a run of consecutive frames holding evidence (count / order flashes are separated by
at least one empty frame; a motion is one run). A token "on evidence": a stage-1 output token
whose position (frame, row, col; a cluster's: its centre's) is an evidence cell. Only stage 1
matters here, so the presses run without their in-LLM stage.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from vidpress.commands.arguments import projector_weights, weights_argument
from vidpress.evaluation import parse_config
from vidpress.evaluation.report import cpu_diagnostic_record, write_json_and_markdown
from vidpress.evaluation.runner import evaluate_items
from vidpress.testbed import FAMILIES, SynthVQA, assemble_testbed
from vidpress.testbed.video import default_clips

CONFIGS = (
    "unified:inner_merging=false@2",
    "unified:inner_merging=false,attention_order=false@2",
    "unified:inner_merging=false,similarity_gate=false@2",
    "unified:inner_merging=false,clustering=false@2",
    "unified:centred_gate=true,inner_merging=false@2",
    "holitom:inner_merging=false@2",
    "fastvid@2",
    "visionzip@2",
    "random@2",
)
EVENT_FAMILIES = ("count", "order", "motion", "position")
COVERAGE = 0.25


def evidence_cells(suite: SynthVQA, item, side: int) -> torch.Tensor:
    """[T, side, side] bool: token cells where the planted shape covers >= COVERAGE of pixels."""
    clip = next(c for c in suite.clips if c.path.name == item.source)
    where = [clip.source_indices.index(f) for f in item.frame_indices]
    planted = (item.frames != clip.frames[where]).any(dim=1).float()  # [T, H, W]
    t, h, w = planted.shape
    cells = planted.reshape(t, side, h // side, side, w // side).mean(dim=(2, 4))
    return cells >= COVERAGE


def events(cells: torch.Tensor) -> list[list[int]]:
    """Runs of consecutive frames holding evidence (lists of frame numbers)."""
    runs: list[list[int]] = []
    for f in cells.flatten(1).any(dim=1).nonzero().flatten().tolist():
        if runs and runs[-1][-1] == f - 1:
            runs[-1].append(f)
        else:
            runs.append([f])
    return runs


def kept_evidence(cells: torch.Tensor, positions: torch.Tensor) -> dict:
    """What of the evidence ``cells`` the stage-1 output at ``positions: [B, 3]`` keeps."""
    on = cells[positions[:, 0], positions[:, 1], positions[:, 2]]
    frames_on = set(positions[on, 0].tolist())
    runs = events(cells)
    return {
        "tokens_on_evidence": int(on.sum()),
        "evidence_cells": int(cells.sum()),
        "events": len(runs),
        "events_kept": sum(any(f in frames_on for f in run) for run in runs),
        "evidence_frames": sum(len(run) for run in runs),
        "evidence_frames_kept": len(frames_on),
        "frames_with_tokens": len(set(positions[:, 0].tolist())),
    }


def summarise(rows: list[dict], predictions: dict) -> dict:
    """Per family: means of the counts, the share of items whose every event is kept, and the
    GPU grid's accuracy of the press on these items (when its predictions are given)."""
    out = {}
    for fam in sorted({r["family"] for r in rows}, key=FAMILIES.index):
        sel = [r for r in rows if r["family"] == fam]
        n = len(sel)
        out[fam] = {
            "items": n,
            "events": sum(r["events"] for r in sel) / n,
            "events_kept": sum(r["events_kept"] for r in sel) / n,
            "all_events_kept": sum(r["events_kept"] == r["events"] for r in sel) / n,
            "evidence_frames": sum(r["evidence_frames"] for r in sel) / n,
            "evidence_frames_kept": sum(r["evidence_frames_kept"] for r in sel) / n,
            "tokens_on_evidence": sum(r["tokens_on_evidence"] for r in sel) / n,
            "frames_with_tokens": sum(r["frames_with_tokens"] for r in sel) / n,
        }
        if predictions:
            right = [predictions[r["index"]] == r["answer"] for r in sel]
            out[fam]["grid_accuracy"] = sum(right) / n
    return out


def grid_predictions(paths: list[Path], name: str) -> dict[int, int]:
    """Item index -> predicted option of config ``name`` in the first committed ``vidpress eval``
    JSON of ``paths`` that has it (empty when none has)."""
    for path in paths:
        result = json.loads(path.read_text())
        config = next((c for c in result["configs"] if c["name"] == name), None)
        if config is not None:
            return dict(zip(result["items"]["indices"], config["predictions"], strict=True))
    return {}


def markdown(result: dict) -> str:
    lines = [
        "# Which planted evidence survives stage 1 at 2% (SynthVQA test items)",
        "",
        f"- command: `{result['command']}`",
        f"- machine: {result['machine']}; date {result['date']}; {result['seconds']:.0f} s",
        f"- {result['items']} test items ({result['per_family']} per family: "
        f"{', '.join(EVENT_FAMILIES)}), 32 frames at 392 px, 6,272 tokens, 125 kept (2%)",
        "- columns: events (flashes; a motion is one event) and how many keep >= 1 token on the "
        "shape; the share of items whose every event is kept; evidence frames and how many keep "
        "a token on the shape; tokens on the shape; frames holding any kept token (of 32); the "
        "press's accuracy on these items in the committed GPU grid (`grid acc.`).",
        "",
        "| press | family | events | kept | all kept | evidence frames | kept | tokens on "
        "shape | frames with tokens | grid acc. |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, fams in result["summary"].items():
        for fam, s in fams.items():
            acc = s.get("grid_accuracy")
            lines.append(
                f"| `{name}` | {fam} | {s['events']:.2f} | {s['events_kept']:.2f} | "
                f"{100 * s['all_events_kept']:.0f}% | {s['evidence_frames']:.1f} | "
                f"{s['evidence_frames_kept']:.1f} | {s['tokens_on_evidence']:.1f} | "
                f"{s['frames_with_tokens']:.1f} | {'-' if acc is None else f'{100 * acc:.0f}%'} |"
            )
    return "\n".join(lines) + "\n"


def recorded_command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run, every option that shapes the result named."""
    return (
        f"python benchmarks/evidence_kept.py --per-family {args.per_family} "
        f"--configs '{args.configs}' --weights {args.weights} --grid {' '.join(args.grid)} "
        f"--out {args.out}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-family", type=int, default=10)
    parser.add_argument("--configs", default=";".join(CONFIGS), help="';'-separated specs")
    parser.add_argument(
        "--grid",
        nargs="+",
        default=[
            "benchmarks/results/synthvqa_testbed.json",
            "benchmarks/results/synthvqa_testbed_centred_gate.json",
        ],
        help="committed eval JSONs whose predictions give the accuracy column",
    )
    weights_argument(parser)
    parser.add_argument("--out", required=True, help="output stem (.json and .md)")
    args = parser.parse_args()
    start = time.perf_counter()
    configs = [parse_config(s) for s in args.configs.split(";") if s]
    suite = SynthVQA(default_clips(), split="test", size=700, num_frames=32, frames_px=392)
    indices = suite.first_indices(args.per_family, EVENT_FAMILIES)
    model, processor = assemble_testbed(392, projector_weights(args.weights))
    side = math.isqrt(processor.spec.tokens_per_frame)  # 14 tokens per side at 392 px
    rows: dict[str, list[dict]] = {c.name: [] for c in configs}

    def record(config, items, stats):
        for b, item in enumerate(items):
            cells = evidence_cells(suite, item, side)
            row = kept_evidence(cells, stats.kept_positions[b].cpu())
            rows[config.name].append(
                {"index": item.index, "family": item.family, "answer": item.answer, **row}
            )

    evaluate_items(model.eval(), processor, suite, configs, indices, on_stats=record)
    grid_paths = [Path(g) for g in args.grid if Path(g).exists()]
    result = cpu_diagnostic_record(
        recorded_command(args),
        start,
        weights=args.weights,
        items=len(indices),
        per_family=args.per_family,
        summary={
            name: summarise(r, grid_predictions(grid_paths, name)) for name, r in rows.items()
        },
        rows=rows,
    )
    write_json_and_markdown(args.out, result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
