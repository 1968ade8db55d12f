"""Invariant checks, switched on with ``Sim(..., checks=True)`` (on in the tests).

People are neither created nor lost: everyone ever born is in exactly one stage (alive in the
country, on the journey, abroad, or dead) or was dead and dropped by ``Sim.reorder``, the
births recorded equal the people added, the deaths recorded equal the people flagged dead
plus those dropped, and ``uid`` is unique. Modules may add their own checks with a
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
    if counts.sum() + sim.removed_dead != sim.next_uid:
        raise InvariantError("people in the table and the dead dropped do not add up to everyone ever born")
    if p.n and (int(p.uid.max()) >= sim.next_uid or np.unique(p.uid).size != p.n):
        raise InvariantError("uids are not unique or exceed the number of people ever born")
    births = sim.monthly["births"][:t].sum() / sim.scale
    added = sim.next_uid - sim.initial_persons
    if round(births) != added:
        raise InvariantError(f"births recorded {births:.0f} != people added {added}")
    # three disjoint kinds: natural and hunger deaths at home, natural deaths abroad
    # (demography), deaths caused by the journey (border, China, transit, detention)
    deaths = (sim.monthly["deaths"][:t].sum() + sim.monthly["deaths_abroad"][:t].sum()
              + (sim.monthly["journey_deaths"][:t].sum() if "journey_deaths" in sim.monthly else 0.0)) / sim.scale
    if round(deaths) != counts[DEAD] + sim.removed_dead:
        raise InvariantError(f"deaths recorded {deaths:.0f} != people flagged dead {counts[DEAD]}"
                             f" + dropped {sim.removed_dead}")
    for m in sim.modules:
        check = getattr(m, "check", None)
        if check is not None:
            check(sim)
