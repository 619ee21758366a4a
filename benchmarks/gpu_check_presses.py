"""Every press on LLaVA-OV-7B and Qwen2.5-VL-7B architectures (random bf16 weights), generate().

    python benchmarks/gpu_check_presses.py --out benchmarks/results/presses_h100.json
    python benchmarks/gpu_check_presses.py --tiny            # the same script on CPU, in seconds

The weights are random (no checkpoint here), so generated text means nothing: the script checks
that the machinery holds at full size (32 frames: 6,272 + 1 LLaVA-OV tokens, 4,096 Qwen tokens,
28 decoder layers, K = 18) and measures it. Per model: the vanilla model; every press at 2%
(``make_press("NAME@2")``: retention 2%, K = 18, keep 50%; FastV "100%/2%" at K = 2). Reported
per run: kept tokens (outer, inner), compression time, time to first token, decode tokens/s,
peak memory.
Checks, reported (bf16 kernels differ between shapes, so small differences are expected):
retention 1.0 against the vanilla logits; cached greedy decoding against full recomputation
(``run.replay()``); a left-padded batch of 2 against its samples alone.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import transformers

import vidpress
from vidpress.metrics.architectures import build, frame_size, prompts
from vidpress.presses.settings import make_press


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def greedy(model, inputs, steps: int):
    out = model.generate(
        **inputs,
        max_new_tokens=steps,
        min_new_tokens=steps,
        do_sample=False,
        return_dict_in_generate=True,
        output_logits=True,
    )
    return out.sequences[:, -steps:], torch.stack(out.logits, dim=1).float()


def timed(model, inputs, steps: int, device: str) -> dict:
    """Time to first token (generate of 1 token) and decode tokens/s (the rest)."""
    greedy(model, inputs, 2)  # warm-up
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    greedy(model, inputs, 1)
    sync(device)
    ttft = time.perf_counter() - start
    start = time.perf_counter()
    tokens, _ = greedy(model, inputs, steps)
    sync(device)
    total = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return {
        "ttft_s": ttft,
        "decode_tok_per_s": (steps - 1) / max(total - ttft, 1e-9),
        "peak_gib": peak,
        "tokens": tokens[0].tolist(),
    }


def no_cache(model, inputs, steps: int):
    """Greedy decoding by full recomputation (under ``run.replay()``)."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    tokens, logits = [], []
    for _ in range(steps):
        step = dict(inputs, input_ids=ids, attention_mask=mask, use_cache=False)
        if "mm_token_type_ids" in inputs:
            step["mm_token_type_ids"] = (ids == model.config.video_token_id).int() * 2
        last = model(**step).logits[:, -1].float()
        nxt = last.argmax(dim=-1, keepdim=True)
        tokens.append(nxt)
        logits.append(last)
        ids, mask = torch.cat([ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
    return torch.cat(tokens, 1), torch.stack(logits, 1)


def check_family(family: str, args, device: str, dtype: torch.dtype) -> dict:
    model = build(family, args.tiny, device, dtype)
    layers = model.config.text_config.num_hidden_layers
    single = prompts(family, model, args.frames, args.size, [(14, 20)], device)
    pair = prompts(family, model, args.frames, args.size, [(14, 20), (3, 40)], device)
    report = {"family": family, "prompt_tokens": int(single["input_ids"].shape[1]), "runs": []}
    steps = args.new_tokens

    with torch.no_grad():
        vanilla = timed(model, single, steps, device)
        report["runs"].append({"press": "vanilla", **vanilla})
        print(family, "vanilla", {k: v for k, v in vanilla.items() if k != "tokens"}, flush=True)
        reference = model(**single).logits[:, -1].float()
        with vidpress.UnifiedPress(retention=1.0, inner_merging=False)(model):
            identity = model(**single).logits[:, -1].float()
        report["identity_max_abs_diff"] = float((identity - reference).abs().max())

        for name in sorted(vidpress.PRESSES):
            press = make_press(f"{name}@2", layers)
            with press(model) as run:
                row = {"press": name, "config": repr(press), **timed(model, single, steps, device)}
                stats = run.stats[-1]
                row.update(
                    tokens_in=stats.tokens_in,
                    kept_outer=stats.kept_outer,
                    kept_inner=stats.kept_inner,
                    outer_ms=1000 * stats.outer_seconds,
                    inner_ms=1000 * stats.inner_seconds,
                )
                tokens, logits = greedy(model, pair, args.check_tokens)
                with run.replay():
                    tokens_nc, logits_nc = no_cache(model, pair, args.check_tokens)
                row["cache_vs_recompute"] = {
                    "token_agreement": float((tokens == tokens_nc).float().mean()),
                    "first_step_max_abs_logit_diff": float(
                        (logits[:, 0] - logits_nc[:, 0]).abs().max()
                    ),
                }
                alone = [
                    greedy(
                        model,
                        {k: _take(k, v, i, pair, family) for k, v in pair.items()},
                        args.check_tokens,
                    )
                    for i in range(2)
                ]
                row["batch_vs_single"] = {
                    "token_agreement": float(
                        torch.stack(
                            [(tokens[i] == alone[i][0][0]).float().mean() for i in range(2)]
                        ).mean()
                    ),
                    "first_step_max_abs_logit_diff": max(
                        float((logits[i, 0] - alone[i][1][0, 0]).abs().max()) for i in range(2)
                    ),
                }
            report["runs"].append(row)
            shown = {k: v for k, v in row.items() if k not in ("tokens", "config")}
            print(family, shown, flush=True)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return report


def _take(key: str, value: torch.Tensor, i: int, batch: dict, family: str) -> torch.Tensor:
    """Sample ``i`` of a batch built by ``prompts``, with its padding removed."""
    real = batch["attention_mask"][i].bool()
    if key in ("input_ids", "attention_mask", "mm_token_type_ids"):
        return value[i : i + 1, real]
    if key == "pixel_values_videos" and family != "llava_onevision":
        counts = batch["video_grid_thw"].prod(dim=1).tolist()
        start = sum(counts[:i])
        return value[start : start + counts[i]]
    return value[i : i + 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--family", choices=["llava_onevision", "qwen2_5_vl", "both"], default="both"
    )
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=None, help="frame side in pixels")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--check-tokens", type=int, default=8)
    parser.add_argument("--tiny", action="store_true", help="small configs on CPU (smoke test)")
    parser.add_argument("--out", default=None, help="write the JSON report here")
    args = parser.parse_args()
    device = "cpu" if args.tiny or not torch.cuda.is_available() else "cuda"
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    families = ["llava_onevision", "qwen2_5_vl"] if args.family == "both" else [args.family]
    report = {
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "dtype": str(dtype),
        "frames": args.frames,
        "families": [],
    }
    for family in families:
        args_f = argparse.Namespace(**vars(args))
        if args_f.size is None:
            args_f.size = frame_size(family, args.tiny)
        report["families"].append(check_family(family, args_f, device, dtype))
    text = json.dumps(report, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
