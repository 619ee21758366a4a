"""Diagnostics of ``vidpress bench``: the compression sweep over frame counts, torch.profiler
tables of the compression and of decoding, and the per-function time breakdown of a forward."""

from __future__ import annotations

import contextlib

import torch

from vidpress.adapters.base import Timer
from vidpress.adapters.registry import ADAPTERS, get_adapter
from vidpress.metrics.architectures import video_prompt
from vidpress.metrics.bench.config import MIB, SWEEP_RETENTION, BenchConfig
from vidpress.metrics.latency import (
    Clock,
    greedy_kwargs,
    no_gc,
    peak_memory,
    prefill_phases,
    summarize,
    time_call,
)
from vidpress.presses import UnifiedPress


def stats_columns(stats: list) -> dict:
    """A row's columns from a run's ``RunStats`` of its repeats: the last one's token counts,
    and the medians and spreads of the stage times (ms; "process" is stage 1 without scores)."""
    last = stats[-1]
    return {
        "tokens_in": sum(last.tokens_in),
        "kept_outer": sum(last.kept_outer),
        "kept_inner": None if last.kept_inner is None else sum(last.kept_inner),
        "outer_ms": summarize([1000 * s.outer_seconds for s in stats]),
        "scores_ms": summarize([1000 * s.score_seconds for s in stats]),
        "process_ms": summarize([1000 * (s.outer_seconds - s.score_seconds) for s in stats]),
        "inner_ms": summarize([1000 * s.inner_seconds for s in stats]),
    }


def compression_sweep(
    model, family: str, size: int, clock: Clock, config: BenchConfig, device
) -> list[dict]:
    """The unified press at 2% on each of ``config.sweep_frames``: in the model (phases and
    ``run.stats``) and on the model's own features (time and extra peak memory)."""
    press = UnifiedPress(retention=SWEEP_RETENTION)
    adapter = get_adapter(model)
    rows = []
    for frames in config.sweep_frames:
        text = (config.text_before, config.text_after)
        inputs = video_prompt(model, family, frames, size, text, device)
        row: dict = {"frames": frames}
        with torch.no_grad(), no_gc():
            with press(model) as run:
                for _ in range(config.warmup):
                    prefill_phases(model, inputs, clock)
                phases, stats = [], []
                for _ in range(config.repeats):
                    phases.append(prefill_phases(model, inputs, clock))
                    stats.append(run.stats[-1])
            for key in phases[0]:
                row[key] = summarize([p[key] for p in phases])
            row.update(stats_columns(stats))
            prompt = adapter.prepare(
                dict(inputs), inputs["attention_mask"].long(), set(press.needs), Timer(device)
            )
            video = prompt.videos[0]
            del prompt
            row["compress_ms"] = summarize(
                time_call(lambda v=video: press.compress_video(v), clock, 1, config.repeats)
            )
            with peak_memory(device) as memory:
                press.compress_video(video)
            row["compress_extra_mib"] = (
                None if memory["extra_bytes"] is None else memory["extra_bytes"] / MIB
            )
            del video
        del inputs
        if device.type == "cuda":
            torch.cuda.empty_cache()
        rows.append(row)
    return rows


def profile_compression(model, inputs: dict, device) -> str:
    """torch.profiler tables of the unified press (scores and stage 1) on ``inputs``."""
    from torch.profiler import ProfilerActivity, profile

    press = UnifiedPress(retention=SWEEP_RETENTION)
    adapter = get_adapter(model)
    mask = inputs["attention_mask"].long()
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    with torch.no_grad():
        prompt = adapter.prepare(dict(inputs), mask, {"scores"}, Timer(device))
        press.compress_video(prompt.videos[0])
        with profile(activities=activities, with_stack=True) as prof:
            prompt = adapter.prepare(dict(inputs), mask, {"scores"}, Timer(device))
            press.compress_video(prompt.videos[0])
            if device.type == "cuda":
                torch.cuda.synchronize()
    averages = prof.key_averages()
    by_stack = prof.key_averages(group_by_stack_n=4)
    return "\n\n".join(
        [
            averages.table(sort_by=sort, row_limit=45),
            averages.table(sort_by="self_cpu_time_total", row_limit=25),
            by_stack.table(sort_by=sort, row_limit=30),
        ]
    )


BREAKDOWN_TARGETS = (
    ("vidpress.engine.prefill", "stage1"),
    ("vidpress.engine.prefill", "place"),
    ("vidpress.engine.prefill", "left_aligned"),
    ("vidpress.engine.prefill", "prefill_positions"),
    ("vidpress.engine.prefill", "stage1_stats"),
    ("vidpress.engine.prefill", "sample_frames"),
    ("vidpress.engine.inner", "shorten"),
    ("vidpress.engine.inner", "sample_importance"),
    ("vidpress.engine.inner", "layer_masks"),
    ("vidpress.adapters.base", "VideoAdapter.attention_query_key"),
    ("vidpress.functional", "inner_compress"),
    ("vidpress.functional", "visual_importance"),
    ("vidpress.functional.inner", "text_aware_importance"),
    ("vidpress.functional", "check_video_inputs"),
    ("vidpress.functional.unified", "retention_pool"),
    ("vidpress.functional.unified", "dpc_knn_planned"),
    ("vidpress.functional.unified", "group_mean"),
    ("vidpress.functional.unified", "finalize"),
    ("vidpress.functional.dpc_knn", "_density"),
    ("vidpress.functional.dpc_knn", "_nearest_neighbours"),
    ("vidpress.functional.dpc_knn", "_separation_of_peaks"),
    ("vidpress.functional.dpc_knn", "nearest"),
    ("vidpress.functional.similarity", "_admit_block"),
    ("vidpress.functional.similarity", "_below_tau"),
    *((a.__module__, f"{a.__name__}._add_scores") for a in ADAPTERS.values()),
)


def breakdown_targets() -> list[tuple[object, str, str, object]]:
    """(owner, attribute, qualified name, original) of every entry of ``BREAKDOWN_TARGETS``;
    raises ``LookupError`` naming an entry that no longer exists (none is skipped)."""
    import importlib

    resolved = []
    for module_name, qual in BREAKDOWN_TARGETS:
        module = importlib.import_module(module_name)
        owner_name, _, attr = qual.rpartition(".")
        owner = getattr(module, owner_name, None) if owner_name else module
        original = None
        if owner is not None:
            original = owner.__dict__.get(attr) if owner_name else getattr(module, attr, None)
        if original is None:
            raise LookupError(
                f"timing_breakdown: BREAKDOWN_TARGETS names {module_name}.{qual}, which does not "
                "exist; rename or remove the entry"
            )
        resolved.append((owner, attr, qual, original))
    return resolved


def timing_breakdown(model, inputs: dict, press, device, repeats: int = 3) -> str:
    """Inclusive synchronised wall time per call of the press's functions in one forward.

    Each target is wrapped for the duration (device synchronised before and after each call,
    which removes CPU/GPU overlap: a diagnosis, not the benchmark's numbers).
    """
    import functools
    import time

    totals: dict[str, list[float]] = {}
    restore = []

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for owner, attr, qual, original in breakdown_targets():
        static = isinstance(original, staticmethod)
        function = original.__func__ if static else original

        def wrapped(*args, _f=function, _name=qual, **kwargs):
            sync()
            start = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                sync()
                totals.setdefault(_name, []).append(1000 * (time.perf_counter() - start))

        wrapped = functools.wraps(function)(wrapped)
        setattr(owner, attr, staticmethod(wrapped) if static else wrapped)
        restore.append((owner, attr, original))
    try:
        with torch.no_grad(), press(model):
            model(**inputs, use_cache=True, logits_to_keep=1)
            totals.clear()
            for _ in range(repeats):
                model(**inputs, use_cache=True, logits_to_keep=1)
    finally:
        for owner, attr, original in reversed(restore):
            setattr(owner, attr, original)
    lines = [f"{'function':<48}{'calls/fwd':>10}{'ms/fwd':>10}"]
    for name, values in sorted(totals.items(), key=lambda kv: -sum(kv[1])):
        lines.append(f"{name:<48}{len(values) / repeats:>10.1f}{sum(values) / repeats:>10.3f}")
    return "\n".join(lines)


def profile_decode(model, inputs: dict, press, device, tokens: int = 8) -> str:
    """torch.profiler table of ``generate`` of ``tokens`` tokens (the prefill included) under
    ``press`` (None: the uncompressed model)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    context = press(model) if press is not None else contextlib.nullcontext()
    with torch.no_grad(), context:
        model.generate(**inputs, **greedy_kwargs(2))
        with profile(activities=activities) as prof:
            model.generate(**inputs, **greedy_kwargs(tokens))
            if device.type == "cuda":
                torch.cuda.synchronize()
    averages = prof.key_averages()
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    return "\n\n".join(
        [
            averages.table(sort_by=sort, row_limit=25),
            averages.table(sort_by="cpu_time_total", row_limit=25),
        ]
    )
