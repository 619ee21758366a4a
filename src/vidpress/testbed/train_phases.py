"""The testbed trainer's phases: what each kind trains on, and the step loop they share.

Kinds (``Phase.kind``): "text" (the letter binding on text-only twins of the items: only the LM
adapters learn), "frame" (one-frame items of ``FRAME_FAMILIES``), "video" (``frames``-frame
SynthVQA videos, every family) and "mix" (the v2 mixture of layouts, ``train_mixture.MixBatches``).
Every visual phase also runs a text batch per step (``text_batch``) to keep the binding. A phase
with ``steps=None`` sizes itself to its share of the time budget from the speed of its first
steps; ``run_phase`` returns the phase's record entry.
"""

from __future__ import annotations

import functools
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .synthvqa import FAMILIES
from .train_data import FRAME_FAMILIES, Batch, target_logits
from .train_mixture import IMAGE_PX, MIX_FRAMES, MIX_PX

DEFAULT_BATCH = {"text": 32, "frame": 64, "video": 8, "mix": 8}  # mix: its "keep" batches
SEED_OFFSETS = {"text": 2, "frame": 100, "video": 200, "mix": 300}  # + frames: item seeds
MEASURE_FROM, MEASURE_TO = 4, 14  # steps timed to size a phase with steps=None
LIST_KEYS = ("families", "sides", "frame_counts", "image_sides")  # "+"-joined string options
MIX_KEYS = ("keep", "images", "multi", "tokens", "sides", "frame_counts", "image_sides")


@dataclass
class Phase:
    """One training phase (module docstring). The projector and newline learn at ``lr``, the
    adapters at ``lr_lora`` (0 freezes them). A family named twice in ``families`` is asked twice
    as often. Mix phases: ``keep``, ``images``, ``multi``: the shares of batches in the original
    layout, single images and multi-image items (the rest: videos of ``frame_counts`` frames at
    ``sides`` px); ``tokens``: the visual-token budget of a batch."""

    kind: str
    steps: int | None = None  # None: sized from the time budget
    share: float = 1.0  # of the time budget, when steps is None
    lr: float = 1e-3  # projector / newline
    lr_lora: float = 5e-4
    frames: int = 0  # video phases (0: TrainConfig.num_frames)
    batch: int = 0  # 0: DEFAULT_BATCH[kind]
    shape_scale: float = 1.0  # planted shapes x this (a curriculum: large shapes first)
    schedule: int = 0  # steps of the learning-rate schedule (0: steps; more: a phase cut short)
    families: str = ""  # "+"-joined subset of FAMILIES ("": FRAME_FAMILIES / all of them)
    keep: float = 0.25
    images: float = 0.15
    multi: float = 0.15
    tokens: int = 50176  # 8 x 32 frames x 196 tokens, the original layout's batch
    sides: str = MIX_PX
    frame_counts: str = MIX_FRAMES
    image_sides: str = IMAGE_PX

    def __post_init__(self):
        if self.kind not in DEFAULT_BATCH:
            raise ValueError(
                f"phase kind must be one of {sorted(DEFAULT_BATCH)}, got {self.kind!r}"
            )
        self.frames, self.batch = int(self.frames), int(self.batch or DEFAULT_BATCH[self.kind])
        self.schedule, self.tokens = int(self.schedule), int(self.tokens)
        if self.steps is not None:
            self.steps = int(self.steps)
        unknown = [f for f in self.family_list() if f not in FAMILIES]
        if unknown:
            raise ValueError(f"phase families must be among {FAMILIES}, got {unknown}")
        shares = (self.keep, self.images, self.multi)
        if min(shares) < 0 or sum(shares) > 1:
            raise ValueError(f"phase keep, images, multi must be >= 0 with sum <= 1, got {shares}")
        for key in ("sides", "image_sides"):
            if bad := [p for p in self.ints(key) if p <= 0 or p % 14]:
                raise ValueError(f"phase {key} must be positive multiples of 14 px, got {bad}")
        if bad := [f for f in self.ints("frame_counts") if not 1 <= f <= 64]:
            raise ValueError(f"phase frame_counts must be in [1, 64], got {bad}")

    def family_list(self) -> tuple[str, ...]:
        """The families this phase asks (frame and video phases)."""
        if self.families:
            return tuple(self.families.split("+"))
        return FRAME_FAMILIES if self.kind == "frame" else FAMILIES

    def ints(self, key: str) -> tuple[int, ...]:
        """A "+"-joined option (``sides``, ``frame_counts``, ``image_sides``) as ints."""
        return tuple(int(v) for v in getattr(self, key).split("+"))


def parse_phase(text: str) -> Phase:
    """``KIND[:STEPS|auto][:key=value]...`` -> Phase (keys: its fields; ``LIST_KEYS`` take
    "+"-joined values)."""
    parts = text.split(":")
    phase: dict[str, Any] = {"kind": parts[0]}
    for part in parts[1:]:
        if "=" in part:
            key, value = part.split("=", 1)
            phase[key] = value if key in LIST_KEYS else float(value)
        elif part != "auto":
            phase["steps"] = int(part)
    return Phase(**phase)


def phase_arg(phase: dict, steps: int, schedule: int | None = None) -> str:
    """The ``--phase`` argument that reruns ``phase`` for exactly ``steps`` steps, on the
    learning-rate ``schedule`` it ran on when that was longer (the hard stop cut it short)."""
    keys = ("lr", "lr_lora", "frames", "batch", "shape_scale")
    values = [f"{k}={phase[k]}" for k in keys]
    if schedule is not None and schedule != steps:
        values.append(f"schedule={schedule}")
    if phase["families"]:
        values.append(f"families={phase['families']}")
    if phase["kind"] == "mix":
        values += [f"{k}={phase[k]}" for k in MIX_KEYS]
    return ":".join([phase["kind"], str(steps), *values])


def lr_factor(step: int, steps: int | None, warmup: int, min_ratio: float) -> float:
    """Linear warm-up, then cosine decay to ``min_ratio`` at ``steps``."""
    if step < warmup:
        return (step + 1) / warmup
    if steps is None or steps <= warmup:
        return 1.0
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


@torch.no_grad()
def validate(model, loader, spec, dtype, device, letter_ids, autocast) -> dict:
    """Multiple-choice accuracy overall and per family, scored from the letter logits."""
    model.eval()
    right = torch.zeros(len(FAMILIES))
    total = torch.zeros(len(FAMILIES))
    for batch in loader:
        on = batch.to(device)
        with autocast():
            logits = target_logits(model, on, spec, dtype, on.positions[:, :1])[:, 0]
        pred = torch.tensor(letter_ids)[logits[:, letter_ids].float().argmax(-1).cpu()]
        for f, ok in zip(
            batch.family.tolist(), (pred == batch.targets[:, 0]).tolist(), strict=True
        ):
            total[f] += 1
            right[f] += ok
    model.train()
    per_family = {f: (right[i] / total[i]).item() for i, f in enumerate(FAMILIES) if total[i]}
    return {"accuracy": (right.sum() / total.sum()).item(), "per_family": per_family}


def step_loss(model, batch: Batch, device, spec, dtype, autocast):
    """(mean cross-entropy, [B] first target token right, [B] family index)."""
    on = batch.to(device)
    with autocast():
        logits = target_logits(model, on, spec, dtype)
    loss = nn.functional.cross_entropy(
        logits.float().flatten(0, 1), on.targets.flatten(), ignore_index=-100
    )
    first = logits[:, 0].argmax(-1) == on.targets[:, 0]
    return loss, first.cpu(), batch.family


class Window:
    """First-target-token accuracy per family over the last ``log_every`` steps."""

    def __init__(self):
        self.counts = torch.zeros(len(FAMILIES), 2)  # right, samples

    def add(self, right: torch.Tensor, family: torch.Tensor) -> None:
        self.counts.index_add_(0, family, torch.stack([right.float(), torch.ones(len(right))], 1))

    def entry(self) -> dict:
        c, self.counts = self.counts, torch.zeros_like(self.counts)
        return {
            "first_token_acc": (c[:, 0].sum() / c[:, 1].sum()).item(),
            "first_token_acc_by_family": {
                f: round((c[i, 0] / c[i, 1]).item(), 3) for i, f in enumerate(FAMILIES) if c[i, 1]
            },
        }


def _optimiser(run, phase: Phase):
    """AdamW over what the phase trains (projector / newline at ``lr``, adapters at
    ``lr_lora``); everything else frozen. Returns (optimiser, trained parameters)."""
    lora_params = run.lora_params()
    groups = []
    if phase.kind != "text" and phase.lr > 0:
        groups.append({"params": run.projector, "lr": phase.lr, "base_lr": phase.lr})
    if phase.lr_lora > 0:
        groups.append({"params": lora_params, "lr": phase.lr_lora, "base_lr": phase.lr_lora})
    trained = [p for g in groups for p in g["params"]]
    for p in run.projector + lora_params:
        p.requires_grad_(any(p is q for q in trained))
    return torch.optim.AdamW(groups, betas=(0.9, 0.98), weight_decay=0.0), trained


def run_phase(run, number: int, phase: Phase) -> dict:
    """Train one phase on ``run`` (``train_run.Run``: the model, data sources, hard stop); returns
    its record entry (and sets ``run.stopped`` when the hard stop cut it)."""
    cfg = run.cfg
    if phase.lr_lora > 0:
        run.ensure_loras()
    opt, trained = _optimiser(run, phase)
    visual = phase.kind != "text"
    data, phase_val, key = run.phase_data(phase) if visual else (None, None, None)
    text_bs = cfg.text_batch if visual else phase.batch
    text_data = None
    if text_bs and run.lora_params():
        text_data = iter(
            run.loader(run.text_suite, text_bs, run.next_item.get("text", 0), 1, "text")
        )
    steps, budget = phase.steps, phase.share * cfg.budget_seconds
    log, losses, vals, window = [], [], [], Window()
    phase_start, t_measure, step, items = time.time(), None, 0, 0
    while steps is None or step < steps:
        if cfg.stop_after_seconds and time.time() - run.start > cfg.stop_after_seconds:
            run.stopped = f"phase {number + 1} ({phase.kind}) at step {step}"
            print(f"[train] hard stop in phase {phase.kind} at step {step}", flush=True)
            break
        if steps is None and step in (MEASURE_FROM, MEASURE_TO):
            if run.cuda:
                torch.cuda.synchronize()
            if step == MEASURE_FROM:
                t_measure = time.time()
            else:
                rate = (time.time() - t_measure) / (MEASURE_TO - MEASURE_FROM)
                remaining = budget - (time.time() - phase_start)
                steps = max(MEASURE_TO + 1, MEASURE_TO + int(remaining / rate))
                print(f"[train] {phase.kind}: {rate:.3f} s/step -> {steps} steps", flush=True)
        factor = lr_factor(step, phase.schedule or steps, cfg.warmup, cfg.min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * factor
        loss_of = functools.partial(
            step_loss,
            run.model,
            device=run.device,
            spec=run.spec,
            dtype=run.dtype,
            autocast=run.autocast,
        )
        if visual:
            batch = next(data)
            items += len(batch.ids)
            loss, right, family = loss_of(batch)
            if text_data is not None:
                loss = loss + cfg.text_weight * loss_of(next(text_data))[0]
        else:
            loss, right, family = loss_of(next(text_data))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(trained, cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
        window.add(right, family)
        step += 1
        if step % cfg.log_every == 0:
            entry = {
                "step": step,
                "loss": float(np.mean(losses[-cfg.log_every :])),
                **window.entry(),
                "grad_norm": float(norm),
                "lr": opt.param_groups[0]["lr"],
                "seconds": round(time.time() - run.start, 1),
            }
            log.append(entry)
            print(f"[train] {phase.kind} {json.dumps(entry)}", flush=True)
        if visual and cfg.val_every and step % cfg.val_every == 0:
            vals.append({"step": step, **run.validation(phase_val, main=False)})
            print(f"[train] val {json.dumps(vals[-1])}", flush=True)
    if visual:
        run.next_item[key] = run.next_item.get(key, 0) + (step if phase.kind == "mix" else items)
    if text_data is not None:
        run.next_item["text"] = run.next_item.get("text", 0) + step * text_bs
    val = run.validation(phase_val) if visual else None
    print(f"[train] phase {number + 1} {phase.kind} done: val {json.dumps(val)}", flush=True)
    return {
        "phase": asdict(phase),
        "steps_run": step,
        "schedule_steps": phase.schedule or steps,
        "visual_items_seen": items,
        "text_items_seen": step * text_bs if text_data is not None else 0,
        "seconds": round(time.time() - phase_start, 1),
        "val": val,
        "val_curve": vals,
        "log": log,
    }
