"""Press settings: the one grammar and the one factory that turn text into a press.

    NAME[:key=value,...][@A[/B]]      e.g. "unified:tau=0.8@2/1", "fastv@10", "visionzip@5"

- ``NAME``: a short name of ``vidpress.PRESSES``, or "none" (also "uncompressed", "vanilla",
  "100"): the uncompressed model, which takes nothing else.
- ``key=value``: press fields, typed: ``true``/``false``, ``none``, ints, floats, else text ("-" in
  a key reads "_"), e.g. ``unified:inner_merging=false,clustering=false@2``.
- ``@A/B``: the paper's "A%/B%" retention: A% of the visual tokens enter the LLM (``retention``),
  B% remain from the inner layer K on (``inner_keep = B / A``); ``@A`` leaves the inner stage at
  its default. A press without a stage 1 (FastV: "100%/x%") takes ``@x`` or ``@100/x``
  (``retention = x``); a press without an inner stage takes ``@A`` only. Without ``@`` the
  fields decide (``retention=0.02`` as an option, or the press's default).

:func:`grid_settings` places a press in a cell of the paper's Table 1 grid (``vidpress eval``,
``vidpress bench``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields

from vidpress.presses import PRESSES, BasePress

UNCOMPRESSED = ("none", "uncompressed", "vanilla", "100")
RETENTION_FIELDS = ("retention", "inner_keep")  # what ``@A/B`` sets


@dataclass(frozen=True)
class Retention:
    """``A[/B]`` in percent: A% of the visual tokens enter the LLM, B% remain from layer K on."""

    outer: float
    inner: float | None = None

    def __str__(self) -> str:
        return "/".join(f"{v:g}" for v in (self.outer, self.inner) if v is not None)

    @property
    def uncompressed(self) -> bool:
        """True for "100": every token (a grid's cell of the uncompressed model)."""
        return self == Retention(100)

    @property
    def label(self) -> str:
        """The cell as a table writes it: "2%/1%", "5%", "100%"."""
        return "/".join(f"{v:g}%" for v in (self.outer, self.inner) if v is not None)


def parse_retention(text: str) -> Retention:
    """``A`` or ``A/B`` in percent (a trailing "%" allowed), ``0 < B <= A <= 100``."""
    parts = [p.strip().rstrip("%") for p in str(text).split("/")]
    if len(parts) > 2:
        raise ValueError(f"retention must be A or A/B in percent, got {text!r}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"retention must be A or A/B, numbers of percent, got {text!r}") from None
    if not all(0 < v <= 100 for v in values):
        raise ValueError(f"retention must be in (0, 100] percent, got {text!r}")
    if len(values) == 2 and values[1] > values[0]:
        raise ValueError(f"retention {text!r}: B (inner) must not exceed A (outer)")
    return Retention(*values)


def press_class(name: str) -> type[BasePress]:
    """``PRESSES[name]``, or a ValueError naming the accepted names."""
    if name not in PRESSES:
        raise ValueError(
            f"unknown press {name!r}; press must be one of {', '.join(PRESSES)} "
            "(or none: the uncompressed model)"
        )
    return PRESSES[name]


def parse_value(text: str):
    """A typed option value: true/false, none/null, an int, a float, or the text itself."""
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


def _format_value(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class PressSettings:
    """A press as settings: ``press`` (a short name of ``PRESSES``; None: the uncompressed model),
    ``params`` (field values) and ``retention`` (the ``@A/B`` part; None: the fields decide)."""

    press: str | None
    params: dict = field(default_factory=dict, hash=False)
    retention: Retention | None = None

    def values(self) -> dict:
        """The press's field values: ``params``, with ``@A/B`` as ``retention``/``inner_keep``."""
        if self.press is None:
            return {}
        cls = press_class(self.press)
        names = [f.name for f in fields(cls)]
        unknown = [key for key in self.params if key not in names]
        if unknown:
            raise ValueError(
                f"press {self.press} has no parameter {unknown[0]!r}; its parameters: "
                f"{', '.join(names)}"
            )
        values, r = dict(self.params), self.retention
        if r is None:
            return values
        for key in RETENTION_FIELDS:
            if key in values:
                raise ValueError(f"give {key} through @A/B or as an option, not both")
        if cls.stage1 is None:
            if r.inner is not None and r.outer != 100:
                raise ValueError(
                    f"{cls.title} keeps every token before its layer K: write "
                    f"{self.press}@x or {self.press}@100/x, got @{r}"
                )
            values["retention"] = (r.outer if r.inner is None else r.inner) / 100
            return values
        values["retention"] = r.outer / 100
        if r.inner is not None:
            if cls(**values).inner_stage() is None:
                raise ValueError(f"this press has no inner stage; write @{r.outer:g}, not @{r}")
            values["inner_keep"] = r.inner / r.outer
        return values

    def build(self, layers: int | None = None) -> BasePress | None:
        """The press (None for the uncompressed model). ``layers``: the model's decoder layers;
        an inner layer K left at its default moves to the last one, ``layers - 1``, when beyond."""
        if self.press is None:
            return None
        values, cls = self.values(), PRESSES[self.press]
        defaults = {f.name: f.default for f in fields(cls)}
        if layers is not None and "inner_layer" in defaults and "inner_layer" not in values:
            values["inner_layer"] = min(defaults["inner_layer"], layers - 1)
        return cls(**values)

    @property
    def text(self) -> str:
        """The canonical text: "none", or ``NAME[:key=value,...]@SETTING`` with the retention as
        the press sets it (``unified@2`` reads ``unified@2/1``, its inner stage keeping half)."""
        press = self.build()
        if press is None:
            return "none"
        opts = ",".join(
            f"{key}={_format_value(value)}"
            for key, value in self.params.items()
            if key not in RETENTION_FIELDS
        )
        return f"{self.press}{':' + opts if opts else ''}@{press.setting}"


def parse_settings(text: str) -> PressSettings:
    """Parse ``NAME[:key=value,...][@A[/B]]`` (see the module docstring) and validate it: bad
    names, options, values and retentions raise a ValueError naming them and the text."""
    head, at, cell = text.strip().partition("@")
    name, _, options = head.partition(":")
    name = name.strip().lower()
    if name in UNCOMPRESSED:
        if options or at:
            raise ValueError(f"the uncompressed model takes no options or retention: {text!r}")
        return PressSettings(None)
    try:
        press_class(name)
        params = {}
        for item in filter(None, (o.strip() for o in options.split(","))):
            key, eq, value = item.partition("=")
            key = key.strip().replace("-", "_")
            if not eq or not key:
                raise ValueError(f"press option {item!r} must be key=value")
            if key in params:
                raise ValueError(f"press option {key!r} is given twice")
            params[key] = parse_value(value.strip())
        settings = PressSettings(name, params, parse_retention(cell) if at else None)
        settings.build()
    except ValueError as exc:
        raise ValueError(f"{exc} (in {text!r})") from None
    return settings


def make_press(settings: str | PressSettings, layers: int | None = None) -> BasePress | None:
    """The press of ``settings`` (a text, see the module docstring, or parsed); None for the
    uncompressed model. ``layers``: as :meth:`PressSettings.build`."""
    if isinstance(settings, str):
        settings = parse_settings(settings)
    return settings.build(layers)


def with_options(text: str, options: Iterable[str]) -> str:
    """``text`` with more ``key=value`` options: ``unified@2`` and ``tau=0.8`` give
    ``unified:tau=0.8@2``."""
    options = list(options)
    if not options:
        return text
    head, at, cell = text.partition("@")
    return f"{head}{',' if ':' in head else ':'}{','.join(options)}{at}{cell}"


def grid_settings(press: str, cell: str | Retention) -> PressSettings:
    """``press`` in the cell "A/B" (or "A") of the paper's Table 1 grid: a press with an optional
    inner stage (an ``inner_merging`` field) takes A/B, and "A" alone runs it without; FastV runs
    at "100%/A%"; the others take A."""
    r = parse_retention(cell) if isinstance(cell, str) else cell
    if "inner_merging" not in {f.name for f in fields(press_class(press))}:
        return PressSettings(press, {}, Retention(r.outer))
    if r.inner is None:
        return PressSettings(press, {"inner_merging": False}, r)
    return PressSettings(press, {}, r)
