"""``vidpress bench``: latency and memory of every press x retention on a full-size architecture
with random weights (``vidpress.metrics.bench`` measures and renders), or the re-rendering of a
saved report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vidpress.commands.arguments import check_output_dir
from vidpress.metrics.architectures import ARCHITECTURES
from vidpress.metrics.bench.config import PRESS_ORDER, RETENTIONS, BenchConfig
from vidpress.metrics.bench.measure import run_bench
from vidpress.metrics.bench.report import markdown, read_report, write_outputs
from vidpress.metrics.bench.targets import report_bars

HELP = "latency and memory of every press x retention on a full-size architecture"
DESCRIPTION = (
    "Build a Video-LLM architecture with random weights (the 7b ones need a CUDA GPU) and "
    "measure, for the uncompressed model and each press x retention: vision encoding, vision "
    "scores, compression (process), LLM prefill, time to first token, decode tokens/s and peak "
    "GPU memory (CUDA events, warm-up, medians). Writes JSON, markdown and a PNG."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=BenchConfig.model,
        help=f"one of {', '.join(ARCHITECTURES)} (random weights; the 7b ones need a GPU)",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--frames", type=int, default=32, help="frames of the video (32)")
    parser.add_argument("--size", type=int, help="frame side in pixels (the tower's input size)")
    parser.add_argument(
        "--presses",
        nargs="+",
        default=list(PRESS_ORDER),
        metavar="PRESS",
        help=f"presses to measure (default: {' '.join(PRESS_ORDER)})",
    )
    parser.add_argument(
        "--retentions",
        nargs="+",
        default=list(RETENTIONS),
        metavar="A/B",
        help="'100' (uncompressed), 'A/B' (A%% enter the LLM, B%% from layer K on) or 'A' "
        f"(outer stage only); default: {' '.join(RETENTIONS)}",
    )
    parser.add_argument("--warmup", type=int, default=1, help="warm-up calls per setting (1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per setting (5)")
    parser.add_argument("--decode-tokens", type=int, default=100, help="decoded tokens (100)")
    parser.add_argument(
        "--sweep-frames",
        nargs="*",
        type=int,
        default=[],
        metavar="T",
        help="frame counts of the scaling sweep of the unified press at 2%% (e.g. 32 64 128 256)",
    )
    parser.add_argument(
        "--no-vision-check",
        action="store_true",
        help="skip the vision-score comparison (plain, scored, output_attentions)",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="also measure the fast path (vidpress.fast: static KV cache, CUDA graphs) per press",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="with --fast: the fast path's decoder norms, MLPs and rotary application under "
        "torch.compile (FastGenerator(run, compile=True))",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also write torch.profiler tables (PREFIX.profile.txt)",
    )
    parser.add_argument(
        "--out",
        metavar="PREFIX",
        help="write PREFIX.json, PREFIX.md and PREFIX.png (default: print the markdown only)",
    )
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    parser.add_argument(
        "--from-json",
        metavar="JSON",
        help="measure nothing: render the markdown (and PNG) of a saved report to --out (default: "
        "next to the JSON)",
    )


def command_line(args: argparse.Namespace) -> str:
    """The run's command, every option explicit."""
    parts = ["vidpress", "bench", "--model", args.model, "--device", args.device]
    parts += ["--frames", str(args.frames)]
    if args.size:
        parts += ["--size", str(args.size)]
    parts += ["--presses", *args.presses, "--retentions", *args.retentions]
    parts += ["--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    parts += ["--decode-tokens", str(args.decode_tokens)]
    if args.sweep_frames:
        parts += ["--sweep-frames", *map(str, args.sweep_frames)]
    if args.no_vision_check:
        parts.append("--no-vision-check")
    if args.fast:
        parts.append("--fast")
    if args.compile:
        parts.append("--compile")
    if args.profile:
        parts.append("--profile")
    if args.out:
        parts += ["--out", args.out]
    return " ".join(parts)


def main(args: argparse.Namespace) -> int:
    if args.compile and not args.fast:
        raise ValueError("--compile applies to the fast path: give --fast too")
    if args.out:
        check_output_dir(Path(args.out).parent, "--out")
    if args.from_json:
        report = read_report(args.from_json)
        report["bars"] = report_bars(report)
        prefix = args.out or args.from_json.removesuffix(".json")
        for path in write_outputs(report, prefix, png=not args.no_plot):
            print(path)
        return 0
    config = BenchConfig(
        model=args.model,
        device=args.device,
        frames=args.frames,
        size=args.size,
        presses=list(args.presses),
        retentions=list(args.retentions),
        warmup=args.warmup,
        repeats=args.repeats,
        decode_tokens=args.decode_tokens,
        sweep_frames=list(args.sweep_frames),
        vision_check=not args.no_vision_check,
        profile=args.profile,
        fast=args.fast,
        compile=args.compile,
    )

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    checkpoint = None
    if args.out:

        def checkpoint(report: dict) -> None:  # partial results survive an interrupted run
            write_outputs(report, args.out, png=False)

    report = run_bench(config, command=command_line(args), log=log, checkpoint=checkpoint)
    if args.out:
        for path in write_outputs(report, args.out, png=not args.no_plot):
            print(path)
    else:
        print(markdown(report))
    return 0
