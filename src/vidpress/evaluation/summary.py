"""Summaries of an evaluation: accuracy per task family and overall with Wilson intervals, and
the issue's bars (the paper's method against every baseline, paired McNemar tests)."""

from __future__ import annotations

import math

from vidpress.evaluation.configs import PAPER_PRESS, PressConfig


def wilson_halfwidth(correct: int, n: int, z: float = 1.96) -> float:
    """Half-width of the Wilson 95% interval of a proportion (0 when n is 0)."""
    if n == 0:
        return 0.0
    p = correct / n
    denom = 1 + z * z / n
    return z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for b vs c discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def summarize(raw: dict, configs: list[PressConfig], families: tuple[str, ...]) -> dict:
    """Accuracy per family and overall for each configuration, on the items all of them finished."""
    items = raw["items"]
    common = sorted(
        set(items).intersection(*(set(raw["configs"][c.name].predictions) for c in configs))
    )
    out = []
    base_acc = None
    for cfg in configs:
        rec = raw["configs"][cfg.name]
        correct = {i: rec.predictions[i] == items[i]["answer"] for i in common}
        fam = {}
        for f in families:
            sel = [i for i in common if items[i]["family"] == f]
            n_right = sum(correct[i] for i in sel)
            fam[f] = {"accuracy": n_right / len(sel) if sel else None, "n": len(sel)}
        n_right = sum(correct.values())
        acc = n_right / len(common) if common else float("nan")
        if cfg.press is None and base_acc is None:
            base_acc = acc

        def mean(d):
            vals = [d[i] for i in common if i in d]
            return sum(vals) / len(vals) if vals else None

        out.append(
            {
                "name": cfg.name,
                "press": cfg.press,
                "label": cfg.label,
                "group": cfg.group,
                "setting": cfg.setting,
                "row": cfg.row,
                "params": cfg.params,
                "accuracy": acc,
                "correct": n_right,
                "n": len(common),
                "ci95": wilson_halfwidth(n_right, len(common)),
                "per_family": fam,
                "visual_tokens_outer": mean(rec.kept_outer),
                "visual_tokens_inner": mean(rec.kept_inner),
                "stage1_ms": mean(rec.outer_ms),
                "inner_ms": mean(rec.inner_ms),
                "predictions": [rec.predictions[i] for i in common],
            }
        )
    for row in out:
        row["relative"] = row["accuracy"] / base_acc if base_acc else None
    return {
        "items": {
            "indices": common,
            "families": [items[i]["family"] for i in common],
            "answers": [items[i]["answer"] for i in common],
        },
        "configs": out,
        "uncompressed_accuracy": base_acc,
    }


def check_bars(summary: dict, target: str = PAPER_PRESS, keep: float = 0.9) -> dict:
    """The issue's bars: ``target`` at 2/1 keeps >= 90% of the uncompressed accuracy, and at 2/1
    and 1/0.5 beats every baseline at the same row (paired McNemar p-values reported).

    target: a press name, optionally with options (``unified:centred_gate=true``: the rows
    ``unified:centred_gate=true@2/1`` and ``@1/0.5``). Other configurations of the same press
    are variants, not baselines, and are not compared.
    """
    rows = {r["name"]: r for r in summary["configs"]}
    target_press = target.split(":")[0]
    base = summary["uncompressed_accuracy"]
    answers = summary["items"]["answers"]
    result = {"checks": []}
    for setting, row_pct in (("2/1", 2.0), ("1/0.5", 1.0)):
        name = f"{target}@{setting}"
        if name not in rows:
            continue
        ours = rows[name]
        ours_ok = [p == a for p, a in zip(ours["predictions"], answers, strict=True)]
        if setting == "2/1" and base:
            result["checks"].append(
                {
                    "check": f"{name} keeps >= {keep:.0%} of the uncompressed accuracy",
                    "value": ours["accuracy"] / base,
                    "passed": ours["accuracy"] / base >= keep,
                }
            )
        for other in summary["configs"]:
            if other["press"] in (None, target_press) or other["row"] != row_pct:
                continue
            theirs_ok = [p == a for p, a in zip(other["predictions"], answers, strict=True)]
            b = sum(o and not t for o, t in zip(ours_ok, theirs_ok, strict=True))
            c = sum(t and not o for o, t in zip(ours_ok, theirs_ok, strict=True))
            result["checks"].append(
                {
                    "check": f"{name} ahead of {other['name']}",
                    "value": ours["accuracy"] - other["accuracy"],
                    "passed": ours["accuracy"] > other["accuracy"],
                    "only_ours_right": b,
                    "only_theirs_right": c,
                    "mcnemar_p": mcnemar_p(b, c),
                }
            )
    result["all_passed"] = bool(result["checks"]) and all(c["passed"] for c in result["checks"])
    return result
