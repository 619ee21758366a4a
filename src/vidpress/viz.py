"""``vidpress viz``: where the kept tokens are, frame by frame, and how many each press keeps.

One PNG per video:

- top: the sampled frames (as the model sees them) in a grid. Each LLM token covers a cell of the
  frame; cells of dropped tokens are dimmed, cells of kept tokens are shown as they are, and every
  kept token that stands for several input tokens (a cluster of the unified press, a merged token
  of HoliTom/FastVID) gets its own colour: its members are tinted with it, its centre (the
  position the token takes in the LLM) is outlined with it. So one sees where each refilled token
  came from, across frames too.
- bottom: tokens kept per frame, one bar group per frame, one bar per press (same retention),
  plus optional extra series (e.g. the unified press from its inner layer on, from ``run.stats``).

Only stage 1 (before the LLM) is computed here: the vision tower and projector run once and every
press compresses the same features (``adapter.prepare`` + ``press.compress_video``), so the
comparison is cheap and exactly what each press hands the LLM.
"""

from __future__ import annotations

import colorsys
import math
from pathlib import Path

import numpy as np
import torch

from vidpress.presses import (
    FastVIDPress,
    HoliTomPress,
    UnifiedPress,
    UniformPoolPress,
    VisionZipPress,
    press_name,
)

DIM = 0.28  # brightness of dropped tokens' cells
TINT = 0.45  # weight of a cluster's colour on its members' cells
DEFAULT_COMPARE = tuple(
    press_name(cls)
    for cls in (UnifiedPress, VisionZipPress, FastVIDPress, HoliTomPress, UniformPoolPress)
)
VIZ_QUESTION = "Describe the video."


def cluster_colours(count: int) -> np.ndarray:
    """[count, 3] float colours in [0, 1], spread around the hue circle (golden-ratio steps)."""
    hues = (np.arange(count) * 0.618033988749895) % 1.0
    return np.array([colorsys.hsv_to_rgb(h, 0.85, 1.0) for h in hues]).reshape(count, 3)


def stage1_results(loaded, prepared, presses: dict) -> dict:
    """{name: CompressedTokens} of each press's stage 1 on the prepared video (one tower run)."""
    from vidpress.adapters.base import Timer
    from vidpress.adapters.registry import get_adapter

    adapter = get_adapter(loaded.model)
    need = set().union(*(p.needs for p in presses.values() if p is not None))
    inputs = dict(prepared.inputs)
    mask = inputs["attention_mask"].long()
    with torch.inference_mode():
        prompt = adapter.prepare(inputs, mask, need, Timer(loaded.device))
        video = prompt.videos[0]
        return {
            name: press.compress_video(video)
            for name, press in presses.items()
            if press is not None
        }


def overlay(frames: torch.Tensor, grid: tuple[int, int], result) -> tuple[np.ndarray, list]:
    """Frames [T, 3, H, W] uint8 + one press's result -> ([T, H, W, 3] float image, outlines).

    outlines: (frame, row, col, colour) of each kept token's position: the centre of a
    multi-token output in its colour, a single kept token in white.
    """
    t, _, height, width = frames.shape
    rows, cols = grid
    n = rows * cols
    img = frames.permute(0, 2, 3, 1).float().numpy() / 255.0  # [T, H, W, 3]
    # token cell of every pixel row / column
    cell_r = np.minimum((np.arange(height) * rows) // height, rows - 1)
    cell_c = np.minimum((np.arange(width) * cols) // width, cols - 1)
    assignment = result.assignment.cpu().numpy().reshape(t, n)
    sizes = result.sizes.cpu().numpy()
    positions = result.positions.cpu().numpy()
    multi = np.flatnonzero(sizes > 1)
    palette = np.zeros((len(sizes), 3))
    palette[multi] = cluster_colours(len(multi))
    token_map = assignment.reshape(t, rows, cols)[:, cell_r][:, :, cell_c]  # [T, H, W]
    kept = token_map >= 0
    merged = kept & (sizes[np.maximum(token_map, 0)] > 1)
    colour = palette[np.maximum(token_map, 0)]  # [T, H, W, 3]
    out = np.where(kept[..., None], img, img * DIM)
    out = np.where(merged[..., None], (1 - TINT) * img + TINT * colour, out)
    white = np.ones(3)
    outlines = [
        (*positions[j].tolist(), palette[j] if sizes[j] > 1 else white) for j in range(len(sizes))
    ]
    return np.clip(out, 0, 1), outlines


def _bar_series(results: dict, frames: int, extra: dict | None) -> dict:
    series = {name: res.kept_per_frame(frames).tolist() for name, res in results.items()}
    series.update(extra or {})
    return series


def plot(
    frames: torch.Tensor,
    grid: tuple[int, int],
    results: dict,
    main: str,
    out: Path,
    *,
    title: str = "",
    extra_series: dict | None = None,
    columns: int = 8,
) -> Path:
    """Write the PNG (frame grid for ``results[main]`` + per-frame bars for all) to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    t = frames.shape[0]
    rows, cols = grid
    columns = min(columns, t)
    grid_rows = math.ceil(t / columns)
    aspect = frames.shape[2] / frames.shape[3]
    fig_w = 2.0 * columns
    frames_h = grid_rows * 2.0 * aspect + 0.2
    fig = plt.figure(figsize=(fig_w, frames_h + 3.6), dpi=110)
    heights = [2.0 * aspect] * grid_rows + [3.0]
    top = 1 - 0.5 / (frames_h + 3.6)  # room for the two title lines, no more
    spec = fig.add_gridspec(
        grid_rows + 1, columns, height_ratios=heights, hspace=0.12, wspace=0.04, top=top
    )
    image, outlines = overlay(frames, grid, results[main])
    cell_h, cell_w = frames.shape[2] / rows, frames.shape[3] / cols
    res = results[main]
    for f in range(t):
        ax = fig.add_subplot(spec[f // columns, f % columns])
        ax.imshow(image[f])
        for frame, r, c, colour in outlines:
            if frame == f:
                ax.add_patch(
                    Rectangle(
                        (c * cell_w - 0.5, r * cell_h - 0.5),
                        cell_w,
                        cell_h,
                        fill=False,
                        edgecolor=colour,
                        linewidth=1.6,
                    )
                )
        kept = int(res.kept_per_frame(t)[f])
        ax.set_title(f"frame {f}: {kept} kept", fontsize=8, pad=2)
        ax.set_xticks([])
        ax.set_yticks([])
    series = _bar_series(results, t, extra_series)
    ax = fig.add_subplot(spec[grid_rows, :])
    width = 0.8 / max(len(series), 1)
    x = np.arange(t)
    for i, (name, values) in enumerate(series.items()):
        total = sum(values)
        ax.bar(x - 0.4 + width * (i + 0.5), values, width, label=f"{name} ({total} tokens)")
    ax.set_xticks(x)
    ax.set_xlabel("frame")
    ax.set_ylabel("tokens kept")
    ax.set_xlim(-0.6, t - 0.4)
    ax.legend(fontsize=7, ncol=min(len(series), 3), loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    clusters = int((res.sizes > 1).sum())
    head = (
        f"{title}\n{main}: {len(res)} of {res.assignment.numel()} tokens kept "
        f"({clusters} stand for several: members tinted and centre outlined in one colour each; "
        "white outline: a single kept token); dimmed: dropped"
    )
    fig.suptitle(head.strip(), fontsize=9, y=0.995)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out


def presses_for(main_press, main_name: str, compare: list[str], retention: float | None) -> dict:
    """{name: press}: the main press first, then the comparison presses at its retention."""
    from vidpress.presses.settings import make_press, with_options

    presses = {main_name: main_press}
    ratio = retention if retention is not None else main_press.retention
    for name in compare:
        if name and name not in presses:
            press = make_press(with_options(name, [f"retention={ratio!r}"]))
            if press is not None and press.stage1 is not None:
                presses[name] = press
    return presses


def check_viz_press(press) -> None:
    """ValueError unless ``press`` has a stage before the LLM (what viz draws)."""
    if press is None or press.stage1 is None:
        raise ValueError("viz needs a press with a stage before the LLM (not none or fastv)")


def visualize(
    loaded,
    video,
    press,
    *,
    out: Path,
    compare=DEFAULT_COMPARE,
    retention: float | None = None,
    num_frames: int | None = None,
    fps: float | None = None,
    prepared=None,
    extra_series: dict | None = None,
    title: str | None = None,
) -> Path:
    """Prepare ``video`` (unless ``prepared`` is given), run each press's stage 1, write the PNG."""
    from vidpress.inference import prepare
    from vidpress.provenance import press_record

    check_viz_press(press)
    if prepared is None:
        prepared = prepare(loaded, video, VIZ_QUESTION, num_frames=num_frames, fps=fps)
    name = press_record(press)["name"]
    presses = presses_for(press, name, list(compare), retention)
    results = stage1_results(loaded, prepared, presses)
    info = prepared.info
    if title is None:
        title = (
            f"{info.path.name}: {prepared.num_frames} frames, "
            f"{prepared.grid[0]}x{prepared.grid[1]} tokens each "
            f"({prepared.visual_tokens} visual tokens), {loaded.family} model"
        )
    return plot(
        prepared.frames,
        prepared.grid,
        results,
        name,
        Path(out),
        title=title,
        extra_series=extra_series,
    )
