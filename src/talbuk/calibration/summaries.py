"""Summary statistics of a run, and the observed values they are compared with.

A run is reduced to a flat dict of floats (what pyabc stores per particle):

* ``arrivals_YYYY`` for every year 1990-2025: ``arrivals_expected``, the low-noise estimate of
  arrivals in South Korea (DESIGN section 2), in people. The record is
  ``data/arrivals_rok.csv``.
* one value per *range target* (:data:`RANGE_TARGETS`), each compared with a low-high range from
  ``data/targets.csv`` or ``data/population.csv``.

Only the core dependencies are needed here (no pyabc), so the validation tools can reuse it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

from talbuk.calendar import population_reference_month

#: years whose arrivals are summarised (the whole simulated window of the baseline)
ARRIVAL_YEARS: tuple[int, ...] = tuple(range(1990, 2026))
#: default years whose arrivals enter the distance
DEFAULT_FIT_YEARS: tuple[int, int] = (1995, 2019)


def arrival_key(year: int) -> str:
    return f"arrivals_{year}"


@dataclass(frozen=True)
class RangeTarget:
    """One summary compared with a range: 0 inside ``[low, high]``, relative distance outside."""

    key: str  # summary statistic name
    quantity: str  # row of targets.csv / population.csv it comes from
    period: str
    low: float
    high: float
    central: float
    unit: str
    source: str
    how: str  # how the summary is computed from a run


def _data_csv(name: str) -> pd.DataFrame:
    with resources.files("talbuk").joinpath("data", name).open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh)


def arrivals_record() -> dict[int, float]:
    """Recorded arrivals in South Korea by year (``data/arrivals_rok.csv``)."""
    df = _data_csv("arrivals_rok.csv")
    return {int(y): float(a) for y, a in zip(df["year"], df["arrivals"], strict=True)}


def _target(df: pd.DataFrame, quantity: str, period: str) -> pd.Series:
    row = df[(df["quantity"] == quantity) & (df["period"].astype(str) == period)]
    if len(row) != 1:  # pragma: no cover - the shipped data are fixed
        raise KeyError(f"targets.csv: no single row for {quantity} {period}")
    return row.iloc[0]


#: census counts have no published range; a band of +-1% around them is set by hand (census
#: coverage error of the order of 1%; the 1993 census includes the military)
CENSUS_BAND = 0.01


@functools.cache
def _census_months() -> tuple[tuple[int, str], ...]:
    """(year, month counted) of each census of population.csv (read once per process)."""
    pop = _data_csv("population.csv")
    return tuple((int(y), population_reference_month(int(y), "census"))
                 for y in pop.loc[pop["kind"] == "census", "year"])


def range_targets() -> list[RangeTarget]:
    """The range targets, read from the shipped data (low, high and source from the files)."""
    t = _data_csv("targets.csv")
    spec = [
        # key, quantity, period, how
        ("excess_deaths_1993_2000", "excess_famine_deaths", "1993-2000",
         "sum of annual excess_deaths 1993-2000"),
        ("crude_death_rate_1995_1997", "crude_death_rate", "1995-1997",
         "deaths / population x 1000, mean of 1995-1997"),
        ("pds_share_1990", "pds_dependent_share", "1989",
         "annual mean pds_share in 1990 (the model starts in 1990-01; the target is for 1989)"),
        ("pds_share_1997", "pds_dependent_share", "1997", "annual mean pds_share in 1997"),
        ("market_income_share_2010_2019", "market_income_share", "2010-2019",
         "mean of annual market_income_share 2010-2019"),
        ("media_ever_share_border_2008", "foreign_dvd_ever_watched", "2008",
         "media_ever_share_border at the end of 2008 (adults of the border provinces; the target "
         "is refugees and travellers, who mostly come from there)"),
        ("media_ever_share_border_2010", "foreign_dvd_ever_watched", "2010",
         "media_ever_share_border at the end of 2010"),
        ("in_china_2002", "north_koreans_in_china", "2002",
         "in_china_expected (low-noise) at the end of 2002"),
        ("in_china_2006", "north_koreans_in_china", "2006",
         "in_china_expected (low-noise) at the end of 2006"),
        ("months_abroad_2002", "months_abroad_before_entry", "2002",
         "months_abroad_expected (low-noise, mean-field copy) of the 2002 arrivals"),
        ("months_abroad_2009", "months_abroad_before_entry", "2009",
         "months_abroad_expected (low-noise, mean-field copy) of the 2009 arrivals"),
        ("with_kin_share_2010", "came_with_or_had_family_in_south", "2010",
         "arrivals_with_kin_share_expected (low-noise, kin-split mean-field copy) of the 2010 "
         "arrivals"),
    ]
    out = []
    for key, quantity, period, how in spec:
        row = _target(t, quantity, period)
        out.append(RangeTarget(key, quantity, period, float(row["low"]), float(row["high"]),
                               float(row["central"]), str(row["unit"]), str(row["source"]), how))
    pop = _data_csv("population.csv")
    for _, row in pop[pop["kind"] == "census"].iterrows():
        year = int(row["year"])
        value = float(row["population"])
        out.append(RangeTarget(
            f"population_{year}", "census population", str(year),
            value * (1 - CENSUS_BAND), value * (1 + CENSUS_BAND), value, "persons",
            f"{row['source']}; band of +-{CENSUS_BAND:.0%} set by hand",
            f"population at the end of {population_reference_month(year, 'census')}"))
    return out


def observed() -> dict[str, float]:
    """The observed summary statistics: the arrivals record and each range target's central value."""
    rec = arrivals_record()
    out = {arrival_key(y): rec[y] for y in ARRIVAL_YEARS}
    out.update({t.key: t.central for t in range_targets()})
    return out


def summarise(annual: pd.DataFrame, monthly: pd.DataFrame | None = None) -> dict[str, float]:
    """Summary statistics of one run from its annual (and monthly) tables; NaN where undefined."""
    a = annual.set_index("year")

    def at(col: str, year: int) -> float:
        if col not in a.columns or year not in a.index:
            return float("nan")
        return float(a.at[year, col])

    def mean(col: str, y0: int, y1: int) -> float:
        vals = [at(col, y) for y in range(y0, y1 + 1)]
        return float(np.mean(vals)) if vals else float("nan")

    out = {arrival_key(y): at("arrivals_expected", y) for y in ARRIVAL_YEARS}
    out["excess_deaths_1993_2000"] = float(sum(at("excess_deaths", y) for y in range(1993, 2001)))
    out["crude_death_rate_1995_1997"] = float(np.mean(
        [1000 * at("deaths", y) / at("population", y) for y in range(1995, 1998)]))
    out["pds_share_1990"] = at("pds_share", 1990)
    out["pds_share_1997"] = at("pds_share", 1997)
    out["market_income_share_2010_2019"] = mean("market_income_share", 2010, 2019)
    out["media_ever_share_border_2008"] = at("media_ever_share_border", 2008)
    out["media_ever_share_border_2010"] = at("media_ever_share_border", 2010)
    out["in_china_2002"] = at("in_china_expected", 2002)
    out["in_china_2006"] = at("in_china_expected", 2006)
    # expected months abroad and kin share of the mean-field copies (low noise): the share
    # of the sampled arrivals rests on a handful of people at calibration scales (at scale
    # 500 about five 2010 arrivals a run, often none), too noisy for the distance to see
    out["months_abroad_2002"] = at("months_abroad_expected", 2002)
    out["months_abroad_2009"] = at("months_abroad_expected", 2009)
    out["with_kin_share_2010"] = at("arrivals_with_kin_share_expected", 2010)
    # each census at the end of the month before its reference date (the annual table's
    # year-end value when that month is December, else the monthly table's, NaN without it)
    for year, month in _census_months():
        value = at("population", year) if month.endswith("-12") else float("nan")
        if monthly is not None and "population" in monthly.columns:
            sel = monthly["month"] == month
            if sel.any():
                value = float(monthly.loc[sel, "population"].iloc[0])
        out[f"population_{year}"] = value
    return {k: float(v) for k, v in out.items()}


def predictive(posterior, scenario="baseline", *, draws: int = 16, scale: float = 1000.0,
               seed: int = 1, progress=None) -> pd.DataFrame:
    """Posterior-predictive runs: ``draws`` parameter vectors from ``posterior`` (by weight,
    deterministic in ``seed``), each run with simulation seed ``seed + i``.

    Returns one row per draw and year: ``draw``, ``year``, ``arrivals_expected``, ``arrivals``.
    """
    from talbuk.calibration.params import apply_params
    from talbuk.scenario import load_scenario
    from talbuk.sim import Sim

    base = load_scenario(scenario)
    rows = []
    for i, theta in enumerate(posterior.draw(draws, seed)):
        res = Sim(apply_params(base, theta), scale=scale, seed=seed + i, threads=1).run()
        a = res.annual
        rows.append(pd.DataFrame({"draw": i, "year": a["year"].to_numpy(),
                                  "arrivals_expected": a["arrivals_expected"].to_numpy(),
                                  "arrivals": a["arrivals"].to_numpy(),
                                  "rule": str(theta.get("rule", base.decision_rule))}))
        if progress is not None:
            progress(i)
    return pd.concat(rows, ignore_index=True)


def fit_table(pred: pd.DataFrame) -> pd.DataFrame:
    """Per year: the record, the predictive median and 5-95% band, and the ratio median/record."""
    rec = arrivals_record()
    g = pred.groupby("year")["arrivals_expected"]
    out = pd.DataFrame({"median": g.median(), "p05": g.quantile(0.05), "p95": g.quantile(0.95)})
    out["record"] = [rec.get(int(y), float("nan")) for y in out.index]
    out["ratio"] = out["median"] / out["record"]
    out["within_factor_2"] = (out["ratio"] >= 0.5) & (out["ratio"] <= 2.0)
    return out.reset_index()


def ard(table: pd.DataFrame, y0: int, y1: int) -> float:
    """Averaged relative difference |median - record| / record over years y0..y1 (as Flee)."""
    sel = table[(table["year"] >= y0) & (table["year"] <= y1)]
    return float(np.mean(np.abs(sel["median"] - sel["record"]) / sel["record"]))
