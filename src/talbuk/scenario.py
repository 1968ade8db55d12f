"""Scenarios: module parameters plus a dated timeline of policy levers, read from TOML.

A scenario file looks like this (see ``docs/scenarios.md`` for the full reference)::

    name = "baseline"
    description = "History as it happened"
    extends = "baseline"          # optional: a built-in name, or a path relative to this file
    start = "1990-01"             # optional, default 1990-01
    end = "2025-12"               # optional, default 2025-12
    decision_rule = "threshold"   # threshold | utility | planned
    posterior = "shipped"         # optional: calibrated parameters (see below)

    [params.demography]           # one table per registered module, checked by its Params
    life_expectancy_1990 = 70.5

    [timeline.border_security]    # a lever: dated points
    points = [
      { date = "1990-01", value = 0.15, source = "..." },
      { date = "2008-05", value = 0.45, source = "..." },
    ]
    # replace_until = "2025-12"   # only in a scenario that extends another

:func:`load_scenario` reads a built-in scenario by name or a file by path, resolves
``extends`` and returns a frozen :class:`Scenario`. Every problem is a :class:`ScenarioError`
that names the file, the key and the problem.

``posterior`` applies calibrated parameters at load time: ``"shipped"`` (the posterior of
``talbuk calibrate --ship``, ``talbuk/calibration/posterior.csv``), a path to a posterior file
(relative to the scenario file) or ``"none"``. The values applied are those of the posterior's
weighted medoid (the accepted particle nearest, on weighted average, to all the others in the
priors' unit cube; ``calibration.params.weighted_medoid``) within its most probable decision
rule (which also becomes the scenario's rule), for module parameters only: lever points (``lever.X@DATE``) are not applied (see
:func:`_apply_posterior`). They are
applied at the level of the file that declares ``posterior`` (``baseline``), so scenarios that
extend it inherit the calibrated values and their own overrides still win; a scenario that sets
``posterior`` itself (``"none"`` to switch it off) replaces its ancestors' choice.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from talbuk.calendar import format_month, parse_month

if TYPE_CHECKING:  # pragma: no cover
    from talbuk.modules.base import ModuleParams

__all__ = [
    "DECISION_RULES",
    "DEFAULT_END",
    "DEFAULT_START",
    "LEVERS",
    "LeverSpec",
    "Point",
    "Scenario",
    "ScenarioError",
    "builtin_scenarios",
    "load_scenario",
    "scenario_from_toml",
]

DEFAULT_START = "1990-01"
DEFAULT_END = "2025-12"
DECISION_RULES: tuple[str, ...] = ("threshold", "utility", "planned")
TOP_LEVEL_KEYS: tuple[str, ...] = (
    "name",
    "description",
    "extends",
    "start",
    "end",
    "decision_rule",
    "posterior",
    "params",
    "timeline",
)
_MAX_EXTENDS_DEPTH = 32
_MONTH_TEXT = re.compile(r"\d{4}-\d{2}")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


# --------------------------------------------------------------------------------------------
# errors


class ScenarioError(Exception):
    """A scenario could not be loaded: ``str(err)`` is ``"{file}: {key}: {problem}"``.

    ``key`` is a dotted path such as ``timeline.border_security.points[2].value`` or
    ``params.demography.life_expectancy_1990``; whole-file problems use ``(file)`` and TOML
    syntax errors use ``line N``.
    """

    def __init__(self, file: str, key: str, problem: str):
        self.file = str(file)
        self.key = str(key)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.file}: {self.key}: {self.problem}")

    def __reduce__(self):  # keep the three fields when pickled (e.g. by Dask)
        return (type(self), (self.file, self.key, self.problem))


# --------------------------------------------------------------------------------------------
# levers


@dataclass(frozen=True)
class LeverSpec:
    """One policy lever: how its dated points become monthly values, its range and unit.

    ``step`` holds the last point's value (the first point's value before it); ``linear``
    interpolates month by month between points and holds the end values; ``pulse`` has the
    point's value only in the point's month and ``default`` in every other month.
    """

    name: str
    mode: Literal["step", "linear", "pulse"]
    low: float
    high: float
    unit: str
    description: str
    default: float | None = None


def _levers(*specs: LeverSpec) -> dict[str, LeverSpec]:
    return {s.name: s for s in specs}


LEVERS: dict[str, LeverSpec] = _levers(
    LeverSpec(
        name="food_index",
        mode="linear",
        low=0.0,
        high=2.0,
        unit="index",
        description="domestic food supply (harvest, imports, aid) relative to need; 1 = enough",
    ),
    LeverSpec(
        name="pds_grams",
        mode="linear",
        low=0.0,
        high=900.0,
        unit="g/person/day",
        description="Public Distribution System ration actually distributed, grams of grain per person per day",
    ),
    LeverSpec(
        name="market_tolerance",
        mode="step",
        low=0.0,
        high=1.0,
        unit="index",
        description="state tolerance of private markets: 0 = suppressed, 1 = fully tolerated",
    ),
    LeverSpec(
        name="exchange_rate",
        mode="linear",
        low=0.1,
        high=100000.0,
        unit="KPW/USD",
        description="market KPW per USD, in new won from 2009-12 (old won /100)",
    ),
    LeverSpec(
        name="redenomination",
        mode="pulse",
        low=0.0,
        high=1.0,
        unit="event",
        description="currency redenomination in this month: won cash above the exchange cap is lost",
        default=0.0,
    ),
    LeverSpec(
        name="media_supply",
        mode="linear",
        low=0.0,
        high=1.0,
        unit="index",
        description="availability of foreign media (tapes, radio, DVDs, USB/SD cards, Notel players)",
    ),
    LeverSpec(
        name="media_crackdown",
        mode="step",
        low=0.0,
        high=1.0,
        unit="index",
        description="intensity of the state's campaign against foreign media (searches, task forces, penalties)",
    ),
    LeverSpec(
        name="border_security",
        mode="step",
        low=0.0,
        high=1.0,
        unit="index",
        description="difficulty of crossing into China: 0 = open, 1 = sealed",
    ),
    LeverSpec(
        name="punishment_severity",
        mode="step",
        low=0.0,
        high=1.0,
        unit="index",
        description="severity of punishment of caught or repatriated crossers and their families",
    ),
    LeverSpec(
        name="china_repatriation",
        mode="step",
        low=0.0,
        high=1.0,
        unit="index",
        description="intensity of China's search for and forced return of North Koreans",
    ),
    LeverSpec(
        name="broker_fee_usd",
        mode="linear",
        low=0.0,
        high=200000.0,
        unit="USD",
        description="typical total broker fee to get out, US dollars",
    ),
    LeverSpec(
        name="onward_route",
        mode="step",
        low=0.0,
        high=1.0,
        unit="index",
        description="availability of routes from China to South Korea (Mongolia, Vietnam, Laos-Thailand)",
    ),
    LeverSpec(
        name="airlift",
        mode="pulse",
        low=0.0,
        high=100000.0,
        unit="people",
        description="people flown to South Korea at once in this month from hiding in China or a third country (one-off evacuations)",
        default=0.0,
    ),
    LeverSpec(
        name="trade_with_china",
        mode="linear",
        low=0.0,
        high=2.0,
        unit="index",
        description="cross-border trade with China; 1 = the 2000s normal",
    ),
)


@dataclass(frozen=True)
class Point:
    """A dated value of a lever. ``date`` is ``"YYYY-MM"``; ``source`` says where it comes from."""

    date: str
    value: float
    source: str = ""

    @property
    def month(self) -> int:
        """Month index since 1900-01 (see :mod:`talbuk.calendar`)."""
        return parse_month(self.date)


def _lever_values(spec: LeverSpec, points: tuple[Point, ...], months: np.ndarray) -> np.ndarray:
    """Monthly values of one lever at ``months`` (an int array of month indices)."""
    months = np.asarray(months, dtype=np.int64)
    out = np.empty(months.shape, dtype=np.float64)
    if not points:
        out.fill(spec.default if spec.default is not None else np.nan)
        return out
    pm = np.array([p.month for p in points], dtype=np.int64)
    pv = np.array([p.value for p in points], dtype=np.float64)
    if spec.mode == "step":
        idx = np.searchsorted(pm, months, side="right") - 1
        out[:] = pv[np.clip(idx, 0, None)]
    elif spec.mode == "linear":
        out[:] = np.interp(months.astype(np.float64), pm.astype(np.float64), pv)
    else:  # pulse
        out.fill(spec.default or 0.0)
        idx = np.searchsorted(pm, months, side="left")
        idx_c = np.clip(idx, 0, len(pm) - 1)
        hit = pm[idx_c] == months
        out[hit] = pv[idx_c[hit]]
    return out


# --------------------------------------------------------------------------------------------
# the scenario


@dataclass(frozen=True)
class Scenario:
    """A fully resolved scenario: every lever's points and every registered module's params.

    ``extends`` (the parent's name) and ``source_file`` are kept for information only: they
    take no part in equality, :meth:`to_toml` or :meth:`hash`.
    """

    name: str
    description: str
    start: str
    end: str
    decision_rule: str
    timeline: dict[str, tuple[Point, ...]]
    params: dict[str, ModuleParams]
    extends: str | None = field(default=None, compare=False)
    source_file: str = field(default="", compare=False)
    #: the calibrated parameters applied at load time (``path``, ``sha256``, ``values``), or None
    posterior_info: dict | None = field(default=None, compare=False)

    @property
    def start_month(self) -> int:
        return parse_month(self.start)

    @property
    def end_month(self) -> int:
        return parse_month(self.end)

    @property
    def n_months(self) -> int:
        return self.end_month - self.start_month + 1

    def lever_series(
        self, start_month: int | None = None, n_months: int | None = None
    ) -> dict[str, np.ndarray]:
        """Monthly float64 values of every lever for ``n_months`` months from ``start_month``.

        Both default to the scenario's own window. Levers without points (pulse levers only)
        take their default.
        """
        start_month = self.start_month if start_month is None else int(start_month)
        n_months = self.n_months if n_months is None else int(n_months)
        months = np.arange(start_month, start_month + max(n_months, 0), dtype=np.int64)
        return {
            name: _lever_values(spec, self.timeline.get(name, ()), months)
            for name, spec in LEVERS.items()
        }

    def lever_value(self, lever: str, month: int) -> float:
        """Value of one lever in one month (index since 1900-01)."""
        spec = LEVERS[lever]
        return float(_lever_values(spec, self.timeline.get(lever, ()), np.array([month]))[0])

    def to_toml(self) -> str:
        """The fully resolved scenario as TOML (no ``extends``); loads back to an equal one."""
        return self._toml

    @cached_property
    def _toml(self) -> str:
        lines = [
            "# talbuk scenario, fully resolved (written by Scenario.to_toml)",
            f"name = {_toml_str(self.name)}",
            f"description = {_toml_str(self.description)}",
            f"start = {_toml_str(self.start)}",
            f"end = {_toml_str(self.end)}",
            f"decision_rule = {_toml_str(self.decision_rule)}",
        ]
        for module in sorted(self.params):
            lines += ["", f"[params.{_toml_key(module)}]"]
            dumped = self.params[module].model_dump(mode="json")
            for key, value in dumped.items():
                if value is None:  # TOML has no null: the default applies on reload
                    continue
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        for lever in LEVERS:
            points = self.timeline.get(lever, ())
            if not points:
                continue
            lines += ["", f"[timeline.{lever}]", "points = ["]
            for p in points:
                item = f"  {{ date = {_toml_str(p.date)}, value = {_toml_value(float(p.value))}"
                if p.source:
                    item += f", source = {_toml_str(p.source)}"
                lines.append(item + " },")
            lines.append("]")
        return "\n".join(lines) + "\n"

    def hash(self) -> str:
        """sha256 (hex) of :meth:`to_toml`: identifies the resolved scenario's content."""
        return hashlib.sha256(self.to_toml().encode("utf-8")).hexdigest()

    def __hash__(self) -> int:
        return int(self.hash()[:16], 16)


# --------------------------------------------------------------------------------------------
# TOML writing (the standard library reads TOML but does not write it)


def _toml_str(text: str) -> str:
    out = json.dumps(str(text), ensure_ascii=False)
    return out.replace("\x7f", "\\u007f")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_str(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(
            f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items() if v is not None
        )
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


# --------------------------------------------------------------------------------------------
# finding files


def _builtin_dir() -> Traversable:
    return files("talbuk").joinpath("scenarios")


def _builtin_names() -> list[str]:
    d = _builtin_dir()
    try:
        entries = list(d.iterdir())
    except (FileNotFoundError, NotADirectoryError):  # pragma: no cover
        return []
    return sorted(e.name[: -len(".toml")] for e in entries if e.name.endswith(".toml"))


def builtin_scenarios() -> dict[str, str]:
    """Built-in scenarios: name -> description, sorted by name."""
    out: dict[str, str] = {}
    for name in _builtin_names():
        text = _builtin_dir().joinpath(f"{name}.toml").read_text(encoding="utf-8")
        try:
            desc = tomllib.loads(text).get("description", "")
        except tomllib.TOMLDecodeError:  # pragma: no cover - the tests load every built-in
            desc = ""
        out[name] = desc if isinstance(desc, str) else ""
    return out


def _is_path_like(ref: str) -> bool:
    return ref.endswith(".toml") or "/" in ref or "\\" in ref


@dataclass(frozen=True)
class _Source:
    ident: str  # identity for cycle detection
    display: str  # what error messages call the file
    text: str
    base_dir: Path | None  # where relative ``extends`` paths start
    stem: str


def _read(display: str, reader, referrer: tuple[str, str] | None) -> str:
    try:
        data = reader()
    except FileNotFoundError:
        _fail_missing(display, referrer, "file not found")
    except IsADirectoryError:
        _fail_missing(display, referrer, "is a directory, not a file")
    except OSError as e:
        _fail_missing(display, referrer, f"cannot read: {e.strerror or e}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScenarioError(
            display, "(file)", f"not UTF-8 text ({e.reason} at byte {e.start})"
        ) from None


def _fail_missing(display: str, referrer: tuple[str, str] | None, problem: str):
    if referrer is not None:
        raise ScenarioError(referrer[0], referrer[1], f"{display}: {problem}") from None
    raise ScenarioError(display, "(file)", problem) from None


def _locate(ref: str | Path, base_dir: Path | None, referrer: tuple[str, str] | None) -> _Source:
    if isinstance(ref, str) and not _is_path_like(ref):
        names = _builtin_names()
        if ref in names:
            res = _builtin_dir().joinpath(f"{ref}.toml")
            text = _read(str(res), res.read_bytes, referrer)
            base = Path(str(_builtin_dir()))
            return _Source(f"builtin:{ref}", str(res), text, base, ref)
        candidate = (base_dir / ref) if base_dir is not None else Path(ref)
        if referrer is not None or not candidate.is_file():
            known = ", ".join(names) or "(none)"
            problem = (
                f"unknown built-in scenario {ref!r}; known: {known} "
                "(give a path ending in .toml for a file)"
            )
            if referrer is not None:
                raise ScenarioError(referrer[0], referrer[1], problem)
            raise ScenarioError(ref, "(name)", problem)
        ref = candidate
    path = Path(ref)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    display = str(path)
    text = _read(display, path.read_bytes, referrer)
    try:
        ident = str(path.resolve())
    except OSError:  # pragma: no cover
        ident = display
    return _Source(ident, display, text, path.parent, path.stem)


# --------------------------------------------------------------------------------------------
# loading


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a built-in scenario by name, or a scenario file by path, resolving ``extends``.

    Raises :class:`ScenarioError` naming the file, the key and the problem.
    """
    if isinstance(name_or_path, Scenario):  # already loaded: convenient for callers
        return name_or_path
    src = _locate(name_or_path, None, None)
    return _load_source(src, ())[0]


def scenario_from_toml(
    text: str, file: str = "<string>", base_dir: str | Path | None = None
) -> Scenario:
    """Load a scenario from TOML text; ``file`` is the name errors use.

    A relative ``extends`` path is taken relative to ``base_dir`` (default: the working
    directory).
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    stem = Path(file).stem if file and not file.startswith("<") else "scenario"
    return _load_source(_Source(f"text:{file}", file, text, base, stem), ())[0]


def _load_source(
    src: _Source, stack: tuple[str, ...], posterior_override: tuple | None = None
) -> tuple[Scenario, bool]:
    """The resolved scenario, and whether ``posterior`` was declared in its chain."""
    file = src.display
    raw = _parse_toml(src.text, file)

    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise ScenarioError(
                file, key, f"unknown key; expected one of: {', '.join(TOP_LEVEL_KEYS)}"
            )
    name = _get_str(raw, "name", file, default=src.stem)
    description = _get_str(raw, "description", file, default="")
    extends_ref = _get_str(raw, "extends", file, default=None)
    own_posterior = _get_str(raw, "posterior", file, default=None)
    if own_posterior is not None and not own_posterior.strip():
        raise ScenarioError(file, "posterior", 'expected "shipped", "none" or a path to a posterior file')
    # a descendant's choice replaces this file's (and goes on to the ancestors); it is kept
    # with the file that made it: errors name that file, a relative path starts from its folder
    posterior = posterior_override
    if posterior is None and own_posterior is not None:
        posterior = (own_posterior, file, src.base_dir)

    parent: Scenario | None = None
    declared_above = False
    if extends_ref is not None:
        if not extends_ref.strip():
            raise ScenarioError(file, "extends", "empty name")
        if len(stack) >= _MAX_EXTENDS_DEPTH:
            raise ScenarioError(
                file, "extends", f"more than {_MAX_EXTENDS_DEPTH} levels of extends"
            )
        psrc = _locate(extends_ref, src.base_dir, (file, "extends"))
        chain = (*stack, src.ident)
        if psrc.ident in chain:
            names = [*_chain_names(chain), _short(psrc.ident)]
            raise ScenarioError(file, "extends", f"extends cycle: {' -> '.join(names)}")
        parent, declared_above = _load_source(psrc, chain, posterior)

    start = _get_month_str(raw, "start", file, parent.start if parent else DEFAULT_START)
    end = _get_month_str(raw, "end", file, parent.end if parent else DEFAULT_END)
    if parse_month(end) < parse_month(start):
        raise ScenarioError(file, "end", f"end {end} is before start {start}")
    decision_rule = _get_str(
        raw, "decision_rule", file, default=parent.decision_rule if parent else "threshold"
    )
    if decision_rule not in DECISION_RULES:
        raise ScenarioError(
            file,
            "decision_rule",
            f"unknown decision rule {decision_rule!r}; expected one of: {', '.join(DECISION_RULES)}",
        )

    params = _resolve_params(raw.get("params", {}), file, parent)
    timeline = _resolve_timeline(raw.get("timeline", {}), file, parent)

    scenario = Scenario(
        name=name,
        description=description,
        start=start,
        end=end,
        decision_rule=decision_rule,
        timeline=timeline,
        params=params,
        extends=parent.name if parent is not None else None,
        source_file=file,
        posterior_info=parent.posterior_info if parent is not None else None,
    )
    if own_posterior is not None and not declared_above:
        scenario = _apply_posterior(scenario, *posterior)
    return scenario, declared_above or own_posterior is not None


def _apply_posterior(scenario: Scenario, posterior: str, file: str, base_dir: Path | None) -> Scenario:
    """``scenario`` with the weighted medoid of ``posterior`` (within its most probable rule)."""
    import dataclasses

    from talbuk.calibration.params import apply_params, default_posterior_path, posterior_point

    if posterior == "none":
        return dataclasses.replace(scenario, posterior_info=None)
    if posterior == "shipped":
        path = default_posterior_path()
    else:
        path = Path(posterior)
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
    try:
        # one accepted particle, the weighted medoid of the most probable rule's particles
        # (not the weighted mean: a curved posterior's mean can lie where it has no mass;
        # calibration.params.weighted_medoid). Lever points are not applied: the
        # counterfactual scenarios that extend the baseline restate the baseline's hand-set
        # lever levels literally (no-2012-crackdown holds the 2008 border level, for
        # instance), and a calibrated baseline level under them would make those
        # counterfactuals differ from the baseline where they should not.
        values, rule, chosen = posterior_point(path)
        theta = dict(values)
        if rule is not None:
            theta["rule"] = rule
        applied = apply_params(scenario, theta)
    except ScenarioError as e:
        raise ScenarioError(file, "posterior", f"{e.file}: {e.key}: {e.problem}") from None
    if applied.decision_rule not in DECISION_RULES:
        raise ScenarioError(file, "posterior", f"{path}: rule: unknown decision rule {applied.decision_rule!r}")
    info = {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "setting": posterior, "rule": applied.decision_rule, "values": values,
            "point": f"weighted medoid (particle {chosen['row']} of {chosen['n']}, weight {chosen['weight']:.4g})",
            "levers_not_applied": chosen["levers"]}
    return dataclasses.replace(applied, posterior_info=info)


def _short(ident: str) -> str:
    if ident.startswith("builtin:"):
        return ident[len("builtin:") :]
    if ident.startswith("text:"):
        return ident[len("text:") :]
    return ident


def _chain_names(chain: tuple[str, ...]) -> list[str]:
    return [_short(i) for i in chain]


_LINE_RE = re.compile(r"\(at line (\d+), column (\d+)\)")


def _parse_toml(text: str, file: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _LINE_RE.search(msg)
        key = (
            f"line {m.group(1)}" if m else ("end of file" if "end of document" in msg else "(toml)")
        )
        raise ScenarioError(file, key, f"invalid TOML: {msg}") from None
    except (ValueError, RecursionError) as e:  # pragma: no cover - defensive
        raise ScenarioError(file, "(toml)", f"invalid TOML: {e}") from None


def _type_name(value: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)


def _get_str(raw: dict, key: str, file: str, default: str | None) -> str | None:
    if key not in raw:
        return default
    value = raw[key]
    if not isinstance(value, str):
        raise ScenarioError(file, key, f"expected a string, got {_type_name(value)}")
    return value


def _check_month(value: Any, file: str, key: str) -> str:
    if not isinstance(value, str):
        raise ScenarioError(
            file, key, f"expected a month as a string 'YYYY-MM', got {_type_name(value)} {value!r}"
        )
    text = value.strip()
    if not _MONTH_TEXT.fullmatch(text):
        raise ScenarioError(file, key, f"bad date {value!r}; expected 'YYYY-MM'")
    try:
        parse_month(text)
    except ValueError as e:
        raise ScenarioError(file, key, f"bad date: {e}") from None
    return text


def _get_month_str(raw: dict, key: str, file: str, default: str) -> str:
    if key not in raw:
        return default
    return _check_month(raw[key], file, key)


# ----- params


def _resolve_params(raw: Any, file: str, parent: Scenario | None) -> dict[str, ModuleParams]:
    from talbuk.modules import MODULE_CLASSES

    if not isinstance(raw, dict):
        raise ScenarioError(file, "params", f"expected a table, got {_type_name(raw)}")
    for module in raw:
        if module not in MODULE_CLASSES:
            known = ", ".join(sorted(MODULE_CLASSES))
            raise ScenarioError(file, f"params.{module}", f"unknown module; known: {known}")
        if not isinstance(raw[module], dict):
            raise ScenarioError(
                file, f"params.{module}", f"expected a table, got {_type_name(raw[module])}"
            )
    out: dict[str, ModuleParams] = {}
    for module, cls in MODULE_CLASSES.items():
        base: dict[str, Any] = {}
        if parent is not None and module in parent.params:
            base = parent.params[module].model_dump(mode="json", exclude_none=True)
        if module not in raw:
            out[module] = (
                parent.params[module] if parent and module in parent.params else cls.Params()
            )
            continue
        merged = {**base, **raw[module]}
        out[module] = _validate_params(cls.Params, merged, file, f"params.{module}")
    return dict(sorted(out.items()))


def _validate_params(model: type[ModuleParams], data: dict, file: str, prefix: str) -> ModuleParams:
    from pydantic import ValidationError

    try:
        text = json.dumps(data, default=str, allow_nan=True)
    except (TypeError, ValueError) as e:  # pragma: no cover - TOML values are JSON-able
        raise ScenarioError(file, prefix, f"cannot read values: {e}") from None
    try:
        # strict: "70" (a string) is not a number; JSON mode: arrays fill tuples, strings enums
        return model.model_validate_json(text, strict=True)
    except ValidationError as e:
        err = e.errors()[0]
        key = prefix + "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in err.get("loc", ())
        )
        if err.get("type") == "extra_forbidden":
            fields = ", ".join(model.model_fields)
            problem = f"unknown key; known keys: {fields}"
        else:
            got = err.get("input")
            problem = f"{err.get('msg', 'invalid value')} (got {got!r})"
        raise ScenarioError(file, key, problem) from None


# ----- timeline


def _resolve_timeline(raw: Any, file: str, parent: Scenario | None) -> dict[str, tuple[Point, ...]]:
    if not isinstance(raw, dict):
        raise ScenarioError(file, "timeline", f"expected a table, got {_type_name(raw)}")
    own: dict[str, tuple[tuple[Point, ...], int | None]] = {}
    for lever, table in raw.items():
        own[lever] = _read_lever(lever, table, file, extending=parent is not None)

    if parent is None:
        timeline = {lever: pts for lever, (pts, _) in own.items()}
    else:
        timeline = dict(parent.timeline)
        for lever, (pts, until) in own.items():
            timeline[lever] = _splice(
                LEVERS[lever], parent.timeline.get(lever, ()), pts, until, parent.name
            )

    for lever, spec in LEVERS.items():
        if spec.mode != "pulse" and not timeline.get(lever):
            raise ScenarioError(
                file, f"timeline.{lever}", "missing: every lever except pulse levers needs points"
            )
    return {lever: timeline[lever] for lever in LEVERS if timeline.get(lever)}


def _read_lever(
    lever: str, table: Any, file: str, extending: bool
) -> tuple[tuple[Point, ...], int | None]:
    key = f"timeline.{lever}"
    if lever not in LEVERS:
        raise ScenarioError(file, key, f"unknown lever; known: {', '.join(LEVERS)}")
    spec = LEVERS[lever]
    if not isinstance(table, dict):
        raise ScenarioError(file, key, f"expected a table with 'points', got {_type_name(table)}")
    for k in table:
        if k not in ("points", "replace_until"):
            raise ScenarioError(
                file, f"{key}.{k}", "unknown key; expected 'points' or 'replace_until'"
            )
    if "points" not in table:
        raise ScenarioError(file, f"{key}.points", "missing")
    raw_points = table["points"]
    if not isinstance(raw_points, list):
        raise ScenarioError(
            file, f"{key}.points", f"expected an array of tables, got {_type_name(raw_points)}"
        )
    if not raw_points and (spec.mode != "pulse" or extending):
        raise ScenarioError(file, f"{key}.points", "needs at least one point")

    points: list[Point] = []
    prev_month: int | None = None
    for i, item in enumerate(raw_points):
        pkey = f"{key}.points[{i}]"
        if not isinstance(item, dict):
            raise ScenarioError(
                file, pkey, f"expected a table {{ date, value, source }}, got {_type_name(item)}"
            )
        for k in item:
            if k not in ("date", "value", "source"):
                raise ScenarioError(
                    file, f"{pkey}.{k}", "unknown key; expected date, value, source"
                )
        for k in ("date", "value"):
            if k not in item:
                raise ScenarioError(file, f"{pkey}.{k}", "missing")
        date = _check_month(item["date"], file, f"{pkey}.date")
        month = parse_month(date)
        if prev_month is not None and month <= prev_month:
            if month == prev_month:
                problem = f"duplicate date {date} (points[{i - 1}] has the same date)"
            else:
                problem = f"dates out of order: {date} listed after {format_month(prev_month)}"
            raise ScenarioError(file, f"{pkey}.date", problem)
        prev_month = month
        value = item["value"]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ScenarioError(
                file, f"{pkey}.value", f"expected a number, got {_type_name(value)}"
            )
        value = float(value)
        if not math.isfinite(value) or not spec.low <= value <= spec.high:
            raise ScenarioError(
                file,
                f"{pkey}.value",
                f"{value!r} is outside the range [{spec.low:g}, {spec.high:g}] of {lever} ({spec.unit})",
            )
        source = item.get("source", "")
        if not isinstance(source, str):
            raise ScenarioError(
                file, f"{pkey}.source", f"expected a string, got {_type_name(source)}"
            )
        points.append(Point(date, value, source))

    until: int | None = None
    if "replace_until" in table:
        if not extending:
            raise ScenarioError(
                file, f"{key}.replace_until", "only allowed in a scenario that extends another"
            )
        until_text = _check_month(table["replace_until"], file, f"{key}.replace_until")
        until = parse_month(until_text)
        if points and until < points[-1].month:
            raise ScenarioError(
                file,
                f"{key}.replace_until",
                f"{until_text} is before the lever's last point {points[-1].date}",
            )
    return tuple(points), until


def _splice(
    spec: LeverSpec,
    parent: tuple[Point, ...],
    child: tuple[Point, ...],
    until: int | None,
    parent_name: str,
) -> tuple[Point, ...]:
    """Child points replace the parent's in [first child date, replace_until or last child date].

    With ``replace_until``, the parent's value in the month after it is pinned as a point (for
    step and linear levers), so history resumes exactly there.
    """
    lo = child[0].month
    hi = until if until is not None else child[-1].month
    merged = [p for p in parent if not lo <= p.month <= hi] + list(child)
    if until is not None and spec.mode != "pulse" and parent:
        resume = hi + 1
        if not any(p.month == resume for p in parent):
            value = float(_lever_values(spec, parent, np.array([resume]))[0])
            merged.append(
                Point(
                    format_month(resume),
                    value,
                    f"{parent_name} resumes after replace_until {format_month(hi)}",
                )
            )
    merged.sort(key=lambda p: p.month)
    return tuple(merged)
