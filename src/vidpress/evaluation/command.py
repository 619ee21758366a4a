"""The handlers behind ``vidpress eval`` and ``vidpress testbed build`` (parsers in ``cli.py``)."""

from __future__ import annotations

import argparse
import json


def _weights(value: str):
    """--weights: committed, untrained or a path -> build_testbed's projector_state."""
    return None if value == "untrained" else value


def _command_line(args: argparse.Namespace) -> list[str]:
    """The ``vidpress eval`` command that reproduces ``args`` (every option spelled out)."""
    words = ["vidpress", "eval"]
    for key, value in vars(args).items():
        if key in ("handler", "argv", "command") or value is None or value is False:
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
    method ("unified")."""
    from vidpress.evaluation.configs import PAPER_PRESS, parse_config

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


def eval_command(args: argparse.Namespace) -> int:
    from vidpress.evaluation.configs import (
        ablation_configs,
        dedupe,
        parse_config,
        standard_configs,
    )
    from vidpress.evaluation.harness import SuiteSpec, distributed_rank
    from vidpress.evaluation.report import markdown
    from vidpress.evaluation.synthvqa import evaluate_synthvqa

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
        weights=_weights(args.weights),
        suite=suite,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        workers=args.workers,
        time_limit=args.time_limit,
        out_dir=args.out_dir,
        name=args.name,
        plot=not args.no_plot,
        command=_command_line(args),
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


def testbed_build_command(args: argparse.Namespace) -> int:
    import torch

    from vidpress.testbed.build import build_testbed

    out = build_testbed(
        args.dir,
        projector_state=_weights(args.weights),
        frames_px=args.px,
        dtype=getattr(torch, args.dtype),
    )
    print(f"built the testbed into {out}")
    return 0
