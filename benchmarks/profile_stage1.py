"""Where a stage-1 method's time goes on one GPU: host syncs, kernel launches, busy GPU time.

    python benchmarks/profile_stage1.py --methods unified fastvid --out stage1_profile.json
    python benchmarks/profile_stage1.py --methods unified --graphs --out stage1_profile.json

For each method, on bench_stage1's synthetic video features (bf16, D = 3584): the host syncs of
one call and the source line of each (``torch.cuda.set_sync_debug_mode``), the number of
kernels launched, the GPU's busy time (the sum of kernel times) against the call's wall time,
the span from its first kernel's start to its last kernel's end, the operators with the most
host time and the kernels with the most GPU time. A call that is much longer than its kernels is
bound by the host: launches and syncs, not arithmetic. ``--graphs``: the device work after each
host decision replays as CUDA graphs (``PlannedReplays``, as in the fast path).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from vidpress import functional as F
from vidpress.engine.graphs import PlannedReplays

sys.path.insert(0, str(Path(__file__).parent))
from bench_stage1 import synthetic_video  # noqa: E402


def sync_sites(call) -> Counter:
    """``file:line`` of every host sync one ``call()`` makes."""
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return Counter(
        f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)
    )


def kernel_profile(call, top: int) -> dict:
    """Kernels launched, GPU busy time and wall time of one ``call()``, and its costliest ops."""
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        call()
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    averages = prof.key_averages()
    starts = [e.time_range.start for e in kernels]
    ends = [e.time_range.end for e in kernels]
    return {
        "kernels": len(kernels),
        "gpu_busy_ms": sum(e.device_time for e in kernels) / 1e3,
        "gpu_span_ms": (max(ends) - min(starts)) / 1e3 if kernels else 0.0,
        "wall_ms_under_profiler": wall * 1e3,
        "top_host_ops": averages.table(sort_by="self_cpu_time_total", row_limit=top),
        "top_kernels": averages.table(sort_by="self_device_time_total", row_limit=top),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["unified", "fastvid"])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--tokens-per-frame", type=int, default=196)
    parser.add_argument("--dim", type=int, default=3584)
    parser.add_argument("--retention", type=float, default=0.02)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--graphs", action="store_true", help="replay as CUDA graphs")
    parser.add_argument("--out", default=None)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("this benchmark needs a CUDA GPU (run it through the device tool)")
    tokens, scores = synthetic_video(args.frames, args.tokens_per_frame, args.dim, "cuda")
    report = {"command": " ".join(["python benchmarks/profile_stage1.py", *argv]), "methods": {}}
    for name in args.methods:
        runner = PlannedReplays() if args.graphs else None

        def call(name=name, runner=runner):
            return F.compress_video_tokens(
                name, tokens, scores, retention=args.retention, runner=runner
            )

        for _ in range(3):
            call()
        sites = sync_sites(call)
        row = {"syncs": sum(sites.values()), "sync_sites": dict(sites.most_common())}
        row.update(kernel_profile(call, args.top))
        report["methods"][name] = row
        print(name, json.dumps({k: v for k, v in row.items() if not k.startswith("top_")}))
        print(row["top_host_ops"], row["top_kernels"], sep="\n", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
