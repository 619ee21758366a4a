"""``vidpress flops``: analytic FLOPs (prefill + decoding) of a Video-LLM under a press, as a
short table or one JSON object."""

from __future__ import annotations

import argparse
import json

from vidpress.metrics.flops import (
    BUDGET_ROUNDINGS,
    CONVENTIONS,
    DECODE_TOKENS,
    TEXT_TOKENS,
    FlopsBreakdown,
    count_flops,
)
from vidpress.metrics.model_specs import MODEL_SPECS, PAPER_MODEL
from vidpress.presses import PRESSES
from vidpress.presses.settings import make_press, with_options

HELP = "analytic FLOPs of a Video-LLM under a press"
DESCRIPTION = "Analytic FLOPs (prefill + decoding) of a Video-LLM under a token press."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=PAPER_MODEL,
        help=f"one of {', '.join(MODEL_SPECS)}, or a path to a config.json or its directory",
    )
    parser.add_argument(
        "--press",
        default="none",
        help=f"none or one of {', '.join(PRESSES)}, or a settings text (unified:inner_merging=false"
        "@2, fastv@10: vidpress.presses.settings)",
    )
    parser.add_argument(
        "--retention",
        type=float,
        help="ratio in (0, 1]: visual tokens entering the LLM (default: the press's; fastv: kept "
        "from --layer on)",
    )
    parser.add_argument(
        "--inner-keep",
        type=float,
        help="ratio in (0, 1] of the outer budget kept from --layer on (unified, holitom)",
    )
    parser.add_argument("--layer", type=int, help="K (default: the press's; fastv 2, unified 18)")
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


def flops_table(result: FlopsBreakdown) -> str:
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


def main(args: argparse.Namespace) -> int:
    flags = (
        ("retention", args.retention),
        ("inner_keep", args.inner_keep),
        ("inner_layer", args.layer),
    )
    options = [f"{name}={value!r}" for name, value in flags if value is not None]
    result = count_flops(
        args.model,
        press=make_press(with_options(args.press, options)),
        frames=args.frames,
        tokens_per_frame=args.tokens_per_frame,
        convention=args.convention,
        text_tokens=args.text_tokens,
        decode_tokens=args.decode_tokens,
        budget_rounding=args.budget_rounding,
    )
    print(json.dumps(result.to_dict(), indent=2) if args.json else flops_table(result))
    return 0
