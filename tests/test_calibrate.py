"""talbuk calibrate: pyabc ABC-SMC on Dask, end to end through the command line.

To stay fast the calibrations here run a short scenario (the baseline cut at 1991-12, so 24
months a simulation) at scale 20000, with a handful of particles: they test the machinery
(Dask, the database, resume, faults, determinism), not the fit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyabc")
pytest.importorskip("dask.distributed")

from talbuk.calibration.abc import (  # noqa: E402
    Settings,
    evaluation_seed,
    output_paths,
    param_key,
    parse_rules,
    parse_years,
    to_theta,
)
from talbuk.calibration.distance import TalbukDistance, range_miss  # noqa: E402
from talbuk.calibration.params import load_priors  # noqa: E402
from talbuk.calibration.summaries import ARRIVAL_YEARS, arrivals_record, observed, range_targets  # noqa: E402
from tests.helpers import COLD_WAIT  # noqa: E402

SHORT = 'name = "short"\nextends = "baseline"\nend = "1991-12"\nposterior = "none"\n'
#: the priors of the rule comparison: each rule's model has its own location parameter
RULE_PRIORS = str(Path(__file__).resolve().parents[1] / "src" / "talbuk" / "calibration" / "priors_rules.toml")
#: the settings every machinery test shares (so their posteriors can be compared)
COMMON = ["--years", "1990-1991", "--scale", "20000", "--population", "4", "--seed", "7",
          "--rules", "threshold,planned", "--priors", RULE_PRIORS]
ENV = {**os.environ, "NUMBA_NUM_THREADS": "1"}


def _cli(*args: str, timeout: float = COLD_WAIT) -> subprocess.CompletedProcess:
    """The command in a fresh process (for the tests that kill processes)."""
    return subprocess.run([sys.executable, "-m", "talbuk.cli", "calibrate", *args], capture_output=True,
                          text=True, timeout=timeout, env=ENV)


def _invoke(*args: str) -> subprocess.CompletedProcess:
    """The command in this process (saves importing pyabc and Dask again each time)."""
    from typer.testing import CliRunner

    from talbuk.cli import app

    r = CliRunner().invoke(app, ["calibrate", *args])
    return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)


def _generations_in(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM populations WHERE t >= 0").fetchone()[0]
    except sqlite3.Error:
        return 0


def _posterior(db: Path) -> pd.DataFrame:
    return pd.read_csv(output_paths(db)["posterior"], skiprows=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def short_scenario(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("scenario") / "short.toml"
    p.write_text(SHORT)
    return p


@pytest.fixture(scope="module")
def reference(tmp_path_factory, short_scenario) -> Path:
    """An undisturbed 2-generation calibration on a local Dask cluster of 2 workers."""
    db = tmp_path_factory.mktemp("ref") / "ref.db"
    r = _invoke("--scenario", str(short_scenario), *COMMON, "--generations", "2", "--workers", "2",
                "--db", str(db))
    assert r.returncode == 0, r.stderr
    return db


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A Dask scheduler and two workers started as separate processes (no nannies)."""
    from dask.distributed import Client

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask_bin = str(Path(sys.executable).with_name("dask"))
    logs = tmp_path_factory.mktemp("dask")
    procs = {"scheduler": subprocess.Popen(
        [dask_bin, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT, env=ENV)}
    time.sleep(1.0)
    for i in range(2):
        procs[f"worker{i}"] = subprocess.Popen(
            [dask_bin, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard"],
            stdout=open(logs / f"worker{i}.log", "w"), stderr=subprocess.STDOUT, env=ENV)
    try:
        with Client(address, timeout="30s") as c:
            c.wait_for_workers(2, timeout=60)
        yield address, procs
    finally:
        for p in procs.values():  # only the processes this fixture started
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


# --------------------------------------------------------------------------------------------
# pieces, no Dask


def test_range_miss_is_zero_inside_and_relative_outside():
    assert range_miss(5.0, 4.0, 6.0) == 0.0
    assert range_miss(2.0, 4.0, 6.0) == pytest.approx(0.5)
    assert range_miss(9.0, 4.0, 6.0) == pytest.approx(0.5)
    assert range_miss(float("nan"), 4.0, 6.0) == 1.0


def test_distance_of_the_record_itself_is_its_range_misses_only():
    rec = arrivals_record()
    x = observed()  # arrivals exactly as recorded, each range target at its central value
    d = TalbukDistance()
    comps = d.components(x)
    assert comps["arrivals_rmsle"] == 0.0
    assert all(v == 0.0 for k, v in comps.items() if k != "arrivals_rmsle")
    assert d(x, x) == 0.0
    # a factor of 2 in every fit year, on the log scale, costs about ln 2 whatever the size
    doubled = dict(x)
    for y in range(1995, 2020):
        doubled[f"arrivals_{y}"] = 2 * rec[y] + 10  # (2r + 10 + 10) / (r + 10) = 2 exactly
    assert d(doubled, x) == pytest.approx(math.log(2), rel=1e-12)
    # years outside the fit window do not count
    only_2020 = dict(x)
    only_2020["arrivals_2020"] = 1e6
    assert d(only_2020, x) == 0.0


def test_range_targets_come_from_the_data_files():
    keys = {t.key for t in range_targets()}
    assert {"excess_deaths_1993_2000", "pds_share_1997", "media_ever_share_border_2010",
            "months_abroad_2002", "in_china_2006", "population_2008"} <= keys
    deaths = next(t for t in range_targets() if t.key == "excess_deaths_1993_2000")
    assert (deaths.low, deaths.high) == (240000.0, 1000000.0)
    assert set(observed()) >= {f"arrivals_{y}" for y in ARRIVAL_YEARS}


def test_unit_cube_parameters_map_through_the_priors():
    priors = load_priors()
    keys = [param_key(p.name) for p in priors]
    assert len(set(keys)) == len(keys) and all(k.isidentifier() for k in keys)
    lo = to_theta(priors, {k: 0.0 for k in keys})
    hi = to_theta(priors, {k: 1.0 for k in keys})
    for p in priors:
        assert lo[p.name] == pytest.approx(p.low) and hi[p.name] == pytest.approx(p.high)


def test_the_six_parameter_priors_are_a_subset_of_the_full_ones():
    """priors_core.toml (the calibration of six parameters) and the other subsets repeat priors of priors.toml
    with the same ranges and sources, and only module parameters (a baseline applying the
    posterior's mean never applies lever points)."""
    from importlib import resources

    full = {p.name: p for p in load_priors()}
    for name, size in (("priors_core.toml", 6), ("priors_settled.toml", 8), ("priors_media.toml", 9),
                       ("priors_tie.toml", 9), ("priors_broker.toml", 10), ("priors_loss.toml", 11),
                       ("priors_credit.toml", 5)):
        path = resources.files("talbuk").joinpath("calibration", name)
        core = load_priors(str(path))
        assert len(core) == size, name
        for p in core:
            q = full[p.name]
            assert (p.distribution, p.low, p.high, p.source) == (q.distribution, q.low, q.high, q.source), (name, p.name)
            assert not p.name.startswith("lever.")


def test_the_short_tie_priors_differ_from_the_full_ones_only_in_the_half_life():
    """priors_tie_short.toml (calibration 16): the nine priors of priors_tie.toml, the ties'
    half-life held to 1-4 years and its source saying the range was chosen against a target."""
    from importlib import resources

    full = {p.name: p for p in load_priors()}
    path = resources.files("talbuk").joinpath("calibration", "priors_tie_short.toml")
    short = {p.name: p for p in load_priors(str(path))}
    assert len(short) == 9
    for name, p in short.items():
        q = full[name]
        if name == "journey.kin_tie_half_life_years":
            assert (p.distribution, p.low, p.high) == ("loguniform", 1.0, 4.0)
            assert "chosen against" in p.source
        else:
            assert (p.distribution, p.low, p.high, p.source) == (q.distribution, q.low, q.high, q.source), name


def test_each_rule_has_its_own_location_parameter(tmp_path):
    """priors_rules.toml: five shared parameters and one location per rule; ``rules`` is
    checked when the file is read, and a posterior's empty cells are never applied."""
    from talbuk.calibration.params import Posterior, priors_for_rule
    from talbuk.scenario import ScenarioError

    priors = load_priors(RULE_PRIORS)
    own = {r: {p.name for p in priors_for_rule(priors, r)} for r in ("threshold", "utility", "planned")}
    shared = own["threshold"] & own["utility"] & own["planned"]
    assert len(shared) == 5 and "decision.threshold_loc" not in shared
    for r, loc in (("threshold", "threshold_loc"), ("utility", "utility_loc"), ("planned", "planned_loc")):
        assert own[r] - shared == {f"decision.{loc}"}
    assert len(priors_for_rule(priors, None)) == 8  # no model selection: every prior
    for bad in ('["vote"]', '[]', '"threshold"', '["planned", "planned"]'):
        f = tmp_path / "p.toml"
        f.write_text(f'[parameters."decision.hazard"]\nlow = 0.01\nhigh = 0.05\nrules = {bad}\n')
        with pytest.raises(ScenarioError) as e:
            load_priors(f)
        assert e.value.file == str(f) and e.value.key == "parameters.decision.hazard.rules"
    post = Posterior(pd.DataFrame({"rule": ["threshold", "utility"], "decision.threshold_loc": [0.7, np.nan],
                                   "decision.utility_loc": [np.nan, 0.2], "decision.hazard": [0.02, 0.04]}),
                     np.array([0.25, 0.75]))
    for theta in post.draw(20, seed=1):
        assert set(theta) == ({"rule", "decision.hazard", "decision.threshold_loc"} if theta["rule"] == "threshold"
                              else {"rule", "decision.hazard", "decision.utility_loc"})
    assert post.mean() == pytest.approx({"decision.threshold_loc": 0.7, "decision.utility_loc": 0.2,
                                         "decision.hazard": 0.035})


def test_evaluation_seeds_are_fixed_and_distinct():
    a = [evaluation_seed(1, t, j) for t in (-1, 0, 1) for j in range(50)]
    assert a == [evaluation_seed(1, t, j) for t in (-1, 0, 1) for j in range(50)]
    assert len(set(a)) == len(a)
    assert evaluation_seed(2, 0, 0) != evaluation_seed(1, 0, 0)


def test_option_parsers():
    assert parse_years("1995-2019") == (1995, 2019)
    assert parse_rules("threshold, planned") == ["threshold", "planned"]
    s = Settings("p.toml", "x", "baseline", "toml", 1000.0, 10, 1, ["threshold"], (1995, 2019))
    assert Settings.from_json(json.loads(json.dumps(s.to_json()))) == s


# --------------------------------------------------------------------------------------------
# bad input: one line, exit status 2, nothing written or lost


def _one_line_error(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_input_exits_2(tmp_path, monkeypatch):
    import talbuk.calibration.abc as abc_mod

    monkeypatch.setattr(abc_mod, "CONNECT_TIMEOUT_S", 2.0)  # nothing listens there: do not wait 10 s
    db = tmp_path / "c.db"
    bad_priors = tmp_path / "bad.toml"
    bad_priors.write_text('[parameters."decision.threshold_loc"]\nlow = 2.0\nhigh = 1.0\n')
    _one_line_error(_invoke("--priors", str(bad_priors), "--generations", "1", "--db", str(db)),
                    "bad.toml", "parameters.decision.threshold_loc.high")
    _one_line_error(_invoke("--generations", "1", "--db", str(db), "--scheduler", "not-an-address"),
                    "--scheduler")
    _one_line_error(_invoke("--generations", "1", "--db", str(db), "--scheduler", "tcp://127.0.0.1:9"),
                    "--scheduler", "cannot connect")
    _one_line_error(_invoke("--generations", "1", "--db", "/proc/talbuk-calibration.db"), "not writable")
    _one_line_error(_invoke("--generations", "1", "--db", str(db), "--years", "1980-2019"), "--years")
    _one_line_error(_invoke("--generations", "1", "--db", str(db), "--rules", "threshold,vote"), "--rules")
    _one_line_error(_invoke("--generations", "1", "--db", str(db), "--range-weight", "-1"), "--range-weight")
    _one_line_error(_invoke("--db", str(db)), "--generations")
    _one_line_error(_invoke("--generations", "1", "--db", str(db), "--resume"), "no such database")
    assert list(tmp_path.iterdir()) == [bad_priors]  # nothing written


def test_the_range_weight_is_a_setting_that_reaches_the_distance():
    """``--range-weight`` is saved with the settings (so a resumed calibration keeps it) and is
    the weight of the distance the ABC uses; a setup file from before the option reads as 0.25."""
    from talbuk.calibration.abc import Settings, build_abc, prepare
    from talbuk.calibration.distance import RANGE_WEIGHT

    st = prepare(priors_path=None, scenario="baseline", scale=20000, population=4, seed=1,
                 rules=None, years="1995-2019", range_weight=2.0)
    again = Settings.from_json(json.loads(json.dumps(st.to_json())))
    assert again.range_weight == 2.0
    _, _, distance = build_abc(again, None, resume=False)
    assert distance.range_weight == 2.0 and distance.config()["range_weight"] == 2.0
    old = st.to_json()
    del old["range_weight"]
    assert Settings.from_json(old).range_weight == RANGE_WEIGHT == 0.25


def test_existing_database_is_not_overwritten(tmp_path):
    db = tmp_path / "c.db"
    db.write_bytes(b"an earlier calibration")
    _one_line_error(_invoke("--generations", "1", "--db", str(db)), "database exists", "--resume", "--force")
    assert db.read_bytes() == b"an earlier calibration"


# --------------------------------------------------------------------------------------------
# end to end


def test_tiny_calibration_end_to_end(reference):
    db = reference
    paths = output_paths(db)
    assert _generations_in(db) == 2
    summary = json.loads(paths["summary"].read_text())
    assert [g["t"] for g in summary["generations"]] == [0, 1]
    assert summary["epsilons"][0] > summary["epsilons"][1]  # generation 0 accepts the prior
    assert summary["acceptance_rates"][0] == 1.0 and 0 < summary["acceptance_rates"][1] <= 1
    assert summary["priors_sha256"] == hashlib.sha256(
        Path(summary["priors_file"]).read_bytes()).hexdigest()
    rules = json.loads(paths["rules"].read_text())
    assert set(rules) == {"threshold", "planned"} and sum(rules.values()) == pytest.approx(1.0)
    post = _posterior(db)
    assert set(post["rule"]) <= {"threshold", "planned"}
    assert post["weight"].sum() == pytest.approx(1.0)
    for p in load_priors(RULE_PRIORS):  # inside its prior in its rules' particles, empty in the others
        mine = post["rule"].map(p.applies_to).to_numpy(dtype=bool)
        assert post.loc[mine, p.name].between(p.low, p.high).all(), p.name
        assert post.loc[~mine, p.name].isna().all(), p.name
    assert post["decision.utility_loc"].isna().all()  # the utility rule is not in the comparison


def _start_and_wait_for_first_generation(args: list[str], db) -> subprocess.Popen:
    """Start ``talbuk calibrate ARGS`` and return once ``db`` holds a generation (or
    :data:`tests.helpers.COLD_WAIT` seconds)."""
    proc = subprocess.Popen([sys.executable, "-m", "talbuk.cli", "calibrate", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + COLD_WAIT
    while _generations_in(db) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    return proc


def test_resume_after_kill_gives_the_same_posterior(tmp_path, short_scenario, reference, dask_cluster):
    """SIGKILL the calibration once generation 0 is in the database, then --resume it."""
    address, _ = dask_cluster
    db = tmp_path / "killed.db"
    args = ["--scenario", str(short_scenario), *COMMON, "--generations", "2", "--db", str(db),
            "--scheduler", address]
    proc = _start_and_wait_for_first_generation(args, db)
    assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _generations_in(db) == 1
    r = _cli("--resume", "--generations", "2", "--db", str(db), "--scheduler", address)
    assert r.returncode == 0, r.stderr
    assert "resuming after generation 0" in " ".join(r.stderr.split())  # rich wraps long lines
    assert _generations_in(db) == 2
    # with seeded evaluations, the interrupted calibration ends where the undisturbed one did
    pd.testing.assert_frame_equal(_posterior(db), _posterior(reference))
    _one_line_error(_invoke("--resume", "--generations", "2", "--db", str(db), "--scheduler", address),
                    "already has 2 generations")


def test_external_scheduler_and_a_killed_worker(tmp_path, short_scenario, reference, dask_cluster):
    """Against a running scheduler, kill one of its two workers mid-calibration: it finishes,
    and finished generations and the posterior are those of the undisturbed calibration."""
    address, procs = dask_cluster
    db = tmp_path / "faulty.db"
    args = ["--scenario", str(short_scenario), *COMMON, "--generations", "2", "--db", str(db),
            "--scheduler", address]
    proc = _start_and_wait_for_first_generation(args, db)
    victim = procs["worker1"]
    assert victim.poll() is None
    victim.kill()  # SIGKILL while generation 1 is being sampled
    victim.wait()
    _, stderr = proc.communicate(timeout=COLD_WAIT)
    assert proc.returncode == 0, stderr
    assert _generations_in(db) == 2
    with sqlite3.connect(db) as con, sqlite3.connect(reference) as ref:
        q = ("SELECT p.t, m.m, pa.w, par.name, par.value FROM particles pa "
             "JOIN models m ON pa.model_id = m.id JOIN populations p ON m.population_id = p.id "
             "JOIN parameters par ON par.particle_id = pa.id WHERE p.t >= 0 "
             "ORDER BY p.t, pa.id, par.name")
        assert con.execute(q).fetchall() == ref.execute(q).fetchall()
    pd.testing.assert_frame_equal(_posterior(db), _posterior(reference))


# --------------------------------------------------------------------------------------------
# the baseline runs with the shipped posterior


def _medoid_of_best_rule(path: Path) -> tuple[str | None, dict[str, float]]:
    """The posterior's weighted medoid in the priors' unit cube, among the particles carrying
    half the weight, computed here by brute force."""
    df = pd.read_csv(path, comment=None, skiprows=1)
    w = df.pop("weight")
    rule = None
    if "rule" in df.columns:
        rule = w.groupby(df["rule"]).sum().idxmax()
        keep = df["rule"] == rule
        df, w = df[keep].drop(columns="rule").reset_index(drop=True), w[keep].reset_index(drop=True)
    w = (w / w.sum()).to_numpy()
    priors = {p.name: p for p in load_priors()}
    names = [c for c in df.columns if not c.startswith("lever.")]
    u = []
    for c in names:
        x, p = df[c].to_numpy(), priors[c]
        if p.distribution == "uniform":
            u.append((x - p.low) / (p.high - p.low))
        else:
            u.append(np.log(x / p.low) / np.log(p.high / p.low))
    u = np.array(u).T
    # candidates: the heaviest particles until half the weight is reached, and any as heavy
    # as the last of them
    heavy, acc = [], 0.0
    for i in sorted(range(len(w)), key=lambda i: -w[i]):
        if acc >= 0.5 * w.sum() and w[i] < w[heavy[-1]]:
            break
        heavy.append(i)
        acc += w[i]
    best, best_cost = 0, np.inf
    for i in sorted(heavy):
        cost = sum(w[j] * np.sqrt(np.sum((u[j] - u[i]) ** 2)) for j in range(len(u)))
        if cost < best_cost - 1e-12:
            best, best_cost = i, cost
    return rule, {c: float(df[c].iloc[best]) for c in df.columns}


def test_weighted_medoid_is_a_particle_where_the_mass_is():
    from talbuk.calibration.params import Prior, weighted_medoid

    # particles on a quarter circle: their mean lies inside the arc, where no particle is
    a = np.linspace(0.0, np.pi / 2, 9)
    parts = pd.DataFrame({"x": 0.1 + 0.8 * np.cos(a), "y": 0.1 + 0.8 * np.sin(a)})
    priors = [Prior("x", "uniform", 0.0, 1.0), Prior("y", "uniform", 0.0, 1.0)]
    w = np.full(9, 1 / 9)
    assert weighted_medoid(parts, w, ["x", "y"], priors) == 4  # the middle of the arc
    w2 = np.array([0.6] + [0.05] * 8)  # most weight on the first particle pulls the medoid there
    assert weighted_medoid(parts, w2, ["x", "y"], priors) == 0
    # a light particle at the centre of a ring is closest to everyone, but not where the mass is
    b = np.linspace(0.0, 2 * np.pi, 12, endpoint=False)
    ring = pd.DataFrame({"x": np.append(0.5 + 0.4 * np.cos(b), 0.5), "y": np.append(0.5 + 0.4 * np.sin(b), 0.5)})
    w3 = np.append(np.full(12, 0.99 / 12), 0.01)
    assert weighted_medoid(ring, w3, ["x", "y"], priors, mass=1.0) == 12  # unrestricted: the centre
    assert weighted_medoid(ring, w3, ["x", "y"], priors) < 12  # a particle on the ring
    # the unit cube: cdf inverts ppf, on the log scale for log-uniform priors
    q = np.array([0.0, 0.25, 0.5, 1.0])
    for p in (Prior("z", "loguniform", 0.001, 0.1), Prior("v", "uniform", -1.0, 3.0)):
        np.testing.assert_allclose(p.cdf(p.ppf(q)), q, atol=1e-12)
    assert Prior("z", "loguniform", 0.001, 0.1).cdf(0.01) == pytest.approx(0.5)


def test_the_shipped_posterior_applies_at_load(tmp_path):
    from talbuk.calibration.params import default_posterior_path, theta_of
    from talbuk.scenario import load_scenario, scenario_from_toml

    path = default_posterior_path()
    rule, mean = _medoid_of_best_rule(path)
    plain = tmp_path / "plain.toml"
    plain.write_text('name = "plain"\nextends = "baseline"\nposterior = "none"\n')
    cal = tmp_path / "cal.toml"
    cal.write_text('name = "cal"\nextends = "baseline"\nposterior = "shipped"\n')
    raw, base = load_scenario(str(plain)), load_scenario(str(cal))
    assert raw.posterior_info is None
    info = base.posterior_info
    assert info is not None and Path(info["path"]) == path
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    priors = load_priors()
    got, before = theta_of(base, priors), theta_of(raw, priors)
    for name, value in mean.items():
        if name.startswith("lever."):  # lever points are not applied at load (see scenario.py)
            assert name in info["levers_not_applied"] and got[name] == before[name]
        else:
            assert got[name] == pytest.approx(value, rel=1e-12), name
    assert got != before
    if rule is not None:
        assert base.decision_rule == rule
    # a scenario that extends it inherits the values; its own override wins
    child = tmp_path / "child.toml"
    child.write_text('name = "child"\nextends = "cal.toml"\n[params.decision]\nhazard = 0.05\n')
    c = theta_of(load_scenario(str(child)), priors)
    assert c["decision.hazard"] == 0.05
    assert all(c[k] == pytest.approx(got[k]) for k in got if k != "decision.hazard")
    off_child = tmp_path / "off.toml"
    off_child.write_text('name = "off"\nextends = "cal.toml"\nposterior = "none"\n')
    assert theta_of(load_scenario(str(off_child)), priors) == before
    # the resolved TOML holds the applied values and does not apply them twice
    again = scenario_from_toml(base.to_toml())
    assert again == base and again.posterior_info is None
    assert again.to_toml() == base.to_toml()


def test_a_bad_posterior_setting_names_the_file_and_key(tmp_path):
    from talbuk.scenario import ScenarioError, load_scenario

    p = tmp_path / "s.toml"
    p.write_text('name = "s"\nextends = "baseline"\nposterior = "missing.csv"\n')
    with pytest.raises(ScenarioError) as e:
        load_scenario(str(p))
    assert e.value.file == str(p) and e.value.key == "posterior" and "missing.csv" in str(e.value)


def test_manifest_records_the_posterior(tmp_path, short_scenario):
    from talbuk.calibration.params import default_posterior_path
    from talbuk.results import Results
    from talbuk.sim import Sim

    with_post = tmp_path / "with.toml"
    with_post.write_text('name = "w"\nextends = "baseline"\nend = "1990-03"\nposterior = "shipped"\n')
    sim = Sim(str(with_post), scale=50000, seed=1, threads=1)
    sim.run()
    m = Results.from_sim(sim).manifest
    assert m["posterior"]["sha256"] == hashlib.sha256(default_posterior_path().read_bytes()).hexdigest()
    assert m["posterior"]["point"].startswith("weighted medoid")
    assert m["posterior"]["values"]["decision.hazard"] == sim.scenario.params["decision"].hazard
    off = tmp_path / "off.toml"
    off.write_text('name = "o"\nextends = "baseline"\nend = "1990-03"\nposterior = "none"\n')
    sim = Sim(str(off), scale=50000, seed=1, threads=1)
    sim.run()
    assert "posterior" not in Results.from_sim(sim).manifest


def test_kernel_stays_positive_when_the_weights_collapse():
    """One particle carrying nearly all the weight (as in a 21-parameter calibration with 40
    particles) made pyabc's kernel singular: a proposal off its subspace got density 0 and
    weight infinity, and the run stopped on a weight sum of NaN. The floored kernel keeps every
    density positive and at least KERNEL_FLOOR wide in each direction."""
    import pyabc

    from talbuk.calibration.abc import KERNEL_FLOOR, FlooredTransition, effective_sample_size

    rng = np.random.default_rng(0)
    d = 21
    X = pd.DataFrame(rng.uniform(size=(40, d)), columns=[f"p{i}" for i in range(d)])
    w = np.zeros(40)
    w[:3] = (0.5, 0.3, 0.2)  # three particles carry the weight: a kernel of rank 2 in 21 dimensions
    assert effective_sample_size(w) == pytest.approx(1 / 0.38)
    plain = pyabc.MultivariateNormalTransition()
    plain.fit(X, w)
    floored = FlooredTransition()
    floored.fit(X, w)
    x = X.iloc[0].to_numpy() + 0.01  # close to the heavy particle, off the kernel's subspace
    point = pd.Series(x, index=X.columns)
    assert plain.pdf(point) == 0.0  # the failure: density 0, weight infinity
    assert floored.pdf(point) > 0.0
    assert np.all(np.diag(floored.cov) >= KERNEL_FLOOR ** 2)
