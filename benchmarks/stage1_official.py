"""vidpress's stage 1 against the official code, on the same tensors, on one GPU.

    python benchmarks/stage1_official.py --official PATH/modeling_qwen2.py --out fastvid.json
    python benchmarks/stage1_official.py --method visionzip --official PATH/visionzip/llava_arch.py
    python benchmarks/stage1_official.py --method holitom --official PATH/holitom/llava_arch.py

vidpress does not ship other projects' code: this script reads the official code from the file
given by ``--official`` at run time, runs it unchanged on the tensors given to
``F.compress_video_tokens(method, ...)`` and times both with CUDA events. ``--check`` runs each
case once on the CPU instead and prints the kept counts (no timing, no report).

FastVID (LunarShen/FastVID) runs inline in the ``forward`` of its LLaVA-OneVision fork's
``Qwen2Model``, between the banner comments ``# FastVID #`` and the next line of ``#``. The block
is read from ``fastvid_llavaonevision/LLaVA-NeXT/llava/model/language_model/modeling_qwen2.py``
and run as a function of the decoder's state, on the video features, saliency scores and frame
features (the mean token of each frame, vidpress's default). It also gathers the rotary tables
of the kept rows and cuts the text around the video, a few small kernels. Its budget is
floor(N r) tokens per frame (fewer than vidpress's exact r T N at 2%).

VisionZip and HoliTom: the video ports in cokeshao/HoliTom, ``visionzip/llava_arch.py`` and
``holitom/llava_arch.py`` (dvlab-research/VisionZip itself compresses images inside its CLIP
tower). Both compress in the video branch of ``prepare_inputs_labels_for_multimodal``, the body
of ``if idx in video_idx_in_batch:``, at the LLM width (after the projector and ``get_2dPool``,
27 x 27 -> 14 x 14). That body is read from the file and run as a function of what it reads:
the frames' features ``image_feat`` [T, N, D], SigLIP's attention ``attn_weights`` [T, N] (here
vidpress's ``scores``) and, for VisionZip, SigLIP's head-mean keys ``metric`` [T, N, 72] (here a
fixed random projection of the tokens, given to vidpress as ``keys``), and the settings it reads
from the environment. ``self`` is a stand-in carrying the methods of the file's class (each
compiled alone, without the file's llava imports) and an identity ``get_2dPool`` (the inputs are
pooled already, as vidpress's are). ``mm_newline_position`` is "one_token" (LLaVA-OneVision):
the branch then adds no newline tokens, like vidpress's stage 1 (LLaVA-Video's "grid" adds one
per row, in a Python loop). Nothing in the two files names a device.
- VisionZip keeps SPATIAL_TOKENS = round(N r) tokens in every frame (the scripts' 20 at 10% of
  196), int(54/64 of them) dominant; vidpress spreads round(r T N) over the frames, so frames
  given one token fewer have one contextual target fewer, at another stride. The official kept
  tokens come from a second official run on one-hot features (the selection reads only the
  attention and the keys): each output's largest coefficient is the dominant token it copies or
  the target of a contextual token (1, against 1/c for its c members; a target with a single
  member ties with it, and the lower index is taken).
- HoliTom runs with RETAIN_RATIO = r, T = tau (``--tau``; default the scripts' 0.65 at 10% and
  below, 0.8 above), BETA 0.6, D 0, K 7, MAX_WINDOW_SIZE 1024. Its quotas are ceil(n_dyn r') per
  frame and round(n_static r') per window, and with r' = 1 it keeps what is left (vidpress makes
  static positions dynamic again to reach r T N). The official kept tokens are the positions its
  two merge methods return, logged by wrappers on the stand-in in a separate run: a dynamic
  token at its frame, a static one at its window's first frame (where vidpress places it too).
  The synthetic frames are alike throughout (s_t[j] in 0.91-0.93): at the scripts' tau every
  position is static over a single window of all frames; ``--tau 0.915`` mixes in dynamic ones
  (7 windows of 2-9 frames at 32 frames). The official compares its bf16 similarities (8 distinct
  values here) with tau, vidpress float32 ones, so at 0.915 the windows differ (5 at 32 frames).

Rows give both kept counts and the share of the official's kept video tokens that vidpress keeps
too. Official code that raises (e.g. FastVID at 1%) gives an error row.
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import math
import statistics
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MethodType, SimpleNamespace

import torch

from vidpress import functional as F
from vidpress.engine.graphs import PlannedReplays
from vidpress.metrics.latency import Clock, time_call

sys.path.insert(0, str(Path(__file__).parent))
from bench_stage1 import synthetic_video, write_report  # noqa: E402

TEXT_BEFORE, TEXT_AFTER = 14, 20  # prompt tokens around the video (FastVID)
KEY_WIDTH = 72  # SigLIP so400m's head width: the keys' (VisionZip)
OFFICIAL_GLOBALS = {"torch": torch, "nn": torch.nn, "math": math}  # what the llava_arch.py use


@dataclass
class Case:
    """One comparison: both methods on the same inputs, as calls without arguments."""

    official: Callable[[], object]  # the official code (timed)
    vidpress: Callable[..., F.CompressedTokens]  # vidpress (timed), given its stage-1 runner
    official_kept: Callable[[], set[int]]  # flat t N + j of the video tokens the official keeps


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


def compile_at(path: Path, source: str, first_line: int, name: str):
    """Compile ``source`` (starting at line ``first_line`` of ``path``, so that tracebacks point
    into the official file) with torch, math and a silent ``rank0_print``; return ``name``."""
    namespace = {**OFFICIAL_GLOBALS, "rank0_print": lambda *args, **kwargs: None}
    exec(compile("\n" * (first_line - 1) + source, str(path), "exec"), namespace)
    return namespace[name]


def official_branch(path: Path, reads: tuple[str, ...]):
    """(branch, methods) of a cokeshao/HoliTom ``llava_arch.py``: the video branch of its
    ``prepare_inputs_labels_for_multimodal`` (the body of ``if idx in video_idx_in_batch:``) as
    ``branch(self, image_features, *reads) -> the video's tokens`` (what it appends to
    ``image_features``), and every method of the file's class, each compiled alone."""
    text = path.read_text()
    lines = text.splitlines()
    cls = next(node for node in ast.parse(text).body if isinstance(node, ast.ClassDef))

    def source(first: int, last: int) -> str:
        return textwrap.dedent("\n".join(lines[first - 1 : last]))

    methods = {
        node.name: compile_at(path, source(node.lineno, node.end_lineno), node.lineno, node.name)
        for node in cls.body
        if isinstance(node, ast.FunctionDef)
    }
    prepare = next(
        node
        for node in cls.body
        if getattr(node, "name", None) == "prepare_inputs_labels_for_multimodal"
    )
    branch = next(
        node
        for node in ast.walk(prepare)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "idx in video_idx_in_batch"
    )
    first, last = branch.body[0].lineno, branch.body[-1].end_lineno
    header = f"def video_branch(self, image_features, {', '.join(reads)}):\n"
    body = textwrap.indent(source(first, last), "    ") + "\n    return image_features[-1]\n"
    return compile_at(path, header + body, first - 1, "video_branch"), methods


def stand_in(methods: dict, **attributes) -> SimpleNamespace:
    """A minimal ``self``: ``attributes``, and ``methods`` bound to it."""
    state = SimpleNamespace(**attributes)
    for name, function in methods.items():
        setattr(state, name, MethodType(function, state))
    return state


def identity(x):
    """The stand-in's ``get_2dPool``: the inputs are pooled already."""
    return x


def official_inputs(tokens, scores, frame_features, retention):
    """The decoder state the official FastVID block reads: (self, keyword arguments)."""
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


def fastvid_case(block, tokens, scores, retention) -> Case:
    """The official block on the decoder state around the video; kept: its ``keep_indexs``."""
    frames, n, _ = tokens.shape
    frame_features = tokens.float().mean(dim=1)
    state, kwargs = official_inputs(tokens, scores, frame_features, retention)

    def official_kept():
        _, keep = block(state, **kwargs)
        video = keep[(keep >= TEXT_BEFORE) & (keep < TEXT_BEFORE + frames * n)]
        return set((video - TEXT_BEFORE).tolist())

    return Case(
        lambda: block(state, **kwargs),
        lambda runner: F.compress_video_tokens(
            "fastvid",
            tokens,
            scores,
            retention=retention,
            frame_features=frame_features,
            runner=runner,
        ),
        official_kept,
    )


VISIONZIP_READS = (
    "image_feat",
    "attn_weights",
    "metric",
    "dominant_num",
    "contextual_num",
    "images_dtype",
    "mm_newline_position",
)


def visionzip_case(official, tokens, scores, retention) -> Case:
    """The official branch with SPATIAL_TOKENS = round(N r) per frame and keys, a fixed random
    projection of the tokens to width 72; kept: each output's largest one-hot coefficient."""
    branch, methods = official
    frames, n, dim = tokens.shape
    g = torch.Generator(device="cpu").manual_seed(2)
    projection = (torch.randn(dim, KEY_WIDTH, generator=g) / dim**0.5).to(tokens.device)
    keys = (tokens.float() @ projection).to(tokens.dtype)
    spatial = max(1, round(n * retention))  # SPATIAL_TOKENS
    dominant = int(spatial * (54 / 64))  # int(spatial_tokens * dominant_ratio), as officially
    state = stand_in(methods, get_2dPool=identity)

    def run(features):
        return branch(
            state,
            [],
            image_feat=features,
            attn_weights=scores,
            metric=keys,
            dominant_num=dominant,
            contextual_num=spatial - dominant,
            images_dtype=features.dtype,
            mm_newline_position="one_token",
        )

    def official_kept():
        one_hot = torch.eye(n, device=tokens.device).repeat(frames, 1, 1)
        source = run(one_hot).argmax(dim=-1)  # [T, spatial], the first maximum on a tie
        frame = torch.arange(frames, device=tokens.device)[:, None]
        return set((frame * n + source).flatten().tolist())

    return Case(
        lambda: run(tokens),
        lambda runner: F.compress_video_tokens(
            "visionzip", tokens, scores, retention=retention, keys=keys, runner=runner
        ),
        official_kept,
    )


HOLITOM_READS = (
    "image_feat",
    "attn_weights",
    "retain_ratio",
    "tau",
    "max_window_size",
    "D",
    "Beta",
    "K",
    "images_dtype",
    "mm_newline_position",
)


def holitom_tau(retention: float, tau: float | None = None) -> float:
    """``tau``, or HoliTom's scripts' T if None: 0.65 at retention 10% and below, 0.8 above."""
    if tau is not None:
        return tau
    return 0.65 if retention <= 0.10 else 0.8


def log_positions(state: SimpleNamespace) -> list:
    """Wrap the stand-in's merge methods to log the positions each call keeps, per window:
    ("dynamic", [frames of the window, kept]), then ("static", [1, kept]) if it has 2+ frames."""
    calls = []

    def logging(kind, method):
        def logged(*args):
            feat, pos = method(*args)
            calls.append((kind, pos))
            return feat, pos

        return logged

    dynamic, static = state.merge_tokens_by_attention_density, state.merge_tokens_by_density
    state.merge_tokens_by_attention_density = logging("dynamic", dynamic)
    state.merge_tokens_by_density = logging("static", static)
    return calls


def logged_kept(calls: list, n: int) -> set[int]:
    """Flat t N + j of the logged positions; a static one at its window's first frame."""
    kept, end = set(), 0
    for kind, pos in calls:
        if kind == "dynamic":  # a window's first call: [frames of the window, kept]
            start, end = end, end + pos.shape[0]
            frames = torch.arange(start, end)[:, None]
        else:  # [1, kept], at the window's first frame
            frames = torch.tensor([[start]])
        kept |= set((frames * n + pos.long().cpu()).flatten().tolist())
    return kept


def holitom_case(official, tokens, scores, retention, tau) -> Case:
    """The official branch with the scripts' settings (D = 0, Beta 0.6, K 7, windows up to 1024
    frames); kept: the positions its merge methods return (``log_positions``)."""
    branch, methods = official
    settings = dict(
        image_feat=tokens,
        attn_weights=scores,
        retain_ratio=retention,
        tau=tau,
        max_window_size=1024,
        D=0.0,
        Beta=0.6,
        K=7,
        images_dtype=tokens.dtype,
        mm_newline_position="one_token",
    )
    state = stand_in(methods, get_2dPool=identity)

    def official_kept():
        logged = stand_in(methods, get_2dPool=identity)
        calls = log_positions(logged)
        branch(logged, [], **settings)
        return logged_kept(calls, tokens.shape[1])

    return Case(
        lambda: branch(state, [], **settings),
        lambda runner: F.compress_video_tokens(
            "holitom", tokens, scores, retention=retention, tau=tau, runner=runner
        ),
        official_kept,
    )


METHODS = {  # name: (read the official code from its file, make a Case of it)
    "fastvid": (official_block, fastvid_case),
    "visionzip": (functools.partial(official_branch, reads=VISIONZIP_READS), visionzip_case),
    "holitom": (functools.partial(official_branch, reads=HOLITOM_READS), holitom_case),
}


def build_case(method, official, frames, per_frame, dim, retention, device, tau=None) -> Case:
    """The ``method`` case on ``synthetic_video(frames, per_frame, dim, device)``; ``official``
    as read by ``METHODS[method][0]``; ``tau`` HoliTom's (``holitom_tau``)."""
    tokens, scores = synthetic_video(frames, per_frame, dim, device)
    make_case = METHODS[method][1]
    if method == "holitom":
        return make_case(official, tokens, scores, retention, holitom_tau(retention, tau))
    return make_case(official, tokens, scores, retention)


def summary(times: list[float]) -> dict:
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}


def kept_positions(res: F.CompressedTokens, per_frame: int) -> set[int]:
    """Flat t N + j of vidpress's output tokens (a merged one: its centre's)."""
    frame, row, col = res.positions.unbind(dim=1)
    return set((frame * per_frame + row * math.isqrt(per_frame) + col).tolist())


def compare(case: Case, per_frame: int, repeats: int, warmup: int, graphs: bool) -> dict:
    """Both timed with CUDA events (``repeats`` 0: untimed, any device), their kept counts and
    the share of the official's kept video tokens that vidpress keeps too. ``graphs``: vidpress
    replays its planned stage 1 as CUDA graphs (``PlannedReplays``, as the fast path does); its
    first call, which captures the graph, is timed apart."""

    def timed(fn) -> dict:
        return summary(time_call(fn, Clock("cuda"), warmup, repeats)) if repeats else {}

    runner = PlannedReplays(graphs=repeats > 0) if graphs else None
    first = (
        time_call(lambda: case.vidpress(runner), Clock("cuda"), 0, 1) if graphs and repeats else []
    )
    row = {"vidpress": timed(lambda: case.vidpress(runner))}
    res = case.vidpress(runner)
    row["vidpress"]["kept"] = len(res)
    if graphs:
        row["vidpress"].update(graphs=runner.captures, first_call_ms=first[0] if first else None)
    try:
        row["official"] = timed(case.official)
        official_kept = case.official_kept()
    except (IndexError, RuntimeError) as err:  # e.g. FastVID: no context slot left at 1%
        return {**row, "official": {"error": f"{type(err).__name__}: {err}"}}
    row["official"]["kept"] = len(official_kept)
    if repeats:
        row["ratio"] = row["vidpress"]["median_ms"] / row["official"]["median_ms"]
    also = official_kept & kept_positions(res, per_frame)
    row["official_kept_also_kept_by_vidpress"] = len(also) / len(official_kept)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=list(METHODS), default="fastvid")
    parser.add_argument(
        "--official",
        type=Path,
        required=True,
        help="FastVID's modeling_qwen2.py, HoliTom's visionzip/ or holitom/llava_arch.py",
    )
    parser.add_argument("--frames", nargs="+", type=int, default=[32, 64])
    parser.add_argument("--tokens-per-frame", type=int, default=196)
    parser.add_argument("--dim", type=int, default=3584)
    parser.add_argument("--retention", nargs="+", type=float, default=[0.1, 0.05, 0.02])
    parser.add_argument("--tau", type=float, default=None, help="HoliTom's (default: scripts')")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--check", action="store_true", help="once on the CPU, untimed")
    parser.add_argument(
        "--graphs", action="store_true", help="vidpress's planned stage 1 as CUDA graphs"
    )
    parser.add_argument("--out", default=None)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.tau is not None and args.method != "holitom":
        parser.error("--tau is HoliTom's")
    if not args.check and not torch.cuda.is_available():
        parser.error("this benchmark needs a CUDA GPU (run it through the device tool)")
    device, repeats = ("cpu", 0) if args.check else ("cuda", args.repeats)
    official = METHODS[args.method][0](args.official)
    rows = []
    for frames in args.frames:
        for retention in args.retention:
            case = build_case(
                args.method,
                official,
                frames,
                args.tokens_per_frame,
                args.dim,
                retention,
                device,
                args.tau,
            )
            row = {
                "method": args.method,
                "frames": frames,
                "tokens_per_frame": args.tokens_per_frame,
                "dim": args.dim,
                "retention": retention,
                **({"tau": holitom_tau(retention, args.tau)} if args.method == "holitom" else {}),
                **compare(case, args.tokens_per_frame, repeats, args.warmup, args.graphs),
                "repeats": repeats,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    if not args.check:
        write_report("benchmarks/stage1_official.py", argv, rows, args.out)


if __name__ == "__main__":
    main()
