"""metrics.floors: each phase's physical floor from the architecture and the device's peaks."""

from __future__ import annotations

import pytest

from vidpress.metrics.floors import DevicePeaks, phase_floors, row_floors, speed_bars
from vidpress.metrics.flops import count_flops
from vidpress.metrics.model_specs import get_spec

# an H200-like device: 4.3 TB/s copy bandwidth, 790 TFLOP/s dense bf16
PEAKS = DevicePeaks(bandwidth_bytes_s=4.3e12, bf16_flops_s=7.9e14)
OV7B = get_spec("llava-onevision-7b")
WEIGHTS = 15_231_233_024  # Qwen2-7B's decoder and LM head in bf16


def test_compressed_prefill_is_weight_bound_and_vanilla_compute_bound():
    small = phase_floors(
        OV7B,
        PEAKS,
        WEIGHTS,
        frames=32,
        text_tokens=34,
        outer_tokens=125,
        inner_tokens=63,
        inner_layer=18,
    )
    assert small["prefill_ms"] == small["prefill_weight_read_ms"]
    assert small["prefill_ms"] == pytest.approx(1000 * WEIGHTS / 4.3e12)
    full = phase_floors(OV7B, PEAKS, WEIGHTS, frames=32, text_tokens=34, outer_tokens=6272)
    assert full["prefill_ms"] == full["prefill_compute_ms"] > full["prefill_weight_read_ms"]
    exact = count_flops("llava-onevision-7b", text_tokens=34, decode_tokens=0)
    llm = exact.prefill.total + 2 * OV7B.llm.hidden * OV7B.llm.vocab
    assert full["prefill_compute_ms"] == pytest.approx(1000 * llm / 7.9e14)
    vision = exact.vision_tower + exact.projector
    assert full["vision_ms"] == pytest.approx(1000 * vision / 7.9e14)
    assert full["ttft_ms"] == pytest.approx(full["vision_ms"] + full["prefill_ms"])
    # decoding reads every weight once, plus a KV cache that grows with the prompt
    assert small["decode_step_ms"] < full["decode_step_ms"]
    assert small["decode_step_ms"] > 1000 * WEIGHTS / 4.3e12


def test_row_floors_read_the_rows_tokens():
    report = {"model": {"frames": 32, "prompt_tokens": 6272 + 35}}
    vanilla = row_floors(OV7B, PEAKS, WEIGHTS, {"press": "vanilla"}, report)
    unified = row_floors(
        OV7B,
        PEAKS,
        WEIGHTS,
        {"tokens_in": 6272, "kept_outer": 125, "kept_inner": 63, "inner_layer": 18},
        report,
    )
    direct = phase_floors(
        OV7B,
        PEAKS,
        WEIGHTS,
        frames=32,
        text_tokens=35,
        outer_tokens=125,
        inner_tokens=63,
        inner_layer=18,
        decode_cached=63 + 35,
    )
    assert unified == direct
    assert vanilla["prefill_ms"] > unified["prefill_ms"]


def test_speed_bars():
    row = {
        "process_ms": {"median": 2.5},
        "floors": {"prefill_weight_read_ms": 3.5},
        "fast": {"ttft_ms": {"median": 61.0}, "prefill_ms": {"median": 9.0}, "decode_tok_s": 130.0},
    }
    bars = {b["bar"]: b for b in speed_bars(row)}
    assert bars["TTFT at 2%/1%, fast path"]["met"] is False
    ratio = bars["compressed prefill / its weight-read floor, fast path"]
    assert ratio["measured"] == pytest.approx(9.0 / 3.5) and ratio["met"] is False
    assert bars["decode at 2%/1%, fast path"]["met"] is True
    assert bars["unified stage-1 process at 2%"]["met"] is True
    assert all(b["met"] is None for b in speed_bars(None))
