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
FastV's formula; the paper calls them FLOPs. Budgets: ``B = round_half_up(r x T x N)``, the inner
stage keeps ``round_half_up(keep x B)``. FastV (layer K = 3) runs layers ``< K`` on all T x N tokens
and layers ``>= K`` on B. Inner merging "at layer K" (HoliTom, the paper's method, K = 18) is
counted as taking effect *after* layer K: layers ``0..K`` run on B tokens, layers ``> K`` on the
kept ones. This decode term and this layer count were fitted to all 25 FLOPs cells of Table 1
(13 distinct values); see ``tests/test_flops.py`` for the table. With the project's global budget
rounding every cell is within 4.8%. With ``budget_rounding="per_frame"`` (``T x round(r x N)``
tokens, e.g. 20 per frame at 10%, as per-frame methods keep them) every published FLOPs value
*and* every published ratio is reproduced exactly after rounding, which suggests the paper counted
its stage-1 methods that way.

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

Inner merging in ``exact`` follows the project's method (docs/method.md): layers ``< K`` run on B.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from vidpress.functional._checks import check_choice, check_int, check_ratio
from vidpress.functional.budgets import round_half_up, token_budget
from vidpress.metrics.model_specs import LLMSpec, ModelSpec, VisionSpec, get_spec

CONVENTIONS = ("exact", "paper")
BUDGET_ROUNDINGS = ("global", "per_frame")
PRESS_NAMES = (
    "none",
    "vanilla",
    "unified",
    "fastv",
    "visionzip",
    "fastvid",
    "uniform",
    "framedrop",
    "random",
    "holitom",
)
OUTER_ONLY_PRESSES = ("visionzip", "fastvid", "uniform", "framedrop", "random")
INNER_PRESSES = ("unified", "holitom")
DEFAULT_LAYER = {"fastv": 3, "unified": 18, "holitom": 18}
HOLITOM_INNER_KEEP = 0.5
UNIFIED_CLUSTER_RATIO = 0.3
VISIONZIP_CONTEXT_FRACTION = 10 / 64  # VisionZip's 54 dominant + 10 contextual tokens
DECODE_TOKENS = 100
TEXT_TOKENS = 64


@dataclass(frozen=True)
class FlopsInputs:
    """Validated inputs of a FLOPs count (``layer`` resolved to the press's default)."""

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


def _check_press_args(inputs: FlopsInputs, llm_layers: int) -> None:
    """Which of retention / inner_keep / layer each press takes."""
    press = inputs.press
    if press in ("none", "vanilla") and inputs.retention != 1:
        raise ValueError(f"retention must be 1 for press {press!r}, got {inputs.retention!r}")
    if inputs.inner_keep is not None and press not in INNER_PRESSES:
        raise ValueError(
            f"inner_keep applies only to presses {', '.join(INNER_PRESSES)}, not {press!r}"
        )
    if inputs.layer is None:
        return
    if press != "fastv" and inputs.inner_keep is None:
        raise ValueError(
            f"layer applies only to press 'fastv' and to presses with inner_keep "
            f"({', '.join(INNER_PRESSES)}), not {press!r} without inner_keep"
        )
    if not 1 <= inputs.layer < llm_layers:
        raise ValueError(f"layer must be in [1, {llm_layers - 1}], got {inputs.layer!r}")


def resolve_inputs(
    spec: ModelSpec,
    *,
    convention: str,
    press: str,
    retention: float,
    inner_keep: float | None,
    layer: int | None,
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
    check_choice("press", press, PRESS_NAMES)
    check_choice("budget_rounding", budget_rounding, BUDGET_ROUNDINGS)
    check_ratio("retention", retention)
    if inner_keep is not None:
        check_ratio("inner_keep", inner_keep)
    frames = spec.frames if frames is None else frames
    tokens_per_frame = spec.tokens_per_frame if tokens_per_frame is None else tokens_per_frame
    check_int("frames", frames, 1)
    check_int("tokens_per_frame", tokens_per_frame, 1)
    check_int("text_tokens", text_tokens, 0)
    check_int("decode_tokens", decode_tokens, 0)
    if press == "holitom" and inner_keep is None:
        inner_keep = HOLITOM_INNER_KEEP
    inputs = FlopsInputs(
        model=spec.name,
        convention=convention,
        press=press,
        retention=retention,
        inner_keep=inner_keep,
        layer=layer,
        frames=frames,
        tokens_per_frame=tokens_per_frame,
        text_tokens=0 if convention == "paper" else text_tokens,
        decode_tokens=decode_tokens,
        budget_rounding=budget_rounding,
    )
    _check_press_args(inputs, spec.llm.layers)
    if press == "fastv" or inputs.inner_keep is not None:
        return replace(inputs, layer=DEFAULT_LAYER[press] if layer is None else layer)
    return inputs


def plan_tokens(inputs: FlopsInputs, layers: int) -> TokenPlan:
    """Visual tokens per stage for a press (see the module doc for the layer conventions)."""
    visual = inputs.frames * inputs.tokens_per_frame
    if inputs.press in ("none", "vanilla"):
        return TokenPlan(visual, visual, visual, layers)
    if inputs.press == "fastv":
        return TokenPlan(
            visual, visual, token_budget(visual, retention=inputs.retention), inputs.layer
        )
    if inputs.budget_rounding == "per_frame":
        outer = inputs.frames * token_budget(inputs.tokens_per_frame, retention=inputs.retention)
    else:
        outer = token_budget(visual, retention=inputs.retention)
    if inputs.inner_keep is None:
        return TokenPlan(visual, outer, outer, layers)
    first_short = inputs.layer + 1 if inputs.convention == "paper" else inputs.layer
    return TokenPlan(visual, outer, token_budget(outer, retention=inputs.inner_keep), first_short)


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


def _inner_merge_flops(llm: LLMSpec, plan: TokenPlan, text_tokens: int) -> int:
    """Text-aware merging at layer K: text rows of QK^T over the sequence, text-visual cosine,
    and each dropped token's cosine to every kept one."""
    seq = plan.outer_tokens + text_tokens
    dropped = plan.outer_tokens - plan.inner_tokens
    return (
        2 * text_tokens * seq * llm.q_dim
        + 2 * text_tokens * plan.outer_tokens * llm.hidden
        + 2 * dropped * plan.inner_tokens * llm.hidden
    )


def compression_flops(spec: ModelSpec, inputs: FlopsInputs, plan: TokenPlan) -> int:
    """Estimated FLOPs of the press itself (``D`` = LLM hidden, ``N`` = visual tokens, ``B`` =
    outer budget, ``N_f`` = tokens per frame, ``T`` = frames):

    - unified: vision scores + gate ``2 N B_sel D`` (every candidate against the full pool, an
      upper bound) + DPC-KNN distances ``2 M^2 D`` on the recycle pool ``M = N - B_sel`` +
      assignment ``2 M B_clu D`` (``B_clu = round(0.3 B)``), plus inner merging if any;
    - visionzip: vision scores + contextual merging ``2 (N - B_dom) B_ctx D``;
    - fastvid: adjacent-frame similarity ``2 T N_f D`` + per-frame density clustering
      ``2 T N_f^2 D``; holitom: the same, plus inner merging;
    - fastv: the last token's attention row at layer K - 1, ``2 S (H hd)``;
    - none, uniform, framedrop, random: 0 (indexing and pooling only).
    """
    llm, press = spec.llm, inputs.press
    d, n, b = llm.hidden, plan.visual_tokens, plan.outer_tokens
    frames, n_f = inputs.frames, inputs.tokens_per_frame
    inner = 0
    if press in INNER_PRESSES and inputs.inner_keep is not None:
        inner = _inner_merge_flops(llm, plan, inputs.text_tokens)
    if press == "unified":
        b_clu = round_half_up(UNIFIED_CLUSTER_RATIO * b)
        b_sel = b - b_clu
        recycle = n - b_sel
        stage1 = 2 * n * b_sel * d + 2 * recycle * recycle * d + 2 * recycle * b_clu * d
        return _vision_score_flops(spec.vision, frames) + stage1 + inner
    if press == "visionzip":
        b_ctx = round_half_up(VISIONZIP_CONTEXT_FRACTION * b)
        merge = 2 * (n - (b - b_ctx)) * b_ctx * d
        return _vision_score_flops(spec.vision, frames) + merge
    if press in ("fastvid", "holitom"):
        return 2 * frames * n_f * d + 2 * frames * n_f * n_f * d + inner
    if press == "fastv":
        return 2 * (n + inputs.text_tokens) * llm.q_dim
    return 0


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
    model: str | ModelSpec = "llava-onevision-7b",
    *,
    press: str = "none",
    retention: float = 1.0,
    inner_keep: float | None = None,
    layer: int | None = None,
    frames: int | None = None,
    tokens_per_frame: int | None = None,
    convention: str = "exact",
    text_tokens: int = TEXT_TOKENS,
    decode_tokens: int = DECODE_TOKENS,
    budget_rounding: str = "global",
) -> FlopsBreakdown:
    """Analytic FLOPs of prefill plus ``decode_tokens`` decoded tokens (see the module doc).

    ``model``: a name in ``MODEL_SPECS``, a path to a local config.json (or its directory), or a
    :class:`ModelSpec`. ``retention``: the outer ratio (for ``fastv``: the fraction left from
    ``layer`` on). ``inner_keep``: the fraction of the outer budget kept from ``layer`` on
    (``unified``: optional; ``holitom``: default 0.5). ``layer``: K (fastv 3, unified/holitom 18).
    ``frames`` and ``tokens_per_frame`` default to the spec's. ``text_tokens`` (the prompt) is
    counted in ``exact`` only.
    """
    spec = get_spec(model)
    inputs = resolve_inputs(
        spec,
        convention=convention,
        press=press,
        retention=retention,
        inner_keep=inner_keep,
        layer=layer,
        frames=frames,
        tokens_per_frame=tokens_per_frame,
        text_tokens=text_tokens,
        decode_tokens=decode_tokens,
        budget_rounding=budget_rounding,
    )
    plan = plan_tokens(inputs, spec.llm.layers)
    prefill, decode = _llm_flops(spec.llm, inputs, plan)
    if convention == "paper":
        return FlopsBreakdown(inputs, plan, 0, 0, 0, prefill, decode, lm_head=0)
    return FlopsBreakdown(
        inputs,
        plan,
        vision_tower=vision_tower_flops(spec.vision, inputs.frames),
        projector=projector_flops(spec, inputs.frames),
        compression=compression_flops(spec, inputs, plan),
        prefill=prefill,
        decode=decode,
        lm_head=2 * spec.llm.hidden * spec.llm.vocab * (1 + decode_tokens),
    )
