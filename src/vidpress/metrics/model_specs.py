"""Architecture sizes of Video-LLMs, as far as FLOPs accounting needs them.

A :class:`ModelSpec` holds the LLM (:class:`LLMSpec`), the vision tower (:class:`VisionSpec`),
the projector's matrices and the default video sampling (frames, visual tokens per frame).
``MODEL_SPECS`` has the built-in published models; :func:`spec_from_config` reads any local
transformers ``config.json`` of a supported family.

Facts checked against transformers 5.17 (configuration and modeling files) and the published
``llava-hf`` / ``Qwen`` configs:

- LLaVA-OneVision runs SigLIP-so400m-patch14-384 (27 layers) *without its last layer*: the original
  selects layer -2 and the HF checkpoints store ``num_hidden_layers: 26`` with
  ``vision_feature_layer: -1``. So 26 ViT layers run, on 27 x 27 = 729 patches per frame (no CLS).
  The projector (linear vision_hidden -> d, GELU, linear d -> d) runs on all 729 patches; then
  2 x 2 bilinear pooling gives ceil(27/2)^2 = 196 tokens per frame. LLaVA-Video pools 2 x 2 by
  averaging to floor(27/2)^2 = 169.
- Qwen2.5-VL's ViT (32 layers, hidden 1280, 16 heads, gated SiLU MLP 3420) embeds 2 frames x 14 x
  14 pixels per patch (Conv3d), attends inside windows of 112 x 112 pixels (8 x 8 patches) except in
  the full-attention layers 7, 15, 23, 31, where each temporal group (2 frames) attends to itself.
  The merger (LayerNorm, linear 4*1280 -> 4*1280, GELU, linear 4*1280 -> 3584) runs on 2 x 2
  merged patches. The frame size is not fixed by the model; the built-in spec assumes 448 x 448
  pixels (32 x 32 patches, 256 merged tokens per 2 frames, i.e. 128 tokens per frame).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LLMSpec:
    """A decoder-only LLM with grouped-query attention and a gated (SwiGLU) MLP."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    mlp: int
    vocab: int

    @property
    def q_dim(self) -> int:
        """Width of the query (and attention output) projection: heads x head_dim."""
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of each of the key and value projections: kv_heads x head_dim."""
        return self.kv_heads * self.head_dim


@dataclass(frozen=True)
class VisionSpec:
    """A ViT vision tower run on every sampled frame (or group of ``temporal_patch`` frames).

    ``window_patches`` is the side of an attention window in patches (None: full attention in
    every layer); ``full_attention_layers`` lists the layers that attend over the whole group
    anyway. ``mlp_matrices`` is 2 for a plain MLP (fc1, fc2), 3 for a gated one.
    """

    layers: int
    hidden: int
    heads: int
    mlp: int
    patch_size: int
    image_size: int
    mlp_matrices: int = 2
    channels: int = 3
    temporal_patch: int = 1
    spatial_merge: int = 1
    class_token: bool = False
    window_patches: int | None = None
    full_attention_layers: tuple[int, ...] = ()

    @property
    def grid(self) -> int:
        """Patches along one side of a frame."""
        return self.image_size // self.patch_size

    @property
    def patches_per_group(self) -> int:
        """Tokens the ViT runs on per frame group (patch grid, plus the CLS token if any)."""
        return self.grid**2 + int(self.class_token)

    @property
    def projector_tokens_per_group(self) -> int:
        """Tokens the projector runs on per frame group (the grid after the spatial merge)."""
        return self.grid**2 // self.spatial_merge**2


@dataclass(frozen=True)
class ModelSpec:
    """A Video-LLM: LLM, vision tower, projector matrices (in, out) and default sampling."""

    name: str
    llm: LLMSpec
    vision: VisionSpec
    projector: tuple[tuple[int, int], ...]
    frames: int
    tokens_per_frame: int


QWEN2_7B = LLMSpec(
    layers=28, hidden=3584, heads=28, kv_heads=4, head_dim=128, mlp=18944, vocab=152064
)
QWEN2_05B = LLMSpec(
    layers=24, hidden=896, heads=14, kv_heads=2, head_dim=64, mlp=4864, vocab=151936
)
SIGLIP_SO400M_OV = VisionSpec(
    layers=26, hidden=1152, heads=16, mlp=4304, patch_size=14, image_size=384
)
QWEN2_5_VL_VIT = VisionSpec(
    layers=32,
    hidden=1280,
    heads=16,
    mlp=3420,
    patch_size=14,
    image_size=448,
    mlp_matrices=3,
    temporal_patch=2,
    spatial_merge=2,
    window_patches=8,
    full_attention_layers=(7, 15, 23, 31),
)


def llava_projector(vision_hidden: int, hidden: int) -> tuple[tuple[int, int], ...]:
    """LLaVA's 2-layer MLP projector: vision_hidden -> d -> d."""
    return ((vision_hidden, hidden), (hidden, hidden))


def merger_projector(vision: VisionSpec, out_hidden: int) -> tuple[tuple[int, int], ...]:
    """Qwen2.5-VL's patch merger: (merge^2 x hidden) -> same -> out_hidden."""
    merged = vision.hidden * vision.spatial_merge**2
    return ((merged, merged), (merged, out_hidden))


def text_config_sizes(spec: LLMSpec) -> dict:
    """transformers text-config sizes of an LLM spec (for the random architectures)."""
    return dict(
        hidden_size=spec.hidden,
        intermediate_size=spec.mlp,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        rms_norm_eps=1e-6,
        max_position_embeddings=32768,
    )


#: text-config sizes of the tiny random architectures (20 layers: the default inner layer 18 exists)
TINY_TEXT_SIZES = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=20,
    num_attention_heads=4,
    num_key_value_heads=2,
)


#: the paper's main model: the default of ``vidpress flops`` and ``bench``, and the bars' model
PAPER_MODEL = "llava-onevision-7b"

MODEL_SPECS: dict[str, ModelSpec] = {
    "llava-onevision-7b": ModelSpec(
        name="llava-onevision-7b",
        llm=QWEN2_7B,
        vision=SIGLIP_SO400M_OV,
        projector=llava_projector(1152, 3584),
        frames=32,
        tokens_per_frame=196,
    ),
    "llava-onevision-0.5b": ModelSpec(
        name="llava-onevision-0.5b",
        llm=QWEN2_05B,
        vision=SIGLIP_SO400M_OV,
        projector=llava_projector(1152, 896),
        frames=32,
        tokens_per_frame=196,
    ),
    "llava-video-7b": ModelSpec(
        name="llava-video-7b",
        llm=QWEN2_7B,
        vision=SIGLIP_SO400M_OV,
        projector=llava_projector(1152, 3584),
        frames=64,
        tokens_per_frame=169,
    ),
    "qwen2.5-vl-7b": ModelSpec(
        name="qwen2.5-vl-7b",
        llm=QWEN2_7B,
        vision=QWEN2_5_VL_VIT,
        projector=merger_projector(QWEN2_5_VL_VIT, 3584),
        frames=32,
        tokens_per_frame=128,
    ),
}

#: LLaVA-style model types :func:`spec_from_config` reads besides the families': tokens per
#: frame from the g x g patch grid
LLAVA_STYLE_POOLING = {
    "llava_next_video": lambda config, grid: (grid // config.spatial_pool_stride) ** 2,
    "llava": lambda config, grid: grid**2,
}


def supported_model_types() -> tuple[str, ...]:
    """model_type values :func:`spec_from_config` understands (the families', LLaVA-style)."""
    from vidpress.adapters.registry import MODEL_TYPES

    return (*MODEL_TYPES, *LLAVA_STYLE_POOLING)


def get_spec(model: str | ModelSpec) -> ModelSpec:
    """A built-in spec by name, a spec read from a local config path, or ``model`` itself."""
    if isinstance(model, ModelSpec):
        return model
    if model in MODEL_SPECS:
        return MODEL_SPECS[model]
    if Path(model).exists():
        return spec_from_config(model)
    raise ValueError(
        f"model must be one of {', '.join(MODEL_SPECS)} or a path to a config.json "
        f"(or its directory), got {model!r}"
    )


def _load_config(path_or_config: Any) -> tuple[Any, str]:
    """(transformers config, display name) from a path (file or directory), dict or config."""
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(path_or_config, PretrainedConfig):
        config = path_or_config
        name = config.name_or_path or config.model_type
    else:
        if isinstance(path_or_config, dict):
            raw, name = dict(path_or_config), ""
        else:
            path = Path(path_or_config)
            if path.is_dir():
                path = path / "config.json"
            if not path.is_file():
                raise ValueError(f"model config path {str(path)!r} is not a config.json file")
            try:
                raw = json.loads(path.read_text())
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ValueError(f"invalid JSON in {path}: {err}") from err
            if not isinstance(raw, dict):
                raise ValueError(f"invalid {path}: a JSON object expected")
            name = str(path.parent)
        model_type = raw.pop("model_type", None)
        _check_model_type(model_type)
        config = AutoConfig.for_model(model_type, **raw)
        name = name or model_type
    _check_model_type(config.model_type)
    return config, name


def _check_model_type(model_type: str | None) -> None:
    if model_type not in supported_model_types():
        raise ValueError(
            f"config model_type must be one of {', '.join(supported_model_types())}, "
            f"got {model_type!r}"
        )


def llm_from_text_config(text: Any) -> LLMSpec:
    """The LLM spec of a transformers text config."""
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return LLMSpec(
        layers=text.num_hidden_layers,
        hidden=text.hidden_size,
        heads=text.num_attention_heads,
        kv_heads=text.num_key_value_heads or text.num_attention_heads,
        head_dim=head_dim,
        mlp=text.intermediate_size,
        vocab=text.vocab_size,
    )


def llava_style_spec(config: Any, name: str, tokens_per_frame) -> ModelSpec:
    """LLaVA-style: ViT (CLIP or SigLIP) + 2-layer projector; ``tokens_per_frame(grid)`` gives
    the tokens per frame after the family's pooling of the g x g patch grid; 32 frames."""
    vcfg = config.vision_config
    vision = VisionSpec(
        layers=vcfg.num_hidden_layers,
        hidden=vcfg.hidden_size,
        heads=vcfg.num_attention_heads,
        mlp=vcfg.intermediate_size,
        patch_size=vcfg.patch_size,
        image_size=vcfg.image_size,
        class_token=vcfg.model_type.startswith("clip"),
    )
    llm = llm_from_text_config(config.text_config)
    return ModelSpec(
        name=name,
        llm=llm,
        vision=vision,
        projector=llava_projector(vision.hidden, llm.hidden),
        frames=32,
        tokens_per_frame=tokens_per_frame(vision.grid),
    )


def spec_from_config(path_or_config: Any) -> ModelSpec:
    """Read a transformers config (path to config.json or its directory, dict, or config object).

    Supported ``model_type``: the families' (``adapters.registry``; each family's ``flops_spec``,
    e.g. OneVision: ceil(grid/2)^2 tokens per frame, Qwen2.5-VL at 448 x 448: 128) and the
    LLaVA-style ``llava_next_video`` ((grid // spatial_pool_stride)^2) and ``llava`` (grid^2),
    text_config + vision_config. Default: 32 frames. Override them in
    :func:`~vidpress.metrics.count_flops`.
    """
    from vidpress.adapters.registry import MODEL_TYPES

    config, name = _load_config(path_or_config)
    if config.model_type in MODEL_TYPES:
        return MODEL_TYPES[config.model_type].flops_spec(config, name)
    pooling = LLAVA_STYLE_POOLING[config.model_type]
    return llava_style_spec(config, name, lambda grid: pooling(config, grid))
