"""Validation of a run or an ensemble against the record: ARD, MASE, band coverage, targets.

``validate(path)`` reads a run folder (``manifest.json`` and ``annual.parquet``) or an
ensemble folder (``ensemble.json``, ``bands.parquet`` and ``runs/*``, written by
``talbuk ensemble``) and compares it with ``data/arrivals_rok.csv``, ``data/targets.csv`` and
``data/population.csv``.

**Arrivals metrics** (years 2000-2019, the calibration period; ``obs`` from arrivals_rok.csv,
``sim`` the run's value, or the ensemble's median by year):

* ``ard``: averaged relative difference, ``mean_t |sim_t - obs_t| / obs_t`` (Flee's ARD,
  Suleimenova et al. 2017);
* ``mase``: mean absolute scaled error, ``mean_t |sim_t - obs_t|`` divided by the mean absolute
  error of the naive persistence forecast ``obs_{t-1}`` over the same years (Hyndman & Koehler
  2006); below 1 the model beats "same as last year", which knows last year's record;
* ``coverage``: share of the years whose observation lies inside the ensemble's 90% band
  (``q05 <= obs <= q95``); ``null`` for a single run;
* ``out_of_sample_2020_2025``: per year ``sim / obs`` and whether it is within a factor of 2.

Both arrivals columns are reported: ``arrivals`` (sampled: each arriving agent counts ``scale``
people) and ``arrivals_expected`` (the sum of every agent's probability of arriving: the
model's low-noise estimate, docs/journey.md). **The headline** (``ard_arrivals_2000_2019``,
``mase_arrivals``, ``band_coverage_2000_2019``, ``out_of_sample_2020_2025``) **uses
``arrivals_expected`` by default**: at scale ``K`` a sampled arrival stands for ``K`` people,
so at the scales an ensemble can afford (500-2000) sampled arrivals move in steps of 1-3% to
100% of a year's record and their band is about ``sqrt(K)`` times wider than the real
process's binomial noise; coverage of that band would flatter the model. ``column=
"arrivals"`` switches the headline to sampled arrivals (the right choice at scale 1-10).

**Targets.** Every row of ``data/targets.csv`` and ``data/population.csv`` is listed with the
annual statistic that measures it (:func:`target_spec`); for an ensemble the statistic is
computed for each run and the median over runs is reported, with its 5%-95% range, except
for shares of small yearly flows (the kin share of arrivals), reported as the share of all
runs' flows together (``statistic: "pooled over runs"``), the 5%-95% range still per run.
Targets the model has no output for are listed with ``simulated: null`` and the reason.

**Diagnostics.** Checks against well-documented figures that are not rows of
``data/targets.csv`` (:data:`DIAGNOSTICS`: the women's share of arrivals) are reported the same
way under ``diagnostics`` and not counted in ``targets_in_range``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from talbuk.calendar import population_reference_year
from talbuk.calibration.ensemble import is_ensemble, read_ensemble


def read_data(name: str) -> pd.DataFrame:
    """A CSV of ``talbuk/data`` (as ``talbuk.population.read_data``, without importing numba)."""
    from importlib import resources

    with resources.as_file(resources.files("talbuk").joinpath("data", name)) as p:
        return pd.read_csv(p)

CALIBRATION_YEARS = (2000, 2019)
OUT_OF_SAMPLE_YEARS = (2020, 2025)
ARRIVAL_COLUMNS = ("arrivals", "arrivals_expected")
DEFAULT_HEADLINE = "arrivals_expected"
#: population.csv has no ranges: accepted relative error, set by hand (a census counts: +-1%,
#: as the calibration's summaries; an estimate is itself uncertain by a few percent: +-5%)
POPULATION_TOLERANCE = {"census": 0.01, "estimate": 0.05}


class ValidationInputError(ValueError):
    """Not a run or ensemble folder, or one that lacks what validation needs."""


@dataclass(frozen=True)
class TargetSpec:
    """How one target of targets.csv is measured on an annual table."""

    column: str | None  # the annual column used; None: no simulated counterpart
    statistic: Callable[[pd.DataFrame, str], float] | None
    note: str
    #: for a share of a yearly flow (numerator and denominator flow columns, years): an
    #: ensemble's value is the share of all its runs' flows together, not the median of each
    #: run's share
    pooled: tuple[str, str, tuple[int, ...]] | None = None


def _years(period: str) -> list[int]:
    a, _, b = period.partition("-")
    if len(b) == 4:  # "1993-2000"
        return list(range(int(a), int(b) + 1))
    return [int(a)]  # "2008" or "2009-06"


def _at(years: list[int], how: str):
    def stat(annual: pd.DataFrame, column: str) -> float:
        sel = annual[annual["year"].isin(years)]
        if len(sel) != len(years):
            return math.nan
        v = sel[column].to_numpy(dtype=np.float64)
        return float(v.sum() if how == "sum" else v.mean())
    return stat


def _population_at(when: float):
    """Population at the fractional year ``when``, interpolated linearly between the annual
    table's year-end populations (the year's own year-end when the year before is missing)."""
    year = math.ceil(when) - 1  # the year whose end comes next: 2008.75 -> 2008, 1994.0 -> 1993
    frac = when - year  # share of that year elapsed
    def stat(annual: pd.DataFrame, column: str) -> float:
        a = annual.set_index("year")[column]
        if year not in a.index:
            return math.nan
        if frac >= 1.0 or year - 1 not in a.index:
            return float(a[year])
        return float(a[year - 1] + frac * (a[year] - a[year - 1]))
    return stat


def _crude_rate(years: list[int]):
    def stat(annual: pd.DataFrame, column: str) -> float:
        sel = annual[annual["year"].isin(years)]
        if len(sel) != len(years):
            return math.nan
        return float(np.mean(1000.0 * sel["deaths"].to_numpy() / sel["population"].to_numpy()))
    return stat


def target_spec(quantity: str, period: str) -> TargetSpec:
    """The annual statistic that measures a target (see the table in docs/validation.md)."""
    years = _years(period)
    if quantity == "excess_famine_deaths":
        return TargetSpec("excess_deaths", _at(years, "sum"), "sum of annual excess deaths over the period")
    if quantity == "crude_death_rate":
        return TargetSpec("deaths", _crude_rate(years),
                          "mean over the years of 1000 x deaths / population (year-end population)")
    if quantity == "pds_dependent_share":
        if years == [1989]:
            return TargetSpec("pds_share", _at([1990], "mean"),
                              "the model starts in January 1990: the 1990 mean of pds_share stands in for 1989")
        return TargetSpec("pds_share", _at(years, "mean"), "annual mean of pds_share")
    if quantity == "market_income_share":
        return TargetSpec("market_income_share", _at(years, "mean"), "mean of the annual market_income_share over the period")
    if quantity == "foreign_dvd_ever_watched":
        return TargetSpec("media_ever_share_border", _at(years, "mean"),
                          "adults of the border provinces ever exposed (refugees and travellers surveyed "
                          "come mostly from there; information module set by hand against it)")
    if quantity == "north_koreans_in_china":
        return TargetSpec("in_china_expected", _at(years, "mean"),
                          "North Koreans in China (in hiding plus settled) at the end of the year, low-noise "
                          "expected value (as the calibration's summaries)")
    if quantity == "months_abroad_before_entry":
        return TargetSpec("months_abroad_expected", _at(years, "mean"),
                          "mean months from crossing to arrival of the year's arrivals, low-noise expected value "
                          "of the mean-field copy (as the calibration's summaries; the sampled months_abroad_mean "
                          "averages a few agents at validation scales)")
    if quantity == "came_with_or_had_family_in_south":
        return TargetSpec("arrivals_with_kin_share", _at(years, "mean"),
                          "share of the year's arrivals with family already in the South; for an ensemble, "
                          "of all its runs' arrivals together (at validation scales a run has a few "
                          "arrivals a year, so each run's share is a ratio of small counts)",
                          pooled=("arrivals_with_kin", "arrivals", tuple(years)))
    if quantity == "official_markets":
        return TargetSpec(None, None, "the model has trading households, not market places")
    if quantity == "market_exchange_rate_kpw_per_usd":
        return TargetSpec(None, None, "an input (the scenario's exchange_rate lever), not an output")
    if quantity.startswith("songbun_"):
        return TargetSpec(None, None, "songbun is assigned once at the start from these shares (population.py); no annual output")
    return TargetSpec(None, None, "no mapping to a simulated output in talbuk.calibration.validate")


def _observed_arrivals() -> pd.Series:
    rec = read_data("arrivals_rok.csv")
    return pd.Series(rec["arrivals"].to_numpy(dtype=np.float64), index=rec["year"].to_numpy())


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def arrivals_metrics(sim: pd.Series, obs: pd.Series, low: pd.Series | None = None,
                     high: pd.Series | None = None) -> dict:
    """ARD, MASE (2000-2019), band coverage and the 2020-2025 out-of-sample check.

    ``sim``, ``low``, ``high``: simulated values indexed by year (``low``/``high``: the 90%
    band, ``None`` for a single run). ``obs``: the record indexed by year.
    """
    y0, y1 = CALIBRATION_YEARS
    years = list(range(y0, y1 + 1))
    out: dict = {"years": f"{y0}-{y1}"}
    if all(y in sim.index and np.isfinite(sim[y]) for y in years) and all(y in obs.index for y in [y0 - 1, *years]):
        s = sim.loc[years].to_numpy(dtype=np.float64)
        o = obs.loc[years].to_numpy(dtype=np.float64)
        prev = obs.loc[[y - 1 for y in years]].to_numpy(dtype=np.float64)
        out["ard"] = float(np.mean(np.abs(s - o) / o))
        mae = float(np.mean(np.abs(s - o)))
        naive = float(np.mean(np.abs(o - prev)))
        out["mae"] = mae
        out["mae_naive_persistence"] = naive
        out["mase"] = mae / naive
    else:
        out["ard"] = out["mae"] = out["mae_naive_persistence"] = out["mase"] = None
        out["reason"] = f"the simulation does not cover every year {y0}-{y1}"
    if low is not None and high is not None and out["ard"] is not None:
        lo = low.loc[years].to_numpy(dtype=np.float64)
        hi = high.loc[years].to_numpy(dtype=np.float64)
        o = obs.loc[years].to_numpy(dtype=np.float64)
        inside = (lo <= o) & (o <= hi)
        out["coverage"] = float(inside.mean())
        out["years_outside_band"] = [y for y, ok in zip(years, inside, strict=True) if not ok]
    else:
        out["coverage"] = None
    oos = []
    for y in range(OUT_OF_SAMPLE_YEARS[0], OUT_OF_SAMPLE_YEARS[1] + 1):
        if y not in obs.index:
            continue
        s = float(sim[y]) if y in sim.index else math.nan
        ratio = s / float(obs[y]) if math.isfinite(s) else math.nan
        row = {"year": y, "observed": float(obs[y]), "simulated": _finite(s), "ratio": _finite(ratio),
               "within_factor_2": bool(math.isfinite(ratio) and 0.5 <= ratio <= 2.0)}
        if low is not None and high is not None and y in low.index:
            row["q05"] = _finite(float(low[y]))
            row["q95"] = _finite(float(high[y]))
            row["inside_band"] = bool(low[y] <= obs[y] <= high[y])
        oos.append(row)
    out["out_of_sample_2020_2025"] = oos
    return out


def _women_share(years: list[int]):
    def stat(annual: pd.DataFrame, column: str) -> float:
        sel = annual[annual["year"].isin(years)]
        den = float(sel["arrivals"].sum())
        return float(sel[column].sum()) / den if den > 0 else math.nan
    return stat


#: Checks outside data/targets.csv (the shared data set): name, period, unit, low, central,
#: high, source, spec. Reported under ``diagnostics``, not counted among the targets.
DIAGNOSTICS = (
    ("women_share_of_arrivals", "2006-2011", "share of arrivals", 0.70, 0.75, 0.80,
     "Ministry of Unification entry statistics by sex: women were 71-78% of each year's "
     "arrivals in 2006-2011 (and more than two thirds of every year's since 2003 except "
     "2021-22); not a row of data/targets.csv, range set by hand around those years",
     TargetSpec("arrivals_female", _women_share(list(range(2006, 2012))),
                "women's sampled arrivals over all arrivals, 2006-2011 together; for an ensemble, "
                "all runs' arrivals together",
                pooled=("arrivals_female", "arrivals", tuple(range(2006, 2012))))),
)


def _diagnostic_rows(annuals: list[pd.DataFrame]) -> list[dict]:
    rows = []
    for name, period, unit, low, central, high, source, spec in DIAGNOSTICS:
        row = {"name": name, "year": period, "unit": unit, "low": low, "central": central,
               "high": high, "column": spec.column, "how": spec.note, "source": source}
        rows.append(_fill(row, spec, annuals))
    return rows


def _target_rows(annuals: list[pd.DataFrame]) -> list[dict]:
    rows = []
    targets = read_data("targets.csv")
    for _, t in targets.iterrows():
        spec = target_spec(str(t["quantity"]), str(t["period"]))
        row = {"name": str(t["quantity"]), "year": str(t["period"]), "unit": str(t["unit"]),
               "low": float(t["low"]), "central": float(t["central"]), "high": float(t["high"]),
               "column": spec.column, "how": spec.note, "source": str(t["source"])}
        rows.append(_fill(row, spec, annuals))
    pop = read_data("population.csv")
    for _, p in pop.iterrows():
        tol = POPULATION_TOLERANCE.get(str(p["kind"]), 0.05)
        when = population_reference_year(int(p["year"]), str(p["kind"]))
        spec = TargetSpec("population", _population_at(when),
                          f"population at the figure's reference date ({when:.2f}: year-end populations "
                          f"interpolated linearly); range: {p['kind']} +-{tol:.0%} (set by hand)")
        row = {"name": f"population ({p['kind']})", "year": str(int(p["year"])), "unit": "persons",
               "low": float(p["population"]) * (1 - tol), "central": float(p["population"]),
               "high": float(p["population"]) * (1 + tol), "column": "population", "how": spec.note,
               "source": str(p["source"])}
        rows.append(_fill(row, spec, annuals))
    return rows


def _fill(row: dict, spec: TargetSpec, annuals: list[pd.DataFrame]) -> dict:
    if spec.column is None or spec.statistic is None:
        row.update(simulated=None, in_range=None, reason=spec.note)
        return row
    if any(spec.column not in a.columns for a in annuals):
        row.update(simulated=None, in_range=None, reason=f"the run has no column {spec.column!r}")
        return row
    vals = np.array([spec.statistic(a, spec.column) for a in annuals], dtype=np.float64)
    finite = vals[np.isfinite(vals)]
    if len(finite) == 0:
        row.update(simulated=None, in_range=None, reason="undefined in the simulation (no years or no events)")
        return row
    med = float(np.median(finite))
    if spec.pooled is not None and len(annuals) > 1:
        med = _pooled_share(annuals, spec)
        row["statistic"] = "pooled over runs"
    row["simulated"] = med
    if len(annuals) > 1:
        row["simulated_q05"] = float(np.quantile(finite, 0.05))
        row["simulated_q95"] = float(np.quantile(finite, 0.95))
        row["runs_defined"] = int(len(finite))
    row["in_range"] = bool(row["low"] <= med <= row["high"])
    return row


def _pooled_share(annuals: list[pd.DataFrame], spec: TargetSpec) -> float:
    """Share of all runs' flows together over the spec's years (``spec.pooled``)."""
    num_col, den_col, years = spec.pooled
    num = den = 0.0
    for a in annuals:
        if num_col not in a.columns or den_col not in a.columns:
            return math.nan
        sel = a[a["year"].isin(list(years))]
        num += float(sel[num_col].sum())
        den += float(sel[den_col].sum())
    return num / den if den > 0 else math.nan


def validate(path: str | Path, *, column: str = DEFAULT_HEADLINE) -> dict:
    """Validation metrics of a run folder or an ensemble folder (see the module doc)."""
    path = Path(path)
    if column not in ARRIVAL_COLUMNS:
        raise ValidationInputError(f"--column: expected one of {ARRIVAL_COLUMNS}, got {column!r}")
    if not path.is_dir():
        raise ValidationInputError(f"{path}: not a folder (expected a run or an ensemble folder)")
    obs = _observed_arrivals()
    if is_ensemble(path):
        try:
            info, b, annuals = read_ensemble(path)
        except Exception as exc:  # noqa: BLE001 - a damaged ensemble folder
            raise ValidationInputError(f"{path}: unreadable ensemble folder ({exc})") from None
        if not annuals:
            raise ValidationInputError(f"{path / 'ensemble.json'}: run_folders: expected the ensemble's runs")
        kind = "ensemble"
        per_col = {}
        for col in ARRIVAL_COLUMNS:
            sel = b[b["output"] == col].set_index("year")
            if sel.empty:
                raise ValidationInputError(f"{path / 'bands.parquet'}: output: expected a band for {col!r}")
            per_col[col] = arrivals_metrics(sel["median"], obs, sel["q05"], sel["q95"])
            per_col[col]["simulated"] = "median over runs"
        meta = {"scenario": info.get("scenario"), "runs": info.get("runs"), "scale": info.get("scale"),
                "seed": info.get("seed"), "posterior": info.get("posterior")}
    elif (path / "manifest.json").is_file() and (path / "annual.parquet").is_file():
        try:
            manifest = json.loads((path / "manifest.json").read_text())
            annual = pd.read_parquet(path / "annual.parquet")
        except Exception as exc:  # noqa: BLE001 - a damaged run folder
            raise ValidationInputError(f"{path}: unreadable run folder ({exc})") from None
        for col in ("year", *ARRIVAL_COLUMNS):
            if col not in annual.columns:
                raise ValidationInputError(f"{path / 'annual.parquet'}: {col}: expected this column")
        annuals = [annual]
        kind = "run"
        per_col = {col: arrivals_metrics(annual.set_index("year")[col], obs) for col in ARRIVAL_COLUMNS}
        meta = {"scenario": manifest.get("scenario"), "runs": 1, "scale": manifest.get("scale"),
                "seed": manifest.get("seed"), "posterior": None}
    else:
        raise ValidationInputError(f"{path}: not a talbuk run folder (manifest.json, annual.parquet) "
                                   "nor an ensemble folder (ensemble.json, bands.parquet)")
    head = per_col[column]
    targets = _target_rows(annuals)
    checked = [t for t in targets if t["in_range"] is not None]
    return {
        "path": str(path),
        "kind": kind,
        **meta,
        "headline_column": column,
        "ard_arrivals_2000_2019": head["ard"],
        "mase_arrivals": head["mase"],
        "band_coverage_2000_2019": head["coverage"],
        "out_of_sample_2020_2025": head["out_of_sample_2020_2025"],
        "arrivals": per_col,
        "targets_in_range": sum(t["in_range"] for t in checked),
        "targets_checked": len(checked),
        "targets": targets,
        "diagnostics": _diagnostic_rows(annuals),
        "observed": "data/arrivals_rok.csv (Ministry of Unification and earlier official counts)",
    }


def write_json(result: dict, path: Path) -> Path:
    """Write ``result`` atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(result, indent=2, sort_keys=False, allow_nan=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _fmt(x, pct=False) -> str:
    if x is None:
        return "-"
    if pct:
        return f"{x:.0%}"
    return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def print_report(result: dict, console) -> None:
    """The metrics and targets as rich tables."""
    from rich.table import Table

    t = Table(title=f"{result['kind']} {result['path']} ({result['scenario']}, "
                    f"{result['runs']} run(s), scale {result['scale']})")
    t.add_column("arrivals column")
    t.add_column("ARD 2000-19", justify="right")
    t.add_column("MASE 2000-19", justify="right")
    t.add_column("90% band coverage", justify="right")
    t.add_column("2020-25 within x2", justify="right")
    for col, m in result["arrivals"].items():
        oos = m["out_of_sample_2020_2025"]
        within = sum(r["within_factor_2"] for r in oos)
        name = col + (" (headline)" if col == result["headline_column"] else "")
        t.add_row(name, _fmt(m["ard"]), _fmt(m["mase"]), _fmt(m["coverage"], pct=True), f"{within}/{len(oos)}")
    console.print(t)
    tt = Table(title=f"targets: {result['targets_in_range']} of {result['targets_checked']} in range")
    for c in ("target", "year", "simulated", "range", "in range"):
        tt.add_column(c, justify="right" if c in ("simulated", "range") else "left")
    for r in result["targets"]:
        ok = "n/a" if r["in_range"] is None else ("yes" if r["in_range"] else "NO")
        tt.add_row(r["name"], r["year"], _fmt(r["simulated"]), f"{_fmt(r['low'])} .. {_fmt(r['high'])}", ok)
    console.print(tt)
    diag = result.get("diagnostics") or []
    if diag:
        td = Table(title="diagnostics (not in data/targets.csv, not counted above)")
        for c in ("check", "years", "simulated", "range", "in range"):
            td.add_column(c, justify="right" if c in ("simulated", "range") else "left")
        for r in diag:
            ok = "n/a" if r["in_range"] is None else ("yes" if r["in_range"] else "NO")
            td.add_row(r["name"], r["year"], _fmt(r["simulated"]), f"{_fmt(r['low'])} .. {_fmt(r['high'])}", ok)
        console.print(td)
    console.print("n/a: no simulated counterpart or undefined in this simulation; the reason of each "
                  "is in the JSON (targets[].reason)")


def cli_validate(*, path: Path, json_path: Path | None, column: str, quiet: bool) -> None:
    """The ``talbuk validate`` command (registered in ``talbuk.cli``)."""
    from talbuk.cli import _fail, stdout

    try:
        result = validate(path, column=column)
    except ValidationInputError as e:
        _fail(str(e))
    target = json_path if json_path is not None else Path(path) / "validation.json"
    if not target.parent.is_dir():
        _fail(f"--json: {target.parent}: no such folder")
    try:
        write_json(result, target)
    except OSError as e:
        _fail(f"--json: {target}: cannot write ({e.strerror})")
    if not quiet:
        print_report(result, stdout)
    stdout.print(f"wrote {target}")
