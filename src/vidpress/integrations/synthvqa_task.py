"""A local lmms-eval task of SynthVQA items (videos, a JSONL, the YAML and its ``utils.py``).

``export_synthvqa_task`` needs no lmms-eval import; run the task with the vidpress lmms-eval
models (``integrations.lmms_eval``) and ``--include_path out_dir``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TASK_UTILS = '''"""doc_to_visual / doc_to_text of a local SynthVQA task written by vidpress."""


def doc_to_visual(doc):
    return [doc["video"]]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["prompt"]
'''


def write_lossless_video(frames: torch.Tensor, path: Path, fps: int = 8) -> Path:
    """uint8 [T, 3, H, W] -> a lossless FFV1 video (RGB planes), decoded back bit-exact."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.width, stream.height = int(frames.shape[3]), int(frames.shape[2])
        stream.pix_fmt = "bgr0"
        for frame in frames.permute(0, 2, 3, 1).contiguous().numpy():
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in stream.encode(video_frame.reformat(format="bgr0")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def export_synthvqa_task(suite, indices, out_dir, name: str = "synthvqa_local") -> Path:
    """Write a local lmms-eval multiple-choice task of SynthVQA items ``indices`` to ``out_dir``.

    Each item becomes a lossless video (``<name>_videos/item<i>.mkv``) and a JSONL row (video,
    prompt, answer index, family). The task scores the option letters' log-likelihoods ("A".."D",
    no delimiter) with ``acc``: the prediction is the letter with the highest log-probability at
    the answer position, as ``vidpress eval`` scores. Use with ``--include_path out_dir``.
    """
    out_dir = Path(out_dir).resolve()
    videos = out_dir / f"{name}_videos"
    videos.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in indices:
        item = suite[index]
        video = write_lossless_video(item.frames, videos / f"item{index}.mkv")
        rows.append(
            {
                "index": int(index),
                "video": str(video),
                "prompt": item.prompt(),
                "answer": int(item.answer),
                "family": item.family,
            }
        )
    data = out_dir / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out_dir / f"{name}_utils.py").write_text(TASK_UTILS)
    yaml = f"""task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_visual: !function {name}_utils.doc_to_visual
doc_to_text: !function {name}_utils.doc_to_text
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 0
"""
    (out_dir / f"{name}.yaml").write_text(yaml)
    return out_dir
