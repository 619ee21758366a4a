"""Reading video files with PyAV: frame counts, and the frames at given frame numbers, fast.

Frame ``n`` of a file is the ``n``-th frame a plain sequential decode yields. ``index_video``
demuxes the file once (headers can be wrong: tree.avi claims 444 frames and holds 68), counts the
frames and numbers them by presentation timestamp (pts): frame ``n`` has the ``n``-th smallest
packet pts. ``decode_frames`` then decodes with frame threads, seeks to the keyframe before a
wanted frame when that skips more than ``SEEK_GAP`` frames, and converts only the wanted frames.

The pts identify the frames only if the decoder yields every indexed frame, in pts order, with the
packet's pts. That is checked on every frame (after a seek, frames before the keyframe, an open
GOP's leading frames, are dropped); when it fails, or when the packets' pts are missing or
repeated, the frames are numbered by counting a sequential decode from the start instead.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# Decoding a few frames costs less than a seek, which restarts the decoder's frame threads.
SEEK_GAP = 8
# FFmpeg's thread types for decoding ("AUTO": frame and slice threads, one per core plus one).
THREAD_TYPE = "AUTO"


@dataclass(frozen=True)
class VideoInfo:
    """A video file: frames (counted by demuxing: headers can be wrong), fps, size."""

    path: Path
    total_frames: int
    fps: float | None
    width: int
    height: int

    @property
    def duration(self) -> float | None:
        return self.total_frames / self.fps if self.fps else None


@dataclass(frozen=True)
class VideoIndex:
    """What one demux of a file tells: the ``info``, each frame's pts and the keyframes.

    ``pts`` and ``keyframes`` are empty when the packets' pts cannot number the frames.
    """

    info: VideoInfo
    pts: tuple[int, ...]  # [total_frames], increasing: frame n's pts
    keyframes: tuple[int, ...]  # frame numbers of the keyframes, increasing

    def keyframe_before(self, number: int) -> int:
        """The last keyframe at or before frame ``number``; -1 when none is."""
        at = bisect.bisect_right(self.keyframes, number)
        return self.keyframes[at - 1] if at else -1


class VideoFileError(ValueError):
    """A video file that cannot be read; the one-line message names the file."""


def check_video_file(path) -> Path:
    """``path`` as a Path; VideoFileError when it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise VideoFileError(f"video file not found: {path}")
    return path


def one_line(err: Exception) -> str:
    """An exception's message on one line (its type name when it has none)."""
    return " ".join(str(err).split()) or type(err).__name__


@contextlib.contextmanager
def _decode_errors(path: Path):
    """Any error but a VideoFileError becomes one naming ``path``."""
    try:
        yield
    except VideoFileError:
        raise
    except Exception as err:  # PyAV raises many FFmpeg error types
        raise VideoFileError(f"cannot decode video file {path}: {one_line(err)}") from err


def _open_video(path: Path):
    """(container, its first video stream), decoding with ``THREAD_TYPE`` threads."""
    import av

    container = av.open(str(path))
    if not container.streams.video:
        container.close()
        raise VideoFileError(f"cannot decode video file {path}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = THREAD_TYPE
    return container, stream


def index_video(path) -> VideoIndex:
    """Demux ``path`` once (cached while the file's size and mtime stay): its VideoIndex."""
    path = check_video_file(path)
    stat = path.stat()
    return _index_video(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _index_video(path: Path, size: int, mtime_ns: int) -> VideoIndex:
    with _decode_errors(path):
        container, stream = _open_video(path)
        with container:
            rate = stream.average_rate or stream.guessed_rate
            width, height = stream.codec_context.width, stream.codec_context.height
            packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size > 0]
    if not packets or not width or not height:
        raise VideoFileError(f"cannot decode video file {path}: no video frames")
    info = VideoInfo(path, len(packets), float(rate) if rate else None, width, height)
    pts = sorted(p for p, _ in packets if p is not None)
    if len(set(pts)) != len(packets):  # missing or repeated pts
        return VideoIndex(info, (), ())
    number = {p: n for n, p in enumerate(pts)}
    keyframes = sorted(number[p] for p, key in packets if key)
    return VideoIndex(info, tuple(pts), tuple(keyframes))


def probe_video(path) -> VideoInfo:
    """Frame count, fps and size of a video file; ValueError naming it if it cannot be read."""
    return index_video(path).info


def to_rgb(frame) -> np.ndarray:
    """A decoded frame at native size: [H, W, 3] uint8."""
    return frame.to_ndarray(format="rgb24")


def decode_frames(
    path, numbers: Iterable[int], convert: Callable[..., np.ndarray] = to_rgb
) -> list[np.ndarray]:
    """``convert(frame)`` for each frame number in ``numbers`` (any order, repeats allowed).

    ValueError naming the file when it cannot be read or a number is not one of its frames.
    """
    index = index_video(path)
    numbers = [int(n) for n in numbers]
    path, total = index.info.path, index.info.total_frames
    outside = [n for n in numbers if not 0 <= n < total]
    if outside or not numbers:
        raise VideoFileError(
            f"frame numbers must be in [0, {total - 1}] for video file {path}, got "
            f"{outside[:5] or 'none'}"
        )
    wanted = sorted(set(numbers))
    with _decode_errors(path):
        got = _decode_seeking(index, wanted, convert) if index.pts else None
        if got is None:
            got = _decode_sequential(path, wanted, convert)
    missing = [n for n in wanted if n not in got]
    if missing:
        raise VideoFileError(f"cannot decode video file {path}: frames {missing[:5]} missing")
    return [got[n] for n in numbers]


def read_frames(path, indices: Iterable[int]) -> torch.Tensor:
    """The frames ``indices`` at native size: uint8 [T, 3, H, W]."""
    frames = decode_frames(path, indices)  # T x [H, W, 3]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


def _decoded(packets: Iterable) -> Iterator:
    """The frames that decoding ``packets`` in order yields."""
    for packet in packets:
        yield from packet.decode()


def _decode_seeking(index: VideoIndex, wanted: list[int], convert) -> dict | None:
    """{number: convert(frame)} for the increasing ``wanted``, frames found by pts.

    None when the decoder's frames do not match the index (see the module doc).
    """
    number_of = {p: n for n, p in enumerate(index.pts)}
    wanted_set, got = set(wanted), {}
    container, stream = _open_video(index.info.path)
    with container:
        frames, start, position = _decoded(container.demux(stream)), 0, -1
        for target in wanted:
            if target in got:
                continue
            key = index.keyframe_before(target)
            if key - position > SEEK_GAP:
                landed = _seek(container, stream, index, key, number_of)
                if landed is None:
                    return None
                frames, start, position = landed[0], landed[1], landed[1] - 1
            for frame in frames:
                n = number_of.get(frame.pts, -1)
                if 0 <= n < start:
                    continue  # a leading frame of an open GOP, not decodable after a seek
                if n != position + 1:
                    return None
                position = n
                if n in wanted_set:
                    got[n] = convert(frame)
                if n >= target:
                    break
    return got


def _seek(container, stream, index: VideoIndex, key: int, number_of: dict):
    """Seek so that decoding starts at keyframe ``key`` or an earlier one.

    (frames from there, the number of the keyframe it starts at); None when no seek lands on a
    keyframe of the index at or before ``key``.
    """
    import av

    earlier = index.keyframes[: bisect.bisect_right(index.keyframes, key)]
    for keyframe in reversed(earlier):
        try:
            container.seek(index.pts[keyframe], stream=stream, backward=True)
        except av.FFmpegError:
            return None
        packets = container.demux(stream)
        first = next(packets, None)
        if first is None or not first.is_keyframe:
            continue
        landed = number_of.get(first.pts, key + 1)
        if landed <= key:
            return _decoded(itertools.chain([first], packets)), landed
    return None


def _decode_sequential(path: Path, wanted: list[int], convert) -> dict:
    """{number: convert(frame)} for ``wanted``, frames numbered by counting from the start."""
    wanted_set, got = set(wanted), {}
    container, stream = _open_video(path)
    with container:
        for n, frame in enumerate(container.decode(stream)):
            if n in wanted_set:
                got[n] = convert(frame)
            if n >= wanted[-1]:
                break
    return got
