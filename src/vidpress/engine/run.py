"""Attach a press to one model instance: ``with press(model) as run:``.

How a call flows (all through removable hooks, removed on exit, also after an exception):

- A forward pre-hook on the model sees every call. A call with the video input is a prefill
  (``engine.prefill``): the adapter runs the vision tower once, the press compresses each video,
  and the hook hands the stock forward a shorter, re-left-padded ``inputs_embeds`` with its own
  attention mask and position ids.
- Inner stage (optional) at decoder layer K (``engine.inner``): a pre-hook on layer K-1's
  attention records its input and rotary embedding; a pre-hook on layer K scores, merges and
  shortens; pre-hooks on layers >= K give them the matching mask, rotary embedding and position
  ids.
- Decoding (``engine.decode``): each generate() step is translated to the compressed prompt.
Per-prompt state is kept in a ``Session`` keyed by the KV cache object, per-call state in a
``Call``; nothing is stored on the model. The engine reads a press only through ``needs``,
``compress_video``, ``inner_stage()`` and its ``position_ids`` field.
"""

from __future__ import annotations

import contextlib
import inspect
import weakref

import torch
from torch import nn
from transformers.cache_utils import DynamicCache

from vidpress.adapters.registry import get_adapter
from vidpress.engine import inner
from vidpress.engine.decode import decode_positions, decode_tail
from vidpress.engine.prefill import prefill
from vidpress.engine.rows import has_text_row
from vidpress.engine.state import Call, Plan, Session
from vidpress.engine.stats import CallStats

_ATTACHED: weakref.WeakSet = weakref.WeakSet()  # models that currently carry a press


class Run:
    """A press attached to one model, as a context manager; ``stats``: a CallStats per prefill."""

    def __init__(self, press, model: nn.Module):
        self.press = press
        self.model = model
        self.adapter = get_adapter(model)
        self.stats: list[CallStats] = []
        self._inner = press.inner_stage()
        layers = len(self.adapter.decoder_layers)
        if self._inner is not None and not 1 <= self._inner.layer < layers:
            raise ValueError(
                f"inner_layer must be in [1, {layers - 1}] for this model ({layers} decoder "
                f"layers), got {self._inner.layer}"
            )
        self._original_positions = press.position_ids == "original"
        self._sessions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._call: Call | None = None
        self._handles: list = []
        self._state: dict | None = None
        self._replay: Plan | None = None
        self._last_plan: Plan | None = None

    # ---------------------------------------------------------------- attach / detach
    def __enter__(self) -> Run:
        if self.model in _ATTACHED:
            raise RuntimeError("a press is already attached to this model; nest no presses")
        _ATTACHED.add(self.model)
        self._state = self.adapter.save_state()
        try:
            self._attach()
        except Exception:
            self._detach()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._detach()

    def _attach(self) -> None:
        add = self._handles.append
        add(self.model.register_forward_pre_hook(self._before_forward, with_kwargs=True))
        add(
            self.model.register_forward_hook(
                self._after_forward, with_kwargs=True, always_call=True
            )
        )
        self._handles.extend(self.adapter.attach_hooks())
        if self._inner is None:
            return
        k = self._inner.layer
        add(
            self.adapter.decoder_attention(k - 1).register_forward_pre_hook(
                self._record_attention_input, with_kwargs=True
            )
        )
        layers, layer_types = self.adapter.decoder_layers, self.adapter.layer_types()
        for i in range(k, len(layers)):
            hook = self._inner_layer_hook(i, layer_types[i])
            add(layers[i].register_forward_pre_hook(hook, with_kwargs=True))

    def _detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._state is not None:
            self.adapter.restore_state(self._state)
            self._state = None
        self._sessions = weakref.WeakKeyDictionary()
        self._call = None
        _ATTACHED.discard(self.model)

    @contextlib.contextmanager
    def replay(self):
        """Calls inside reuse the last prefill's compression decisions instead of recomputing them.

        The video and prompt prefix must be the same. With the inner stage, this lets a decoding
        step be recomputed without a KV cache (prompt + generated tokens) and still see exactly the
        tokens the cached run kept (used to verify the cache bookkeeping).
        """
        if self._last_plan is None:
            raise RuntimeError("replay() needs a compressed call first")
        self._replay = self._last_plan
        try:
            yield self
        finally:
            self._replay = None

    # ---------------------------------------------------------------- for engine.fast
    @property
    def inner_layer(self) -> int | None:
        """K, the first decoder layer of the inner stage (None without one)."""
        return None if self._inner is None else self._inner.layer

    def compress_prompt(self, inputs: dict, runner=None) -> tuple[dict, Call]:
        """Stage 1 of a prefill outside the model's forward (``engine.fast`` runs the decoder
        layers itself): the decoder's keyword arguments for the compressed prompt
        (``inputs_embeds``, ``attention_mask``, ``position_ids``, ...) and the call's state, which
        ``shorten`` reads. ``stats`` gets the call's entry. runner: runs the device work of the
        press's stage 1 (``functional.compress_with``'s; ``engine.graphs.PlannedReplays``)."""
        self.adapter.check_inputs(inputs)
        if inputs.get("input_ids") is None:
            raise ValueError("vidpress needs input_ids to locate the video tokens")
        if not self.adapter.has_video(inputs):
            raise ValueError(f"the fast path needs a video prompt (`{self.adapter.video_input}`)")
        return self._prefill(dict(inputs), None, runner)

    @contextlib.contextmanager
    def active(self, call: Call):
        """The press's layer hooks see ``call`` inside the block (they record what layer K-1's
        attention gets, for ``shorten``)."""
        self._call = call
        try:
            yield
        finally:
            self._call = None

    @property
    def replaying(self) -> bool:
        """Whether calls now reuse the last prefill's decisions (inside ``replay()``)."""
        return self._replay is not None

    def inner_plan(self, call: Call) -> inner.InnerPlan:
        """The inner stage's layout for ``call``'s compressed prompt (read on the host)."""
        return inner.inner_plan(self._inner, call)

    def merge_rows(
        self,
        plan: inner.InnerPlan,
        captured: dict,
        hidden: torch.Tensor,
        valid: torch.Tensor,
        sizes: torch.Tensor,
    ):
        """The inner stage's tensor work at layer K (``engine.inner.merge_rows``), no host sync."""
        return inner.merge_rows(self.adapter, self._inner, plan, captured, hidden, valid, sizes)

    def shorten(
        self, call: Call, hidden: torch.Tensor, rope: tuple, position_ids: torch.Tensor | None
    ) -> torch.Tensor:
        """Layer K at prefill (``engine.inner.shorten``): [B, L', D] -> [B, L'', D]."""
        return inner.shorten(
            self.adapter, self._inner, call, hidden, rope, position_ids, self._replay
        )

    def decode_positions(
        self, session: Session, tail: torch.Tensor, step: int, text_row: bool = False
    ) -> torch.Tensor:
        """Position ids of a decoding call's last ``step`` tokens (``engine.decode``)."""
        return decode_positions(
            self.adapter.mrope, self._original_positions, session, tail, step, text_row
        )

    # ---------------------------------------------------------------- model-level hooks
    def _before_forward(self, module, args, kwargs):
        self._call = None
        if args:
            names = list(inspect.signature(module.forward).parameters)
            kwargs = {**dict(zip(names, args, strict=False)), **kwargs}
        self.adapter.check_inputs(kwargs)
        if kwargs.get("input_ids") is None:
            raise ValueError("vidpress needs input_ids to locate the video tokens")
        cache = kwargs.get("past_key_values")
        if cache is not None and type(cache) is not DynamicCache:
            raise ValueError(
                f"vidpress needs a DynamicCache (generate()'s default), got {type(cache).__name__}"
            )
        if self.adapter.has_video(kwargs):
            if cache is not None and cache.get_seq_length() > 0:
                raise ValueError(
                    "a video can only be compressed at the start of a prompt (empty cache)"
                )
            kwargs, self._call = self._prefill(kwargs, cache)
        else:
            session = self._sessions.get(cache) if cache is not None else None
            if session is None or cache.get_seq_length() == 0:
                raise ValueError(
                    "this call has no video (pixel_values_videos) and continues no compressed "
                    "prompt; a press compresses video prompts only, run others outside the block"
                )
            kwargs, self._call = self._decode(kwargs, session, cache)
        return (), kwargs

    def _after_forward(self, module, args, kwargs, output):
        call, self._call = self._call, None
        cache = getattr(output, "past_key_values", None)
        if call is not None and call.prefill and call.cache is None and cache is not None:
            self._sessions[cache] = call.session  # a cache the model created itself

    def _prefill(self, kwargs: dict, cache: DynamicCache | None, runner=None) -> tuple[dict, Call]:
        replay = self._replay
        kwargs, call = prefill(
            self.adapter, self.press, kwargs, cache, replay, self._original_positions, runner
        )
        self.stats.append(call.stats)
        if replay is None:
            self._last_plan = call.plan
        if cache is not None:
            self._sessions[cache] = call.session
        return kwargs, call

    def _decode(self, kwargs: dict, session: Session, cache: DynamicCache) -> tuple[dict, Call]:
        input_ids = kwargs["input_ids"]
        tail = decode_tail(session, cache, input_ids, kwargs.get("attention_mask"))
        text_row = has_text_row(kwargs.get("position_ids"))
        positions = self.decode_positions(session, tail, input_ids.shape[1], text_row=text_row)
        outer = torch.cat([session.outer_mask, tail], dim=1)
        kwargs.update(attention_mask=outer, position_ids=positions)
        return kwargs, Call(session, cache, prefill=False, tail=tail)

    # ---------------------------------------------------------------- layer hooks (stage 2)
    def _record_attention_input(self, module, args, kwargs):
        call = self._call
        if call is not None and call.prefill:
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            call.captured = {"hidden": hidden, "rope": kwargs["position_embeddings"]}

    def _inner_layer_hook(self, i: int, kind: str):
        def hook(module, args, kwargs):
            call = self._call
            if call is None:
                return None
            if i == self._inner.layer:
                hidden = args[0] if args else kwargs.pop("hidden_states")
                if call.prefill:
                    rope = kwargs["position_embeddings"]
                    hidden = self.shorten(call, hidden, rope, kwargs.get("position_ids"))
                    mask2d = call.session.inner_mask
                else:
                    mask2d = torch.cat([call.session.inner_mask, call.tail], dim=1)
                call.layer_masks = inner.layer_masks(
                    self.adapter, self._inner.layer, hidden, mask2d, call.cache
                )
                args = (hidden, *args[1:])
            kwargs["attention_mask"] = call.layer_masks[kind]
            kwargs.update(call.layer_extra)
            return args, kwargs

        return hook
