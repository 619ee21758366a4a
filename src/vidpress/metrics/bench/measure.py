"""The measurements of one ``vidpress bench`` run: every number of a setting, and the whole run."""

from __future__ import annotations

import contextlib
import datetime
import json
import platform
from collections.abc import Callable
from dataclasses import asdict

import torch
import transformers

from vidpress.metrics.architectures import get_architecture, video_prompt
from vidpress.metrics.bench.config import (
    GIB,
    REFERENCE,
    BenchConfig,
    check_config,
    resolve_device,
)
from vidpress.metrics.bench.profiles import (
    compression_sweep,
    profile_compression,
    profile_decode,
    stats_columns,
    timing_breakdown,
)
from vidpress.metrics.bench.targets import report_bars
from vidpress.metrics.bench.vision import vision_check
from vidpress.metrics.floors import llm_weight_bytes, measure_peaks, row_floors
from vidpress.metrics.latency import (
    Clock,
    decode_speed,
    fast_speed,
    greedy_kwargs,
    no_gc,
    peak_memory,
    prefill_phases,
    summarize,
    time_to_first_token,
)
from vidpress.metrics.model_specs import spec_from_config
from vidpress.presses import PAPER_PRESS
from vidpress.presses.settings import grid_settings, make_press
from vidpress.provenance import provenance


def measure_setting(
    model, inputs: dict, press, clock: Clock, config: BenchConfig, device: torch.device
) -> dict:
    """Every per-setting number for ``press`` (None: the uncompressed model) on ``inputs``."""
    row: dict = {}
    context = press(model) if press is not None else contextlib.nullcontext()
    with torch.no_grad(), no_gc(), context as run:
        for _ in range(config.warmup):
            model.generate(**inputs, **greedy_kwargs(2))
        phases, stats = [], []
        for _ in range(config.repeats):
            phases.append(prefill_phases(model, inputs, clock))
            if run is not None:
                stats.append(run.stats[-1])
        for key in phases[0]:
            row[key] = summarize([p[key] for p in phases])
        ttft = [time_to_first_token(model, inputs, clock) for _ in range(config.repeats)]
        row["ttft_ms"] = summarize(ttft)
        with peak_memory(device) as memory:
            row.update(decode_speed(model, inputs, config.decode_tokens, clock))
        row["peak_gib"] = None if memory["peak_bytes"] is None else memory["peak_bytes"] / GIB
        row["peak_extra_gib"] = (
            None if memory["extra_bytes"] is None else memory["extra_bytes"] / GIB
        )
        if config.fast and run is not None:
            row["fast"] = fast_speed(
                run,
                inputs,
                config.decode_tokens,
                clock,
                config.warmup,
                config.repeats,
                compile=config.compile,
            )
    if stats:
        row.update(stats_columns(stats), inner_layer=run.inner_layer)
    return row


def run_bench(
    config: BenchConfig,
    command: str = "",
    log: Callable[[str], None] = print,
    checkpoint: Callable[[dict], None] | None = None,
) -> dict:
    """Run the benchmark; returns the report (``checkpoint(report)`` after every row)."""
    cells = check_config(config)
    device = resolve_device(config)
    arch = get_architecture(config.model)
    size = config.size or arch.frame_size
    transformers.logging.set_verbosity_error()
    from vidpress.metrics.architectures import build_architecture

    model = build_architecture(config.model, device)
    layers = model.config.text_config.num_hidden_layers
    text = (config.text_before, config.text_after)
    inputs = video_prompt(model, arch.family, config.frames, size, text, device)
    clock = Clock(device)
    report: dict = {
        "command": command,
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "config": asdict(config),
        "model": {
            "name": arch.name,
            "family": arch.family,
            "description": arch.description,
            "parameters": sum(p.numel() for p in model.parameters()),
            "dtype": str(model.dtype),
            "attention": "sdpa",
            "weights_gib": memory_gib(device),
            "frame_size": size,
            "frames": config.frames,
            "prompt_tokens": int(inputs["input_ids"].shape[1]),
        },
        "rows": [],
        "sweep": [],
        # Each row records its press and parameters; the inputs are random (seeded) tokens.
        "provenance": provenance(
            frames=config.frames,
            resolution=size,
            seed=0,
            model={"architecture": arch.name, "weights": "random"},
            device=device,
            command=command.split() if isinstance(command, str) else command,
            extra={"presses": list(config.presses), "retentions": list(config.retentions)},
        ),
    }
    save = checkpoint or (lambda r: None)
    log(f"bench {arch.name} on {report['device']}: {report['model']['prompt_tokens']} tokens")
    with torch.no_grad():  # global warm-up (kernels, allocator, the host): 2 decodes
        model.generate(**inputs, **greedy_kwargs(config.decode_tokens // 2 + 1))
        paper = make_press(grid_settings(PAPER_PRESS, "2/1"), layers)
        with paper(model):
            model.generate(**inputs, **greedy_kwargs(config.decode_tokens // 2 + 1))
    floors = None
    if device.type == "cuda":
        peaks = measure_peaks(device)
        report["peaks"] = peaks.to_dict()
        spec = spec_from_config(model.config)
        weights = llm_weight_bytes(model, model.model.language_model)
        report["model"]["llm_weight_bytes"] = weights

        def floors(row: dict) -> dict:
            return row_floors(spec, peaks, weights, row, report)

    if config.vision_check:
        report["vision"] = vision_check(model, inputs, clock, config, device)
        log(f"vision {json.dumps(_short(report['vision']))}")
        save(report)
    plan = [("vanilla", cell) for cell in cells if cell.uncompressed]
    plan += [(p, cell) for p in config.presses for cell in cells if not cell.uncompressed]
    for name, cell in plan:
        press = make_press(grid_settings(name, cell), layers) if name != "vanilla" else None
        row = {"press": name, "retention": cell.label, "config": repr(press)}
        row.update(measure_setting(model, inputs, press, clock, config, device))
        if floors is not None:
            row["floors"] = floors(row)
        report["rows"].append(row)
        log(f"{name} {cell.label} {json.dumps(_short(row))}")
        save(report)
    if config.sweep_frames:
        report["sweep"] = compression_sweep(model, arch.family, size, clock, config, device)
        for row in report["sweep"]:
            log(f"sweep {json.dumps(_short(row))}")
        save(report)
    if config.profile:
        fastvid = make_press(grid_settings(REFERENCE, "2"), layers)
        report["profile"] = profile_compression(model, inputs, device)
        report["profile_breakdown"] = timing_breakdown(model, inputs, paper, device)
        report["profile_breakdown_fastvid"] = timing_breakdown(model, inputs, fastvid, device)
        if config.sweep_frames:
            big = video_prompt(model, arch.family, max(config.sweep_frames), size, text, device)
            report["profile_sweep"] = profile_compression(model, big, device)
            report["profile_breakdown_sweep"] = timing_breakdown(model, big, paper, device, 2)
            del big
        report["profile_decode_vanilla"] = profile_decode(model, inputs, None, device)
        report["profile_decode_unified"] = profile_decode(model, inputs, paper, device)
        save(report)
    report["bars"] = report_bars(report)
    save(report)
    return report


def memory_gib(device) -> float | None:
    if torch.device(device).type != "cuda":
        return None
    return torch.cuda.memory_allocated() / GIB


def _short(row: dict) -> dict:
    """Medians only, rounded, for the log."""
    out = {}
    for key, value in row.items():
        if isinstance(value, dict) and "median" in value:
            out[key] = round(value["median"], 3)
        elif isinstance(value, float):
            out[key] = round(value, 3)
        elif not isinstance(value, (dict, list)) and key != "config":
            out[key] = value
    return out
