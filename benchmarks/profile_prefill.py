"""Where the fast path's compressed prefill goes on one GPU: kernels by kind, and the decoder's
matrix products against the weight-read floor.

    python benchmarks/profile_prefill.py --out prefill_profile.json

On the LLaVA-OV-7B architecture (random bf16 weights, 32 frames of 384 px), unified at 2%/1%
under ``FastGenerator`` (CUDA graphs, after warm-up calls that capture them):
- the prefill graph alone, replayed (CUDA events, medians), and its kernels grouped by kind
  (matrix products, attention, normalisation and elementwise work) with their GPU time;
- the same with ``compile=True`` (``engine.compiled``), and how far its first logits move;
- each linear layer shape of one decoder layer at the prompt's row counts (and one row, as in
  decoding): milliseconds and the bandwidth its weight read reaches, separate and with the
  projections that share an input concatenated (q/k/v, gate/up).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from vidpress.adapters.registry import get_adapter
from vidpress.engine.fast import FastGenerator
from vidpress.metrics.latency import Clock, time_call
from vidpress.presses.settings import grid_settings, make_press

sys.path.insert(0, str(Path(__file__).parent))
from profile_ttft import random_onevision  # noqa: E402
from vision_contiguous import feature_args  # noqa: E402

KINDS = (  # by the first match, in this order
    ("attention", ("fmha", "flash", "sdpa", "attention", "softmax")),
    ("matmul", ("gemm", "gemv", "nvjet", "xmma", "cutlass", "splitk")),
    ("reduce", ("reduce", "norm", "mean")),
    ("copy", ("copy", "cat", "index", "gather", "scatter")),
)


def kind_of(kernel: str) -> str:
    name = kernel.lower()
    return next((kind for kind, keys in KINDS if any(k in name for k in keys)), "elementwise")


def kernel_kinds(call) -> dict:
    """GPU milliseconds and kernel counts of one ``call()`` by kind, and the costliest kernels."""
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    kinds: dict = {}
    by_name: dict = {}
    for e in kernels:
        entry = kinds.setdefault(kind_of(e.name), {"ms": 0.0, "kernels": 0})
        entry["ms"] += e.device_time / 1e3
        entry["kernels"] += 1
        by_name[e.name[:90]] = by_name.get(e.name[:90], 0.0) + e.device_time / 1e3
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:20]
    return {
        "kernels": len(kernels),
        "gpu_busy_ms": sum(e.device_time for e in kernels) / 1e3,
        "kinds": kinds,
        "top": top,
    }


def replays(shape, graph, repeats: int) -> list[float]:
    """CUDA-event milliseconds of ``repeats`` replays of a prefill graph (the cache rewind,
    which each call runs before it, is outside the timed span)."""
    clock = Clock("cuda")
    times = []
    for _ in range(repeats):
        shape.rewind()
        start = clock.mark()
        graph.replay()
        times.append(clock.ms(start, clock.mark()))
    return times


def prefill_graph(model, inputs, repeats: int, compile: bool = False) -> dict:
    """The unified 2%/1% prefill graph (``FastGenerator(run, compile=compile)``): replay time,
    the first token's logits, kernels by kind, and those of the eager fast path."""
    layers = len(get_adapter(model).decoder_layers)
    press = make_press(grid_settings("unified", "2/1"), layers)
    with torch.no_grad(), press(model) as run:
        fast = FastGenerator(run, compile=compile)
        for _ in range(3):
            fast.generate(inputs, 1)
        (shape,) = fast._shapes.values()
        (replay,) = shape.prefill.values()
        record = {
            "prompt_rows": list(replay.inputs[0].shape),
            "graph_replay_ms": statistics.median(replays(shape, replay.graph, repeats)),
            "logits": replay.outputs[0].float().clone(),
        }
        record["graph_kernels"] = kernel_kinds(lambda: replays(shape, replay.graph, 1))
        if not compile:
            eager = FastGenerator(run, cuda_graphs=False)
            eager.generate(inputs, 1)
            record["eager_call_kernels"] = kernel_kinds(lambda: eager.generate(inputs, 1))
    return record


def vision_kinds(model, inputs) -> dict:
    """Kernels of one pass of the adapter's video feature path (contiguous residual stream)."""
    adapter = get_adapter(model)
    args = feature_args(adapter, inputs)
    handles = adapter.attach_hooks()
    try:
        with torch.no_grad():
            adapter._video_features(*args)
            return kernel_kinds(lambda: adapter._video_features(*args))
    finally:
        for handle in handles:
            handle.remove()


def linear_shapes(config) -> dict:
    """(in, out) of each linear layer of one Qwen2 decoder layer, and the concatenated ones."""
    d, i = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * (d // config.num_attention_heads)
    return {
        "q": (d, d),
        "k": (d, kv),
        "v": (d, kv),
        "o": (d, d),
        "gate": (d, i),
        "up": (d, i),
        "down": (i, d),
        "qkv": (d, d + 2 * kv),
        "gate_up": (d, 2 * i),
    }


def gemm_table(config, rows: list[int], repeats: int) -> list[dict]:
    """Milliseconds of ``F.linear`` for each shape of ``linear_shapes`` and row count."""
    table = []
    for name, (fan_in, fan_out) in linear_shapes(config).items():
        weight = torch.randn(fan_out, fan_in, device="cuda", dtype=torch.bfloat16)
        for m in rows:
            x = torch.randn(m, fan_in, device="cuda", dtype=torch.bfloat16)
            times = time_call(
                lambda x=x, w=weight: torch.nn.functional.linear(x, w), Clock("cuda"), 5, repeats
            )
            ms = statistics.median(times)
            table.append(
                {
                    "linear": name,
                    "rows": m,
                    "ms": ms,
                    "weight_tb_s": weight.numel() * 2 / (ms * 1e-3) / 1e12,
                }
            )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rows", nargs="+", type=int, default=[1, 64, 98, 128, 160, 256])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    model, inputs, origin = random_onevision(args.frames)
    report = {
        "provenance": origin,
        "prefill": prefill_graph(model, inputs, args.repeats),
    }
    reference = report["prefill"].pop("logits")
    Path(args.out).write_text(json.dumps(report, indent=1))
    report["vision"] = vision_kinds(model, inputs)
    Path(args.out).write_text(json.dumps(report, indent=1))
    report["linear"] = gemm_table(get_adapter(model).language_model.config, args.rows, args.repeats)
    Path(args.out).write_text(json.dumps(report, indent=1))
    compiled = prefill_graph(model, inputs, args.repeats, compile=True)
    logits = compiled.pop("logits")
    compiled["max_abs_logit_diff"] = float((logits - reference).abs().max())
    compiled["same_first_token"] = bool((logits.argmax(-1) == reference.argmax(-1)).all())
    report["prefill_compiled"] = compiled
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
