"""Analytic FLOPs of a Video-LLM answering about a video under a token press.

Two conventions:

``paper`` -- the accounting of the paper's Table 1 (and of FastV / HoliTom before it): the LLM
only, the visual tokens only, FastV's per-layer prefill formula for ``n`` tokens, hidden ``d``,
MLP width ``m``::

    prefill(n) = 4 n d^2 + 2 n^2 d + 2 n d m        (q/k/v/o, QK^T + AV, MLP)

plus ``G = 100`` decoded tokens with a KV cache, decoded token ``i`` (0-based) attending to the
``n`` visual tokens of that layer's cache and the ``i`` tokens decoded before it::

    decode(n, i) = 4 d^2 + 2 (n + i) d + 2 d m

    FLOPs = sum over layers l of [ prefill(n_l) + sum_{i < G} decode(n_l, i) ]

``n_l`` is the number of visual tokens in layer ``l``. These terms are multiply-accumulates, as in
FastV's formula; the paper calls them FLOPs. Budgets are the press's (``press.plan``):
``B = round_half_up(r x T x N)``, the inner stage keeps ``round_half_up(keep x B)``. An inner stage
"at layer K" (FastV at K = 2, HoliTom and the paper's method at K = 18) is counted as taking
effect *after* layer K: layers ``0..K`` run on the tokens that entered the LLM (FastV: all
T x N), layers ``> K`` on the kept ones. This decode term and this layer count were fitted to
all 25 FLOPs cells of Table 1 (13 distinct values); see ``tests/test_flops.py`` for the table.
With the project's global budget rounding every cell is within 4.8%. With
``budget_rounding="per_frame"`` (``T x round(r x N)`` tokens, e.g. 20 per frame at 10%, as
per-frame methods keep them) every published FLOPs value *and* every published ratio is
reproduced exactly after rounding, which suggests the paper counted its stage-1 methods that way.

``exact`` -- what the hardware does, 2 FLOPs per multiply-add:

- LLM, per layer on ``S = n_l + text_tokens`` tokens (the prompt's text after the video):
  q and o projections ``2 S d (H hd)``, k and v projections ``2 S d (H_kv hd)`` each (GQA),
  causal attention ``2 (H hd) S (S + 1)`` (QK^T and AV over S(S+1)/2 query-key pairs), gated MLP
  ``6 S d m`` (gate, up, down). Decode step ``i`` runs one token that attends to ``S + i + 1`` keys.
  The LM head ``2 d V`` runs on the last prefill token and on every decoded token. Norms, RoPE,
  softmax and activations (elementwise) are not counted.
- Vision tower on every frame group: patch embedding ``2 P (C t p^2) D_v``, per layer
  ``8 P D_v^2`` (qkv, out), attention ``4 D_v sum_w |w|^2`` (``|w| = P`` with full attention,
  window sizes for Qwen2.5-VL's windowed layers), MLP ``2 k P D_v M_v`` (k = 2 or 3 matrices).
- Projector: ``2 tokens x in x out`` per matrix.
- Compression: an estimate of the press's dominant similarity matmuls, see
  :func:`compression_flops`. Sorting, top-k and elementwise work are not counted.

The inner stage in ``exact`` is where the presses apply it (docs/method.md): layers ``>= K`` run
on the kept tokens.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from vidpress.functional._checks import check_choice, check_int
from vidpress.metrics.model_specs import PAPER_MODEL, LLMSpec, ModelSpec, VisionSpec, get_spec
from vidpress.presses import BasePress, InnerStage, press_name
from vidpress.presses.settings import make_press

CONVENTIONS = ("exact", "paper")
BUDGET_ROUNDINGS = ("global", "per_frame")
DECODE_TOKENS = 100
TEXT_TOKENS = 64


@dataclass(frozen=True)
class FlopsInputs:
    """Validated inputs of a FLOPs count, the press's as it counts them: ``press`` its short name
    ("none" without one), ``retention`` its own (1.0 without one), ``inner_keep`` the share of
    the stage-1 tokens kept from ``layer`` K on (None: no stage 1 or no inner stage)."""

    model: str
    convention: str
    press: str
    retention: float
    inner_keep: float | None
    layer: int | None
    frames: int
    tokens_per_frame: int
    text_tokens: int
    decode_tokens: int
    budget_rounding: str


@dataclass(frozen=True)
class TokenPlan:
    """Visual tokens through the LLM: ``outer_tokens`` in layers ``< short_from_layer``,
    ``inner_tokens`` from there on (``short_from_layer == layers`` when nothing is shortened)."""

    visual_tokens: int
    outer_tokens: int
    inner_tokens: int
    short_from_layer: int

    def per_layer(self, layers: int) -> list[int]:
        """Visual tokens in each of ``layers`` LLM layers."""
        return [
            self.outer_tokens if layer < self.short_from_layer else self.inner_tokens
            for layer in range(layers)
        ]


@dataclass(frozen=True)
class LayerFlops:
    """FLOPs of transformer layer work, split by component (summed over layers when added)."""

    q_proj: int = 0
    k_proj: int = 0
    v_proj: int = 0
    o_proj: int = 0
    attention: int = 0
    mlp: int = 0

    def __add__(self, other: LayerFlops) -> LayerFlops:
        return LayerFlops(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True)
class FlopsBreakdown:
    """FLOPs per component; ``total`` and ``tflops`` (total / 1e12) sum them."""

    inputs: FlopsInputs
    tokens: TokenPlan
    vision_tower: int
    projector: int
    compression: int
    prefill: LayerFlops
    decode: LayerFlops
    lm_head: int

    @property
    def total(self) -> int:
        return (
            self.vision_tower
            + self.projector
            + self.compression
            + self.prefill.total
            + self.decode.total
            + self.lm_head
        )

    @property
    def tflops(self) -> float:
        return self.total / 1e12

    def to_dict(self) -> dict:
        """JSON-ready: every field, the layer totals, ``total`` and ``tflops``."""
        out = asdict(self)
        out["prefill"]["total"] = self.prefill.total
        out["decode"]["total"] = self.decode.total
        out["total"] = self.total
        out["tflops"] = self.tflops
        return out


def resolve_inputs(
    spec: ModelSpec,
    press: BasePress | None,
    *,
    convention: str,
    frames: int | None,
    tokens_per_frame: int | None,
    text_tokens: int,
    decode_tokens: int,
    budget_rounding: str,
) -> FlopsInputs:
    """Validate the arguments of :func:`count_flops` and fill in the defaults.

    Raises ``ValueError`` naming the argument and the accepted values.
    """
    check_choice("convention", convention, CONVENTIONS)
    check_choice("budget_rounding", budget_rounding, BUDGET_ROUNDINGS)
    frames = spec.frames if frames is None else frames
    tokens_per_frame = spec.tokens_per_frame if tokens_per_frame is None else tokens_per_frame
    check_int("frames", frames, 1)
    check_int("tokens_per_frame", tokens_per_frame, 1)
    check_int("text_tokens", text_tokens, 0)
    check_int("decode_tokens", decode_tokens, 0)
    inner = None if press is None else press.inner_stage()
    return FlopsInputs(
        model=spec.name,
        convention=convention,
        press="none" if press is None else press_name(press),
        retention=1.0 if press is None else press.retention,
        inner_keep=None if inner is None or press.stage1 is None else inner.keep,
        layer=None if inner is None else inner.layer,
        frames=frames,
        tokens_per_frame=tokens_per_frame,
        text_tokens=0 if convention == "paper" else text_tokens,
        decode_tokens=decode_tokens,
        budget_rounding=budget_rounding,
    )


def plan_tokens(press: BasePress | None, inputs: FlopsInputs, layers: int) -> TokenPlan:
    """Visual tokens per layer under ``press`` (its ``plan``; see the module doc for the layer
    conventions)."""
    visual = inputs.frames * inputs.tokens_per_frame
    if press is None:
        return TokenPlan(visual, visual, visual, layers)
    per_frame = inputs.frames if inputs.budget_rounding == "per_frame" else None
    plan = press.plan(visual, layers, per_frame)
    if plan.inner_layer is None:
        return TokenPlan(visual, plan.outer_tokens, plan.outer_tokens, layers)
    first_short = plan.inner_layer + 1 if inputs.convention == "paper" else plan.inner_layer
    return TokenPlan(visual, plan.outer_tokens, plan.inner_tokens, first_short)


def paper_prefill_layer(llm: LLMSpec, tokens: int) -> LayerFlops:
    """FastV's ``4 n d^2 + 2 n^2 d + 2 n d m`` for one layer on ``n = tokens``."""
    d, n = llm.hidden, tokens
    proj = n * d * d
    return LayerFlops(proj, proj, proj, proj, attention=2 * n * n * d, mlp=2 * n * d * llm.mlp)


def paper_decode_layer(llm: LLMSpec, cached: int, steps: int) -> LayerFlops:
    """``sum_{i < steps} 4 d^2 + 2 (cached + i) d + 2 d m`` for one layer."""
    d = llm.hidden
    proj = steps * d * d
    keys = steps * cached + steps * (steps - 1) // 2
    return LayerFlops(proj, proj, proj, proj, attention=2 * keys * d, mlp=2 * steps * d * llm.mlp)


def exact_prefill_layer(llm: LLMSpec, tokens: int) -> LayerFlops:
    """One GQA layer with a gated MLP on ``S = tokens`` tokens, causal attention."""
    d, s = llm.hidden, tokens
    return LayerFlops(
        q_proj=2 * s * d * llm.q_dim,
        k_proj=2 * s * d * llm.kv_dim,
        v_proj=2 * s * d * llm.kv_dim,
        o_proj=2 * s * llm.q_dim * d,
        attention=2 * llm.q_dim * s * (s + 1),
        mlp=6 * s * d * llm.mlp,
    )


def exact_decode_layer(llm: LLMSpec, cached: int, steps: int) -> LayerFlops:
    """``steps`` decode steps of one layer; step ``i`` attends to ``cached + i + 1`` keys."""
    d = llm.hidden
    keys = steps * cached + steps * (steps + 1) // 2
    return LayerFlops(
        q_proj=2 * steps * d * llm.q_dim,
        k_proj=2 * steps * d * llm.kv_dim,
        v_proj=2 * steps * d * llm.kv_dim,
        o_proj=2 * steps * llm.q_dim * d,
        attention=4 * llm.q_dim * keys,
        mlp=6 * steps * d * llm.mlp,
    )


def frame_groups(vision: VisionSpec, frames: int) -> int:
    """Frame groups the ViT runs on (Qwen2.5-VL embeds 2 frames per temporal patch)."""
    return math.ceil(frames / vision.temporal_patch)


def _window_pairs(vision: VisionSpec) -> int:
    """Query-key pairs of one windowed layer on one group: ``sum_w |w|^2``.

    Windows tile the merged grid in blocks of ``window_patches / merge`` merged tokens per side
    (the last block of a row or column may be smaller), so the sum factorises over rows and columns.
    """
    merge = vision.spatial_merge
    merged_side, window_side = vision.grid // merge, vision.window_patches // merge
    sides = [window_side] * (merged_side // window_side)
    if merged_side % window_side:
        sides.append(merged_side % window_side)
    squares = sum(side * side for side in sides)
    return merge**4 * squares * squares


def vision_tower_flops(vision: VisionSpec, frames: int) -> int:
    """Patch embedding and every ViT layer, on every frame group (2 FLOPs per multiply-add)."""
    patches, width = vision.patches_per_group, vision.hidden
    pixels_per_patch = vision.channels * vision.temporal_patch * vision.patch_size**2
    per_group = 2 * vision.grid**2 * pixels_per_patch * width
    for layer in range(vision.layers):
        windowed = vision.window_patches is not None and layer not in vision.full_attention_layers
        pairs = _window_pairs(vision) if windowed else patches * patches
        per_group += 8 * patches * width * width + 4 * width * pairs
        per_group += 2 * vision.mlp_matrices * patches * width * vision.mlp
    return frame_groups(vision, frames) * per_group


def projector_flops(spec: ModelSpec, frames: int) -> int:
    """The projector's matrices on every projected token of every frame group."""
    tokens = frame_groups(spec.vision, frames) * spec.vision.projector_tokens_per_group
    return sum(2 * tokens * d_in * d_out for d_in, d_out in spec.projector)


def _vision_score_flops(vision: VisionSpec, frames: int) -> int:
    """Recomputing one ViT layer's q/k projections and QK^T for contribution scores."""
    patches, width = vision.patches_per_group, vision.hidden
    per_group = 4 * patches * width * width + 2 * patches * patches * width
    return frame_groups(vision, frames) * per_group


def _inner_stage_flops(llm: LLMSpec, inner: InnerStage, plan: TokenPlan, text_tokens: int) -> int:
    """The inner stage at layer K on ``S`` = the LLM's visual + text tokens: importance from the
    text rows of QK^T over the sequence and the text-visual cosine ("text_aware", Eq. 9) or from
    the last token's row ``2 S (H hd)`` ("last_token"), plus each dropped token's cosine to every
    kept one when it merges."""
    seq = plan.outer_tokens + text_tokens
    if inner.importance == "text_aware":
        importance = 2 * text_tokens * (seq * llm.q_dim + plan.outer_tokens * llm.hidden)
    else:
        importance = 2 * seq * llm.q_dim
    if inner.merge == "none":
        return importance
    return importance + 2 * (plan.outer_tokens - plan.inner_tokens) * plan.inner_tokens * llm.hidden


def compression_flops(
    spec: ModelSpec, press: BasePress | None, inputs: FlopsInputs, plan: TokenPlan
) -> int:
    """Estimated FLOPs of the press itself: the vision scores when stage 1 uses them (one ViT
    layer's q/k and QK^T per frame group), stage 1's matmuls (``press.stage1_flops``: the
    unified gate and clustering, VisionZip's contextual merging, FastVID's and HoliTom's frame
    similarity and density clustering) and the inner stage's (importance, merging). Indexing and
    pooling (uniform, framedrop, random) count 0."""
    if press is None:
        return 0
    total = press.stage1_flops(
        inputs.frames, inputs.tokens_per_frame, plan.outer_tokens, spec.llm.hidden
    )
    if "scores" in press.needs:
        total += _vision_score_flops(spec.vision, inputs.frames)
    inner = press.inner_stage()
    if inner is not None:
        total += _inner_stage_flops(spec.llm, inner, plan, inputs.text_tokens)
    return total


def _llm_flops(llm: LLMSpec, inputs: FlopsInputs, plan: TokenPlan) -> tuple[LayerFlops, LayerFlops]:
    """(prefill, decode) summed over the LLM's layers."""
    paper = inputs.convention == "paper"
    prefill_layer = paper_prefill_layer if paper else exact_prefill_layer
    decode_layer = paper_decode_layer if paper else exact_decode_layer
    prefill, decode = LayerFlops(), LayerFlops()
    for visual in plan.per_layer(llm.layers):
        seq = visual + inputs.text_tokens
        prefill += prefill_layer(llm, seq)
        decode += decode_layer(llm, seq, inputs.decode_tokens)
    return prefill, decode


def count_flops(
    model: str | ModelSpec = PAPER_MODEL,
    *,
    press: BasePress | str | None = None,
    frames: int | None = None,
    tokens_per_frame: int | None = None,
    convention: str = "exact",
    text_tokens: int = TEXT_TOKENS,
    decode_tokens: int = DECODE_TOKENS,
    budget_rounding: str = "global",
) -> FlopsBreakdown:
    """Analytic FLOPs of prefill plus ``decode_tokens`` decoded tokens (see the module doc).

    ``model``: a name in ``MODEL_SPECS``, a path to a local config.json (or its directory), or a
    :class:`ModelSpec`. ``press``: a press, a settings text (``"unified@2/1"``, ``"fastv@10"``:
    ``vidpress.presses.settings``) or None for the uncompressed model; its budgets and inner
    layer K are its own (``press.plan``). ``frames`` and ``tokens_per_frame`` default to the
    spec's. ``text_tokens`` (the prompt) is counted in ``exact`` only.
    """
    spec = get_spec(model)
    if isinstance(press, str):
        press = make_press(press)
    inputs = resolve_inputs(
        spec,
        press,
        convention=convention,
        frames=frames,
        tokens_per_frame=tokens_per_frame,
        text_tokens=text_tokens,
        decode_tokens=decode_tokens,
        budget_rounding=budget_rounding,
    )
    plan = plan_tokens(press, inputs, spec.llm.layers)
    prefill, decode = _llm_flops(spec.llm, inputs, plan)
    if convention == "paper":
        return FlopsBreakdown(inputs, plan, 0, 0, 0, prefill, decode, lm_head=0)
    return FlopsBreakdown(
        inputs,
        plan,
        vision_tower=vision_tower_flops(spec.vision, inputs.frames),
        projector=projector_flops(spec, inputs.frames),
        compression=compression_flops(spec, press, inputs, plan),
        prefill=prefill,
        decode=decode,
        lm_head=2 * spec.llm.hidden * spec.llm.vocab * (1 + decode_tokens),
    )
