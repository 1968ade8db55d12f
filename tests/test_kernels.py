"""The speed work must not change results: range-split sums equal one-range sums, and the
parallel paths give the same state as one thread (the decision module's packed household
inputs, the media watcher counts by ranges of people, the media cell counts by ranges of
households, the demography's new households and newborns appended by ranges of the table, the
economy's fix-up of household sums by ranges of households)."""

from __future__ import annotations

import numpy as np
import pytest

import talbuk.sim as sim_module
from talbuk.modules import decision as dm
from talbuk.modules import information as im
from talbuk.sim import Sim, even_bounds
from talbuk.state import (
    F_MEDIA_EVER,
    H_KIN_SOUTH,
    PREPARING,
    RESIDENT,
    column_sums_in_order,
)

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
    nw = np.zeros(hh.n, dtype=np.int32)  # people 10+ plus watchers times WATCH_UNIT
    im._scatter_households(*args, nw)
    nw_k = np.full(hh.n, 9, dtype=np.int32)
    partial = np.full((k - 1, hh.n + 5), 3, dtype=np.int32)  # stale counts must be cleared
    im._scatter_households_par(*args, nw_k, np.linspace(0, p.n, k + 1).astype(np.int64),
                               partial, sim_8y.chunk_bounds(hh.n))
    np.testing.assert_array_equal(nw, nw_k)
    watch, n10 = nw // im.WATCH_UNIT, nw & im.COUNT_MASK
    assert watch.sum() > 0 and n10.sum() > watch.sum() and np.all(watch <= n10)
    # the same as counting person by person
    t = sim_8y.month
    counted = ((p.stage == RESIDENT) | (p.stage == PREPARING)) & (t - p.birth_month >= im.MEDIA_MIN_AGE * 12)
    watching = counted & ((flags & F_MEDIA_EVER) != 0) & (exposure >= np.float32(0.05))
    np.testing.assert_array_equal(n10, np.bincount(p.household[counted], minlength=hh.n))
    np.testing.assert_array_equal(watch, np.bincount(p.household[watching], minlength=hh.n))


def _assert_same_state(a: Sim, b: Sim) -> None:
    """Every array of the two runs' state equal (their phase timings apart)."""
    sa, sb = a.state_arrays(), b.state_arrays()
    sa.pop("meta/phase_seconds")
    sb.pop("meta/phase_seconds")
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


def test_parallel_ranges_same_state_as_one_thread(monkeypatch):
    """With the size threshold at 0 every range-split pass runs on two threads."""
    a = Sim("baseline", scale=SCALE, seed=12, threads=1)
    a.run(until=48)
    monkeypatch.setattr(sim_module, "PARALLEL_MIN_WORK", 0)
    b = Sim("baseline", scale=SCALE, seed=12, threads=2)
    assert b.parts(100, 1).size == 3
    b.run(until=48)
    _assert_same_state(a, b)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_household_cells_by_ranges(sim_8y, k):
    """Cell counts by ranges of households, cells and households in chunks: the same shares,
    searches and catches whatever the ranges (draws keyed by cell or household)."""
    hh = sim_8y.households
    nh = hh.n
    rs = np.random.default_rng(3)
    watch = rs.integers(0, 3, nh).astype(np.int32)
    n10 = (watch + rs.integers(0, 3, nh)).astype(np.int32)
    n_cells = int(sim_8y.cell_province.shape[0])

    def run(parts, hbounds):
        social = np.full(nh, 7.0, dtype=np.float32)  # every row written
        caught = np.full(nh, 7, dtype=np.uint8)
        surv = hh.surveillance.copy()
        kin = np.zeros(n_cells, dtype=np.float32)
        raided = np.zeros(n_cells, dtype=np.uint8)
        im._household_cells(np.int64(sim_8y.month), sim_8y.seed_key, hh.cell, hh.flags,
                            hh.kin_abroad, hh.members, surv, n10 + watch * im.WATCH_UNIT, 0.6,
                            0.5, 0.3, 0.5,
                            np.float32(0.3), social, caught, kin, raided, parts, hbounds)
        return social, caught, surv, kin, raided

    one = run(np.array([0, nh], dtype=np.int64), np.array([0, nh], dtype=np.int64))
    many = run(np.linspace(0, nh, k + 1).astype(np.int64), sim_8y.chunk_bounds(nh))
    for a, b in zip(one, many, strict=True):
        np.testing.assert_array_equal(a, b)
    social, caught, surv, kin, raided = one
    assert raided.sum() > 0 and caught.sum() > 0 and kin.max() > 0
    assert np.all(social[n10 == 0] == 0) and np.all(caught[raided[hh.cell] == 0] == 0)


@pytest.mark.parametrize("chunks,k", [(3, 2), (64, 5), (1000, 1)])
def test_append_households_and_births_by_ranges(sim_8y, chunks, k):
    """New households and newborns appended by ranges of the table at offsets counted first:
    the same rows, uids, rng ids and member counts as one range."""
    from talbuk.modules import demography as dem

    p, hh = sim_8y.persons, sim_8y.households
    n, nh = p.n, hh.n
    rs = np.random.default_rng(5)
    flags = np.zeros(n + 3, dtype=np.uint8)  # a tail that is not a whole word
    who = rs.choice(n, 600, replace=False)
    flags[who[:200]] = 4  # died at home
    flags[who[200:300]] = 2  # found a household
    flags[who[300:400]] = 3  # found one and give birth in it
    flags[who[400:]] = 1  # give birth
    cap_p, cap_h = n + 400, nh + 300

    def grown(a, size):
        out = np.zeros(size, dtype=a.dtype)
        out[: a.shape[0]] = a
        return out

    def run(n_chunks, hparts):
        hcols = [grown(getattr(hh, c)[:nh], cap_h) for c in ("province", "cell", "flags",
                                                               "members")]
        pcols = [grown(getattr(p, c)[:n], cap_p) for c in (
            "uid", "rng_id", "birth_month", "household", "sex", "province", "songbun", "stage",
            "stage_month", "resistance", "legitimacy")]
        scratch = grown(flags, cap_p)
        new = dem._append_households_and_births(
            np.int64(sim_8y.month), sim_8y.seed_key, np.int64(n), np.int64(nh), scratch, 1.05,
            *hcols, np.int64(10**9), *pcols, np.int64(n_chunks), hparts)
        assert not scratch.any()
        return new, hcols, pcols

    one = run(1, np.array([0, nh], dtype=np.int64))
    many = run(chunks, np.linspace(0, nh, k + 1).astype(np.int64))
    assert one[0] == many[0] == (nh + 200, n + 300)
    for a, b in zip(one[1] + one[2], many[1] + many[2], strict=True):
        np.testing.assert_array_equal(a, b)
    uid = one[2][0]
    np.testing.assert_array_equal(uid[n:n + 300], 10**9 + np.arange(300))
    members = one[1][3]
    assert members[nh:nh + 200].min() == 1 and members[nh:nh + 200].max() == 2


@pytest.mark.parametrize("n_groups", [1, 7])
def test_chunk_groups_do_not_change_results(monkeypatch, n_groups):
    """The parallel kernels make their block buffers once per group of chunks
    (``Sim.chunk_groups``); each chunk's sums stay its own, so the state after four years is
    the same whatever the number of groups: one group (every buffer reused by all 256
    chunks), seven uneven ones, or the default. A kernel that relied on a buffer made fresh
    (zeroed) for each chunk would differ here."""
    a = Sim("baseline", scale=SCALE, seed=12, threads=2)
    a.run(until=48)
    monkeypatch.setattr(sim_module, "N_GROUPS", n_groups)
    b = Sim("baseline", scale=SCALE, seed=12, threads=2)
    assert b.chunk_groups(256).size - 1 == n_groups
    b.run(until=48)
    _assert_same_state(a, b)


def test_even_bounds_are_linspace():
    """The chunk and range bounds (``even_bounds``) are ``np.linspace(0, n, k + 1)`` cast to
    int64, bound for bound, including sizes of the whole population and beyond 2**31."""
    for n in [0, 1, 2, 3, 255, 256, 257, 1000, 65_537, 1_009_713, 20_164_873, 33_361_071,
              2**31 + 5]:
        for k in {1, 2, 3, 7, 32, 256, max(1, min(256, n))}:
            np.testing.assert_array_equal(even_bounds(n, k),
                                          np.linspace(0, n, k + 1).astype(np.int64),
                                          err_msg=f"n={n} k={k}")


def test_column_sums_in_order_are_the_python_loop():
    """``column_sums_in_order`` adds each column row after row, as the Python loop it replaced
    (float64 additions in that order: the same bits; another order gives other bits)."""
    rs = np.random.default_rng(5)
    a = rs.lognormal(0.0, 3.0, size=(256, 4)) * rs.choice([1.0, 1e-12, 1e12], size=(256, 4))
    want = [0.0] * 4
    for row in a.tolist():
        for k in range(4):
            want[k] += row[k]
    got = column_sums_in_order(a)
    assert [float(x) for x in got] == want
    # the same sums in another order differ in the last bits for such data: the test can tell
    back = [0.0] * 4
    for row in a[::-1].tolist():
        for k in range(4):
            back[k] += row[k]
    assert back != want
