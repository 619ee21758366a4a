"""Qwen2.5-VL adapter: M-RoPE coordinates of kept tokens, decoding positions, vision scores."""

from __future__ import annotations

import pytest
import torch

import tiny_models as tm
import vidpress
from vidpress.adapters.base import Timer

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.usefixtures("tiny_cpu"),
]


def _stock_positions(model, inputs) -> torch.Tensor:
    """[3, B, L] M-RoPE positions of the uncompressed prompt, from the stock model."""
    positions, _ = model.model.get_rope_index(
        inputs["input_ids"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
        video_grid_thw=inputs["video_grid_thw"],
        attention_mask=inputs["attention_mask"],
    )
    return positions


def _record(module, store: list, key: str):
    return module.register_forward_pre_hook(
        lambda m, a, kw: store.append(kw[key]), with_kwargs=True
    )


def test_kept_tokens_carry_their_original_mrope_coordinates():
    model = tm.qwen2_5_vl()
    befores = [3, 7, 1]
    prompts = [
        tm.qwen_prompt(frames=f, height=8, width=w, before=n, seed=n)
        for f, w, n in zip([4, 6, 2], [8, 8, 12], befores, strict=True)
    ]
    inputs = tm.qwen_batch(prompts)
    stock = _stock_positions(model, inputs)
    given, layer_k = [], []
    press = vidpress.UnifiedPress(retention=0.25, inner_layer=tm.INNER_LAYER)
    with press(model) as run:
        handles = [
            _record(model.model.language_model, given, "position_ids"),
            _record(
                model.model.language_model.layers[tm.INNER_LAYER], layer_k, "position_embeddings"
            ),
        ]
        model(**inputs)
        for handle in handles:
            handle.remove()
    stats = run.stats[-1]
    positions = given[0][-3:]  # [3, B, L']
    for b, n in enumerate(befores):
        rows = stats.rows[b]
        real = rows >= 0
        assert torch.equal(positions[:, b, real], stock[:, b, rows[real]])
        # explicitly: a kept (or merged) token sits at its (centre's) (t, h, w)
        kept = stats.kept_positions[b]
        start = n + 1  # text before + <|vision_start|>
        t, h, w = kept.T
        visual = positions[:, b, real][:, n + 1 : n + 1 + len(kept)]
        assert torch.equal(visual, torch.stack([start + 2 * t, start + h, start + w]))
    # layers >= K: the rotary embedding of the kept rows' original coordinates
    inner_rows = stats.rows_inner
    expected = torch.stack(
        [stock[i].gather(1, inner_rows.clamp(min=0)) for i in range(3)]
    )  # [3, B, L'']
    cos, _ = model.model.language_model.rotary_emb(layer_k[0][0], expected)
    real = inner_rows >= 0
    torch.testing.assert_close(layer_k[0][0][real], cos[real], rtol=0, atol=1e-6)


def test_decoding_positions_continue_the_original_ones():
    model = tm.qwen2_5_vl()
    inputs = tm.qwen_batch([tm.qwen_prompt(before=2, seed=1), tm.qwen_prompt(before=5, seed=2)])
    stock, pressed = [], []
    handle = _record(model.model.language_model, stock, "position_ids")
    tm.greedy(model, inputs, steps=4)
    handle.remove()
    with vidpress.UnifiedPress(retention=0.25, inner_layer=tm.INNER_LAYER)(model):
        handle = _record(model.model.language_model, pressed, "position_ids")
        tm.greedy(model, inputs, steps=4)
        handle.remove()
    for before, after in zip(stock[1:], pressed[1:], strict=True):
        assert torch.equal(before[-3:], after[-3:])


def test_retention_one_generates_like_the_stock_model():
    model = tm.qwen2_5_vl()
    inputs = tm.qwen_batch([tm.qwen_prompt(before=2, seed=1), tm.qwen_prompt(frames=2, seed=2)])
    tokens, logits, _ = tm.greedy(model, inputs, steps=8)
    with tm.tiny_press("unified", identity=True)(model):
        tokens_p, logits_p, _ = tm.greedy(model, inputs, steps=8)
    assert torch.equal(tokens, tokens_p)
    torch.testing.assert_close(logits, logits_p, rtol=0, atol=0)


@pytest.mark.parametrize("full_attention_blocks, windows", [((1,), 1), ((0,), 4)])
def test_scores_are_received_attention_within_the_last_blocks_segments(
    full_attention_blocks, windows
):
    """Each attention segment hands out a total of 1; a merged token averages its 4 patches, so
    a temporal patch's scores sum to (segments in it) / 4. Eager and SDPA agree."""
    inputs = tm.qwen_batch([tm.qwen_prompt(frames=4), tm.qwen_prompt(frames=2, width=12, seed=3)])
    mask = inputs["attention_mask"]
    scores = []
    for attn in ("sdpa", "eager"):
        model = tm.qwen2_5_vl(attn, full_attention_blocks=full_attention_blocks)
        run = vidpress.UnifiedPress(inner_merging=False)(model)
        prompt = run.adapter.prepare(inputs, mask, {"scores", "keys"}, Timer(mask.device))
        scores.append([v.scores for v in prompt.videos])
        assert [tuple(v.keys.shape) for v in prompt.videos] == [(2, 16, 16), (1, 24, 16)]
    first = scores[0][0]
    assert first.shape == (2, 16)
    torch.testing.assert_close(first.sum(dim=1), torch.full((2,), windows / 4))
    for a, b in zip(*scores, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_images_are_refused():
    model = tm.qwen2_5_vl()
    inputs = tm.qwen_batch([tm.qwen_prompt()])
    with vidpress.RandomPress()(model), pytest.raises(ValueError, match="video inputs only"):
        model(**inputs, pixel_values=torch.randn(16, 96), image_grid_thw=torch.tensor([[1, 4, 4]]))


def test_two_videos_in_one_sample():
    """Video blocks are found from the token ids, several per sample; M-RoPE and decoding hold."""
    model = tm.qwen2_5_vl()
    first, second, other = (tm.qwen_prompt(frames=f, seed=s) for f, s in [(4, 1), (2, 2), (4, 3)])
    two = dict(first, ids=first["ids"] + second["ids"])
    inputs = tm.qwen_batch([two, other])
    inputs["pixel_values_videos"] = torch.cat(
        [p["pixel_values_videos"] for p in (first, second, other)]
    )
    inputs["video_grid_thw"] = torch.tensor([p["grid"] for p in (first, second, other)])
    stock = _stock_positions(model, inputs)
    with tm.tiny_press("unified")(model) as run:
        tokens, logits, _ = tm.greedy(model, inputs, steps=6)
        stats = run.stats[0]
        with run.replay():
            tokens_nc, logits_nc = tm.greedy_without_cache(model, inputs, steps=6)
    assert stats.tokens_in == [48, 32] and stats.kept_outer == [12, 8]
    assert len(stats.kept_per_frame) == 3 and stats.kept_inner == [6, 4]
    assert torch.equal(tokens, tokens_nc)
    torch.testing.assert_close(logits, logits_nc, rtol=1e-5, atol=1e-5)
    positions = stats.positions[-3:]
    for b in range(2):
        real = stats.rows[b] >= 0
        assert torch.equal(positions[:, b, real], stock[:, b, stats.rows[b][real]])
