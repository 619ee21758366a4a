"""Shared base of the presses: small validated dataclasses used as ``with press(model) as run``.

A press says two things: how stage 1 compresses each video before the LLM (a method of
``vidpress.functional`` and its hyper-parameters, or nothing), and what the inner stage does at
decoder layer K (an ``InnerStage``, or nothing). The adapters do the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from vidpress import functional as F
from vidpress.adapters.base import VideoInput
from vidpress.engine.run import Run

IMPORTANCE_KINDS = ("text_aware", "last_token")
MERGE_CHOICES = F.MERGE_MODES
POSITION_MODES = ("contiguous", "original")


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


class BasePress:
    """Base class: subclasses are dataclasses with their hyper-parameters as fields.

    Class attributes: ``stage1`` (a name of ``functional.STAGE1_METHODS``, or None for no stage 1)
    and ``needs`` (the vision-side inputs stage 1 uses: "scores", "keys"). Subclasses with stage 1
    have a ``retention`` field; override ``stage1_params`` and ``inner_stage`` as needed.
    """

    stage1: ClassVar[str | None] = None
    needs: ClassVar[frozenset[str]] = frozenset()

    def __call__(self, model: nn.Module) -> Run:
        """Attach to ``model`` (one instance) for the duration of a ``with`` block."""
        return Run(self, model)

    def stage1_params(self) -> dict:
        """Keyword arguments of the stage-1 function (the method's hyper-parameters)."""
        return {}

    def inner_stage(self) -> InnerStage | None:
        """The in-LLM stage, or None."""
        return None

    def compress_video(self, video: VideoInput) -> F.CompressedTokens:
        """Stage 1 on one video: [T, N, D] tokens -> the kept tokens, exactly the budget."""
        if self.stage1 is None:
            return F.identity(video.tokens, video.grid)
        scores = video.scores
        if scores is None:
            scores = torch.zeros(video.tokens.shape[:2], device=video.tokens.device)
        extra = {"keys": video.keys} if "keys" in self.needs else {}
        return F.compress_video_tokens(
            self.stage1,
            video.tokens,
            scores,
            retention=self.retention,
            grid=video.grid,
            **self.stage1_params(),
            **extra,
        )
