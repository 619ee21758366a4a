"""``vidpress run``: answer a question about a video with a local checkpoint under a press, and
print (or write as JSON) the answer, the tokens kept, the FLOPs and the timings."""

from __future__ import annotations

import argparse
import json
import sys

from vidpress.adapters.inputs import Prepared
from vidpress.commands.arguments import (
    checkpoint_argument,
    device_argument,
    dtype_argument,
    press_arguments,
    press_from_args,
)
from vidpress.inference import (
    check_run_inputs,
    flops,
    generate,
    prepare,
    print_notes,
    stats_dict,
)
from vidpress.loading import load_model
from vidpress.provenance import press_record, provenance

HELP = "answer a question about a video with a local model under a press"
DESCRIPTION = (
    "Decode a video (PyAV), sample frames as the model's processor does, ask the question with "
    "the press attached, print the answer and the press's run.stats (tokens kept, per frame, "
    "timings) and the FLOPs."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    checkpoint_argument(parser)
    parser.add_argument("--video", required=True, metavar="FILE", help="video file (PyAV decodes)")
    parser.add_argument(
        "--frames",
        type=int,
        help="frames to sample (default: the model family's: 32; Qwen2.5-VL: --fps)",
    )
    parser.add_argument(
        "--fps", type=float, help="Qwen2.5-VL: frames per second to sample (default 2)"
    )
    device_argument(parser)
    dtype_argument(parser)
    parser.add_argument("--question", required=True, metavar="TEXT", help="the question")
    press_arguments(parser)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def format_press(press) -> str:
    """The press line: its short name and every parameter, or "none (uncompressed)"."""
    if press is None:
        return "none (uncompressed)"
    record = press_record(press)
    params = ", ".join(f"{k}={v}" for k, v in record["params"].items())
    return f"{record['name']} ({params})"


def format_tokens(stats, visual_tokens: int) -> str:
    """The tokens line: visual tokens in, entering the LLM, and from the inner layer on."""
    if stats is None:
        return f"{visual_tokens} visual tokens, all kept"
    d = stats_dict(stats)
    text = f"{d['tokens_in']} visual tokens -> {d['kept_outer']} enter the LLM"
    if d["kept_inner"] is not None:
        text += f" -> {d['kept_inner']} from the inner layer on"
    return text


def format_timings(t: dict, prepared: Prepared | None = None) -> str:
    """The timings line: decode and preprocess (with ``prepared``), prefill, decoding."""
    parts = []
    if prepared is not None:
        parts.append(f"video decode {prepared.decode_seconds:.2f} s")
        parts.append(f"preprocess {prepared.preprocess_seconds:.2f} s")
    prefill = f"prefill {t['prefill']:.2f} s"
    if "compression_outer" in t:
        prefill += (
            f" (compression {t['compression_outer'] * 1e3:.1f} ms outer + "
            f"{t['compression_inner'] * 1e3:.1f} ms inner)"
        )
    parts.append(prefill)
    rate = t.get("decode_tokens_per_s")
    parts.append(f"decode {t['decode']:.2f} s" + (f" ({rate:.1f} tok/s)" if rate else ""))
    return ", ".join(parts)


def run_record(loaded, prepared, press, answer, flops_: dict) -> dict:
    """The JSON of one ``vidpress run`` (with its provenance)."""
    info = prepared.info
    return {
        "model": {"path": str(loaded.path), "family": loaded.family},
        "video": {
            "path": str(info.path),
            "total_frames": info.total_frames,
            "fps": info.fps,
            "width": info.width,
            "height": info.height,
            "frame_indices": prepared.frame_indices,
            "resolution": list(prepared.resolution),
            "grid": list(prepared.grid),
            "visual_tokens": prepared.visual_tokens,
        },
        "question": prepared.question,
        "notes": prepared.notes,
        "press": press_record(press),
        "answer": answer.text,
        "new_tokens": answer.new_tokens,
        "stats": stats_dict(answer.stats),
        "flops": flops_,
        "timings": {
            "video_decode": prepared.decode_seconds,
            "preprocess": prepared.preprocess_seconds,
            **answer.timings,
        },
        "provenance": provenance(
            press=press,
            frames=prepared.num_frames,
            resolution=list(prepared.resolution),
            model=str(loaded.path),
            device=loaded.device,
        ),
    }


def main(args: argparse.Namespace) -> int:
    press = press_from_args(args)  # bad arguments fail before anything is loaded
    check_run_inputs(args.model, [args.video], args.frames, args.fps)
    progress = None if args.json or not sys.stderr.isatty() else sys.stderr
    if progress:
        print(f"loading {args.model} ...", file=progress, flush=True)
    loaded = load_model(args.model, args.device, args.dtype)
    prepared = prepare(loaded, args.video, args.question, num_frames=args.frames, fps=args.fps)
    print_notes(prepared.notes)

    def on_token(count: int) -> None:
        print(f"\rgenerating: {count}/{args.max_new_tokens} tokens", end="", file=progress)

    if progress:
        print(f"answering ({prepared.visual_tokens} visual tokens) ...", file=progress)
    answer = generate(
        loaded,
        prepared,
        press,
        max_new_tokens=args.max_new_tokens,
        on_token=on_token if progress else None,
    )
    if progress:
        print(file=progress)
    flops_ = flops(loaded, prepared, press, answer.new_tokens)
    if args.json:
        print(json.dumps(run_record(loaded, prepared, press, answer, flops_), indent=1))
        return 0
    info = prepared.info
    fps_text = f" at {info.fps:g} fps" if info.fps else ""
    lines = [
        f"model      {loaded.path} ({loaded.family})",
        f"video      {info.path.name}: {info.total_frames} frames{fps_text}, "
        f"{info.width}x{info.height}; {prepared.num_frames} sampled, "
        f"{prepared.resolution[1]}x{prepared.resolution[0]} px",
        f"press      {format_press(press)}",
        f"question   {prepared.question}",
        f"answer     {answer.text}",
        f"tokens     {format_tokens(answer.stats, prepared.visual_tokens)}",
    ]
    if answer.stats is not None:
        per_frame = stats_dict(answer.stats)["kept_per_frame"]
        lines.append(f"per frame  {' '.join(map(str, per_frame))}")
    lines.append(
        f"FLOPs      {flops_['paper']['tflops']:.4g} TFLOPs (paper convention: LLM, visual "
        f"tokens), {flops_['exact']['tflops']:.4g} TFLOPs (exact: whole model)"
    )
    lines.append(f"timings    {format_timings(answer.timings, prepared)}")
    print("\n".join(lines))
    return 0
