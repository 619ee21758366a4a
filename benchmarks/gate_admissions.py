"""How many tokens the redundancy gate (Eq. 2) admits on the testbed's real features, and why.

    python benchmarks/gate_admissions.py --per-family 5 \
        --weights src/vidpress/testbed/weights/testbed_v2_round2.safetensors \
        --out benchmarks/results/testbed_gate_admissions_v2_round2

For a balanced sample of SynthVQA test items (32 frames, 392 px, 6,272 tokens) it takes the
projected tokens of the testbed with ``--weights`` (as ``vidpress eval --weights``: committed,
untrained or a weights file) and the CLS-attention scores exactly as the unified press
receives them (the LLaVA-OneVision adapter's ``prepare``), then reports:

- how alike the tokens are: the mean pairwise cosine, the same after subtracting the video's mean
  token, and the common component's share (norm of the mean token / mean token norm); the same
  for the projector's input (the DINOv2 patch features) and output, before OV's 2 x 2 pooling,
  which tells whether the likeness comes from the encoder, the trained projector or the pooling;
- for tau in 0.6 / 0.7 / 0.8 and the selected slots B_sel of 2% and 1% (87 and 44 of 125 and 63):
  how many tokens the gate admits walking in CLS-attention order, on plain tokens (the paper's
  gate) and on centred tokens (``UnifiedPress(centred_gate=True)``), and how many frames they
  come from. Every slot the gate leaves empty becomes a DPC-KNN cluster (docs/method.md stage 1).

CPU, about 5 s per item (the vision tower and the projector; no LLM).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vidpress import functional as F
from vidpress.adapters.base import Timer
from vidpress.adapters.llava_onevision import LlavaOnevisionAdapter
from vidpress.commands.arguments import projector_weights, weights_argument
from vidpress.evaluation.report import cpu_diagnostic_record, write_json_and_markdown
from vidpress.functional.similarity import unit
from vidpress.testbed import FAMILIES, SynthVQA, assemble_testbed
from vidpress.testbed.video import default_clips

TAUS = (0.6, 0.7, 0.8)
RETENTIONS = (0.02, 0.01)
GATES = ("plain", "centred")
LIKENESS_MEASURES = ("mean_cosine", "mean_cosine_centred", "common_share")


def mean_pairwise_cosine(x: torch.Tensor) -> float:
    """Mean cosine over the distinct pairs of rows of ``x: [M, D]`` (from the mean unit row)."""
    mean_unit = unit(x).mean(0)
    return float((mean_unit @ mean_unit * len(x) - 1) / (len(x) - 1))


def likeness(x: torch.Tensor) -> dict:
    """How alike the rows of ``x: [M, D]`` are: their mean pairwise cosine, the same after
    subtracting their mean row, and the mean row's share of a row's norm."""
    return {
        "mean_cosine": mean_pairwise_cosine(x),
        "mean_cosine_centred": mean_pairwise_cosine(F.centred(x)),
        "common_share": float(x.mean(0).norm() / x.norm(dim=-1).mean()),
    }


def admissions(gate_inputs: dict[str, torch.Tensor], scores: torch.Tensor) -> dict:
    """Per gate, tau and retention: tokens admitted of B_sel, and the frames they come from.

    gate_inputs: {"plain", "centred"} -> [T*N, D] tokens; scores: [T, N] contribution scores.
    """
    frames, per_frame = scores.shape
    walk = torch.argsort(scores.reshape(-1), descending=True, stable=True)
    out = {}
    for retention in RETENTIONS:
        budget = F.token_budget(frames * per_frame, retention=retention)
        selected_slots, _ = F.split_budget(budget, 0.3)
        for gate in GATES:
            for tau in TAUS:
                admitted = F.retention_pool(gate_inputs[gate], walk, selected_slots, tau)
                out[f"{gate}@tau{tau}@{100 * retention:g}%"] = {
                    "slots": selected_slots,
                    "admitted": admitted.numel(),
                    "frames": int(torch.unique(admitted // per_frame).numel()),
                }
    return out


def median_likeness(rows: list[dict]) -> dict:
    """The median of each ``likeness`` measure over ``rows``."""
    return {key: statistics.median(r[key] for r in rows) for key in LIKENESS_MEASURES}


def summarise(rows: list[dict]) -> dict:
    """Medians over the items, overall and per family."""
    groups = {"all": rows} | {
        f: [r for r in rows if r["family"] == f]
        for f in FAMILIES
        if any(r["family"] == f for r in rows)
    }
    out = {}
    for name, sel in groups.items():
        out[name] = median_likeness(sel) | {
            stage: median_likeness([r[stage] for r in sel]) for stage in ("encoder", "unpooled")
        }
        for setting in sel[0]["gate"]:
            out[name][setting] = {
                "slots": sel[0]["gate"][setting]["slots"],
                "admitted": statistics.median(r["gate"][setting]["admitted"] for r in sel),
                "frames": statistics.median(r["gate"][setting]["frames"] for r in sel),
            }
    return out


def markdown(result: dict) -> str:
    summary = result["summary"]["all"]
    lines = [
        "# The redundancy gate on the testbed's features (SynthVQA test items)",
        "",
        f"- command: `{result['command']}`",
        f"- machine: {result['machine']}; date {result['date']}; {result['seconds']:.0f} s",
        f"- weights: `{result['weights']}`; {result['items']} test items "
        f"({result['per_family']} per family), 32 frames at 392 px, 6,272 tokens",
        "",
        "Medians over the items. Mean pairwise cosine of the projected tokens "
        f"**{summary['mean_cosine']:.2f}** (after subtracting the video's mean token: "
        f"{summary['mean_cosine_centred']:.2f}); the mean token's norm is "
        f"{100 * summary['common_share']:.0f}% of the mean token norm.",
        "",
        "Before OV's 2 x 2 pooling, the same measures of the projector's input (DINOv2 patch "
        "features) and output, per patch:",
        "",
        "| features | mean cosine | centred | mean's share of norm |",
        "|---|---|---|---|",
        *(
            f"| {label} | {summary[stage]['mean_cosine']:.2f} | "
            f"{summary[stage]['mean_cosine_centred']:.2f} | "
            f"{100 * summary[stage]['common_share']:.0f}% |"
            for stage, label in (
                ("encoder", "projector input (DINOv2)"),
                ("unpooled", "projector output"),
            )
        ),
        "",
        "Tokens the gate admits walking in CLS-attention order (of B_sel slots; in brackets: the "
        "frames they come from, of 32). Every slot left empty becomes a DPC-KNN cluster.",
        "",
        "| retention | B_sel | gate | tau 0.6 | tau 0.7 | tau 0.8 |",
        "|---|---|---|---|---|---|",
    ]
    for retention in RETENTIONS:
        for gate in GATES:
            cells = []
            for tau in TAUS:
                s = summary[f"{gate}@tau{tau}@{100 * retention:g}%"]
                cells.append(f"{s['admitted']:g} ({s['frames']:g})")
            slots = summary[f"{gate}@tau{TAUS[0]}@{100 * retention:g}%"]["slots"]
            lines.append(f"| {100 * retention:g}% | {slots} | {gate} | " + " | ".join(cells) + " |")
    lines += ["", "Per family (tau 0.7, 2%): admitted, plain / centred gate.", ""]
    lines.append("| family | mean cosine | plain | centred |")
    lines.append("|---|---|---|---|")
    for fam, s in result["summary"].items():
        if fam == "all":
            continue
        plain, centred = s["plain@tau0.7@2%"], s["centred@tau0.7@2%"]
        lines.append(
            f"| {fam} | {s['mean_cosine']:.2f} | {plain['admitted']:g} | {centred['admitted']:g} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-family", type=int, default=5)
    weights_argument(parser)
    parser.add_argument("--out", required=True, help="output stem (.json and .md)")
    args = parser.parse_args()
    start = time.perf_counter()
    suite = SynthVQA(default_clips(), split="test", size=700, num_frames=32, frames_px=392)
    model, processor = assemble_testbed(392, projector_weights(args.weights))
    adapter = LlavaOnevisionAdapter(model.eval())
    projector_calls = []  # (input, output) of the projector: [T, patches, D_in / D]
    model.model.multi_modal_projector.register_forward_hook(
        lambda module, args, output: projector_calls.append((args[0], output))
    )
    rows = []
    for index in suite.first_indices(args.per_family):
        item = suite[index]
        inputs = dict(processor([item.frames], [item.prompt()]))
        with torch.inference_mode():
            prompt = adapter.prepare(
                inputs, inputs["attention_mask"], {"scores"}, Timer(torch.device("cpu"))
            )
        video = prompt.videos[0]
        x = video.tokens.reshape(-1, video.tokens.shape[-1]).float()  # [T*N, D]
        gate_inputs = {"plain": x, "centred": F.centred(x)}
        encoder, projected = projector_calls.pop()
        projector_calls.clear()
        rows.append(
            {
                "index": index,
                "family": item.family,
                **likeness(x),
                "encoder": likeness(encoder.reshape(-1, encoder.shape[-1]).float()),
                "unpooled": likeness(projected.reshape(-1, projected.shape[-1]).float()),
                "gate": admissions(gate_inputs, video.scores),
            }
        )
    result = cpu_diagnostic_record(
        f"python benchmarks/gate_admissions.py --per-family {args.per_family} "
        f"--weights {args.weights} --out {args.out}",
        start,
        weights=args.weights,
        items=len(rows),
        per_family=args.per_family,
        summary=summarise(rows),
        rows=rows,
    )
    write_json_and_markdown(args.out, result, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
