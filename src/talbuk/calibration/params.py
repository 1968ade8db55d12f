"""Uncertain parameters: priors from TOML, applying a parameter vector to a scenario, posteriors.

This module is the contract shared by ``talbuk calibrate``, ``ensemble``, ``sensitivity`` and
``validate``. It needs nothing beyond the core dependencies (no pyabc, no Dask).

A priors file has one table per uncertain parameter under ``[parameters]``::

    [parameters."decision.threshold_loc"]     # [params.decision] threshold_loc of the scenario
    distribution = "uniform"                  # "uniform" or "loguniform"
    low = 0.4
    high = 1.2
    source = "set by hand before; prior wide around it"

    [parameters."decision.utility_loc"]       # only in the utility rule's model
    distribution = "uniform"
    low = -0.15
    high = 0.45
    rules = ["utility"]
    source = "..."

    [parameters."lever.border_security@2012-01"]   # the value of an existing timeline point
    distribution = "uniform"
    low = 0.5
    high = 0.9
    source = "..."

A parameter name is either ``MODULE.KEY`` (a field of that module's params) or
``lever.LEVER@YYYY-MM`` (the value of the point of that lever dated that month, which must
exist in the scenario the priors are applied to). Values are checked against the module's
field bounds and the lever's range when priors are loaded, so a prior cannot propose a value
the model would refuse.

``rules`` (optional) names the decision rules whose model the parameter belongs to; without
it a parameter belongs to every rule. A rule's own parameters (``threshold_loc`` for
``threshold``, ``utility_loc`` for ``utility``, ``planned_loc`` for ``planned``) do nothing
under another rule, so a comparison of the rules (``talbuk calibrate --rules``) gives each
rule's model its own location and the shared parameters, rather than calibrating one rule's
location and leaving the others' at their hand-set values.

A posterior is a table (Parquet or CSV) with one column per parameter name, a ``weight``
column (normalised to sum to 1) and optionally a ``rule`` column (the decision rule of each
particle, for model comparison), plus metadata (``source``: the calibration that made it).
"""

from __future__ import annotations

import csv
import math
import tomllib
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from talbuk.modules import MODULE_CLASSES
from talbuk.scenario import DECISION_RULES, LEVERS, Point, Scenario, ScenarioError, parse_month

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: the priors file that ships with the package
DEFAULT_PRIORS = "priors.toml"
#: the posterior that ships with the package (written by ``talbuk calibrate --ship``)
DEFAULT_POSTERIOR = "posterior.csv"

_DISTRIBUTIONS = ("uniform", "loguniform")


@dataclass(frozen=True)
class Prior:
    """One uncertain parameter and its prior distribution."""

    name: str
    distribution: str
    low: float
    high: float
    source: str = ""
    rules: tuple[str, ...] = ()  # the decision rules whose model it belongs to; () = every rule

    def applies_to(self, rule: str | None) -> bool:
        """Whether the parameter belongs to the model of ``rule`` (``None``: any model)."""
        return not self.rules or rule is None or rule in self.rules

    @property
    def is_lever(self) -> bool:
        return self.name.startswith("lever.")

    def ppf(self, q: np.ndarray | float) -> np.ndarray:
        """Quantile function: maps uniform(0, 1) numbers onto the prior (for Sobol samples)."""
        q = np.asarray(q, dtype=np.float64)
        if self.distribution == "uniform":
            return self.low + q * (self.high - self.low)
        lo, hi = math.log(self.low), math.log(self.high)
        return np.exp(lo + q * (hi - lo))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.ppf(rng.random(n))

    def cdf(self, x: np.ndarray | float) -> np.ndarray:
        """Inverse of :meth:`ppf`: parameter values onto [0, 1] (the unit cube ABC works in)."""
        x = np.asarray(x, dtype=np.float64)
        if self.distribution == "uniform":
            return (x - self.low) / (self.high - self.low)
        lo, hi = math.log(self.low), math.log(self.high)
        return (np.log(x) - lo) / (hi - lo)


def _package_file(name: str) -> Path:
    return Path(str(resources.files("talbuk.calibration").joinpath(name)))


def default_priors_path() -> Path:
    return _package_file(DEFAULT_PRIORS)


def default_posterior_path() -> Path:
    return _package_file(DEFAULT_POSTERIOR)


def _split_lever(name: str, file: str) -> tuple[str, str]:
    body = name[len("lever."):]
    if "@" not in body:
        raise ScenarioError(file, f"parameters.{name}", "expected lever.LEVER@YYYY-MM")
    lever, date = body.split("@", 1)
    if lever not in LEVERS:
        raise ScenarioError(file, f"parameters.{name}", f"unknown lever {lever!r}; known: {sorted(LEVERS)}")
    try:
        parse_month(date)
    except Exception as exc:  # noqa: BLE001 - reported with the key
        raise ScenarioError(file, f"parameters.{name}", f"expected a date YYYY-MM after '@', got {date!r}") from exc
    return lever, date


def _bounds(name: str, file: str) -> tuple[float, float]:
    """The range the model accepts for a parameter (field bounds or the lever's range)."""
    if name.startswith("lever."):
        lever, _ = _split_lever(name, file)
        spec = LEVERS[lever]
        return spec.low, spec.high
    if "." not in name:
        raise ScenarioError(file, f"parameters.{name}", "expected MODULE.KEY or lever.LEVER@YYYY-MM")
    module, key = name.split(".", 1)
    if module not in MODULE_CLASSES:
        raise ScenarioError(file, f"parameters.{name}", f"unknown module {module!r}; known: {sorted(MODULE_CLASSES)}")
    fields = MODULE_CLASSES[module].Params.model_fields
    if key not in fields:
        raise ScenarioError(file, f"parameters.{name}", f"unknown parameter of {module}; known: {sorted(fields)}")
    lo, hi = -math.inf, math.inf
    for meta in fields[key].metadata:
        for attr, val in (("ge", "lo"), ("gt", "lo"), ("le", "hi"), ("lt", "hi")):
            if hasattr(meta, attr) and getattr(meta, attr) is not None:
                if val == "lo":
                    lo = float(getattr(meta, attr))
                else:
                    hi = float(getattr(meta, attr))
    return lo, hi


def load_priors(path: str | Path | None = None) -> list[Prior]:
    """Read and check a priors file (the shipped one by default). Errors name file and key."""
    p = Path(path) if path is not None else default_priors_path()
    file = str(p)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ScenarioError(file, "(file)", "no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(file, "(file)", f"not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - {"parameters", "description"})
    if unknown:
        raise ScenarioError(file, unknown[0], "unknown key; expected 'parameters' and 'description'")
    params = raw.get("parameters")
    if not isinstance(params, dict) or not params:
        raise ScenarioError(file, "parameters", "expected a non-empty table of parameters")
    out = []
    for name, spec in params.items():
        key = f"parameters.{name}"
        if not isinstance(spec, dict):
            raise ScenarioError(file, key, "expected a table with distribution, low, high, source")
        extra = sorted(set(spec) - {"distribution", "low", "high", "source", "rules"})
        if extra:
            raise ScenarioError(file, f"{key}.{extra[0]}",
                                "unknown key; expected distribution, low, high, source, rules")
        dist = spec.get("distribution", "uniform")
        if dist not in _DISTRIBUTIONS:
            raise ScenarioError(file, f"{key}.distribution", f"expected one of {_DISTRIBUTIONS}, got {dist!r}")
        for k in ("low", "high"):
            v = spec.get(k)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ScenarioError(file, f"{key}.{k}", f"expected a number, got {v!r}")
        low, high = float(spec["low"]), float(spec["high"])
        if not low < high:
            raise ScenarioError(file, f"{key}.high", f"expected high > low ({low}), got {high}")
        if dist == "loguniform" and low <= 0:
            raise ScenarioError(file, f"{key}.low", "expected > 0 for a loguniform prior")
        blo, bhi = _bounds(name, file)
        if low < blo or high > bhi:
            raise ScenarioError(file, key, f"expected a range inside the model's bounds [{blo}, {bhi}], got [{low}, {high}]")
        source = spec.get("source", "")
        if not isinstance(source, str):
            raise ScenarioError(file, f"{key}.source", "expected a string")
        rules = spec.get("rules", [])
        if (not isinstance(rules, list) or not rules and "rules" in spec
                or any(r not in DECISION_RULES for r in rules) or len(set(rules)) != len(rules)):
            raise ScenarioError(file, f"{key}.rules",
                                f"expected a non-empty list of distinct decision rules from {list(DECISION_RULES)}, "
                                f"got {rules!r}")
        out.append(Prior(name, dist, low, high, source, tuple(rules)))
    return out


def priors_for_rule(priors: list[Prior], rule: str | None) -> list[Prior]:
    """The priors of one decision rule's model (``None``: all of them)."""
    return [p for p in priors if p.applies_to(rule)]


def apply_params(scenario: Scenario, theta: dict[str, float]) -> Scenario:
    """A copy of ``scenario`` with each parameter of ``theta`` set (names as in a priors file).

    The special name ``rule`` (a string) sets the decision rule. Module params are validated
    by their pydantic model; a lever point must already exist at the given date.
    """
    params = dict(scenario.params)
    timeline = dict(scenario.timeline)
    rule = scenario.decision_rule
    by_module: dict[str, dict[str, float]] = {}
    for name, value in theta.items():
        if name == "rule":
            rule = str(value)
            continue
        if name.startswith("lever."):
            lever, date = _split_lever(name, "(theta)")
            points = timeline.get(lever, ())
            if not any(pt.date == date for pt in points):
                dates = [pt.date for pt in points]
                raise ScenarioError(scenario.name, f"timeline.{lever}", f"no point dated {date} to set; dates: {dates}")
            timeline[lever] = tuple(
                Point(pt.date, float(value), (pt.source + " [calibrated]").strip()) if pt.date == date else pt
                for pt in points
            )
            continue
        module, key = name.split(".", 1)
        by_module.setdefault(module, {})[key] = float(value)
    for module, values in by_module.items():
        if module not in params:
            raise ScenarioError(scenario.name, f"params.{module}", "unknown module")
        cls = MODULE_CLASSES[module].Params
        merged = params[module].model_dump() | values
        params[module] = cls.model_validate(merged)
    return replace(scenario, params=params, timeline=timeline, decision_rule=rule)


def theta_of(scenario: Scenario, priors: list[Prior]) -> dict[str, float]:
    """The values the scenario currently has for each prior's parameter."""
    out = {}
    for pr in priors:
        if pr.is_lever:
            lever, date = _split_lever(pr.name, "(priors)")
            out[pr.name] = next(pt.value for pt in scenario.timeline[lever] if pt.date == date)
        else:
            module, key = pr.name.split(".", 1)
            out[pr.name] = float(getattr(scenario.params[module], key))
    return out


@dataclass(frozen=True)
class Posterior:
    """Weighted particles over the parameters (and possibly the decision rule)."""

    particles: pd.DataFrame  # one column per parameter, plus optional "rule"
    weights: np.ndarray
    source: str = ""

    @property
    def names(self) -> list[str]:
        return [c for c in self.particles.columns if c not in ("rule", "weight")]

    def draw(self, n: int, seed: int) -> list[dict]:
        """``n`` parameter vectors drawn with replacement by weight (deterministic in ``seed``)."""
        import pandas as pd

        rng = np.random.default_rng(seed)
        idx = rng.choice(len(self.weights), size=n, replace=True, p=self.weights)
        rows = self.particles.iloc[idx]
        # a parameter of another rule's model is empty (NaN) in a particle: left out, so the
        # scenario keeps its value (it does nothing under this particle's rule)
        return [
            {k: (v if k == "rule" else float(v)) for k, v in row.items()
             if k == "rule" or not pd.isna(v)} for _, row in rows.iterrows()
        ]

    def mean(self) -> dict[str, float]:
        """Weighted mean of each parameter over the particles that have it (a parameter of one
        rule's model is empty in the other rules' particles)."""
        out = {}
        for k in self.names:
            x = self.particles[k].to_numpy(dtype=np.float64)
            ok = ~np.isnan(x)
            if ok.any() and self.weights[ok].sum() > 0:
                out[k] = float(np.sum(x[ok] * self.weights[ok]) / self.weights[ok].sum())
        return out

    def save(self, path: str | Path) -> None:
        """Write atomically (CSV or Parquet by suffix)."""
        path = Path(path)
        df = self.particles.copy()
        df["weight"] = self.weights
        tmp = path.with_name(path.name + ".tmp")
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            with open(tmp, "w") as fh:
                fh.write(f"# source: {self.source}\n")
                df.to_csv(fh, index=False)
        tmp.replace(path)


#: share of the posterior weight that the baseline's point is chosen from (set by hand; see
#: :func:`weighted_medoid`)
MEDOID_MASS = 0.5


def weighted_medoid(particles: pd.DataFrame, weights: np.ndarray, names: list[str],
                    priors: list[Prior] | None = None, mass: float = MEDOID_MASS) -> int:
    """Row of the particle with the least weighted mean distance to all the others, among
    the heaviest particles that together carry ``mass`` of the weight.

    The candidates are restricted because a particle of little weight can sit at the
    centre of a curved posterior, close to everyone and fitting worse than any heavy one:
    in the eight-parameter calibration of 2026-11-30 (effective sample size 17 of 80) the
    unrestricted medoid had weight 0.002 (the mean weight is 0.0125) and its runs missed the
    record by ARD 0.25 (three seeds, scale 500), where each of the heaviest particles
    scored 0.15-0.20 (docs/calibration.md, "Calibration 11"). Ties of weight at the cut are
    all candidates (with equal weights, every particle is).

    Distances are Euclidean in the unit cube of the priors (``priors``: the shipped
    ``priors.toml`` by default; a parameter without a prior there is scaled by the particles'
    own range). Unlike the weighted mean, the medoid is one of the accepted particles, so it
    lies where the posterior has mass even when the posterior is curved: the mean of the
    calibration shipped on 2026-11-29 (session 9) misses the record by ARD 0.35 where its
    medoid scores 0.15 (docs/calibration.md).
    """
    return _medoid_row({k: particles[k].to_numpy() for k in names}, weights, names, priors, mass)


def _medoid_row(columns: dict[str, np.ndarray], weights: np.ndarray, names: list[str],
                priors: list[Prior] | None, mass: float) -> int:
    """:func:`weighted_medoid` on columns (arrays by name)."""
    if priors is None:
        priors = load_priors()
    by_name = {pr.name: pr for pr in priors}
    cols = []
    for k in names:
        x = np.asarray(columns[k], dtype=np.float64)
        pr = by_name.get(k)
        if pr is not None:
            u = pr.cdf(x)
        else:
            span = float(x.max() - x.min())
            u = (x - x.min()) / span if span > 0 else np.zeros_like(x)
        cols.append(u)
    if not cols:
        return int(np.argmax(weights))
    u = np.column_stack(cols)
    w = np.asarray(weights, dtype=np.float64)
    dist = np.sqrt(((u[:, None, :] - u[None, :, :]) ** 2).sum(axis=2))  # particles x particles
    cost = dist @ w
    # the candidates: every particle at least as heavy as the one at which the heaviest
    # particles' cumulative weight first reaches ``mass``
    order = np.argsort(-w, kind="stable")
    cum = np.cumsum(w[order])
    cut = w[order[min(int(np.searchsorted(cum, mass * cum[-1])), len(w) - 1)]]
    cost[w < cut] = np.inf
    return int(np.argmin(cost))  # ties: the first row


def _read_posterior(path: str | Path | None) -> tuple[dict[str, np.ndarray], np.ndarray, str]:
    """A posterior file as columns (float64; ``rule`` as strings), normalised weights and its
    source line. CSV files are read without pandas (talbuk.population.read_columns says
    why); Parquet files with it. Errors name the file and the column."""
    p = Path(path) if path is not None else default_posterior_path()
    file = str(p)
    if not p.exists():
        raise ScenarioError(file, "(file)", "no such posterior file")
    source = ""
    try:
        if p.suffix == ".parquet":
            import pandas as pd

            df = pd.read_parquet(p)
            raw = {str(c): df[c].to_numpy() for c in df.columns}
        else:
            with open(p, newline="", encoding="utf-8") as fh:
                first = fh.readline()
                if first.startswith("# source:"):
                    source = first[len("# source:"):].strip()
                else:
                    fh.seek(0)
                rows = list(csv.reader(fh))
            if not rows:
                raise ValueError("no header line")
            header, body = rows[0], [r for r in rows[1:] if r]
            for r in body:
                if len(r) != len(header):
                    raise ValueError(f"a row has {len(r)} fields, the header {len(header)}")
            raw = {name: np.array([r[j] for r in body], dtype=object)
                   for j, name in enumerate(header)}
    except Exception as exc:  # noqa: BLE001 - reported with the file
        raise ScenarioError(file, "(file)", f"could not read a table: {exc}") from None
    if "weight" not in raw:
        raise ScenarioError(file, "weight", "expected a 'weight' column")
    cols: dict[str, np.ndarray] = {}
    for c, v in raw.items():
        if c == "rule":
            cols[c] = np.array([str(x) for x in v], dtype=object)
            continue
        try:  # an empty field is a missing value (a parameter of another rule's model)
            cols[c] = np.array([float("nan") if (isinstance(x, str) and not x.strip()) else float(x)
                                for x in v], dtype=np.float64)
        except (TypeError, ValueError):
            raise ScenarioError(file, c, "expected numbers") from None
    w = cols.pop("weight")
    if len(w) == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ScenarioError(file, "weight", "expected non-negative finite weights with a positive sum")
    return cols, w / w.sum(), source


def load_posterior(path: str | Path | None = None) -> Posterior:
    """Read a posterior (the shipped one by default). Errors name the file and the column."""
    import pandas as pd

    cols, w, source = _read_posterior(path)
    return Posterior(pd.DataFrame(cols), w, source)


def posterior_point(path: str | Path | None = None) -> tuple[dict[str, float], str | None, dict]:
    """The point a scenario takes from a posterior: the weighted medoid
    (:func:`weighted_medoid`) of the particles of the most probable decision rule, over the
    parameters those particles have (not the levers), that rule (None without a ``rule``
    column) and how the point was chosen (``row`` among the rule's ``n`` particles, its
    ``weight`` within them, the ``levers`` not applied). Read without pandas: this runs
    whenever a scenario with a posterior is loaded, a whole-population run included
    (talbuk.population.read_columns says why)."""
    cols, weights, _ = _read_posterior(path)
    rule = None
    if "rule" in cols:
        by_rule: dict[str, float] = {}
        for r, wt in zip(cols["rule"], weights, strict=True):
            by_rule[str(r)] = by_rule.get(str(r), 0.0) + float(wt)
        rule = max(sorted(by_rule), key=lambda r: by_rule[r])
        keep = cols["rule"] == rule
        cols = {k: v[keep] for k, v in cols.items()}
        weights = weights[keep]
        weights = weights / weights.sum()
    # lever points are not applied (see talbuk.scenario._apply_posterior); a parameter of
    # another rule's model is empty in this rule's particles: not applied
    names = [k for k in cols if k != "rule" and not k.startswith("lever.")
             and not np.isnan(cols[k]).any()]
    row = _medoid_row(cols, weights, names, None, MEDOID_MASS)
    chosen = {"row": row, "n": int(len(weights)), "weight": float(weights[row]),
              "levers": sorted(k for k in cols if k.startswith("lever."))}
    return {k: float(cols[k][row]) for k in names}, rule, chosen
