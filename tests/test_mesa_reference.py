"""The Mesa reference implementation (benchmarks/mesa_reference) agrees with talbuk.

Both run the baseline scenario, 1990-2000, at scale 20,000 (about 1,000 agents), from the
same synthetic population per seed: the Mesa model with 4 seeds (about 10 s each), talbuk with
8 (well under a second each). Random draws differ between the two, so agreement is tested in
distribution (benchmarks/mesa_reference/agreement.py: pooled two-sample t-tests, Bonferroni
over each family of checks, family-wise level 1%). A negative control shows the test can
fail: talbuk with one parameter deliberately changed is told apart from the Mesa runs.
"""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("mesa")
pytest.importorskip("scipy")

from benchmarks.mesa_reference import TalbukMesa  # noqa: E402
from benchmarks.mesa_reference.agreement import DEFAULT_CHECKS, compare, report  # noqa: E402
from talbuk.calibration.params import apply_params  # noqa: E402
from talbuk.scenario import load_scenario  # noqa: E402
from talbuk.sim import Sim  # noqa: E402

SCALE = 20000  # about 1,000 agents: the four Mesa runs take about 45 s on a loaded 2-core machine
END = "2000-12"  # the famine and the rise of markets; arrivals are still few
MESA_SEEDS = (1, 2, 3, 4)
TALBUK_SEEDS = tuple(range(1, 9))
# Per-year checks (a second family, Bonferroni over its 22 checks)
ANNUAL_CHECKS = tuple((out, y, y, how) for out, how in (("deaths", "sum"), ("trading_share", "mean"))
                      for y in range(1990, 2001))


def _scenario(theta: dict | None = None):
    sc = dataclasses.replace(load_scenario("baseline"), end=END)
    return apply_params(sc, theta) if theta else sc


def _talbuk_runs(theta: dict | None = None):
    sc = _scenario(theta)
    return [Sim(sc, scale=SCALE, seed=s, threads=1).run().annual for s in TALBUK_SEEDS]


@pytest.fixture(scope="module")
def mesa_runs():
    sc = _scenario()
    return [TalbukMesa(sc, scale=SCALE, seed=s).run() for s in MESA_SEEDS]


@pytest.fixture(scope="module")
def talbuk_runs():
    return _talbuk_runs()


def test_same_starting_population():
    sc = _scenario()
    mesa = TalbukMesa(sc, scale=SCALE, seed=3)
    sim = Sim(sc, scale=SCALE, seed=3, threads=1)
    assert len(mesa.persons) == sim.persons.n
    assert len(mesa.households_set) == sim.households.n
    assert sum(a.sex for a in mesa.persons) == int(sim.persons.sex.sum())


def test_mesa_agrees_with_talbuk(mesa_runs, talbuk_runs):
    results = compare(mesa_runs, talbuk_runs, DEFAULT_CHECKS)
    failed = [r.name for r in results if not r.passed]
    assert not failed, "Mesa and talbuk differ:\n" + report(results)
    annual = compare(mesa_runs, talbuk_runs, ANNUAL_CHECKS)
    failed = [r.name for r in annual if not r.passed]
    assert not failed, "Mesa and talbuk differ by year:\n" + report(annual)


@pytest.mark.parametrize(("theta", "detected"), [
    # hunger turned into more excess deaths (1.6 -> 2.4): about +40% excess deaths
    ({"economy.hunger_severity": 2.4}, "excess_deaths sum 1993-2000"),
    # markets entered at 40% of the rate: trading share about 0.27 instead of 0.46
    ({"economy.entry_base": 0.008}, "trading_share mean 1993-2000"),
])
def test_negative_control_is_detected(mesa_runs, theta, detected):
    changed = _talbuk_runs(theta)
    results = {r.name: r for r in compare(mesa_runs, changed, DEFAULT_CHECKS)}
    assert not results[detected].passed, report(list(results.values()))
