"""The testbed builds into a folder that stock transformers loads and runs on video."""

import pytest
import torch
from transformers import LlavaOnevisionForConditionalGeneration

from vidpress.testbed import FrameSpec, TestbedProcessor, assemble_testbed, build_testbed

PX, FRAMES = 112, 8  # 8x8 patches -> 4x4 = 16 tokens per frame


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = build_testbed(tmp_path_factory.mktemp("testbed"), frames_px=PX)
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(out).eval()
    return out, model, TestbedProcessor.from_pretrained(out)


def _video(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (FRAMES, 3, PX, PX), generator=gen, dtype=torch.uint8)


def test_config_and_tokens(built):
    _, model, proc = built
    cfg = model.config
    assert cfg.vision_config.model_type == "dinov2" and cfg.text_config.model_type == "llama"
    assert cfg.vision_feature_select_strategy == "default" and cfg.vision_feature_layer == -1
    assert cfg.video_token_id == proc.video_token_id
    assert proc.tokenizer.convert_tokens_to_ids("<image>") == cfg.image_token_id
    assert proc.spec.tokens_per_frame == 16
    assert FrameSpec().tokens_per_frame == 196  # the default 392 px: 28x28 -> 14x14
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def test_video_forward_and_generate(built):
    _, model, proc = built
    inputs = proc([_video(0), _video(1)], ["What is shown?", "Which colour? A. red B. blue"])
    n_video = (inputs["input_ids"] == proc.video_token_id).sum(1)
    assert n_video.tolist() == [FRAMES * 16 + 1] * 2
    assert inputs["pixel_values_videos"].shape == (2, FRAMES, 3, PX, PX)
    with torch.no_grad():
        feats = model.model.get_video_features(inputs["pixel_values_videos"]).pooler_output
        logits = model(**inputs).logits
        gen = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert feats.shape == (2, FRAMES * 16, 576)
    assert logits.shape[:2] == inputs["input_ids"].shape and torch.isfinite(logits).all()
    assert gen.shape[1] > inputs["input_ids"].shape[1]


def test_reload_matches_memory_and_projector_state(built, tmp_path):
    _, model, proc = built
    fresh, _ = assemble_testbed(PX, seed=0)
    inputs = proc(_video(2), "What happens?", answers=["B"])
    assert (inputs["labels"] != -100).sum() == 2  # the letter and <|im_end|>
    inputs.pop("labels")
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, fresh(**inputs).logits)
    proj = {
        k: torch.full_like(v, 0.01)
        for k, v in model.model.multi_modal_projector.state_dict().items()
    }
    other = build_testbed(tmp_path / "trained", projector_state=proj, frames_px=PX)
    loaded = LlavaOnevisionForConditionalGeneration.from_pretrained(other)
    assert torch.equal(loaded.model.multi_modal_projector.linear_1.weight, proj["linear_1.weight"])
    with pytest.raises(ValueError, match="not a projector"):
        assemble_testbed(PX, projector_state={"lm_head.weight": torch.zeros(1)})
