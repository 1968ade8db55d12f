"""Whole-population checks (every person, 1990-2025): minutes and several GB.

Run with ``make test-full`` (``pytest -m fullscale``); excluded from the default suite.
"""

from __future__ import annotations

import pytest

from talbuk.population import read_data
from talbuk.sim import Sim

pytestmark = pytest.mark.fullscale


def test_whole_population_run_follows_censuses():
    sim = Sim("baseline", scale=1, seed=1, threads=2)
    assert sim.initial_persons > 20_000_000
    res = sim.run()
    m = res.monthly.set_index("month")["population"]
    pop = read_data("population.csv").set_index("year")["population"]
    assert abs(m["1993-12"] / pop[1993] - 1) < 0.02
    assert abs(m["2008-10"] / pop[2008] - 1) < 0.02
    assert abs(m["2020-07"] / pop[2020] - 1) < 0.02
    state_bytes = sim.persons.nbytes() + sim.households.nbytes()
    assert state_bytes / sim.initial_persons < 120  # DESIGN goal 100 (see docs/performance.md)
