"""Adapter for ``Qwen2_5_VLForConditionalGeneration``.

Video path of the stock model: 2-frame temporal patches -> ViT whose blocks see the patches in
window order (groups of 2x2 merge units) -> 2x2 patch merger -> tokens put back in (t, row, col)
order. ``video_grid_thw`` gives (t, h, w) in patches; a video has t x (h/2) x (w/2) tokens
between ``<|vision_start|>`` and ``<|vision_end|>``. Positions are M-RoPE (t, h, w) triples.

Scores: the qkv output and rotary embedding of the last ViT block (the one feeding the merger)
are recorded by hooks; the mean received attention is recomputed within the attention segments
that block used (frames for a full-attention block, windows otherwise), averaged over each 2x2
merge unit and put back in token order like the merger output.
"""

from __future__ import annotations

import torch
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
    apply_rotary_pos_emb,
    apply_rotary_pos_emb_vision,
)
from transformers.vision_utils import get_vision_window_index

from vidpress import functional as F
from vidpress.adapters.base import Prompt, Timer, VideoAdapter, VideoInput, video_blocks


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

    def _add_scores(
        self, videos: list[VideoInput], captured: dict, grid_thw, need: set[str]
    ) -> None:
        visual = self.model.model.visual
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
