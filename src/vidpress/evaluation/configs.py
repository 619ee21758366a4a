"""Press configurations for an evaluation: which press, which hyper-parameters, which retention.

A configuration is written ``NAME[:key=value,...][@A[/B]]``:

- ``NAME``: a press of ``vidpress.PRESSES`` ("unified", "fastv", ...) or "none" (uncompressed);
- ``key=value``: press fields (``true``/``false``, ints, floats, strings), e.g.
  ``unified:text_aware_merging=false,clustering=false@2``;
- ``@A/B``: the paper's "A%/B%" retention: A% of the visual tokens enter the LLM, B% remain from
  the inner layer K on. For presses with an inner stage (unified, holitom) ``inner_keep = B / A``;
  without B their default inner stage applies (keep 50%). Presses with no inner stage take
  ``@A`` only. FastV has no outer stage: ``fastv@x`` is the paper's "100%/x%"
  (``inner_keep = x / 100``; ``fastv@100/x`` is accepted too).

``standard_configs()`` is the paper's Table 1 grid (every press at 10/5, 5/2.5, 2/1, 1/0.5, FastV
at 100/x, plus the unified press without inner merging) and ``ablation_configs()`` its Table 5
(the seven on/off combinations of attention order, similarity gate and clustering, at 2% without
inner merging).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from vidpress.presses import PRESSES

UNCOMPRESSED = "none"
RETENTIONS = ("10/5", "5/2.5", "2/1", "1/0.5")
BASELINES = ("fastv", "visionzip", "fastvid", "holitom", "uniform", "framedrop", "random")
ABLATION_SWITCHES = ("attention_order", "similarity_gate", "clustering")
ABLATION_RETENTION = "2"
PRESS_LABELS = {
    "none": "Uncompressed",
    "unified": "Unified",
    "fastv": "FastV",
    "visionzip": "VisionZip",
    "fastvid": "FastVID",
    "holitom": "HoliTom",
    "uniform": "Uniform pooling",
    "framedrop": "Frame dropping",
    "random": "Random",
}
SWITCH_LABELS = {"attention_order": "Attn", "similarity_gate": "Sim", "clustering": "Cluster"}


@dataclass(frozen=True)
class PressConfig:
    """One evaluated configuration.

    name:    canonical spec string (unique key in results)
    press:   registry name, or None for the uncompressed model
    params:  press constructor keyword arguments (retention and inner_keep included)
    setting: retention as the paper writes it ("2/1", "100/2", "2"; "100" uncompressed)
    row:     the outer retention in percent the table row groups it under (100 uncompressed)
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
        return None if self.press is None else PRESSES[self.press](**self.params)

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


def _value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _pct(text: str, spec: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise ValueError(f"retention {text!r} in {spec!r} is not a number of percent") from None
    if not 0 < value <= 100:
        raise ValueError(f"retention in {spec!r} must be in (0, 100] percent, got {text!r}")
    return value


def _fmt(value: float) -> str:
    return f"{value:g}"


def _has_inner(press: str, params: dict) -> bool:
    if press == "unified":
        return params.get("text_aware_merging", True)
    if press == "holitom":
        return params.get("inner_merging", True)
    return press == "fastv"


def parse_config(spec: str) -> PressConfig:
    """Parse ``NAME[:key=value,...][@A[/B]]`` (see the module docstring)."""
    spec = spec.strip()
    head, _, retention = spec.partition("@")
    name, _, options = head.partition(":")
    name = name.strip().lower()
    if name in ("none", "uncompressed", "vanilla"):
        if options or retention:
            raise ValueError(f"the uncompressed model takes no options or retention: {spec!r}")
        return PressConfig(UNCOMPRESSED, None)
    if name not in PRESSES:
        raise ValueError(
            f"unknown press {name!r} in {spec!r}; expected one of {', '.join(PRESSES)} or none"
        )
    params = {}
    for item in filter(None, (o.strip() for o in options.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"press option {item!r} in {spec!r} must be key=value")
        params[key.strip()] = _value(value.strip())
    for key in ("retention", "inner_keep"):
        if key in params:
            raise ValueError(f"give {key} through @A/B, not as an option, in {spec!r}")
    if not retention:
        raise ValueError(f"{spec!r} needs a retention, e.g. {name}@2/1 or {name}@2")
    parts = retention.split("/")
    if len(parts) > 2:
        raise ValueError(f"retention must be A or A/B (percent), got {retention!r} in {spec!r}")
    a = _pct(parts[0], spec)
    b = _pct(parts[1], spec) if len(parts) == 2 else None
    inner = _has_inner(name, params)
    if name == "fastv":
        if b is None:
            a, b = 100.0, a
        elif a != 100:
            raise ValueError(
                f"FastV keeps every token before its layer: use fastv@x or @100/x, got {spec!r}"
            )
        params["inner_keep"] = b / 100
        setting, row = f"100/{_fmt(b)}", b
    else:
        params["retention"] = a / 100
        if b is not None:
            if not inner:
                raise ValueError(f"{spec!r}: this press has no inner stage; write @{_fmt(a)}")
            if b > a:
                raise ValueError(f"{spec!r}: B (inner) must not exceed A (outer)")
            params["inner_keep"] = b / a
            setting = f"{_fmt(a)}/{_fmt(b)}"
        elif inner:
            setting = f"{_fmt(a)}/{_fmt(a / 2)}"  # the default inner stage keeps half
        else:
            setting = _fmt(a)
        row = a
    PRESSES[name](**params)  # validate the fields now (clear errors before any model work)
    opts = ",".join(
        f"{k}={str(v).lower() if isinstance(v, bool) else v}"
        for k, v in params.items()
        if k not in ("retention", "inner_keep")
    )
    canonical = f"{name}{':' + opts if opts else ''}@{setting}"
    return PressConfig(canonical, name, params, setting, row, _label(name, params), "custom")


def _label(name: str, params: dict) -> str:
    label = PRESS_LABELS[name]
    off = [s for s in ABLATION_SWITCHES if params.get(s) is False]
    if name == "unified" and off:
        on = [SWITCH_LABELS[s] for s in ABLATION_SWITCHES if params.get(s, True)]
        label = "Unified: " + (" + ".join(on) if on else "none") + " only"
    if (name == "unified" and params.get("text_aware_merging") is False) or (
        name == "holitom" and params.get("inner_merging") is False
    ):
        label += " w/o merging"
    return label


def standard_configs(
    retentions=RETENTIONS, presses=("unified", *BASELINES), no_merge: bool = True
) -> list[PressConfig]:
    """The paper's Table 1 grid: the uncompressed model, then every press at every retention."""
    out = [parse_config("none").with_group("main")]
    for setting in retentions:
        a, _, b = setting.partition("/")
        for press in presses:
            if press == "fastv":
                spec = f"fastv@{a}"
            elif press in ("unified", "holitom"):
                spec = f"{press}@{setting}"
            else:
                spec = f"{press}@{a}"
            out.append(parse_config(spec).with_group("main"))
            if press == "unified" and no_merge:
                out.append(parse_config(f"unified:text_aware_merging=false@{a}").with_group("main"))
    return out


def ablation_configs(retention: str = ABLATION_RETENTION) -> list[PressConfig]:
    """Table 5: the 7 non-empty on/off combinations of the three stage-1 components."""
    out = []
    for flags in itertools.product((True, False), repeat=3):
        if not any(flags):
            continue
        opts = [
            f"{s}={str(f).lower()}" for s, f in zip(ABLATION_SWITCHES, flags, strict=True) if not f
        ]
        spec = "unified:" + ",".join(["text_aware_merging=false", *opts]) + f"@{retention}"
        on = [SWITCH_LABELS[s] for s, f in zip(ABLATION_SWITCHES, flags, strict=True) if f]
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
