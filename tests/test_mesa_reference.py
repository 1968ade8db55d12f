"""The Mesa reference implementation (benchmarks/mesa_reference) agrees with talbuk.

Both run the baseline scenario, 1990-2000, at scale 20,000 (about 1,000 agents), from the
same synthetic population per seed: the Mesa model with 4 seeds (about 10 s each), talbuk with
24 (well under a second each). Random draws differ between the two, so agreement is tested in
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
# talbuk runs are cheap (well under a second each): 24 seeds pin down its distribution, which
# matters for the expected arrivals. At about 1,000 agents these depend on whether a sampled
# preparer exists to update the mean field's fallback ratio, so they are heavy-tailed: over 40
# talbuk seeds 390-7,810 people for 1990-2000 (mean 1,809, sd 1,224), and 8 seeds can by
# chance sit tightly together.
TALBUK_SEEDS = tuple(range(1, 25))
# Per-year checks (a second family, Bonferroni over its 22 checks)
ANNUAL_CHECKS = tuple((out, y, y, how) for out, how in (("deaths", "sum"), ("trading_share", "mean"))
                      for y in range(1990, 2001))


def _scenario(theta: dict | None = None):
    sc = dataclasses.replace(load_scenario("baseline"), end=END)
    return apply_params(sc, theta) if theta else sc


def _talbuk_runs(theta: dict | None = None, seeds=TALBUK_SEEDS):
    sc = _scenario(theta)
    return [Sim(sc, scale=SCALE, seed=s, threads=1).run().annual for s in seeds]


@pytest.fixture(scope="module")
def mesa_runs():
    sc = _scenario()
    return [TalbukMesa(sc, scale=SCALE, seed=s).run() for s in MESA_SEEDS]


@pytest.fixture(scope="module")
def talbuk_runs():
    return _talbuk_runs()


# One month from the same state: talbuk is run to a month, the Mesa model is built from its
# exact state (TalbukMesa.from_sim), and both run that month's phases. Deaths (Exp(1)
# thresholds), the attitudes, the media adoption, the expected decisions and the expected
# arrivals are then
# deterministic functions of the state and must agree to rounding (talbuk computes in float32);
# births and household splits are random, and shift population-based shares a little.
ONE_MONTH_TOLERANCE = {  # output: relative tolerance
    "deaths": 1e-9, "excess_deaths": 1e-5, "media_ever_share": 1e-6, "mean_grievance": 1e-4,
    # random births (a few agents in 5,000) change the denominators; a random household
    # split moves a woman to a household of her own, with its own food (one hungry woman
    # moves mean hunger by about 0.3% at this scale); one household is about 0.1% of the
    # households (and its people of the people) at this scale, and the Mesa model's random
    # births and splits (Python's generator, in its agents' order) can move two or three:
    # 1e-3 failed at 1997-03 once the person table was reordered each January (0.18% and
    # 0.27%), which changed the order the Mesa model copies its agents in
    "hunger_mean": 0.01, "trading_share": 4e-3,
    # pds_share is not compared after the demography's random events: the PDS's triage cut
    # falls within a bin of household scores, and a birth or a split on one side but not the
    # other moved it by 0.82% at 2009-06 on the baseline of calibration 21 (seed 2; 0.04-0.22%
    # on seeds 1 and 3-5). test_the_economy_alone_agrees compares it, from the same state,
    # without them: exactly.
    # who becomes a trader this month is drawn at random, and traders desire more
    # (attitudes.desire_trader): in the famine months many households enter the markets
    "mean_desire": 1e-3, "expected_decisions": 0.01,
    # the journey's mean-field copy: this month's expected arrivals leave the expected
    # transit stock carried from earlier months (copied), not this month's decisions
    "arrivals_expected": 1e-6,
}
ONE_MONTH_PHASES = ("demography", "economy", "information", "attitudes", "decision", "journey")


def _one_month(month: str, theta: dict | None = None, phases=ONE_MONTH_PHASES,
               outputs=tuple(ONE_MONTH_TOLERANCE)):
    from talbuk.calendar import parse_month

    sim = Sim("baseline", scale=5000, seed=2, threads=1)
    k = parse_month(month) - sim.start_month
    sim.run(until=k)
    sim.levers["media_crackdown"][:] = 0.0  # no raids: media adoption becomes deterministic
    sc = apply_params(sim.scenario, theta) if theta else sim.scenario
    model = TalbukMesa(sc, scale=sim.scale, seed=sim.seed, state=sim)
    model.levers["media_crackdown"][:] = 0.0
    by_name = {m.name: m for m in sim.modules}
    for phase in phases:
        by_name[phase].step(sim)
        getattr(model, phase)()
    return {n: (float(sim.monthly[n][k]), float(model.monthly[n][k])) for n in outputs}


@pytest.mark.parametrize("month", ["1997-03", "2009-06"])
def test_the_economy_alone_agrees(month):
    """The economy's month from the same state, without the demography's random events
    before it: rations, trading and hunger agree to rounding (hunger is float32 in talbuk)."""
    values = _one_month(month, phases=("economy",),
                        outputs=("pds_share", "trading_share", "hunger_mean"))
    assert values["pds_share"][0] > 0 and values["trading_share"][0] > 0
    bad = {n: v for n, v in values.items() if abs(v[1] - v[0]) > 1e-6 * max(abs(v[0]), 1e-12)}
    assert not bad, f"(talbuk, Mesa) differ in {month}: {bad}"


@pytest.mark.parametrize("month", ["1997-03", "2009-06"])
def test_one_month_from_the_same_state_agrees(month):
    values = _one_month(month)
    bad = {n: v for n, v in values.items()
           if abs(v[1] - v[0]) > ONE_MONTH_TOLERANCE[n] * max(abs(v[0]), 1e-12)}
    assert values["deaths"][0] > 0 and values["expected_decisions"][0] > 0
    assert values["arrivals_expected"][0] > 0
    assert not bad, f"(talbuk, Mesa) differ in {month}: {bad}"


def test_one_month_negative_control():
    """A 10% change of one parameter in the Mesa model shows in the output it drives."""
    hazard = load_scenario("baseline").params["decision"].hazard
    values = _one_month("2009-06", {"decision.hazard": 1.1 * hazard})
    talbuk, mesa = values["expected_decisions"]
    base_t, base_m = _one_month("2009-06")["expected_decisions"]
    assert base_t == talbuk  # talbuk's own run is the same: only the Mesa model was changed
    # 10% more, far beyond the tolerance of 1%; measured against the two models' ratio
    # without the change (1.003 on the baseline of calibration 21: the demography's random
    # events of the month differ between them)
    assert abs((mesa / talbuk) / (base_m / base_t) - 1.1) < 1e-3


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


@pytest.mark.parametrize(("name", "factor", "detected"), [
    # hunger turned into more excess deaths (x1.5): about +40% excess deaths
    ("economy.hunger_severity", 1.5, "excess_deaths sum 1993-2000"),
    # markets entered at 40% of the rate: trading share about 0.27 instead of 0.46
    ("economy.entry_base", 0.4, "trading_share mean 1993-2000"),
])
def test_negative_control_is_detected(mesa_runs, name, factor, detected):
    module, key = name.split(".")
    base = getattr(load_scenario("baseline").params[module], key)
    changed = _talbuk_runs({name: factor * base}, seeds=TALBUK_SEEDS[:8])  # large effects
    results = {r.name: r for r in compare(mesa_runs, changed, DEFAULT_CHECKS)}
    assert not results[detected].passed, report(list(results.values()))


LONG_CHECKS = (
    ("deaths", 1990, 2019, "sum"),
    ("excess_deaths", 1993, 2000, "sum"),
    ("trading_share", 2001, 2019, "mean"),
    ("media_ever_share", 2010, 2010, "mean"),
    ("mean_desire", 2000, 2019, "mean"),
    ("expected_decisions", 2000, 2019, "sum"),
    ("arrivals_expected", 2000, 2019, "sum"),
)


@pytest.mark.fullscale
def test_mesa_agrees_with_talbuk_1990_2019():
    """The markets, foreign media and the arrivals of the 2000s and 2010s (about 2,000
    agents, 4 Mesa runs of 1-2 minutes each)."""
    sc = dataclasses.replace(load_scenario("baseline"), end="2019-12")
    mesa = [TalbukMesa(sc, scale=10000, seed=s).run() for s in MESA_SEEDS]
    talbuk = [Sim(sc, scale=10000, seed=s, threads=1).run().annual for s in TALBUK_SEEDS]
    results = compare(mesa, talbuk, LONG_CHECKS)
    assert all(r.passed for r in results), report(results)


@pytest.mark.parametrize("month", ["2009-06", "2016-06"])
def test_journey_levers_and_broker_credit_ported(month):
    """The Mesa model's journey probabilities from the same state equal talbuk's, with broker
    credit on (a network of some size in 2009, near its full size in 2016) and, in 2016, the
    settled people's onward ramp under way."""
    from talbuk.calendar import parse_month
    from talbuk.modules.journey import P_CREDIT, P_FEE_CROSS, P_FEE_FACTOR, P_SETTLED_ON

    theta = {"journey.broker_credit_usd": 4000.0, "journey.broker_credit_half": 8000.0}
    sc = apply_params(load_scenario("baseline"), theta)
    sim = Sim(sc, scale=5000, seed=2, threads=1)
    sim.run(until=parse_month(month) - sim.start_month)
    journey = next(m for m in sim.modules if m.name == "journey")
    pr = journey.probabilities(sim)
    mesa = TalbukMesa(sc, scale=sim.scale, seed=sim.seed, state=sim)._journey_probabilities()
    assert 0.05 < pr[P_CREDIT] < 1.0
    for key, col in (("credit", P_CREDIT), ("fee_factor", P_FEE_FACTOR), ("fee_cross", P_FEE_CROSS),
                     ("settled_on", P_SETTLED_ON)):
        assert mesa[key] == pytest.approx(pr[col], rel=1e-12), key
