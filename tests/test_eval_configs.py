"""Evaluation configurations, statistics, bars and report writers (no model needed)."""

import json

import pytest

from vidpress.commands import eval as E
from vidpress.evaluation import configs as C
from vidpress.evaluation import report as R
from vidpress.evaluation import runner as Run
from vidpress.evaluation import summary as Su
from vidpress.testbed.synthvqa import FAMILIES


def test_parse_retention_semantics():
    u = C.parse_config("unified@2/1")
    assert u.params == {"retention": 0.02, "inner_keep": 0.5} and u.setting == "2/1"
    assert C.parse_config("unified@2").setting == "2/1"  # default inner stage keeps half
    nm = C.parse_config("unified:inner_merging=false@2")
    assert nm.setting == "2" and nm.label == "Unified w/o merging"
    f = C.parse_config("fastv@2")
    assert f.params == {"retention": 0.02} and f.setting == "100/2" and f.row == 2
    assert C.parse_config("fastv@100/2").name == f.name
    h = C.parse_config("holitom@10/5")
    assert h.params["inner_keep"] == pytest.approx(0.5)
    assert C.parse_config("visionzip@10").params == {"retention": 0.1}
    assert C.parse_config("none").press is None and C.parse_config("none").build() is None
    t = C.parse_config("unified:tau=0.8,k=5@1/0.5")
    assert t.params["tau"] == 0.8 and t.params["k"] == 5 and t.build().tau == 0.8


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("nope@2", "unknown press"),
        ("unified", "needs a retention"),
        ("visionzip@2/1", "no inner stage"),
        ("unified@1/2", "must not exceed"),
        ("unified@0", r"\(0, 100\]"),
        ("fastv@50/2", "FastV keeps every token"),
        ("unified:retention=0.1@2", "through @A/B"),
        ("unified:tau=3@2", "tau"),
        ("unified:tau@2", "key=value"),
    ],
)
def test_parse_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        C.parse_config(spec)


def test_paper_grids():
    grid = C.standard_configs()
    assert len(grid) == 1 + 4 * 9  # uncompressed + (7 baselines + unified + w/o merging) x 4
    assert {c.setting for c in grid if c.press == "fastv"} == {"100/10", "100/5", "100/2", "100/1"}
    ablation = C.ablation_configs()
    assert len(ablation) == 7 and len({c.name for c in ablation}) == 7
    assert all(c.params["retention"] == 0.02 for c in ablation)
    assert all(c.params["inner_merging"] is False for c in ablation)
    merged = C.dedupe(grid + ablation)
    assert len(merged) == 43  # "Attn + Sim + Cluster" is the main table's w/o-merging row
    assert all(c.build() is not None for c in merged if c.press)


def test_statistics():
    assert Su.mcnemar_p(0, 0) == 1.0
    assert Su.mcnemar_p(10, 0) == pytest.approx(2 / 2**10)
    assert Su.mcnemar_p(5, 5) == 1.0
    assert 0 < Su.wilson_halfwidth(80, 100) < 0.1 and Su.wilson_halfwidth(0, 0) == 0


def _fake_summary():
    configs = C.dedupe(C.standard_configs(("2/1", "1/0.5")) + C.ablation_configs())
    answers = [i % 4 for i in range(28)]
    items = {i: {"family": FAMILIES[i % 7], "answer": answers[i]} for i in range(28)}
    raw = {"items": items, "configs": {}}
    for k, cfg in enumerate(configs):
        rec = Run.ConfigRecord()
        good = 26 if cfg.press is None else 25 if cfg.press == "unified" else 10 + k % 5
        for i in range(28):
            rec.predictions[i] = answers[i] if i < good else (answers[i] + 1) % 4
            rec.kept_outer[i] = 125
        raw["configs"][cfg.name] = rec
    return Su.summarize(raw, configs, FAMILIES)


def test_summary_bars_and_reports(tmp_path):
    summary = _fake_summary()
    none = summary["configs"][0]
    assert none["name"] == "none" and none["n"] == 28
    assert none["accuracy"] == pytest.approx(26 / 28)
    assert sum(f["n"] for f in none["per_family"].values()) == 28
    unified = next(c for c in summary["configs"] if c["name"] == "unified@2/1")
    assert unified["relative"] == pytest.approx(25 / 26)
    bars = Su.check_bars(summary)
    assert bars["all_passed"] and len(bars["checks"]) == 1 + 2 * 7
    result = {"run": R.run_header(["vidpress", "eval"]), "suite": {"split": "test"}, **summary}
    result["bars"] = bars
    paths = R.write_results(result, tmp_path, "fake")
    assert [p.suffix for p in paths] == [".json", ".md", ".png"]
    text = paths[1].read_text()
    assert "| Unified | " in text and "Ablation at 2%" in text and "All bars met: **yes**" in text
    assert json.loads(paths[0].read_text())["configs"][0]["name"] == "none"


def test_plot_panels_follow_the_rows(tmp_path):
    """Extra configurations alone still get a plot (their bars); the uncompressed row alone gets
    none, and the markdown then links no image."""
    summary = _fake_summary()
    custom = [dict(c, group="custom") for c in summary["configs"] if c["name"] == "unified@2/1"]
    only_custom = {**summary, "configs": [summary["configs"][0], *custom]}
    assert R.plot_results(only_custom, tmp_path / "custom.png")
    assert (tmp_path / "custom.png").stat().st_size > 0
    only_base = {"run": R.run_header(["vidpress", "eval"]), "suite": {}, **summary}
    only_base["configs"] = summary["configs"][:1]
    paths = R.write_results(only_base, tmp_path, "base")
    assert [p.suffix for p in paths] == [".json", ".md"]
    assert "![" not in paths[1].read_text()


def test_bars_for_a_variant():
    """Bars for an option variant of the unified press: its own rows against the baselines,
    never against the other unified rows; --bars-for must name an evaluated configuration."""
    configs = C.dedupe(
        C.standard_configs(("2/1", "1/0.5"))
        + [C.parse_config("unified:centred_gate=true@2/1"), C.parse_config("fastv@2")]
    )
    answers = [i % 4 for i in range(28)]
    raw = {"items": {i: {"family": FAMILIES[i % 7], "answer": answers[i]} for i in range(28)}}
    raw["configs"] = {}
    for cfg in configs:
        rec = Run.ConfigRecord()
        good = 27 if "centred" in cfg.name else 20 if cfg.press == "unified" else 24
        for i in range(28):
            rec.predictions[i] = answers[i] if i < good else (answers[i] + 1) % 4
        raw["configs"][cfg.name] = rec
    summary = Su.summarize(raw, configs, FAMILIES)
    assert not Su.check_bars(summary)["all_passed"]  # the default rows trail the baselines
    bars = Su.check_bars(summary, "unified:centred_gate=true")
    names = [c["check"] for c in bars["checks"]]
    assert names[0].startswith("unified:centred_gate=true@2/1 keeps") and bars["all_passed"]
    assert len(names) == 1 + 7 and not any("ahead of unified" in n for n in names)
    assert E.bars_target(None, configs) == "unified"
    assert E.bars_target("unified:centred_gate=True", configs) == "unified:centred_gate=true"
    with pytest.raises(ValueError, match="--bars-for 'unified:tau=0.8'.*not evaluated"):
        E.bars_target("unified:tau=0.8", configs)
    with pytest.raises(ValueError, match="without @"):
        E.bars_target("unified@2/1", configs)


def test_cpu_diagnostic_files(tmp_path):
    """A benchmarks/ diagnostic's record and its two files."""
    record = R.cpu_diagnostic_record("python benchmarks/x.py --out y", 0.0, items=3)
    assert record["command"] == "python benchmarks/x.py --out y" and record["items"] == 3
    assert record["machine"].startswith("CPU (") and record["seconds"] > 0
    R.write_json_and_markdown(tmp_path / "diag", record, "# x\n")
    assert json.loads((tmp_path / "diag.json").read_text()) == record
    assert (tmp_path / "diag.md").read_text() == "# x\n"
