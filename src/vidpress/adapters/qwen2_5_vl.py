"""Adapter for ``Qwen2_5_VLForConditionalGeneration``.

Video path of the stock model: 2-frame temporal patches -> ViT whose blocks see the patches in
window order (groups of 2x2 merge units) -> 2x2 patch merger -> tokens put back in (t, row, col)
order. ``video_grid_thw`` gives (t, h, w) in patches; a video has t x (h/2) x (w/2) tokens
between ``<|vision_start|>`` and ``<|vision_end|>``. Positions are M-RoPE (t, h, w) triples.

Scores: the qkv output and rotary embedding of the last ViT block (the one feeding the merger)
are recorded by hooks; the mean received attention is recomputed within the attention segments
that block used (frames for a full-attention block, windows otherwise), averaged over each 2x2
merge unit and put back in token order like the merger output.

``Qwen2_5_VLFamily``: its checkpoints, preprocessing (``qwen2_5_vl_inputs``), FLOPs spec, random
architectures and lmms-eval model.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
    apply_rotary_pos_emb,
    apply_rotary_pos_emb_vision,
)
from transformers.vision_utils import get_vision_window_index

from vidpress import functional as F
from vidpress.adapters.base import Prompt, Timer, VideoAdapter, VideoInput, video_blocks
from vidpress.adapters.family import Family
from vidpress.adapters.qwen2_5_vl_inputs import (
    SIZE,
    mm_token_types,
    prepare_video,
    qwen_num_frames,
    temporal_patch,
)


def received_in_segments(
    q: torch.Tensor, k: torch.Tensor, cu_seqlens: torch.Tensor
) -> torch.Tensor:
    """Mean received attention within each segment of a packed sequence.

    q, k: [S, H, d]; cu_seqlens: [segments + 1] boundaries. Segments of equal length are scored
    together. Returns [S] float32.
    """
    out = torch.empty(q.shape[0], dtype=torch.float32, device=q.device)
    starts = cu_seqlens[:-1].long()
    lengths = cu_seqlens.diff().long()
    for length in torch.unique(lengths).tolist():
        if length == 0:
            continue
        first = starts[lengths == length]
        index = first[:, None] + torch.arange(length, device=q.device)  # [n_seg, length]
        scores = F.received_attention(q[index].transpose(1, 2), k[index].transpose(1, 2))
        out[index] = scores
    return out


class Qwen2_5_VLAdapter(VideoAdapter):
    model_type = "qwen2_5_vl"
    model_class = "Qwen2_5_VLForConditionalGeneration"
    mrope = True
    vision_inputs = (
        "pixel_values_videos",
        "video_grid_thw",
        "second_per_grid_ts",
        "mm_token_type_ids",
        "image_grid_thw",
    )
    apply_rotary = staticmethod(apply_rotary_pos_emb)

    def prepare(self, kwargs: dict, mask: torch.Tensor, need: set[str], timer: Timer) -> Prompt:
        base = self.model.model
        visual = base.visual
        grid_thw = kwargs.get("video_grid_thw")
        if grid_thw is None:
            raise ValueError("video_grid_thw is required with pixel_values_videos")
        captured: dict = {}
        handles = []
        if need:
            last = visual.blocks[-1].attn
            handles = [
                last.register_forward_pre_hook(
                    lambda m, a, kw: captured.update(
                        cu=kw["cu_seqlens"], pe=kw["position_embeddings"]
                    ),
                    with_kwargs=True,
                ),
                last.qkv.register_forward_hook(lambda m, a, out: captured.__setitem__("qkv", out)),
            ]
        try:
            features = base.get_video_features(
                kwargs["pixel_values_videos"], grid_thw, return_dict=True
            ).pooler_output  # per video [t * h/2 * w/2, D]
        finally:
            for handle in handles:
                handle.remove()

        merge = visual.spatial_merge_size
        input_ids = kwargs["input_ids"]
        shapes = [(t, h // merge, w // merge) for t, h, w in grid_thw.tolist()]
        counts = [t * rows * cols for t, rows, cols in shapes]
        starts = video_blocks(input_ids, self.model.config.video_token_id, counts)
        embeds = base.get_input_embeddings()(input_ids)
        span = torch.zeros_like(input_ids, dtype=torch.bool)
        videos = []
        for (sample, first), (t, rows, cols), feats in zip(starts, shapes, features, strict=True):
            index = torch.arange(first, first + t * rows * cols, device=input_ids.device)
            embeds[sample, index] = feats.to(embeds.dtype)
            span[sample, index] = True
            videos.append(VideoInput(sample, index, feats.view(t, rows * cols, -1), (rows, cols)))

        if need:
            with timer:
                self._add_scores(videos, captured, grid_thw, need)
        return Prompt(embeds, videos, span, self._positions(kwargs, mask))

    @property
    def vision_tower(self) -> nn.Module:
        return self.model.model.visual

    @property
    def feature_output(self) -> nn.Module:
        return self.model.model.visual  # the ViT ends in the patch merger

    def naive_scores(self, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.vision_tower(
            inputs[self.video_input], grid_thw=inputs["video_grid_thw"], output_attentions=True
        )
        maps = out.attentions[-1] if out.attentions else None
        if not isinstance(maps, torch.Tensor) or maps.dim() < 3:
            raise RuntimeError(
                f"{type(self.vision_tower).__name__} returns no attention maps with "
                "output_attentions (its attention layers drop them), so the naive path does not "
                "exist here"
            )
        return out.pooler_output, maps.float().mean(dim=(-3, -2))

    def _add_scores(
        self, videos: list[VideoInput], captured: dict, grid_thw, need: set[str]
    ) -> None:
        visual = self.vision_tower
        attn = visual.blocks[-1].attn
        qkv = captured["qkv"]  # [S, 3 * C], window order
        q, k, _ = qkv.view(qkv.shape[0], 3, attn.num_heads, -1).unbind(1)  # [S, H, d]
        cos, sin = captured["pe"]
        q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
        unit = visual.spatial_merge_size**2
        window_index, _ = get_vision_window_index(
            grid_thw, visual.spatial_merge_size, visual.window_size, visual.patch_size
        )
        order = torch.argsort(window_index.to(q.device))
        scores = received_in_segments(q, k, captured["cu"]).view(-1, unit).mean(dim=1)[order]
        keys = None
        if "keys" in need:
            keys = k.mean(dim=1).view(-1, unit, k.shape[-1]).mean(dim=1)[order]  # [S / 4, d]
        start = 0
        for video in videos:
            t, n = video.tokens.shape[:2]
            part = slice(start, start + t * n)
            video.scores = scores[part].view(t, n)
            video.keys = None if keys is None else keys[part].view(t, n, -1)
            start += t * n

    def _positions(self, kwargs: dict, mask: torch.Tensor) -> torch.Tensor:
        """[3, B, L] M-RoPE positions of the uncompressed prompt (the caller's or the model's)."""
        given = kwargs.get("position_ids")
        if given is not None:
            if given.dim() == 3:
                return given[-3:]
            return given[None].expand(3, mask.shape[0], -1)
        input_ids = kwargs["input_ids"]
        types = kwargs.get("mm_token_type_ids")
        if types is None:
            cfg = self.model.config
            types = (input_ids == cfg.image_token_id).int() + 2 * (
                input_ids == cfg.video_token_id
            ).int()
        positions, _ = self.model.model.get_rope_index(
            input_ids,
            mm_token_type_ids=types,
            video_grid_thw=kwargs["video_grid_thw"],
            second_per_grid_ts=kwargs.get("second_per_grid_ts"),
            attention_mask=mask,
        )
        return positions

    def save_state(self) -> dict:
        return {"rope_deltas": self.model.model.rope_deltas}

    def restore_state(self, state: dict) -> None:
        self.model.model.rope_deltas = state["rope_deltas"]


class Qwen2_5_VLFamily(Family):
    """Qwen2.5-VL: frames sampled by fps, windowed ViT, patch merger, M-RoPE."""

    name = "qwen2_5_vl"
    adapter = Qwen2_5_VLAdapter
    description = "Qwen2.5-VL (Qwen2_5_VLForConditionalGeneration, model_type 'qwen2_5_vl')"
    video_processor = "Qwen2VLVideoProcessor"
    lmms_eval_model = "vidpress_qwen2_5_vl"
    architectures = {
        "qwen2.5-vl-7b": (False, "Qwen2.5-VL ViT + 7B LLM"),
        "qwen2.5-vl-tiny": (True, "toy Qwen2.5-VL (CPU)"),
    }

    def stock_processor_kwargs(self, video_config: dict) -> dict:
        # A fresh size dict: transformers 5.17's Qwen2VLVideoProcessor writes min_pixels/max_pixels
        # into its class default when given none, which the next checkpoint would inherit.
        return {"size": dict(video_config.get("size") or SIZE)}

    def temporal_patch(self, video_config: dict) -> int:
        return temporal_patch(video_config)

    def sample_count(self, video_config: dict, info, num_frames, fps):
        return qwen_num_frames(info, video_config, num_frames, fps), []

    def prepare(self, loaded, info, question, count, max_pixels):
        return prepare_video(loaded, info, question, count, max_pixels)

    def flops_spec(self, config, name: str):
        """Windowed ViT + patch merger; frames assumed 448 x 448 (see ``metrics.model_specs``)."""
        from vidpress.metrics import model_specs as specs

        vcfg = config.vision_config
        vision = specs.VisionSpec(
            layers=vcfg.depth,
            hidden=vcfg.hidden_size,
            heads=vcfg.num_heads,
            mlp=vcfg.intermediate_size,
            patch_size=vcfg.patch_size,
            image_size=specs.QWEN2_5_VL_VIT.image_size,
            mlp_matrices=3,
            channels=vcfg.in_channels,
            temporal_patch=vcfg.temporal_patch_size,
            spatial_merge=vcfg.spatial_merge_size,
            window_patches=vcfg.window_size // vcfg.patch_size,
            full_attention_layers=tuple(vcfg.fullatt_block_indexes),
        )
        tokens_per_group = vision.projector_tokens_per_group
        return specs.ModelSpec(
            name=name,
            llm=specs.llm_from_text_config(config.text_config),
            vision=vision,
            projector=specs.merger_projector(vision, vcfg.out_hidden_size),
            frames=32,
            tokens_per_frame=tokens_per_group // vision.temporal_patch,
        )

    def random_config(self, tiny: bool):
        """Qwen2.5-VL-7B: 32-block ViT (window attention, full at 7/15/23/31) + 28-layer LLM;
        ``tiny``: 2 blocks of width 32, 20 decoder layers of 64."""
        from transformers import Qwen2_5_VLConfig

        from vidpress.metrics import model_specs as specs

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
        text = dict(
            vocab_size=152064, rope_parameters=rope, **specs.text_config_sizes(specs.QWEN2_7B)
        )
        if tiny:
            vision.update(depth=2, hidden_size=32, intermediate_size=64, num_heads=2)
            vision.update(out_hidden_size=64, fullatt_block_indexes=[1])
            rope = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e6}
            text = dict(vocab_size=152064, rope_parameters=rope, **specs.TINY_TEXT_SIZES)
        return Qwen2_5_VLConfig(
            vision_config=vision,
            text_config=dict(bos_token_id=151643, eos_token_id=151645, pad_token_id=151643, **text),
            image_token_id=151655,
            video_token_id=151656,
            vision_start_token_id=151652,
            vision_end_token_id=151653,
        )

    def frame_size(self, tiny: bool) -> int:
        return 112 if tiny else 448  # 448: 16 x 16 tokens per 2 frames

    def random_video(self, config, frames: int, size: int, generator: torch.Generator):
        """``frames`` frames (a multiple of the temporal patch) of ``size`` px (a multiple of the
        patch times the spatial merge)."""
        cfg = config.vision_config
        t, h = frames // cfg.temporal_patch_size, size // cfg.patch_size
        tokens = t * h * h // cfg.spatial_merge_size**2
        video = [config.vision_start_token_id, *[config.video_token_id] * tokens]
        video.append(config.vision_end_token_id)
        pixel = cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size**2
        return video, torch.randn(t * h * h, pixel, generator=generator), [t, h, h]

    def video_inputs(self, config, ids: torch.Tensor, pixels: list, grids: list) -> dict:
        return {
            "pixel_values_videos": torch.cat(pixels),
            "video_grid_thw": torch.tensor(grids),
            "mm_token_type_ids": mm_token_types(ids, config),
        }
