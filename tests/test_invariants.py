"""Invariant checks (issue 8): people, stage flows and money are accounted for, and each check
fails when the state is changed behind the model's back (negative controls)."""

from __future__ import annotations

import numpy as np
import pytest

from talbuk.checks import InvariantError, check_invariants, check_members
from talbuk.modules import journey as journey_mod
from talbuk.sim import Sim
from talbuk.state import ARRIVED, CROSSING, DETAINED, IN_CHINA, PREPARING, RESIDENT


def _sim(**kw) -> Sim:
    return Sim("baseline", scale=kw.pop("scale", 3000), seed=kw.pop("seed", 11), threads=1, checks=True, **kw)


def _step_to(sim: Sim, year: int) -> None:
    while not sim.done and sim.month < (year - 1900) * 12:
        sim.step()


def test_whole_run_keeps_every_invariant():
    """1990-2025 with checks on every month: people, stage flows, the mean-field mass, money."""
    sim = _sim()
    sim.run()
    j = next(m for m in sim.modules if m.name == "journey")
    # the flows saw real traffic in every stage, so the identities were not vacuous
    for st in (PREPARING, IN_CHINA, ARRIVED):
        assert j.flows[:, st].sum() > 0
    assert j.flows[IN_CHINA, :].sum() > 0
    lb = next(m for m in sim.modules if m.name == "left_behind")
    assert lb.remitted_usd_total > 0 and lb.fined_total.sum() > 0


def test_stage_changed_behind_the_journey_is_caught():
    sim = _sim()
    _step_to(sim, 2005)
    p = sim.persons
    resident = np.flatnonzero(p.stage[: p.n] == RESIDENT)[0]
    p.stage[resident] = IN_CHINA  # nobody recorded this crossing
    with pytest.raises(InvariantError, match="in_china holds"):
        check_invariants(sim)


def test_flows_out_of_step_are_caught():
    sim = _sim()
    _step_to(sim, 2005)
    j = next(m for m in sim.modules if m.name == "journey")
    j.flows[PREPARING, IN_CHINA] += 1  # a transition recorded that never happened
    with pytest.raises(InvariantError, match="entries - exits"):
        check_invariants(sim)


def test_mean_field_leak_is_caught():
    sim = _sim()
    _step_to(sim, 2003)
    j = next(m for m in sim.modules if m.name == "journey")
    j.mf[0, 0] += 0.5  # expected people out of nowhere
    with pytest.raises(InvariantError, match="mean-field"):
        check_invariants(sim)


def test_money_created_in_a_transfer_is_caught(monkeypatch):
    """Remittances that add more to savings than they record as sent break conservation."""
    real = journey_mod._remit.py_func

    def leaky(*args):
        sent, n_hh = real(*args)
        hh_usd = args[10]
        if n_hh:
            hh_usd[0] += 1.0  # a dollar from nowhere
        return sent, n_hh

    monkeypatch.setattr(journey_mod, "_remit", leaky)
    sim = _sim()
    with pytest.raises(InvariantError, match="savings in USD"):
        sim.run()


def _in_country(p) -> np.ndarray:
    return (p.stage == RESIDENT) | (p.stage == PREPARING) | (p.stage == CROSSING) | (p.stage == DETAINED)


def test_member_counts_are_kept_not_recounted():
    """``households.members`` is kept by the modules that move people (demography: deaths,
    births, new households; journey: leaving and coming back, applied at the month's end), not
    recounted. A stage written by hand leaves the counts stale, which the check after the next
    demography phase catches; :meth:`Sim.recount_members` repairs them."""
    sim = _sim()
    _step_to(sim, 2004)
    p = sim.persons
    recount = np.bincount(p.household[_in_country(p)], minlength=sim.households.n)
    assert np.array_equal(recount, sim.households.members.astype(np.int64))
    j = next(m for m in sim.modules if m.name == "journey")
    assert j.flows[CROSSING, IN_CHINA] > 0  # people did leave the country: the counts moved
    resident = np.flatnonzero(p.stage[: p.n] == RESIDENT)[0]
    p.stage[resident] = ARRIVED  # behind the modules' back
    with pytest.raises(InvariantError, match="member counts"):
        sim.step()
    sim2 = _sim()
    _step_to(sim2, 2004)
    sim2.persons.stage[resident] = ARRIVED
    sim2.recount_members()
    check_members(sim2, int(_in_country(sim2.persons).sum()))


def test_reorder_drops_the_dead_and_sorts_by_household():
    """Each January :meth:`Sim.reorder` drops the dead (but not those the journey has a
    record of, whom the defectors table describes) and puts every household's members together, in their previous order; uids
    travel with the people and the invariants (checked every month) still hold."""
    sim = _sim()
    _step_to(sim, 2003)  # 1990-01 .. 2002-12, reordered each January from 1991
    dropped_before = sim.removed_dead
    p = sim.persons
    j = next(m for m in sim.modules if m.name == "journey")
    uid_before = p.uid.copy()
    dead_before = int((p.stage == 8).sum())
    described = np.zeros(p.n, bool)
    described[j.rec_person[: j.n_rec]] = True
    dead_kept = int(((p.stage == 8) & described).sum())
    assert dead_before > dead_kept  # people died in 2002: there is something to drop
    sim.reorder()  # what the step of January 2003 does first
    assert sim.removed_dead - dropped_before == dead_before - dead_kept
    assert np.all(np.diff(p.household) >= 0)
    assert int((p.stage == 8).sum()) == dead_kept
    assert np.all(np.isin(p.uid, uid_before)) and np.unique(p.uid).size == p.n
    # the journey's records still point at the people they describe
    df = j.finish_tables(sim)["defectors"]
    rows = sim.index_of(df["uid"].to_numpy())
    assert np.all(rows >= 0) and np.all(p.flags[rows] & 8)
    assert np.array_equal(rows, j.rec_person[: j.n_rec])
    sim.run(until=sim.t_index + 14)  # and the run goes on, invariants checked every month


def test_reorder_moves_people_not_what_happens_to_them():
    """The same run with and without reordering: each person (found by uid) has the same
    life over the first years; the reordering changes only the rounding of national float sums
    (formed in chunks of the table), which can make the two runs part later."""
    runs = []
    for every in (12, 0):
        sim = _sim(scale=5000, reorder_every=every)
        _step_to(sim, 1996)
        runs.append(sim)
    a, b = runs
    assert a.removed_dead > 0 and b.removed_dead == 0
    # births of a month are numbered in table order, which the reordering changes: match
    # people by their random key (a hash of the mother's key and the month; unique here)
    ka, kb = a.persons.rng_id.astype(np.int64), b.persons.rng_id.astype(np.int64)
    assert np.unique(kb).size == kb.size
    pos = np.searchsorted(np.sort(ka), kb).clip(0, ka.size - 1)
    alive_a = np.sort(ka)[pos] == kb
    ia = np.argsort(ka, kind="stable")[pos]
    # everyone not dropped by the reordering is found, and everyone dropped was dead
    assert np.all(b.persons.stage[~alive_a] == 8)
    assert a.next_uid == b.next_uid and alive_a.sum() == a.persons.n
    for f in ("birth_month", "sex", "stage", "stage_month", "resistance", "hunger",
              "flags", "rng_id", "market_skill", "media_exposure", "grievance", "desire"):
        assert np.array_equal(getattr(a.persons, f)[ia[alive_a]], getattr(b.persons, f)[alive_a]), f
    for k in ("population", "births", "deaths", "excess_deaths", "trading_share"):
        assert np.allclose(a.monthly[k], b.monthly[k], rtol=1e-9, atol=0), k
