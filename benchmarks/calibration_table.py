"""The testbed's calibration table: % of uncompressed accuracy per press and retention, against the
paper's Table 1 (LLaVA-OV-7B, average over five benchmarks), from `vidpress eval` JSON reports.

    python benchmarks/calibration_table.py REPORT.json [MORE.json ...] > table.md

A cell comes from the first report that holds it (list the 700-item reports first). Stress
families (count, position, motion) are reported apart: the paper gives no per-family numbers, so
their column is the testbed's own % of uncompressed on those families.
"""

from __future__ import annotations

import json
import sys

from vidpress.evaluation.configs import RETENTIONS, config_of, grid_settings

# The paper's Table 1, "%" column (PAPER_RESULTS.md): press -> {retention %: % of uncompressed}.
PAPER_PERCENT = {
    "fastv": {10: 90.8, 5: 84.7, 2: 81.0, 1: 78.5},
    "visionzip": {10: 91.2, 5: 81.4, 2: 75.3, 1: 72.1},
    "fastvid": {10: 96.2, 5: 91.5, 2: 83.3, 1: 77.7},
    "holitom": {10: 98.3, 5: 94.0, 2: 87.7, 1: 82.9},
    "unified": {10: 98.4, 5: 95.4, 2: 90.1, 1: 84.1},
}
ROLES = {"fastv": "tuning", "visionzip": "tuning"}  # the rest is blind validation
STRESS = ("count", "position", "motion")
WITHIN = 4.0  # issue 14's bar, points of % of uncompressed


def family_mean(config: dict, families) -> float:
    return sum(config["per_family"][f]["accuracy"] for f in families) / len(families)


def main_configs(reports: list[dict]):
    """(press, retention %) -> (config, its report's uncompressed config), first report wins.

    A config is a cell when it is the paper grid's own config (`grid_settings`), whether it came
    from the main grid or from `--config` (as `--config unified@2/1` does)."""
    paper_names = {
        config_of(grid_settings(press, cell)).name for press in PAPER_PERCENT for cell in RETENTIONS
    }
    cells = {}
    for report in reports:
        configs = report["configs"]
        none = next(c for c in configs if c["press"] is None)
        for config in configs:
            if config["name"] in paper_names:
                cells.setdefault((config["press"], int(config["row"])), (config, none))
    return cells


def table(reports: list[dict]) -> str:
    cells = main_configs(reports)
    lines = [
        "| press | role | retention | testbed acc | testbed % | paper % | gap | within 4 | "
        "stress % (count/position/motion) | n |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for press, paper in PAPER_PERCENT.items():
        for retention, paper_pct in paper.items():
            if (press, retention) not in cells:
                lines.append(f"| {press} | | {retention}% | not run | | {paper_pct} | | | | |")
                continue
            config, none = cells[(press, retention)]
            pct = 100 * config["accuracy"] / none["accuracy"]
            stress = 100 * family_mean(config, STRESS) / family_mean(none, STRESS)
            gap = pct - paper_pct
            lines.append(
                f"| {press} | {ROLES.get(press, 'blind')} | {config['setting']} | "
                f"{100 * config['accuracy']:.1f} | {pct:.1f} | {paper_pct} | {gap:+.1f} | "
                f"{'yes' if abs(gap) <= WITHIN else 'no'} | {stress:.1f} | {config['n']} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python benchmarks/calibration_table.py REPORT.json [MORE.json ...]")
    loaded = []
    for path in sys.argv[1:]:
        with open(path) as f:
            loaded.append(json.load(f))
    print(table(loaded))
