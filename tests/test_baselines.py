"""The baselines' stage-1 algorithms (VisionZip, FastVID, HoliTom) and the simple references."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vidpress import functional as F
from vidpress.functional.fastvid import anchor_frames, dtm_weight
from vidpress.functional.references import pool_cells

BASELINES = ("visionzip", "fastvid", "holitom", "uniform", "framedrop", "random")


def video(frames: int, per_frame: int, dim: int = 8, seed: int = 0, noise: float = 0.4):
    """A scene shared by every frame plus per-frame noise, and random scores."""
    g = torch.Generator().manual_seed(seed)
    scene = torch.randn(per_frame, dim, generator=g)
    tokens = scene + noise * torch.randn(frames, per_frame, dim, generator=g)
    return tokens, torch.rand(frames, per_frame, generator=g)


def check_consistent(res, frames: int, grid: tuple[int, int]):
    """Original order; each output sits at one of its own inputs; sizes count the assignment."""
    rows, cols = grid
    assert res.assignment.shape == (frames * rows * cols,)
    for axis, size in enumerate((frames, rows, cols)):
        assert bool((res.positions[:, axis] >= 0).all() and (res.positions[:, axis] < size).all())
    assert res.positions.shape == (len(res), 3) and res.tokens.shape[0] == len(res)
    sizes = torch.bincount(res.assignment[res.assignment >= 0], minlength=len(res))
    assert torch.equal(res.sizes, sizes) and bool((res.sizes >= 1).all())
    flat = (res.positions[:, 0] * rows + res.positions[:, 1]) * cols + res.positions[:, 2]
    assert bool((flat[1:] > flat[:-1]).all()), "outputs must be in original order"
    assert torch.equal(res.assignment[flat], torch.arange(len(res))), "a position is a member"


@st.composite
def shapes(draw):
    per_frame = draw(st.integers(1, 729))
    frames = draw(st.integers(1, min(256, 5000 // per_frame)))
    rows = draw(st.sampled_from([r for r in range(1, per_frame + 1) if per_frame % r == 0]))
    budget = draw(st.integers(1, frames * per_frame))
    return frames, per_frame, (rows, per_frame // rows), budget


@pytest.mark.parametrize("name", BASELINES)
@settings(max_examples=25, deadline=None)
@given(shape=shapes(), seed=st.integers(0, 99), noise=st.sampled_from([0.0, 0.05, 0.4]))
def test_budget_is_exact_and_the_result_consistent(name, shape, seed, noise):
    frames, per_frame, grid, budget = shape
    tokens, scores = video(frames, per_frame, seed=seed, noise=noise)
    res = F.compress_video_tokens(name, tokens, scores, budget=budget, grid=grid)
    assert len(res) == budget
    check_consistent(res, frames, grid)


@pytest.mark.parametrize("name", ["holitom", "uniform", "framedrop", "random"])
@pytest.mark.parametrize("budget", [1, 256 * 729 - 1])
def test_budget_at_the_largest_shape(name, budget):
    tokens, scores = video(256, 729, dim=2, noise=0.05)
    res = F.compress_video_tokens(name, tokens, scores, budget=budget, grid=(27, 27))
    assert len(res) == budget


@pytest.mark.parametrize("name", BASELINES)
def test_same_inputs_same_outputs_bitwise(name):
    tokens, scores = video(12, 49, dim=16, seed=3, noise=0.1)
    a = F.compress_video_tokens(name, tokens, scores, retention=0.1)
    b = F.compress_video_tokens(name, tokens.clone(), scores.clone(), retention=0.1)
    for field in ("tokens", "positions", "sizes", "assignment"):
        assert torch.equal(getattr(a, field), getattr(b, field))


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("visionzip", dict(dominant_ratio=1.5), "dominant_ratio must be in"),
        ("visionzip", dict(keys=torch.ones(2, 3, 4)), "keys must have shape"),
        ("fastvid", dict(segments=0), "segments must be an integer >= 1"),
        ("fastvid", dict(tau=2.0), "tau must be in"),
        ("fastvid", dict(context_ratio=-0.1), "context_ratio must be in"),
        ("fastvid", dict(anchor_period=0), "anchor_period must be an integer >= 1"),
        ("fastvid", dict(beta=1.2), "beta must be in"),
        ("fastvid", dict(k=0), "k must be an integer >= 1"),
        ("fastvid", dict(frame_features=torch.ones(3, 8)), "frame_features must have shape"),
        ("holitom", dict(tau=-1.0), "tau must be in"),
        ("holitom", dict(beta=2.0), "beta must be in"),
        ("holitom", dict(k=0), "k must be an integer >= 1"),
        ("random", dict(seed=-1), "seed must be an integer >= 0"),
    ],
)
def test_bad_hyper_parameters_name_the_argument(name, params, message):
    tokens, scores = video(4, 16)
    with pytest.raises(ValueError, match=message):
        F.compress_video_tokens(name, tokens, scores, budget=8, **params)


# ---- shared primitives added for the baselines


def test_apportion_is_cumulative_round_half_up():
    assert F.apportion(5, torch.tensor([3, 3, 3])).tolist() == [2, 1, 2]
    assert F.apportion(2, torch.tensor([1, 1, 1])).tolist() == [1, 0, 1]
    assert F.apportion(3, torch.tensor([4, 0, 2])).tolist() == [2, 0, 1]
    assert F.apportion(6, torch.tensor([4, 0, 2])).tolist() == [4, 0, 2]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=20), st.floats(0, 1))
def test_apportion_sums_exactly_within_floor_and_ceiling(sizes, fraction):
    sizes = torch.tensor(sizes)
    budget = round(fraction * int(sizes.sum()))
    counts = F.apportion(budget, sizes)
    assert int(counts.sum()) == budget
    share = budget * sizes.double() / max(int(sizes.sum()), 1)
    assert bool((counts >= share.floor()).all() and (counts <= share.ceil()).all())


def test_batched_dpc_knn_matches_the_single_one_row_by_row():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 40, 6, generator=g)
    valid = torch.rand(5, 40, generator=g) > 0.3
    valid[0] = False
    valid[0, 3] = True  # a lone token
    valid[1] = False
    valid[1, [2, 9]] = True  # two tokens: k shrinks to 1
    log_rho, delta = F.dpc_knn_scores_batched(x, valid, k=4)
    for b in range(5):
        ref_log_rho, ref_delta = F.dpc_knn_scores(x[b][valid[b]], k=4)
        torch.testing.assert_close(log_rho[b][valid[b]], ref_log_rho)
        torch.testing.assert_close(delta[b][valid[b]], ref_delta)
        assert bool((log_rho[b][~valid[b]] == -math.inf).all())
        assert bool((delta[b][~valid[b]] == 0).all())


# ---- segmentation


def test_dyseg_cuts_on_given_frame_similarities():
    c = torch.tensor([0.95, 0.5, 0.97, 0.92, 0.99, 0.85, 0.93])
    cuts = F.dyseg_cuts(c, segments=3, tau=0.9)
    assert torch.nonzero(cuts).squeeze(1).tolist() == [1, 5]
    assert F.segment_ids(cuts).tolist() == [0, 0, 1, 1, 1, 1, 2, 2]
    assert torch.nonzero(F.dyseg_cuts(c, segments=4, tau=0.9)).squeeze(1).tolist() == [1, 3, 5]
    below = F.dyseg_cuts(c, segments=3, tau=0.96)
    assert torch.nonzero(below).squeeze(1).tolist() == [0, 1, 3, 5, 6]
    assert F.dyseg_cuts(torch.ones(2), segments=8, tau=0.9).tolist() == [True, True]


def test_anchor_frames_count_back_from_each_segment_end():
    segment = [0] * 6 + [1] + [2] * 4  # lengths 6, 1, 4
    assert [int(a) for a in anchor_frames(segment, 4)] == [0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1]


def holitom_similarity():
    """s_t[j] for T = 5 frames and 3 positions: 0 static throughout, 1 early, 2 late."""
    static = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 1, 1]]).T  # [T-1, N]
    return torch.where(static.bool(), 0.9, 0.1)


def test_holitom_dp_windows_on_a_given_similarity_pattern():
    runs = F.static_runs(holitom_similarity(), tau=0.5)
    assert runs.T.tolist() == [[4, 3, 2, 1, 0], [2, 1, 0, 0, 0], [0, 0, 2, 1, 0]]
    savings = F.window_savings(runs)
    assert savings[0, 4] == 4 and savings[0, 2] == 4 and savings[2, 4] == 4 and savings[3, 4] == 2
    # [0, 2] + [3, 4] and [0, 1] + [2, 4] both save 6; the official scan keeps the shorter last
    # window (it only replaces a candidate by a strictly better one).
    assert F.best_windows(savings).tolist() == [[0, 2], [3, 4]]
    assert F.best_windows(torch.zeros(3, 3, dtype=torch.long)).tolist() == [[0, 0], [1, 1], [2, 2]]


def brute_force_savings(savings: torch.Tensor) -> int:
    frames = savings.shape[0]
    best = 0
    for cuts in itertools.product([False, True], repeat=frames - 1):
        ends = [t for t, cut in enumerate(cuts) if cut] + [frames - 1]
        starts = [0] + [e + 1 for e in ends[:-1]]
        best = max(best, sum(int(savings[s, e]) for s, e in zip(starts, ends, strict=True)))
    return best


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(1, 6), st.integers(0, 999))
def test_holitom_dp_is_optimal(frames, positions, seed):
    g = torch.Generator().manual_seed(seed)
    similarity = torch.rand(frames - 1, positions, generator=g)
    savings = F.window_savings(F.static_runs(similarity, tau=0.3))
    windows = F.best_windows(savings)
    assert windows[0, 0] == 0 and windows[-1, 1] == frames - 1
    assert torch.equal(windows[1:, 0], windows[:-1, 1] + 1)
    assert sum(int(savings[s, e]) for s, e in windows.tolist()) == brute_force_savings(savings)


# ---- hand-computed cases of each method


def test_visionzip_splits_64_as_54_to_10_and_adds_the_contextual_mean():
    tokens, scores = video(1, 100, seed=4)
    res = F.compress_video_tokens("visionzip", tokens, scores, budget=64, grid=(10, 10))
    dominant = torch.topk(scores[0], 54).indices
    flat = res.positions[:, 1] * 10 + res.positions[:, 2]
    rest = torch.tensor([i for i in range(100) if i not in set(dominant.tolist())])
    targets = rest[torch.arange(0, 46, 4)[:10]]  # stride 46 // 10 = 4
    assert set(flat.tolist()) == set(dominant.tolist()) | set(targets.tolist())
    assert bool((res.sizes[torch.isin(flat, dominant)] == 1).all())
    x = tokens[0]
    for out in torch.nonzero(torch.isin(flat, targets)).squeeze(1).tolist():
        members = (res.assignment == out) & (torch.arange(100) != flat[out])
        expected = x[flat[out]] + (x[members].mean(0) if members.any() else 0)
        torch.testing.assert_close(res.tokens[out], expected)


def test_visionzip_floors_the_dominant_count_like_the_official_port():
    tokens, scores = video(1, 100, seed=5)
    res = F.compress_video_tokens("visionzip", tokens, scores, budget=20, grid=(10, 10))
    top = torch.topk(scores[0], 16).indices  # int(20 * 54 / 64) = 16 dominant, 4 contextual
    flat = res.positions[:, 1] * 10 + res.positions[:, 2]
    assert bool(torch.isin(top, flat).all()) and int((~torch.isin(flat, top)).sum()) == 4


def test_fastvid_dtm_blend_weight():
    assert dtm_weight(torch.tensor([1, 2, 0]), 0.6).tolist() == pytest.approx([0.6, 0.6, 1.0])
    assert dtm_weight(torch.tensor([1, 2, 0]), 0.2).tolist() == pytest.approx([0.5, 1 / 3, 1.0])
    # one frame, 4 tokens, budget 3: n_c = floor(3 * 0.4) = 1 target among the 2 non-salient
    # tokens (equal density, so the lower index); it has 2 members (itself and the other).
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0], [6.0, 5.0]]])
    scores = torch.tensor([[0.1, 0.2, 0.9, 0.8]])
    for beta, expected in ((0.6, [0.8, 0.2]), (0.2, [2 / 3, 1 / 3])):
        res = F.compress_video_tokens("fastvid", tokens, scores, budget=3, grid=(2, 2), beta=beta)
        assert res.positions[:, 2].tolist() == [0, 0, 1] and res.sizes.tolist() == [2, 1, 1]
        torch.testing.assert_close(res.tokens[0], torch.tensor(expected))


def test_fastvid_merges_each_token_into_a_target_of_every_anchor_frame():
    tokens, scores = video(5, 16, dim=4, seed=6, noise=0.3)
    res = F.compress_video_tokens(
        "fastvid", tokens, scores, budget=40, segments=1, tau=0.0, anchor_period=4, beta=0.2
    )  # one segment of 5 frames: anchors 0 and 4 (distance 4 and 0 from the last frame)
    flat = tokens.reshape(-1, 4)
    index = res.positions[:, 0] * 16 + res.positions[:, 1] * 4 + res.positions[:, 2]
    salient = F.descending_rank(scores) < 8 - (8 * 4) // 10  # n = 8 per frame, n_s = 5
    targets = index[~salient.flatten()[index]]
    assert set((targets // 16).tolist()) == {0, 4}
    members = torch.nonzero(~salient.flatten()).squeeze(1)
    u = torch.nn.functional.normalize(flat, dim=-1)
    for anchor in (0, 4):
        mine = targets[targets // 16 == anchor]
        label = torch.argmax(u[members] @ u[mine].T, dim=1)
        for slot, target in enumerate(mine.tolist()):
            group = flat[members[label == slot]]
            w = max(1 / (group.shape[0] + 1), 0.2)
            expected = w * flat[target] + (1 - w) * group.mean(0)
            torch.testing.assert_close(res.tokens[index == target][0], expected)


def test_holitom_static_window_merges_over_time_and_sits_at_its_first_frame():
    g = torch.Generator().manual_seed(7)
    tokens = torch.randn(1, 4, 8, generator=g).repeat(4, 1, 1)
    tokens[:, 3] = torch.randn(4, 8, generator=g)  # position 3 changes every frame
    scores = torch.rand(4, 4, generator=g)
    res = F.compress_video_tokens("holitom", tokens, scores, budget=7, grid=(2, 2))
    static = res.sizes == 4
    assert int(static.sum()) == 3 and res.positions[static, 0].tolist() == [0, 0, 0]
    torch.testing.assert_close(res.tokens[static], tokens[0, :3])
    assert res.kept_per_frame(4).tolist() == [4, 1, 1, 1]
    # 10 > 7 tokens left: the least static position (tie: position 0) turns dynamic again
    res = F.compress_video_tokens("holitom", tokens, scores, budget=10, grid=(2, 2))
    assert res.sizes.tolist().count(4) == 2 and res.kept_per_frame(4).tolist() == [4, 2, 2, 2]


def test_holitom_default_tau_follows_the_official_scripts():
    assert F.holitom.default_tau(627, 6272) == 0.65  # 10%
    assert F.holitom.default_tau(125, 6272) == 0.65  # 2%
    assert F.holitom.default_tau(941, 6272) == 0.8  # 15%


def test_uniform_pooling_cell_means_and_centres():
    tokens = torch.arange(16, dtype=torch.float32).reshape(1, 16, 1)
    res = F.compress_video_tokens("uniform", tokens, torch.zeros(1, 16), budget=4, grid=(4, 4))
    assert res.tokens.flatten().tolist() == [2.5, 4.5, 10.5, 12.5]
    assert res.positions[:, 1:].tolist() == [[0, 0], [0, 2], [2, 0], [2, 2]]
    assert res.sizes.tolist() == [4, 4, 4, 4]
    cell, centre = pool_cells(3, (4, 4))  # 2 bands: 2 cells above, 1 below
    assert cell.view(4, 4).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [2, 2, 2, 2]]
    assert centre.tolist() == [0, 2, 9]


@pytest.mark.parametrize("count", range(1, 50))
def test_pool_cells_partition_the_grid_into_rectangles(count):
    cell, centre = pool_cells(count, (7, 7))
    assert torch.equal(torch.unique(cell), torch.arange(count))
    assert torch.equal(cell[centre], torch.arange(count))
    rows, cols = torch.arange(49) // 7, torch.arange(49) % 7
    for c in range(count):
        inside = cell == c
        height = rows[inside].max() - rows[inside].min() + 1
        width = cols[inside].max() - cols[inside].min() + 1
        assert height * width == int(inside.sum())


def test_framedrop_keeps_uniformly_spaced_frames_and_part_of_the_last():
    tokens, scores = video(8, 4)
    res = F.compress_video_tokens("framedrop", tokens, scores, budget=10, grid=(2, 2))
    assert res.kept_per_frame(8).tolist() == [0, 4, 0, 0, 4, 0, 2, 0]
    assert res.positions[-2:].tolist() == [[6, 0, 0], [6, 0, 1]]
    assert torch.equal(res.tokens, tokens.reshape(-1, 8)[res.assignment >= 0])


def test_random_is_seeded_and_keeps_tokens_unchanged():
    tokens, scores = video(6, 16)
    a = F.compress_video_tokens("random", tokens, scores, budget=20, seed=1)
    b = F.compress_video_tokens("random", tokens, scores, budget=20, seed=2)
    expected = torch.sort(
        torch.randperm(96, generator=torch.Generator().manual_seed(1))[:20]
    ).values
    assert torch.equal(torch.nonzero(a.assignment >= 0).squeeze(1), expected)
    assert not torch.equal(a.assignment, b.assignment)
    assert torch.equal(a.tokens, tokens.reshape(-1, 8)[expected])
