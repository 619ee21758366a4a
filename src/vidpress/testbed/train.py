"""Train the testbed's projector and small LM adapters on SynthVQA (uncompressed inputs only).

What is trained, on what:
- Data: SynthVQA's *train* split (first half of every clip in time), items in index order, on
  full, uncompressed inputs only. The presses never see training: they are applied afterwards,
  training-free, to this model as to any Video-LLM. Validation: 140 train-split items of another
  seed (disjoint item seeds); the test split is never looked at here.
- Frozen: the DINOv2 vision tower and the SmolLM2 LM weights. The projector reads the output of
  DINOv2 block 9 by default (``vision_feature_layer``), or several layers concatenated (the
  committed weights read ``1,9``), recorded in the exported weights. ``init_parts="widen"``
  continues from weights that read fewer layers, the added inputs starting at zero. Trained: the
  projector (384 x layers -> 576 -> 576), ``image_newline`` and rank-8 adapters on every linear
  layer of the LM (``W x + B A x``), merged into the LM weights by ``build_testbed``, so the built
  model is a stock ``LlavaOnevisionForConditionalGeneration`` (``train_parts``). The projector's
  first layer trains on standardised DINOv2 features, folded into it on export.
- Phases (a curriculum): "text" teaches the letter binding on text-only twins of the items
  ("Context: red." + the question and options -> the letter); "frame" teaches reading visual
  tokens on one-frame items (needle colour / shape, position, scene: a 32nd of a video's cost);
  "video" trains on SynthVQA videos of ``frames`` frames, every family. Frame and video items are
  half multiple choice (target: the letter) and half open-ended (the question alone; targets: the
  answer phrase's tokens, a denser grounding signal), plus a small text batch each step to keep
  the binding. A family named twice in a phase's ``families`` is asked twice as often. "mix" (v2)
  draws every batch's layout from generic variation, as real Video-LLMs are trained (never a
  press's output): videos of 1-64 frames at 224-448 px, single images through the stock AnyRes
  image path, multi-image items, varied phrasings and backgrounds, a share of batches in the
  original layout (``train_mixture`` says what exactly).
- Objective: cross-entropy at the target positions; the letter is read at the last prompt
  position, the position the evaluation scores (``vidpress.evaluation.scoring``).
- Batching: sequences are right-padded and run without an attention mask: causal attention means
  padding after a sample's tokens never reaches them, and SDPA keeps its fused causal kernel.
  Frames travel as uint8 and are normalised on the device.
- Precision: frozen parts in bf16 on CUDA, trained parameters fp32 with bf16 autocast; CPU runs
  (tests) are fp32.

Why each choice, and the attempts behind the committed weights:
``benchmarks/results/synthvqa_training.md`` (the feature layers: ``testbed_feature_probe.md``;
the v2 mixture: ``testbed_v2_protocol.md``).

Step counts: a phase with ``steps=None`` sizes itself to its share of ``budget_seconds`` from the
speed of its first steps (the warm-up is longer than the measurement, so the schedule is fixed
before it matters). The record (``train_record.json``) keeps the steps actually run; passing them
back as fixed steps reproduces the weights (up to CUDA's non-deterministic kernels).
``--init-weights`` continues from an exported weights file (a later call on the GPU machine).

Command line: ``python -m vidpress.testbed.train --out DIR [--phase KIND:STEPS:key=value] ...``
(``scripts/train_testbed.sh`` is the GPU command that produced the committed weights,
``scripts/train_testbed_v2.sh`` the v2 mixture's). Modules: ``train_run`` (the model, data
sources and validation of one run), ``train_phases`` (the phase kinds and the step loop),
``train_data`` (items and batches), ``train_mixture`` (the v2 mixture), ``train_parts``
(adapters, standardisation, export); this one holds the configuration, the order of a run's
steps (``train``) and the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from vidpress.testbed.build import FeatureLayer, as_feature_layer
from vidpress.testbed.synthvqa import SynthVQA
from vidpress.testbed.train_data import FRAME_FAMILIES, normalise
from vidpress.testbed.train_parts import (
    LORA_TARGETS,
    StandardisedInput,
    export_weights,
    feature_stats,
    load_trained,
)
from vidpress.testbed.train_phases import Phase, parse_phase, phase_arg, run_phase
from vidpress.testbed.train_run import Run

WEIGHTS_FILE = "testbed.safetensors"
# one-frame items asking a shape's colour / kind twice as often as its quadrant or the scene
SHAPES_2X = "needle_color+needle_shape+needle_color+needle_shape+position+scene"


@dataclass
class TrainConfig:
    """Settings of one training run: its phases, time budget, data, validation, adapters and
    optimiser."""

    phases: list[Phase] = field(
        default_factory=lambda: [  # text binding, one-frame items (large shapes first), videos
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


def _standardised_input(run: Run) -> StandardisedInput:
    """The projector's standardised input, its statistics from the first frames of the train
    split; with ``init_weights``, the exported file loaded into it and the adapters."""
    from safetensors.torch import load_file

    cfg, model = run.cfg, run.model
    frame_train = run.suites_of("frame", 1, families=FRAME_FAMILIES)[0]
    stats_frames = torch.stack([frame_train[i].frames[0] for i in range(8)]).to(run.device)
    mean, std = feature_stats(model, normalise(stats_frames, run.spec, run.dtype))
    standardised = StandardisedInput(model.model.multi_modal_projector.linear_1, mean, std)
    if cfg.init_weights:
        run.ensure_loras()
        load_trained(model, run.loras, load_file(cfg.init_weights), standardised, cfg.init_parts)
        run.setup["init_weights"] = f"{cfg.init_weights} ({cfg.init_parts})"
    return standardised


def _run_phases(run: Run, standardised: StandardisedInput, record: dict, out_dir: Path) -> str:
    """Every phase in order until the hard stop, each one's weights saved; the last ones saved
    as ``WEIGHTS_FILE`` too. Returns their file name."""
    from safetensors.torch import save_file

    cfg = run.cfg
    saved, chosen = {}, None
    for number, phase in enumerate(cfg.phases):
        if run.stopped:  # the hard stop ends the run after the phase it cut
            record["skipped"] = [asdict(p) for p in cfg.phases[number:]]
            break
        entry = run_phase(run, number, phase)
        weights = export_weights(run.model, run.loras, standardised)
        name = f"phase{number + 1}_{phase.kind}.safetensors"
        save_file(weights, str(out_dir / name))
        saved[name], chosen = weights, name
        record["phases"].append({**entry, "weights": name})
    if run.stopped:
        record["stopped"] = run.stopped
    save_file(saved[chosen], str(out_dir / WEIGHTS_FILE))
    return chosen


def _test_report(run: Run) -> dict:
    """Letter accuracy on ``test_items`` items of the *test* split (a report only)."""
    cfg, t0 = run.cfg, time.time()
    test_suite = SynthVQA(
        run.clips,
        "test",
        size=cfg.test_items,
        num_frames=cfg.num_frames,
        frames_px=cfg.frames_px,
    )
    return {
        "items": cfg.test_items,
        "frames": cfg.num_frames,
        **run.evaluate(test_suite),
        "seconds": round(time.time() - t0, 1),
    }


def train(cfg: TrainConfig, out_dir) -> dict:
    """Run the phases; write the weights and ``train_record.json`` to ``out_dir``."""
    start = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = Run(cfg, start)
    standardised = _standardised_input(run)
    record = {"config": _config_dict(cfg), "setup": run.setup, "phases": []}
    chosen = _run_phases(run, standardised, record, out_dir)
    if cfg.test_items:
        record["test_report"] = _test_report(run)
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
