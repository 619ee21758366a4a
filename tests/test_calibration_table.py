"""benchmarks/calibration_table.py on the committed round-2 reports (issue 14)."""

from __future__ import annotations

import json

from benchmark_scripts import ROOT, load_benchmark

RESULTS = ROOT / "benchmarks" / "results"


def report(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def test_config_cells_count_only_when_they_set_the_paper_settings():
    """`--config unified@2/1` is the paper's 2% cell; `unified:clustering=false@2/1` is not."""
    table = load_benchmark("calibration_table")
    main = report("synthvqa_testbed_v2_round2")
    grid = report("synthvqa_testbed_v2_round2_grid")
    cells = table.main_configs([main, grid])
    assert cells[("unified", 2)][0]["name"] == "unified@2/1"
    assert cells[("holitom", 10)][0]["name"] == "holitom@10/5"
    only_grid = table.main_configs([grid])
    assert ("unified", 2) not in only_grid  # its 2% configs there all change a setting
    rows = table.table([main, grid]).splitlines()[2:]
    assert len(rows) == 20 and not any("not run" in row for row in rows)
    within = [row for row in rows if row.split("|")[8].strip() == "yes"]
    assert len(within) == 13  # testbed_v2_round2.md: 13 of the 16 baseline cells, no unified one
