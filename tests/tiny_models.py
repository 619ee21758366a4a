"""Tiny randomly initialised Video-LLMs built in-process from configs, and prompts for them.

LLaVA-OneVision: SigLIP (or DINOv2, which has a CLS token) 28 px / 4 px patches -> 7x7 grid,
pooled to 4x4 = 16 tokens per frame, + Qwen2 text model (4 layers, GQA).
Qwen2.5-VL: ViT 4 px patches, 2x2 merge, 2-frame temporal patches, last block full attention.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)

LAYERS = 4
PAD = 0
TEXT = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=LAYERS,
    num_attention_heads=4,
    num_key_value_heads=2,
)

# LLaVA-OV token ids and geometry
OV_VIDEO, OV_IMAGE = 101, 100
OV_SIZE, OV_PATCH = 28, 4
OV_PER_FRAME = 16  # ceil(7 / 2) ** 2

# Qwen2.5-VL token ids and geometry
QW_IMAGE, QW_VIDEO, QW_START, QW_END = 150, 151, 152, 153
QW_PATCH = 4


def llava_onevision(
    attn: str = "sdpa", vision: str = "siglip", seed: int = 0, text: str = "qwen2", layer=-1
):
    """A tiny LlavaOnevisionForConditionalGeneration (vision "siglip" or "dinov2", text "qwen2"
    or "llama", the testbed's combination; ``layer``: its ``vision_feature_layer``)."""
    if vision == "siglip":
        vision_config = dict(model_type="siglip_vision_model", num_hidden_layers=2)
        strategy = "full"
    else:
        vision_config = dict(model_type="dinov2", num_hidden_layers=2, mlp_ratio=2)
        strategy = "default"
    vision_config.update(
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=2,
        image_size=OV_SIZE,
        patch_size=OV_PATCH,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision_config,
        text_config=dict(model_type=text, vocab_size=128, **TEXT),
        image_token_id=OV_IMAGE,
        video_token_id=OV_VIDEO,
        vision_feature_layer=layer,
        vision_feature_select_strategy=strategy,
    )
    config._attn_implementation = attn
    config.text_config._attn_implementation = attn
    config.vision_config._attn_implementation = attn
    torch.manual_seed(seed)
    return LlavaOnevisionForConditionalGeneration(config).eval()


def qwen2_5_vl(attn: str = "sdpa", seed: int = 0, full_attention_blocks: tuple = (1,)):
    """A tiny Qwen2_5_VLForConditionalGeneration (last ViT block full attention by default)."""
    config = Qwen2_5_VLConfig(
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=32,
            patch_size=QW_PATCH,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=16,
            fullatt_block_indexes=list(full_attention_blocks),
            tokens_per_second=2,
        ),
        text_config=dict(
            vocab_size=160,
            rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 1e4},
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=PAD,
            **TEXT,
        ),
        image_token_id=QW_IMAGE,
        video_token_id=QW_VIDEO,
        vision_start_token_id=QW_START,
        vision_end_token_id=QW_END,
    )
    config._attn_implementation = attn
    config.text_config._attn_implementation = attn
    config.vision_config._attn_implementation = attn
    torch.manual_seed(seed)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def _text(generator: torch.Generator, n: int, high: int) -> list[int]:
    return torch.randint(3, high, (n,), generator=generator).tolist()


def left_pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists: (input_ids [B, L], attention_mask [B, L])."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    return ids, mask


def ov_prompt(frames: int = 4, before: int = 3, after: int = 5, seed: int = 0) -> dict:
    """One LLaVA-OV video prompt: text, F x 16 + 1 video placeholders, text."""
    g = torch.Generator().manual_seed(seed)
    ids = _text(g, before, 99) + [OV_VIDEO] * (frames * OV_PER_FRAME + 1) + _text(g, after, 99)
    pixels = torch.randn(1, frames, 3, OV_SIZE, OV_SIZE, generator=g)
    return {"ids": ids, "pixel_values_videos": pixels}


def ov_batch(prompts: list[dict]) -> dict:
    """Model inputs for a left-padded batch of LLaVA-OV prompts (same frame count)."""
    ids, mask = left_pad([p["ids"] for p in prompts])
    pixels = torch.cat([p["pixel_values_videos"] for p in prompts])
    return {"input_ids": ids, "attention_mask": mask, "pixel_values_videos": pixels}


def qwen_prompt(
    frames: int = 4, height: int = 8, width: int = 8, before: int = 3, after: int = 5, seed: int = 0
) -> dict:
    """One Qwen2.5-VL video prompt; height/width in patches (even), frames even."""
    g = torch.Generator().manual_seed(seed)
    t = frames // 2
    count = t * height * width // 4
    ids = _text(g, before, 140) + [QW_START] + [QW_VIDEO] * count + [QW_END] + _text(g, after, 140)
    pixels = torch.randn(t * height * width, 3 * 2 * QW_PATCH * QW_PATCH, generator=g)
    return {"ids": ids, "pixel_values_videos": pixels, "grid": [t, height, width]}


def qwen_batch(prompts: list[dict]) -> dict:
    """Model inputs for a left-padded batch of Qwen2.5-VL prompts (any video sizes)."""
    ids, mask = left_pad([p["ids"] for p in prompts])
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "pixel_values_videos": torch.cat([p["pixel_values_videos"] for p in prompts]),
        "video_grid_thw": torch.tensor([p["grid"] for p in prompts]),
        "mm_token_type_ids": (ids == QW_VIDEO).int() * 2,
    }


# ---------------------------------------------------------------- presses and runs for the tests
INNER_LAYER = 2
SPECIAL = 100  # ids >= this (placeholders, vision markers) are never generated in the tests


def tiny_press(name: str, identity: bool = False):
    """A press of ``vidpress.PRESSES[name]`` sized for the tiny models: the grid cell 25/12.5
    (``grid_settings``; FastV 100/25) with K = INNER_LAYER.

    ``identity``: the cell 100 (retention 1.0, the inner stage off; FastV keeps every token).
    """
    from vidpress.presses.settings import grid_settings, make_press

    settings = grid_settings(name, "100" if identity else "25/12.5")
    return make_press(settings, layers=INNER_LAYER + 1)  # K: the last of INNER_LAYER + 1 layers


def ov_prompts() -> list[dict]:
    """Three LLaVA-OV prompts of different lengths."""
    shapes = [(3, 5), (7, 2), (1, 9)]
    return [ov_prompt(before=b, after=a, seed=i) for i, (b, a) in enumerate(shapes)]


def qwen_prompts() -> list[dict]:
    """Three Qwen2.5-VL prompts of different lengths and video sizes."""
    shapes = [(4, 8, 8, 3, 5), (6, 8, 8, 7, 2), (2, 8, 12, 1, 9)]
    return [
        qwen_prompt(frames=f, height=h, width=w, before=b, after=a, seed=i)
        for i, (f, h, w, b, a) in enumerate(shapes)
    ]


@dataclass(frozen=True)
class TinyFamily:
    """A family's tiny model (``model(attn)``), three prompts and their batching."""

    model: Callable
    prompts: Callable[[], list[dict]]
    batch: Callable[[list[dict]], dict]


#: one tiny model per family of ``vidpress.adapters.registry.MODEL_TYPES`` (checked by
#: ``test_presses_models``); the tests parametrized over it run every press on each
TINY_FAMILIES = {
    "llava_onevision": TinyFamily(llava_onevision, ov_prompts, ov_batch),
    "qwen2_5_vl": TinyFamily(qwen2_5_vl, qwen_prompts, qwen_batch),
}


def family_model(family: str, attn: str = "sdpa"):
    return TINY_FAMILIES[family].model(attn)


def family_prompts(family: str) -> list[dict]:
    """Three prompts of different lengths (Qwen: different video sizes too)."""
    return TINY_FAMILIES[family].prompts()


def family_batch(family: str, prompts: list[dict]) -> dict:
    return TINY_FAMILIES[family].batch(prompts)


def greedy(model, inputs: dict, steps: int = 20):
    """generate() with the KV cache: (new tokens [B, steps], raw logits [B, steps, V], cache)."""
    out = model.generate(
        **inputs,
        max_new_tokens=steps,
        do_sample=False,
        eos_token_id=None,
        suppress_tokens=list(range(SPECIAL, model.config.text_config.vocab_size)),
        return_dict_in_generate=True,
        output_logits=True,
    )
    return out.sequences[:, -steps:], torch.stack(out.logits, dim=1), out.past_key_values


def greedy_without_cache(model, inputs: dict, steps: int = 20):
    """The same decoding by full recomputation of the prompt each step: (tokens, logits)."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    tokens, logits = [], []
    for _ in range(steps):
        step = dict(inputs, input_ids=ids, attention_mask=mask, use_cache=False)
        if "mm_token_type_ids" in inputs:
            step["mm_token_type_ids"] = (ids == QW_VIDEO).int() * 2
        last = model(**step).logits[:, -1]
        nxt = last[:, :SPECIAL].argmax(dim=-1, keepdim=True)
        tokens.append(nxt)
        logits.append(last)
        ids = torch.cat([ids, nxt], dim=1)
        mask = torch.cat([mask, torch.ones_like(nxt)], dim=1)
    return torch.cat(tokens, dim=1), torch.stack(logits, dim=1)
