"""The project's targets ("bars") checked on a ``vidpress bench`` report, and the row lookups
they and the report's rendering share."""

from __future__ import annotations

from collections.abc import Callable

from vidpress.metrics.bench.config import REFERENCE
from vidpress.metrics.floors import speed_bars
from vidpress.presses import PAPER_PRESS


def find_row(report: dict, press: str, retention: str) -> dict | None:
    """The report's row of ``press`` at ``retention`` (a label such as "2%/1%"), or None."""
    for row in report.get("rows", []):
        if row["press"] == press and row["retention"] == retention:
            return row
    return None


def median_of(row: dict | None, key: str) -> float | None:
    """The median of ``row[key]`` (or its value when it is a plain number); None if absent."""
    if row is None or row.get(key) is None:
        return None
    value = row[key]
    return value["median"] if isinstance(value, dict) else value


def evaluate_bars(report: dict) -> list[dict]:
    """The project's targets (issue: LLaVA-OV-7B, 32 frames x 196 tokens, one H100), each with
    its measured value and whether it is met (None: not measured in this report)."""
    vanilla = find_row(report, "vanilla", "100%")
    unified = find_row(report, PAPER_PRESS, "2%/1%")
    fastvid = find_row(report, REFERENCE, "2%/1%") or find_row(report, REFERENCE, "2%")
    bars = []

    def bar(name: str, target: str, measured: float | None, ok: Callable[[float], bool], unit):
        bars.append(
            {
                "bar": name,
                "target": target,
                "measured": measured,
                "unit": unit,
                "met": None if measured is None else bool(ok(measured)),
            }
        )

    process = median_of(unified, "process_ms")
    bar("unified process (stage 1) at 2%", "<= 5 ms", process, lambda v: v <= 5.0, "ms")
    fv = median_of(fastvid, "process_ms")
    bar(
        "unified process / FastVID process at 2% (same run)",
        "<= 1",
        None if process is None or fv is None else process / fv,
        lambda v: v <= 1.0,
        "x",
    )
    vision = report.get("vision", {})
    bar(
        "vision scores / vision encoding (the adapter's video path)",
        "<= 10 %",
        vision.get("scores_pct_of_vision"),
        lambda v: v <= 10.0,
        "%",
    )
    p0, p1 = median_of(vanilla, "prefill_ms"), median_of(unified, "prefill_ms")
    bar(
        "LLM prefill speed-up, 100% / 2%/1%",
        ">= 22x",
        None if p0 is None or p1 is None else p0 / p1,
        lambda v: v >= 22.0,
        "x",
    )
    t0, t1 = median_of(vanilla, "ttft_ms"), median_of(unified, "ttft_ms")
    bar(
        "TTFT at 2%/1% / TTFT at 100%",
        "<= 0.35",
        None if t0 is None or t1 is None else t1 / t0,
        lambda v: v <= 0.35,
        "x",
    )
    big = max(report.get("sweep", []), key=lambda r: r["frames"], default=None)
    label = f"{big['frames']} frames" if big else "256 frames"
    at256 = big is not None and big["frames"] >= 256
    bar(
        f"unified process at 2%, {label} (in the model)",
        "<= 50 ms",
        median_of(big, "process_ms") if at256 else None,
        lambda v: v <= 50.0,
        "ms",
    )
    bar(
        f"unified compression extra peak memory, {label}",
        "<= 2 GiB",
        big["compress_extra_mib"] / 1024 if at256 and big["compress_extra_mib"] else None,
        lambda v: v <= 2.0,
        "GiB",
    )
    return bars


def report_bars(report: dict) -> list[dict]:
    """Every bar of ``report``: the project's targets and the target press's speed floors."""
    return evaluate_bars(report) + speed_bars(find_row(report, PAPER_PRESS, "2%/1%"))
