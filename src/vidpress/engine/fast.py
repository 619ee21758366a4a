"""Compressed generation at static shapes: a static KV cache and CUDA graphs (opt-in).

A press's budget is exact, so once stage 1 has run, the LLM sees a prompt whose length depends
only on the text, and from layer K on a known shorter one. ``FastGenerator`` exploits that. It
runs the stock decoder layers itself at those fixed shapes with a transformers ``StaticCache``
(each layer writes at its own length, so layers < K hold L' tokens and layers >= K hold L''),
and on a GPU replays them as CUDA graphs:

- prefill: one graph of layers [0, K) on the compressed prompt, the press's inner stage at
  layer K (``engine.inner.merge_rows``: which tokens it keeps is data-dependent, how many is
  not, so it runs without a host sync), layers [K, L) on the shortened prompt and the LM head
  on the last row. The inner stage's layout (``InnerPlan``: the visual rows, the query rows,
  the kept counts) is read on the host first and keys the graph.
- stage 1 of the methods that take a runner (VisionZip, FastVID, unified): the device work
  after each host decision, one graph per key (``engine.graphs.PlannedReplays``).
- decoding: one graph per step (embedding, every layer, LM head, greedy choice), replayed
  without a host synchronisation: the token, its position, the masks and the step counter
  advance on the device. The host reads the tokens every ``check_every`` steps (EOS) and at
  the end.

Graphs are captured the first time a shape (batch, L', inner layout, max_new_tokens) is seen
and replayed afterwards; the first call of a shape therefore costs a capture. ``compile=True``
also fuses the decoder's norms, MLPs and rotary application with ``torch.compile``
(``engine.compiled``; the first call of a shape then also compiles). On a CPU, or with
``cuda_graphs=False``, the same code runs eagerly: that is how its logic is tested against
``model.generate`` under the same press.

    with press(model) as run:
        fast = FastGenerator(run)
        out = fast.generate(inputs, max_new_tokens=32)   # out.tokens: [B, n] new tokens only
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers.cache_utils import StaticCache

from vidpress import functional as F
from vidpress.engine.compiled import CompiledDecoder
from vidpress.engine.graphs import PlannedReplays, Replay
from vidpress.engine.greedy import after_eos, causal_allowed, greedy, prompt_columns
from vidpress.engine.inner import InnerPlan, finish_inner, shortened_layer_inputs
from vidpress.engine.rows import has_text_row
from vidpress.engine.run import Run

MASK_KINDS = ("sdpa", "eager")  # attention implementations whose masks are built here


@dataclass
class FastOutput:
    """What one ``FastGenerator.generate`` call returns.

    tokens:         [B, n] greedy new tokens (``pad_token_id`` after a sample's EOS), n <= max
    first_token_s:  host seconds from the call to the first token on the host
    seconds:        host seconds of the whole call
    """

    tokens: torch.Tensor
    first_token_s: float
    seconds: float


@dataclass
class _Shape:
    """Static state of one (batch, L', max_new_tokens): the cache, the graphs, the buffers."""

    cache: StaticCache
    width: int  # cache slots: L' + max_new_tokens
    outer: Replay | None = None  # the prefill without an inner stage
    prefill: dict = field(default_factory=dict)  # InnerPlan.key() -> Replay of the prefill
    decode: dict = field(default_factory=dict)  # L'' -> (Replay of one step, its buffers)

    def lengths(self) -> list[torch.Tensor]:
        """The cache layers' write positions (device tensors the layers advance in place)."""
        return [layer.cumulative_length for layer in self.cache.layers]

    def rewind(self) -> None:
        """Write the cache from slot 0 again (one kernel). The old keys and values stay: the
        masks of a call allow only the slots it has written."""
        torch._foreach_zero_(self.lengths())


class FastGenerator:
    """Greedy generation at static shapes (a static KV cache, CUDA graphs on a GPU) for a model
    that carries a press (``with press(model) as run``).

    cuda_graphs: None = on when the model is on a CUDA device. check_every: decoding steps
    between two host reads of the tokens (an early stop once every sample has ended).
    compile: True fuses the decoder's norms, MLPs and rotary application with
    ``torch.compile`` during the calls (``engine.compiled``); a string names the backend
    (default "inductor").
    Supported: decoder stacks laid out as transformers' Qwen2/Llama families (LLaVA-OneVision,
    Qwen2.5-VL) with full attention only, attention "sdpa" or "eager".
    """

    def __init__(
        self,
        run: Run,
        cuda_graphs: bool | None = None,
        check_every: int = 16,
        compile: bool | str = False,
    ):
        if not isinstance(run, Run):
            raise TypeError(f"run must be the object of `with press(model) as run`, got {run!r}")
        if check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {check_every}")
        if not (isinstance(compile, bool) or (isinstance(compile, str) and compile)):
            raise ValueError(
                f"compile must be True, False or a torch.compile backend name, got {compile!r}"
            )
        self.run = run
        self.model = run.model
        self.adapter = run.adapter
        self.layers = run.adapter.decoder_layers
        config = run.adapter.language_model.config
        self.impl = config._attn_implementation
        if self.impl not in MASK_KINDS:
            raise ValueError(
                f"the fast path builds masks for attention {', '.join(MASK_KINDS)}; this model "
                f"uses {self.impl!r}"
            )
        kinds = set(self.adapter.layer_types())
        if kinds != {"full_attention"}:
            raise ValueError(f"the fast path supports full attention layers only, got {kinds}")
        device = next(self.model.parameters()).device
        self.graphs = device.type == "cuda" if cuda_graphs is None else bool(cuda_graphs)
        if self.graphs and device.type != "cuda":
            raise ValueError("cuda_graphs=True needs the model on a CUDA device")
        self.check_every = check_every
        self.split = run.inner_layer or len(self.layers)
        self.pool = torch.cuda.graph_pool_handle() if self.graphs else None
        self.stage1 = PlannedReplays(self.graphs)  # stage 1's device work
        self._shapes: dict[tuple, _Shape] = {}
        self._call = None  # the call whose prefill is running
        backend = "inductor" if compile is True else compile
        self.compiled = CompiledDecoder(self.layers, backend) if backend else None

    # ---------------------------------------------------------------- pieces of the decoder
    def _mask(self, allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if self.impl == "sdpa":
            return allowed
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
            ~allowed, torch.finfo(dtype).min
        )

    def _layers(self, hidden, first: int, last: int, mask, rope, cache) -> torch.Tensor:
        for layer in self.layers[first:last]:
            hidden = layer(
                hidden,
                attention_mask=mask,
                position_embeddings=rope,
                past_key_values=cache,
                use_cache=True,
            )
        return hidden

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[B, V] float32 logits of the last row of ``hidden: [B, S, D]``."""
        return self.adapter.logits(hidden[:, -1:])[:, -1].float()

    # ---------------------------------------------------------------- static state
    def _shape(self, batch: int, length: int, max_new: int, embeds: torch.Tensor) -> _Shape:
        key = (batch, length, max_new)
        if key not in self._shapes:
            config = self.adapter.language_model.config
            width = length + max_new
            cache = StaticCache(config=config, max_cache_len=width)
            heads = config.num_key_value_heads
            head_dim = getattr(config, "head_dim", None) or config.hidden_size // (
                config.num_attention_heads
            )
            cache.early_initialization(batch, heads, head_dim, embeds.dtype, embeds.device)
            self._shapes[key] = _Shape(cache, width)
        return self._shapes[key]

    def _outer_replay(self, shape: _Shape) -> Replay:
        """The prefill without an inner stage: every layer and the LM head."""

        def outer(embeds, valid, positions):
            mask = self._mask(causal_allowed(valid, shape.width), embeds.dtype)
            rope = self.adapter.position_embeddings(embeds, positions)
            hidden = self._layers(embeds, 0, len(self.layers), mask, rope, shape.cache)
            return self._logits(hidden)

        return Replay(outer, self.graphs, self.pool, shape.rewind, shape.lengths)

    def _inner_replay(self, shape: _Shape, plan: InnerPlan) -> Replay:
        """The prefill with the inner stage: layers [0, K), the merge at layer K, layers [K, L)
        on the shortened prompt, the LM head. Returns (logits [B, V], the rows kept from layer
        K on [B, L''], per sample the kept visual tokens and their importances)."""

        def prefill(embeds, positions, valid, sizes, *visual):
            mask = self._mask(causal_allowed(valid, shape.width), embeds.dtype)
            rope = self.adapter.position_embeddings(embeds, positions)
            call = self._call
            with self.run.active(call):  # the layer-K-1 hook records its attention's input
                hidden = self._layers(embeds, 0, self.split, mask, rope, shape.cache)
            rows = dataclasses.replace(plan, visual=list(visual))
            with F.values_unread():  # no host read inside a graph
                short, index, keep_index, importances = self.run.merge_rows(
                    rows, call.captured, hidden, valid, sizes
                )
            cos, sin = shortened_layer_inputs(index, rope, None)["position_embeddings"]
            mask = self._mask(causal_allowed(index >= 0, shape.width), embeds.dtype)
            hidden = self._layers(
                short, self.split, len(self.layers), mask, (cos, sin), shape.cache
            )
            return self._logits(hidden), index, keep_index, importances

        return Replay(prefill, self.graphs, self.pool, shape.rewind, shape.lengths)

    def _decode_replay(self, shape: _Shape, buffers: dict, suppress: torch.Tensor | None):
        """One decoding step on ``buffers`` (updated in place), as a Replay."""
        b = buffers

        def step():
            b["mask_outer"].index_fill_(3, b["slot_outer"], True)
            b["mask_inner"].index_fill_(3, b["slot_inner"], True)
            hidden = self.adapter.embed_text(b["token"])  # [B, 1, D]
            rope = self.adapter.position_embeddings(hidden, b["position"][..., None])
            mask_outer = self._mask(b["mask_outer"], hidden.dtype)
            hidden = self._layers(hidden, 0, self.split, mask_outer, rope, shape.cache)
            if self.split < len(self.layers):
                mask_inner = self._mask(b["mask_inner"], hidden.dtype)
                hidden = self._layers(
                    hidden, self.split, len(self.layers), mask_inner, rope, shape.cache
                )
            chosen = greedy(self._logits(hidden), suppress)  # [B]
            b["tokens"].index_copy_(1, b["step"], chosen[:, None])
            b["token"].copy_(chosen[:, None])
            for name in ("position", "slot_outer", "slot_inner", "step"):
                b[name].add_(1)

        def state() -> list[torch.Tensor]:
            return shape.lengths() + list(b.values())

        return Replay(step, self.graphs, self.pool, state=state)

    # ---------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(
        self,
        inputs: dict,
        max_new_tokens: int = 32,
        *,
        eos_token_id: int | list[int] | None = None,
        ignore_eos: bool = False,
        suppress_tokens: list[int] | None = None,
        pad_token_id: int | None = None,
        mark: Callable[[str], None] | None = None,
    ) -> FastOutput:
        """Greedy decoding of ``max_new_tokens`` at most (fewer when every sample has ended).

        inputs: the model's inputs for a video prompt (as for ``model.generate``).
        eos_token_id: default the model's generation config (None here means that default, not
        "no EOS"); ``ignore_eos``: always decode ``max_new_tokens`` (benchmarks).
        suppress_tokens: ids never chosen. mark: called with "llm_start" once the compressed
        prompt is ready and "llm_end" once the first token is chosen on the device
        (``vidpress bench`` records CUDA events there).
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if self.run.replaying:
            raise ValueError("FastGenerator does not run inside run.replay(); use generate()")
        compiled = self.compiled.installed() if self.compiled else contextlib.nullcontext()
        with compiled:
            return self._generate(
                inputs,
                max_new_tokens,
                eos_token_id,
                ignore_eos,
                suppress_tokens,
                pad_token_id,
                mark,
            )

    def _generate(
        self, inputs, max_new_tokens, eos_token_id, ignore_eos, suppress_tokens, pad_token_id, mark
    ) -> FastOutput:
        start = time.perf_counter()
        eos = self._eos(eos_token_id)
        kwargs, call = self.run.compress_prompt(inputs, self.stage1)
        if mark is not None:
            mark("llm_start")
        embeds = kwargs["inputs_embeds"]
        valid = kwargs["attention_mask"].bool()  # [B, L']
        positions = self._rope_positions(kwargs["position_ids"])
        batch, length = valid.shape
        shape = self._shape(batch, length, max_new_tokens, embeds)
        suppress = self._suppress(suppress_tokens, embeds.device)

        if self.split == len(self.layers):
            if shape.outer is None:
                shape.outer = self._outer_replay(shape)
            first = shape.outer(embeds, valid, positions)
            inner_valid = valid
        else:
            plan = self.run.inner_plan(call)
            if plan.key() not in shape.prefill:
                shape.prefill[plan.key()] = self._inner_replay(shape, plan)
            self._call = call  # what the prefill's first run (the graph's capture) records into
            first, index, keep_index, importances = shape.prefill[plan.key()](
                embeds, positions, valid, call.sizes, *plan.visual
            )
            self._call = None
            inner_valid = index >= 0
        chosen = greedy(first, suppress)
        if mark is not None:
            mark("llm_end")
        if self.split < len(self.layers):  # outputs of a graph are its own: copy what is kept
            finish_inner(
                call,
                index.clone(),
                [k.clone() for k in keep_index],
                [None if i is None else i.clone() for i in importances],
                math.nan,
            )
        tokens = [chosen.cpu()]
        first_token_s = time.perf_counter() - start
        if max_new_tokens > 1:
            decoded = self._decode(
                shape, call, (valid, inner_valid), chosen, max_new_tokens, eos, ignore_eos, suppress
            )
            tokens.append(decoded)
        if pad_token_id is None:
            pad_token_id = getattr(self.model.generation_config, "pad_token_id", None)
        out = torch.cat([t.view(batch, -1) for t in tokens], dim=1)
        if eos is not None and not ignore_eos:
            out = after_eos(out, eos.cpu(), pad_token_id)
        return FastOutput(out, first_token_s, time.perf_counter() - start)

    def _decode(self, shape, call, valids, chosen, max_new, eos, ignore_eos, suppress):
        """Tokens 2 .. max_new on the host: [B, <= max_new - 1]. ``valids``: the real prompt
        rows of layers < K and of layers >= K ([B, L'], [B, L''] bool)."""
        valid, inner_valid = valids
        key = inner_valid.shape[1]
        batch, device = valid.shape[0], valid.device
        tail = torch.ones(batch, 1, dtype=torch.long, device=device)
        position = self.run.decode_positions(call.session, tail, 1)[..., 0]  # [B] or [3, B]
        fresh = {
            "token": chosen[:, None].clone(),
            "position": position.clone(),
            "mask_outer": prompt_columns(valid, shape.width),
            "mask_inner": prompt_columns(inner_valid, shape.width),
            "slot_outer": torch.tensor([valid.shape[1]], device=device),
            "slot_inner": torch.tensor([inner_valid.shape[1]], device=device),
            "step": torch.tensor([0], device=device),
            "tokens": torch.zeros(batch, max_new - 1, dtype=torch.long, device=device),
        }
        if key not in shape.decode:
            shape.decode[key] = (self._decode_replay(shape, fresh, suppress), fresh)
        replay, buffers = shape.decode[key]
        for name, value in fresh.items():
            buffers[name].copy_(value)
        done = 0
        while done < max_new - 1:
            for _ in range(min(self.check_every, max_new - 1 - done)):
                replay()
                done += 1
            if eos is not None and not ignore_eos and done < max_new - 1:
                seen = torch.isin(buffers["tokens"][:, :done], eos).any(dim=1)
                if bool(seen.all()):
                    break
        return buffers["tokens"][:, :done].cpu()

    # ---------------------------------------------------------------- small helpers
    def _eos(self, eos_token_id) -> torch.Tensor | None:
        if eos_token_id is None:
            eos_token_id = getattr(self.model.generation_config, "eos_token_id", None)
        if eos_token_id is None:
            return None
        ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        return torch.tensor(ids, device=next(self.model.parameters()).device)

    def _suppress(self, suppress_tokens, device) -> torch.Tensor | None:
        if not suppress_tokens:
            return None
        vocab = self.model.lm_head.out_features
        bad = [t for t in suppress_tokens if not 0 <= t < vocab]
        if bad:
            raise ValueError(f"suppress_tokens must be ids in [0, {vocab}), got {bad[:5]}")
        mask = torch.zeros(vocab, dtype=torch.bool, device=device)
        mask[torch.tensor(suppress_tokens, device=device)] = True
        return mask

    def _rope_positions(self, position_ids: torch.Tensor) -> torch.Tensor:
        """The positions the rotary embedding takes: [B, L'] or M-RoPE's [3, B, L'] (a leading
        row of text positions, as Qwen2.5-VL's generate() adds, is dropped)."""
        if has_text_row(position_ids):
            return position_ids[1:]
        return position_ids
