"""The synthetic population of January 1990."""

from __future__ import annotations

import numpy as np

from talbuk.calendar import parse_month
from talbuk.population import PROVINCES, initial_population_total, synthesise
from talbuk.state import HOUSEHOLD_DTYPES, PERSON_DTYPES, SEX_FEMALE, bytes_per_row

START = parse_month("1990-01")


def test_population_matches_sources():
    persons, households, cells = synthesise(scale=100, seed=1, start_month=START)
    total = initial_population_total(START)
    # UN WPP mid-1990 figure 20,293,060 less half a year of growth
    assert 20.0e6 < total < 20.3e6
    assert abs(persons.n * 100 - total) < 100
    # province shares of the 2008 census, to sampling rounding
    shares = np.bincount(persons.province, minlength=len(PROVINCES)) / persons.n
    census = np.array([p.population_2008 for p in PROVINCES], dtype=float)
    assert np.allclose(shares, census / census.sum(), atol=2e-4)
    # households: 2008 census 4.09 people each
    assert abs(persons.n / households.n - 4.09) < 0.05
    # songbun national shares (targets.csv central 28/50/22): 2,000 households' worth of noise
    songbun = np.bincount(persons.songbun, minlength=3) / persons.n
    assert np.allclose(songbun, [0.28, 0.50, 0.22], atol=0.015)
    # Pyongyang mostly core, North Hamgyong over-represented in the hostile class
    pyongyang = persons.songbun[persons.province == 0]
    north_hamgyong = persons.songbun[persons.province == 8]
    assert (pyongyang == 0).mean() > 0.5
    assert (north_hamgyong == 2).mean() > 0.3
    # sex ratio near the census's 0.95 men per woman
    ratio = (persons.sex != SEX_FEMALE).sum() / (persons.sex == SEX_FEMALE).sum()
    assert 0.92 < ratio < 0.98
    # every household has an adult; cells hold 30 households
    age = (START - persons.birth_month) / 12
    has_adult = np.zeros(households.n, dtype=bool)
    has_adult[persons.household[age >= 20]] = True
    assert has_adult.all()
    assert np.bincount(households.cell).max() == 30
    assert len(cells) == households.cell.max() + 1


def test_people_are_ordered_by_household_for_locality():
    persons, households, _ = synthesise(scale=500, seed=2, start_month=START)
    assert np.all(np.diff(persons.household) >= 0)
    assert np.all(np.diff(households.cell) >= 0)


def test_state_is_compact():
    # DESIGN: at most 100 bytes of state per person, including the capacity kept for births
    per_person = bytes_per_row(PERSON_DTYPES) + bytes_per_row(HOUSEHOLD_DTYPES) / 4.09
    assert per_person < 70
    persons, households, _ = synthesise(scale=1000, seed=1, start_month=START)
    assert (persons.nbytes() + households.nbytes()) / persons.n < 120


def test_seed_changes_population():
    a, _, _ = synthesise(scale=1000, seed=1, start_month=START)
    b, _, _ = synthesise(scale=1000, seed=2, start_month=START)
    assert not np.array_equal(a.birth_month, b.birth_month)


def test_stable_order_is_a_stable_argsort():
    from talbuk.population import stable_order
    gen = np.random.default_rng(4)
    for n_keys in (1, 7, 1000):
        keys = gen.integers(0, n_keys, size=20_000)
        assert np.array_equal(stable_order(keys, n_keys), np.argsort(keys, kind="stable"))
