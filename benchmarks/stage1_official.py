"""vidpress's FastVID stage 1 against the official code, on the same tensors, on one GPU.

    python benchmarks/stage1_official.py --official PATH/modeling_qwen2.py --out fastvid.json

The official FastVID (LunarShen/FastVID) runs inline in the ``forward`` of its LLaVA-OneVision
fork's ``Qwen2Model``, between the banner comments ``# FastVID #`` and the next line of ``#``.
vidpress does not ship that code: this script reads the block from the official file given by
``--official`` (``fastvid_llavaonevision/LLaVA-NeXT/llava/model/language_model/
modeling_qwen2.py`` of a checkout), runs it unchanged as a function of the decoder's state, and
times it and ``F.compress_video_tokens("fastvid", ...)`` with CUDA events on the same video
features, saliency scores and frame features (the mean token of each frame, vidpress's default).

Both are timed from the video features to the compressed sequence; the official block also
gathers the rotary tables of the kept rows and cuts the text around the video, a few small
kernels. The official budget is floor(N r) tokens per frame (fewer than vidpress's exact r T N
at 2%); the report gives both counts and the share of the official's kept video tokens that
vidpress keeps too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import torch

from vidpress import functional as F
from vidpress.metrics.latency import Clock, time_call

sys.path.insert(0, str(Path(__file__).parent))
from bench_stage1 import synthetic_video, write_report  # noqa: E402

TEXT_BEFORE, TEXT_AFTER = 14, 20  # prompt tokens around the video


def official_block(path: Path):
    """The official FastVID block of ``path`` as ``fastvid(self, hidden_states, seq_length,
    causal_mask, position_ids, cache_position, position_embeddings) -> (hidden, keep)``."""
    lines = path.read_text().splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.strip().startswith("#") and "FastVID" in line
    )
    end = next(i for i in range(start + 1, len(lines)) if set(lines[i].strip()) == {"#"})
    body = textwrap.indent(textwrap.dedent("\n".join(lines[start + 1 : end])), "    ")
    source = (
        "def fastvid(self, hidden_states, seq_length, causal_mask, position_ids, cache_position,"
        " position_embeddings):\n" + body + "\n    return hidden_states, keep_indexs\n"
    )
    namespace = {"torch": torch, "F": torch.nn.functional}
    exec(compile(source, str(path), "exec"), namespace)
    return namespace["fastvid"]


def official_inputs(tokens, scores, frame_features, retention):
    """The decoder state the official block reads: (self, keyword arguments)."""
    frames, n, dim = tokens.shape
    g = torch.Generator(device="cpu").manual_seed(1)
    before = torch.randn(TEXT_BEFORE, dim, generator=g).to(tokens)
    after = torch.randn(TEXT_AFTER, dim, generator=g).to(tokens)
    hidden = torch.cat([before, tokens.reshape(-1, dim), after])[None]
    length = hidden.shape[1]
    head = 128
    rotary = torch.ones(1, length, head, device=tokens.device, dtype=tokens.dtype)
    state = SimpleNamespace(
        video_start_idx=TEXT_BEFORE,
        video_token_len=frames * n,
        frame_num=frames,
        frame_attn_weights=scores,
        frame_global_features=frame_features,
        fastvid_DySeg_c=8,
        fastvid_DySeg_tau=0.9,
        fastvid_retention_ratio=retention,
        fastvid_STPrune_d=0.4,
        fastvid_DTM_p=4,
        fastvid_DTM_beta=0.6,
    )
    kwargs = dict(
        hidden_states=hidden,
        seq_length=length,
        causal_mask=None,
        position_ids=torch.arange(length, device=tokens.device)[None],
        cache_position=torch.arange(length, device=tokens.device),
        position_embeddings=(rotary, rotary),
    )
    return state, kwargs


def summary(times: list[float]) -> dict:
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}


def compare(official, frames, per_frame, dim, retention, repeats, warmup) -> dict:
    tokens, scores = synthetic_video(frames, per_frame, dim, "cuda")
    frame_features = tokens.float().mean(dim=1)
    state, kwargs = official_inputs(tokens, scores, frame_features, retention)

    def run_official():
        return official(state, **kwargs)

    def run_vidpress():
        return F.compress_video_tokens(
            "fastvid", tokens, scores, retention=retention, frame_features=frame_features
        )

    vidpress_times = time_call(run_vidpress, Clock("cuda"), warmup, repeats)
    row = {
        "frames": frames,
        "tokens_per_frame": per_frame,
        "dim": dim,
        "retention": retention,
        "vidpress": {**summary(vidpress_times), "kept": len(run_vidpress())},
        "repeats": repeats,
    }
    try:
        official_times = time_call(run_official, Clock("cuda"), warmup, repeats)
    except (IndexError, RuntimeError) as err:  # e.g. no context slot left at 1%
        return {**row, "official": {"error": f"{type(err).__name__}: {err}"}}
    _, keep = run_official()
    video = keep[(keep >= TEXT_BEFORE) & (keep < TEXT_BEFORE + frames * per_frame)]
    official_kept = set((video - TEXT_BEFORE).tolist())
    res = run_vidpress()
    rows, cols = res.positions[:, 1], res.positions[:, 2]
    side = int(per_frame**0.5)
    ours = set((res.positions[:, 0] * per_frame + rows * side + cols).tolist())
    return {
        **row,
        "official": {**summary(official_times), "kept": len(official_kept)},
        "ratio": statistics.median(vidpress_times) / statistics.median(official_times),
        "official_kept_also_kept_by_vidpress": len(official_kept & ours) / len(official_kept),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="official modeling_qwen2.py")
    parser.add_argument("--frames", nargs="+", type=int, default=[32, 64])
    parser.add_argument("--tokens-per-frame", type=int, default=196)
    parser.add_argument("--dim", type=int, default=3584)
    parser.add_argument("--retention", nargs="+", type=float, default=[0.1, 0.05, 0.02])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default=None)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("this benchmark needs a CUDA GPU (run it through the device tool)")
    official = official_block(args.official)
    rows = []
    for frames in args.frames:
        for retention in args.retention:
            row = compare(
                official,
                frames,
                args.tokens_per_frame,
                args.dim,
                retention,
                args.repeats,
                args.warmup,
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    write_report("benchmarks/stage1_official.py", argv, rows, args.out)


if __name__ == "__main__":
    main()
