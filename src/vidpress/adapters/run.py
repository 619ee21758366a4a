"""Attach a press to one model instance: ``with press(model) as run:``.

How a call flows (all through removable hooks, removed on exit, also after an exception):

- A forward pre-hook on the model sees every call. A call with ``pixel_values_videos`` is a
  prefill: the adapter runs the vision tower once (recording the q/k the scores need), the press
  compresses each video, and the hook hands the stock forward a shorter, re-left-padded
  ``inputs_embeds`` with its own attention mask and position ids (docs/method.md: 1-D RoPE
  contiguous by default or original ids; M-RoPE original (t, h, w) of each kept token or cluster
  centre).
- Inner stage (optional) at decoder layer K: a pre-hook on layer K-1's attention records its input
  and rotary embedding; a pre-hook on layer K recomputes the text rows of that attention from
  q/k, scores and merges the visual tokens, and shortens the hidden states. Pre-hooks on layers
  >= K give them the matching mask, rotary embedding and position ids, so their KV cache holds only
  the kept tokens.
- Decoding: generate() keeps its own, uncompressed bookkeeping (mask and positions of the original
  prompt plus generated tokens). Each step is translated: the mask columns of the prompt are
  replaced by the compressed prompt's (one mask per layer group, each sized by that group's KV
  cache), positions continue from the compressed prompt (or the original ones).
Per-prompt state is kept in a ``_Session`` keyed by the KV cache object, per-call state in
``_Call``; nothing is stored on the model.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import weakref
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers.cache_utils import DynamicCache
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

from vidpress import functional as F
from vidpress.adapters.base import Prompt, Timer
from vidpress.adapters.registry import get_adapter

_ATTACHED: weakref.WeakSet = weakref.WeakSet()  # models that currently carry a press


@dataclass
class CallStats:
    """What one compressed call (a prefill) did. Lists run over samples unless said otherwise.

    tokens_in:            visual tokens entering compression
    kept_outer:           visual tokens entering the LLM (stage 1)
    kept_inner:           visual tokens from layer K on (None without an inner stage)
    kept_per_frame:       per video, [T] kept tokens per frame after stage 1
    kept_per_frame_inner: per video, [T] kept tokens per frame from layer K on (or None)
    outer_seconds:        scoring + stage-1 compression time (the vision tower itself excluded)
    score_seconds:        the vision-score part of ``outer_seconds``
    inner_seconds:        in-LLM scoring + merging time
    kept_positions:       per video, [B_v, 3] (frame, row, col) of each kept token (a cluster:
                          its centre), in sequence order
    kept_sizes:           per video, [B_v] input tokens each kept token stands for
    inner_keep:           per sample, indices into its stage-1 visual tokens kept at layer K
    rows:                 [B, L'] original row of each row of the compressed prompt (-1: padding)
    rows_inner:           [B, L''] the same for layers >= K (or None)
    positions:            position ids given to the LLM for the compressed prompt
    """

    tokens_in: list[int]
    kept_outer: list[int]
    kept_per_frame: list[list[int]]
    outer_seconds: float
    kept_positions: list[torch.Tensor] = field(repr=False)
    kept_sizes: list[torch.Tensor] = field(repr=False)
    rows: torch.Tensor = field(repr=False)
    positions: torch.Tensor = field(repr=False)
    kept_inner: list[int] | None = None
    kept_per_frame_inner: list[list[int]] | None = None
    inner_seconds: float = 0.0
    score_seconds: float = 0.0
    inner_keep: list[torch.Tensor] | None = field(default=None, repr=False)
    rows_inner: torch.Tensor | None = field(default=None, repr=False)


@dataclass
class _Plan:
    """A prefill's compression decisions, for ``Run.replay``: stage-1 results and importances."""

    outer: list[F.CompressedTokens]
    importance: list[torch.Tensor | None] | None = None


@dataclass
class _Session:
    """A compressed prompt, as its decoding steps need it."""

    prompt_len: int  # L, the uncompressed prompt length generate() counts with
    orig_mask: torch.Tensor  # [B, L]
    outer_mask: torch.Tensor  # [B, L'] for layers < K
    rope_delta: torch.Tensor | None  # [B] M-RoPE: position minus original index after the prompt
    inner_mask: torch.Tensor | None = None  # [B, L''] for layers >= K


@dataclass
class _Call:
    """One forward call in flight."""

    session: _Session
    cache: DynamicCache | None
    prefill: bool
    stats: CallStats | None = None
    plan: _Plan | None = None
    tail: torch.Tensor | None = None  # decode: [B, steps + q] mask columns after the prompt
    visual: torch.Tensor | None = None  # prefill: [B, L'] bool, stage-1 visual tokens
    sizes: torch.Tensor | None = None  # prefill: [B, L'] tokens each row stands for
    span_end: torch.Tensor | None = None  # prefill: [B] last row of the video blocks
    sample_frames: list[torch.Tensor] | None = None  # per sample: (video, frame) of visual rows
    captured: dict = field(default_factory=dict)
    layer_masks: dict = field(default_factory=dict)  # layer type -> mask for layers >= K
    layer_extra: dict = field(default_factory=dict)  # other kwarg replacements for layers >= K


def left_aligned(keep: torch.Tensor) -> torch.Tensor:
    """[B, L] bool -> [B, W] long: the kept rows of each sample, right-aligned (left padding -1)."""
    counts = keep.sum(dim=1)
    width = int(counts.max())
    index = torch.full((keep.shape[0], width), -1, dtype=torch.long, device=keep.device)
    sample, row = keep.nonzero(as_tuple=True)
    column = (width - counts)[sample] + (keep.long().cumsum(dim=1) - 1)[sample, row]
    index[sample, column] = row
    return index


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x: [B, L, ...], index: [B, W] (-1 = padding) -> [B, W, ...] with zeros at padding."""
    batch = torch.arange(x.shape[0], device=x.device)[:, None]
    out = x[batch, index.clamp(min=0)]
    pad = (index < 0).view(*index.shape, *([1] * (x.dim() - 2)))
    return out.masked_fill(pad, 0)


def mask_positions(mask: torch.Tensor) -> torch.Tensor:
    """generate()'s 1-D positions of a [B, L] 0/1 mask: running count of real tokens, 0 at pads."""
    return (mask.cumsum(dim=-1) - 1).masked_fill(mask == 0, 0)


class Run:
    """A press attached to one model, as a context manager; ``stats``: a CallStats per prefill."""

    def __init__(self, press, model: nn.Module):
        self.press = press
        self.model = model
        self.adapter = get_adapter(model)
        self.stats: list[CallStats] = []
        self._inner = press.inner_stage()
        layers = len(self.adapter.language_model.layers)
        if self._inner is not None and not 1 <= self._inner.layer < layers:
            raise ValueError(
                f"inner_layer must be in [1, {layers - 1}] for this model ({layers} decoder "
                f"layers), got {self._inner.layer}"
            )
        self._sessions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._call: _Call | None = None
        self._handles: list = []
        self._state: dict | None = None
        self._replay: _Plan | None = None
        self._last_plan: _Plan | None = None

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
        layers = self.adapter.language_model.layers
        k = self._inner.layer
        add(
            layers[k - 1].self_attn.register_forward_pre_hook(
                self._record_attention_input, with_kwargs=True
            )
        )
        for i in range(k, len(layers)):
            add(layers[i].register_forward_pre_hook(self._inner_layer_hook(i), with_kwargs=True))

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

    # ---------------------------------------------------------------- for vidpress.fast
    @property
    def inner_layer(self) -> int | None:
        """K, the first decoder layer of the inner stage (None without one)."""
        return None if self._inner is None else self._inner.layer

    def compress_prompt(self, inputs: dict) -> tuple[dict, _Call]:
        """Stage 1 of a prefill outside the model's forward (``vidpress.fast`` runs the decoder
        layers itself): the decoder's keyword arguments for the compressed prompt
        (``inputs_embeds``, ``attention_mask``, ``position_ids``, ...) and the call's state, which
        ``shorten`` reads. ``stats`` gets the call's entry."""
        self.adapter.check_inputs(inputs)
        if inputs.get("input_ids") is None:
            raise ValueError("vidpress needs input_ids to locate the video tokens")
        if not self.adapter.has_video(inputs):
            raise ValueError(f"the fast path needs a video prompt (`{self.adapter.video_input}`)")
        kwargs = self._prefill(dict(inputs), None)
        call, self._call = self._call, None
        return kwargs, call

    @contextlib.contextmanager
    def active(self, call: _Call):
        """The press's layer hooks see ``call`` inside the block (they record what layer K-1's
        attention gets, for ``shorten``)."""
        self._call = call
        try:
            yield
        finally:
            self._call = None

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
            kwargs = self._prefill(kwargs, cache)
        else:
            session = self._sessions.get(cache) if cache is not None else None
            if session is None or cache.get_seq_length() == 0:
                raise ValueError(
                    "this call has no video (pixel_values_videos) and continues no compressed "
                    "prompt; a press compresses video prompts only, run others outside the block"
                )
            kwargs = self._decode(kwargs, session, cache)
        return (), kwargs

    def _after_forward(self, module, args, kwargs, output):
        call, self._call = self._call, None
        cache = getattr(output, "past_key_values", None)
        if call is not None and call.prefill and call.cache is None and cache is not None:
            self._sessions[cache] = call.session  # a cache the model created itself

    # ---------------------------------------------------------------- stage 1 (prefill)
    def _prefill(self, kwargs: dict, cache: DynamicCache | None) -> dict:
        input_ids = kwargs["input_ids"]
        batch, length = input_ids.shape
        given_mask = kwargs.get("attention_mask")
        if given_mask is not None and given_mask.dim() != 2:
            raise ValueError("vidpress needs a 2-D attention_mask [batch, sequence] (or none)")
        mask = torch.ones_like(input_ids) if given_mask is None else given_mask.long()
        replay = self._replay
        timer, score_timer = Timer(input_ids.device), Timer(input_ids.device)
        need = set() if replay is not None else set(self.press.needs)
        prompt = self.adapter.prepare(kwargs, mask, need, score_timer)
        with timer:
            results = self._stage1(prompt, replay)
            keep, visual, sizes = self._place(prompt, results, mask)
            index = left_aligned(keep)  # [B, L'] original row of each compressed row
        outer_mask = (index >= 0).long()
        embeds = gather_rows(prompt.embeds, index)
        positions, rope_delta = self._prefill_positions(prompt, index, outer_mask, mask, kwargs)

        session = _Session(length, mask, outer_mask, rope_delta)
        span = gather_rows(prompt.span, index)
        row_ids = torch.arange(index.shape[1], device=index.device)
        seconds = score_timer.seconds + timer.seconds
        stats = self._stage1_stats(prompt, results, batch, seconds, index, positions)
        stats.score_seconds = score_timer.seconds
        self.stats.append(stats)
        plan = _Plan(results)
        if replay is None:
            self._last_plan = plan
        self._call = _Call(
            session,
            cache,
            prefill=True,
            stats=stats,
            plan=plan,
            visual=gather_rows(visual, index),
            sizes=gather_rows(sizes, index),
            span_end=torch.where(span, row_ids, -1).amax(dim=1),
            sample_frames=self._sample_frames(prompt, results, batch),
        )
        if cache is not None:
            self._sessions[cache] = session
        kwargs = self.adapter.llm_kwargs(kwargs)
        kwargs.update(
            input_ids=None, inputs_embeds=embeds, attention_mask=outer_mask, position_ids=positions
        )
        return kwargs

    def _stage1(self, prompt: Prompt, replay: _Plan | None) -> list[F.CompressedTokens]:
        if replay is None:
            return [self.press.compress_video(video) for video in prompt.videos]
        shapes = [tuple(v.tokens.shape[:2]) for v in prompt.videos]
        if len(replay.outer) != len(shapes) or any(
            int(r.assignment.numel()) != t * n
            for r, (t, n) in zip(replay.outer, shapes, strict=True)
        ):
            raise ValueError("replay() needs the same videos as the call it replays")
        return replay.outer

    def _place(self, prompt: Prompt, results, mask: torch.Tensor):
        """Rows kept per sample ([B, L] bool), which are visual, and their sizes; writes tokens."""
        keep = mask.bool().clone()
        visual = torch.zeros_like(keep)
        sizes = torch.zeros_like(mask)
        for video, res in zip(prompt.videos, results, strict=True):
            if len(res) < 1:
                raise ValueError("the retention leaves zero visual tokens for a video")
            cols = video.grid[1]
            flat = res.positions[:, 0] * video.tokens.shape[1] + res.positions[:, 1] * cols
            rows = video.rows[flat + res.positions[:, 2]]
            keep[video.sample, video.rows] = False
            keep[video.sample, rows] = True
            visual[video.sample, rows] = True
            sizes[video.sample, rows] = res.sizes.to(sizes.device)
            prompt.embeds[video.sample, rows] = res.tokens.to(prompt.embeds.dtype)
        return keep, visual, sizes

    def _prefill_positions(self, prompt, index, outer_mask, mask, kwargs):
        """Position ids of the compressed prompt, and M-RoPE's per-sample offset for decoding."""
        if not self.adapter.mrope:
            if getattr(self.press, "position_ids", "contiguous") == "original":
                return gather_rows(prompt.positions, index), None
            return mask_positions(outer_mask), None
        mrope = prompt.positions  # [3, B, L]
        kept = torch.stack([gather_rows(p, index) for p in mrope])
        rope_delta = mrope.amax(dim=(0, 2)) + 1 - mask.sum(dim=1)
        given = kwargs.get("position_ids")
        if given is not None and given.dim() == 3 and given.shape[0] == 4:
            kept = torch.cat([mask_positions(outer_mask)[None], kept])
        return kept, rope_delta

    def _stage1_stats(self, prompt, results, batch, seconds, index, positions) -> CallStats:
        tokens_in, kept = [0] * batch, [0] * batch
        for video, res in zip(prompt.videos, results, strict=True):
            tokens_in[video.sample] += video.tokens.shape[0] * video.tokens.shape[1]
            kept[video.sample] += len(res)
        per_frame = [
            res.kept_per_frame(v.tokens.shape[0]).tolist()
            for v, res in zip(prompt.videos, results, strict=True)
        ]
        return CallStats(
            tokens_in,
            kept,
            per_frame,
            seconds,
            [res.positions for res in results],
            [res.sizes for res in results],
            index,
            positions,
        )

    @staticmethod
    def _sample_frames(prompt, results, batch) -> list[torch.Tensor]:
        """Per sample [V_b, 2] (video number, frame) of its stage-1 tokens in sequence order."""
        parts: list[list[torch.Tensor]] = [[] for _ in range(batch)]
        for number, (video, res) in enumerate(zip(prompt.videos, results, strict=True)):
            frame = res.positions[:, 0]
            parts[video.sample].append(torch.stack([torch.full_like(frame, number), frame], dim=1))
        return [torch.cat(p) if p else torch.zeros(0, 2, dtype=torch.long) for p in parts]

    # ---------------------------------------------------------------- decoding
    def _decode(self, kwargs: dict, session: _Session, cache: DynamicCache) -> dict:
        input_ids = kwargs["input_ids"]
        batch, step = input_ids.shape
        if batch != session.orig_mask.shape[0]:
            raise ValueError(
                f"decoding batch size {batch} differs from the compressed prompt's "
                f"{session.orig_mask.shape[0]} (beam search is not supported)"
            )
        done = cache.get_seq_length(0) - session.outer_mask.shape[1]
        expected = session.prompt_len + done + step
        given = kwargs.get("attention_mask")
        if given is None:
            tail = torch.ones(batch, done + step, dtype=torch.long, device=input_ids.device)
        elif given.dim() != 2 or given.shape[1] != expected:
            raise ValueError(
                f"attention_mask must be 2-D with {expected} columns (the {session.prompt_len} of "
                f"the uncompressed prompt, {done} generated, {step} new), got {tuple(given.shape)}"
            )
        else:
            tail = given[:, session.prompt_len :].long()
        outer = torch.cat([session.outer_mask, tail], dim=1)
        old = kwargs.get("position_ids")
        text_row = old is not None and old.dim() == 3 and old.shape[0] == 4
        positions = self.decode_positions(session, tail, step, text_row=text_row)
        self._call = _Call(session, cache, prefill=False, tail=tail)
        kwargs.update(attention_mask=outer, position_ids=positions)
        return kwargs

    def decode_positions(
        self, session: _Session, tail: torch.Tensor, step: int, text_row: bool = False
    ) -> torch.Tensor:
        """Position ids of the last ``step`` tokens of a decoding call whose mask columns after
        the prompt are ``tail: [B, done + step]``: [B, step] (1-D RoPE), [3, B, step] (M-RoPE;
        [4, B, step] with ``text_row``, the text positions first, as Qwen2.5-VL's generate()
        passes them). They continue the compressed prompt's (docs/method.md: contiguous 1-D ids by
        default) or the original prompt's ("original" 1-D ids; M-RoPE's offset ``rope_delta``)."""
        outer = torch.cat([session.outer_mask, tail], dim=1)
        original = torch.cat([session.orig_mask, tail], dim=1)
        if self.adapter.mrope:
            base = mask_positions(original)[:, -step:] + session.rope_delta[:, None]
            positions = base[None].expand(3, -1, -1)
            if text_row:
                positions = torch.cat([mask_positions(outer)[None, :, -step:], positions])
            return positions
        if getattr(self.press, "position_ids", "contiguous") == "original":
            return mask_positions(original)[:, -step:]
        return mask_positions(outer)[:, -step:]

    # ---------------------------------------------------------------- stage 2 (inside the LLM)
    def _record_attention_input(self, module, args, kwargs):
        call = self._call
        if call is not None and call.prefill:
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            call.captured = {"hidden": hidden, "rope": kwargs["position_embeddings"]}

    def _inner_layer_hook(self, i: int):
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
                call.layer_masks = self._layer_masks(hidden, mask2d, call.cache)
                args = (hidden, *args[1:])
            layer_types = getattr(self.adapter.language_model.config, "layer_types", None)
            kind = layer_types[i] if layer_types else "full_attention"
            kwargs["attention_mask"] = call.layer_masks[kind]
            kwargs.update(call.layer_extra)
            return args, kwargs

        return hook

    def _layer_masks(self, hidden, mask2d, cache) -> dict:
        """Masks for layers >= K, sized by layer K's KV cache (one per attention type)."""
        config = self.adapter.language_model.config
        k = self._inner.layer
        types = getattr(config, "layer_types", None) or ["full_attention"] * (k + 1)
        masks = {}
        for i in range(k, len(types)):
            kind = types[i]
            if kind in masks:
                continue
            make = (
                create_causal_mask
                if kind == "full_attention"
                else create_sliding_window_causal_mask
            )
            masks[kind] = make(
                config=config,
                inputs_embeds=hidden,
                attention_mask=mask2d,
                past_key_values=cache,
                layer_idx=i,
            )
        return masks

    def shorten(
        self, call: _Call, hidden: torch.Tensor, rope: tuple, position_ids: torch.Tensor | None
    ) -> torch.Tensor:
        """Layer K at prefill: choose and merge visual tokens, shorten what layers >= K see.

        hidden: [B, L', D] entering layer K; rope: the (cos, sin) of the compressed prompt;
        position_ids: the ids the decoder layers are given (or None). Returns [B, L'', D];
        ``call`` gets the inner mask, the gathered rotary embedding and position ids for layers
        >= K, and the stats of the inner stage.
        """
        inner = self._inner
        stats = call.stats
        replay = self._replay
        timer = Timer(hidden.device)
        with timer:
            batch, width, _ = hidden.shape
            hidden = hidden.clone()
            keep = call.session.outer_mask.bool().clone()
            keep_index, importances = [], []
            for b in range(batch):
                vis_rows = call.visual[b].nonzero().squeeze(1)
                if vis_rows.numel() == 0:
                    keep_index.append(vis_rows)
                    importances.append(None)
                    continue
                if replay is not None:
                    importance = replay.importance[b]
                else:
                    importance = self._importance(call, hidden, b, vis_rows)
                count = F.token_budget(vis_rows.numel(), retention=inner.keep)
                res = F.inner_compress(
                    hidden[b, vis_rows],
                    importance.to(hidden.device),
                    count,
                    merge=inner.merge,
                    sizes=call.sizes[b, vis_rows],
                )
                keep[b, vis_rows] = False
                kept_rows = vis_rows[res.keep_index]
                keep[b, kept_rows] = True
                hidden[b, kept_rows] = res.hidden.to(hidden.dtype)
                keep_index.append(res.keep_index)
                importances.append(importance)
            index = left_aligned(keep)  # [B, L''] into the compressed prompt's rows
        inner_mask = (index >= 0).long()
        call.session.inner_mask = inner_mask
        short = gather_rows(hidden, index)
        cos, sin = rope
        extra = {
            "position_embeddings": (
                gather_rows(cos.expand(batch, -1, -1), index),
                gather_rows(sin.expand(batch, -1, -1), index),
            )
        }
        if position_ids is not None:
            extra["position_ids"] = gather_rows(position_ids.expand(batch, -1), index)
        call.layer_extra = extra

        stats.inner_seconds = timer.seconds
        stats.inner_keep = keep_index
        call.plan.importance = importances
        stats.kept_inner = [int(k.numel()) for k in keep_index]
        stats.rows_inner = gather_rows(stats.rows, index).masked_fill(index < 0, -1)
        per_frame = [torch.zeros(len(f), dtype=torch.long) for f in stats.kept_per_frame]
        for frames, kept in zip(call.sample_frames, keep_index, strict=True):
            for video, frame in frames[kept.to(frames.device)].tolist():
                per_frame[video][frame] += 1
        stats.kept_per_frame_inner = [f.tolist() for f in per_frame]
        return short

    def _importance(self, call: _Call, hidden, b: int, vis_rows: torch.Tensor) -> torch.Tensor:
        """[V] importance of sample ``b``'s visual tokens (Eq. 9, or the last-token row)."""
        width = hidden.shape[1]
        pad = width - int(call.session.outer_mask[b].sum())
        span_end = int(call.span_end[b])
        if self._inner.importance == "last_token" or span_end >= width - 1:
            query = torch.tensor([width - 1], device=hidden.device)
        else:
            query = torch.arange(span_end + 1, width, device=hidden.device)
        attention = self._text_attention(call, b, query, pad)[:, vis_rows - pad]  # [Q, V]
        if self._inner.importance == "last_token":
            return attention[-1]
        return F.text_aware_importance(
            attention, hidden[b, vis_rows], hidden[b, query], lam=self._inner.lam
        )

    def _text_attention(self, call: _Call, b: int, query: torch.Tensor, pad: int) -> torch.Tensor:
        """Head-mean softmax rows of layer K-1 for the ``query`` rows of sample ``b``: [Q, n_b]."""
        attn = self.adapter.language_model.layers[self._inner.layer - 1].self_attn
        rope = sys.modules[type(attn).__module__].apply_rotary_pos_emb
        x = call.captured["hidden"][b]  # [L', D], after the layer's input norm
        cos, sin = call.captured["rope"]
        cos, sin = cos[b if cos.shape[0] > 1 else 0], sin[b if sin.shape[0] > 1 else 0]
        head_dim = attn.head_dim

        def heads(proj: nn.Module, rows, norm_name: str) -> torch.Tensor:
            y = proj(x[rows]).view(len(x[rows]), -1, head_dim)
            norm = getattr(attn, norm_name, None)
            if norm is not None:
                y = norm(y)
            y = y.transpose(0, 1)[None]  # [1, H, n, d]
            return rope(y, y, cos[rows][None], sin[rows][None])[0][0]

        q = heads(attn.q_proj, query, "q_norm")
        k = heads(attn.k_proj, slice(pad, None), "k_norm")
        k = k.repeat_interleave(q.shape[0] // k.shape[0], dim=0)
        return F.text_to_visual_attention(q, k, slice(None), int(query[0]) - pad)
