"""Full-size Video-LLM architectures with random weights, for cost measurements, and tiny ones.

The cost of a forward pass does not depend on the weights' values, so a model built from the
published config sizes with random bf16 weights times like the real checkpoint (no download).

    model = build_architecture("llava-onevision-7b", device="cuda")
    inputs = video_prompt(model, frames=32)        # one video prompt, pixels in the model's dtype

Architectures (``ARCHITECTURES``: every family's ``Family.architectures``, built from its
``random_config``):
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

from vidpress.adapters.registry import FAMILIES, get_family


def build(
    family: str, tiny: bool, device: str | torch.device, dtype: torch.dtype, attn: str = "sdpa"
):
    """A randomly initialised model of ``family`` (its ``Family.random_config``) in eval mode,
    created directly on ``device`` in ``dtype`` with attention ``attn`` everywhere."""
    import transformers

    family_ = get_family(family)
    config = family_.random_config(tiny)
    cls = getattr(transformers, family_.model_class)
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
    """Default frame side in pixels of the family's random architecture."""
    return get_family(family).frame_size(tiny)


def prompts(family: str, model, frames: int, size: int, texts: list[tuple[int, int]], device):
    """A left-padded batch: one video per sample, text of (before, after) random tokens.

    Each video is the family's ``random_video`` of ``frames`` frames of ``size`` px (LLaVA-OV: the
    tower's image size; Qwen2.5-VL: even frames, a multiple of 28 px). Floating inputs are in the
    model's dtype, everything on ``device``.
    """
    family_ = get_family(family)
    g = torch.Generator().manual_seed(0)
    cfg = model.config
    dtype = model.dtype
    rows, pixels, grids = [], [], []

    def text(n: int) -> list[int]:
        return torch.randint(1000, 100000, (n,), generator=g).tolist()

    for before, after in texts:
        video, video_pixels, grid = family_.random_video(cfg, frames, size, g)
        pixels.append(video_pixels)
        grids.append(grid)
        rows.append(text(before) + video + text(after))
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    inputs = {"input_ids": ids, "attention_mask": mask}
    inputs.update(family_.video_inputs(cfg, ids, pixels, grids))
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


#: every family's ``architectures``, by name: the full-size ones first
ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in sorted(
        (
            Architecture(name, family.name, tiny, description)
            for family in FAMILIES.values()
            for name, (tiny, description) in family.architectures.items()
        ),
        key=lambda a: a.tiny,
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
