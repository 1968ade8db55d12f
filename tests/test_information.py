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
