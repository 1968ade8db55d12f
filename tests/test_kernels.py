"""The speed work must not change results: range-split sums equal one-range sums, and the
parallel paths give the same state as one thread (the decision module's packed household
inputs, the media watcher counts by ranges of people, the economy's fix-up of household sums
by ranges of households; the other range splits, among them the demography's member counts,
measured no faster and were not kept)."""

from __future__ import annotations

import numpy as np
import pytest

import talbuk.sim as sim_module
from talbuk.modules import decision as dm
from talbuk.modules import information as im
from talbuk.sim import Sim
from talbuk.state import F_MEDIA_EVER, H_KIN_SOUTH

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
    one = np.zeros((hh.n, 3), dtype=np.float32)
    dm._household_inputs(hh.flags, hh.members, hh.kin_tie, 0, hh.n, one)
    three = np.zeros((hh.n, 3), dtype=np.float32)
    for lo, hi in _ranges(hh.n, 3):
        dm._household_inputs(hh.flags, hh.members, hh.kin_tie, lo, hi, three)
    np.testing.assert_array_equal(one, three)
    assert set(np.unique(one[:, 0])) <= {0.0, 0.5, 1.0}  # ties do not fade in the baseline
    assert one[:, 1].max() == 1.0 and one[:, 1].min() == 0.0
    south = (hh.flags & H_KIN_SOUTH) != 0
    np.testing.assert_array_equal(one[:, 2], south.astype(np.float32))


@pytest.mark.parametrize("k", [1, 2, 5])
def test_media_household_counts_by_ranges_of_people(sim_8y, k):
    p, hh = sim_8y.persons, sim_8y.households
    flags, exposure = p.flags.copy(), p.media_exposure.copy()
    flags[::3] |= F_MEDIA_EVER  # watchers (few have watched by 1998)
    exposure[::2] = 0.1
    args = (np.int64(sim_8y.month), p.stage, p.birth_month, flags, p.household, exposure,
            np.float32(0.05))
    watch, n10 = np.zeros(hh.n, dtype=np.int32), np.zeros(hh.n, dtype=np.int32)
    im._scatter_households(*args, watch, n10)
    watch_k, n10_k = np.full(hh.n, 9, dtype=np.int32), np.full(hh.n, 9, dtype=np.int32)
    partial = np.full((2, k - 1, hh.n + 5), 3, dtype=np.int16)  # stale counts must be cleared
    im._scatter_households_par(*args, watch_k, n10_k, np.linspace(0, p.n, k + 1).astype(np.int64),
                               partial, sim_8y.chunk_bounds(hh.n))
    np.testing.assert_array_equal(watch, watch_k)
    np.testing.assert_array_equal(n10, n10_k)
    assert watch.sum() > 0 and n10.sum() > watch.sum()


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
