"""FastVID, before the LLM (Shen et al., "FastVID: Dynamic Density Pruning for Fast Video Large
Language Models", NeurIPS'25; code LunarShen/FastVID, ``modeling_qwen2.py`` of its
LLaVA-OneVision fork, which runs it inside the decoder before layer 0).

1. Frame signals: a global feature g_t per frame (``frame_features``; default the mean frame
   token, officially SigLIP's attention-pooling head) and a saliency per token (``scores``).
2. DySeg: c_t = cos(g_t, g_t+1); a segment ends after frame t when t is among the (c - 1)
   smallest c_t or c_t < tau.
3. Per frame, n tokens: n_c = floor(n d) context slots, n_s = n - n_c salient tokens.
4. ATS: each frame keeps its top n_s tokens by saliency.
5. Density score of each frame's other (non-salient) tokens: DPC-KNN rho x delta with k = 4
   (ranked as log rho + log delta, which does not underflow).
6. DTM: a segment's anchor frames are every p-th frame counted back from its last frame; they
   share the segment's context slots and take their top-scoring non-salient tokens as targets.
   For each anchor frame, every non-salient token of the segment joins that frame's most
   cosine-similar target; a target becomes w x target + (1 - w) x mean(members, itself
   included), w = max(1 / (members + 1), beta).
7. Outputs in original order with their original positions.

Defaults (LLaVA-OneVision): segments c = 8, tau = 0.9, d = 0.4, anchor period p = 4,
beta = 0.6, k = 4.

Where this implementation knowingly differs from the official code:
- Exact budget. Officially every frame gets n = floor(N r) and each anchor frame
  floor(n_c L / ceil(L / p)) slots, so fewer than r T N tokens remain. Here n is spread over
  frames by ``spread_counts`` (floor(B/T), one more in the first B mod T frames), n_c =
  floor(n d) as officially, and a segment's context slots (the sum of its frames' n_c) are
  spread over its anchor frames by ``spread_counts`` (the remainder to the earliest anchors),
  each holding at most its non-salient tokens. Slots that do not fit (only at high retention,
  where the official code fails) become extra salient slots of the segment's other frames.
- A non-salient token of a segment with several anchor frames is merged into one target of
  every anchor frame, as officially; ``assignment`` records the most similar of those targets
  (ties: the earlier anchor), so ``sizes`` count a partition of the inputs.
- DPC-KNN is the project's shared one (``dpc_knn.py``): a token's k nearest neighbours exclude
  itself (officially it is one of the k, at distance 0), ties go by index instead of random
  noise, and the densest token's delta is its own largest distance (officially the frame's).
- Ties (the c - 1 lowest c_t, the top-k's) go to the lower index; with T <= c - 1 frames every
  frame is its own segment (officially the top-k fails). A target always counts as its own
  member (officially it does unless another target is an exact duplicate).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from vidpress.functional._checks import check_int, check_ratio, check_tensor
from vidpress.functional.budgets import send_plan, spread_counts
from vidpress.functional.dpc_knn import dpc_knn_scores_batched, log_gamma
from vidpress.functional.merging import blend_into_targets
from vidpress.functional.result import CompressedTokens, Planned, finalize, resolve_grid
from vidpress.functional.segmentation import adjacent_similarity, dyseg_cuts, segment_ids
from vidpress.functional.similarity import by_row_chunks, descending_rank, true_indices, unit


def anchor_frames(segment: list[int], period: int) -> list[bool]:
    """Per frame: is it an anchor, i.e. ``period``-th frame counted back from the last frame of
    its segment? segment: the segment of each frame (non-decreasing, from 0)."""
    last = {s: t for t, s in enumerate(segment)}
    return [(last[s] - t) % period == 0 for t, s in enumerate(segment)]


def dtm_weight(members: torch.Tensor, beta: float) -> torch.Tensor:
    """DTM's blend weight of each target: max(1 / (members + 1), beta)."""
    return (1.0 / (members.float() + 1.0)).clamp(min=beta)


@dataclass(frozen=True)
class FramePlan:
    """FastVID's plan of a video, per frame, on Python integers (T is small: planning costs
    microseconds of host time, not a few tensor operations per frame).

    segment: the frame's segment; salient: its ATS tokens; slots: its context targets (anchor
    frames only); anchor_index: its anchor's place among its segment's anchor frames (a
    non-anchor frame: the next anchor's, unused); first_target: the id of its first target when
    the targets are numbered frame by frame.
    """

    segment: list[int]
    salient: list[int]
    slots: list[int]
    anchor_index: list[int]
    first_target: list[int]


def frame_plan(
    segment: list[int], budget: int, n: int, context_ratio: float, period: int
) -> FramePlan:
    """Where ``budget`` goes, exactly: n = ``spread_counts`` over frames, n_c = floor(n d)
    context slots, n - n_c salient tokens. A segment's slots (the sum of its frames' n_c) are
    spread evenly over its anchor frames, each holding at most its n - salient non-salient
    tokens; what does not fit becomes extra salient slots of the segment's other frames."""
    per_frame = spread_counts(budget, [n] * len(segment))
    context = [math.floor(count * context_ratio) for count in per_frame]  # as int(n * d)
    salient = [count - c for count, c in zip(per_frame, context, strict=True)]
    is_anchor = anchor_frames(segment, period)
    slots, anchor_index = [0] * len(segment), [0] * len(segment)
    for s in range(segment[-1] + 1):
        frames = [t for t, seg in enumerate(segment) if seg == s]
        anchors = [t for t in frames if is_anchor[t]]
        others = [t for t in frames if not is_anchor[t]]
        total = sum(context[t] for t in frames)
        room = [n - salient[t] for t in anchors]
        fit = min(total, sum(room))
        for t, count in zip(anchors, spread_counts(fit, room), strict=True):
            slots[t] = count
        if total > fit:
            extra = spread_counts(total - fit, [n - salient[t] for t in others])
            for t, count in zip(others, extra, strict=True):
                salient[t] += count
        seen = 0
        for t in frames:
            anchor_index[t] = seen
            seen += is_anchor[t]
    first_target = [0, *itertools.accumulate(slots)][:-1]  # slots before each frame
    return FramePlan(segment, salient, slots, anchor_index, first_target)


def fastvid_compress(
    tokens: torch.Tensor,
    scores: torch.Tensor,
    budget: int,
    *,
    grid: tuple[int, int],
    frame_features: torch.Tensor | None = None,
    segments: int = 8,
    tau: float = 0.9,
    context_ratio: float = 0.4,
    anchor_period: int = 4,
    beta: float = 0.6,
    k: int = 4,
    runner: Callable[[Planned], object] | None = None,
) -> CompressedTokens:
    """FastVID on ``tokens: [T, N, D]`` with saliency ``scores: [T, N]``.

    frame_features: [T, Dg] the global feature of each frame (default the mean token).
    ``segments`` is DySeg's c, ``context_ratio`` d, ``anchor_period`` p. Returns exactly
    ``budget`` tokens. runner: runs the device work after DySeg and the frame plan (its one
    host read; ``Planned.run``). The plan's per-frame counts go to the device as an input: the
    key holds only their totals and the anchor table's shape, which many videos share.
    """
    frames, n, _ = tokens.shape
    grid = resolve_grid(n, grid)
    check_int("segments", segments)
    tau = check_ratio("tau", tau, zero_ok=True)
    context_ratio = check_ratio("context_ratio", context_ratio, zero_ok=True)
    check_int("anchor_period", anchor_period)
    beta = check_ratio("beta", beta, zero_ok=True)
    check_int("k", k)
    given = frame_features is not None
    if not given:  # the mean of the tokens, which compress_with checks finite
        frame_features = tokens.float().mean(dim=1)
    check_tensor("frame_features", frame_features, 2, "[T, Dg]", finite=given)
    if frame_features.shape[0] != frames:
        raise ValueError(
            f"frame_features must have shape [T, Dg] with T = {frames}, "
            f"got {tuple(frame_features.shape)}"
        )

    cuts = dyseg_cuts(adjacent_similarity(frame_features), segments, tau)
    segment = segment_ids(cuts).tolist()  # the one host sync: the frame plan is made there
    plan = frame_plan(segment, budget, n, context_ratio, anchor_period)
    rows = [plan.salient, plan.slots, plan.segment, plan.anchor_index, plan.first_target]
    shape = FastVIDShape(
        salient=sum(plan.salient),
        slots=sum(plan.slots),
        table=(segment[-1] + 1, max(plan.anchor_index) + 1, max(plan.slots)),
    )
    apply = functools.partial(_fastvid_apply, grid=grid, shape=shape, beta=beta, k=k)
    inputs = (tokens, scores, send_plan(rows, tokens.device))
    return Planned(("fastvid", grid, shape, beta, k), inputs, apply).run(runner)


@dataclass(frozen=True)
class FastVIDShape:
    """What fixes the shapes of FastVID's device work: the salient tokens, the context slots
    (targets) and the anchor table's (segments, most anchor frames of a segment, most targets
    of a frame)."""

    salient: int
    slots: int
    table: tuple[int, int, int]


def _fastvid_apply(
    tokens: torch.Tensor,
    scores: torch.Tensor,
    plan: torch.Tensor,
    *,
    grid: tuple[int, int],
    shape: FastVIDShape,
    beta: float,
    k: int,
) -> CompressedTokens:
    """FastVID's device work: ATS, density scores, DTM. plan: [5, T] long, ``FramePlan``'s
    salient, slots, segment, anchor_index and first_target of each frame."""
    frames, n, dim = tokens.shape
    salient, slots, segment_of, index_of, first_of = plan
    is_salient = descending_rank(scores) < salient[:, None]  # ATS, [T, N]

    flat = tokens.reshape(-1, dim)
    kept = true_indices(is_salient.flatten(), shape.salient)
    assignment = torch.full((frames * n,), -1, dtype=torch.long, device=tokens.device)
    assignment[kept] = torch.arange(shape.salient, device=tokens.device)
    if shape.slots == 0:
        return finalize(flat[kept], kept, assignment, grid)

    log_rho, delta = dpc_knn_scores_batched(tokens, ~is_salient, k)
    # log(rho x delta); delta = 0 (-inf) becomes the lowest finite value, above the salient
    gamma = log_gamma(log_rho, delta).clamp_(min=torch.finfo(torch.float32).min)
    density = torch.where(is_salient, -torch.inf, gamma)
    is_target = descending_rank(density) < slots[:, None]
    targets = true_indices(is_target.flatten(), shape.slots)  # grouped by frame
    layout = AnchorLayout(
        segment=segment_of, index=index_of, first_target=first_of, shape=shape.table
    )
    mergeable = frames * n - shape.salient
    merged, best = dtm(flat, n, targets, ~is_salient, mergeable, layout, beta)
    assignment = torch.where(best >= 0, shape.salient + best, assignment)
    assignment[targets] = shape.salient + torch.arange(targets.numel(), device=tokens.device)
    return finalize(torch.cat([flat[kept], merged]), torch.cat([kept, targets]), assignment, grid)


@dataclass(frozen=True)
class AnchorLayout:
    """Where the targets of each anchor frame sit, on the tokens' device.

    segment, index, first_target: [T] long, per frame (``FramePlan``'s);
    shape: (segments, most anchor frames in a segment, most targets of a frame).
    """

    segment: torch.Tensor
    index: torch.Tensor
    first_target: torch.Tensor
    shape: tuple[int, int, int]


def anchor_table(
    layout: AnchorLayout, targets: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each target sits: (table [S, A, K], anchor index of each target [G]).

    table[s, a, k] is the id (into ``targets``) of the k-th target of the a-th anchor frame of
    segment s (anchors in time order), -1 where there is none. targets: [G] flat indices,
    grouped by frame.
    """
    frame = targets // n
    ids = torch.arange(targets.numel(), device=targets.device)
    table = torch.full(layout.shape, -1, device=targets.device)
    table[layout.segment[frame], layout.index[frame], ids - layout.first_target[frame]] = ids
    return table, layout.index[frame]


def dtm(
    flat: torch.Tensor,
    n: int,
    targets: torch.Tensor,
    mergeable: torch.Tensor,
    mergeable_count: int,
    layout: AnchorLayout,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Density-based temporal merging of all segments at once.

    flat: [T*N, D]; targets: [G] flat indices, grouped by frame; mergeable: [T, N] the
    ``mergeable_count`` non-salient tokens. For every anchor frame of its segment, each
    mergeable token joins that frame's most cosine-similar target (a target joins itself).
    Returns the blended targets [G, D] and, for every input token, the one target it is most
    similar to among those it joined ([T*N], -1: none; ties: the earlier anchor).
    """
    device = flat.device
    table, target_anchor = anchor_table(layout, targets, n)  # [S, A, K], [G]
    members = true_indices(mergeable.flatten(), mergeable_count)  # [M]
    member_segment = layout.segment[members // n]
    target_unit = unit(flat[targets])  # [G, D]
    width = max(targets.numel() + table[0].numel(), flat.shape[1])

    def best_target(rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's most similar target of every anchor frame: (label, cosine) [r, A]."""
        cols = table[member_segment[rows]]  # [r, A, K]
        sims = (unit(flat[members[rows]]) @ target_unit.T).gather(1, cols.clamp(min=0).flatten(1))
        sims = sims.view(cols.shape).masked_fill(cols < 0, -torch.inf)
        slot = torch.argmax(sims, dim=2, keepdim=True)
        return cols.gather(2, slot).squeeze(2), sims.gather(2, slot).squeeze(2)

    label, similarity = by_row_chunks(best_target, members.numel(), width, device)
    own = torch.searchsorted(members, targets)
    label[own, target_anchor] = torch.arange(targets.numel(), device=device)

    # every anchor frame at once: column a of ``label`` holds targets of the a-th anchor only
    merged = blend_into_targets(
        flat[targets], flat[members], label, lambda count: dtm_weight(count, beta)
    )
    best = torch.full((flat.shape[0],), -1, dtype=torch.long, device=device)
    best[members] = label.gather(1, torch.argmax(similarity, dim=1, keepdim=True)).squeeze(1)
    return merged, best
