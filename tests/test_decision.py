"""Tests of the decision to leave (modules/decision.py)."""

from __future__ import annotations

import numpy as np
import pytest

from talbuk import Sim
from talbuk.state import F_DECIDED, RESIDENT
from tests.helpers import months_to, scenario_file

SCALE = 1000  # about 20,000 agents


_scenario = scenario_file
_months_to = months_to

def _decisions(sim) -> dict[str, np.ndarray]:
    chunks = sim.tables.get("decisions", [])
    if not chunks:
        return {}
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


@pytest.mark.parametrize("rule", ["threshold", "utility", "planned"])
def test_each_rule_decides_and_records_push_pull(tmp_path, rule):
    # hazard raised tenfold so a short small run gives enough decisions to check
    sim = Sim(_scenario(tmp_path, f'decision_rule = "{rule}"\n[params.decision]\nhazard = 0.2\n'),
              scale=SCALE, seed=2)
    sim.run(until=_months_to(1996))
    d = _decisions(sim)
    assert d and d["uid"].size > 20
    assert np.all(d["rule"] == {"threshold": 0, "utility": 1, "planned": 2}[rule])
    assert d["push"].dtype == np.float32 and d["pull"].dtype == np.float32
    assert np.all(np.isfinite(d["push"])) and np.all(np.isfinite(d["pull"]))
    assert np.all(d["push"] >= 0) and np.any(d["push"] > 0)
    # the pushed and pulled counts add up to all decisions, in people
    m = sim.monthly
    assert np.allclose(m["decisions_pushed"] + m["decisions_pulled"], m["decisions"])
    assert m["decisions"].sum() == d["uid"].size * sim.scale
    # deciders are flagged and handed to the journey (or already moved on by it)
    rows = sim.index_of(d["uid"])  # the table is reordered each January: find them by uid
    assert np.all(rows >= 0) and np.all(sim.persons.flags[rows] & F_DECIDED)
    # expected flow is of the same order as the sampled one (Poisson noise on > 20 events)
    ratio = m["decisions"].sum() / m["expected_decisions"].sum()
    assert 0.6 < ratio < 1.6


def test_decider_interface(tmp_path):
    sim = Sim(_scenario(tmp_path, "[params.decision]\nhazard = 0.2\n"), scale=SCALE, seed=2)
    sim.run(until=_months_to(1996))
    d = _decisions(sim)
    assert d["uid"].dtype == np.int64 and d["month"].dtype == np.int32
    assert d["risk"].dtype == np.float32 and d["rule"].dtype == np.uint8
    assert np.all(d["month"] >= sim.start_month) and np.all(d["month"] < sim.month)
    assert isinstance(sim.shared["expected_decisions"], float)
    assert sim.shared["expected_decisions_female"] <= sim.shared["expected_decisions"]
    # deciders are flagged for good; most of last month's are still in the pipeline (the
    # journey may already have sent a few back home, having given up)
    uids = sim.index_of(d["uid"])  # rows in the table now (it is reordered each January)
    assert np.all(uids >= 0) and np.all(sim.persons.flags[uids] & F_DECIDED)
    last = uids[d["month"] == sim.month - 1]
    if last.size:
        assert np.mean(sim.persons.stage[last] != RESIDENT) > 0.5


def test_higher_border_security_lowers_decisions(tmp_path):
    base = _scenario(tmp_path, "", "base")
    closed = _scenario(tmp_path, """
[timeline.border_security]
points = [{ date = "1990-01", value = 0.9, source = "test" }, { date = "2025-12", value = 0.9, source = "test" }]
""", "closed")
    n = _months_to(1996)
    e_open = Sim(base, scale=SCALE, seed=4).run(until=n).monthly["expected_decisions"].sum()
    e_closed = Sim(closed, scale=SCALE, seed=4).run(until=n).monthly["expected_decisions"].sum()
    # border 0.15 -> 0.9 adds about 0.9 to perceived risk: far fewer decisions (expected flow,
    # which has no sampling noise given the same people)
    assert e_closed < 0.5 * e_open


def test_female_hazard_scales_womens_chance_only(tmp_path):
    # the first months of decisions, before any decision has changed anyone: with the same
    # people, women's expected decisions scale by female_hazard and men's do not move
    n = _months_to(1991)
    out = []
    for f in (1.0, 3.0):
        sc = _scenario(tmp_path, f"[params.decision]\nfemale_hazard = {f}\n", f"f{f:g}")
        m = Sim(sc, scale=SCALE, seed=4).run(until=n).monthly
        first = int(np.flatnonzero(m["expected_decisions"] > 0)[0])
        fem = m["expected_decisions_female"][first]
        out.append((fem, m["expected_decisions"][first] - fem))
    (f1, m1), (f3, m3) = out
    assert f1 > 0 and m1 > 0
    assert f3 == pytest.approx(3.0 * f1, rel=1e-5)
    assert m3 == pytest.approx(m1, rel=1e-9)


def test_same_result_with_one_and_two_threads():
    n = _months_to(1997)
    out = []
    for threads in (1, 2):
        sim = Sim("baseline", scale=SCALE, seed=7, threads=threads)
        sim.run(until=n)
        out.append((sim, _decisions(sim)))
    (a, da), (b, db) = out
    assert da["uid"].size > 0
    for k in da:
        assert np.array_equal(da[k], db[k])
    for f in ("media_exposure", "desire", "grievance", "legitimacy", "fear", "flags", "stage"):
        assert np.array_equal(getattr(a.persons, f), getattr(b.persons, f))
    assert np.array_equal(a.monthly["expected_decisions"], b.monthly["expected_decisions"])


def test_chunks_with_more_deciders_than_their_buffer_row_are_found_again(tmp_path):
    """Each chunk of people records its first deciders in a small row of a buffer; a chunk
    with more is scanned again after the kernel. With rows of one decider the decisions
    table (push, pull and risk included) and the people are the same as with the default."""
    sc = _scenario(tmp_path, "[params.decision]\nhazard = 0.2\n")
    out = []
    for cap in (1, None):
        sim = Sim(sc, scale=SCALE, seed=5, reorder_every=0)
        dec = next(m for m in sim.modules if m.name == "decision")
        if cap is not None:
            dec.buffer_per_chunk = cap
        sim.run(until=_months_to(1996))
        out.append((sim, _decisions(sim), dec.buffer_per_chunk))
    (a, da, grown), (b, db, default) = out
    assert grown > 1  # some chunk had more than one decider in a month: the path was taken
    assert da["uid"].size > 20
    for k in da:
        assert np.array_equal(da[k], db[k]), k
    for f in ("stage", "flags", "traits"):
        assert np.array_equal(getattr(a.persons, f), getattr(b.persons, f))
