"""Full-size Video-LLM architectures with random weights, for cost measurements, and tiny ones.

The cost of a forward pass does not depend on the weights' values, so a model built from the
published config sizes with random bf16 weights times like the real checkpoint (no download).

    model = build_architecture("llava-onevision-7b", device="cuda")
    inputs = video_prompt(model, frames=32)        # one video prompt, pixels in the model's dtype

Architectures (``ARCHITECTURES``):
- ``llava-onevision-7b``: SigLIP-so400m (26 layers, 384 px, 14 px patches, 27 x 27 patches,
  pooled 2 x 2 bilinear to 14 x 14 = 196 tokens per frame) + Qwen2-7B (28 layers, hidden 3584,
  28 heads / 4 KV heads, MLP 18944).
- ``qwen2.5-vl-7b``: 32-block ViT (hidden 1280, window attention, full attention at blocks
  7/15/23/31), 2 x 2 patch merger, 2-frame temporal patches, + the same 28-layer LLM with M-RoPE;
  448 x 448 frames give 16 x 16 = 256 tokens per 2 frames.
- ``llava-onevision-tiny``, ``qwen2.5-vl-tiny``: the same classes at toy sizes (20 decoder layers,
  so the default inner layer K = 18 exists) that run on a CPU in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)

from vidpress.metrics import model_specs as specs
from vidpress.metrics.model_specs import LLMSpec


def _text_sizes(spec: LLMSpec) -> dict:
    """transformers text-config sizes of an LLM spec (the published sizes live in model_specs)."""
    return dict(
        hidden_size=spec.hidden,
        intermediate_size=spec.mlp,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        rms_norm_eps=1e-6,
        max_position_embeddings=32768,
    )


QWEN2_7B = _text_sizes(specs.QWEN2_7B)
TINY_TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=20,
    num_attention_heads=4,
    num_key_value_heads=2,
)
FAMILIES = ("llava_onevision", "qwen2_5_vl")


def llava_onevision(tiny: bool):
    """(model class, config) of LLaVA-OV-7B: SigLIP-so400m (26 layers, 384 px, 14 px patches)
    + Qwen2-7B; ``tiny``: 2 vision layers of width 32 on 56 px frames, 20 decoder layers of 64."""
    siglip = specs.SIGLIP_SO400M_OV
    vision = dict(
        model_type="siglip_vision_model",
        hidden_size=siglip.hidden,
        intermediate_size=siglip.mlp,
        num_hidden_layers=siglip.layers,
        num_attention_heads=siglip.heads,
        image_size=siglip.image_size,
        patch_size=siglip.patch_size,
        vision_use_head=False,
    )
    text = dict(model_type="qwen2", vocab_size=152128, rope_theta=1e6, **QWEN2_7B)
    if tiny:
        vision.update(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2
        )
        vision.update(image_size=56, patch_size=4)
        text = dict(model_type="qwen2", vocab_size=152128, **TINY_TEXT)
    config = LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=151646,
        video_token_id=151647,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
    )
    return LlavaOnevisionForConditionalGeneration, config


def qwen2_5_vl(tiny: bool):
    """(model class, config) of Qwen2.5-VL-7B: 32-block ViT (window attention, full at
    7/15/23/31) + 28-layer LLM; ``tiny``: 2 blocks of width 32, 20 decoder layers of 64."""
    vit = specs.QWEN2_5_VL_VIT
    vision = dict(
        depth=vit.layers,
        hidden_size=vit.hidden,
        intermediate_size=vit.mlp,
        num_heads=vit.heads,
        out_hidden_size=specs.QWEN2_7B.hidden,
        patch_size=vit.patch_size,
        spatial_merge_size=2,
        temporal_patch_size=vit.temporal_patch,
        window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
        tokens_per_second=2,
    )
    rope = {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6}
    text = dict(vocab_size=152064, rope_parameters=rope, **QWEN2_7B)
    if tiny:
        vision.update(depth=2, hidden_size=32, intermediate_size=64, num_heads=2)
        vision.update(out_hidden_size=64, fullatt_block_indexes=[1])
        rope = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e6}
        text = dict(vocab_size=152064, rope_parameters=rope, **TINY_TEXT)
    config = Qwen2_5_VLConfig(
        vision_config=vision,
        text_config=dict(bos_token_id=151643, eos_token_id=151645, pad_token_id=151643, **text),
        image_token_id=151655,
        video_token_id=151656,
        vision_start_token_id=151652,
        vision_end_token_id=151653,
    )
    return Qwen2_5_VLForConditionalGeneration, config


def build(
    family: str, tiny: bool, device: str | torch.device, dtype: torch.dtype, attn: str = "sdpa"
):
    """A randomly initialised model of ``family`` ("llava_onevision" or "qwen2_5_vl") in eval
    mode, created directly on ``device`` in ``dtype`` with attention ``attn`` everywhere."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    cls, config = (llava_onevision if family == "llava_onevision" else qwen2_5_vl)(tiny)
    config._attn_implementation = attn
    for sub in (config.text_config, config.vision_config):
        sub._attn_implementation = attn
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = cls(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def frame_size(family: str, tiny: bool) -> int:
    """Default frame side in pixels: the vision tower's input size (Qwen: 448, 16 x 16 tokens)."""
    if family == "llava_onevision":
        return 56 if tiny else 384
    return 112 if tiny else 448


def prompts(family: str, model, frames: int, size: int, texts: list[tuple[int, int]], device):
    """A left-padded batch: one video per sample, text of (before, after) random tokens.

    LLaVA-OV: ``frames`` frames of ``size`` px (the tower's image size). Qwen2.5-VL: ``frames``
    frames (even) of ``size`` px (a multiple of 28), ``video_grid_thw`` and ``mm_token_type_ids``.
    Floating inputs are in the model's dtype, everything on ``device``.
    """
    g = torch.Generator().manual_seed(0)
    cfg = model.config
    dtype = model.dtype
    rows, pixels, grids = [], [], []

    def text(n: int) -> list[int]:
        return torch.randint(1000, 100000, (n,), generator=g).tolist()

    for before, after in texts:
        if family == "llava_onevision":
            side = -(-(cfg.vision_config.image_size // cfg.vision_config.patch_size) // 2)
            video = [cfg.video_token_id] * (frames * side * side + 1)
            pixels.append(torch.randn(1, frames, 3, size, size, generator=g))
        else:
            patch = cfg.vision_config.patch_size
            t, h = frames // 2, size // patch
            video = [cfg.vision_start_token_id] + [cfg.video_token_id] * (t * h * h // 4)
            video.append(cfg.vision_end_token_id)
            pixels.append(torch.randn(t * h * h, 3 * 2 * patch * patch, generator=g))
            grids.append([t, h, h])
        rows.append(text(before) + video + text(after))
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    inputs = {"input_ids": ids, "attention_mask": mask, "pixel_values_videos": torch.cat(pixels)}
    if family != "llava_onevision":
        inputs["video_grid_thw"] = torch.tensor(grids)
        inputs["mm_token_type_ids"] = (ids == cfg.video_token_id).int() * 2
    return {
        k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in inputs.items()
    }


@dataclass(frozen=True)
class Architecture:
    """A named architecture: its model family, size and default geometry."""

    name: str
    family: str
    tiny: bool
    description: str

    @property
    def frame_size(self) -> int:
        return frame_size(self.family, self.tiny)

    def tokens_per_frame(self, model) -> float:
        """Visual tokens per frame (Qwen2.5-VL: per frame, i.e. half a temporal patch)."""
        cfg = model.config.vision_config
        if self.family == "llava_onevision":
            side = -(-(cfg.image_size // cfg.patch_size) // 2)
            return side * side
        side = self.frame_size // cfg.patch_size // cfg.spatial_merge_size
        return side * side / cfg.temporal_patch_size


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("llava-onevision-7b", "llava_onevision", False, "SigLIP-so400m + Qwen2-7B"),
        Architecture("qwen2.5-vl-7b", "qwen2_5_vl", False, "Qwen2.5-VL ViT + 7B LLM"),
        Architecture("llava-onevision-tiny", "llava_onevision", True, "toy LLaVA-OV (CPU)"),
        Architecture("qwen2.5-vl-tiny", "qwen2_5_vl", True, "toy Qwen2.5-VL (CPU)"),
    )
}


def get_architecture(name: str) -> Architecture:
    """The architecture called ``name``, or a ValueError listing them."""
    if name not in ARCHITECTURES:
        raise ValueError(f"model must be one of {', '.join(ARCHITECTURES)}, got {name!r}")
    return ARCHITECTURES[name]


def build_architecture(
    name: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    attn: str = "sdpa",
):
    """The architecture ``name`` with random weights on ``device`` (default dtype: bf16 on a
    GPU, float32 on a CPU)."""
    arch = get_architecture(name)
    if dtype is None:
        dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    return build(arch.family, arch.tiny, device, dtype, attn)


def video_prompt(
    model,
    family: str,
    frames: int,
    size: int,
    text: tuple[int, int] = (14, 20),
    device: str | torch.device | None = None,
) -> dict:
    """Inputs of one prompt: ``text[0]`` random tokens, one video of ``frames`` frames,
    ``text[1]`` random tokens (the question after the video)."""
    device = model.device if device is None else device
    return prompts(family, model, frames, size, [text], device)
