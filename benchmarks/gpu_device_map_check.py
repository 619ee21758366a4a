"""Every press on a 7B architecture dispatched by accelerate across "cuda:0" and "cpu".

    python benchmarks/gpu_device_map_check.py --out benchmarks/results/device_map_h200.json
    python benchmarks/gpu_device_map_check.py --tiny      # the same script on CPU, in seconds

The one-GPU stand-in for a model sharded over GPUs (``device_map="auto"``): the vision tower, the
projector, the first decoder layers and the LM head sit on cuda:0; the last ``--cpu-layers``
decoder layers are placed on "cpu", so accelerate keeps their weights in host memory and its hooks
move them (and the activations) on every forward, as they do between GPUs. Random bf16 weights,
8 frames. Per press at 2% (``make_press("NAME@2")``): the kept token count and (frame, row,
col) positions of stage 1 and the greedy tokens must equal those of the same press on the model
without a device map. Exit status 1 if any differs.
"""

from __future__ import annotations

import argparse
import json
import platform

import torch
import transformers
from accelerate import dispatch_model

import vidpress
from vidpress.metrics.architectures import build, frame_size, video_prompt
from vidpress.presses.settings import make_press


def run_presses(model, inputs, steps: int) -> dict:
    """{press: (greedy tokens, stats of the call)} for every press."""
    layers = model.config.text_config.num_hidden_layers
    out = {}
    with torch.no_grad():
        for name in sorted(vidpress.PRESSES):
            with make_press(f"{name}@2", layers)(model) as run:
                tokens = model.generate(
                    **inputs, max_new_tokens=steps, min_new_tokens=steps, do_sample=False
                )
                out[name] = (tokens[:, inputs["input_ids"].shape[1] :].cpu(), run.stats[0])
    return out


def check(family: str, args) -> dict:
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = build(family, args.tiny, device, dtype)
    inputs = video_prompt(model, family, args.frames, frame_size(family, args.tiny))
    plain = run_presses(model, inputs, args.new_tokens)
    layers = model.config.text_config.num_hidden_layers
    main = 0 if device == "cuda" else "cpu"
    device_map = {"": main}
    for i in range(layers - args.cpu_layers, layers):
        device_map[f"model.language_model.layers.{i}"] = "cpu"
    model = dispatch_model(model.cpu() if device == "cpu" else model, device_map=device_map)
    if device == "cuda":
        torch.cuda.empty_cache()
    mapped = run_presses(model, inputs, args.new_tokens)
    rows = []
    for name, (tokens, stats) in plain.items():
        got_tokens, got = mapped[name]
        same_positions = all(
            torch.equal(a.cpu(), b.cpu())
            for a, b in zip(got.kept_positions, stats.kept_positions, strict=True)
        )
        rows.append(
            {
                "press": name,
                "kept_outer": got.kept_outer,
                "kept_inner": got.kept_inner,
                "same_kept_counts": (got.kept_outer, got.kept_inner)
                == (stats.kept_outer, stats.kept_inner),
                "same_kept_positions": same_positions,
                "same_greedy_tokens": bool(torch.equal(tokens, got_tokens)),
            }
        )
        print(family, rows[-1], flush=True)
    return {"family": family, "device_map": device_map, "runs": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--cpu-layers", type=int, default=4)
    ap.add_argument("--families", nargs="+", default=["llava_onevision", "qwen2_5_vl"])
    args = ap.parse_args()
    report = {
        "command": "python benchmarks/gpu_device_map_check.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in ("", False)
        ),
        "machine": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.node(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "families": [check(f, args) for f in args.families],
    }
    ok = all(
        r["same_kept_counts"] and r["same_kept_positions"]
        for fam in report["families"]
        for r in fam["runs"]
    )
    report["all_kept_tokens_equal"] = ok
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=1, default=str)
    print("all kept tokens equal:", ok)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
