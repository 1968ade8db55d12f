"""talbuk ensemble: files and bands, posterior draws, byte-identical reruns whatever --jobs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from talbuk.calibration.ensemble import plan, run_ensemble
from talbuk.calibration.params import Posterior, load_posterior, load_priors, theta_of
from talbuk.results import file_sha256
from talbuk.scenario import ScenarioError, scenario_from_toml

SCALE = 20000  # about 1,000 agents: the mechanics, not the numbers
RUNS = 3
SEED = 5


def write_posterior(path, particles: int = 6, seed: int = 0):
    """A posterior of particles drawn from the shipped priors, with uneven weights."""
    rng = np.random.default_rng(seed)
    priors = load_priors()
    df = pd.DataFrame({p.name: p.sample(rng, particles) for p in priors})
    Posterior(df, np.arange(1, particles + 1) / np.arange(1, particles + 1).sum(), "test").save(path)
    return path


@pytest.fixture(scope="module")
def ensemble_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ens")
    post = write_posterior(tmp / "posterior.csv")
    out = run_ensemble("baseline", tmp / "e1", runs=RUNS, scale=SCALE, seed=SEED, posterior=post, jobs=1)
    return out, post


def test_writes_runs_bands_and_description(ensemble_dir):
    out, post = ensemble_dir
    assert sorted(p.name for p in out.iterdir()) == ["bands.parquet", "ensemble.json", "runs"]
    assert not out.with_name(out.name + ".partial").exists()
    info = json.loads((out / "ensemble.json").read_text())
    assert info["runs"] == RUNS and info["scale"] == SCALE and info["seed"] == SEED
    assert info["seeds"] == [SEED, SEED + 1, SEED + 2]  # common random numbers: seed + i
    assert info["posterior"]["sha256"] == file_sha256(post)
    assert info["draws"] == load_posterior(post).draw(RUNS, SEED)
    annuals = []
    for i, folder in enumerate(info["run_folders"]):
        run = out / folder
        for f in ("manifest.json", "scenario.toml", "annual.parquet", "monthly.parquet"):
            assert (run / f).exists()
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["seed"] == SEED + i
        # run i carries draw i: its resolved scenario has the drawn values
        sc = scenario_from_toml((run / "scenario.toml").read_text())
        assert theta_of(sc, load_priors()) == pytest.approx(info["draws"][i])
        annuals.append(pd.read_parquet(run / "annual.parquet"))
    b = pd.read_parquet(out / "bands.parquet")
    assert list(b.columns) == ["output", "year", "q05", "median", "q95", "mean", "n"]
    outputs = [c for c in annuals[0].columns if c not in ("year", "months")]
    assert set(b["output"]) == set(outputs)
    assert len(b) == len(outputs) * len(annuals[0])
    ok = b.dropna(subset=["median"])
    assert (ok["q05"] <= ok["median"]).all() and (ok["median"] <= ok["q95"]).all()
    # against a hand computation from the three runs' tables
    v = np.array([a.loc[a["year"] == 2008, "arrivals_expected"].iloc[0] for a in annuals])
    row = b[(b["output"] == "arrivals_expected") & (b["year"] == 2008)].iloc[0]
    s = np.sort(v)
    assert row["median"] == pytest.approx(s[1])
    assert row["q05"] == pytest.approx(s[0] + 0.1 * (s[1] - s[0]))  # linear, rank 0.05 * 2
    assert row["q95"] == pytest.approx(s[1] + 0.9 * (s[2] - s[1]))
    assert row["mean"] == pytest.approx(v.mean()) and row["n"] == RUNS


def tree_hashes(folder):
    """sha256 of every table and of the ensemble description (manifests hold timings)."""
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*"))
            if p.suffix in (".parquet", ".toml") or p.name == "ensemble.json"}


def test_same_seed_byte_identical_with_two_jobs(ensemble_dir, tmp_path):
    out, post = ensemble_dir
    again = run_ensemble("baseline", tmp_path / "e2", runs=RUNS, scale=SCALE, seed=SEED,
                         posterior=post, jobs=2)
    h1, h2 = tree_hashes(out), tree_hashes(again)
    assert len(h1) > RUNS * 4
    assert h1 == h2


def test_validate_on_a_real_ensemble(ensemble_dir):
    from talbuk.calibration.validate import validate

    r = validate(ensemble_dir[0])
    assert r["kind"] == "ensemble" and r["runs"] == RUNS
    assert 0.0 <= r["band_coverage_2000_2019"] <= 1.0
    assert r["ard_arrivals_2000_2019"] >= 0 and r["mase_arrivals"] >= 0


def test_without_posterior_every_run_has_the_scenario_parameters():
    base, members, post = plan("baseline", runs=4, seed=9)
    assert post is None
    assert [m.seed for m in members] == [9, 10, 11, 12]
    assert all(m.theta == {} and m.scenario.hash() == base.hash() for m in members)


def test_posterior_with_decision_rules(tmp_path):
    post = tmp_path / "rules.csv"
    df = pd.DataFrame({"decision.hazard": [0.01, 0.02, 0.04], "rule": ["threshold", "utility", "planned"],
                       "weight": [0.2, 0.3, 0.5]})
    df.to_csv(post, index=False)
    _, members, info = plan("baseline", runs=8, seed=2, posterior=post)
    for m in members:  # each run takes its particle's rule and value
        assert m.scenario.decision_rule == m.theta["rule"]
        assert m.scenario.params["decision"].hazard == m.theta["decision.hazard"]
    assert info["parameters"] == ["decision.hazard"] and info["particles"] == 3
    df.loc[1, "rule"] = "whim"
    df.to_csv(post, index=False)
    with pytest.raises(ScenarioError, match="rule"):
        plan("baseline", runs=2, seed=2, posterior=post)


def cli(*args):
    from typer.testing import CliRunner

    from talbuk.cli import app

    return CliRunner().invoke(app, ["ensemble", *map(str, args)])


def test_bad_input_exits_2_and_touches_nothing(tmp_path):
    good = write_posterior(tmp_path / "post.csv")
    bad_col = tmp_path / "bad_col.csv"
    pd.read_csv(good, skiprows=1).rename(columns={"decision.hazard": "decision.nonsense"}).to_csv(bad_col, index=False)
    out_of_bounds = tmp_path / "oob.csv"
    df = pd.read_csv(good, skiprows=1)
    df["decision.hazard"] = 7.0  # the model accepts at most 1
    df.to_csv(out_of_bounds, index=False)
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("earlier result")
    cases = [
        (["--runs", "0", "--out", tmp_path / "a"], "--runs"),
        (["--runs", "2", "--scale", "0", "--out", tmp_path / "a"], "--scale"),
        (["--runs", "2", "--seed", "-1", "--out", tmp_path / "a"], "--seed"),
        (["--runs", "2", "--jobs", "0", "--out", tmp_path / "a"], "--jobs"),
        (["--runs", "2", "--scenario", "no-such-scenario", "--out", tmp_path / "a"], "no-such-scenario"),
        (["--runs", "2", "--posterior-file", tmp_path / "missing.csv", "--out", tmp_path / "a"], "missing.csv"),
        (["--runs", "2", "--posterior-file", bad_col, "--out", tmp_path / "a"], "decision.nonsense"),
        (["--runs", "2", "--posterior-file", out_of_bounds, "--out", tmp_path / "a"], "oob.csv"),
        (["--runs", "2", "--out", existing], "--force"),
    ]
    for args, needle in cases:
        r = cli(*args)
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.stderr.replace("\n", ""), (args, r.stderr)
    assert not (tmp_path / "a").exists() and not (tmp_path / "a.partial").exists()
    assert (existing / "keep.txt").read_text() == "earlier result"
    p = subprocess.run([sys.executable, "-m", "talbuk.cli", "ensemble", "--runs", "2", "--out", str(existing)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
