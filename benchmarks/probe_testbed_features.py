"""What the testbed's frozen vision features carry: linear probes for a planted shape's colour,
kind and quadrant, and for the clip, per DINOv2 layer (CPU, a few minutes).

    python benchmarks/probe_testbed_features.py --out benchmarks/results/testbed_feature_probe

Frames: one frame per sample from the train half of the six clips (392 px), one SynthVQA shape
(colour, kind, size as in the suite, or ``--shape-scale`` x) stamped at a random place. Features:
``hidden_states[layer]`` of the vision tower without CLS, 2x2-averaged to 14 x 14 as LLaVA-OV pools
(a mean of four patches). Probes (multinomial logistic regression, full batch, fixed steps):
"token": the pooled token under the shape's centre (an oracle location: what a model that found
the shape could read there); "mean": the mean of all 196 tokens (what uniform attention reads).
Accuracy on held-out samples; chance: colour 1/7, kind 1/6, quadrant 1/4, row and column (the
shape's half of the frame, top / bottom and left / right) 1/2, clip 1/6.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vidpress.adapters.llava_onevision import selected_features
from vidpress.testbed import assemble_testbed
from vidpress.testbed.synthvqa_shapes import COLORS, SHAPES, SIZE_RANGE, Shape, box_side, stamp
from vidpress.testbed.train_data import normalise
from vidpress.testbed.video import default_clips, load_clip

TARGETS = ("colour", "kind", "quadrant", "row", "column", "clip")  # row: top / bottom half


def planted_frames(n: int, px: int, scale: float, seed: int):
    """n frames [n, 3, px, px] uint8 with one shape each, and their labels and token indices."""
    rng = np.random.default_rng(seed)
    clips = [load_clip(p, px, 160) for p in default_clips()]
    frames, labels, tokens = [], {t: [] for t in TARGETS}, []
    lo, hi = (round(f * scale * px) for f in SIZE_RANGE)
    for _ in range(n):
        c = int(rng.integers(len(clips)))
        frame = clips[c].frames[int(rng.integers(clips[c].num_frames // 2))].clone()
        shape = Shape(
            SHAPES[int(rng.integers(len(SHAPES)))],
            list(COLORS)[int(rng.integers(len(COLORS)))],
            int(rng.integers(lo, hi + 1)),
        )
        side = box_side(shape, px)
        top, left = (int(v) for v in rng.integers(0, px - side + 1, size=2))
        stamp(frame, shape, top, left)
        cy, cx = top + side // 2, left + side // 2
        frames.append(frame)
        tokens.append((cy * 14 // px) * 14 + cx * 14 // px)
        labels["colour"].append(list(COLORS).index(shape.color))
        labels["kind"].append(SHAPES.index(shape.kind))
        labels["quadrant"].append(2 * (cy >= px // 2) + (cx >= px // 2))
        labels["row"].append(int(cy >= px // 2))
        labels["column"].append(int(cx >= px // 2))
        labels["clip"].append(c)
    return (
        torch.stack(frames),
        {k: torch.tensor(v) for k, v in labels.items()},
        torch.tensor(tokens),
    )


@torch.no_grad()
def pooled_features(model, spec, frames, layers, batch: int = 16) -> dict:
    """{layer: [n, 196, D]} pooled patch features of ``frames``; layer "projector": the
    projector's output on the layer the model uses (what the LM receives)."""
    out = {layer: [] for layer in layers}
    for i in range(0, len(frames), batch):
        pixels = normalise(frames[i : i + batch][None], spec, torch.float32)[0]
        hidden = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states
        for layer in layers:
            if layer == "projector":
                cfg = model.config
                used = selected_features(
                    hidden, cfg.vision_feature_layer, cfg.vision_feature_select_strategy
                )
                h = model.model.multi_modal_projector(used)
            else:
                h = hidden[layer][:, 1:]
            out[layer].append(model.model.apply_pooling(h))  # OV's own 2x2 pooling
    return {layer: torch.cat(v) for layer, v in out.items()}


def probe(x: torch.Tensor, y: torch.Tensor, train: int, steps: int = 300) -> float:
    """Held-out accuracy of a logistic regression on standardised x (first ``train`` to fit)."""
    mean, std = x[:train].mean(0), x[:train].std(0).clamp_min(1e-4)
    x = (x - mean) / std
    classes = int(y.max()) + 1
    head = nn.Linear(x.shape[1], classes)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(head(x[:train]), y[:train]).backward()
        opt.step()
    return (head(x[train:]).argmax(-1) == y[train:]).float().mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=900)
    ap.add_argument("--train", type=int, default=600)
    ap.add_argument("--shape-scale", type=float, default=1.0)
    ap.add_argument("--layers", type=int, nargs="+", default=[3, 6, 9, 12])
    ap.add_argument(
        "--weights",
        default="",
        help="also probe the projector's output with these trained weights (committed or a path)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    start = time.time()
    model, proc = assemble_testbed(392, projector_state=args.weights or None)
    frames, labels, tokens = planted_frames(args.samples, 392, args.shape_scale, args.seed)
    layers = [*args.layers, "projector"] if args.weights else args.layers
    feats = pooled_features(model.eval(), proc.spec, frames, layers)
    rows = []
    with torch.enable_grad():
        for layer, f in feats.items():
            views = {"token": f[torch.arange(len(f)), tokens], "mean": f.mean(1)}
            for view, x in views.items():
                row = {"layer": layer, "features": view}
                row.update({t: probe(x, labels[t], args.train) for t in TARGETS})
                rows.append(row)
                print(json.dumps(row), flush=True)
    report = {
        "command": "python benchmarks/probe_testbed_features.py "
        + " ".join(
            f"--{k.replace('_', '-')} " + (" ".join(map(str, v)) if isinstance(v, list) else str(v))
            for k, v in vars(args).items()
            if k != "out" and v != ""
        ),
        "samples": args.samples,
        "held_out": args.samples - args.train,
        "chance": {"colour": 1 / 7, "kind": 1 / 6, "quadrant": 1 / 4, "row": 1 / 2, "column": 1 / 2}
        | {"clip": 1 / 6},
        "rows": rows,
        "seconds": round(time.time() - start, 1),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    if args.out:
        Path(args.out + ".json").write_text(json.dumps(report, indent=1))
        lines = [
            "# What the testbed's frozen vision features carry (linear probes)",
            "",
            f"- command: `{report['command']}`",
            f"- machine: CPU (2 cores), torch {torch.__version__}; {report['date']}; "
            f"{report['seconds']} s",
            f"- {args.samples} frames, {report['held_out']} held out; accuracy (%) on those; "
            "chance: colour 14, kind 17, quadrant 25, row / column (which half) 50, clip 17",
            "",
            "| DINOv2 layer (or the trained projector's output) | features | colour | kind | "
            "quadrant | row | column | clip |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            cells = " | ".join(f"{100 * r[t]:.0f}" for t in TARGETS)
            lines.append(f"| {r['layer']} | {r['features']} | {cells} |")
        Path(args.out + ".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
