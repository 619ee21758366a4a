"""The shared primitives of vidpress.functional against naive references."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vidpress import functional as F
from vidpress.functional.budgets import send_plan
from vidpress.functional.merging import one_hot_sums
from vidpress.functional.similarity import true_indices


def naive_gate(x: torch.Tensor, tau: float, capacity: int) -> list[int]:
    """Eq. 2 one candidate at a time."""
    u = torch.nn.functional.normalize(x.float(), dim=-1)
    pool: list[int] = []
    for i in range(x.shape[0]):
        if len(pool) == capacity:
            break
        if not pool or float((u[pool] @ u[i]).max()) < tau:
            pool.append(i)
    return pool


def naive_dpc(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 3-4 with the full distance matrix, ties by index: (log rho, delta)."""
    m, dim = x.shape
    d = torch.cdist(x.double(), x.double()) / math.sqrt(dim)
    log_rho = torch.empty(m, dtype=torch.float64)
    for i in range(m):
        others = torch.cat([d[i, :i], d[i, i + 1 :]])
        log_rho[i] = -(others.sort().values[:k] ** 2).mean()
    delta = torch.empty(m, dtype=torch.float64)
    key = [(float(v), -j) for j, v in enumerate(log_rho)]  # denser: higher, then lower index
    for i in range(m):
        denser = [j for j in range(m) if key[j] > key[i]]
        delta[i] = d[i, denser].min() if denser else d[i].max()
    return log_rho, delta


@pytest.mark.parametrize(
    ("total", "retention", "expected"),
    [(6272, 0.02, 125), (125, 0.5, 63), (6272, 0.01, 63), (6272, 1e-9, 1), (10, 1.0, 10)],
)
def test_token_budget_rounds_half_up_and_never_to_zero(total, retention, expected):
    assert F.token_budget(total, retention=retention) == expected


def test_token_budget_counts_and_errors():
    assert F.token_budget(10, budget=0) == 0
    assert F.token_budget(10, budget=10) == 10
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"retention must be in \(0, 1\]"):
            F.token_budget(10, retention=bad)
    with pytest.raises(ValueError, match=r"budget must be an integer in \[0, 10\]"):
        F.token_budget(10, budget=11)
    with pytest.raises(ValueError, match="exactly one"):
        F.token_budget(10, retention=0.5, budget=3)


def test_split_budget_matches_the_paper_example():
    assert F.split_budget(125, 0.3) == (87, 38)
    assert F.split_budget(1, 0.3) == (1, 0)
    assert F.split_budget(7, 0.0) == (7, 0)


@given(st.integers(0, 400), st.integers(1, 40), st.integers(1, 12), st.data())
def test_spread_evenly_is_exact_and_even(budget, bins, cap, data):
    caps = torch.tensor(data.draw(st.lists(st.integers(0, cap), min_size=bins, max_size=bins)))
    if budget > int(caps.sum()):
        with pytest.raises(ValueError, match="exceeds"):
            F.spread_evenly(budget, bins, caps)
        return
    counts = F.spread_evenly(budget, bins, caps)
    assert int(counts.sum()) == budget
    assert bool((counts <= caps).all())
    # Even: a bin below its capacity is never more than one below another bin.
    short = counts < caps
    if short.any():
        assert int(counts.max()) - int(counts[short].min()) <= 1


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 60),
    st.integers(1, 6),
    st.floats(0.05, 1.0),
    st.integers(1, 60),
    st.integers(1, 9),
    st.integers(0, 2**16),
)
def test_cosine_gate_equals_the_sequential_definition(m, dim, tau, capacity, block, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, dim, generator=g)
    x[torch.randint(0, m, (m // 3,), generator=g)] *= 3  # exact duplicates in direction
    got = F.cosine_gate(x, tau, capacity, block=block).tolist()
    assert got == naive_gate(x, tau, capacity)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.integers(1, 5), st.integers(1, 9), st.integers(0, 2**16))
def test_dpc_knn_matches_the_definition(m, dim, k, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, dim, generator=g)
    x[: m // 4] = x[m // 4 : 2 * (m // 4)]  # duplicated points: zero distances and tied density
    log_rho, delta = F.dpc_knn_scores(x, k)
    if m == 1:
        assert log_rho.tolist() == [0.0] and delta.tolist() == [0.0]
        return
    log_rho_ref, delta_ref = naive_dpc(x, min(k, m - 1))
    torch.testing.assert_close(log_rho.double(), log_rho_ref, rtol=1e-4, atol=1e-5)
    # delta depends on the density order: compare where the order is not a float-level tie.
    gap = (log_rho_ref[:, None] - log_rho_ref[None, :]).abs() + torch.eye(m, dtype=torch.float64)
    clear = gap.min(dim=1).values > 1e-5
    # squared: float32 distances from |x|^2 + |y|^2 - 2 x.y are exact to ~1e-6 in d^2, so a
    # near-duplicate's delta of 2e-4 (d^2 = 5e-8) may come out 0 (seed 669, m 32, dim 1)
    torch.testing.assert_close(
        delta.double()[clear] ** 2, delta_ref[clear] ** 2, rtol=1e-4, atol=1e-5
    )


def test_dpc_knn_second_pass_for_density_peaks(monkeypatch):
    """With a neighbour list of 1, most rows need the full pass: results must not change."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(50, 4, generator=g)
    log_rho, delta = F.dpc_knn_scores(x, 3)
    monkeypatch.setattr("vidpress.functional.dpc_knn.NEIGHBOURS", 1)
    monkeypatch.setattr("vidpress.functional.similarity.CHUNK_ELEMENTS", 64)
    log_rho2, delta2 = F.dpc_knn_scores(x, 3)
    torch.testing.assert_close(log_rho, log_rho2)
    torch.testing.assert_close(delta, delta2)


def test_dpc_knn_cluster_refuses_an_empty_clustering():
    for rows, count in ((5, 0), (0, 3), (5, -1)):
        with pytest.raises(ValueError, match="count and the rows of x must be >= 1"):
            F.dpc_knn_cluster(torch.randn(rows, 4), count)


def test_dpc_knn_cluster_centres_own_themselves_and_members_join_nearest():
    g = torch.Generator().manual_seed(0)
    blobs = torch.cat([torch.randn(20, 3, generator=g) * 0.05 + c for c in (0.0, 5.0, -5.0)])
    centres, labels = F.dpc_knn_cluster(blobs, 3, k=4)
    assert labels[centres].tolist() == [0, 1, 2]
    # Three well separated blobs: each blob is one cluster.
    assert sorted(len(set(labels[i : i + 20].tolist())) for i in (0, 20, 40)) == [1, 1, 1]
    d = torch.cdist(blobs, blobs[centres])
    assert torch.equal(labels, d.argmin(dim=1))


@given(st.integers(1, 50), st.integers(1, 8), st.integers(0, 2**16))
def test_group_mean_is_the_weighted_mean(m, groups, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, 3, generator=g)
    labels = torch.randint(-1, groups, (m,), generator=g)
    w = torch.randint(1, 5, (m,), generator=g).float()
    means, total = F.group_mean(x, labels, groups, w)
    for grp in range(groups):
        member = labels == grp
        assert float(total[grp]) == float(w[member].sum())
        if member.any():
            expected = (x[member] * w[member, None]).sum(0) / w[member].sum()
            torch.testing.assert_close(means[grp], expected)


def _unweighted_means(x: torch.Tensor, labels: torch.Tensor, groups: int) -> list:
    """Each group's float32 mean of ``x``'s rows (None for an empty group), by a loop."""
    return [x[labels == g].float().mean(0) if (labels == g).any() else None for g in range(groups)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_group_mean_unweighted(dtype):
    """The CPU twin of the GPU test below: every row of a group counts once."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 16, generator=g).to(dtype)
    labels = torch.randint(-1, 7, (300,), generator=g)
    means, count = F.group_mean(x, labels, 7)
    for grp, expected in enumerate(_unweighted_means(x, labels, 7)):
        assert float(count[grp]) == float((labels == grp).sum())
        if expected is not None:
            torch.testing.assert_close(means[grp], expected.to(dtype))  # dtype's tolerance


@pytest.mark.gpu
def test_group_mean_one_hot_path_on_cuda():
    """bf16 rows on CUDA are summed by a one-hot product (``one_hot_sums``): the same means as
    the float32 loop, and the same sums as ``index_add_`` to float32 rounding."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(12_000, 256, generator=g).to("cuda", torch.bfloat16)
    labels = torch.randint(-1, 50, (12_000,), generator=g).cuda()
    means, count = F.group_mean(x, labels, 50)
    for grp, expected in enumerate(_unweighted_means(x, labels, 50)):
        assert float(count[grp]) == float((labels == grp).sum())
        torch.testing.assert_close(means[grp], expected.to(torch.bfloat16))
    spare = torch.where(labels >= 0, labels, 50)
    sums = torch.zeros(51, 256, device="cuda").index_add_(0, spare, x.float())
    torch.testing.assert_close(one_hot_sums(x, spare[:, None], 51), sums, rtol=1e-5, atol=1e-4)
    columns = _column_labels(labels.cpu(), 50).cuda()
    means, count = F.group_mean(x, columns, 100)
    joined = _joined(columns, 100)
    for grp in range(100):
        member = joined[:, grp]
        assert float(count[grp]) == float(member.sum())
        if member.any():
            expected = x[member].float().mean(0).to(torch.bfloat16)
            torch.testing.assert_close(means[grp], expected)


def _column_labels(labels: torch.Tensor, groups: int) -> torch.Tensor:
    """[M, 2] labels: column 0 ``labels``, column 1 a second group of its own range
    [groups, 2 groups) (-1 where the first is -1 or the row is odd)."""
    second = torch.where((labels >= 0) & (torch.arange(labels.numel()) % 2 == 0), labels, -1)
    return torch.stack([labels, torch.where(second >= 0, (second * 7) % groups + groups, -1)], 1)


def _joined(columns: torch.Tensor, groups: int) -> torch.Tensor:
    """[M, groups] bool: row i is a member of group g (any column)."""
    return torch.stack([(columns == g).any(dim=1) for g in range(groups)], dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_group_mean_of_rows_in_several_groups(dtype):
    """labels [M, J]: a row counts once in each of its groups (FastVID's DTM, one target per
    anchor frame); CPU twin of the GPU test's second half."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(300, 16, generator=g).to(dtype)
    columns = _column_labels(torch.randint(-1, 7, (300,), generator=g), 7)
    means, count = F.group_mean(x, columns, 14)
    weights = torch.rand(300, generator=g) + 0.5
    weighted, total = F.group_mean(x, columns, 14, weights)
    joined = _joined(columns, 14)
    for grp in range(14):
        member = joined[:, grp]
        assert float(count[grp]) == float(member.sum())
        torch.testing.assert_close(total[grp], weights[member].sum())
        if member.any():
            torch.testing.assert_close(means[grp], x[member].float().mean(0).to(dtype))
            expected = (x[member].float() * weights[member, None]).sum(0) / weights[member].sum()
            torch.testing.assert_close(weighted[grp], expected.to(dtype))


def test_sequential_pairwise_mean_equals_the_loop():
    g = torch.Generator().manual_seed(1)
    kept, dropped = torch.randn(4, 5, generator=g), torch.randn(11, 5, generator=g)
    labels = torch.randint(0, 4, (11,), generator=g)
    expected = kept.clone()
    for i in range(11):
        expected[labels[i]] = (expected[labels[i]] + dropped[i]) / 2
    torch.testing.assert_close(F.sequential_pairwise_mean(kept, dropped, labels), expected)


def test_blend_into_targets():
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    members = torch.tensor([[3.0, 0.0], [5.0, 0.0], [9.0, 9.0]])
    out = F.blend_into_targets(targets, members, torch.tensor([0, 0, -1]), torch.tensor(0.25))
    torch.testing.assert_close(out, torch.tensor([[0.25 + 0.75 * 4.0, 0.0], [0.0, 1.0]]))


def test_attention_rows_match_full_softmax():
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(3, 2, 5, 4, generator=g), torch.randn(3, 2, 5, 4, generator=g)
    full = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)  # sqrt(4) = 2
    torch.testing.assert_close(F.cls_attention(q, k), full[:, :, 0, 1:].mean(1))
    torch.testing.assert_close(F.received_attention(q, k), full.mean(dim=(1, 2)))

    qt, kk = torch.randn(2, 3, 4, generator=g), torch.randn(2, 9, 4, generator=g)
    got = F.text_to_visual_attention(qt, kk, slice(1, 5), causal_offset=6)
    logits = qt @ kk.transpose(-1, -2) / 2.0
    logits[:, 0, 7:] = float("-inf")
    logits[:, 1, 8:] = float("-inf")
    torch.testing.assert_close(got, torch.softmax(logits, -1).mean(0)[:, 1:5])


def test_text_aware_importance_is_eq9():
    attn = torch.tensor([[0.1, 0.5, 0.2], [0.3, 0.1, 0.2]])
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    vis = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    # A_m: column max [0.3, 0.5, 0.2] -> [1/3, 1, 0]; S_m: max cos [1, 0.7071, 0] (already 0..1)
    got = F.text_aware_importance(attn, vis, text, lam=0.5)
    torch.testing.assert_close(got, torch.tensor([(1 / 3 + 1) / 2, (1 + 0.70710678) / 2, 0.0]))
    only_attention = F.text_aware_importance(attn, vis, text, lam=0.0)
    torch.testing.assert_close(only_attention, torch.tensor([1 / 3, 1.0, 0.0]))


def test_visual_importance_from_queries_and_keys():
    g = torch.Generator().manual_seed(3)
    assert F.importance_queries(9, 6, "text_aware").tolist() == [6, 7, 8]
    assert F.importance_queries(9, 9, "text_aware").tolist() == [8]  # no text after the video
    assert F.importance_queries(9, 6, "last_token").tolist() == [8]
    q, k = torch.randn(4, 3, 8, generator=g), torch.randn(2, 9, 8, generator=g)  # 2 KV heads
    hidden = torch.randn(9, 5, generator=g)
    visual = torch.tensor([1, 2, 4])
    full = F.text_to_visual_attention(q, k.repeat_interleave(2, dim=0), slice(None), 6)
    rows = full[:, visual]
    got = F.visual_importance(q, k, visual, 6, hidden[visual], hidden[6:], kind="text_aware")
    torch.testing.assert_close(got, F.text_aware_importance(rows, hidden[visual], hidden[6:]))
    last = F.visual_importance(q, k, visual, 6, hidden[visual], hidden[6:], kind="last_token")
    torch.testing.assert_close(last, rows[-1])
    with pytest.raises(ValueError, match="kind must be one of"):
        F.importance_queries(9, 6, "first_token")


@given(st.integers(1, 40), st.integers(1, 40), st.sampled_from(F.MERGE_MODES), st.integers(0, 99))
def test_inner_compress_keeps_exactly_and_conserves_sizes(v, keep, merge, seed):
    keep = min(keep, v)
    g = torch.Generator().manual_seed(seed)
    hidden, imp = torch.randn(v, 6, generator=g), torch.rand(v, generator=g)
    sizes = torch.randint(1, 4, (v,), generator=g)
    res = F.inner_compress(hidden, imp, keep, merge=merge, sizes=sizes)
    assert res.keep_index.numel() == keep == res.hidden.shape[0]
    assert torch.equal(res.keep_index, torch.sort(res.keep_index).values)
    assert set(res.keep_index.tolist()) == set(torch.topk(imp, keep).indices.tolist())
    if merge == "none":
        assert torch.equal(res.hidden, hidden[res.keep_index])
        return
    assert int(res.sizes.sum()) == int(sizes.sum())
    if merge == "mean":
        dropped = [i for i in range(v) if i not in set(res.keep_index.tolist())]
        u = torch.nn.functional.normalize(hidden, dim=-1)
        for slot, kept_id in enumerate(res.keep_index.tolist()):
            members = [kept_id] + [
                d for d in dropped if int((u[res.keep_index] @ u[d]).argmax()) == slot
            ]
            w = sizes[members].float()
            expected = (hidden[members] * w[:, None]).sum(0) / w.sum()
            torch.testing.assert_close(res.hidden[slot], expected, rtol=1e-5, atol=1e-5)


def test_inner_compress_errors():
    h = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"keep must be an integer in \[1, 5\]"):
        F.inner_compress(h, torch.rand(5), 0)
    with pytest.raises(ValueError, match="merge must be one of"):
        F.inner_compress(h, torch.rand(5), 2, merge="avg")
    with pytest.raises(ValueError, match=r"importance must have shape"):
        F.inner_compress(h, torch.rand(4), 2)


@pytest.mark.parametrize("count", [1, 4, 7])
def test_two_step_nearest_selection_equals_topk(count):
    from vidpress.functional.dpc_knn import GROUP, _largest

    g = torch.Generator().manual_seed(count)
    d2 = torch.rand(6, 8 * count * GROUP + GROUP, generator=g)
    d2[0, :] = 0.5  # all tied
    d2[1, ::GROUP] = 0.0  # the smallest values spread over many groups
    values, index = _largest(-d2, count)
    values = -values
    expected = torch.topk(d2, count, dim=1, largest=False, sorted=True).values
    assert torch.equal(values, expected)
    assert torch.equal(d2.gather(1, index), values)


@given(st.lists(st.booleans(), min_size=1, max_size=300))
def test_true_indices_match_nonzero(entries):
    mask = torch.tensor(entries)
    found = true_indices(mask, int(mask.sum()))
    assert torch.equal(found, torch.nonzero(mask).squeeze(1))


def test_a_plan_reaches_the_device_as_one_stacked_tensor():
    rows = [[3, 1, 2], [0, 5, 7]]
    assert torch.equal(send_plan(rows, torch.device("cpu")), torch.tensor(rows))
