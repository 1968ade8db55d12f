"""The speed work must not change results: range-split sums equal one-range sums, and the
parallel paths give the same state as one thread (the decision module's packed household
inputs; the economy, information and demography range splits of branch `perf` were not
merged: they measured slower)."""

from __future__ import annotations

import numpy as np
import pytest

import talbuk.sim as sim_module
from talbuk.modules import decision as dm
from talbuk.sim import Sim

SCALE = 5000


@pytest.fixture(scope="module")
def sim_8y():
    """Eight years in: births, deaths, new households, movers, traders, media watchers."""
    sim = Sim("baseline", scale=SCALE, seed=11, threads=1)
    sim.run(until=96)
    econ = next(m for m in sim.modules if m.name == "economy")
    assert sim.persons.n > econ.p0  # there are born people
    assert np.any(sim.persons.household[: econ.p0] >= econ.h0)  # and movers
    return sim


def _ranges(n: int, k: int) -> list[tuple[int, int]]:
    b = np.linspace(0, n, k + 1).astype(np.int64)
    return [(int(b[j]), int(b[j + 1])) for j in range(k)]


def test_decision_household_inputs_by_ranges(sim_8y):
    hh = sim_8y.households
    one = np.zeros((hh.n, 2), dtype=np.float32)
    dm._household_inputs(hh.flags, hh.kin_abroad, hh.members, 0, hh.n, one)
    three = np.zeros((hh.n, 2), dtype=np.float32)
    for lo, hi in _ranges(hh.n, 3):
        dm._household_inputs(hh.flags, hh.kin_abroad, hh.members, lo, hi, three)
    np.testing.assert_array_equal(one, three)
    assert set(np.unique(one[:, 0])) <= {0.0, 0.5, 1.0}
    assert one[:, 1].max() == 1.0 and one[:, 1].min() == 0.0


def test_parallel_ranges_same_state_as_one_thread(monkeypatch):
    """With the size threshold at 0 every range-split pass runs on two threads."""
    a = Sim("baseline", scale=SCALE, seed=12, threads=1)
    a.run(until=48)
    monkeypatch.setattr(sim_module, "PARALLEL_MIN_WORK", 0)
    b = Sim("baseline", scale=SCALE, seed=12, threads=2)
    assert b.parts(100, 1).size == 3
    b.run(until=48)
    sa, sb = a.state_arrays(), b.state_arrays()
    sa.pop("meta/phase_seconds")
    sb.pop("meta/phase_seconds")
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
