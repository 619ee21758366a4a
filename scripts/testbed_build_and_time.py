"""Build the testbed, check DINOv2 against onnxruntime on real frames, time CPU forwards.

Usage: python scripts/testbed_build_and_time.py OUT_DIR [--frames 32] [--px 392]
Set VIDPRESS_CACHE to an empty folder to time a cold build (conversion included).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from vidpress.testbed import SynthVQA, TestbedProcessor, build_testbed, default_clips
from vidpress.testbed import convert_dinov2 as C


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, round(time.perf_counter() - start, 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--px", type=int, default=392)
    args = ap.parse_args()
    report = {"threads": torch.get_num_threads()}
    _, report["build_s"] = timed(build_testbed, args.out, frames_px=args.px)
    _, report["rebuild_s"] = timed(build_testbed, args.out, frames_px=args.px)

    from transformers import LlavaOnevisionForConditionalGeneration

    model, report["load_s"] = timed(
        LlavaOnevisionForConditionalGeneration.from_pretrained, args.out
    )
    model.eval()
    proc = TestbedProcessor.from_pretrained(args.out)
    item = SynthVQA(default_clips(), split="test", size=1, num_frames=args.frames)[0]
    inputs = proc(item.frames, item.prompt())
    report["prompt_tokens"] = inputs["input_ids"].shape[1]

    pixels = inputs["pixel_values_videos"][0, :2]  # two real frames
    ref = C.onnx_reference(pixels)
    with torch.inference_mode():
        hs = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states[-1]
        err = (hs - torch.from_numpy(ref["last_layer"])).abs().max().item()
        report["dinov2_vs_onnxruntime_max_abs"] = err
        _, report["vision_proj_s"] = timed(
            model.model.get_video_features, inputs["pixel_values_videos"]
        )
        _, report["forward_s"] = timed(model, **inputs, logits_to_keep=1)
        out = model(**inputs, logits_to_keep=1).logits[0, -1]
    letters = [proc.tokenizer.convert_tokens_to_ids(c) for c in "ABCD"]
    report["untrained_pick"] = "ABCD"[int(out[letters].argmax())]
    report["answer"] = item.answer_letter
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
