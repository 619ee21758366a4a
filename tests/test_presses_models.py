"""Every press x both model families x {sdpa, eager} on tiny random models (ENGINEERING.md)."""

from __future__ import annotations

import pytest
import torch

import tiny_models as tm
from vidpress import functional as F
from vidpress.presses import PRESSES

FAMILIES = tuple(tm.TINY_FAMILIES)
ATTN = ("sdpa", "eager")
STEPS = 20

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.usefixtures("tiny_cpu"),
]


def test_every_family_has_a_tiny_model():
    """A family of ``adapters.registry`` (its variants aside) has its tiny model here."""
    from vidpress.adapters.registry import MODEL_TYPES

    assert set(FAMILIES) == set(MODEL_TYPES)


def _hook_count(model) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


@pytest.mark.parametrize("attn", ATTN)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", sorted(PRESSES))
def test_identity_then_restored(name, family, attn):
    """Retention 1.0 (inner stage off) reproduces the logits; nothing stays attached after."""
    model = tm.family_model(family, attn)
    inputs = tm.family_batch(family, tm.family_prompts(family)[:1])
    reference = model(**inputs).logits
    hooks = _hook_count(model)
    with tm.tiny_press(name, identity=True)(model) as run:
        logits = model(**inputs).logits
    assert run.stats[-1].kept_outer == run.stats[-1].tokens_in
    torch.testing.assert_close(logits, reference, rtol=0, atol=0)

    with pytest.raises(RuntimeError, match="boom"), tm.tiny_press(name)(model):
        model(**inputs)
        raise RuntimeError("boom")
    assert _hook_count(model) == hooks
    torch.testing.assert_close(model(**inputs).logits, reference, rtol=0, atol=0)


@pytest.mark.parametrize("attn", ATTN)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", sorted(PRESSES))
def test_lengths_cache_and_batch(name, family, attn):
    """Layer and KV-cache lengths follow the budgets; cached decoding equals recomputation;
    a left-padded batch equals its samples run alone."""
    model = tm.family_model(family, attn)
    prompts = tm.family_prompts(family)
    batch = tm.family_batch(family, prompts)
    press = tm.tiny_press(name)
    inner = press.inner_stage()
    layers = model.model.language_model.layers
    seen: list[int] = []
    handles = [
        layer.register_forward_hook(lambda m, a, out: seen.append(out.shape[1])) for layer in layers
    ]
    try:
        with press(model) as run:
            tokens, logits, cache = tm.greedy(model, batch, STEPS)
            stats = run.stats[-1]
            prefill_lengths = seen[: len(layers)]
            with run.replay():
                tokens_nc, logits_nc = tm.greedy_without_cache(model, batch, STEPS)
            singles = [tm.greedy(model, tm.family_batch(family, [p]), STEPS) for p in prompts]
    finally:
        for handle in handles:
            handle.remove()

    # budgets, per sample: outer count for layers < K, inner count for layers >= K
    per_video = stats.tokens_in  # one video per sample
    retention = 1.0 if press.stage1 is None else press.retention  # FastV: every token enters
    expected_outer = [F.token_budget(n, retention=retention) for n in per_video]
    assert stats.kept_outer == expected_outer
    assert [sum(f) for f in stats.kept_per_frame] == expected_outer
    real = batch["attention_mask"].sum(dim=1)
    outer_len = max(int(r) - n + k for r, n, k in zip(real, per_video, expected_outer, strict=True))
    inner_len = outer_len
    k_layer = len(layers)
    if inner is not None:
        k_layer = inner.layer
        expected_inner = [F.token_budget(k, retention=inner.keep) for k in expected_outer]
        assert stats.kept_inner == expected_inner
        inner_len = max(
            int(r) - n + k for r, n, k in zip(real, per_video, expected_inner, strict=True)
        )
    plans = [press.plan(n, len(layers)) for n in per_video]  # the press's own account
    assert [p.outer_tokens for p in plans] == stats.kept_outer
    assert [p.inner_tokens for p in plans] == (
        stats.kept_outer if inner is None else stats.kept_inner
    )
    want = [outer_len if i < k_layer else inner_len for i in range(len(layers))]
    assert prefill_lengths == want
    assert [cache.get_seq_length(i) for i in range(len(layers))] == [w + STEPS - 1 for w in want]

    # cached decoding equals recomputation of the compressed prompt
    assert torch.equal(tokens, tokens_nc)
    torch.testing.assert_close(logits, logits_nc, rtol=1e-5, atol=1e-5)

    # the batch equals each sample alone (tokens, and logits to a tight tolerance)
    for i, (tokens_1, logits_1, _) in enumerate(singles):
        assert torch.equal(tokens[i], tokens_1[0])
        torch.testing.assert_close(logits[i], logits_1[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", sorted(PRESSES))
def test_eager_and_sdpa_keep_the_same_tokens(name, family):
    inputs = tm.family_batch(family, tm.family_prompts(family))
    kept = []
    for attn in ATTN:
        model = tm.family_model(family, attn)
        with tm.tiny_press(name)(model) as run:
            model(**inputs)
        stats = run.stats[-1]
        kept.append(
            (
                stats.kept_positions,
                stats.inner_keep,
                stats.rows,
                stats.rows_inner,
            )
        )
    (outer_a, inner_a, rows_a, rows_inner_a), (outer_b, inner_b, rows_b, rows_inner_b) = kept
    assert all(torch.equal(a, b) for a, b in zip(outer_a, outer_b, strict=True))
    assert torch.equal(rows_a, rows_b)
    if inner_a is not None:
        assert all(torch.equal(a, b) for a, b in zip(inner_a, inner_b, strict=True))
        assert torch.equal(rows_inner_a, rows_inner_b)
