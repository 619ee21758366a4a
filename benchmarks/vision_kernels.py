"""What SigLIP-so400m's kernels cost at the video shape, and what their alternatives would (GPU).

    python benchmarks/vision_kernels.py --frames 32 --out vision_kernels.json

One encoder layer's pieces on [T x 729, 1152] bf16 activations (random weights; 26 layers run
per video), each the median of ``--repeats`` CUDA-event timings after warm-up:
- the q, k and v projections apart (stock) and as one [1152 -> 3456] product;
- fc1 / fc2 at the stock width 4304 and padded with zero weights to 4352 (a multiple of 128:
  the extra columns give GELU(0) = 0, the extra rows add 0, so the values do not change);
- GELU (tanh), LayerNorm, the residual add, and the add + LayerNorm compiled together;
- attention (SDPA) per backend at head width 72, and 72 padded with zeros to 80 and 128 (the
  product q.k and the output's first 72 columns are those of width 72, at the scale of 72).
Each alternative reports its largest difference from the stock result.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from torch.nn import functional as nnf
from torch.nn.attention import SDPBackend, sdpa_kernel

from vidpress.provenance import provenance

WIDTH, MLP, HEADS, TOKENS = 1152, 4304, 16, 729


def timed(fn, repeats: int, warmup: int = 3) -> float:
    """Median milliseconds of ``fn()`` (CUDA events)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def padded(weight: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``weight`` with zero rows and columns appended up to [rows, cols]."""
    return nnf.pad(weight, (0, cols - weight.shape[1], 0, rows - weight.shape[0]))


def projections(x, repeats) -> dict:
    q, k, v = (torch.randn(WIDTH, WIDTH, device=x.device, dtype=x.dtype) * 0.03 for _ in "qkv")
    bias = [torch.randn(WIDTH, device=x.device, dtype=x.dtype) for _ in "qkv"]
    fused_w, fused_b = torch.cat([q, k, v]), torch.cat(bias)
    pairs = list(zip((q, k, v), bias, strict=True))
    apart = torch.cat([nnf.linear(x, w, b) for w, b in pairs], -1)
    return {
        "qkv_apart_ms": timed(lambda: [nnf.linear(x, w, b) for w, b in pairs], repeats),
        "qkv_fused_ms": timed(lambda: nnf.linear(x, fused_w, fused_b), repeats),
        "qkv_fused_max_diff": diff(nnf.linear(x, fused_w, fused_b), apart),
    }


def mlp(x, repeats) -> dict:
    wide = -(-MLP // 128) * 128
    w1 = torch.randn(MLP, WIDTH, device=x.device, dtype=x.dtype) * 0.03
    b1 = torch.randn(MLP, device=x.device, dtype=x.dtype) * 0.1
    w2 = torch.randn(WIDTH, MLP, device=x.device, dtype=x.dtype) * 0.03
    w1p, b1p, w2p = padded(w1, wide, WIDTH), nnf.pad(b1, (0, wide - MLP)), padded(w2, WIDTH, wide)
    h, hp = nnf.linear(x, w1, b1), nnf.linear(x, w1p, b1p)
    act, actp = nnf.gelu(h, approximate="tanh"), nnf.gelu(hp, approximate="tanh")
    stock = nnf.linear(act, w2)
    return {
        "padded_width": wide,
        "fc1_ms": timed(lambda: nnf.linear(x, w1, b1), repeats),
        "fc1_padded_ms": timed(lambda: nnf.linear(x, w1p, b1p), repeats),
        "gelu_ms": timed(lambda: nnf.gelu(h, approximate="tanh"), repeats),
        "fc2_ms": timed(lambda: nnf.linear(act, w2), repeats),
        "fc2_padded_ms": timed(lambda: nnf.linear(actp, w2p), repeats),
        "mlp_padded_max_diff": diff(nnf.linear(actp, w2p), stock),
    }


def norms(x, repeats) -> dict:
    residual = torch.randn_like(x)
    norm = torch.nn.LayerNorm(WIDTH, device=x.device, dtype=x.dtype)

    def add_norm(a, b):
        s = a + b
        return s, norm(s)

    fused = torch.compile(add_norm)
    stock = add_norm(x, residual)
    return {
        "layernorm_ms": timed(lambda: norm(x), repeats),
        "add_ms": timed(lambda: x + residual, repeats),
        "add_layernorm_compiled_ms": timed(lambda: fused(x, residual), repeats),
        "add_layernorm_compiled_max_diff": diff(fused(x, residual)[1], stock[1]),
    }


def attention(frames, device, repeats) -> dict:
    head = WIDTH // HEADS
    q, k, v = (
        torch.randn(frames, HEADS, TOKENS, head, device=device, dtype=torch.bfloat16) for _ in "qkv"
    )
    stock = nnf.scaled_dot_product_attention(q, k, v)
    out = {}
    for width in (head, 80, 128):
        qp, kp, vp = (nnf.pad(t, (0, width - head)) for t in (q, k, v))
        for backend in (
            SDPBackend.FLASH_ATTENTION,
            SDPBackend.CUDNN_ATTENTION,
            SDPBackend.EFFICIENT_ATTENTION,
        ):

            def run(qp=qp, kp=kp, vp=vp, backend=backend):
                with sdpa_kernel(backend):
                    return nnf.scaled_dot_product_attention(qp, kp, vp, scale=head**-0.5)

            name = f"{backend.name.lower()}_{width}"
            try:
                out[f"{name}_ms"] = timed(run, repeats)
                out[f"{name}_max_diff"] = diff(run()[..., :head], stock)
            except RuntimeError as err:
                out[f"{name}_error"] = str(err).splitlines()[0]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("this benchmark needs a CUDA GPU (run it through the device tool)")
    torch.manual_seed(0)
    x = torch.randn(args.frames * TOKENS, WIDTH, device="cuda", dtype=torch.bfloat16)
    report = {
        "provenance": provenance(
            model="SigLIP-so400m layer (random bf16)", frames=args.frames, device="cuda"
        ),
        "command": ["benchmarks/vision_kernels.py", *(sys.argv[1:] if argv is None else argv)],
        "rows": args.frames * TOKENS,
        "per_layer": projections(x, args.repeats)
        | mlp(x, args.repeats)
        | norms(x, args.repeats)
        | attention(args.frames, x.device, args.repeats),
    }
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["per_layer"], indent=1))


if __name__ == "__main__":
    main()
