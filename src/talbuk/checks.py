"""Invariant checks, switched on with ``Sim(..., checks=True)`` (on in the tests).

People are neither created nor lost: everyone ever born is in exactly one stage (alive in the
country, on the journey, abroad, or dead), the births recorded equal the people added, and
the deaths recorded equal the people flagged dead. Modules may add their own checks with a
``check(sim)`` method (money conserved in transfers, stage counts = entries - exits, ...).
"""

from __future__ import annotations

import numpy as np

from talbuk.state import DEAD, in_country_mask


class InvariantError(AssertionError):
    """An accounting identity of the model failed."""


def check_members(sim, population: int) -> None:
    """Member counts and the population equal a recount (valid right after demography)."""
    p = sim.persons
    home = in_country_mask(p.stage)
    members = np.bincount(p.household[home], minlength=sim.households.n)
    if not np.array_equal(members, sim.households.members.astype(np.int64)):
        raise InvariantError("household member counts disagree with a recount")
    if population != home.sum():
        raise InvariantError(f"population counted {population} != people in the country {home.sum()}")


def check_invariants(sim) -> None:
    p = sim.persons
    t = sim.t_index + 1  # months recorded including the current one
    if p.n and int(p.stage.max()) > DEAD:
        raise InvariantError(f"unknown stage {int(p.stage.max())}")
    counts = np.bincount(p.stage, minlength=DEAD + 1)
    if counts.sum() != p.n:
        raise InvariantError("stage counts do not add up to everyone ever born")
    births = sim.monthly["births"][:t].sum() / sim.scale
    if round(births) != p.n - sim.initial_persons:
        raise InvariantError(f"births recorded {births:.0f} != people added {p.n - sim.initial_persons}")
    # three disjoint kinds: natural and hunger deaths at home, natural deaths abroad
    # (demography), deaths caused by the journey (border, China, transit, detention)
    deaths = (sim.monthly["deaths"][:t].sum() + sim.monthly["deaths_abroad"][:t].sum()
              + (sim.monthly["journey_deaths"][:t].sum() if "journey_deaths" in sim.monthly else 0.0)) / sim.scale
    if round(deaths) != counts[DEAD]:
        raise InvariantError(f"deaths recorded {deaths:.0f} != people flagged dead {counts[DEAD]}")
    for m in sim.modules:
        check = getattr(m, "check", None)
        if check is not None:
            check(sim)
