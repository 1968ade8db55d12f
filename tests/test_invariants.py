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
