"""Where the fast path's time to first token goes on one GPU: phases, host syncs, host time.

    python benchmarks/profile_ttft.py --presses unified fastv --out ttft_profile

On the LLaVA-OV-7B architecture (random bf16 weights, 32 frames of 384 px), for each press at
2%/1% under ``FastGenerator`` (CUDA graphs, after warm-up calls that capture them):
- phases of one call (medians, CUDA events): host work before the vision tower, the tower,
  the gap to the compressed prompt (scores, stage 1, placing), the graphed prefill, and the
  first token's copy to the host;
- the host syncs of one call and the source line of each (``torch.cuda.set_sync_debug_mode``);
- kernels launched and the GPU's busy time against the call's wall time (``torch.profiler``);
- the Python functions with the most host time (``cProfile``, a text file per press).
``--vision [VARIANT ...]`` also times the adapter's video feature path eager and under other
kernels (SDPA's cuDNN attention, ``torch.compile`` of every encoder layer; ``VISION_VARIANTS``)
and compares the features.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from vidpress.adapters.registry import get_adapter
from vidpress.engine.fast import FastGenerator
from vidpress.metrics.architectures import build_architecture, frame_size, video_prompt
from vidpress.metrics.latency import Clock, phase_hooks
from vidpress.presses.settings import grid_settings, make_press
from vidpress.provenance import provenance

sys.path.insert(0, str(Path(__file__).parent))
from profile_stage1 import kernel_profile, sync_sites  # noqa: E402
from vision_contiguous import time_features  # noqa: E402

PHASES = (
    ("host_before_vision_ms", "start", "vision_start"),
    ("vision_ms", "vision_start", "vision_end"),
    ("gap_ms", "vision_end", "llm_start"),
    ("prefill_ms", "llm_start", "llm_end"),
)


def random_onevision(frames: int) -> tuple:
    """(model, inputs, provenance): the LLaVA-OV-7B architecture with random bf16 weights on
    the GPU and a prompt of one video of ``frames`` frames at the tower's size."""
    model = build_architecture("llava-onevision-7b", "cuda")
    inputs = video_prompt(model, "llava_onevision", frames, frame_size("llava_onevision", False))
    origin = provenance(model="llava-onevision-7b (random bf16)", frames=frames, device="cuda")
    return model, inputs, origin


def phases_of_call(model, fast: FastGenerator, inputs: dict, clock: Clock) -> dict:
    """The phases of one ``fast.generate(inputs, 1)`` in milliseconds, and its host TTFT."""
    clock.sync()
    with phase_hooks(model, clock) as record:
        record.put("start", clock)
        out = fast.generate(inputs, 1, mark=lambda name: record.put(name, clock))
    m = record.marks
    row = {name: clock.ms(m[a], m[b]) for name, a, b in PHASES}
    row["ttft_ms"] = 1000.0 * out.first_token_s
    return row


def python_hot_spots(call, top: int) -> str:
    """cProfile of one ``call()``: the ``top`` functions by cumulative and by own host time."""
    profiler = cProfile.Profile()
    profiler.enable()
    call()
    torch.cuda.synchronize()
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return text.getvalue()


def profile_press(model, inputs, name: str, repeats: int, out: Path) -> dict:
    layers = len(get_adapter(model).decoder_layers)
    press = make_press(grid_settings(name, "2/1"), layers)
    clock = Clock("cuda")
    with torch.no_grad(), press(model) as run:
        fast = FastGenerator(run)
        for _ in range(3):
            fast.generate(inputs, 1)
        rows = [phases_of_call(model, fast, inputs, clock) for _ in range(repeats)]
        stats = run.stats[-1]
        call = lambda: fast.generate(inputs, 1)  # noqa: E731
        syncs = sync_sites(call)
        kernels = kernel_profile(call, top=25)
        (out / f"{name}_python.txt").write_text(python_hot_spots(call, 45))
        (out / f"{name}_ops.txt").write_text(kernels.pop("top_host_ops"))
    record = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    record.update(
        press=name,
        score_ms=1000.0 * stats.score_seconds,
        outer_ms=1000.0 * stats.outer_seconds,
        inner_ms=1000.0 * stats.inner_seconds,
        syncs=sum(syncs.values()),
        sync_sites=dict(syncs),
        **kernels,
    )
    return record


VISION_VARIANTS = ("cudnn", "compile", "compile+cudnn", "max-autotune")


def vision_variant(adapter, inputs: dict, repeats: int, variant: str, reference) -> dict:
    """The video feature path under ``variant``: "cudnn" (SDPA's cuDNN attention kernel),
    "compile" (every vision encoder layer under ``torch.compile``), both, or "max-autotune"
    (compiled in that mode); its median, the seconds of the whole measurement (compilation
    included) and the distance of its features to ``reference``."""
    layers = adapter.vision_layers
    originals = [layer.forward for layer in layers]
    if "compile" in variant or variant == "max-autotune":
        torch._dynamo.reset()
        mode = "max-autotune-no-cudagraphs" if variant == "max-autotune" else None
        for layer in layers:
            layer.forward = torch.compile(layer.forward, mode=mode, dynamic=False)
    kernels = sdpa_kernel(SDPBackend.CUDNN_ATTENTION) if "cudnn" in variant else nullcontext()
    try:
        with kernels:
            started = time.perf_counter()
            times, features = time_features(adapter, inputs, repeats)  # warm-ups compile
            seconds = time.perf_counter() - started
    finally:
        for layer, forward in zip(layers, originals, strict=True):
            layer.forward = forward
    diff = (features.float() - reference.float()).abs()
    return {
        "ms": statistics.median(times),
        "seconds_with_warmup": seconds,
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "features_max_abs": float(reference.float().abs().max()),
    }


def vision_variants(model, inputs: dict, repeats: int, variants: list[str], save) -> dict:
    """The adapter's video feature path eager, then under each variant (``save`` after each)."""
    adapter = get_adapter(model)
    handles = adapter.attach_hooks()
    record: dict = {}
    try:
        with torch.no_grad():
            eager, reference = time_features(adapter, inputs, repeats)
            record["eager_ms"] = statistics.median(eager)
            for variant in variants:
                try:
                    record[variant] = vision_variant(adapter, inputs, repeats, variant, reference)
                except Exception as error:  # a variant this machine cannot run is reported
                    record[variant] = {"error": f"{type(error).__name__}: {error}"[:500]}
                save(record)
    finally:
        for handle in handles:
            handle.remove()
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", nargs="*", default=["unified", "fastvid", "fastv"])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--vision", nargs="*", default=None, choices=VISION_VARIANTS, metavar="VARIANT"
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, inputs, origin = random_onevision(args.frames)
    report = {
        "provenance": origin,
        "presses": [],
    }
    for name in args.presses:
        report["presses"].append(profile_press(model, inputs, name, args.repeats, out))
        (out / "ttft_profile.json").write_text(json.dumps(report, indent=1))
    if args.vision is not None:

        def save(record: dict) -> None:
            report["vision_variants"] = record
            (out / "ttft_profile.json").write_text(json.dumps(report, indent=1))

        vision_variants(model, inputs, args.repeats, args.vision or list(VISION_VARIANTS), save)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
