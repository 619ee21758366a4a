"""``vidpress viz``: one PNG per video of the tokens a press keeps on the frames, and of the
tokens kept per frame by several presses (``vidpress.viz`` draws it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vidpress.commands.arguments import (
    check_output_dir,
    checkpoint_argument,
    device_argument,
    dtype_argument,
    press_arguments,
    press_from_args,
)
from vidpress.inference import (
    check_run_inputs,
    prepare,
    print_notes,
)
from vidpress.loading import load_model
from vidpress.viz import DEFAULT_COMPARE, VIZ_QUESTION, check_viz_press, presses_for, visualize

HELP = "PNG of the tokens a press keeps on the frames, and kept tokens per frame"
DESCRIPTION = (
    "One PNG per video: the sampled frames in a grid with the kept tokens highlighted (merged "
    "clusters coloured by cluster) for --press, and a bar chart of the tokens kept per frame for "
    "several presses side by side (stage 1, before the LLM)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    checkpoint_argument(parser)
    parser.add_argument("--video", required=True, nargs="+", metavar="FILE", help="video file(s)")
    parser.add_argument("--frames", type=int, help="frames to sample (default: the family's)")
    parser.add_argument("--fps", type=float, help="Qwen2.5-VL: frames per second to sample")
    device_argument(parser)
    dtype_argument(parser)
    press_arguments(parser)
    parser.add_argument(
        "--compare",
        default=",".join(DEFAULT_COMPARE),
        help="comma-separated presses for the per-frame bar chart (same retention)",
    )
    parser.add_argument(
        "--out", default="vidpress-viz", metavar="DIR", help="output folder (one PNG per video)"
    )


def main(args: argparse.Namespace) -> int:
    check_output_dir(args.out, "--out")
    press = press_from_args(args)
    check_viz_press(press)
    compare = [c.strip() for c in args.compare.split(",") if c.strip()]
    for name in compare:  # fail on a bad name before loading anything
        presses_for(press, "main", [name], args.retention)
    check_run_inputs(args.model, args.video, args.frames, args.fps)
    loaded = load_model(args.model, args.device, args.dtype)
    out_dir = Path(args.out)
    for video in args.video:
        prepared = prepare(loaded, video, VIZ_QUESTION, num_frames=args.frames, fps=args.fps)
        print_notes(prepared.notes)
        path = visualize(
            loaded,
            video,
            press,
            out=out_dir / f"{Path(video).stem}_viz.png",
            compare=compare,
            retention=args.retention,
            prepared=prepared,
        )
        print(path)
    return 0
