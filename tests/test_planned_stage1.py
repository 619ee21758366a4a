"""Stage 1's device work as ``functional.Planned`` pieces, and their replays
(``engine.graphs.PlannedReplays``, the ``runner`` of VisionZip, FastVID and unified).

A piece's ``apply`` may depend on its key only: the replays call the first ``apply`` of a key
on the inputs of later calls, as a CUDA graph would replay it. These tests feed it videos
whose plans share a key but differ in value.
"""

import pytest
import torch

from vidpress import functional as F
from vidpress.engine.graphs import PlannedReplays

FRAMES, SIDE, DIM = 12, 4, 16


def segmented_video(lengths: list[int], seed: int):
    """Tokens [T, N, D], scores [T, N] and frame features [T, D] whose DySeg cuts fall
    between the runs of ``lengths`` frames (one random direction per run)."""
    gen = torch.Generator().manual_seed(seed)
    runs = torch.randn(len(lengths), DIM, generator=gen)
    features = torch.cat([run.expand(n, DIM) for run, n in zip(runs, lengths, strict=True)])
    features = features + 0.01 * torch.randn(FRAMES, DIM, generator=gen)
    tokens = features[:, None] + torch.randn(FRAMES, SIDE * SIDE, DIM, generator=gen)
    scores = torch.rand(FRAMES, SIDE * SIDE, generator=gen)
    return tokens, scores, features


def assert_same(a: F.CompressedTokens, b: F.CompressedTokens):
    for name in ("tokens", "positions", "sizes", "assignment"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


class Recording(PlannedReplays):
    """Eager replays that also keep each piece handed to them."""

    def __init__(self):
        super().__init__(graphs=False)
        self.pieces: list[F.Planned] = []

    def __call__(self, planned):
        self.pieces.append(planned)
        return super().__call__(planned)


def fastvid(runner, lengths, seed, budget=40):
    """(replayed through ``runner``, eager) FastVID on a ``segmented_video``."""
    tokens, scores, features = segmented_video(lengths, seed)
    params = dict(budget=budget, frame_features=features, segments=len(lengths))
    eager = F.compress_with(F.fastvid_compress, tokens, scores, **params)
    return F.compress_with(F.fastvid_compress, tokens, scores, runner=runner, **params), eager


def test_fastvid_replays_one_apply_on_plans_that_share_a_key():
    runner = Recording()
    first, first_eager = fastvid(runner, [4, 2, 4, 2], seed=0)
    second, second_eager = fastvid(runner, [2, 4, 2, 4], seed=1)
    plan_a, plan_b = runner.pieces
    assert plan_a.key == plan_b.key
    assert not torch.equal(plan_a.inputs[2], plan_b.inputs[2])  # other frames are anchors
    assert runner.captures == 1
    assert_same(first, first_eager)
    assert_same(second, second_eager)


def test_fastvid_keys_differ_with_the_segment_layout_and_the_budget():
    runner = Recording()
    fastvid(runner, [4, 2, 4, 2], seed=0)
    fastvid(runner, [3, 3, 3, 3], seed=2)
    fastvid(runner, [4, 2, 4, 2], seed=3, budget=30)
    assert len({piece.key for piece in runner.pieces}) == 3
    assert runner.captures == 3


def test_replays_keep_the_most_recently_used_graphs():
    runner = PlannedReplays(graphs=False, max_graphs=2)
    tokens, scores, _ = segmented_video([FRAMES], 0)
    for budget in (30, 20, 30, 10, 30):
        replayed = F.compress_with(
            F.visionzip_compress, tokens, scores, budget=budget, runner=runner
        )
        assert_same(replayed, F.compress_with(F.visionzip_compress, tokens, scores, budget=budget))
    assert runner.captures == 3 and len(runner) == 2  # 30 stayed in use, 20 was dropped
    F.compress_with(F.visionzip_compress, tokens, scores, budget=20, runner=runner)
    assert runner.captures == 4
    with pytest.raises(ValueError, match="max_graphs must be an integer >= 1"):
        PlannedReplays(max_graphs=0)


@pytest.mark.parametrize("with_keys", [False, True])
def test_visionzip_replays_are_the_eager_results(with_keys):
    runner = PlannedReplays(graphs=False)
    for seed in range(3):
        tokens, scores, _ = segmented_video([FRAMES], seed)
        extra = {"keys": torch.randn(FRAMES, SIDE * SIDE, 8)} if with_keys else {}
        eager = F.compress_with(F.visionzip_compress, tokens, scores, budget=30, **extra)
        replayed = F.compress_with(
            F.visionzip_compress, tokens, scores, budget=30, runner=runner, **extra
        )
        assert_same(replayed, eager)
    assert runner.captures == 1


def test_a_runner_leaves_methods_without_device_phases_as_they_are():
    runner = PlannedReplays(graphs=False)
    tokens, scores, _ = segmented_video([FRAMES], 0)
    replayed = F.compress_with(F.holitom_compress, tokens, scores, budget=30, runner=runner)
    assert_same(replayed, F.compress_with(F.holitom_compress, tokens, scores, budget=30))
    assert runner.captures == 0


@pytest.mark.parametrize("params", [{}, {"clustering": False}, {"tau": 0.05}])
def test_unified_replays_its_clustering_and_refill(params):
    """Three videos through one runner: the gate admits the same count in each (random tokens,
    tau 0.7) or runs short (tau 0.05: more cluster slots), the replays give the eager result."""
    runner = PlannedReplays(graphs=False)
    for seed in range(3):
        tokens, scores, _ = segmented_video([FRAMES], seed)
        eager = F.compress_with(F.unified_compress, tokens, scores, budget=30, **params)
        replayed = F.compress_with(
            F.unified_compress, tokens, scores, budget=30, runner=runner, **params
        )
        assert_same(replayed, eager)
    # one piece per call (the clustering and the refill, or the refill alone), one key per
    # count the gate admits
    assert 1 <= runner.captures <= (1 if params.get("clustering") is False else 3)


@pytest.mark.parametrize("method", ["unified", "dpc_knn"])
def test_local_peaks_beyond_the_room_run_again_with_room_for_them(monkeypatch, method):
    """The room for DPC-KNN's local peaks is guessed before they are counted; with a guess of
    one, the piece runs again with room for every peak and gives the exact result (short
    neighbour lists: many peaks)."""
    monkeypatch.setattr("vidpress.functional.dpc_knn.NEIGHBOURS", 1)
    tokens, scores, _ = segmented_video([FRAMES], 0)
    if method == "unified":
        exact = F.compress_with(F.unified_compress, tokens, scores, budget=30)
    else:
        exact = F.dpc_knn_cluster(tokens.reshape(-1, DIM), 12)
    monkeypatch.setattr("vidpress.functional.dpc_knn.PEAK_SHARE", 10**9)
    runner = Recording()
    if method == "unified":
        guessed = F.compress_with(F.unified_compress, tokens, scores, budget=30, runner=runner)
        assert_same(guessed, exact)
    else:
        guessed = F.dpc_knn_cluster(tokens.reshape(-1, DIM), 12, runner=runner)
        assert all(torch.equal(a, b) for a, b in zip(guessed, exact, strict=True))
    rooms = [piece.key[-1] for piece in runner.pieces]
    assert rooms[0] == 1 and len(rooms) == 2 and rooms[1] > 1


def test_replayed_results_own_their_tensors():
    runner = PlannedReplays(graphs=False)
    tokens, scores, _ = segmented_video([FRAMES], 0)
    first = F.compress_with(F.visionzip_compress, tokens, scores, budget=30, runner=runner)
    kept = first.tokens.clone()
    F.compress_with(F.visionzip_compress, tokens * 2, scores, budget=30, runner=runner)
    assert torch.equal(first.tokens, kept)


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["visionzip", "fastvid", "unified"])
def test_cuda_graph_replays_give_the_eager_results(method):
    """The same choices (positions, sizes, assignment) as the eager calls, and the same tokens
    to float32 rounding (cuBLAS may pick another kernel inside a graph capture)."""
    runner = PlannedReplays(graphs=True)
    layouts = [[4, 2, 4, 2], [2, 4, 2, 4], [4, 2, 4, 2]]
    fn = {"visionzip": F.visionzip_compress, "fastvid": F.fastvid_compress}.get(
        method, F.unified_compress
    )
    for seed, lengths in enumerate(layouts):
        tokens, scores, features = (x.cuda() for x in segmented_video(lengths, seed))
        params = dict(frame_features=features, segments=4) if method == "fastvid" else {}
        eager = F.compress_with(fn, tokens, scores, budget=40, **params)
        replayed = F.compress_with(fn, tokens, scores, budget=40, runner=runner, **params)
        for name in ("positions", "sizes", "assignment"):
            assert torch.equal(getattr(replayed, name), getattr(eager, name)), name
        torch.testing.assert_close(replayed.tokens, eager.tokens, rtol=1e-5, atol=1e-5)
    assert 1 <= runner.captures <= (3 if method == "unified" else 1)  # unified: one per count
