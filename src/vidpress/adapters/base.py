"""What every model-family adapter provides to the press engine (``vidpress.engine``).

An adapter knows one transformers Video-LLM class: where its video placeholder tokens are, how to
run its vision tower once while recording the q/k of the layer that feeds the projector, how that
attention becomes one score per LLM-input token, the position ids of the uncompressed prompt, and
how its decoder computes what the engine recomputes or runs itself (the q/k of an attention
layer, rotary embeddings, text embeddings, logits). Everything about shortening sequences, masks,
KV caches and generate() is family-independent and lives in ``vidpress.engine``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn


@dataclass
class VideoInput:
    """One video of one sample, as projected LLM-input features.

    sample:  row of the batch holding it
    rows:    [T*N] long, rows of that sample's sequence holding its tokens, (frame, row, col) order
    tokens:  [T, N, D] projected features (N = grid rows x cols, row-major)
    grid:    (rows, cols) of a frame
    scores:  [T, N] float32 vision contribution scores (None when the press does not use them)
    keys:    [T, N, d] head-mean keys of the scored vision layer (None unless asked for)
    """

    sample: int
    rows: torch.Tensor
    tokens: torch.Tensor
    grid: tuple[int, int]
    scores: torch.Tensor | None = None
    keys: torch.Tensor | None = None


@dataclass
class Prompt:
    """An uncompressed prompt, ready to be shortened.

    embeds:    [B, L, D] input embeddings (video rows hold the uncompressed features)
    videos:    every video of the batch, in sequence order
    span:      [B, L] bool, rows that belong to a video block (its tokens, plus e.g. OV's newline)
    positions: [B, L] position ids (1-D RoPE) or [3, B, L] (M-RoPE) of the uncompressed prompt
    """

    embeds: torch.Tensor
    videos: list[VideoInput]
    span: torch.Tensor
    positions: torch.Tensor


class Timer:
    """Accumulates wall time of the blocks it wraps (synchronising CUDA around them)."""

    def __init__(self, device: torch.device):
        self.seconds = 0.0
        self._cuda = device.type == "cuda"
        self._start = 0.0

    def __enter__(self) -> Timer:
        if self._cuda:
            torch.cuda.synchronize()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self._cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - self._start


class VideoAdapter:
    """Base class of the per-family adapters.

    Subclasses set ``model_type`` (the config's), ``mrope`` (3-D positions) and implement
    ``prepare`` and ``apply_rotary``; the rest has defaults for models laid out as
    ``model.model.language_model`` with a transformers Llama/Qwen2-style decoder stack.
    """

    model_type: ClassVar[str]
    model_class: ClassVar[str]
    mrope: ClassVar[bool] = False
    video_input: ClassVar[str] = "pixel_values_videos"
    image_inputs: ClassVar[tuple[str, ...]] = ("pixel_values",)
    vision_inputs: ClassVar[tuple[str, ...]] = ("pixel_values_videos",)

    def __init__(self, model: nn.Module):
        self.model = model

    @property
    def language_model(self) -> nn.Module:
        """The decoder stack (has ``.layers``, ``.config``, ``.embed_tokens``)."""
        return self.model.model.language_model

    @property
    def decoder_layers(self) -> nn.ModuleList:
        """The decoder layers, in order."""
        return self.language_model.layers

    def layer_types(self) -> list[str]:
        """The attention kind of each decoder layer ("full_attention", "sliding_attention")."""
        types = getattr(self.language_model.config, "layer_types", None)
        return list(types) if types else ["full_attention"] * len(self.decoder_layers)

    @property
    def vision_tower(self) -> nn.Module:
        """The model's vision encoder (the module whose attention implementation the naive
        scores switch to eager)."""
        raise NotImplementedError(f"{type(self).__name__} must give its vision_tower")

    @property
    def feature_output(self) -> nn.Module:
        """The module whose output is the LLM-width video features (where the vision phase
        ends in ``metrics.latency``'s phase marks)."""
        raise NotImplementedError(f"{type(self).__name__} must give its feature_output")

    def naive_scores(self, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(video features, [frames, tokens] scores) the naive way: the tower with
        ``output_attentions`` on eager attention, the scored layer's map averaged over heads and
        queries; ``vidpress bench``'s reference for the adapter's fused scores."""
        raise NotImplementedError(f"{type(self).__name__} has no naive score path")

    def decoder_attention(self, layer: int) -> nn.Module:
        """The self-attention module of decoder layer ``layer``."""
        return self.decoder_layers[layer].self_attn

    def embed_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, S] token ids -> [B, S, D] input embeddings."""
        return self.model.get_input_embeddings()(input_ids)

    def position_embeddings(self, hidden: torch.Tensor, positions: torch.Tensor) -> tuple:
        """The decoder's rotary (cos, sin) for ``positions`` ([B, S], or M-RoPE's [3, B, S])."""
        return self.language_model.rotary_emb(hidden, positions)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[B, S, D] last decoder hidden states -> [B, S, V] logits (final norm, LM head)."""
        return self.model.lm_head(self.language_model.norm(hidden))

    @staticmethod
    def apply_rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """The decoder attention's rotary embedding: q, k [B, H, n, d], cos, sin [B, n, d]."""
        raise NotImplementedError

    def qk_norms(self, layer: int) -> tuple[nn.Module, nn.Module]:
        """Norms the attention of ``layer`` applies to each head of q and k before the rotary
        embedding (identity by default)."""
        return nn.Identity(), nn.Identity()

    def attention_query_key(
        self, layer: int, hidden: torch.Tensor, rope: tuple, query: torch.Tensor, keys: slice
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What decoder layer ``layer``'s attention computes for one sample, for the rows it needs.

        hidden: [L, D] the attention's input (after the layer's input norm); rope: its (cos, sin),
        each [L, d]. Returns q [H, Q, d] of the rows ``query`` and k [H_kv, n, d] of the rows
        ``keys``: projected, normed per head, rotary applied.
        """
        attn = self.decoder_attention(layer)
        q_norm, k_norm = self.qk_norms(layer)
        q = self._rotated_heads(attn.q_proj, q_norm, attn.head_dim, hidden, rope, query)
        k = self._rotated_heads(attn.k_proj, k_norm, attn.head_dim, hidden, rope, keys)
        return q, k

    def _rotated_heads(self, proj, norm, head_dim: int, hidden, rope, rows) -> torch.Tensor:
        """[H, n, d] heads of ``proj(hidden[rows])``, normed, rotary applied."""
        x = proj(hidden[rows])
        y = norm(x.view(len(x), -1, head_dim)).transpose(0, 1)[None]  # [1, H, n, d]
        cos, sin = rope
        return self.apply_rotary(y, y, cos[rows][None], sin[rows][None])[0][0]

    def check_inputs(self, kwargs: dict) -> None:
        """Refuse what a press cannot compress faithfully: images, input embeddings, labels."""
        for name in self.image_inputs:
            if kwargs.get(name) is not None:
                raise ValueError(
                    f"vidpress compresses video inputs only; this call has `{name}` (images). Run "
                    "image prompts outside the `with press(model)` block."
                )
        if kwargs.get("inputs_embeds") is not None:
            raise ValueError(
                "vidpress needs `input_ids` to locate the video tokens; got inputs_embeds"
            )
        if kwargs.get("labels") is not None:
            raise ValueError("vidpress presses are for inference; `labels` is not supported")

    def has_video(self, kwargs: dict) -> bool:
        return kwargs.get(self.video_input) is not None

    def prepare(self, kwargs: dict, mask: torch.Tensor, need: set[str], timer: Timer) -> Prompt:
        """Run the vision tower once and return the uncompressed prompt.

        ``mask``: [B, L] long 2-D attention mask. ``need``: subset of {"scores", "keys"}.
        Score computation (after the tower) runs inside ``timer``.
        """
        raise NotImplementedError

    def llm_kwargs(self, kwargs: dict) -> dict:
        """``kwargs`` without the vision inputs (the features are already in ``inputs_embeds``)."""
        return {k: v for k, v in kwargs.items() if k not in self.vision_inputs}

    def attach_hooks(self) -> list:
        """Removable hooks the family needs while a press is attached (handles; default none)."""
        return []

    def save_state(self) -> dict:
        """Mutable model state that stock code changes during a call (restored on exit)."""
        return {}

    def restore_state(self, state: dict) -> None:
        """Put back what ``save_state`` returned."""


def video_blocks(
    input_ids: torch.Tensor, token_id: int, lengths: list[int]
) -> list[tuple[int, int]]:
    """Locate consecutive video blocks of the given ``lengths`` among the ``token_id`` rows.

    input_ids: [B, L]. The placeholder rows are read in (sample, row) order and cut into blocks of
    ``lengths`` (one per video, in the order the features come in); a block never spans two
    samples. Returns one (sample, first row) per block.
    """
    where = (input_ids == token_id).nonzero().tolist()  # [(sample, row)] in row-major order
    if len(where) != sum(lengths):
        raise ValueError(
            f"the prompt has {len(where)} video placeholder tokens (id {token_id}) but the videos "
            f"need {sum(lengths)} ({lengths}); the processor output and the video do not match"
        )
    blocks, start = [], 0
    for length in lengths:
        (b0, r0), (b1, r1) = where[start], where[start + length - 1]
        if b0 != b1 or r1 - r0 != length - 1:
            raise ValueError(
                f"video placeholder tokens must form one contiguous block of {length} per video; "
                f"got a block from (sample {b0}, row {r0}) to (sample {b1}, row {r1})"
            )
        blocks.append((b0, r0))
        start += length
    return blocks


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[F, L, H*d] -> [F, H, L, d]."""
    f, length, _ = x.shape
    return x.view(f, length, heads, -1).transpose(1, 2)
