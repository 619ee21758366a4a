"""Two testbed weight files, same items: how often their letter predictions agree (CPU or GPU).

    python benchmarks/compare_testbed_weights.py OLD.safetensors NEW.safetensors --items 28

For a change of the weights' storage (e.g. int8-packed adapters, ``build.pack_adapters``): both
files are built into testbeds, scored on the same SynthVQA test items (``--frames`` frames,
392 px) uncompressed and under the unified press at 2%/1%, and the per-configuration agreement of
the predicted letters and accuracy of each are printed as JSON.
"""

from __future__ import annotations

import argparse
import json

import torch

from vidpress.evaluation import parse_config
from vidpress.evaluation.runner import evaluate_items
from vidpress.testbed import SynthVQA, assemble_testbed
from vidpress.testbed.video import default_clips


def predictions(weights: str, suite, configs) -> tuple[dict, dict]:
    model, proc = assemble_testbed(392, projector_state=weights)
    raw = evaluate_items(model.eval(), proc, suite, configs, range(len(suite)))
    answers = {i: raw["items"][i]["answer"] for i in range(len(suite))}
    return {name: rec.predictions for name, rec in raw["configs"].items()}, answers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--items", type=int, default=28)
    ap.add_argument("--frames", type=int, default=8)
    args = ap.parse_args()
    torch.manual_seed(0)
    suite = SynthVQA(default_clips(), "test", size=args.items, num_frames=args.frames)
    configs = [parse_config("none"), parse_config("unified@2/1")]
    old, answers = predictions(args.old, suite, configs)
    new, _ = predictions(args.new, suite, configs)
    report = {}
    for name in old:
        same = sum(old[name][i] == new[name][i] for i in answers)
        report[name] = {
            "items": len(answers),
            "same_prediction": same,
            "accuracy_old": sum(old[name][i] == a for i, a in answers.items()) / len(answers),
            "accuracy_new": sum(new[name][i] == a for i, a in answers.items()) / len(answers),
        }
    print(json.dumps({"command": vars(args), "configs": report}, indent=1))


if __name__ == "__main__":
    main()
