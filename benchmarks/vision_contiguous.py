"""LLaVA-OV's vision tower with and without the adapter's contiguous residual stream (GPU).

    python benchmarks/vision_contiguous.py --out benchmarks/results/vision_contiguous_h200.json

SigLIP's embeddings hand the encoder a strided view (``flatten(2).transpose(1, 2)``); the
LLaVA-OneVision adapter's forward hook (``attach_hooks``, on while a press is attached) makes it
contiguous. This times the adapter's video feature path (the stock tower and projector, then
pooling) on the LLaVA-OV-7B architecture (random bf16 weights, 32 frames of 384 px) with and
without that hook (CUDA events, warm-up, medians) and compares the features.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics

import torch
import transformers

from vidpress.adapters.registry import get_adapter
from vidpress.metrics.architectures import build_architecture, frame_size, video_prompt
from vidpress.metrics.latency import Clock, time_call


def feature_args(adapter, inputs: dict) -> tuple:
    """The arguments of the adapter's video feature path for ``inputs``."""
    cfg = adapter.model.config
    return (
        inputs["pixel_values_videos"],
        cfg.vision_feature_layer,
        cfg.vision_feature_select_strategy,
    )


def time_features(adapter, inputs: dict, repeats: int) -> tuple[list[float], torch.Tensor]:
    """CUDA-event milliseconds of ``repeats`` passes of the adapter's video feature path
    (tower, projector, channels-last pooling; after 2 warm-ups), and the features of one more."""
    args = feature_args(adapter, inputs)
    times = time_call(lambda: adapter._video_features(*args), Clock("cuda"), 2, repeats)
    return times, adapter._video_features(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    model = build_architecture("llava-onevision-7b", "cuda")
    inputs = video_prompt(
        model, "llava_onevision", args.frames, frame_size("llava_onevision", False)
    )
    adapter = get_adapter(model)
    with torch.no_grad():
        strided, reference = time_features(adapter, inputs, args.repeats)
        handles = adapter.attach_hooks()
        try:
            contiguous, features = time_features(adapter, inputs, args.repeats)
        finally:
            for handle in handles:
                handle.remove()
    diff = (features.float() - reference.float()).abs()
    record = {
        "command": f"python benchmarks/vision_contiguous.py --frames {args.frames} "
        f"--repeats {args.repeats} --out {args.out}",
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "frames": args.frames,
        "hooks": len(handles),
        "strided_ms": statistics.median(strided),
        "contiguous_ms": statistics.median(contiguous),
        "strided_ms_all": strided,
        "contiguous_ms_all": contiguous,
        "features_equal": bool(diff.max() == 0),
        "features_max_abs_diff": float(diff.max()),
        "features_max_abs": float(reference.float().abs().max()),
    }
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
    print(json.dumps({k: v for k, v in record.items() if not k.endswith("_all")}))


if __name__ == "__main__":
    main()
