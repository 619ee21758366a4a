"""Press configurations for an evaluation: which press, which hyper-parameters, which retention.

A configuration is a press settings text ``NAME[:key=value,...]@A[/B]`` (the grammar of
``vidpress.presses.settings``), e.g. ``unified@2/1``, ``unified:inner_merging=false,clustering=
false@2``, ``fastv@2`` (the paper's "100%/2%"), or ``none`` (uncompressed); here the retention
``@A[/B]`` is required.

``standard_configs()`` is the paper's Table 1 grid (every press at 10/5, 5/2.5, 2/1, 1/0.5, FastV
at 100/x, plus the unified press without inner merging) and ``ablation_configs()`` its Table 5
(the seven on/off combinations of attention order, similarity gate and clustering, at 2% without
inner merging).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from vidpress.presses import PAPER_PRESS, PRESSES, UnifiedPress
from vidpress.presses.settings import PressSettings, grid_settings, make_press, parse_settings

UNCOMPRESSED = "none"
RETENTIONS = ("10/5", "5/2.5", "2/1", "1/0.5")
ABLATION_RETENTION = "2"


@dataclass(frozen=True)
class PressConfig:
    """One evaluated configuration.

    name:    canonical settings text (unique key in results)
    press:   registry name, or None for the uncompressed model
    params:  press constructor keyword arguments (retention and inner_keep included)
    setting: retention as the paper writes it ("2/1", "100/2", "2"; "100" uncompressed)
    row:     the retention in percent the table row groups it under (100 uncompressed; FastV:
             what remains after its layer K)
    label:   human-readable method name
    group:   "main", "ablation" or "custom"
    """

    name: str
    press: str | None
    params: dict = field(default_factory=dict, hash=False, compare=False)
    setting: str = "100"
    row: float = 100.0
    label: str = "Uncompressed"
    group: str = "custom"

    def build(self):
        """The press object (None for the uncompressed model)."""
        return make_press(PressSettings(self.press, self.params))

    def with_group(self, group: str, label: str | None = None) -> PressConfig:
        return PressConfig(
            self.name,
            self.press,
            dict(self.params),
            self.setting,
            self.row,
            label or self.label,
            group,
        )


def config_of(settings: PressSettings) -> PressConfig:
    """The configuration of parsed settings: its canonical text, fields, setting and label."""
    press = settings.build()
    if press is None:
        return PressConfig(UNCOMPRESSED, None)
    row = float(f"{100 * press.retention:g}")  # every press's retention is its table row
    return PressConfig(
        settings.text, settings.press, settings.values(), press.setting, row, press.label
    )


def parse_config(spec: str) -> PressConfig:
    """Parse ``NAME[:key=value,...]@A[/B]`` or ``none`` (see the module docstring)."""
    settings = parse_settings(spec)
    if settings.press is not None and settings.retention is None:
        raise ValueError(f"{spec!r} needs a retention, e.g. {settings.press}@2/1 or @2")
    return config_of(settings)


def standard_configs(
    retentions=RETENTIONS, presses=tuple(PRESSES), no_merge: bool = True
) -> list[PressConfig]:
    """The paper's Table 1 grid: the uncompressed model, then every press at every retention
    (``grid_settings``), the paper's method also without inner merging."""
    out = [parse_config(UNCOMPRESSED).with_group("main")]
    for setting in retentions:
        outer = setting.partition("/")[0]
        for press in presses:
            out.append(config_of(grid_settings(press, setting)).with_group("main"))
            if press == PAPER_PRESS and no_merge:
                no_merge_row = grid_settings(press, outer)
                out.append(config_of(no_merge_row).with_group("main"))
    return out


def ablation_configs(retention: str = ABLATION_RETENTION) -> list[PressConfig]:
    """Table 5: the 7 non-empty on/off combinations of the three stage-1 components."""
    out = []
    switches = UnifiedPress.COMPONENTS
    for flags in itertools.product((True, False), repeat=len(switches)):
        if not any(flags):
            continue
        opts = [f"{s}=false" for s, on in zip(switches, flags, strict=True) if not on]
        spec = f"{PAPER_PRESS}:" + ",".join(["inner_merging=false", *opts]) + f"@{retention}"
        on = [short for short, f in zip(switches.values(), flags, strict=True) if f]
        out.append(parse_config(spec).with_group("ablation", " + ".join(on)))
    return out


def dedupe(configs: list[PressConfig]) -> list[PressConfig]:
    """Drop repeated names, keeping the first (so a main-table row wins over an ablation twin)."""
    seen, out = set(), []
    for cfg in configs:
        if cfg.name not in seen:
            seen.add(cfg.name)
            out.append(cfg)
    return out
