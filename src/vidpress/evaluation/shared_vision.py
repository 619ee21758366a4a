"""Run the vision tower once per video and share its output with every press evaluated on it.

``SharedVision(model)`` is a context manager for a stock Video-LLM whose vision encoder is
``model.model.vision_tower`` (LLaVA-OneVision, e.g. the testbed). Inside it, the tower's
``forward`` is replaced on this one instance (an instance attribute, removed on exit) by a cached
version:

- the first call for a pixel tensor runs the real tower and keeps its output (all hidden states)
  and the input of every attention q/k projection of the tower;
- a later call with the same pixels (same storage, shape, dtype and device: every caller passes a
  view of the one pixel tensor of the batch) returns the kept output, then re-applies those q/k
  linear layers that carry forward hooks to their kept inputs. The press adapters hook the q/k of
  the scored layer to compute the vision attention scores (Eq. 1), so a press sees exactly what a
  fresh tower run would give it, for the price of two small matrix products instead of the tower.

Everything after the tower (feature-layer selection, projector, pooling) still runs per call, so
callers that compute features their own way (the stock ``get_video_features`` or an adapter's
faster variant) all work. One video batch is kept at a time (``clear()`` drops it); the pixels
must not be modified in place while they are kept (nothing in vidpress does).
"""

from __future__ import annotations

import torch
from torch import nn

_QK_NAMES = ("q_proj", "k_proj", "query", "key")


def _qk_linears(tower: nn.Module) -> list[nn.Linear]:
    """Every attention q/k projection of the tower, in module order."""
    out = []
    for module in tower.modules():
        for name in _QK_NAMES:
            sub = getattr(module, name, None)
            if isinstance(sub, nn.Linear) and all(sub is not m for m in out):
                out.append(sub)
    return out


class SharedVision:
    """``with SharedVision(model) as shared:`` runs the vision tower once per pixel tensor.

    ``shared.tower_runs`` counts real tower runs, ``shared.reuses`` calls served from the cache.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.tower = model.model.vision_tower
        self.tower_runs = 0
        self.reuses = 0
        self._key = None
        self._pixels = None
        self._output = None
        self._qk_inputs: dict[int, torch.Tensor] = {}
        self._qk = _qk_linears(self.tower)
        if not self._qk:
            raise ValueError(f"no attention q/k projections found in {type(self.tower).__name__}")

    def __enter__(self) -> SharedVision:
        if "forward" in vars(self.tower):
            raise RuntimeError("the vision tower's forward is already replaced on this instance")
        self._original = self.tower.forward
        self.tower.forward = self._forward
        return self

    def __exit__(self, *exc) -> None:
        vars(self.tower).pop("forward", None)
        self.clear()

    def clear(self) -> None:
        """Forget the kept tower output."""
        self._key = self._pixels = self._output = None
        self._qk_inputs = {}

    def _forward(self, pixel_values: torch.Tensor, *args, **kwargs):
        # Keyed by the pixels alone: callers differ in options the tower ignores (the stock
        # forward passes vision_aspect_ratio, say). The kept output has every hidden state;
        # a call asking for attention maps always runs the real tower.
        key = (
            pixel_values.data_ptr(),
            tuple(pixel_values.shape),
            pixel_values.dtype,
            pixel_values.device,
        )
        cacheable = not args and not kwargs.get("output_attentions")
        if cacheable and key == self._key:
            for module in self._qk:
                if module._forward_hooks:
                    module(self._qk_inputs[id(module)])
            self.reuses += 1
            return self._output
        if cacheable:
            kwargs["output_hidden_states"] = True
        captured: dict[int, torch.Tensor] = {}

        def keep(module, inputs):
            captured[id(module)] = inputs[0]

        handles = [m.register_forward_pre_hook(keep) for m in self._qk]
        try:
            output = self._original(pixel_values, *args, **kwargs)
        finally:
            for handle in handles:
                handle.remove()
        self.tower_runs += 1
        if cacheable:
            self._key, self._pixels, self._output = key, pixel_values, output
            self._qk_inputs = captured
        return output
