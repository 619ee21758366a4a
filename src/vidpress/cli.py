"""The ``vidpress`` command line.

Each subcommand is one ``add_<name>_command(subparsers)`` function that adds its parser and sets
``handler`` (a function of the parsed arguments returning an exit code); :data:`COMMANDS` lists
them. Library ``ValueError``s become ``vidpress: error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from vidpress.metrics.flops import (
    BUDGET_ROUNDINGS,
    CONVENTIONS,
    DECODE_TOKENS,
    PRESS_NAMES,
    TEXT_TOKENS,
    FlopsBreakdown,
    count_flops,
)
from vidpress.metrics.model_specs import MODEL_SPECS

PROG = "vidpress"


def _flops_table(result: FlopsBreakdown) -> str:
    """A short readable summary of a FLOPs breakdown."""
    inputs, tokens = result.inputs, result.tokens
    press = f"{inputs.press}, retention {inputs.retention:g}"
    if inputs.layer is not None:
        press += f", layer {inputs.layer}"
    if inputs.inner_keep is not None:
        press += f", inner keep {inputs.inner_keep:g}"
    llm_tokens = f"{tokens.outer_tokens} visual tokens"
    if tokens.inner_tokens != tokens.outer_tokens:
        short = tokens.short_from_layer
        llm_tokens += f" in layers < {short}, {tokens.inner_tokens} from layer {short} on"
    rows = [
        ("vision tower", result.vision_tower),
        ("projector", result.projector),
        ("compression", result.compression),
        ("LLM prefill", result.prefill.total),
        (f"LLM decode ({inputs.decode_tokens} tokens)", result.decode.total),
        ("LM head", result.lm_head),
        ("total", result.total),
    ]
    lines = [
        f"model       {inputs.model}: {inputs.frames} frames x {inputs.tokens_per_frame} tokens "
        f"= {tokens.visual_tokens} visual tokens",
        f"press       {press}",
        f"LLM         {llm_tokens}",
        f"convention  {inputs.convention}",
        "",
        f"{'component':<28}{'TFLOPs':>10}",
    ]
    lines += [f"{name:<28}{flops / 1e12:>10.3f}" for name, flops in rows]
    return "\n".join(lines)


def _run_flops(args: argparse.Namespace) -> int:
    result = count_flops(
        args.model,
        press=args.press,
        retention=args.retention,
        inner_keep=args.inner_keep,
        layer=args.layer,
        frames=args.frames,
        tokens_per_frame=args.tokens_per_frame,
        convention=args.convention,
        text_tokens=args.text_tokens,
        decode_tokens=args.decode_tokens,
        budget_rounding=args.budget_rounding,
    )
    print(json.dumps(result.to_dict(), indent=2) if args.json else _flops_table(result))
    return 0


def add_flops_command(subparsers: argparse._SubParsersAction) -> None:
    """``vidpress flops``: analytic FLOPs of a model under a press."""
    parser = subparsers.add_parser(
        "flops",
        help="analytic FLOPs of a Video-LLM under a press",
        description="Analytic FLOPs (prefill + decoding) of a Video-LLM under a token press.",
    )
    parser.add_argument(
        "--model",
        default="llava-onevision-7b",
        help=f"one of {', '.join(MODEL_SPECS)}, or a path to a config.json or its directory",
    )
    parser.add_argument("--press", default="none", help=f"one of {', '.join(PRESS_NAMES)}")
    parser.add_argument(
        "--retention",
        type=float,
        default=1.0,
        help="ratio in (0, 1]: visual tokens kept (fastv: kept from --layer on)",
    )
    parser.add_argument(
        "--inner-keep",
        type=float,
        help="ratio in (0, 1] of the outer budget kept from --layer on (unified, holitom)",
    )
    parser.add_argument("--layer", type=int, help="K (fastv: 3, unified/holitom: 18)")
    parser.add_argument("--frames", type=int, help="sampled frames (default: the model's)")
    parser.add_argument("--tokens-per-frame", type=int, help="visual tokens per frame")
    parser.add_argument("--convention", choices=CONVENTIONS, default="exact")
    parser.add_argument(
        "--text-tokens",
        type=int,
        default=TEXT_TOKENS,
        help="prompt text tokens (exact convention only)",
    )
    parser.add_argument("--decode-tokens", type=int, default=DECODE_TOKENS)
    parser.add_argument("--budget-rounding", choices=BUDGET_ROUNDINGS, default="global")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_run_flops)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_flops_command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Visual token compression for Video-LLMs."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the subcommand, return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ValueError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
