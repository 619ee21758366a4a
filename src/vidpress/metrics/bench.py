"""``vidpress bench``: efficiency of every press on one GPU (the paper's Table 6, extended).

One run builds a full-size architecture with random weights (``metrics.architectures``), one
video prompt, and measures for the uncompressed model and each press x retention, with warm-up
and medians over repeats (``metrics.latency``):

    vision     the vision tower + projector inside the forward (CUDA events)
    scores     the press's vision-score computation (``run.stats``)
    process    the press's stage-1 compression before the LLM: ``run.stats`` outer time minus
               the scores (its in-LLM stage runs inside the prefill and is counted there, and
               reported as ``inner``)
    prefill    the LLM forward on the (compressed) sequence
    TTFT       ``generate`` of one token from pixel inputs
    decode     tokens/s over ``decode_tokens`` greedy tokens after the first (EOS ignored)
    peak       peak GPU memory of the ``generate`` call that decodes (weights included)

Once per model (``vision_check``): the video feature path alone, the adapter's path with and
without the vision scores, and the naive alternative (the tower on eager attention with
``output_attentions``, the score read from the returned maps). A scaling sweep runs the unified
press at 2% on more frames (process time in the model, and the compression's extra peak memory
measured on the model's own features). The report is a JSON dict; ``markdown`` and ``plot``
render it, ``evaluate_bars`` checks the project's targets.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import transformers

from vidpress.adapters.base import Timer
from vidpress.adapters.registry import get_adapter
from vidpress.metrics.architectures import get_architecture, video_prompt
from vidpress.metrics.floors import (
    floors_markdown,
    llm_weight_bytes,
    measure_peaks,
    row_floors,
    speed_bars,
)
from vidpress.metrics.latency import (
    Clock,
    decode_speed,
    fast_speed,
    greedy_kwargs,
    no_gc,
    peak_memory,
    prefill_phases,
    summarize,
    time_call,
    time_to_first_token,
    video_features,
)
from vidpress.metrics.model_specs import spec_from_config
from vidpress.presses import FastVIDPress, UnifiedPress, press_name
from vidpress.presses.settings import (
    Retention,
    grid_settings,
    make_press,
    parse_retention,
    press_class,
)
from vidpress.provenance import provenance

RETENTIONS = ("100", "10/5", "5/2.5", "2/1", "1/0.5")
PRESS_ORDER = (
    "unified",
    "fastvid",
    "visionzip",
    "holitom",
    "fastv",
    "uniform",
    "framedrop",
    "random",
)
SWEEP_RETENTION = 0.02
TARGET = press_name(UnifiedPress)  # the paper's method: its bars, sweep and profiles
REFERENCE = press_name(FastVIDPress)  # the stage-1 speed the target's bar compares with
GIB = 2**30
MIB = 2**20


# ------------------------------------------------------------------------------ settings
@dataclass
class BenchConfig:
    """What one ``vidpress bench`` run measures."""

    model: str = "llava-onevision-7b"
    device: str = "auto"
    frames: int = 32
    size: int | None = None
    presses: list[str] = field(default_factory=lambda: list(PRESS_ORDER))
    retentions: list[str] = field(default_factory=lambda: list(RETENTIONS))
    warmup: int = 1
    repeats: int = 5
    decode_tokens: int = 100
    sweep_frames: list[int] = field(default_factory=list)
    vision_check: bool = True
    profile: bool = False
    text_before: int = 14
    text_after: int = 20
    fast: bool = False


def resolve_device(config: BenchConfig) -> torch.device:
    """The device to run on; a clear ValueError where a GPU is needed and none is there."""
    arch = get_architecture(config.model)
    cuda = torch.cuda.is_available()
    if config.device not in ("auto", "cuda", "cpu"):
        raise ValueError(f"device must be auto, cuda or cpu, got {config.device!r}")
    if config.device == "cuda" and not cuda:
        raise ValueError("--device cuda needs a CUDA GPU; torch.cuda.is_available() is False")
    if config.device == "auto":
        device = torch.device("cuda" if cuda else "cpu")
    else:
        device = torch.device(config.device)
    if not arch.tiny and device.type != "cuda":
        tiny = ", ".join(n for n in ("llava-onevision-tiny", "qwen2.5-vl-tiny"))
        raise ValueError(
            f"model {config.model} is a full-size architecture and needs a CUDA GPU (no CUDA "
            f"device here); on a CPU run a tiny one: {tiny}"
        )
    return device


def _check_config(config: BenchConfig) -> list[Retention]:
    """The retention cells (``parse_retention``), after checking every option."""
    for name in config.presses:
        press_class(name)
    for name, value, low in (
        ("frames", config.frames, 1),
        ("warmup", config.warmup, 0),
        ("repeats", config.repeats, 1),
        ("decode_tokens", config.decode_tokens, 1),
    ):
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    for frames in config.sweep_frames:
        if frames < 1:
            raise ValueError(f"sweep frames must be >= 1, got {frames}")
    return [parse_retention(r) for r in config.retentions]


# ------------------------------------------------------------------------------ measurements
def _median(values: list[float]) -> float:
    return summarize(values)["median"]


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
                run, inputs, config.decode_tokens, clock, config.warmup, config.repeats
            )
    if stats:
        last = stats[-1]
        row["tokens_in"] = sum(last.tokens_in)
        row["kept_outer"] = sum(last.kept_outer)
        row["kept_inner"] = None if last.kept_inner is None else sum(last.kept_inner)
        row["outer_ms"] = summarize([1000 * s.outer_seconds for s in stats])
        row["scores_ms"] = summarize([1000 * s.score_seconds for s in stats])
        row["process_ms"] = summarize([1000 * (s.outer_seconds - s.score_seconds) for s in stats])
        row["inner_ms"] = summarize([1000 * s.inner_seconds for s in stats])
        row["inner_layer"] = run.inner_layer
    return row


def _naive_scores(model, inputs: dict):
    """The naive way to the vision scores: the tower on eager attention with
    ``output_attentions``, the scored layer's map averaged over heads and queries."""
    base = model.model
    if hasattr(base, "vision_tower"):
        from vidpress.adapters.llava_onevision import _pool, scored_layer, selected_features

        cfg = model.config
        pixels = inputs["pixel_values_videos"]
        out = base.vision_tower(
            pixels.flatten(0, 1), output_hidden_states=True, output_attentions=True
        )
        layer, strategy = cfg.vision_feature_layer, cfg.vision_feature_select_strategy
        index = scored_layer(layer, len(out.attentions))
        features = base.multi_modal_projector(selected_features(out.hidden_states, layer, strategy))
        features = base.apply_pooling(features)
        scores = out.attentions[index].float().mean(dim=(1, 2))  # [F, L]
        side = cfg.vision_config.image_size // cfg.vision_config.patch_size
        return features, _pool(scores[..., None], side)[..., 0]
    out = base.visual(
        inputs["pixel_values_videos"], grid_thw=inputs["video_grid_thw"], output_attentions=True
    )
    maps = out.attentions[-1] if out.attentions else None
    if not isinstance(maps, torch.Tensor) or maps.dim() < 3:
        raise RuntimeError(
            f"{type(base.visual).__name__} returns no attention maps with output_attentions "
            "(its attention layers drop them), so the naive path does not exist here"
        )
    return out.pooler_output, maps.float().mean(dim=(-3, -2))


@contextlib.contextmanager
def _eager_vision(model):
    """The vision tower on eager attention inside the block."""
    first = model.model.vision_tower if hasattr(model.model, "vision_tower") else model.model.visual
    old = first.config._attn_implementation
    first.config._attn_implementation = "eager"
    try:
        yield
    finally:
        first.config._attn_implementation = old


def vision_check(model, inputs: dict, clock: Clock, config: BenchConfig, device) -> dict:
    """The vision feature path alone, with the adapter's scores, and the naive way."""
    adapter = get_adapter(model)
    mask = inputs["attention_mask"].long()
    warm, reps = max(config.warmup, 1), config.repeats
    out: dict = {}
    with torch.no_grad(), no_gc():
        out["vision_ms"] = summarize(
            time_call(lambda: video_features(model, inputs), clock, warm, reps)
        )
        timers: list[float] = []

        def prepare(need: set[str]) -> None:
            timer = Timer(device)
            adapter.prepare(dict(inputs), mask, need, timer)
            if need:
                timers.append(1000 * timer.seconds)

        out["prepare_plain_ms"] = summarize(time_call(lambda: prepare(set()), clock, warm, reps))
        out["prepare_scored_ms"] = summarize(
            time_call(lambda: prepare({"scores"}), clock, warm, reps)
        )
        out["scores_ms"] = summarize(timers[-reps:])
        with peak_memory(device) as plain:
            prepare(set())
        with peak_memory(device) as scored:
            prepare({"scores"})
        out["scores_extra_mib"] = (
            None
            if plain["peak_bytes"] is None
            else (scored["peak_bytes"] - plain["peak_bytes"]) / MIB
        )
        out["checks"] = _vision_checks(model, adapter, inputs, mask, device)
        try:
            with _eager_vision(model), peak_memory(device) as naive_memory:
                out["naive_ms"] = summarize(
                    time_call(lambda: _naive_scores(model, inputs), clock, warm, reps)
                )
            out["naive_extra_mib"] = (
                None if naive_memory["extra_bytes"] is None else naive_memory["extra_bytes"] / MIB
            )
        except Exception as error:  # noqa: BLE001 - reported, the rest of the run goes on
            out["naive_error"] = f"{type(error).__name__}: {error}"
    vision = out["vision_ms"]["median"]
    out["scores_pct_of_vision"] = (
        100 * out["scores_ms"]["median"] / out["prepare_plain_ms"]["median"]
    )
    out["scored_path_pct_over_plain"] = 100 * (
        out["prepare_scored_ms"]["median"] / out["prepare_plain_ms"]["median"] - 1
    )
    if "naive_ms" in out:
        out["naive_pct_over_vision"] = 100 * (out["naive_ms"]["median"] / vision - 1)
    return out


def _vision_checks(model, adapter, inputs: dict, mask, device) -> dict:
    """The adapter's features against the stock ``get_video_features``, and its scores against
    the reference (explicit softmax rows) computation, with the reference's time."""
    from vidpress.functional import attention

    prompt = adapter.prepare(dict(inputs), mask, {"scores"}, Timer(device))
    stock = video_features(model, inputs).pooler_output
    stock = torch.cat([f.reshape(-1, f.shape[-1]) for f in stock])
    ours = torch.cat([v.tokens.reshape(-1, v.tokens.shape[-1]) for v in prompt.videos])
    checks = {
        "features_equal_stock": bool(torch.equal(ours, stock.to(ours.dtype))),
        "features_max_abs_diff": float((ours.float() - stock.float()).abs().max()),
    }
    fast = torch.cat([v.scores.reshape(-1) for v in prompt.videos])
    checks["scores_flash_path"] = attention._flash_usable(
        torch.empty(1, 1, 1, 8, dtype=model.dtype, device=device),
        torch.empty(1, 1, 1, 8, dtype=model.dtype, device=device),
    )
    with attention.explicit_scores():
        for _ in range(2):  # the first call warms the explicit path up; the second is timed
            timer = Timer(device)
            reference = adapter.prepare(dict(inputs), mask, {"scores"}, timer)
    ref = torch.cat([v.scores.reshape(-1) for v in reference.videos])
    checks["scores_reference_ms"] = 1000 * timer.seconds
    checks["scores_max_rel_diff"] = float(((fast - ref).abs() / ref.abs().clamp(min=1e-12)).max())
    top = max(1, round(0.02 * ref.numel()))
    checks["scores_top2pct_overlap"] = (
        len(set(fast.topk(top).indices.tolist()) & set(ref.topk(top).indices.tolist())) / top
    )
    return checks


def compression_sweep(
    model, family: str, size: int, clock: Clock, config: BenchConfig, device
) -> list[dict]:
    """The unified press at 2% on each of ``config.sweep_frames``: in the model (phases and
    ``run.stats``) and on the model's own features (time and extra peak memory)."""
    press = UnifiedPress(retention=SWEEP_RETENTION)
    adapter = get_adapter(model)
    rows = []
    for frames in config.sweep_frames:
        inputs = video_prompt(
            model, family, frames, size, (config.text_before, config.text_after), device
        )
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
            row["tokens_in"] = sum(stats[-1].tokens_in)
            row["kept_outer"] = sum(stats[-1].kept_outer)
            row["scores_ms"] = summarize([1000 * s.score_seconds for s in stats])
            row["process_ms"] = summarize(
                [1000 * (s.outer_seconds - s.score_seconds) for s in stats]
            )
            row["inner_ms"] = summarize([1000 * s.inner_seconds for s in stats])
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
    ("vidpress.functional.unified", "dpc_knn_cluster"),
    ("vidpress.functional.unified", "group_mean"),
    ("vidpress.functional.unified", "finalize"),
    ("vidpress.functional.dpc_knn", "_scores"),
    ("vidpress.functional.dpc_knn", "_nearest_neighbours"),
    ("vidpress.functional.dpc_knn", "_separation_of_peaks"),
    ("vidpress.functional.dpc_knn", "nearest"),
    ("vidpress.functional.similarity", "_admit_block"),
    ("vidpress.functional.similarity", "_below_tau"),
    ("vidpress.adapters.llava_onevision", "LlavaOnevisionAdapter._add_scores"),
    ("vidpress.adapters.qwen2_5_vl", "Qwen2_5_VLAdapter._add_scores"),
)


def timing_breakdown(model, inputs: dict, press, device, repeats: int = 3) -> str:
    """Inclusive synchronised wall time per call of the press's functions in one forward.

    Each target is wrapped for the duration (device synchronised before and after each call,
    which removes CPU/GPU overlap: a diagnosis, not the benchmark's numbers).
    """
    import functools
    import importlib
    import time

    totals: dict[str, list[float]] = {}
    restore = []

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for module_name, qual in BREAKDOWN_TARGETS:
        module = importlib.import_module(module_name)
        owner_name, _, attr = qual.rpartition(".")
        owner = getattr(module, owner_name) if owner_name else module
        original = owner.__dict__.get(attr) if owner_name else getattr(module, attr, None)
        if original is None:
            continue

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


def run_bench(
    config: BenchConfig,
    command: str = "",
    log: Callable[[str], None] = print,
    checkpoint: Callable[[dict], None] | None = None,
) -> dict:
    """Run the benchmark; returns the report (``checkpoint(report)`` after every row)."""
    cells = _check_config(config)
    device = resolve_device(config)
    arch = get_architecture(config.model)
    size = config.size or arch.frame_size
    transformers.logging.set_verbosity_error()
    from vidpress.metrics.architectures import build_architecture

    model = build_architecture(config.model, device)
    layers = model.config.text_config.num_hidden_layers
    inputs = video_prompt(
        model, arch.family, config.frames, size, (config.text_before, config.text_after), device
    )
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
        warm_press = make_press(grid_settings(TARGET, "2/1"), layers)
        with warm_press(model):
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
        report["profile"] = profile_compression(model, inputs, device)
        if config.sweep_frames:
            big = video_prompt(model, arch.family, max(config.sweep_frames), size, (14, 20), device)
            report["profile_sweep"] = profile_compression(model, big, device)
            del big
        unified2 = make_press(grid_settings(TARGET, "2/1"), layers)
        report["profile_breakdown"] = timing_breakdown(model, inputs, unified2, device)
        fastvid = make_press(grid_settings(REFERENCE, "2"), layers)
        report["profile_breakdown_fastvid"] = timing_breakdown(model, inputs, fastvid, device)
        if config.sweep_frames:
            big = video_prompt(model, arch.family, max(config.sweep_frames), size, (14, 20), device)
            report["profile_breakdown_sweep"] = timing_breakdown(model, big, unified2, device, 2)
            del big
        report["profile_decode_vanilla"] = profile_decode(model, inputs, None, device)
        unified = make_press(grid_settings(TARGET, "2/1"), layers)
        report["profile_decode_unified"] = profile_decode(model, inputs, unified, device)
        save(report)
    report["bars"] = evaluate_bars(report) + speed_bars(_find(report, TARGET, "2%/1%"))
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


# ------------------------------------------------------------------------------ bars
BAR_MODEL = "llava-onevision-7b"


def _find(report: dict, press: str, retention: str) -> dict | None:
    for row in report.get("rows", []):
        if row["press"] == press and row["retention"] == retention:
            return row
    return None


def _med(row: dict | None, key: str) -> float | None:
    if row is None or row.get(key) is None:
        return None
    value = row[key]
    return value["median"] if isinstance(value, dict) else value


def evaluate_bars(report: dict) -> list[dict]:
    """The project's targets (issue: LLaVA-OV-7B, 32 frames x 196 tokens, one H100), each with
    its measured value and whether it is met (None: not measured in this report)."""
    vanilla = _find(report, "vanilla", "100%")
    unified = _find(report, TARGET, "2%/1%")
    fastvid = _find(report, REFERENCE, "2%/1%") or _find(report, REFERENCE, "2%")
    bars = []

    def bar(name: str, target: str, measured: float | None, ok: Callable[[float], bool], unit):
        bars.append(
            {
                "bar": name,
                "target": target,
                "measured": measured,
                "unit": unit,
                "met": None if measured is None else bool(ok(measured)),
            }
        )

    process = _med(unified, "process_ms")
    bar("unified process (stage 1) at 2%", "<= 5 ms", process, lambda v: v <= 5.0, "ms")
    fv = _med(fastvid, "process_ms")
    bar(
        "unified process / FastVID process at 2% (same run)",
        "<= 1",
        None if process is None or fv is None else process / fv,
        lambda v: v <= 1.0,
        "x",
    )
    vision = report.get("vision", {})
    bar(
        "vision scores / vision encoding (the adapter's video path)",
        "<= 10 %",
        vision.get("scores_pct_of_vision"),
        lambda v: v <= 10.0,
        "%",
    )
    p0, p1 = _med(vanilla, "prefill_ms"), _med(unified, "prefill_ms")
    bar(
        "LLM prefill speed-up, 100% / 2%/1%",
        ">= 22x",
        None if p0 is None or p1 is None else p0 / p1,
        lambda v: v >= 22.0,
        "x",
    )
    t0, t1 = _med(vanilla, "ttft_ms"), _med(unified, "ttft_ms")
    bar(
        "TTFT at 2%/1% / TTFT at 100%",
        "<= 0.35",
        None if t0 is None or t1 is None else t1 / t0,
        lambda v: v <= 0.35,
        "x",
    )
    big = max(report.get("sweep", []), key=lambda r: r["frames"], default=None)
    label = f"{big['frames']} frames" if big else "256 frames"
    at256 = big is not None and big["frames"] >= 256
    bar(
        f"unified process at 2%, {label} (in the model)",
        "<= 50 ms",
        _med(big, "process_ms") if at256 else None,
        lambda v: v <= 50.0,
        "ms",
    )
    bar(
        f"unified compression extra peak memory, {label}",
        "<= 2 GiB",
        big["compress_extra_mib"] / 1024 if at256 and big["compress_extra_mib"] else None,
        lambda v: v <= 2.0,
        "GiB",
    )
    return bars


# ------------------------------------------------------------------------------ rendering
def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        value = value.get("median")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None, digits: int = 1) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.{digits}f}"


def markdown(report: dict) -> str:
    """The report as a markdown page: setup, the main table, vision scores, sweep, bars."""
    m, cfg = report["model"], report["config"]
    timer = "CUDA events" if report["device"] != "cpu" else "perf_counter"
    lines = [
        f"# `vidpress bench`: {m['name']} ({m['description']}), random {m['dtype']} weights",
        "",
        f"Command: `{report['command']}`  ",
        f"Device: {report['device']}, torch {report['torch']}, transformers "
        f"{report['transformers']}, Python {report['python']}, {report['date']}.  ",
        f"Model: {m['parameters'] / 1e9:.2f} B parameters, {m['attention']} attention; "
        f"{m['frames']} frames of {m['frame_size']} px, {m['prompt_tokens']} prompt tokens; "
        f"batch 1.  ",
        f"Protocol: {cfg['warmup']} warm-up generate call(s) per setting, medians of "
        f"{cfg['repeats']} repeats ({timer}); decode over {cfg['decode_tokens']} greedy "
        "tokens after the first (EOS ignored); peak = peak allocated GPU memory of that call.",
        "",
        "Columns: *vision* = vision tower + projector in the forward; *scores* = the press's "
        "vision scores; *process* = its stage-1 compression before the LLM (`run.stats`, "
        "scores excluded); *inner* = its in-LLM stage (inside *prefill*); *gap* = everything "
        "between the vision tower and the LLM (scores, process, placing tokens, embeddings); "
        "*prefill* = the LLM forward (decoder + LM head on the last position); *TTFT* = "
        "`generate` of one token from pixel inputs.",
        "",
        "*prefill x* and *TTFT x*: against the uncompressed model (100%). *decode tok/s*: over "
        "all decoded tokens (from the median step in brackets, which host hiccups do not move).",
        "",
        "| press | retention | tokens into LLM | vision ms | scores ms | process ms | inner ms "
        "| gap ms | prefill ms | prefill x | TTFT ms | TTFT x | decode tok/s | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = _find(report, "vanilla", "100%")
    p0, t0 = _med(base, "prefill_ms"), _med(base, "ttft_ms")
    for r in report["rows"]:
        if r["press"] == "vanilla":
            tokens = str(m["prompt_tokens"])
        else:
            kept = r.get("kept_outer")
            inner = r.get("kept_inner")
            tokens = f"{kept}" if inner is None else f"{kept} -> {inner}"
            if kept is None:
                tokens = "-"
        lines.append(
            f"| {r['press']} | {r['retention']} | {tokens} | {_fmt(r.get('vision_ms'))} "
            f"| {_fmt(r.get('scores_ms'), 2)} | {_fmt(r.get('process_ms'), 2)} "
            f"| {_fmt(r.get('inner_ms'), 2)} | {_fmt(r.get('gap_ms'), 1)} "
            f"| {_fmt(r.get('prefill_ms'))} | {_ratio(p0, _med(r, 'prefill_ms'))} "
            f"| {_fmt(r.get('ttft_ms'))} | {_ratio(_med(r, 'ttft_ms'), t0, 3)} "
            f"| {_fmt(r.get('decode_tok_s'))} ({_fmt(r.get('decode_tok_s_median_step'))}) "
            f"| {_fmt(r.get('peak_gib'), 2)} |"
        )
    lines.append("")
    lines.append(
        "Tokens into LLM: visual tokens entering the LLM (-> from layer K on); vanilla: the whole"
        " prompt. FastV keeps every token before its layer K. Presses without an inner stage "
        "apply A of 'A/B'. The uncompressed model runs the stock transformers path, whose 2 x 2 "
        "bilinear pooling of the projected features (after *vision*, so inside its *gap*) is a "
        "slow channels-first kernel; the presses' adapter pools the same values channels-last "
        "(see the vision table)."
    )
    vision = report.get("vision")
    if vision:
        checks = vision.get("checks", {})
        lines += [
            "",
            "## Vision scores (once, on the main prompt)",
            "",
            "| path | ms | overhead |",
            "|---|---|---|",
            f"| stock video feature path (`get_video_features`: tower, projector, pooling) | "
            f"{_fmt(vision['vision_ms'])} | |",
            f"| the adapter's video path without scores (the same features, embeddings, "
            f"positions) | {_fmt(vision['prepare_plain_ms'])} | |",
            f"| vidpress scores: the scored layer's q/k, received attention in two flash passes "
            f"| {_fmt(vision['scores_ms'], 2)} | +{_fmt(vision['scores_pct_of_vision'])}% of the "
            "line above |",
            f"| the adapter's video path with scores | {_fmt(vision['prepare_scored_ms'])} "
            f"| +{_fmt(vision['scored_path_pct_over_plain'])}% |",
        ]
        if "scores_reference_ms" in checks:
            lines.append(
                f"| scores from explicit softmax rows in float32 (the reference path) | "
                f"{_fmt(checks['scores_reference_ms'], 2)} | |"
            )
        if "naive_ms" in vision:
            lines.append(
                f"| naive: stock path on eager attention with `output_attentions`, score from "
                f"the maps | {_fmt(vision['naive_ms'])} | +{_fmt(vision['naive_pct_over_vision'])}%"
                " of the stock path |"
            )
        else:
            lines.append(f"| naive (`output_attentions`) | failed: {vision.get('naive_error')} | |")
        if checks:
            lines += [
                "",
                f"Checks: the adapter's features equal the stock path's bitwise: "
                f"{checks.get('features_equal_stock')} (max abs diff "
                f"{checks.get('features_max_abs_diff')}); scores (flash path: "
                f"{checks.get('scores_flash_path')}) against the reference: max relative "
                f"difference {checks.get('scores_max_rel_diff', float('nan')):.2e}, top-2% token "
                f"sets overlap {checks.get('scores_top2pct_overlap', float('nan')):.0%}.",
            ]
        extra = vision.get("scores_extra_mib")
        if extra is not None:
            lines.append("")
            lines.append(
                f"Extra peak memory of the scores: {extra:.0f} MiB; of the naive path: "
                f"{_fmt(vision.get('naive_extra_mib'), 0)} MiB."
            )
    if report.get("sweep"):
        lines += [
            "",
            f"## Scaling: the unified press at {SWEEP_RETENTION:.0%}",
            "",
            "In the model: *process* and *scores* from `run.stats`, *vision* and *prefill* from "
            "the forward's phases. On the model's own features: `press.compress_video` time "
            "and its extra peak memory (over the features already in memory).",
            "",
            "| frames | visual tokens | kept | vision ms | scores ms | process ms | prefill ms "
            "| compress_video ms | extra peak MiB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in report["sweep"]:
            lines.append(
                f"| {r['frames']} | {r['tokens_in']} | {r['kept_outer']} | "
                f"{_fmt(r['vision_ms'])} | {_fmt(r['scores_ms'], 2)} | "
                f"{_fmt(r['process_ms'], 2)} | {_fmt(r['prefill_ms'])} | "
                f"{_fmt(r['compress_ms'], 2)} | {_fmt(r['compress_extra_mib'], 0)} |"
            )
    lines += floors_markdown(report)
    bars = report.get("bars")
    if bars:
        lines += [
            "",
            f"## Bars (issue: {BAR_MODEL}, 32 frames x 196 tokens, one H100)",
            "",
        ]
        if m["name"] != BAR_MODEL:
            lines += [f"(Measured on {m['name']}; the bars are set for {BAR_MODEL}.)", ""]
        lines += ["| bar | target | measured | met |", "|---|---|---|---|"]
        for b in bars:
            met = {True: "yes", False: "NO", None: "not measured"}[b["met"]]
            value = "-" if b["measured"] is None else f"{b['measured']:.2f} {b['unit']}"
            lines.append(f"| {b['bar']} | {b['target']} | {value} | {met} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: str) -> None:
    """A PNG of the report: TTFT breakdown at 2%/1%, prefill and process vs retention, sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    m = report["model"]
    fig.suptitle(f"vidpress bench: {m['name']}, {m['frames']} frames, {report['device']}")

    # TTFT breakdown: the uncompressed model and every press at 2%/1% (or the smallest A/B)
    ax = axes[0, 0]
    chosen = [r for r in rows if r["press"] == "vanilla"]
    for press in dict.fromkeys(r["press"] for r in rows if r["press"] != "vanilla"):
        candidates = [r for r in rows if r["press"] == press]
        pick = [r for r in candidates if r["retention"] in ("2%/1%", "2%")] or candidates[-1:]
        chosen += pick[:1]
    names = [f"{r['press']}\n{r['retention']}" for r in chosen]
    parts = [
        ("vision", "vision_ms"),
        ("scores", "scores_ms"),
        ("process", "process_ms"),
        ("prefill", "prefill_ms"),
    ]
    bottom = [0.0] * len(chosen)
    for label, key in parts:
        values = [_med(r, key) or 0.0 for r in chosen]
        ax.bar(names, values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    rest = [max((_med(r, "ttft_ms") or 0.0) - b, 0.0) for r, b in zip(chosen, bottom, strict=True)]
    ax.bar(names, rest, bottom=bottom, label="other (generate, embeddings, ...)", color="0.8")
    ax.set_ylabel("time to first token (ms)")
    ax.set_title("TTFT breakdown")
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7)

    # prefill and process vs retention
    for ax, key, title in (
        (axes[0, 1], "prefill_ms", "LLM prefill (ms)"),
        (axes[1, 0], "process_ms", "stage-1 compression, process (ms)"),
    ):
        for press in dict.fromkeys(r["press"] for r in rows if r["press"] != "vanilla"):
            points = [
                (float(r["retention"].split("/")[0].rstrip("%")), _med(r, key))
                for r in rows
                if r["press"] == press and _med(r, key) is not None
            ]
            if points:
                xs, ys = zip(*sorted(points), strict=True)
                ax.plot(xs, ys, marker="o", label=press)
        vanilla = _find(report, "vanilla", "100%")
        if key == "prefill_ms" and vanilla:
            ax.axhline(_med(vanilla, key), color="k", linestyle="--", label="100% (vanilla)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("retention A (%) entering the LLM")
        ax.set_title(title)
        ax.legend(fontsize=7)

    ax = axes[1, 1]
    sweep = report.get("sweep") or []
    if sweep:
        frames = [r["frames"] for r in sweep]
        ax.plot(frames, [_med(r, "process_ms") for r in sweep], marker="o", label="process ms")
        ax.plot(frames, [_med(r, "scores_ms") for r in sweep], marker="s", label="scores ms")
        ax.set_xlabel("frames")
        ax.set_ylabel("ms")
        ax.set_xscale("log", base=2)
        ax2 = ax.twinx()
        memory = [r["compress_extra_mib"] for r in sweep]
        if all(v is not None for v in memory):
            ax2.plot(frames, memory, color="C3", marker="^", label="extra peak MiB")
            ax2.set_ylabel("extra peak memory (MiB)")
            ax2.legend(loc="lower right", fontsize=7)
        ax.legend(loc="upper left", fontsize=7)
        ax.set_title(f"unified at {SWEEP_RETENTION:.0%}: scaling with frames")
    else:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(report: dict, prefix: str, png: bool = True) -> list[str]:
    """``prefix``.json, ``prefix``.md and (``png``) ``prefix``.png; returns the paths."""
    paths = [f"{prefix}.json", f"{prefix}.md"]
    profiles = {k: v for k, v in report.items() if k.startswith("profile")}
    with open(paths[0], "w") as f:
        json.dump({k: v for k, v in report.items() if k not in profiles}, f, indent=1)
        f.write("\n")
    if profiles:
        paths.append(f"{prefix}.profile.txt")
        with open(paths[-1], "w") as f:
            for key, text in profiles.items():
                f.write(f"==== {key}\n{text}\n\n")
    with open(paths[1], "w") as f:
        f.write(markdown(report))
    if png:
        plot(report, f"{prefix}.png")
        paths.append(f"{prefix}.png")
    return paths


# ------------------------------------------------------------------------------ command line
def add_bench_arguments(parser) -> None:
    """The options of ``vidpress bench``."""
    from vidpress.metrics.architectures import ARCHITECTURES

    parser.add_argument(
        "--model",
        default="llava-onevision-7b",
        help=f"one of {', '.join(ARCHITECTURES)} (random weights; the 7b ones need a GPU)",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--frames", type=int, default=32, help="frames of the video (32)")
    parser.add_argument("--size", type=int, help="frame side in pixels (the tower's input size)")
    parser.add_argument(
        "--presses",
        nargs="+",
        default=list(PRESS_ORDER),
        metavar="PRESS",
        help=f"presses to measure (default: {' '.join(PRESS_ORDER)})",
    )
    parser.add_argument(
        "--retentions",
        nargs="+",
        default=list(RETENTIONS),
        metavar="A/B",
        help="'100' (uncompressed), 'A/B' (A%% enter the LLM, B%% from layer K on) or 'A' "
        f"(outer stage only); default: {' '.join(RETENTIONS)}",
    )
    parser.add_argument("--warmup", type=int, default=1, help="warm-up calls per setting (1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per setting (5)")
    parser.add_argument("--decode-tokens", type=int, default=100, help="decoded tokens (100)")
    parser.add_argument(
        "--sweep-frames",
        nargs="*",
        type=int,
        default=[],
        metavar="T",
        help="frame counts of the scaling sweep of the unified press at 2%% (e.g. 32 64 128 256)",
    )
    parser.add_argument(
        "--no-vision-check",
        action="store_true",
        help="skip the vision-score comparison (plain, scored, output_attentions)",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="also measure the fast path (vidpress.fast: static KV cache, CUDA graphs) per press",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also write torch.profiler tables (PREFIX.profile.txt)",
    )
    parser.add_argument(
        "--out",
        metavar="PREFIX",
        help="write PREFIX.json, PREFIX.md and PREFIX.png (default: print the markdown only)",
    )
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    parser.add_argument(
        "--from-json",
        metavar="JSON",
        help="measure nothing: render the markdown (and PNG) of a saved report to --out (default: "
        "next to the JSON)",
    )


def _command_line(args) -> str:
    """The run's command, every option explicit."""
    parts = ["vidpress", "bench", "--model", args.model, "--device", args.device]
    parts += ["--frames", str(args.frames)]
    if args.size:
        parts += ["--size", str(args.size)]
    parts += ["--presses", *args.presses, "--retentions", *args.retentions]
    parts += ["--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    parts += ["--decode-tokens", str(args.decode_tokens)]
    if args.sweep_frames:
        parts += ["--sweep-frames", *map(str, args.sweep_frames)]
    if args.no_vision_check:
        parts.append("--no-vision-check")
    if args.fast:
        parts.append("--fast")
    if args.profile:
        parts.append("--profile")
    if args.out:
        parts += ["--out", args.out]
    return " ".join(parts)


REPORT_KEYS = ("model", "config", "device", "rows")


def read_report(path) -> dict:
    """A report saved by ``vidpress bench --out``; ValueError naming --from-json and the file
    when it is missing, not JSON or not such a report."""
    try:
        with open(path) as f:
            report = json.load(f)
    except FileNotFoundError as err:
        raise ValueError(f"--from-json: report file not found: {path}") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"--from-json: invalid JSON in {path}: {err}") from err
    missing = [k for k in REPORT_KEYS if k not in report] if isinstance(report, dict) else None
    if missing is None or missing:
        raise ValueError(
            f"--from-json: {path} is not a vidpress bench report (a JSON object with "
            f"{', '.join(REPORT_KEYS)})"
        )
    return report


def run_bench_command(args) -> int:
    """The handler of ``vidpress bench``."""
    import sys

    if args.from_json:
        report = read_report(args.from_json)
        report["bars"] = evaluate_bars(report) + speed_bars(_find(report, TARGET, "2%/1%"))
        prefix = args.out or args.from_json.removesuffix(".json")
        for path in write_outputs(report, prefix, png=not args.no_plot):
            print(path)
        return 0
    config = BenchConfig(
        model=args.model,
        device=args.device,
        frames=args.frames,
        size=args.size,
        presses=list(args.presses),
        retentions=list(args.retentions),
        warmup=args.warmup,
        repeats=args.repeats,
        decode_tokens=args.decode_tokens,
        sweep_frames=list(args.sweep_frames),
        vision_check=not args.no_vision_check,
        profile=args.profile,
        fast=args.fast,
    )

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    checkpoint = None
    if args.out:

        def checkpoint(report: dict) -> None:  # partial results survive an interrupted run
            write_outputs(report, args.out, png=False)

    report = run_bench(config, command=_command_line(args), log=log, checkpoint=checkpoint)
    if args.out:
        for path in write_outputs(report, args.out, png=not args.no_plot):
            print(path)
    else:
        print(markdown(report))
    return 0
