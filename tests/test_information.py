"""Tests of the foreign-media module (modules/information.py) and of attitudes."""

from __future__ import annotations

import numpy as np

from talbuk import Sim
from talbuk.population import PROVINCES
from talbuk.state import F_MARKET_GEN, F_MEDIA_EVER, F_PUNISHED, RESIDENT
from tests.helpers import months_to, scenario_file

SCALE = 2000  # about 10,000 agents: fast, and enough for shares to 0.01


_scenario = scenario_file
_months_to = months_to

def test_no_media_supply_nobody_exposed():
    sim = Sim("no-foreign-media", scale=SCALE * 2, seed=3)
    sim.run(until=_months_to(2008))
    assert not np.any(sim.persons.flags & F_MEDIA_EVER)
    assert np.all(sim.persons.media_exposure == 0.0)
    assert sim.monthly["media_ever_share"].max() == 0.0


def test_exposure_spreads_faster_in_border_provinces():
    sim = Sim("baseline", scale=SCALE, seed=3)
    sim.run(until=_months_to(2009))
    p = sim.persons
    alive = p.stage == RESIDENT
    ever = (p.flags & F_MEDIA_EVER) != 0
    border = np.array([pr.borders_china for pr in PROVINCES])[p.province]
    share_border = ever[alive & border].mean()
    share_inland = ever[alive & ~border].mean()
    # by 2009 the border provinces are far ahead (entry with trade, slow spread inland);
    # a factor 1.5 leaves room for sampling noise at ~10,000 agents
    assert share_border > 1.5 * share_inland
    assert share_border > 0.05


def test_crackdown_catches_watchers_and_raises_surveillance(tmp_path):
    body = """
[params.information]
inspect_rate = 1.0
catch_prob = 0.5
[timeline.media_crackdown]
points = [{ date = "1990-01", value = 1.0, source = "test" }, { date = "2025-12", value = 1.0, source = "test" }]
"""
    sim = Sim(_scenario(tmp_path, body), scale=SCALE, seed=3)
    sim.run(until=1)
    p, h = sim.persons, sim.households
    # make a third of adults watchers, then run one month of searches
    adult = (sim.month - p.birth_month.astype(np.int64)) >= 16 * 12
    watch = adult & (np.arange(p.n) % 3 == 0)
    p.flags[watch] |= F_MEDIA_EVER
    p.media_exposure[watch] = 0.8
    n0 = p.n
    punished_before = (p.flags & F_PUNISHED) != 0
    surv_before = h.surveillance.copy()
    fear_before = p.fear.copy()
    sim.step()
    caught = ((p.flags[:n0] & F_PUNISHED) != 0) & ~punished_before & watch
    assert caught.sum() > 0
    # every watcher caught is counted (the journey may punish a few others this month)
    assert sim.monthly["media_caught"][1] == caught.sum() * sim.scale
    # the caught watchers' households are watched more and they fear more
    hh = np.unique(p.household[:n0][caught])
    before = np.zeros(h.n, dtype=np.float32)  # households founded this month started at 0
    before[: surv_before.size] = surv_before
    assert np.all(h.surveillance[hh] > before[hh])
    assert p.fear[:n0][caught].mean() > fear_before[caught].mean()


def test_market_generation_desires_more_given_same_inputs():
    # people are set by their row and followed for six months: no reordering in between
    sim = Sim("baseline", scale=SCALE, seed=3, reorder_every=0)
    sim.run(until=12)
    p = sim.persons
    adult = ((sim.month - p.birth_month.astype(np.int64)) >= 16 * 12) & (p.stage == RESIDENT)
    idx = np.flatnonzero(adult)
    # identical circumstances for everyone, the flag on half of them
    p.flags[idx] &= ~np.uint8(F_MARKET_GEN)
    p.hunger[idx] = 0.2
    p.media_exposure[idx] = 0.5
    p.flags[idx] |= F_MEDIA_EVER
    p.desire[idx] = 0.0
    p.legitimacy[idx] = 1.0
    p.fear[idx] = 0.3
    mg = idx[::2]
    p.flags[mg] |= F_MARKET_GEN
    for _ in range(6):
        sim.step()
    rest = np.setdiff1d(idx, mg)
    rest = rest[p.stage[rest] == RESIDENT]
    mg = mg[p.stage[mg] == RESIDENT]
    assert p.desire[mg].mean() > p.desire[rest].mean() + 0.02
    assert p.legitimacy[mg].mean() < p.legitimacy[rest].mean()
    assert p.fear[mg].mean() < p.fear[rest].mean()


def test_attitudes_stay_bounded():
    sim = Sim("baseline", scale=SCALE * 2, seed=5)
    sim.run(until=_months_to(1997))
    for field in ("desire", "grievance", "legitimacy", "fear"):
        x = getattr(sim.persons, field)
        assert np.isfinite(x).all()
        assert x.min() >= 0.0 and x.max() <= 2.0  # targets are sums of weights below 2


def test_the_economy_counts_watchers_for_the_information_module(monkeypatch):
    """With the economy in the run, its pass over everyone counts each household's people 10+
    and watchers for the information module, which then skips its own pass: the counts are
    the ones its own kernel gives on the same people (and without the economy it counts them
    itself)."""
    from talbuk.modules import information as im

    sim = Sim("baseline", scale=5000, seed=4)
    sim.run(until=150)  # media spread, people born and moved since the last reorder
    own_calls = []
    seen = {}
    for name in ("_scatter_households", "_scatter_households_par"):
        f = getattr(im, name)
        monkeypatch.setattr(im, name, lambda *a, _f=f: (own_calls.append(1), _f(*a))[1])
    f_cells = im._household_cells
    watching_min = np.float32(next(m for m in sim.modules if m.name == "information").params.watching_min)

    def cells(*a):
        # the people as the economy counted them (nothing a count reads has changed since:
        # the media kernel, which changes exposure, comes after this), counted again here
        q, nh = sim.persons, sim.households.n
        nw = np.zeros(nh, dtype=np.int32)
        im._count_range(np.int64(sim.month), 0, q.n, q.stage, q.birth_month, q.flags,
                        q.household, q.media_exposure, watching_min, im.MEDIA_MIN_AGE * 12, nw)
        seen.update(nw=a[7].copy(), own_nw=nw)
        return f_cells(*a)

    monkeypatch.setattr(im, "_household_cells", cells)
    sim.step()
    assert not own_calls, "the information module counted again what the economy counted"
    np.testing.assert_array_equal(seen["nw"], seen["own_nw"])
    n, w = seen["nw"] & im.COUNT_MASK, seen["nw"] // im.WATCH_UNIT
    assert n.sum() > 0 and w.sum() > 0 and np.all(w <= n)
    # without the economy, the module counts them itself
    alone = Sim("baseline", scale=5000, seed=4, modules=("demography", "information"))
    alone.step()
    assert own_calls
