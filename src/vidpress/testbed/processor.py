"""A small processor for the testbed model: frames -> pixel values, question -> token ids.

The stock ``LlavaOnevisionProcessor`` needs torchvision (its video processor), which has no build
next to the project's torch; this one resizes and normalises frames with plain torch and writes
exactly ``frames x ceil(g/2)^2 + 1`` ``<video>`` placeholders (OV pools the g x g patch grid 2x2
and appends one newline token per video). ``prepare_video`` is the testbed family's preprocessing
(``adapters.llava_onevision.TestbedFamily``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from vidpress.adapters.inputs import Prepared, chat_template_errors
from vidpress.adapters.llava_onevision_inputs import pooled_side

from .convert_dinov2 import IMAGENET_MEAN, IMAGENET_STD, PATCH

PROCESSOR_FILE = "vidpress_testbed_processor.json"
IGNORE_INDEX = -100


@dataclass(frozen=True)
class FrameSpec:
    """How frames are turned into pixel values (saved next to the model)."""

    frames_px: int = 392
    patch_size: int = PATCH
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    video_token: str = "<video>"
    image_token: str = "<image>"

    def __post_init__(self):
        if self.frames_px <= 0 or self.frames_px % self.patch_size:
            raise ValueError(
                f"frames_px must be a positive multiple of {self.patch_size}, got {self.frames_px}"
            )

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.frames_px // self.patch_size

    @property
    def tokens_per_frame(self) -> int:
        """Visual tokens per frame after OV's 2x2 bilinear pooling: ceil(g/2)^2."""
        return pooled_side(self.grid) ** 2

    def num_video_tokens(self, num_frames: int) -> int:
        """Placeholders for one video: frames x tokens_per_frame + 1 newline token."""
        return num_frames * self.tokens_per_frame + 1


def frames_to_pixels(frames: torch.Tensor, spec: FrameSpec) -> torch.Tensor:
    """uint8 [T, 3, H, W] (or float in [0, 1]) -> normalised float32 [T, 3, S, S]."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be [T, 3, H, W], got {tuple(frames.shape)}")
    x = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
    size = spec.frames_px
    if x.shape[-2:] != (size, size):
        x = nn.functional.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        ).clamp(0, 1)
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    return (x - mean) / std


@dataclass
class TestbedProcessor:
    """Tokenizer + frame spec. ``__call__`` gives model inputs for a batch of (video, text)."""

    __test__ = False  # not a pytest class despite the name

    tokenizer: object
    spec: FrameSpec = field(default_factory=FrameSpec)

    @property
    def video_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.spec.video_token)

    def prompt_ids(self, text: str, num_frames: int) -> list[int]:
        """Chat-formatted ids: the video block first, then ``text``, then the assistant turn."""
        return self.media_prompt_ids(
            text, self.spec.video_token, [self.spec.num_video_tokens(num_frames)]
        )

    def media_prompt_ids(self, text: str, marker: str, counts: list[int]) -> list[int]:
        """Chat-formatted ids: one block of ``marker`` placeholders per entry of ``counts`` (that
        many each, a line apiece: several images, or one video), then ``text``, then the
        assistant turn."""
        messages = [{"role": "user", "content": f"{marker}\n" * len(counts) + text}]
        rendered = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        pieces = rendered.split(marker)
        marker_id = self.tokenizer.convert_tokens_to_ids(marker)
        ids = self._encode(pieces[0])
        for count, piece in zip(counts, pieces[1:], strict=True):
            ids += [marker_id] * count + self._encode(piece)
        return ids

    def answer_ids(self, answer: str) -> list[int]:
        """Ids of an assistant answer followed by the end-of-turn token."""
        return self._encode(answer) + [self.tokenizer.eos_token_id]

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def __call__(self, videos, texts, answers=None) -> dict[str, torch.Tensor]:
        """Batch inputs, left-padded.

        videos: one uint8 [T, 3, H, W] tensor or a list of them (same T); texts: str or list.
        answers: optional list of answer strings; then ``labels`` are returned (prompt = -100).
        Returns input_ids [B, L], attention_mask [B, L], pixel_values_videos [B, T, 3, S, S]
        (and labels [B, L]).
        """
        videos = [videos] if torch.is_tensor(videos) else list(videos)
        texts = [texts] if isinstance(texts, str) else list(texts)
        if len(videos) != len(texts):
            raise ValueError(f"got {len(videos)} videos but {len(texts)} texts")
        if len({v.shape[0] for v in videos}) != 1:
            raise ValueError("all videos in a batch must have the same number of frames")
        rows, label_rows = [], []
        for i, (video, text) in enumerate(zip(videos, texts, strict=True)):
            ids = self.prompt_ids(text, video.shape[0])
            labels = [IGNORE_INDEX] * len(ids)
            if answers is not None:
                ans = self.answer_ids(answers[i])
                ids, labels = ids + ans, labels + ans
            rows.append(ids)
            label_rows.append(labels)
        out = _left_pad(rows, self.tokenizer.pad_token_id)
        if answers is not None:
            out["labels"] = _left_pad(label_rows, IGNORE_INDEX)["input_ids"]
        out["pixel_values_videos"] = torch.stack([frames_to_pixels(v, self.spec) for v in videos])
        return out

    def save_pretrained(self, out_dir) -> None:
        """Write the tokenizer files and the frame spec json."""
        out_dir = Path(out_dir)
        self.tokenizer.save_pretrained(out_dir)
        (out_dir / PROCESSOR_FILE).write_text(json.dumps(asdict(self.spec), indent=1))

    @classmethod
    def from_pretrained(cls, model_dir) -> TestbedProcessor:
        """Load the processor saved by ``build_testbed``."""
        from transformers import AutoTokenizer

        model_dir = Path(model_dir)
        raw = json.loads((model_dir / PROCESSOR_FILE).read_text())
        raw["mean"], raw["std"] = tuple(raw["mean"]), tuple(raw["std"])
        return cls(AutoTokenizer.from_pretrained(model_dir), FrameSpec(**raw))


def _left_pad(rows: list[list[int]], pad: int) -> dict[str, torch.Tensor]:
    """Left-pad id lists to one length: input_ids and attention_mask [B, L]."""
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, length - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, length - len(r) :] = 1
    return {"input_ids": ids, "attention_mask": mask}


def prepare_video(loaded, info, question: str, count: int) -> Prepared:
    """``count`` frames of ``info``'s file and ``question`` as testbed inputs: frames uniformly over
    the file, shorter side scaled and centre-cropped (``video.decode_clip``, what SynthVQA feeds
    it), then ``TestbedProcessor`` (``loaded.processor``)."""
    from vidpress.testbed.video import decode_clip

    spec = loaded.processor.spec
    t0 = time.perf_counter()
    clip = decode_clip(info.path, size=spec.frames_px, max_frames=count)
    decode_seconds = time.perf_counter() - t0
    with chat_template_errors(loaded):
        inputs = loaded.processor(clip.frames, question)
    side = pooled_side(spec.grid)
    return Prepared(
        inputs=inputs,
        info=info,
        frames=clip.frames,
        frame_indices=list(clip.source_indices),
        grid=(side, side),
        resolution=(spec.frames_px, spec.frames_px),
        question=question,
        prompt_tokens=int(inputs["input_ids"].shape[1]),
        decode_seconds=decode_seconds,
    )
