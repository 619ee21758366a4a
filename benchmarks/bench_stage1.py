"""Time the stage-1 (before the LLM) methods on one GPU: CUDA events, warm-up, medians.

    python benchmarks/bench_stage1.py --out benchmarks/results/stage1_h100.json

Features are synthetic but shaped like real video features (a scene of repeated objects that
drifts over time, plus noise), in bf16 at the LLM width D = 3584 (LLaVA-OV-7B), because the
gate and the clustering do less work on unstructured random vectors. Peak memory is reported
as the extra memory allocated over the inputs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from vidpress import functional as F
from vidpress.engine.graphs import PlannedReplays
from vidpress.metrics.latency import Clock, peak_memory, time_call


def synthetic_video(frames: int, per_frame: int, dim: int, device: str, seed: int = 0):
    """tokens [T, N, D] bf16 with spatial and temporal redundancy, scores [T, N]."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    objects = torch.randn(64, dim, generator=g)
    layout = torch.randint(0, 64, (per_frame,), generator=g)
    drift = torch.cumsum(0.05 * torch.randn(frames, 1, dim, generator=g), dim=0)
    tokens = objects[layout][None] + drift + 0.3 * torch.randn(frames, per_frame, dim, generator=g)
    scores = torch.rand(frames, per_frame, generator=g)
    return tokens.to(device, torch.bfloat16), scores.to(device)


def time_method(name, tokens, scores, retention, repeats, warmup, graphs=False):
    """Median and spread of CUDA-event times (ms) and the extra peak memory (MB). ``graphs``:
    the device work after each host decision replays as CUDA graphs (``PlannedReplays``, as
    in the fast path); the first call, which captures them, is timed apart."""
    runner = PlannedReplays() if graphs else None

    def call():
        return F.compress_video_tokens(name, tokens, scores, retention=retention, runner=runner)

    first = time_call(call, Clock("cuda"), 0, 1)[0]
    kept = len(call())  # also a warm-up call
    for _ in range(warmup - 1):
        call()
    with peak_memory("cuda") as memory:
        times = time_call(call, Clock("cuda"), 0, repeats)
    return {
        "method": name,
        "frames": tokens.shape[0],
        "tokens_per_frame": tokens.shape[1],
        "dim": tokens.shape[2],
        "retention": retention,
        "kept": kept,
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "repeats": repeats,
        "extra_peak_mb": memory["extra_bytes"] / 2**20,
        "first_call_ms": first,
        **({"graphs": runner.captures} if graphs else {}),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["unified", "fastvid"])
    parser.add_argument("--frames", nargs="+", type=int, default=[32, 256])
    parser.add_argument("--tokens-per-frame", type=int, default=196)
    parser.add_argument("--dim", type=int, default=3584)
    parser.add_argument("--retention", type=float, default=0.02)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--graphs", action="store_true", help="replay the device work as graphs")
    parser.add_argument("--out", default=None)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("this benchmark needs a CUDA GPU (run it through the device tool)")
    rows = []
    for frames in args.frames:
        tokens, scores = synthetic_video(frames, args.tokens_per_frame, args.dim, "cuda")
        for name in args.methods:
            row = time_method(
                name, tokens, scores, args.retention, args.repeats, args.warmup, args.graphs
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    write_report("benchmarks/bench_stage1.py", argv, rows, args.out)


def write_report(script: str, argv: list[str], rows: list[dict], out: str | None) -> None:
    """The rows with the command, GPU, versions and date, as JSON at ``out`` (if given)."""
    report = {
        "command": " ".join([f"python {script}", *argv]),
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "results": rows,
    }
    if out:
        Path(out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
