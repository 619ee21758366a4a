"""Latency and memory of a Video-LLM under a press: timers, warm-up and medians, phase timing.

Times are device times: on a GPU, CUDA events recorded on the current stream (read after a
synchronisation), so the CPU running ahead does not shorten them and idle gaps the CPU causes
count; on a CPU, ``time.perf_counter``. The phases of one prefill forward are marked by forward
hooks on the model's parts (nothing stored on the model, hooks removed after the call):

    vision   vision tower start -> projector end (LLaVA-OV: SigLIP + projector;
             Qwen2.5-VL: the ViT with its patch merger)
    gap      vision end -> LLM start: vision scores, stage-1 compression, placing the kept tokens,
             the embedding lookup (the press's whole outer overhead, bookkeeping included)
    prefill  LLM start -> LM head end: the decoder on the (compressed) sequence, the in-LLM
             stage included, and the LM head on the last position
    forward  the whole prefill forward, from pixel inputs

A press's own timings come from ``run.stats`` (synchronised wall time of the scoring, the
stage-1 compression and the in-LLM stage). Time to first token is ``generate`` of one token,
from pixel inputs to the token on the host; decoding speed is the host time of each generated
token (``generate`` copies every token to the host, a synchronisation) over ``decode_tokens``
steps after the first token, with EOS ignored (``min_new_tokens``).
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from vidpress.adapters.registry import get_adapter


def summarize(values: list[float]) -> dict:
    """{"median", "min", "max", "n"} of a non-empty list of numbers."""
    if not values:
        raise ValueError("summarize needs at least one value")
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


class Clock:
    """Marks on the device timeline: CUDA events on a GPU, ``perf_counter`` on a CPU."""

    def __init__(self, device: torch.device | str):
        self.cuda = torch.device(device).type == "cuda"

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def ms(self, start, stop) -> float:
        """Milliseconds between two marks (synchronises on a GPU)."""
        if self.cuda:
            stop.synchronize()
            return start.elapsed_time(stop)
        return 1000.0 * (stop - start)


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Python's cyclic garbage collector off inside the block (collected once before), so its
    pauses do not land in a timed step (as ``timeit`` does)."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def time_call(fn: Callable[[], object], clock: Clock, warmup: int, repeats: int) -> list[float]:
    """``fn()`` run ``warmup`` times untimed, then ``repeats`` times: each call's milliseconds."""
    for _ in range(warmup):
        fn()
    clock.sync()
    times = []
    for _ in range(repeats):
        start = clock.mark()
        fn()
        stop = clock.mark()
        times.append(clock.ms(start, stop))
    return times


# ------------------------------------------------------------------------------------ memory
def memory_allocated(device: torch.device | str) -> int | None:
    """Bytes allocated by tensors on a CUDA device (None on a CPU)."""
    if torch.device(device).type != "cuda":
        return None
    return torch.cuda.memory_allocated()


@contextlib.contextmanager
def peak_memory(device: torch.device | str) -> Iterator[dict]:
    """Peak CUDA memory of the block: yields a dict that gets "base_bytes" (allocated at the
    start), "peak_bytes" and "extra_bytes" (peak - base) on exit; all None on a CPU."""
    result: dict = {"base_bytes": None, "peak_bytes": None, "extra_bytes": None}
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        result["base_bytes"] = torch.cuda.memory_allocated()
    try:
        yield result
    finally:
        if cuda:
            torch.cuda.synchronize()
            result["peak_bytes"] = torch.cuda.max_memory_allocated()
            result["extra_bytes"] = result["peak_bytes"] - result["base_bytes"]


# ------------------------------------------------------------------------------------ phases
def video_features(model: nn.Module, inputs: dict):
    """The model's own video feature path (tower, projector, pooling/merger) on ``inputs``."""
    base = model.model
    if "video_grid_thw" in inputs:
        return base.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
    cfg = model.config
    return base.get_video_features(
        inputs["pixel_values_videos"],
        vision_feature_layer=cfg.vision_feature_layer,
        vision_feature_select_strategy=cfg.vision_feature_select_strategy,
    )


@dataclass
class PhaseMarks:
    """Marks recorded by ``phase_hooks`` during one forward (the first of each kind)."""

    marks: dict = field(default_factory=dict)

    def put(self, name: str, clock: Clock) -> None:
        if name not in self.marks:
            self.marks[name] = clock.mark()


@contextlib.contextmanager
def phase_hooks(model: nn.Module, clock: Clock) -> Iterator[PhaseMarks]:
    """Forward hooks marking vision start/end, LLM start and LM head end of the next forward."""
    adapter, record = get_adapter(model), PhaseMarks()
    first, last, llm = adapter.vision_tower, adapter.feature_output, adapter.language_model
    handles = [
        first.register_forward_pre_hook(lambda m, a: record.put("vision_start", clock)),
        last.register_forward_hook(lambda m, a, o: record.put("vision_end", clock)),
        llm.register_forward_pre_hook(lambda m, a: record.put("llm_start", clock)),
        model.lm_head.register_forward_hook(lambda m, a, o: record.put("llm_end", clock)),
    ]
    try:
        yield record
    finally:
        for handle in handles:
            handle.remove()


def prefill_phases(model: nn.Module, inputs: dict, clock: Clock) -> dict:
    """One prefill forward (cache on, logits of the last position only, like ``generate``'s)
    with its phases in milliseconds: vision, gap, prefill, forward."""
    with phase_hooks(model, clock) as record:
        start = clock.mark()
        model(**inputs, use_cache=True, logits_to_keep=1)
        stop = clock.mark()
    m = record.marks
    missing = {"vision_start", "vision_end", "llm_start", "llm_end"} - set(m)
    if missing:
        raise RuntimeError(f"the forward did not pass through {sorted(missing)}")
    return {
        "vision_ms": clock.ms(m["vision_start"], m["vision_end"]),
        "gap_ms": clock.ms(m["vision_end"], m["llm_start"]),
        "prefill_ms": clock.ms(m["llm_start"], m["llm_end"]),
        "forward_ms": clock.ms(start, stop),
    }


class StepTimes:
    """A ``generate`` streamer that keeps the host time of each ``put`` (the prompt first, then
    every new token, each already copied to the host)."""

    def __init__(self):
        self.times: list[float] = []
        self.cpu: list[float] = []

    def put(self, value) -> None:
        self.times.append(time.perf_counter())
        self.cpu.append(time.process_time())

    def end(self) -> None:
        pass


def greedy_kwargs(tokens: int) -> dict:
    """``generate`` arguments for exactly ``tokens`` greedy tokens (EOS ignored)."""
    return {"max_new_tokens": tokens, "min_new_tokens": tokens, "do_sample": False}


def time_to_first_token(model: nn.Module, inputs: dict, clock: Clock) -> float:
    """Milliseconds from the call of ``generate`` on pixel inputs to the first token."""
    clock.sync()
    start = clock.mark()
    model.generate(**inputs, **greedy_kwargs(1))
    stop = clock.mark()
    return clock.ms(start, stop)


def decode_speed(model: nn.Module, inputs: dict, tokens: int, clock: Clock) -> dict:
    """``generate`` of 1 + ``tokens`` tokens: decoding speed over the ``tokens`` steps after
    the first token (and from the median step, which host hiccups do not move), every step's
    wall and process CPU milliseconds, and time to the first token of this call."""
    steps = StepTimes()
    clock.sync()
    start = time.perf_counter()
    model.generate(**inputs, **greedy_kwargs(tokens + 1), streamer=steps)
    clock.sync()
    t = steps.times
    if len(t) != tokens + 2:
        raise RuntimeError(f"expected {tokens + 2} streamed steps, got {len(t)}")
    intervals = [1000.0 * (b - a) for a, b in zip(t[1:-1], t[2:], strict=True)]  # [tokens]
    cpu = [1000.0 * (b - a) for a, b in zip(steps.cpu[1:-1], steps.cpu[2:], strict=True)]
    total = t[-1] - t[1]
    return {
        "decode_steps_ms": [round(v, 2) for v in intervals],
        "decode_steps_cpu_ms": [round(v, 2) for v in cpu],
        "decode_tokens": tokens,
        "decode_tok_s": tokens / total,
        "decode_tok_s_median_step": 1000.0 / statistics.median(intervals),
        "decode_step_ms": summarize(intervals),
        "ttft_in_decode_call_ms": 1000.0 * (t[1] - start),
    }


def fast_speed(
    run, inputs: dict, tokens: int, clock: Clock, warmup: int, repeats: int, compile: bool = False
) -> dict:
    """The fast path (``vidpress.fast.FastGenerator``, CUDA graphs on a GPU; ``compile``: its
    compiled decoder pieces) under ``run``'s press: time to first token (host), its LLM prefill
    (device marks from the compressed prompt to the first token chosen) and decoding over
    ``tokens`` steps after the first (EOS ignored), medians of ``repeats``. The first call of
    each shape captures its graphs: the warm-up calls do."""
    from vidpress.engine.fast import FastGenerator

    fast = FastGenerator(run, compile=compile)
    for _ in range(max(warmup, 1)):
        fast.generate(inputs, 1)
        fast.generate(inputs, tokens + 1, ignore_eos=True)
    ttft, prefill, steps = [], [], []
    for _ in range(repeats):
        record = PhaseMarks()
        clock.sync()
        out = fast.generate(inputs, 1, mark=lambda name, r=record: r.put(name, clock))
        ttft.append(1000.0 * out.first_token_s)
        prefill.append(clock.ms(record.marks["llm_start"], record.marks["llm_end"]))
    for _ in range(repeats):
        clock.sync()
        out = fast.generate(inputs, tokens + 1, ignore_eos=True)
        steps.append(1000.0 * (out.seconds - out.first_token_s) / tokens)
    step = summarize(steps)
    return {
        "ttft_ms": summarize(ttft),
        "prefill_ms": summarize(prefill),
        "decode_step_ms": step,
        "decode_tok_s": 1000.0 / step["median"],
        "graphs": fast.graphs,
        "compiled": compile,
    }
