"""Analytic FLOPs: the paper's Table 1, the exact convention's sanity, configs read back."""

from __future__ import annotations

import pytest

from vidpress.metrics import MODEL_SPECS, count_flops, spec_from_config
from vidpress.metrics.flops import exact_prefill_layer, vision_tower_flops

FULL_TFLOPS = 41.4

# Table 1 of the paper (PAPER_RESULTS.md): (row, press settings, TFLOPs, ratio %). FastV keeps
# every token before its layer K = 2 and the given share from K on, counted after K as the others.
TABLE1 = [("LLaVA-OV-7B", "none", 41.4, 100.0)]
for _r, _fastv, _outer, _inner, _ratios in [
    (10, 7.9, 4.0, 3.4, (19.1, 9.6, 8.2)),
    (5, 6.4, 2.2, 2.0, (15.5, 5.4, 4.7)),
    (2, 5.5, 1.2, 1.1, (13.3, 2.9, 2.6)),
    (1, 5.2, 0.9, 0.8, (12.6, 2.1, 2.0)),
]:
    TABLE1 += [
        (f"FastV 100%/{_r}%", f"fastv@{_r}", _fastv, _ratios[0]),
        (f"VisionZip {_r}%", f"visionzip@{_r}", _outer, _ratios[1]),
        (f"FastVID {_r}%", f"fastvid@{_r}", _outer, _ratios[1]),
        (f"Ours w/o merging {_r}%", f"unified:inner_merging=false@{_r}", _outer, _ratios[1]),
        (f"HoliTom {_r}%", f"holitom@{_r}", _inner, _ratios[2]),
        (f"Ours {_r}%/{_r / 2:g}%", f"unified@{_r}/{_r / 2:g}", _inner, _ratios[2]),
    ]
assert len(TABLE1) == 25


def paper_flops(press, **kwargs):
    return count_flops("llava-onevision-7b", press=press, convention="paper", **kwargs)


@pytest.mark.parametrize(
    ("press", "published"), [row[1:3] for row in TABLE1], ids=[row[0] for row in TABLE1]
)
def test_paper_convention_reproduces_table1_within_5_percent(press, published):
    computed = paper_flops(press).tflops
    assert computed == pytest.approx(published, rel=0.05)


@pytest.mark.parametrize(
    ("press", "published", "ratio"), [row[1:] for row in TABLE1], ids=[row[0] for row in TABLE1]
)
def test_per_frame_budgets_reproduce_every_printed_digit(press, published, ratio):
    full = paper_flops("none").tflops
    computed = paper_flops(press, budget_rounding="per_frame").tflops
    assert round(computed, 1) == published
    assert round(100 * computed / full, 1) == ratio


def test_paper_budgets_follow_the_project_rounding():
    tokens = paper_flops("unified@2/1").tokens
    assert (tokens.visual_tokens, tokens.outer_tokens, tokens.inner_tokens) == (6272, 125, 63)
    fastv = paper_flops("fastv@2").tokens
    assert (fastv.outer_tokens, fastv.inner_tokens, fastv.short_from_layer) == (6272, 125, 3)


def test_paper_convention_counts_llm_visual_tokens_only():
    result = count_flops(press="none", convention="paper", text_tokens=500)
    assert result.vision_tower == result.projector == result.compression == result.lm_head == 0
    assert result.inputs.text_tokens == 0
    d, m, n, layers = 3584, 18944, 6272, 28
    prefill = layers * (4 * n * d * d + 2 * n * n * d + 2 * n * d * m)
    assert result.prefill.total == prefill


def test_exact_exceeds_paper_for_the_vanilla_model():
    for model in MODEL_SPECS:
        exact = count_flops(model, convention="exact")
        paper = count_flops(model, convention="paper")
        assert exact.total > paper.total
        assert exact.prefill.total > paper.prefill.total


def test_gqa_kv_projections_are_smaller_than_q():
    result = count_flops(convention="exact")
    assert result.prefill.k_proj == result.prefill.v_proj
    assert result.prefill.k_proj * 7 == result.prefill.q_proj  # 28 heads / 4 KV heads
    assert result.prefill.o_proj == result.prefill.q_proj


def test_exact_layer_terms():
    llm = MODEL_SPECS["llava-onevision-7b"].llm
    one = exact_prefill_layer(llm, 1)
    assert one.attention == 2 * 2 * llm.q_dim  # one query-key pair: QK^T and AV
    assert one.mlp == 2 * 3 * llm.hidden * llm.mlp
    two = exact_prefill_layer(llm, 2)
    assert two.attention == 3 * one.attention  # causal: 3 pairs


@pytest.mark.parametrize("press", ["unified", "visionzip", "fastvid", "holitom", "fastv", "random"])
def test_vision_tower_and_projector_do_not_depend_on_retention(press):
    low, high = (count_flops(press=f"{press}@{r}") for r in (1, 50))
    assert low.vision_tower == high.vision_tower > 0
    assert low.projector == high.projector > 0


@pytest.mark.parametrize("convention", ["paper", "exact"])
@pytest.mark.parametrize("press", ["unified:inner_merging=false", "fastv", "uniform", "holitom"])
def test_llm_flops_grow_with_retention(press, convention):
    llm = [count_flops(press=f"{press}@{r}", convention=convention) for r in (1, 2, 5, 10, 50, 100)]
    totals = [r.prefill.total + r.decode.total for r in llm]
    assert totals == sorted(totals) and len(set(totals)) == len(totals)


def test_inner_merging_saves_flops():
    outer = count_flops(press="unified:inner_merging=false@10")
    merged = count_flops(press="unified@10/5")
    assert merged.prefill.total < outer.prefill.total
    assert merged.compression > outer.compression


def test_retention_one_keeps_every_token():
    full = count_flops(press="none")
    for press in ("unified:inner_merging=false", "uniform", "random"):
        same = count_flops(press=f"{press}@100")
        assert same.prefill == full.prefill and same.decode == full.decode


def test_qwen2_5_vl_vision_counts_windows_and_temporal_patches():
    spec = MODEL_SPECS["qwen2.5-vl-7b"]
    vision = spec.vision
    assert vision.patches_per_group == 1024 and vision.projector_tokens_per_group == 256
    assert spec.tokens_per_frame * vision.temporal_patch == 256
    # 2 frames share one temporal patch: 32 and 31 frames cost the same.
    assert vision_tower_flops(vision, 32) == vision_tower_flops(vision, 31)
    assert vision_tower_flops(vision, 32) == 16 * vision_tower_flops(vision, 2)
    full = type(vision)(**{**vision.__dict__, "window_patches": None})
    assert vision_tower_flops(vision, 2) < vision_tower_flops(full, 2)


def test_more_frames_cost_more():
    a, b = (count_flops(press="unified@2", frames=f) for f in (32, 64))
    assert b.vision_tower == 2 * a.vision_tower
    assert (a.tokens.outer_tokens, b.tokens.outer_tokens) == (125, 251)  # 2% of 12,544


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"press": "unified:retention=0.0"}, "retention"),
        ({"press": "unified:retention=1.5"}, "retention"),
        ({"press": "unified:retention=0.1,inner_keep=0.0"}, "inner_keep"),
        ({"press": "nope"}, "press"),
        ({"model": "gpt-video"}, "model"),
        ({"frames": 0}, "frames"),
        ({"tokens_per_frame": 0}, "tokens_per_frame"),
        ({"convention": "fastv"}, "convention"),
        ({"budget_rounding": "ceil"}, "budget_rounding"),
        ({"press": "none:retention=0.5"}, "retention"),
        ({"press": "visionzip:retention=0.1,inner_keep=0.5"}, "inner_keep"),
        ({"press": "uniform:retention=0.1,inner_layer=3"}, "layer"),
        ({"press": "fastv:retention=0.1,inner_layer=28"}, "layer"),
    ],
)
def test_bad_input_names_the_argument(kwargs, named):
    with pytest.raises(ValueError, match=named):
        count_flops(**kwargs)


def _write(config, tmp_path):
    config.save_pretrained(tmp_path)
    return tmp_path


def test_spec_from_llava_onevision_config_round_trip(tmp_path):
    from transformers import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig

    builtin = MODEL_SPECS["llava-onevision-7b"]
    llm, vision = builtin.llm, builtin.vision
    config = LlavaOnevisionConfig(
        text_config=Qwen2Config(
            num_hidden_layers=llm.layers,
            hidden_size=llm.hidden,
            num_attention_heads=llm.heads,
            num_key_value_heads=llm.kv_heads,
            intermediate_size=llm.mlp,
            vocab_size=llm.vocab,
        ).to_dict(),
        vision_config=SiglipVisionConfig(
            num_hidden_layers=vision.layers,
            hidden_size=vision.hidden,
            num_attention_heads=vision.heads,
            intermediate_size=vision.mlp,
            patch_size=vision.patch_size,
            image_size=vision.image_size,
        ).to_dict(),
    )
    for source in (_write(config, tmp_path), tmp_path / "config.json", config):
        spec = spec_from_config(source)
        assert (spec.llm, spec.vision, spec.projector) == (llm, vision, builtin.projector)
        assert (spec.frames, spec.tokens_per_frame) == (32, 196)
    from_path = count_flops(str(tmp_path), press="unified@2", convention="paper")
    from_name = count_flops(press="unified@2", convention="paper")
    assert from_path.total == from_name.total


def test_spec_from_qwen2_5_vl_config_round_trip(tmp_path):
    from transformers import Qwen2_5_VLConfig

    builtin = MODEL_SPECS["qwen2.5-vl-7b"]
    llm = builtin.llm
    config = Qwen2_5_VLConfig(
        text_config={
            "num_hidden_layers": llm.layers,
            "hidden_size": llm.hidden,
            "num_attention_heads": llm.heads,
            "num_key_value_heads": llm.kv_heads,
            "intermediate_size": llm.mlp,
            "vocab_size": llm.vocab,
        },
        vision_config={"hidden_size": 1280, "out_hidden_size": llm.hidden},
    )
    spec = spec_from_config(_write(config, tmp_path))
    assert (spec.llm, spec.vision, spec.projector) == (llm, builtin.vision, builtin.projector)
    assert spec.tokens_per_frame == builtin.tokens_per_frame


def test_spec_from_llava_configs_count_cls_and_pooling(tmp_path):
    from transformers import LlavaConfig, LlavaNextVideoConfig

    spec = spec_from_config(_write(LlavaConfig(), tmp_path / "llava"))
    assert spec.vision.class_token and spec.vision.patches_per_group == 24 * 24 + 1
    assert spec.tokens_per_frame == 576
    video = spec_from_config(_write(LlavaNextVideoConfig(), tmp_path / "next_video"))
    assert video.tokens_per_frame == 12 * 12


def test_spec_from_config_rejects_unknown_families(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="model_type must be one of"):
        spec_from_config(tmp_path)
    with pytest.raises(ValueError, match="config.json"):
        spec_from_config(tmp_path / "missing")
