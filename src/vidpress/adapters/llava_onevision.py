"""Adapter for ``LlavaOnevisionForConditionalGeneration`` (also LLaVA-Video converted to it).

Video path of the stock model: vision tower on every frame -> hidden state of
``vision_feature_layer`` (CLS dropped with the "default" strategy) -> projector -> 2x2 bilinear
pooling of the g x g patch grid to ceil(g/2) x ceil(g/2) -> one newline embedding appended per
video. The prompt holds F x ceil(g/2)^2 + 1 ``<video>`` placeholders per video.

Scores: the q/k outputs of the attention of the layer whose output feeds the projector are
recorded by forward hooks (the tower keeps its SDPA/flash kernels); the CLS row when the tower has
a CLS token (e.g. DINOv2), else the mean received attention (SigLIP); pooled to the token grid with
the same bilinear interpolation as the features (with several ``vision_feature_layer``s, the
deepest one is scored). The newline token is always kept.

``LlavaOnevisionFamily``: its checkpoints, preprocessing (``llava_onevision_inputs``), FLOPs
spec, random architectures and lmms-eval model; ``TestbedFamily``: its variant, vidpress's
testbed (a LLaVA-OneVision folder with vidpress's processor, ``vidpress.testbed.processor``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

from vidpress import functional as F
from vidpress.adapters.base import (
    Prompt,
    Timer,
    VideoAdapter,
    VideoInput,
    split_heads,
    video_blocks,
)
from vidpress.adapters.family import Family
from vidpress.adapters.llava_onevision_inputs import pooled_side, prepare_video


def _pool(x: torch.Tensor, side: int) -> torch.Tensor:
    """OV's ``apply_pooling``: [F, g*g, C] -> [F, ceil(g/2)^2, C] by bilinear interpolation."""
    frames, length, channels = x.shape
    grid = x.view(frames, side, side, channels).permute(0, 3, 1, 2)
    small = pooled_side(side)
    pooled = nn.functional.interpolate(grid, size=[small, small], mode="bilinear")
    return pooled.permute(0, 2, 3, 1).reshape(frames, small * small, channels)


def _contiguous_output(module, args, output):
    return output.contiguous() if torch.is_tensor(output) else output


def feature_layers(feature_layer: int | list[int]) -> list[int]:
    """A ``vision_feature_layer`` (one index or several) as a list of indices."""
    return [feature_layer] if isinstance(feature_layer, int) else list(feature_layer)


def selected_features(
    hidden_states: tuple[torch.Tensor, ...], feature_layer: int | list[int], strategy: str
) -> torch.Tensor:
    """What the stock projector reads: ``hidden_states[feature_layer]`` [F, L, C], or with a list
    of layers their concatenation [F, L, C * len(list)]; CLS dropped with the "default" strategy."""
    if isinstance(feature_layer, int):
        selected = hidden_states[feature_layer]
    else:
        selected = torch.cat([hidden_states[i] for i in feature_layer], dim=-1)
    return selected[:, 1:] if strategy == "default" else selected


def scored_layer(feature_layer: int | list[int], num_layers: int) -> int:
    """Index of the encoder layer whose attention is scored: the one whose output is the
    (deepest) selected hidden state; ``hidden_states[i]`` is the output of layer ``i - 1``."""
    return max(i % (num_layers + 1) for i in feature_layers(feature_layer)) - 1


class LlavaOnevisionAdapter(VideoAdapter):
    model_type = "llava_onevision"
    model_class = "LlavaOnevisionForConditionalGeneration"
    vision_inputs = ("pixel_values_videos", "image_sizes_videos")
    # the text backbone's rotary embedding: Qwen2's (OV, LLaVA-Video); Llama's (the testbed) is
    # the same rotate-half formula
    apply_rotary = staticmethod(apply_rotary_pos_emb)

    def qk_norms(self, layer: int) -> tuple[nn.Module, nn.Module]:
        """The text backbone's per-head q/k norms: Qwen3-style backbones have them, Qwen2 and
        Llama do not (identity)."""
        attn = self.decoder_attention(layer)
        return getattr(attn, "q_norm", nn.Identity()), getattr(attn, "k_norm", nn.Identity())

    def attach_hooks(self) -> list:
        """Keep the vision tower's residual stream contiguous.

        SigLIP's embeddings return ``patch_embeds.flatten(2).transpose(1, 2)``, a strided view,
        and every residual add and LayerNorm of the tower then runs on (and writes) strided
        tensors: about 19.5 of SigLIP-400M's 62 ms on 32 frames (H200, bf16) were copy kernels
        and strided adds. A forward hook on the embeddings returns them contiguous (the same
        values); it is removed with the press.
        """
        tower = self.vision_tower
        for path in ("vision_model.embeddings", "embeddings"):
            try:
                embeddings = tower.get_submodule(path)
            except AttributeError:
                continue
            return [embeddings.register_forward_hook(_contiguous_output)]
        return []

    @property
    def vision_tower(self) -> nn.Module:
        return self.model.model.vision_tower

    @property
    def feature_output(self) -> nn.Module:
        return self.model.model.multi_modal_projector

    def naive_scores(self, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        base, cfg = self.model.model, self.model.config
        pixels = inputs[self.video_input].flatten(0, 1)
        out = self.vision_tower(pixels, output_hidden_states=True, output_attentions=True)
        layer, strategy = cfg.vision_feature_layer, cfg.vision_feature_select_strategy
        index = scored_layer(layer, len(out.attentions))
        features = base.multi_modal_projector(selected_features(out.hidden_states, layer, strategy))
        scores = out.attentions[index].float().mean(dim=(1, 2))  # [F, L]
        side = cfg.vision_config.image_size // cfg.vision_config.patch_size
        return base.apply_pooling(features), _pool(scores[..., None], side)[..., 0]

    def _feature_layer(self, kwargs: dict) -> tuple[int | list[int], str]:
        cfg = self.model.config
        layer = kwargs.get("vision_feature_layer")
        strategy = kwargs.get("vision_feature_select_strategy")
        return (
            cfg.vision_feature_layer if layer is None else layer,
            cfg.vision_feature_select_strategy if strategy is None else strategy,
        )

    @property
    def vision_layers(self) -> nn.ModuleList:
        """The vision tower's encoder layers (SigLIP's, DINOv2's)."""
        tower = self.vision_tower
        for path in ("encoder.layers", "encoder.layer", "vision_model.encoder.layers"):
            try:
                return tower.get_submodule(path)
            except AttributeError:
                continue
        raise ValueError(f"cannot find the encoder layers of vision tower {type(tower).__name__}")

    def _scored_attention(self, feature_layer: int | list[int]) -> tuple[nn.Module, nn.Module]:
        """The (query, key) projections of the vision layer whose output feeds the projector."""
        layers = self.vision_layers
        index = scored_layer(feature_layer, len(layers))
        if index < 0:
            raise ValueError(
                f"vision_feature_layer={feature_layer} selects the patch embeddings; vision scores "
                "need the attention of an encoder layer"
            )
        for module in layers[index].modules():
            for q_name, k_name in (("q_proj", "k_proj"), ("query", "key")):
                if isinstance(getattr(module, q_name, None), nn.Linear) and isinstance(
                    getattr(module, k_name, None), nn.Linear
                ):
                    return getattr(module, q_name), getattr(module, k_name)
        raise ValueError(f"cannot find q/k projections in vision layer {index}")

    def prepare(self, kwargs: dict, mask: torch.Tensor, need: set[str], timer: Timer) -> Prompt:
        base = self.model.model
        cfg = self.model.config
        pixels = kwargs["pixel_values_videos"]  # [V, F, C, H, W]
        if pixels.dim() != 5:
            raise ValueError(
                f"pixel_values_videos must be [videos, frames, channels, height, width], got "
                f"{tuple(pixels.shape)}"
            )
        feature_layer, strategy = self._feature_layer(kwargs)
        captured: dict[str, torch.Tensor] = {}
        handles = []
        if need:
            q_proj, k_proj = self._scored_attention(feature_layer)
            handles = [
                q_proj.register_forward_hook(lambda m, a, out: captured.__setitem__("q", out)),
                k_proj.register_forward_hook(lambda m, a, out: captured.__setitem__("k", out)),
            ]
        try:
            features = self._video_features(pixels, feature_layer, strategy)  # [V, F * n, D]
        finally:
            for handle in handles:
                handle.remove()

        videos_n, frames = pixels.shape[:2]
        side = cfg.vision_config.image_size // cfg.vision_config.patch_size
        small = pooled_side(side)
        per_frame = small * small
        tokens = features.view(videos_n, frames, per_frame, -1)

        input_ids = kwargs["input_ids"]
        block = frames * per_frame + 1  # tokens + newline
        starts = video_blocks(input_ids, cfg.video_token_id, [block] * videos_n)
        embeds = base.get_input_embeddings()(input_ids)
        span = torch.zeros_like(input_ids, dtype=torch.bool)
        videos = []
        for i, (sample, first) in enumerate(starts):
            rows = torch.arange(first, first + block - 1, device=input_ids.device)
            embeds[sample, rows] = tokens[i].reshape(len(rows), -1).to(embeds.dtype)
            embeds[sample, first + block - 1] = base.image_newline.to(embeds.dtype)
            span[sample, first : first + block] = True
            videos.append(VideoInput(sample, rows, tokens[i], (small, small)))

        if need:
            with timer:
                self._add_scores(videos, captured, side, strategy, need)
        return Prompt(embeds, videos, span, self._positions(kwargs, mask))

    def _video_features(
        self, pixels: torch.Tensor, feature_layer: int | list[int], strategy: str
    ) -> torch.Tensor:
        """The stock ``get_video_features`` ([V, F, C, H, W] -> [V, F * n, D]), same values.

        One difference, in speed only: the 2 x 2 bilinear pooling reads the projected features
        in channels-last memory (``_pool``). The stock ``apply_pooling`` makes them contiguous
        channels-first, and PyTorch's channels-first bilinear CUDA kernel parallelises over
        output pixels only: 45 ms for 32 frames of 3584 x 27 x 27 on an H100 (0.4 s for 256
        frames), against well under a millisecond for the channels-last kernel (same formula,
        bitwise the same result).
        """
        base = self.model.model
        videos, frames = pixels.shape[:2]
        out = base.vision_tower(pixels.flatten(0, 1), output_hidden_states=True, return_dict=True)
        selected = selected_features(out.hidden_states, feature_layer, strategy)
        features = base.multi_modal_projector(selected)
        side = (
            self.model.config.vision_config.image_size // self.model.config.vision_config.patch_size
        )
        features = _pool(features, side)  # [V*F, n, D]
        return features.reshape(videos, frames * features.shape[1], -1)

    def _add_scores(
        self, videos: list[VideoInput], captured: dict, side: int, strategy: str, need: set[str]
    ) -> None:
        heads = self.model.config.vision_config.num_attention_heads
        q = split_heads(captured["q"], heads)  # [V*F, H, L, d]
        k = split_heads(captured["k"], heads)
        has_cls = q.shape[2] == side * side + 1
        if has_cls:
            scores = F.cls_attention(q, k)  # [V*F, g*g]
        else:
            scores = F.received_attention(q, k)
            if strategy == "default":
                scores = scores[:, 1:]
        scores = _pool(scores[..., None], side)[..., 0]  # [V*F, n]
        keys = None
        if "keys" in need:
            keys = k.mean(dim=1)  # [V*F, L, d] head mean
            keys = _pool(keys[:, 1:] if strategy == "default" else keys, side)
        frames = videos[0].tokens.shape[0]
        for i, video in enumerate(videos):
            part = slice(i * frames, (i + 1) * frames)
            video.scores = scores[part].float()
            video.keys = None if keys is None else keys[part]

    def _positions(self, kwargs: dict, mask: torch.Tensor) -> torch.Tensor:
        """[B, L] 1-D positions of the uncompressed prompt: the caller's, else generate()'s rule."""
        given = kwargs.get("position_ids")
        if given is not None:
            return given.expand(mask.shape[0], -1)
        return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)


class LlavaOnevisionFamily(Family):
    """LLaVA-OneVision: SigLIP (or another ViT) + 2-layer projector + 2 x 2 bilinear pooling."""

    name = "llava_onevision"
    adapter = LlavaOnevisionAdapter
    description = (
        "LLaVA-OneVision (LlavaOnevisionForConditionalGeneration, model_type 'llava_onevision'; "
        "also LLaVA-Video checkpoints converted to it)"
    )
    video_processor = "LlavaOnevisionVideoProcessor"
    lmms_eval_model = "vidpress_llava_onevision"
    architectures = {
        "llava-onevision-7b": (False, "SigLIP-so400m + Qwen2-7B"),
        "llava-onevision-tiny": (True, "toy LLaVA-OV (CPU)"),
    }

    def default_frames(self, video_config: dict) -> int:
        return video_config.get("num_frames") or 32

    def prepare(self, loaded, info, question, count, max_pixels):
        return prepare_video(loaded, info, question, count)

    def flops_spec(self, config, name: str):
        """ViT + 2-layer projector on every patch, then ceil(g/2)^2 pooled tokens per frame."""
        from vidpress.metrics import model_specs as specs

        return specs.llava_style_spec(config, name, lambda grid: pooled_side(grid) ** 2)

    def random_config(self, tiny: bool):
        """LLaVA-OV-7B: SigLIP-so400m (26 layers, 384 px, 14 px patches) + Qwen2-7B; ``tiny``:
        2 vision layers of width 32 on 56 px frames, 20 decoder layers of 64."""
        from transformers import LlavaOnevisionConfig

        from vidpress.metrics import model_specs as specs

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
        text = dict(
            model_type="qwen2",
            vocab_size=152128,
            rope_theta=1e6,
            **specs.text_config_sizes(specs.QWEN2_7B),
        )
        if tiny:
            vision.update(hidden_size=32, intermediate_size=64, num_hidden_layers=2)
            vision.update(num_attention_heads=2, image_size=56, patch_size=4)
            text = dict(model_type="qwen2", vocab_size=152128, **specs.TINY_TEXT_SIZES)
        return LlavaOnevisionConfig(
            vision_config=vision,
            text_config=text,
            image_token_id=151646,
            video_token_id=151647,
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
        )

    def frame_size(self, tiny: bool) -> int:
        return 56 if tiny else 384  # the vision tower's input size

    def random_video(self, config, frames: int, size: int, generator: torch.Generator):
        """``frames`` frames of ``size`` px (the tower's image size)."""
        vision = config.vision_config
        per_frame = pooled_side(vision.image_size // vision.patch_size) ** 2
        video = [config.video_token_id] * (frames * per_frame + 1)
        return video, torch.randn(1, frames, 3, size, size, generator=generator), None


class TestbedFamily(LlavaOnevisionFamily):
    """The vidpress testbed: DINOv2 tower (CLS token), its own processor, no random architecture."""

    __test__ = False  # not a pytest class despite the name
    name = "testbed"
    variant = True
    description = "the vidpress testbed (a LLaVA-OneVision folder written by build_testbed)"
    video_processor = None
    lmms_eval_model = None
    architectures = {}

    def matches(self, path: Path) -> bool:
        from vidpress.testbed.processor import PROCESSOR_FILE

        return (path / PROCESSOR_FILE).is_file()

    def own_files(self) -> tuple[str, ...]:
        from vidpress.testbed.processor import PROCESSOR_FILE

        return (PROCESSOR_FILE,)

    def load_processor(self, path: Path):
        from vidpress.testbed.processor import TestbedProcessor

        return TestbedProcessor.from_pretrained(path)

    def default_frames(self, video_config: dict) -> int:
        return 32

    def prepare(self, loaded, info, question, count, max_pixels):
        from vidpress.testbed.processor import prepare_video as prepare_testbed_video

        return prepare_testbed_video(loaded, info, question, count)

    def flops_spec(self, config, name: str):
        """DINOv2 tower (a CLS token, MLP ratio) + Llama text model + LLaVA projector."""
        from vidpress.metrics import model_specs as specs

        v, t = config.vision_config, config.text_config
        vision = specs.VisionSpec(
            layers=v.num_hidden_layers,
            hidden=v.hidden_size,
            heads=v.num_attention_heads,
            mlp=int(v.hidden_size * v.mlp_ratio),
            patch_size=v.patch_size,
            image_size=v.image_size,
            class_token=True,
        )
        llm = specs.llm_from_text_config(t)
        return specs.ModelSpec(
            name=f"testbed ({name})",
            llm=llm,
            vision=vision,
            projector=specs.llava_projector(vision.hidden, llm.hidden),
            frames=32,
            tokens_per_frame=pooled_side(vision.grid) ** 2,
        )
