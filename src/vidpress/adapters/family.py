"""``Family``: everything vidpress knows about one model family outside the press engine.

Each adapter file declares one ``Family`` subclass next to its adapter (``adapters/registry.py``
lists them): the checkpoints it recognises, how a video and a question become its inputs, its
frame sampling, its FLOPs ``ModelSpec``, its random architectures (for ``vidpress bench``) and its
lmms-eval model. Generic code (``vidpress.loading``, ``vidpress.inference``, ``vidpress.metrics``,
the lmms-eval plugin) looks families up through the registry and never names one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from vidpress.adapters.base import VideoAdapter


class Family:
    """One model family (subclasses set the class attributes and implement the methods).

    name:            the family's name (``LoadedModel.family``, ``vidpress bench``'s "family")
    adapter:         its ``VideoAdapter`` class (whose ``model_class`` is the transformers class
                     and ``model_type`` the ``model_type`` of its ``config.json``)
    description:     how error messages list it among the supported models
    variant:         True for a variant of the family of its ``model_type``, told apart by
                     ``matches`` (the testbed: a LLaVA-OneVision folder with vidpress's processor)
    video_processor: the stock transformers video processor class (None: its own processor)
    lmms_eval_model: its lmms-eval model name (None: served by its model type's family)
    architectures:   random-weight architectures, name -> (tiny, description)
    """

    name: ClassVar[str]
    adapter: ClassVar[type[VideoAdapter]]
    description: ClassVar[str]
    variant: ClassVar[bool] = False
    video_processor: ClassVar[str | None] = None
    lmms_eval_model: ClassVar[str | None] = None
    architectures: ClassVar[dict[str, tuple[bool, str]]] = {}

    @property
    def model_class(self) -> str:
        return self.adapter.model_class

    @property
    def model_type(self) -> str:
        return self.adapter.model_type

    def matches(self, path: Path) -> bool:
        """Whether the checkpoint folder ``path`` (of this ``model_type``) is of this family."""
        return True

    def own_files(self) -> tuple[str, ...]:
        """The family's own JSON files a checkpoint folder may hold (checked before loading)."""
        return ()

    # ------------------------------------------------------------------ loading and inputs

    def load_processor(self, path: Path) -> Any:
        """The family's own processor of the folder (None: the stock processor or tokenizer)."""
        return None

    def stock_processor_kwargs(self, video_config: dict) -> dict:
        """Keyword arguments of the stock video processor built from ``video_config``."""
        return {}

    def default_frames(self, video_config: dict) -> int | None:
        """Frames sampled without --frames (None: the family samples by fps)."""
        return 32

    def temporal_patch(self, video_config: dict) -> int:
        """Frames per temporal patch (a clip's frame count is rounded down to a multiple)."""
        return 1

    def sample_count(self, video_config: dict, info, num_frames: int | None, fps):
        """(frames to sample, notes) with --frames ``num_frames`` (None: the default count)."""
        total = info.total_frames
        if num_frames is None:
            default = self.default_frames(video_config)
            if default > total:
                return total, [
                    f"{info.path} has {total} frames, fewer than the default {default}: "
                    f"sampling all {total} (--frames sets the count)"
                ]
            return default, []
        if num_frames > total:
            raise ValueError(
                f"--frames must be in [1, {total}] for {info.path} ({total} frames), got "
                f"{num_frames}"
            )
        return num_frames, []

    def prepare(self, loaded, info, question: str, count: int, max_pixels: int | None):
        """Decode ``count`` frames of ``info``'s file and build the inputs (an ``inputs.Prepared``
        on the CPU) of ``question`` for ``loaded`` (a ``loading.LoadedModel``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ FLOPs and benchmarks

    def flops_spec(self, config: Any, name: str):
        """The analytic FLOPs ``ModelSpec`` of a transformers ``config`` of this family."""
        raise NotImplementedError

    def random_config(self, tiny: bool) -> Any:
        """The transformers config of its 7B-like (``tiny``: CPU-sized) random architecture."""
        raise NotImplementedError

    def frame_size(self, tiny: bool) -> int:
        """Default frame side in pixels of its random architecture."""
        raise NotImplementedError

    def random_video(self, config: Any, frames: int, size: int, generator: torch.Generator):
        """One random video for ``config``: (its prompt token ids, its pixels, its grid or None)."""
        raise NotImplementedError

    def video_inputs(self, config: Any, ids: torch.Tensor, pixels: list, grids: list) -> dict:
        """The model inputs of a batch's videos (``random_video``'s pixels and grids)."""
        return {self.adapter.video_input: torch.cat(pixels)}
