"""The synthetic population of North Korea in the start month (January 1990 by default).

Sources and assumptions (see docs/odd.md, "Initialisation"):

* National total: UN WPP 2019 mid-1990 estimate, 20,293,060 (``data/population.csv``).
* Province shares: the 2008 census (``data/provinces_2008.csv``). The 702,372 counted in
  military camps are not a separate population here: conscription is not modelled, and they
  are spread over the provinces in proportion to their civilian population.
* Age and sex: a 1990 pyramid in five-year groups reconstructed from UN WPP 2019 estimates
  (approximate; the model's 2008 age structure is checked against the census in the tests).
* Households: sizes 1-8 with mean 4.09 (2008 census: 24,052,231 people in 5,887,767
  households = 4.09); each has at least one adult head; other members are placed at random.
* Inminban cells: consecutive households of the same province, 30 to a cell.
* Songbun: drawn per household, the national shares of ``data/targets.csv`` (core 28%,
  wavering 50%, hostile 22%), with province weights that put most core families in Pyongyang
  and over-represent the hostile class in the north-east (families exiled there).
* Farm households: cooperative farmers were fed from their own harvest, not the PDS; about
  38% of people (100% - 62% PDS-dependent in 1989, ``data/targets.csv``), more in the grain
  provinces.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

from talbuk import rng
from talbuk.calendar import month_year, population_reference_year
from talbuk.state import (
    H_FARM,
    HOUSEHOLD_DTYPES,
    PERSON_DTYPES,
    RESIDENT,
    SEX_FEMALE,
    SEX_MALE,
    Table,
    order_by_household,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

CELL_HOUSEHOLDS = 30
#: The smallest scale (people per agent) the Python API accepts. Below 1 every person is
#: simulated by more than one agent, on average: the population is an oversample of
#: 1/scale agents per person, drawn as at any other scale, and every count is still reported
#: in people (agents times the scale). Used by the benchmarks' scaling curve to reach 25
#: million agents (scale 0.8); the command line refuses scales below 1. Set by hand: at 0.5,
#: 40 million agents, a whole run needs about 5 GB.
MIN_SCALE = 0.5


@dataclass(frozen=True)
class Province:
    code: int
    name: str
    population_2008: int
    borders_china: bool
    distance_to_border_km: float  # assumption: rough road distance to the nearest crossing
    northeast: bool  # North/South Hamgyong and Ryanggang: hit first by ration cuts
    songbun_core_weight: float  # relative, rescaled to the national shares
    songbun_hostile_weight: float
    farm_weight: float  # relative share of cooperative-farm households, rescaled


def data_path(name: str):
    """Path of a data file shipped with the package."""
    return resources.files("talbuk") / "data" / name


def read_data(name: str) -> pd.DataFrame:
    """A shipped data file as a pandas table."""
    import pandas as pd

    with resources.as_file(data_path(name)) as p:
        return pd.read_csv(p)


def read_columns(name: str) -> dict[str, np.ndarray]:
    """A shipped data file as columns: float64 where every value is a number, else strings.

    What the simulation reads when it is set up, without pandas: pandas (with pyarrow) is
    about 70 MB of the process's memory, which a whole-population run then holds through its
    peak (docs/performance.md); it is imported when results are built.
    """
    with data_path(name).open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"data file {name}: no rows")
    out: dict[str, np.ndarray] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        try:
            out[key] = np.array([float(v) for v in values], dtype=np.float64)
        except ValueError:
            out[key] = np.array(values, dtype=object)
    return out


# Province attributes that are judgements rather than data are labelled as such. Distances:
# rough road distance to the nearest crossing into China. Songbun weights: Pyongyang
# residence is restricted to the politically reliable; hostile families were exiled to the
# remote north (Collins, Marked for Life, HRNK 2012). Farm weights: South Hwanghae and the
# south-west are the grain belt (provinces_2008.csv notes). South Hamgyong holds the
# Hamhung-Hungnam chemical and fertiliser complexes (a large urban workforce on the PDS) and
# Ryanggang's people largely live from highland potato farming and forestry: their farm
# weights were 0.35 and 0.25 until this judgement was revised to 0.25 and 0.35, after a run
# showed Ryanggang tying North Hamgyong for the heaviest famine toll per head (the record
# names North and South Hamgyong; Haggard & Noland 2007). Judgements, not data.
_PROVINCE_JUDGEMENTS = {
    # name: (distance_km, northeast, core_w, hostile_w, farm_w)
    "Pyongyang": (220.0, False, 0.70, 0.03, 0.15),
    "South Pyongan": (180.0, False, 0.28, 0.18, 0.45),
    "North Pyongan": (0.0, False, 0.24, 0.20, 0.45),
    "Chagang": (0.0, False, 0.30, 0.18, 0.30),
    "South Hwanghae": (320.0, False, 0.22, 0.20, 0.65),
    "North Hwanghae": (270.0, False, 0.22, 0.20, 0.55),
    "Kangwon": (300.0, False, 0.22, 0.22, 0.45),
    "South Hamgyong": (160.0, True, 0.20, 0.30, 0.25),
    "North Hamgyong": (0.0, True, 0.14, 0.40, 0.25),
    "Ryanggang": (0.0, True, 0.15, 0.38, 0.35),
}


def load_provinces() -> tuple[Province, ...]:
    cols = read_columns("provinces_2008.csv")
    out = []
    for name, pop, borders in zip(cols["province"], cols["population_2008"],
                                  cols["borders_china"], strict=True):
        if name == "Military camps":
            continue
        dist, ne, cw, hw, fw = _PROVINCE_JUDGEMENTS[name]
        out.append(Province(code=len(out), name=str(name), population_2008=int(pop),
                            borders_china=str(borders).strip() == "yes",
                            distance_to_border_km=dist, northeast=ne,
                            songbun_core_weight=cw, songbun_hostile_weight=hw, farm_weight=fw))
    return tuple(out)


PROVINCES = load_provinces()
PROVINCE_NAMES = tuple(p.name for p in PROVINCES)

# 1990 age pyramid, thousands of people in five-year groups 0-4 ... 80-84, 85+ (reconstructed
# from UN WPP 2019 estimates; approximate). Large cohorts born 1965-75; small ones born during
# the Korean War (ages 35-39 in 1990).
_PYRAMID_1990 = np.array([1980, 1850, 1880, 2150, 2250, 2000, 1650, 1100, 800, 780, 760,
                          680, 560, 400, 280, 160, 70, 30], dtype=np.float64)
# Share of men by group: balanced to 50, then women outlive men (war losses among older men).
_MALE_SHARE = np.array([0.504] * 4 + [0.49] * 6 + [0.44, 0.44, 0.38, 0.38, 0.30, 0.30, 0.27, 0.27])
_HOUSEHOLD_SIZE_P = np.array([0.04, 0.11, 0.18, 0.30, 0.21, 0.10, 0.04, 0.02])

NATIONAL_SONGBUN = (0.28, 0.50, 0.22)  # targets.csv central values
NATIONAL_FARM_SHARE = 0.38  # 1 - 0.62 PDS-dependent in 1989 (targets.csv)


def initial_population_total(start_month: int) -> float:
    """National population in the start month, interpolated from data/population.csv."""
    df = read_columns("population.csv")
    when = np.array([population_reference_year(int(y), str(k))
                     for y, k in zip(df["year"], df["kind"], strict=True)])
    pop = df["population"]
    x = month_year(start_month) + (start_month % 12) / 12.0
    if x < when[0]:  # before the first figure: extrapolate the first segment's growth
        slope = np.log(pop[1] / pop[0]) / (when[1] - when[0])
        return float(pop[0] * np.exp(slope * (x - when[0])))
    return float(np.interp(x, when, pop))


def _rescale_shares(weights: np.ndarray, pops: np.ndarray, target: float) -> np.ndarray:
    """Multiply province weights so their population-weighted mean equals ``target``."""
    mean = float(np.sum(weights * pops) / np.sum(pops))
    return np.clip(weights * (target / mean), 0.0, 0.98)


def stable_order(keys: np.ndarray, n_keys: int) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for integer keys in ``[0, n_keys)``, by the
    counting sort the January reorder uses (:func:`talbuk.state.order_by_household`: two passes
    instead of a comparison sort, 0.2 s instead of 2.7 s for the whole population's household
    numbers), whose new place of each row is inverted into the order."""
    n = keys.shape[0]
    new_index = np.empty(n, dtype=np.int64)
    order_by_household(keys, np.ones(n, dtype=np.bool_), n_keys, new_index,
                       np.empty(n_keys + 1, dtype=np.int64))
    order = np.empty(n, dtype=np.int64)
    order[new_index] = np.arange(n)
    return order


def synthesise(*, scale: float, seed: int, start_month: int, capacity_factor: float = 1.45,
               household_capacity_factor: float = 1.5) -> tuple[Table, Table, np.ndarray]:
    """Build the person and household tables for the start month.

    Returns ``(persons, households, cell_province)``. ``scale`` is people per agent. The
    capacities are per person and per household of the start (``Sim`` sets them from the
    length of the run); tables grow by copying when they are exceeded.
    """
    if not scale >= MIN_SCALE:
        raise ValueError(f"scale must be >= {MIN_SCALE:g} (people per agent), got {scale}")
    gen = np.random.Generator(np.random.Philox(key=[seed & 0xFFFFFFFF, rng.stream_id("init_person")]))
    total = initial_population_total(start_month) / scale
    pops = np.array([p.population_2008 for p in PROVINCES], dtype=np.float64)
    prov_n = np.floor(total * pops / pops.sum()).astype(np.int64)
    prov_n[np.argmax(prov_n)] += int(round(total)) - int(prov_n.sum())

    core_w = _rescale_shares(np.array([p.songbun_core_weight for p in PROVINCES]), pops,
                             NATIONAL_SONGBUN[0])
    host_w = _rescale_shares(np.array([p.songbun_hostile_weight for p in PROVINCES]), pops,
                             NATIONAL_SONGBUN[2])
    farm_w = _rescale_shares(np.array([p.farm_weight for p in PROVINCES]), pops,
                             NATIONAL_FARM_SHARE)

    group_p = _PYRAMID_1990 / _PYRAMID_1990.sum()
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("birth_month", "sex", "province",
                                                          "household", "songbun")}
    hh_cols: dict[str, list[np.ndarray]] = {k: [] for k in ("province", "cell", "flags")}
    hh_offset = 0
    cell_offset = 0
    cell_province: list[np.ndarray] = []
    for p in PROVINCES:
        n = int(prov_n[p.code])
        if n <= 0:
            continue
        group = gen.choice(group_p.size, size=n, p=group_p)
        age_months = group * 60 + gen.integers(0, 60, size=n)
        age_months = np.where(group == group_p.size - 1, 85 * 12 + gen.integers(0, 120, size=n),
                              age_months)
        sex = np.where(gen.random(n) < _MALE_SHARE[group], SEX_MALE, SEX_FEMALE).astype(np.uint8)
        # household sizes summing exactly to n
        sizes = gen.choice(np.arange(1, 9), size=int(n / 4.09 * 1.1) + 8, p=_HOUSEHOLD_SIZE_P)
        csum = np.cumsum(sizes)
        h = int(np.searchsorted(csum, n)) + 1
        sizes = sizes[:h].copy()
        sizes[-1] -= int(csum[h - 1] - n)
        # one adult head per household, the others placed at random
        adults = np.flatnonzero(age_months >= 20 * 12)
        if adults.size < h:
            raise ValueError("too few adults to head every household")
        gen.shuffle(adults)
        heads = adults[:h]
        rest_mask = np.ones(n, dtype=bool)
        rest_mask[heads] = False
        rest = np.flatnonzero(rest_mask)
        gen.shuffle(rest)
        hh_of = np.empty(n, dtype=np.int64)
        hh_of[heads] = np.arange(h)
        hh_of[rest] = np.repeat(np.arange(h), sizes - 1)
        order = stable_order(hh_of, h)  # np.argsort(hh_of, kind="stable"), in O(n)
        # songbun and farming are family attributes, drawn per household
        u = gen.random(h)
        songbun = np.where(u < core_w[p.code], 0, np.where(u < 1.0 - host_w[p.code], 1, 2))
        farm = gen.random(h) < farm_w[p.code]
        cells = np.arange(h) // CELL_HOUSEHOLDS
        n_cells = int(cells[-1]) + 1

        cols["birth_month"].append((start_month - age_months[order]).astype(np.int64))
        cols["sex"].append(sex[order])
        cols["province"].append(np.full(n, p.code, dtype=np.uint8))
        cols["household"].append(hh_of[order] + hh_offset)
        cols["songbun"].append(songbun[hh_of[order]].astype(np.uint8))
        hh_cols["province"].append(np.full(h, p.code, dtype=np.uint8))
        hh_cols["cell"].append(cells + cell_offset)
        hh_cols["flags"].append(np.where(farm, H_FARM, 0).astype(np.uint8))
        cell_province.append(np.full(n_cells, p.code, dtype=np.uint8))
        hh_offset += h
        cell_offset += n_cells

    n_total = int(sum(a.size for a in cols["sex"]))
    persons = Table(PERSON_DTYPES, capacity=int(n_total * capacity_factor) + 16, n=n_total)
    for k, parts in cols.items():
        getattr(persons, k)[:] = np.concatenate(parts)
    persons.stage[:] = RESIDENT
    persons.stage_month[:] = start_month
    persons.legitimacy[:] = 1.0
    # Exp(1) death thresholds: by the memoryless property a fresh draw is exact for people
    # already alive at the start.
    uids = np.arange(n_total, dtype=np.int64)
    persons.uid[:] = uids
    persons.rng_id[:] = uids
    persons.resistance[:] = -np.log(rng.uniform_lane(seed, "trait", 0, uids)).astype(np.float32)

    households = Table(HOUSEHOLD_DTYPES, capacity=int(hh_offset * household_capacity_factor) + 16,
                       n=hh_offset)
    for k, parts in hh_cols.items():
        getattr(households, k)[:] = np.concatenate(parts)
    # everyone starts at home; from here on the modules that move people keep the counts
    # (demography: deaths, births, new households; journey: leaving and coming back)
    households.members[:] = np.bincount(persons.household, minlength=hh_offset)
    return persons, households, np.concatenate(cell_province)
