"""Shared fixtures: small, seeded simulations (fast by default; full scale behind a marker)."""

from __future__ import annotations

import pytest

from talbuk.sim import Sim

SMALL_SCALE = 2000  # about 10,000 agents: a whole 1990-2025 run in a few seconds


@pytest.fixture(scope="session")
def baseline_small():
    """One baseline run at small scale, shared by the tests that only read it."""
    sim = Sim("baseline", scale=SMALL_SCALE, seed=7)
    return sim, sim.run()
