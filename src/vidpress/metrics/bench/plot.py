"""The PNG of a ``vidpress bench`` report."""

from __future__ import annotations

from vidpress.metrics.bench.config import SWEEP_RETENTION
from vidpress.metrics.bench.targets import find_row, median_of


def plot(report: dict, path: str) -> None:
    """A PNG of the report: TTFT breakdown at 2%/1%, prefill and process vs retention, sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    m = report["model"]
    fig.suptitle(f"vidpress bench: {m['name']}, {m['frames']} frames, {report['device']}")

    # TTFT breakdown: the uncompressed model and every press at 2%/1% (or the smallest A/B)
    ax = axes[0, 0]
    chosen = [r for r in rows if r["press"] == "vanilla"]
    for press in dict.fromkeys(r["press"] for r in rows if r["press"] != "vanilla"):
        candidates = [r for r in rows if r["press"] == press]
        pick = [r for r in candidates if r["retention"] in ("2%/1%", "2%")] or candidates[-1:]
        chosen += pick[:1]
    names = [f"{r['press']}\n{r['retention']}" for r in chosen]
    parts = [
        ("vision", "vision_ms"),
        ("scores", "scores_ms"),
        ("process", "process_ms"),
        ("prefill", "prefill_ms"),
    ]
    bottom = [0.0] * len(chosen)
    for label, key in parts:
        values = [median_of(r, key) or 0.0 for r in chosen]
        ax.bar(names, values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    rest = [
        max((median_of(r, "ttft_ms") or 0.0) - b, 0.0) for r, b in zip(chosen, bottom, strict=True)
    ]
    ax.bar(names, rest, bottom=bottom, label="other (generate, embeddings, ...)", color="0.8")
    ax.set_ylabel("time to first token (ms)")
    ax.set_title("TTFT breakdown")
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7)

    # prefill and process vs retention
    for ax, key, title in (
        (axes[0, 1], "prefill_ms", "LLM prefill (ms)"),
        (axes[1, 0], "process_ms", "stage-1 compression, process (ms)"),
    ):
        for press in dict.fromkeys(r["press"] for r in rows if r["press"] != "vanilla"):
            points = [
                (float(r["retention"].split("/")[0].rstrip("%")), median_of(r, key))
                for r in rows
                if r["press"] == press and median_of(r, key) is not None
            ]
            if points:
                xs, ys = zip(*sorted(points), strict=True)
                ax.plot(xs, ys, marker="o", label=press)
        vanilla = find_row(report, "vanilla", "100%")
        if key == "prefill_ms" and vanilla:
            ax.axhline(median_of(vanilla, key), color="k", linestyle="--", label="100% (vanilla)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("retention A (%) entering the LLM")
        ax.set_title(title)
        ax.legend(fontsize=7)

    ax = axes[1, 1]
    sweep = report.get("sweep") or []
    if sweep:
        frames = [r["frames"] for r in sweep]
        ax.plot(frames, [median_of(r, "process_ms") for r in sweep], marker="o", label="process ms")
        ax.plot(frames, [median_of(r, "scores_ms") for r in sweep], marker="s", label="scores ms")
        ax.set_xlabel("frames")
        ax.set_ylabel("ms")
        ax.set_xscale("log", base=2)
        ax2 = ax.twinx()
        memory = [r["compress_extra_mib"] for r in sweep]
        if all(v is not None for v in memory):
            ax2.plot(frames, memory, color="C3", marker="^", label="extra peak MiB")
            ax2.set_ylabel("extra peak memory (MiB)")
            ax2.legend(loc="lower right", fontsize=7)
        ax.legend(loc="upper left", fontsize=7)
        ax.set_title(f"unified at {SWEEP_RETENTION:.0%}: scaling with frames")
    else:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
