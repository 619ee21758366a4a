"""Running press configurations over SynthVQA items: one batch of inputs, the vision tower once
(``SharedVision``), one prefill per configuration, the answer from the option letters' logits.

``evaluate_items`` returns raw per-item records (``ConfigRecord``); ``records_to_json`` and
``merge_records`` carry a shard's records across processes and join the shards by item index.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from vidpress.evaluation.configs import PressConfig
from vidpress.evaluation.scoring import letter_scores, letter_token_ids
from vidpress.evaluation.shared_vision import SharedVision


@dataclass
class ConfigRecord:
    """Raw per-item results of one configuration over the items a shard evaluated."""

    predictions: dict[int, int] = field(default_factory=dict)
    kept_outer: dict[int, int] = field(default_factory=dict)
    kept_inner: dict[int, int] = field(default_factory=dict)
    outer_ms: dict[int, float] = field(default_factory=dict)
    inner_ms: dict[int, float] = field(default_factory=dict)
    forward_ms: float = 0.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate_items(
    model,
    processor,
    suite,
    configs: list[PressConfig],
    indices,
    *,
    batch_size: int = 1,
    deadline: float | None = None,
    progress_every: int = 0,
    tag: str = "",
    on_stats=None,
) -> dict:
    """Evaluate ``configs`` on the suite items ``indices``; returns the raw records.

    ``on_stats(config, items, stats)``, if given, sees each compressed prefill's ``CallStats``
    (what stage 1 kept, per item of the batch) as it happens.

    Returns {"items": {index: {"family", "answer", "tokens"}}, "configs": {name: ConfigRecord},
    "tower_runs": int, "reuses": int, "stopped_early": bool}.
    """
    device = next(model.parameters()).device
    ids = letter_token_ids(processor.tokenizer)
    presses = [(cfg, cfg.build()) for cfg in configs]
    records = {cfg.name: ConfigRecord() for cfg in configs}
    items_meta: dict[int, dict] = {}
    indices = list(indices)
    stopped = False
    start = time.perf_counter()
    with SharedVision(model) as shared, torch.inference_mode():
        for first in range(0, len(indices), batch_size):
            if deadline is not None and time.time() > deadline:
                stopped = True
                break
            batch = [suite[i] for i in indices[first : first + batch_size]]
            inputs = processor([it.frames for it in batch], [it.prompt() for it in batch])
            inputs = {k: v.to(device) for k, v in inputs.items()}
            inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(model.dtype)
            for it in batch:
                items_meta[it.index] = {
                    "family": it.family,
                    "answer": it.answer,
                    "source": it.source,
                }
            for cfg, press in presses:
                rec = records[cfg.name]
                _sync(device)
                t0 = time.perf_counter()
                if press is None:
                    logits = model(**inputs, logits_to_keep=1).logits[:, -1]
                    stats = None
                else:
                    with press(model) as run:
                        logits = model(**inputs, logits_to_keep=1).logits[:, -1]
                    stats = run.stats[-1]
                    if on_stats is not None:
                        on_stats(cfg, batch, stats)
                pred = letter_scores(logits, ids).argmax(-1).tolist()
                _sync(device)
                rec.forward_ms += (time.perf_counter() - t0) * 1e3
                n_visual = inputs["pixel_values_videos"].shape[1] * processor.spec.tokens_per_frame
                for b, it in enumerate(batch):
                    rec.predictions[it.index] = int(pred[b])
                    if stats is None:
                        rec.kept_outer[it.index] = n_visual
                        rec.kept_inner[it.index] = n_visual
                        continue
                    rec.kept_outer[it.index] = int(stats.kept_outer[b])
                    inner = stats.kept_inner[b] if stats.kept_inner is not None else None
                    rec.kept_inner[it.index] = int(stats.kept_outer[b] if inner is None else inner)
                    rec.outer_ms[it.index] = stats.outer_seconds * 1e3 / len(batch)
                    rec.inner_ms[it.index] = stats.inner_seconds * 1e3 / len(batch)
            shared.clear()
            done = first + len(batch)
            if progress_every and (done // batch_size) % progress_every == 0:
                rate = (time.perf_counter() - start) / done
                print(f"[eval{tag}] {done}/{len(indices)} items, {rate:.2f} s/item", flush=True)
        runs, reuses = shared.tower_runs, shared.reuses
    return {
        "items": items_meta,
        "configs": records,
        "tower_runs": runs,
        "reuses": reuses,
        "stopped_early": stopped,
        "seconds": time.perf_counter() - start,
    }


def records_to_json(raw: dict) -> dict:
    """A shard's raw records (``evaluate_items``) as JSON-ready dicts (item indices as strings)."""

    def rec(r: ConfigRecord) -> dict:
        d = asdict(r)
        return {
            k: ({str(i): v for i, v in d[k].items()} if isinstance(d[k], dict) else d[k]) for k in d
        }

    return {
        "items": {str(i): m for i, m in raw["items"].items()},
        "configs": {n: rec(r) for n, r in raw["configs"].items()},
        "tower_runs": raw["tower_runs"],
        "reuses": raw["reuses"],
        "stopped_early": raw["stopped_early"],
        "seconds": raw["seconds"],
    }


def merge_records(parts: list[dict]) -> dict:
    """The raw records of all shards (``records_to_json`` parts), joined by item index."""

    items, configs = {}, {}
    for part in parts:
        items.update({int(i): m for i, m in part["items"].items()})
        for name, rec in part["configs"].items():
            dst = configs.setdefault(name, ConfigRecord())
            for key in ("predictions", "kept_outer", "kept_inner", "outer_ms", "inner_ms"):
                getattr(dst, key).update({int(i): v for i, v in rec[key].items()})
            dst.forward_ms += rec["forward_ms"]
    return {
        "items": items,
        "configs": configs,
        "tower_runs": sum(p["tower_runs"] for p in parts),
        "reuses": sum(p["reuses"] for p in parts),
        "stopped_early": any(p["stopped_early"] for p in parts),
        "seconds": max(p["seconds"] for p in parts),
    }
