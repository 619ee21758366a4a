"""The vision-score check of ``vidpress bench``: the adapter's features and scores against the
stock path and the reference, and the naive way to the scores (``output_attentions``)."""

from __future__ import annotations

import contextlib

import torch

from vidpress.adapters.base import Timer
from vidpress.adapters.registry import get_adapter
from vidpress.metrics.bench.config import MIB, BenchConfig
from vidpress.metrics.latency import (
    Clock,
    no_gc,
    peak_memory,
    summarize,
    time_call,
    video_features,
)


@contextlib.contextmanager
def _eager_vision(adapter):
    """The vision tower on eager attention inside the block."""
    first = adapter.vision_tower
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
            with _eager_vision(adapter), peak_memory(device) as naive_memory:
                out["naive_ms"] = summarize(
                    time_call(lambda: adapter.naive_scores(inputs), clock, warm, reps)
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
