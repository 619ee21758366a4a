"""Shared base of the presses: small validated dataclasses used as ``with press(model) as run``.

A press owns its method: how stage 1 compresses each video before the LLM (``stage1``, a function
of ``vidpress.functional``, whose keyword arguments are the fields made with :func:`stage1_field`),
what the inner stage does at decoder layer K (an ``InnerStage``, or nothing), how many visual
tokens each stage lets through (``plan``), its name in tables (``label``) and an estimate of its
own FLOPs. The adapters do the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import ClassVar

import torch
from torch import nn

from vidpress import functional as F
from vidpress.adapters.base import VideoInput
from vidpress.engine.run import Run

MERGE_CHOICES = F.MERGE_MODES
POSITION_MODES = ("contiguous", "original")


def stage1_field(default):
    """A dataclass field passed to the press's stage-1 function (see ``stage1_params``)."""
    return field(default=default, metadata={"stage1": True})


@dataclass(frozen=True)
class InnerStage:
    """The in-LLM stage at decoder layer ``layer`` (docs/method.md stage 2, FastV, HoliTom).

    keep:       fraction of each sample's visual tokens kept from layer K on (``token_budget``)
    importance: "text_aware" (Eq. 9 over the text rows after the video) or "last_token" (the last
                prompt token's attention row, FastV/HoliTom)
    merge:      "mean", "sequential" or "none" (see ``functional.inner_compress``)
    lam:        Eq. 9's lambda (text_aware only)
    """

    layer: int
    keep: float
    importance: str
    merge: str
    lam: float = 0.5


@dataclass(frozen=True)
class PressPlan:
    """Visual tokens through the LLM under a press, by the budget rounding of the algorithms
    (``functional.token_budget``, docs/method.md).

    outer_tokens: those entering the LLM (after stage 1; all of them without one)
    inner_layer:  K, or None without an inner stage
    inner_tokens: those from layer K on (``outer_tokens`` without an inner stage)
    """

    visual_tokens: int
    outer_tokens: int
    inner_layer: int | None
    inner_tokens: int


def frame_similarity_flops(frames: int, tokens_per_frame: int, hidden: int) -> int:
    """Adjacent-frame similarity ``2 T N_f D`` plus per-frame density clustering ``2 T N_f^2 D``
    (the segmenting presses: FastVID, HoliTom)."""
    return 2 * frames * tokens_per_frame * hidden * (1 + tokens_per_frame)


class BasePress:
    """Base class: subclasses are dataclasses with their hyper-parameters as fields, ``retention``
    among them.

    Class attributes: ``stage1`` (a stage-1 function of ``vidpress.functional``, or None for no
    stage 1), ``needs`` (the vision-side inputs stage 1 uses: "scores", "keys") and ``title``
    (the method's name in tables). Override ``inner_stage`` and ``stage1_flops`` as needed.
    """

    stage1: ClassVar[Callable[..., F.CompressedTokens] | None] = None
    needs: ClassVar[frozenset[str]] = frozenset()
    title: ClassVar[str] = ""
    # Defaults for presses without these fields: kept tokens at contiguous positions, and the
    # inner stage (if any) always on.
    position_ids = "contiguous"
    inner_merging = True

    def __call__(self, model: nn.Module) -> Run:
        """Attach to ``model`` (one instance) for the duration of a ``with`` block."""
        return Run(self, model)

    def stage1_params(self) -> dict:
        """Keyword arguments of the stage-1 function: the fields made with ``stage1_field``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("stage1")}

    def inner_stage(self) -> InnerStage | None:
        """The in-LLM stage, or None."""
        return None

    def compress_video(self, video: VideoInput, runner=None) -> F.CompressedTokens:
        """Stage 1 on one video: [T, N, D] tokens -> the kept tokens, exactly the budget.
        runner: as ``functional.compress_with``'s (CUDA graphs of the planned methods)."""
        if self.stage1 is None:
            return F.identity(video.tokens, video.grid)
        scores = video.scores
        if scores is None:
            scores = torch.zeros(video.tokens.shape[:2], device=video.tokens.device)
        extra = {"keys": video.keys} if "keys" in self.needs else {}
        return F.compress_with(
            self.stage1,
            video.tokens,
            scores,
            retention=self.retention,
            grid=video.grid,
            runner=runner,
            **self.stage1_params(),
            **extra,
        )

    def plan(self, visual_tokens: int, layers: int, frames: int | None = None) -> PressPlan:
        """The visual tokens of each stage for a video of ``visual_tokens`` in an LLM of
        ``layers`` decoder layers (K must be one of them, after the first).

        ``frames``: round the stage-1 budget per frame (``frames x token_budget(visual_tokens /
        frames)``, ``metrics.flops``' ``budget_rounding="per_frame"``); by default one budget for
        the whole video, as stage 1 keeps it.
        """
        inner = self.inner_stage()
        if inner is not None and not 1 <= inner.layer < layers:
            raise ValueError(
                f"inner_layer must be in [1, {layers - 1}] for a model of {layers} decoder "
                f"layers, got {inner.layer}"
            )
        if self.stage1 is None:
            outer = visual_tokens
        elif frames is None:
            outer = F.token_budget(visual_tokens, retention=self.retention)
        else:
            outer = frames * F.token_budget(visual_tokens // frames, retention=self.retention)
        if inner is None:
            return PressPlan(visual_tokens, outer, None, outer)
        return PressPlan(
            visual_tokens, outer, inner.layer, F.token_budget(outer, retention=inner.keep)
        )

    @property
    def setting(self) -> str:
        """The retention as the paper writes it, in percent: "A/B" (A% enter the LLM, B% remain
        from layer K on; FastV "100/B"), "A" without an inner stage."""
        outer = 100 * self.retention if self.stage1 is not None else 100.0
        inner = self.inner_stage()
        return f"{outer:g}" if inner is None else f"{outer:g}/{outer * inner.keep:g}"

    @property
    def label(self) -> str:
        """The method's name in tables, "w/o merging" when its optional inner stage is off."""
        return self.title if self.inner_merging else f"{self.title} w/o merging"

    def stage1_flops(self, frames: int, tokens_per_frame: int, budget: int, hidden: int) -> int:
        """Estimated FLOPs of stage 1's dominant matmuls on ``frames x tokens_per_frame`` tokens
        of width ``hidden`` kept to ``budget`` (``metrics.flops``); 0: indexing and pooling only.
        The vision scores and the inner stage are counted by ``metrics.flops``."""
        return 0
