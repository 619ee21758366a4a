"""One training run of the testbed on SynthVQA (``Run``): the model with its trained parts,
the data sources of every phase kind, validation, and the hard stop."""

from __future__ import annotations

import functools
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vidpress.testbed.build import assemble_testbed
from vidpress.testbed.synthvqa import FAMILIES, SynthVQA
from vidpress.testbed.train_data import TrainItems, collate
from vidpress.testbed.train_mixture import MixBatches, MixSuites
from vidpress.testbed.train_parts import add_lora
from vidpress.testbed.train_phases import SEED_OFFSETS, Phase, validate
from vidpress.testbed.video import named_clips

if TYPE_CHECKING:
    from vidpress.testbed.train import TrainConfig


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
        self.clips = named_clips(cfg.clips)
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
