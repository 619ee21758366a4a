"""Stage 1 of a prefill: compress each video and hand the LLM a shorter prompt.

The press compresses every video of the adapter's uncompressed prompt; the kept tokens are
written in place of the video rows, the prompt is shortened and re-left-padded, and it gets its
own attention mask and position ids (docs/method.md: 1-D RoPE contiguous by default or original
ids; M-RoPE original (t, h, w) of each kept token or cluster centre).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache

from vidpress import functional as F
from vidpress.adapters.base import Prompt, Timer, VideoAdapter
from vidpress.engine.rows import gather_rows, has_text_row, left_aligned, mask_positions
from vidpress.engine.state import Call, Plan, Session
from vidpress.engine.stats import stage1_stats


def prefill(
    adapter: VideoAdapter,
    press,
    kwargs: dict,
    cache: DynamicCache | None,
    replay: Plan | None,
    original_positions: bool,
    runner=None,
) -> tuple[dict, Call]:
    """The model's keyword arguments for the compressed prompt of ``kwargs``, and the call.

    replay: the decisions of an earlier prefill to reuse (else the press decides);
    original_positions: 1-D RoPE keeps the kept tokens' original position ids;
    runner: runs the device work of the press's stage 1 (``press.compress_video``'s).
    """
    input_ids = kwargs["input_ids"]
    batch, length = input_ids.shape
    mask = two_d_mask(kwargs.get("attention_mask"), input_ids)
    timer, score_timer = Timer(input_ids.device), Timer(input_ids.device)
    need = set() if replay is not None else set(press.needs)
    prompt = adapter.prepare(kwargs, mask, need, score_timer)
    with timer:
        results = stage1(press, prompt, replay, runner)
        keep, visual, sizes = place(prompt, results, mask)
        index = left_aligned(keep)  # [B, L'] original row of each compressed row
    outer_mask = (index >= 0).long()
    embeds = gather_rows(prompt.embeds, index)
    positions, rope_delta = prefill_positions(
        adapter.mrope, original_positions, prompt.positions, index, mask, kwargs.get("position_ids")
    )
    seconds = (score_timer.seconds, timer.seconds)
    call = Call(
        Session(length, mask, outer_mask, rope_delta),
        cache,
        prefill=True,
        stats=stage1_stats(prompt, results, batch, seconds, index, positions),
        plan=Plan(results),
        visual=gather_rows(visual, index),
        sizes=gather_rows(sizes, index),
        span_end=last_span_row(gather_rows(prompt.span, index)),
        sample_frames=sample_frames(prompt, results, batch),
    )
    kwargs = adapter.llm_kwargs(kwargs)
    kwargs.update(
        input_ids=None, inputs_embeds=embeds, attention_mask=outer_mask, position_ids=positions
    )
    return kwargs, call


def two_d_mask(given: torch.Tensor | None, input_ids: torch.Tensor) -> torch.Tensor:
    """[B, L] long attention mask of the uncompressed prompt (all ones when none is given)."""
    if given is not None and given.dim() != 2:
        raise ValueError("vidpress needs a 2-D attention_mask [batch, sequence] (or none)")
    return torch.ones_like(input_ids) if given is None else given.long()


def stage1(press, prompt: Prompt, replay: Plan | None, runner=None) -> list[F.CompressedTokens]:
    """The press's result for each video of ``prompt`` (or the replayed ones)."""
    if replay is None:
        return [press.compress_video(video, runner) for video in prompt.videos]
    shapes = [tuple(v.tokens.shape[:2]) for v in prompt.videos]
    if len(replay.outer) != len(shapes) or any(
        int(r.assignment.numel()) != t * n for r, (t, n) in zip(replay.outer, shapes, strict=True)
    ):
        raise ValueError("replay() needs the same videos as the call it replays")
    return replay.outer


def place(prompt: Prompt, results: list[F.CompressedTokens], mask: torch.Tensor):
    """Rows kept per sample ([B, L] bool), which are visual, and their sizes; writes the kept
    tokens into ``prompt.embeds`` at the rows of their (cluster centre) positions."""
    keep = mask.bool().clone()
    visual = torch.zeros_like(keep)
    sizes = torch.zeros_like(mask)
    for video, res in zip(prompt.videos, results, strict=True):
        if len(res) < 1:
            raise ValueError("the retention leaves zero visual tokens for a video")
        cols = video.grid[1]
        flat = res.positions[:, 0] * video.tokens.shape[1] + res.positions[:, 1] * cols
        rows = video.rows[flat + res.positions[:, 2]]
        keep[video.sample, video.rows] = False
        keep[video.sample, rows] = True
        visual[video.sample, rows] = True
        sizes[video.sample, rows] = res.sizes.to(sizes.device)
        prompt.embeds[video.sample, rows] = res.tokens.to(prompt.embeds.dtype)
    return keep, visual, sizes


def prefill_positions(
    mrope: bool,
    original: bool,
    positions: torch.Tensor,
    index: torch.Tensor,
    mask: torch.Tensor,
    given: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Position ids of the compressed prompt, and M-RoPE's per-sample offset for decoding.

    positions: the uncompressed prompt's, [B, L] (1-D) or [3, B, L] (M-RoPE); index: [B, L'];
    mask: [B, L]; given: the caller's position ids (or None). 1-D: contiguous ids of the
    compressed prompt, or the ``original`` ones.
    M-RoPE: the original (t, h, w) of each kept row (with the text row first when the caller
    passed [4, B, L] ids), and rope_delta [B]: position after the prompt minus its length.
    """
    outer_mask = (index >= 0).long()
    if not mrope:
        if original:
            return gather_rows(positions, index), None
        return mask_positions(outer_mask), None
    kept = torch.stack([gather_rows(p, index) for p in positions])
    rope_delta = positions.amax(dim=(0, 2)) + 1 - mask.sum(dim=1)
    if has_text_row(given):
        kept = torch.cat([mask_positions(outer_mask)[None], kept])
    return kept, rope_delta


def last_span_row(span: torch.Tensor) -> torch.Tensor:
    """[B] last row of each sample's video blocks in ``span: [B, L'] bool`` (-1: none)."""
    row_ids = torch.arange(span.shape[1], device=span.device)
    return torch.where(span, row_ids, -1).amax(dim=1)


def sample_frames(prompt: Prompt, results: list[F.CompressedTokens], batch: int):
    """Per sample [V_b, 2] (video number, frame) of its stage-1 tokens in sequence order."""
    parts: list[list[torch.Tensor]] = [[] for _ in range(batch)]
    for number, (video, res) in enumerate(zip(prompt.videos, results, strict=True)):
        frame = res.positions[:, 0]
        parts[video.sample].append(torch.stack([torch.full_like(frame, number), frame], dim=1))
    return [torch.cat(p) if p else torch.zeros(0, 2, dtype=torch.long) for p in parts]
