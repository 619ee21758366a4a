"""``vidpress testbed build DIR``: write the real-parts testbed model folder."""

from __future__ import annotations

import argparse

import torch

from vidpress.commands.arguments import check_output_dir, projector_weights, weights_argument
from vidpress.testbed.build import build_testbed

HELP = "the real-parts testbed model"
DESCRIPTION = "The real-parts testbed model: DINOv2-S + projector + SmolLM2-135M."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="testbed_command", required=True, metavar="ACTION")
    build = sub.add_parser(
        "build",
        help="build the testbed (DINOv2-S + projector + SmolLM2-135M) into DIR",
        description="Convert the pretrained parts (cached) and write a stock "
        "LlavaOnevisionForConditionalGeneration folder with the trained projector.",
    )
    build.add_argument("dir", metavar="DIR")
    build.add_argument("--px", type=int, default=392, help="frame side in pixels (multiple of 14)")
    weights_argument(build)
    build.add_argument("--dtype", default="float32", help="float32 or bfloat16")


def main(args: argparse.Namespace) -> int:
    """``vidpress testbed build``, its one action."""
    check_output_dir(args.dir, "DIR")
    out = build_testbed(
        args.dir,
        projector_state=projector_weights(args.weights),
        frames_px=args.px,
        dtype=getattr(torch, args.dtype),
    )
    print(f"built the testbed into {out}")
    return 0
