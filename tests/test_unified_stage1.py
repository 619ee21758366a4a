"""The unified outer stage (docs/method.md stage 1) through the public entry point."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vidpress import functional as F
from vidpress.presses import STAGE1_PRESSES

SWITCHES = [
    dict(attention_order=a, similarity_gate=s, clustering=c)
    for a in (True, False)
    for s in (True, False)
    for c in (True, False)
]


def video(frames: int, per_frame: int, dim: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    scene = torch.randn(per_frame, dim, generator=g)
    tokens = scene + 0.4 * torch.randn(frames, per_frame, dim, generator=g)
    return tokens, torch.rand(frames, per_frame, generator=g)


def check_consistent(res, tokens, cols):
    """Sizes count members, outputs are in original order, each output's position is a member."""
    frames, per_frame, _ = tokens.shape
    assert res.assignment.shape == (frames * per_frame,)
    for axis, size in enumerate((frames, per_frame // cols, cols)):
        assert bool((res.positions[:, axis] >= 0).all() and (res.positions[:, axis] < size).all())
    members = res.assignment[res.assignment >= 0]
    assert torch.equal(res.sizes, torch.bincount(members, minlength=len(res)))
    flat = res.positions[:, 0] * per_frame + res.positions[:, 1] * cols + res.positions[:, 2]
    assert torch.equal(flat, torch.sort(flat).values), "outputs must be in original order"
    assert torch.equal(res.assignment[flat], torch.arange(len(res))), "a position is a member"


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 729), st.floats(0.0, 1.0), st.integers(0, 7), st.data())
def test_budget_is_exact_for_any_shape_and_switches(per_frame, fraction, sw, data):
    frames = data.draw(st.integers(1, min(256, 6000 // per_frame)))  # T x N <= 6000, no filtering
    m = frames * per_frame
    budget = max(1, min(m, round(fraction * m)))
    tokens, scores = video(frames, per_frame, seed=data.draw(st.integers(0, 99)))
    res = F.compress_video_tokens(
        "unified", tokens, scores, budget=budget, grid=(1, per_frame), **SWITCHES[sw]
    )
    assert len(res) == budget == res.positions.shape[0] == res.sizes.shape[0]
    check_consistent(res, tokens, cols=per_frame)


@pytest.mark.parametrize(
    ("budget", "switches"),
    [(1, {}), (256 * 729, {}), (3732, dict(clustering=False))],
)
def test_budget_at_the_largest_shape(budget, switches):
    """T=256, N=729 on the CPU, where no clustering runs (DPC-KNN over 186k tokens is O(M^2):
    the GPU benchmark covers the full method at 256 frames)."""
    tokens, scores = video(256, 729, dim=4)
    res = F.compress_video_tokens(
        "unified", tokens, scores, budget=budget, grid=(27, 27), **switches
    )
    assert len(res) == budget


@pytest.mark.parametrize("sw", range(8))
def test_same_inputs_same_outputs_bitwise(sw):
    tokens, scores = video(8, 49, dim=16, seed=3)
    a = F.compress_video_tokens("unified", tokens, scores, retention=0.1, **SWITCHES[sw])
    b = F.compress_video_tokens(
        "unified", tokens.clone(), scores.clone(), retention=0.1, **SWITCHES[sw]
    )
    for field in ("tokens", "positions", "sizes", "assignment"):
        assert torch.equal(getattr(a, field), getattr(b, field))


def test_full_retention_returns_the_input_in_order():
    tokens, scores = video(4, 16)
    res = F.compress_video_tokens("unified", tokens, scores, retention=1.0)
    assert torch.equal(res.tokens, tokens.reshape(-1, 8))
    assert torch.equal(res.assignment, torch.arange(64))
    assert res.sizes.tolist() == [1] * 64


def test_clusters_are_plain_means_and_every_token_is_accounted_for():
    tokens, scores = video(6, 16, seed=5)
    res = F.compress_video_tokens("unified", tokens, scores, budget=20)
    flat = tokens.reshape(-1, 8)
    assert int(res.sizes.sum()) == 96
    for out in range(len(res)):
        members = res.assignment == out
        torch.testing.assert_close(res.tokens[out], flat[members].mean(0))


def test_attention_only_is_top_k_by_score():
    tokens, scores = video(5, 16, seed=1)
    res = F.compress_video_tokens(
        "unified", tokens, scores, budget=12, similarity_gate=False, clustering=False
    )
    expected = torch.sort(torch.topk(scores.reshape(-1), 12).indices).values
    assert torch.equal(torch.nonzero(res.assignment >= 0).squeeze(1), expected)
    assert res.sizes.tolist() == [1] * 12


def test_gate_keeps_no_two_selected_tokens_above_tau():
    tokens, scores = video(8, 16, seed=2)
    res = F.compress_video_tokens("unified", tokens, scores, budget=30, clustering=False, tau=0.5)
    # Selected tokens are those with size 1 that are their own position; with clustering off the
    # gate may run dry and be topped up, so check only the gate's admitted prefix.
    walk = torch.argsort(scores.reshape(-1), descending=True, stable=True)
    admitted = F.retention_pool(tokens.reshape(-1, 8), walk, 30, 0.5)
    u = torch.nn.functional.normalize(tokens.reshape(-1, 8)[admitted], dim=-1)
    sims = (u @ u.T).fill_diagonal_(-1)
    assert float(sims.max()) < 0.5
    assert set(admitted.tolist()) <= set(torch.nonzero(res.assignment >= 0).squeeze(1).tolist())


def test_centred_gate_sees_past_a_common_component():
    """Tokens sharing one large offset (every pair at cosine ~0.9): the plain gate admits a handful
    and hands the rest of the selected slots to the clusters; the centred gate admits all of
    them, no two above tau once the offset is removed. On tokens whose mean is already zero the
    two gates are the same."""
    tokens, scores = video(8, 16, seed=3)
    tokens = tokens - tokens.reshape(-1, 8).mean(dim=0)
    offset = (
        3.0
        * tokens.reshape(-1, 8).norm(dim=-1).mean()
        * torch.nn.functional.normalize(torch.ones(8), dim=0)
    )
    walk = torch.argsort(scores.reshape(-1), descending=True, stable=True)
    plain = F.retention_pool(tokens.reshape(-1, 8) + offset, walk, 20, 0.7)
    centred = F.retention_pool(F.centred(tokens.reshape(-1, 8) + offset), walk, 20, 0.7)
    assert plain.numel() <= 3 and centred.numel() == 20
    u = torch.nn.functional.normalize(tokens.reshape(-1, 8)[centred], dim=-1)
    assert float((u @ u.T).fill_diagonal_(-1).max()) < 0.7

    shifted = F.compress_video_tokens("unified", tokens + offset, scores, budget=30)
    shifted_centred = F.compress_video_tokens(
        "unified", tokens + offset, scores, budget=30, centred_gate=True
    )
    assert len(shifted) == len(shifted_centred) == 30
    assert int((shifted.sizes == 1).sum()) < int((shifted_centred.sizes == 1).sum())
    plain_on_zero_mean = F.compress_video_tokens("unified", tokens, scores, budget=30)
    centred_on_zero_mean = F.compress_video_tokens(
        "unified", tokens, scores, budget=30, centred_gate=True
    )
    assert torch.equal(plain_on_zero_mean.assignment, centred_on_zero_mean.assignment)


def distinct_frame_video(seed: int = 0):
    """32 frames repeating one scene, except frame 13 which shows distinct content.

    The scene is built from a few object prototypes (real frames are redundant in space too);
    the vision encoder's attention peaks on the same salient objects in every repeated frame,
    and is moderate on the distinct frame.
    """
    g = torch.Generator().manual_seed(seed)
    frames, per_frame, dim = 32, 196, 64
    prototypes = torch.randn(60, dim, generator=g)
    layout = torch.randint(0, 60, (per_frame,), generator=g)
    scene = prototypes[layout]
    tokens = scene + 0.15 * torch.randn(frames, per_frame, dim, generator=g)
    new_prototypes = torch.randn(40, dim, generator=g)
    tokens[13] = new_prototypes[torch.randint(0, 40, (per_frame,), generator=g)]
    tokens[13] += 0.15 * torch.randn(per_frame, dim, generator=g)
    scores = 0.1 * torch.rand(frames, per_frame, generator=g)
    scores[:, layout < 3] += 1.0  # salient objects, in every repeated frame
    scores[13] = 0.5 + 0.1 * torch.rand(per_frame, generator=g)
    return tokens, scores


def near_duplicates(res, threshold: float = 0.9) -> int:
    """Kept tokens that repeat the content of an earlier kept token (cosine >= threshold)."""
    u = torch.nn.functional.normalize(res.tokens, dim=-1)
    earlier = torch.tril(u @ u.T, diagonal=-1)
    return int((earlier.amax(dim=1) >= threshold).sum())


def test_the_point_of_the_paper_one_global_pool():
    tokens, scores = distinct_frame_video()
    unified = F.compress_video_tokens("unified", tokens, scores, retention=0.02)
    attention_only = F.compress_video_tokens(
        "unified", tokens, scores, retention=0.02, similarity_gate=False, clustering=False
    )
    per_frame_quota = F.compress_video_tokens("visionzip", tokens, scores, retention=0.02)
    assert len(unified) == len(attention_only) == len(per_frame_quota) == 125

    in_distinct = int((unified.positions[:, 0] == 13).sum())
    assert in_distinct >= 10, "the unified pool must reach the distinct frame"
    assert int((attention_only.positions[:, 0] == 13).sum()) == 0
    assert near_duplicates(unified) * 3 <= near_duplicates(attention_only)
    repeated_share = float((per_frame_quota.positions[:, 0] != 13).float().mean())
    assert repeated_share > 0.9, "a per-frame quota spends its budget on the repeated frames"
    assert in_distinct > int((per_frame_quota.positions[:, 0] == 13).sum())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(retention=0.0), r"retention must be in \(0, 1\]"),
        (dict(retention=1.2), r"retention must be in \(0, 1\]"),
        (dict(budget=65), r"budget must be an integer in \[0, 64\]"),
        (dict(budget=0), r"budget must be in \[1, 64\]"),
        (dict(budget=5, tau=0.0), r"tau must be in \(0, 1\]"),
        (dict(budget=5, tau=1.5), r"tau must be in \(0, 1\]"),
        (dict(budget=5, k=0), "k must be an integer >= 1"),
        (dict(budget=5, cluster_ratio=2.0), r"cluster_ratio must be in \[0, 1\]"),
        (dict(budget=5, bogus=1), "does not take"),
        (dict(budget=2.5), r"budget must be an integer in \[0, 64\] \(the tokens\), got 2.5"),
        (dict(budget=True), r"budget must be an integer in \[0, 64\] \(the tokens\), got True"),
        (dict(budget="5"), r"budget must be an integer in \[0, 64\]"),
        (dict(retention="0.1"), r"retention must be a number in \(0, 1\], got str"),
        (dict(retention=True), r"retention must be a number in \(0, 1\], got bool"),
        (dict(retention=torch.tensor(0.1)), r"retention must be a number in \(0, 1\], got Tensor"),
        (dict(retention=float("nan")), r"retention must be in \(0, 1\], got nan"),
        (dict(budget=5, k=2.0), "k must be an integer >= 1, got 2.0"),
        (dict(budget=5, attention_order="no"), "attention_order must be True or False"),
        (dict(budget=5, clustering=1), "clustering must be True or False"),
        (dict(budget=5, similarity_gate=None), "similarity_gate must be True or False"),
        (dict(budget=5, centred_gate="yes"), "centred_gate must be True or False"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    tokens, scores = video(4, 16)
    with pytest.raises(ValueError, match=match):
        F.compress_video_tokens("unified", tokens, scores, **kwargs)


def test_bad_tensors_are_named():
    tokens, scores = video(4, 16)
    with pytest.raises(ValueError, match="name must be one of"):
        F.compress_video_tokens("tome", tokens, scores, budget=3)
    with pytest.raises(ValueError, match=r"scores must have shape \[T, N\]"):
        F.compress_video_tokens("unified", tokens, scores[:, :3], budget=3)
    with pytest.raises(ValueError, match=r"tokens must have shape \[T, N, D\]"):
        F.compress_video_tokens("unified", tokens[0], scores, budget=3)
    with pytest.raises(ValueError, match="non-empty"):
        F.compress_video_tokens("unified", tokens[:0], scores[:0], budget=1)
    bad = tokens.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="tokens contains NaN or inf"):
        F.compress_video_tokens("unified", bad, scores, budget=3)
    bad_scores = scores.clone()
    bad_scores[1, 1] = float("inf")
    with pytest.raises(ValueError, match="scores contains NaN or inf"):
        F.compress_video_tokens("unified", tokens, bad_scores, budget=3)
    with pytest.raises(ValueError, match="grid must"):
        F.compress_video_tokens("unified", tokens, scores, budget=3, grid=(3, 3))
    with pytest.raises(ValueError, match="tokens must be a floating-point tensor"):
        F.compress_video_tokens("unified", tokens.long(), scores, budget=3)
    half = tokens.half()
    half[2, 5, 1] = float("inf")
    with pytest.raises(ValueError, match="tokens contains NaN or inf"):
        F.compress_video_tokens("unified", half, scores, budget=3)
    with pytest.raises(ValueError, match="scores must be on the tokens' device cpu, got meta"):
        F.compress_video_tokens("unified", tokens, scores.to("meta"), budget=3)


def test_integers_of_any_kind_are_accepted():
    tokens, scores = video(4, 16)
    res = F.compress_video_tokens(
        "unified", tokens, scores, budget=np.int64(5), grid=(np.int64(2), 8), k=np.int32(3)
    )
    assert len(res) == 5 and int(res.positions[:, 1].max()) <= 1
    res = F.compress_video_tokens("unified", tokens, scores, retention=np.float32(0.1))
    assert len(res) == F.token_budget(64, retention=0.1)


GRID_ACCEPTED = r"grid must be two positive integers \(rows, cols\) with rows \* cols = N = 16"


@pytest.mark.parametrize("name", STAGE1_PRESSES)
@pytest.mark.parametrize(
    "grid", [(2.5, 6.4), (4.0, 4.0), (True, 16), (-4, -4), (0, 16), (2, 4), (16,), "4x4", 16]
)
def test_a_bad_grid_is_refused_by_every_method(name, grid):
    """A non-integer grid was truncated: (2.5, 6.4) put outputs in frame 5 of 4."""
    tokens, scores = video(4, 16)
    with pytest.raises(ValueError, match=GRID_ACCEPTED):
        F.compress_video_tokens(name, tokens, scores, budget=20, grid=grid)
    method = getattr(F, f"{name}_compress")
    with pytest.raises(ValueError, match=GRID_ACCEPTED):
        method(tokens, scores, 20, grid=grid)
