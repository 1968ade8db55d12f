"""talbuk validate: metrics checked against hand computations on synthetic run folders."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from talbuk.calibration.validate import validate
from talbuk.population import read_data

TALBUK = [sys.executable, "-m", "talbuk.cli"]
YEARS = np.arange(1990, 2026)


def talbuk(*args):
    return subprocess.run([*TALBUK, *map(str, args)], capture_output=True, text=True, timeout=120)


def observed() -> dict[int, float]:
    rec = read_data("arrivals_rok.csv")
    return dict(zip(rec["year"].astype(int), rec["arrivals"].astype(float), strict=True))


def synthetic_annual(factor_expected: float = 1.1, factor_sampled: float = 2.0,
                     excess_per_year: float = 100_000.0) -> pd.DataFrame:
    """An annual table with known values: arrivals are the record times a factor."""
    obs = observed()
    # the 2007 and 2008 year-ends equal the 2008 census, counted in between (1 Oct 2008)
    pop = {1990: 20_293_060, 1993: 21_213_478, 2007: 24_052_231, 2008: 24_052_231}
    a = pd.DataFrame({"year": YEARS, "months": 12})
    a["population"] = [float(pop.get(y, 22_000_000)) for y in YEARS]
    a["deaths"] = a["population"] * 0.010  # crude death rate exactly 10 per 1000
    a["excess_deaths"] = [excess_per_year if 1993 <= y <= 2000 else 0.0 for y in YEARS]
    a["pds_share"] = [0.62 if y == 1990 else 0.5 for y in YEARS]  # 1997: 0.5, outside 0.03-0.1
    a["market_income_share"] = 0.7
    a["media_ever_share_border"] = 0.2
    a["in_china_expected"] = 0.0
    a["months_abroad_expected"] = np.nan  # no expected arrivals: undefined
    a["arrivals_with_kin_share"] = 0.4
    a["arrivals_expected"] = [obs[y] * factor_expected for y in YEARS]
    a["arrivals"] = [obs[y] * factor_sampled for y in YEARS]
    return a


def write_run(folder, annual: pd.DataFrame):
    folder.mkdir(parents=True)
    annual.to_parquet(folder / "annual.parquet", index=False)
    (folder / "manifest.json").write_text(json.dumps({"scenario": "synthetic", "seed": 1, "scale": 1000}))
    return folder


def hand_mase(factor: float) -> float:
    """|sim - obs| = (factor - 1) obs; naive persistence error |obs_t - obs_t-1|, 2000-2019."""
    obs = observed()
    err = [abs(factor - 1) * obs[y] for y in range(2000, 2020)]
    naive = [abs(obs[y] - obs[y - 1]) for y in range(2000, 2020)]
    return (sum(err) / 20) / (sum(naive) / 20)


def test_single_run_metrics_match_hand_computation(tmp_path):
    run = write_run(tmp_path / "run", synthetic_annual())
    r = validate(run)
    assert r["kind"] == "run"
    assert r["headline_column"] == "arrivals_expected"
    assert r["ard_arrivals_2000_2019"] == pytest.approx(0.1)  # every year 10% above the record
    assert r["arrivals"]["arrivals"]["ard"] == pytest.approx(1.0)  # every year twice the record
    assert r["mase_arrivals"] == pytest.approx(hand_mase(1.1))
    assert r["arrivals"]["arrivals"]["mase"] == pytest.approx(hand_mase(2.0))
    assert r["band_coverage_2000_2019"] is None  # no band for a single run
    oos = {row["year"]: row for row in r["out_of_sample_2020_2025"]}
    assert sorted(oos) == list(range(2020, 2026))
    assert oos[2021]["ratio"] == pytest.approx(1.1) and oos[2021]["within_factor_2"]
    assert r["arrivals"]["arrivals"]["out_of_sample_2020_2025"][0]["within_factor_2"]  # x2: boundary in


def test_targets_mapped_and_checked(tmp_path):
    run = write_run(tmp_path / "run", synthetic_annual(excess_per_year=100_000.0))
    t = {(row["name"], row["year"]): row for row in validate(run)["targets"]}
    targets = read_data("targets.csv")
    pop = read_data("population.csv")
    assert len(t) == len(targets) + len(pop)  # every row of both files is listed
    famine = t[("excess_famine_deaths", "1993-2000")]
    assert famine["simulated"] == pytest.approx(800_000) and famine["in_range"]  # 8 years x 100k
    assert t[("crude_death_rate", "1995-1997")]["simulated"] == pytest.approx(10.0)
    assert t[("pds_dependent_share", "1989")]["in_range"]  # 1990 stands in: 0.62
    assert not t[("pds_dependent_share", "1997")]["in_range"]  # 0.5, outside 0.03-0.1
    assert not t[("north_koreans_in_china", "2002")]["in_range"]  # 0 people
    undefined = t[("months_abroad_before_entry", "2002")]
    assert undefined["simulated"] is None and undefined["reason"]
    assert t[("official_markets", "2016")]["simulated"] is None
    census = t[("population (census)", "2008")]
    assert census["simulated"] == 24_052_231 and census["in_range"]
    r = validate(run)
    assert r["targets_checked"] == sum(row["in_range"] is not None for row in r["targets"])
    assert r["targets_in_range"] == sum(bool(row["in_range"]) for row in r["targets"])


def write_ensemble(folder, annuals: list[pd.DataFrame], band: pd.DataFrame):
    folder.mkdir(parents=True)
    names = []
    for i, a in enumerate(annuals):
        write_run(folder / "runs" / f"{i:03d}", a)
        names.append(f"runs/{i:03d}")
    band.to_parquet(folder / "bands.parquet", index=False)
    (folder / "ensemble.json").write_text(json.dumps({"kind": "talbuk-ensemble", "scenario": "synthetic",
                                                      "runs": len(annuals), "scale": 1000, "seed": 1,
                                                      "posterior": None, "run_folders": names}))
    return folder


def test_ensemble_coverage_uses_band_and_median(tmp_path):
    obs = observed()
    rows = []
    for col in ("arrivals", "arrivals_expected"):
        for y in YEARS:
            o = obs[int(y)]
            if 2010 <= y <= 2019:  # band above the record: outside
                lo, med, hi = 1.2 * o, 1.3 * o, 1.5 * o
            elif y == 2020:
                lo, med, hi = 2.0 * o, 3.0 * o, 4.0 * o
            else:  # band around the record: inside
                lo, med, hi = 0.9 * o, o, 1.1 * o
            rows.append({"output": col, "year": int(y), "q05": lo, "median": med, "q95": hi,
                         "mean": med, "n": 3})
    band = pd.DataFrame(rows)
    annuals = [synthetic_annual(excess_per_year=e) for e in (25_000.0, 62_500.0, 112_500.0)]
    ens = write_ensemble(tmp_path / "ens", annuals, band)
    r = validate(ens)
    assert r["kind"] == "ensemble"
    assert r["band_coverage_2000_2019"] == pytest.approx(0.5)  # 2000-09 in, 2010-19 out
    assert r["arrivals"]["arrivals_expected"]["years_outside_band"] == list(range(2010, 2020))
    assert r["ard_arrivals_2000_2019"] == pytest.approx(0.15)  # (10 x 0 + 10 x 0.3) / 20
    oos = {row["year"]: row for row in r["out_of_sample_2020_2025"]}
    assert oos[2020]["ratio"] == pytest.approx(3.0) and not oos[2020]["within_factor_2"]
    assert not oos[2020]["inside_band"] and oos[2021]["inside_band"]
    famine = next(t for t in r["targets"] if t["name"] == "excess_famine_deaths")
    assert famine["simulated"] == pytest.approx(500_000)  # median of 200k, 500k, 900k
    assert famine["simulated_q05"] == pytest.approx(200_000 + 0.1 * 300_000)  # linear quantile


def test_cli_writes_json_into_the_folder_and_refuses_non_runs(tmp_path):
    from typer.testing import CliRunner

    from talbuk.cli import app

    runner = CliRunner()
    run = write_run(tmp_path / "run", synthetic_annual())
    r = runner.invoke(app, ["validate", str(run), "--quiet"])
    assert r.exit_code == 0, r.output
    data = json.loads((run / "validation.json").read_text())
    for key in ("ard_arrivals_2000_2019", "mase_arrivals", "band_coverage_2000_2019",
                "out_of_sample_2020_2025", "targets"):
        assert key in data
    other = tmp_path / "elsewhere.json"
    assert runner.invoke(app, ["validate", str(run), "--json", str(other), "--quiet"]).exit_code == 0
    assert json.loads(other.read_text()) == data
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    for bad in (tmp_path / "missing", empty / "notes.txt"):
        r = runner.invoke(app, ["validate", str(bad)])
        assert r.exit_code == 2
        assert str(bad) in r.stderr.replace("\n", "")
    r = runner.invoke(app, ["validate", str(run), "--column", "nonsense"])
    assert r.exit_code == 2 and "--column" in r.stderr
    # the real command: one line, exit status 2, no traceback, nothing written
    p = talbuk("validate", empty)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert "not a talbuk run folder" in p.stderr
    assert sorted(x.name for x in empty.iterdir()) == ["notes.txt"]


def test_kin_share_of_an_ensemble_is_pooled_over_runs():
    """A share of a few arrivals a run is reported as the share of all runs' arrivals
    together, not the median of each run's share (which here would be 0)."""
    from talbuk.calibration.validate import _fill, target_spec

    spec = target_spec("came_with_or_had_family_in_south", "2010")
    runs = []
    for arr, kin in ((1, 0), (1, 0), (4, 4)):  # shares 0, 0, 1: median 0, pooled 4/6
        runs.append(pd.DataFrame({"year": [2009, 2010], "arrivals": [9.0, arr],
                                  "arrivals_with_kin": [9.0, kin],
                                  "arrivals_with_kin_share": [1.0, kin / arr]}))
    row = _fill({"low": 0.35, "high": 0.45}, spec, runs)
    assert row["simulated"] == pytest.approx(4 / 6)
    assert row["statistic"] == "pooled over runs"
    assert row["simulated_q05"] == 0.0 and row["in_range"] is False
    one = _fill({"low": 0.35, "high": 0.45}, spec, runs[2:])  # a single run: its own share
    assert one["simulated"] == 1.0 and "statistic" not in one


def test_population_compared_at_each_figures_reference_date():
    """Year-end populations are interpolated to the date each figure counts: the 2008 census
    on 1 Oct (three quarters into 2008), the 1993 census on 31 Dec, UN estimates mid-year."""
    from talbuk.calibration.validate import _target_rows

    years = np.arange(1990, 2026)
    annual = pd.DataFrame({"year": years, "population": 1000.0 * (years - 1900) ** 2})
    rows = {(r["name"], r["year"]): r for r in _target_rows([annual])}
    pop = dict(zip(years, annual["population"], strict=True))
    assert rows[("population (census)", "2008")]["simulated"] == pytest.approx(
        pop[2007] + 0.75 * (pop[2008] - pop[2007]))
    assert rows[("population (census)", "1993")]["simulated"] == pytest.approx(pop[1993])
    assert rows[("population (estimate)", "2010")]["simulated"] == pytest.approx(
        (pop[2009] + pop[2010]) / 2)
    assert rows[("population (estimate)", "1990")]["simulated"] == pytest.approx(pop[1990])  # no 1989


def test_women_share_diagnostic_pools_runs_and_years():
    from talbuk.calibration.validate import _diagnostic_rows

    years = list(range(2004, 2014))
    # run a: 100 arrivals a year, 80 women (2006-2011 in range); run b: 10 a year, 2 women
    a = pd.DataFrame({"year": years, "arrivals": 100.0, "arrivals_female": 80.0})
    b = pd.DataFrame({"year": years, "arrivals": 10.0, "arrivals_female": 2.0})
    b.loc[b["year"] == 2012, "arrivals_female"] = 10.0  # outside the period: ignored
    (row,) = _diagnostic_rows([a, b])
    assert row["name"] == "women_share_of_arrivals"
    assert row["statistic"] == "pooled over runs"
    assert row["simulated"] == pytest.approx((6 * 80 + 6 * 2) / (6 * 100 + 6 * 10))
    assert row["in_range"] is True  # 0.745
    assert row["simulated_q05"] == pytest.approx(0.2 + 0.05 * 0.6)  # per-run shares 0.8, 0.2
    (one,) = _diagnostic_rows([b])
    assert one["simulated"] == pytest.approx(0.2) and one["in_range"] is False
