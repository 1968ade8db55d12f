"""talbuk sensitivity: the Sobol design and analysis on a known function, a cheap real run, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from talbuk.calibration.params import Prior, load_priors
from talbuk.calibration.sensitivity import analyse, design, outputs_of, sensitivity

RULE_PRIORS = str(Path(__file__).resolve().parents[1] / "src" / "talbuk" / "calibration" / "priors_rules.toml")


def test_design_and_analysis_recover_known_indices():
    # y = x1 + x2 with x1 ~ U(0, 1), x2 ~ U(0, 2): Var = 1/12 + 4/12, so S1 = ST = 0.2 and 0.8
    priors = [Prior("decision.threshold_loc", "uniform", 0.0, 1.0), Prior("decision.hazard", "uniform", 0.0, 2.0)]
    problem, unit, values = design(priors, 1024, seed=3)
    assert values.shape == (1024 * (2 + 2), 2)  # N * (D + 2) runs without second order
    assert values[:, 1].min() >= 0 and values[:, 1].max() <= 2
    t = analyse(problem, {"y": values[:, 0] + values[:, 1]}, seed=3).set_index("parameter")
    # tolerance: several bootstrap half-widths at N=1024 (about 0.02-0.04)
    assert t.loc["decision.threshold_loc", "S1"] == pytest.approx(0.2, abs=0.06)
    assert t.loc["decision.hazard", "S1"] == pytest.approx(0.8, abs=0.06)
    assert t.loc["decision.hazard", "ST"] == pytest.approx(0.8, abs=0.06)
    # a log-uniform prior maps the unit cube onto its range, evenly in the log
    lp = [Prior("decision.hazard", "loguniform", 0.005, 0.08)]
    _, u, v = design(lp, 256, seed=1)
    assert np.allclose(np.log(v[:, 0]), np.log(0.005) + u[:, 0] * np.log(16))


def test_outputs_of_an_annual_table():
    years = np.arange(1990, 2026)
    a = pd.DataFrame({"year": years, "arrivals_expected": np.where(years == 2012, 50.0, 100.0)})
    o = outputs_of(a)
    assert o["arrivals_2000_2019"] == pytest.approx(19 * 100 + 50)
    assert o["arrivals_2009"] == 100 and o["drop_2012"] == pytest.approx(-0.5)


def test_cheap_real_run_writes_finite_indices(tmp_path):
    # a stand-in: 2 parameters, N=2 (8 runs), about 1,000 agents
    out = sensitivity(tmp_path / "sens", scenario="baseline", n=2, scale=20000, seed=4,
                      params=["decision.hazard", "journey.onward_rate"])
    assert sorted(p.name for p in out.iterdir()) == ["samples.parquet", "sensitivity.json", "sobol.csv", "sobol.png"]
    t = pd.read_csv(out / "sobol.csv")
    assert list(t.columns) == ["output", "parameter", "S1", "S1_conf", "ST", "ST_conf"]
    assert len(t) == 5 * 2  # 3 outputs and the log10 of the 2 counts, 2 parameters
    assert np.isfinite(t[["S1", "S1_conf", "ST", "ST_conf"]].to_numpy()).all()
    s = pd.read_parquet(out / "samples.parquet")
    assert len(s) == 2 * (2 + 2)
    info = json.loads((out / "sensitivity.json").read_text())
    assert info["runs"] == 8 and info["seed"] == 4
    assert info["simulated"] == "1990-01 to 2019-12"  # the outputs need nothing later
    priors = {p.name: p for p in load_priors()}
    for name in ("decision.hazard", "journey.onward_rate"):
        assert s[name].between(priors[name].low, priors[name].high).all()


def cli(*args):
    from typer.testing import CliRunner

    from talbuk.cli import app

    return CliRunner().invoke(app, ["sensitivity", *map(str, args)])


def test_bad_input_exits_2(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    bad_priors = tmp_path / "priors.toml"
    bad_priors.write_text('[parameters."decision.hazard"]\ndistribution = "normal"\nlow = 0.1\nhigh = 0.2\n')
    cases = [
        (["--n", "3", "--out", tmp_path / "a"], "power of 2"),
        (["--n", "4", "--params", "decision.nonsense", "--out", tmp_path / "a"], "decision.nonsense"),
        (["--n", "4", "--priors", tmp_path / "missing.toml", "--out", tmp_path / "a"], "missing.toml"),
        (["--n", "4", "--priors", bad_priors, "--out", tmp_path / "a"], "distribution"),
        (["--n", "4", "--scale", "0", "--out", tmp_path / "a"], "--scale"),
        (["--n", "4", "--scenario", "nope", "--out", tmp_path / "a"], "nope"),
        (["--n", "4", "--out", existing], "--force"),
        # a parameter of another decision rule's model does nothing under the baseline's rule
        (["--n", "4", "--priors", RULE_PRIORS, "--params", "decision.utility_loc", "--out", tmp_path / "a"],
         "(rule threshold)"),
    ]
    for args, needle in cases:
        r = cli(*args)
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.stderr.replace("\n", ""), (args, r.stderr)
    assert not (tmp_path / "a").exists() and not (tmp_path / "a.partial").exists()
    assert list(existing.iterdir()) == []
