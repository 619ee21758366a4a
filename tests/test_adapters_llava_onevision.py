"""LLaVA-OneVision adapter: vision scores, the compressed prompt, positions, errors, stats."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import Qwen2Config, Qwen2ForCausalLM

import tiny_models as tm
import vidpress
from vidpress.adapters.base import Timer
from vidpress.adapters.llava_onevision import scored_layer

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.usefixtures("tiny_cpu"),
]


def _pool(x: torch.Tensor) -> torch.Tensor:
    """[F, 49] on the 7x7 patch grid -> [F, 16] as OV pools its features."""
    grid = x.view(-1, 1, 7, 7)
    return nn.functional.interpolate(grid, size=[4, 4], mode="bilinear").flatten(1)


@pytest.mark.parametrize("vision", ["siglip", "dinov2"])
def test_scores_match_the_eager_attention_of_the_projector_layer(vision):
    """CLS row (DINOv2) or mean received attention (SigLIP), from q/k, pooled like the features."""
    sdpa = tm.llava_onevision("sdpa", vision)
    eager = tm.llava_onevision("eager", vision)
    prompt = tm.ov_prompt()
    inputs = tm.ov_batch([prompt])
    attentions = eager.model.vision_tower(
        prompt["pixel_values_videos"][0], output_attentions=True
    ).attentions[-1]  # [F, H, L, L], last layer = vision_feature_layer -1
    if vision == "dinov2":
        reference = _pool(attentions[:, :, 0, 1:].mean(dim=1))
    else:
        reference = _pool(attentions.mean(dim=(1, 2)))
    run = vidpress.UnifiedPress(retention=0.25, inner_merging=False)(sdpa)
    mask = inputs["attention_mask"]
    prompt_ = run.adapter.prepare(inputs, mask, {"scores", "keys"}, Timer(mask.device))
    video = prompt_.videos[0]
    torch.testing.assert_close(video.scores, reference, rtol=1e-5, atol=1e-6)
    assert video.keys.shape == (4, 16, 16)  # head-mean keys pooled to the token grid
    assert video.tokens.shape == (4, 16, 32) and video.grid == (4, 4)


@pytest.mark.parametrize(("vision", "layer"), [("siglip", -1), ("dinov2", [0, -1])])
def test_frame_drop_equals_the_stock_model_on_the_kept_frames(vision, layer):
    """An outer stage that keeps whole frames gives exactly the stock model's logits on a
    prompt made of those frames only (newline kept, contiguous positions); also with several
    ``vision_feature_layer``s, whose outputs the projector reads concatenated."""
    model = tm.llava_onevision(vision=vision, layer=layer)
    prompt = tm.ov_prompt(frames=4)
    with vidpress.FrameDropPress(retention=0.5)(model) as run:
        logits = model(**tm.ov_batch([prompt])).logits
    assert run.stats[-1].kept_per_frame == [[0, 16, 0, 16]]
    short = dict(prompt, pixel_values_videos=prompt["pixel_values_videos"][:, [1, 3]])
    short["ids"] = [t for t in prompt["ids"] if t != tm.OV_VIDEO]
    short["ids"][3:3] = [tm.OV_VIDEO] * (2 * 16 + 1)
    torch.testing.assert_close(logits, model(**tm.ov_batch([short])).logits, rtol=0, atol=1e-6)


def test_the_deepest_selected_layer_is_scored():
    assert scored_layer(-1, 12) == 11 and scored_layer(9, 12) == 8
    assert scored_layer([0, 9], 12) == 8 and scored_layer([3, -1], 12) == 11
    assert scored_layer(0, 12) == -1  # the patch embeddings: no attention (the adapter raises)


def test_rows_and_positions_of_the_compressed_prompt():
    model = tm.llava_onevision()
    befores = [2, 6]
    prompts = [tm.ov_prompt(before=n, after=3, seed=n) for n in befores]
    inputs = tm.ov_batch(prompts)
    for mode in ("contiguous", "original"):
        with vidpress.RandomPress(retention=0.25, position_ids=mode)(model) as run:
            model(**inputs)
        stats = run.stats[-1]
        for b, prompt in enumerate(prompts):
            pad = inputs["input_ids"].shape[1] - len(prompt["ids"])
            before = befores[b]
            kept = stats.kept_positions[b]
            flat = kept[:, 0] * 16 + kept[:, 1] * 4 + kept[:, 2]
            video_rows = pad + before + flat
            text_after = torch.arange(pad + before + 64, inputs["input_ids"].shape[1])  # newline+
            expected = torch.cat([torch.arange(pad, pad + before), video_rows, text_after])
            rows = stats.rows[b]
            assert torch.equal(rows[rows >= 0], expected)
            positions = stats.positions[b][rows >= 0]
            if mode == "contiguous":
                assert torch.equal(positions, torch.arange(len(expected)))
            else:
                assert torch.equal(positions, expected - pad)


def test_stats():
    model = tm.llava_onevision()
    inputs = tm.ov_batch([tm.ov_prompt(frames=4)])
    with vidpress.UnifiedPress(retention=0.25, inner_layer=2)(model) as run:
        model(**inputs)
        model(**inputs)
    assert len(run.stats) == 2
    stats = run.stats[-1]
    assert stats.tokens_in == [64] and stats.kept_outer == [16] and stats.kept_inner == [8]
    assert sum(stats.kept_per_frame[0]) == 16 and len(stats.kept_per_frame[0]) == 4
    assert sum(stats.kept_per_frame_inner[0]) == 8
    assert stats.outer_seconds > 0 and stats.inner_seconds > 0
    assert stats.inner_keep[0].shape == (8,)


def test_clear_errors():
    model = tm.llava_onevision()
    inputs = tm.ov_batch([tm.ov_prompt()])
    reference = model(**inputs).logits
    with pytest.raises(
        ValueError, match="supported models: LlavaOnevisionForConditionalGeneration"
    ):
        vidpress.UnifiedPress()(Qwen2ForCausalLM(Qwen2Config(**tm.TEXT, vocab_size=64)))
    with pytest.raises(ValueError, match="retention must be in"):
        vidpress.UnifiedPress(retention=0.0)
    with pytest.raises(ValueError, match=r"inner_layer must be in \[1, 3\]"):
        vidpress.UnifiedPress(inner_layer=18)(model)
    with vidpress.UnifiedPress(retention=0.25, inner_merging=False)(model):
        with pytest.raises(ValueError, match="video inputs only"):
            model(**inputs, pixel_values=torch.randn(1, 3, 28, 28), image_sizes=[[28, 28]])
        with pytest.raises(ValueError, match="has no video"):
            model(input_ids=inputs["input_ids"][:, :3])
        with pytest.raises(RuntimeError, match="already attached"), vidpress.FastVPress()(model):
            pass
    torch.testing.assert_close(model(**inputs).logits, reference, rtol=0, atol=0)


def test_manual_decoding_loop_with_the_returned_cache():
    """model(...) then model(next token, past_key_values=...) continues the compressed prompt."""
    model = tm.llava_onevision()
    inputs = tm.ov_batch([tm.ov_prompt()])
    with tm.tiny_press("unified")(model) as run:
        tokens, _, _ = tm.greedy(model, inputs, steps=5)
        out = model(**inputs)
        manual = []
        for _ in range(5):
            nxt = out.logits[:, -1, : tm.SPECIAL].argmax(dim=-1, keepdim=True)
            manual.append(nxt)
            out = model(input_ids=nxt, past_key_values=out.past_key_values)
    assert torch.equal(torch.cat(manual, dim=1), tokens)
    assert len(run.stats) == 2


@pytest.mark.parametrize("name", ["unified", "fastv"])
def test_dinov2_and_llama_text_model(name):
    """The testbed's combination (CLS vision tower, Llama decoder): cache and batch still agree."""
    model = tm.llava_onevision(vision="dinov2", text="llama")
    prompts = tm.family_prompts("llava_onevision")
    batch = tm.ov_batch(prompts)
    with tm.tiny_press(name)(model) as run:
        tokens, logits, _ = tm.greedy(model, batch, steps=8)
        with run.replay():
            tokens_nc, logits_nc = tm.greedy_without_cache(model, batch, steps=8)
        alone = [tm.greedy(model, tm.ov_batch([p]), steps=8) for p in prompts]
    assert torch.equal(tokens, tokens_nc)
    torch.testing.assert_close(logits, logits_nc, rtol=1e-5, atol=1e-5)
    for i, (tokens_1, logits_1, _) in enumerate(alone):
        assert torch.equal(tokens[i], tokens_1[0])
        torch.testing.assert_close(logits[i], logits_1[0], rtol=1e-5, atol=1e-5)
