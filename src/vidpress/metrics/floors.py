"""Physical floors of each phase: how fast it could be on this device, for ``vidpress bench``.

A phase can go no faster than its weight-read bound (every weight it uses read once from
device memory, at the measured copy bandwidth) nor its compute bound (its analytic FLOPs at the
measured dense bf16 matrix-product rate); its floor is the larger of the two. The peaks are
measured on the device the benchmark runs on (``measure_peaks``), the FLOPs come from
``metrics.flops`` (the exact convention) and the weight bytes from the model itself.

    vision   the vision tower and projector on every frame (compute-bound)
    prefill  the LLM on the prompt as the press leaves it (L' tokens in layers < K, L'' from K)
    decode   one greedy step: every LLM weight and the KV cache read once (memory-bound)
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

import torch
from torch import nn

from vidpress.metrics.flops import (
    exact_prefill_layer,
    projector_flops,
    vision_tower_flops,
)
from vidpress.metrics.latency import Clock, time_call
from vidpress.metrics.model_specs import ModelSpec

COPY_BYTES = 2**31  # 2 GiB, read and written once per copy
MATMUL_SIDE = 8192


@dataclass(frozen=True)
class DevicePeaks:
    """Measured rates: device-memory bandwidth (bytes read + written per second) and dense
    bf16 matrix-product FLOP/s, each the median of ``repeats`` timed runs after a warm-up."""

    bandwidth_bytes_s: float
    bf16_flops_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def measure_peaks(device: torch.device, repeats: int = 10) -> DevicePeaks:
    """Copy bandwidth and bf16 matmul rate of a CUDA ``device``."""
    if torch.device(device).type != "cuda":
        raise ValueError(f"measure_peaks needs a CUDA device, got {device}")
    clock = Clock(device)
    with torch.cuda.device(device):
        src = torch.empty(COPY_BYTES, dtype=torch.uint8, device=device)
        dst = torch.empty_like(src)
        copy_ms = statistics.median(time_call(lambda: dst.copy_(src), clock, 1, repeats))
        a = torch.randn(MATMUL_SIDE, MATMUL_SIDE, dtype=torch.bfloat16, device=device)
        b = torch.randn_like(a)
        matmul_ms = statistics.median(time_call(lambda: a @ b, clock, 1, repeats))
    return DevicePeaks(
        bandwidth_bytes_s=2 * COPY_BYTES / (copy_ms / 1000),
        bf16_flops_s=2 * MATMUL_SIDE**3 / (matmul_ms / 1000),
    )


def llm_weight_bytes(model: nn.Module, language_model: nn.Module) -> int:
    """Bytes of the decoder's weights and the LM head (what one LLM pass must read)."""
    params = list(language_model.parameters()) + list(model.lm_head.parameters())
    unique = {p.data_ptr(): p for p in params}.values()  # a tied LM head counts once
    return sum(p.numel() * p.element_size() for p in unique)


def _ms(amount: float, rate: float) -> float:
    return 1000.0 * amount / rate


def phase_floors(
    spec: ModelSpec,
    peaks: DevicePeaks,
    weight_bytes: int,
    *,
    frames: int,
    text_tokens: int,
    outer_tokens: int,
    inner_tokens: int | None = None,
    inner_layer: int | None = None,
    decode_cached: int | None = None,
) -> dict:
    """Floors in milliseconds of vision, prefill, TTFT (their sum) and one decode step.

    outer_tokens / inner_tokens: visual tokens in layers < ``inner_layer`` / from it on (None:
    no inner stage). decode_cached: tokens in the KV cache during decoding (default the
    prompt's, as the last layer holds it).
    """
    llm = spec.llm
    vision_flops = vision_tower_flops(spec.vision, frames) + projector_flops(spec, frames)
    prefill_flops = 0
    for layer in range(llm.layers):
        short = inner_layer is not None and layer >= inner_layer and inner_tokens is not None
        visual = inner_tokens if short else outer_tokens
        prefill_flops += exact_prefill_layer(llm, visual + text_tokens).total
    prefill_flops += 2 * llm.hidden * llm.vocab  # the LM head on the last row
    compute = peaks.bf16_flops_s
    read = peaks.bandwidth_bytes_s  # bytes moved per second, reads and writes alike
    cached = decode_cached if decode_cached is not None else outer_tokens + text_tokens
    kv_bytes = 2 * llm.layers * cached * llm.kv_dim * 2  # keys and values, bf16
    vision_ms = _ms(vision_flops, compute)
    prefill_ms = max(_ms(weight_bytes, read), _ms(prefill_flops, compute))
    return {
        "vision_ms": vision_ms,
        "prefill_ms": prefill_ms,
        "prefill_weight_read_ms": _ms(weight_bytes, read),
        "prefill_compute_ms": _ms(prefill_flops, compute),
        "ttft_ms": vision_ms + prefill_ms,
        "decode_step_ms": _ms(weight_bytes + kv_bytes, read),
    }


def row_floors(spec: ModelSpec, peaks: DevicePeaks, weight_bytes: int, row: dict, report: dict):
    """``phase_floors`` of one ``vidpress bench`` row (its kept tokens, the report's prompt)."""
    frames = report["model"]["frames"]
    visual = row.get("tokens_in") or frames * spec.tokens_per_frame
    text = report["model"]["prompt_tokens"] - visual
    outer = row.get("kept_outer") or visual
    inner = row.get("kept_inner")
    layer = row.get("inner_layer")
    return phase_floors(
        spec,
        peaks,
        weight_bytes,
        frames=frames,
        text_tokens=text,
        outer_tokens=outer,
        inner_tokens=inner,
        inner_layer=layer,
        decode_cached=(inner if inner is not None else outer) + text,
    )


def _median(value) -> float | None:
    return value.get("median") if isinstance(value, dict) else value


def speed_bars(row: dict | None) -> list[dict]:
    """The fast-path targets on the unified 2%/1% row (TTFT, prefill against its floor,
    decode, stage-1 process), each with its measured value and whether it is met."""
    fast = (row or {}).get("fast") or {}
    floors = (row or {}).get("floors") or {}
    prefill, read = _median(fast.get("prefill_ms")), floors.get("prefill_weight_read_ms")
    checks = [
        ("TTFT at 2%/1%, fast path", "<= 50 ms", _median(fast.get("ttft_ms")), 50.0, "ms"),
        (
            "compressed prefill / its weight-read floor, fast path",
            "<= 2",
            None if prefill is None or not read else prefill / read,
            2.0,
            "x",
        ),
        ("decode at 2%/1%, fast path", ">= 120 tok/s", fast.get("decode_tok_s"), -120.0, "tok/s"),
        (
            "unified stage-1 process at 2%",
            "<= 3 ms",
            _median((row or {}).get("process_ms")),
            3.0,
            "ms",
        ),
    ]
    bars = []
    for name, target, measured, limit, unit in checks:
        ok = None
        if measured is not None:
            ok = measured >= -limit if limit < 0 else measured <= limit
        bars.append({"bar": name, "target": target, "measured": measured, "unit": unit, "met": ok})
    return bars


def floors_markdown(report: dict) -> list[str]:
    """Markdown lines: each row's phases against their floors (and the fast path's)."""
    peaks = report.get("peaks")
    if not peaks:
        return []
    fast_rows = [row.get("fast") or {} for row in report.get("rows", [])]
    compiled = ", `compile=True`" if any(f.get("compiled") for f in fast_rows) else ""
    lines = [
        "",
        "## Phases against their physical floors",
        "",
        f"Measured peaks of this device: copy bandwidth {peaks['bandwidth_bytes_s'] / 1e12:.2f} "
        f"TB/s (read + write), dense bf16 matmul {peaks['bf16_flops_s'] / 1e12:.0f} TFLOP/s "
        f"({MATMUL_SIDE}^3). Floor = max(weight-read, compute) bound (`metrics.floors`); "
        "*x* = measured / floor. *fast* = `vidpress.fast.FastGenerator` (static cache, CUDA "
        f"graphs{compiled}): its prefill is the LLM from the compressed prompt to the first "
        "token chosen, inner stage included.",
        "",
        "| press | retention | vision ms (floor, x) | prefill ms (floor, x) | fast prefill ms (x) "
        "| TTFT ms (floor, x) | fast TTFT ms (x) | decode step ms (floor, x) "
        "| fast decode step ms (x) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(value, floor) -> str:
        value = _median(value)
        if value is None:
            return "-"
        if floor is None:
            return f"{value:.1f}"
        return f"{value:.1f} ({floor:.1f}, {value / floor:.1f}x)"

    def ratio(value, floor) -> str:
        value = _median(value)
        return "-" if value is None else f"{value:.1f} ({value / floor:.1f}x)"

    for row in report["rows"]:
        f = row.get("floors")
        if not f:
            continue
        fast = row.get("fast") or {}
        step = _median(row.get("decode_step_ms"))
        lines.append(
            f"| {row['press']} | {row['retention']} | {cell(row.get('vision_ms'), f['vision_ms'])} "
            f"| {cell(row.get('prefill_ms'), f['prefill_ms'])} "
            f"| {ratio(fast.get('prefill_ms'), f['prefill_ms'])} "
            f"| {cell(row.get('ttft_ms'), f['ttft_ms'])} "
            f"| {ratio(fast.get('ttft_ms'), f['ttft_ms'])} "
            f"| {cell(step, f['decode_step_ms'])} "
            f"| {ratio(fast.get('decode_step_ms'), f['decode_step_ms'])} |"
        )
    return lines
