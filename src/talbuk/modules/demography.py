"""Demography: ageing, deaths (a life table raised by hunger), births, new households.

Mechanisms (docs/odd.md, "Demography"):

* **Deaths.** Each person carries an Exp(1) threshold (``resistance``), drawn once; each
  month their hazard is subtracted and they die when it is used up. This is exact inverse-
  transform sampling of the survival time, needs no random draw per person-month, and gives
  the strongest common random numbers: in a worse scenario the same frail people die first.
  The baseline hazard is a Siler life table (infant, constant and Gompertz terms) whose level
  is set each year to match a no-famine life expectancy trend from 70.5 years in 1990 to 72.8
  in 2020 (``data/vital_rates.csv``; the famine's loss of life comes from the hunger term,
  not from the life table). Hunger raises the hazard by ``1 + rr(age) * hunger``, most for
  the young and the old.
* **Births.** Births follow the recorded crude birth rate (``data/vital_rates.csv``,
  interpolated; 20.4 per 1,000 in 1990 to 13.4 in 2020): each month the expected births
  ``CBR * population / 12`` are shared among women aged 20-39 by an age-specific fertility
  shape. Sex ratio at birth 105 boys per 100 girls. The newborn joins the mother's household.
* **New households.** A woman reaching ``household_split_age`` leaves to found a household
  in her cell with probability ``household_split_prob``.
* **Excess deaths.** Each death is attributed to hunger by the fraction of its hazard that
  hunger added, ``1 - h0/h``; summed, this is an unbiased estimate of deaths above the
  no-hunger baseline, by month and province.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from pydantic import Field

from talbuk import rng
from talbuk.calendar import month_year
from talbuk.modules.base import Module, ModuleParams, Output
from talbuk.population import PROVINCES, read_columns
from talbuk.state import (
    DEAD,
    RESIDENT,
    SEX_FEMALE,
    SEX_MALE,
    SUM_SCALE,
    in_country,
)

MAX_AGE = 120
_BIRTH = np.uint64(rng.STREAMS["birth"])
_SPLIT = np.uint64(rng.STREAMS["household_split"])
_TRAIT = np.uint64(rng.STREAMS["trait"])
N_PROV = len(PROVINCES)
# per-chunk counters written by the kernel (columns of ``counts``)
C_DEATHS, C_BIRTHS, C_SPLITS, C_POP, C_0_14, C_15_64, C_65P, C_MALE, C_ABROAD_DEATHS = range(9)
N_COUNTS = 9


class DemographyParams(ModuleParams):
    """Demography parameters. Bounds are plausible ranges; sources in the docstring above."""

    life_expectancy_1990: float = Field(70.5, ge=40, le=90, description="UN WPP, vital_rates.csv")
    life_expectancy_2005: float = Field(69.2, ge=40, le=90, description="UN WPP, vital_rates.csv")
    life_expectancy_2010: float = Field(70.2, ge=40, le=90, description="UN WPP, vital_rates.csv")
    life_expectancy_2020: float = Field(72.8, ge=40, le=90, description="UN WPP, vital_rates.csv")
    male_mortality_ratio: float = Field(1.5, ge=1, le=3, description="men's hazard over women's from age 15; assumption (DPRK men live about 7 years less, UN WPP)")
    infant_hazard: float = Field(0.06, ge=0, le=0.5, description="Siler a1 (per year); assumption giving infant mortality about 35 per 1,000")
    infant_decay: float = Field(1.2, ge=0.1, le=5, description="Siler b1 (per year of age)")
    background_hazard: float = Field(0.0007, ge=0, le=0.01, description="Siler a2 (per year)")
    gompertz_slope: float = Field(0.085, ge=0.05, le=0.15, description="Siler b3 (per year of age)")
    hunger_rr_child: float = Field(8.0, ge=0, le=50, description="extra relative hazard at hunger 1, ages 0-4; kept by hand, with economy.hunger_severity set against excess deaths 1993-2000 of 240,000-1,000,000 (targets.csv)")
    hunger_rr_adult: float = Field(2.0, ge=0, le=50, description="extra relative hazard at hunger 1, ages 5-59; kept by hand, with economy.hunger_severity set against excess deaths 1993-2000 of 240,000-1,000,000 (targets.csv)")
    hunger_rr_old: float = Field(6.0, ge=0, le=50, description="extra relative hazard at hunger 1, ages 60+; kept by hand, with economy.hunger_severity set against excess deaths 1993-2000 of 240,000-1,000,000 (targets.csv)")
    hunger_exponent: float = Field(2.0, ge=1, le=4, description="hazard rises as hunger**k: mild shortfall kills few")
    fertility_multiplier: float = Field(1.0, ge=0, le=3, description="scales the recorded crude birth rate")
    sex_ratio_at_birth: float = Field(1.05, ge=0.9, le=1.2, description="boys per girl")
    household_split_age: int = Field(25, ge=16, le=40, description="women's mean age at first marriage, about 25")
    household_split_prob: float = Field(0.25, ge=0, le=1, description="set by hand so households number near the 2008 census's 5.89 million (not formally calibrated)")


class Demography(Module):
    """Ageing, deaths, births and new households."""

    name = "demography"
    Params = DemographyParams
    outputs = (
        Output("population", "stock", "people", "people living in North Korea (not abroad or in transit)"),
        Output("births", "flow", "people", "births"),
        Output("deaths", "flow", "people", "deaths of people living in North Korea"),
        Output("excess_deaths", "flow", "people", "deaths above the no-hunger baseline (attributable to hunger)"),
        Output("deaths_abroad", "flow", "people", "deaths of people on the journey or abroad"),
        Output("pop_0_14", "stock", "people", "people aged 0-14 in North Korea"),
        Output("pop_15_64", "stock", "people", "people aged 15-64 in North Korea"),
        Output("pop_65_plus", "stock", "people", "people aged 65+ in North Korea"),
        Output("males", "stock", "people", "men and boys in North Korea"),
        Output("new_households", "flow", "households", "households founded"),
        Output("households", "stock", "households", "households with at least one member in North Korea"),
    )
    province_outputs = (
        Output("deaths", "flow", "people", "deaths in the province"),
        Output("excess_deaths", "flow", "people", "hunger-attributable deaths in the province"),
        Output("population", "stock", "people", "people living in the province"),
    )

    def init(self, sim) -> None:
        p = self.params
        vr = read_columns("vital_rates.csv")
        years = np.arange(month_year(sim.start_month), month_year(sim.end_month) + 1)
        self.first_year = int(years[0])
        self.cbr = np.interp(years + 0.5, vr["year"] + 0.5, vr["crude_birth_rate_per_1000"]) * p.fertility_multiplier
        # UN WPP life expectancy with the famine years (1995, 2000: 60.8 and 60.9) left out:
        # the famine's deaths come from the hunger term, not from the life table
        e0 = np.interp(years, [1990, 2005, 2010, 2020],
                       [p.life_expectancy_1990, p.life_expectancy_2005, p.life_expectancy_2010,
                        p.life_expectancy_2020])
        self.monthly_hazard = np.stack([self._life_table(float(e)) for e in e0])  # [year, sex, age]
        ages = np.arange(MAX_AGE + 1)
        self.rr = np.where(ages < RR_CHILD_UNDER, p.hunger_rr_child,
                           np.where(ages >= RR_OLD_FROM, p.hunger_rr_old,
                                    p.hunger_rr_adult)).astype(np.float64)
        # the kernel takes the three values and the ages (classes by comparisons, not tables)
        self.rr3 = np.array([p.hunger_rr_child, p.hunger_rr_adult, p.hunger_rr_old], dtype=np.float64)
        shape = np.zeros(MAX_AGE + 1)
        shape[20:25], shape[25:30], shape[30:35], shape[35:40] = 0.25, 0.40, 0.25, 0.10
        self.fertility_shape = shape / 5.0  # per single year of age
        # the same tables by age in months, so the kernel never divides
        age_years = np.arange((MAX_AGE + 1) * 12) // 12
        self.hazard_m = np.ascontiguousarray(self.monthly_hazard[:, :, age_years])
        self.fertility_m = self.fertility_shape[age_years]
        self.fertility_next_m = self.fertility_shape[np.minimum((np.arange(age_years.size) + 1) // 12, MAX_AGE)]
        # the same by sex (rows: SEX_MALE, SEX_FEMALE; men's rows zero, men never split off)
        assert SEX_MALE == 0 and SEX_FEMALE == 1
        self.fertility_sm = np.stack([np.zeros_like(self.fertility_m), self.fertility_m])
        self.fertility_next_sm = np.stack([np.zeros_like(self.fertility_next_m), self.fertility_next_m])
        self.split_age_s = np.array([-1, p.household_split_age * 12], dtype=np.int64)
        self._last = None  # (population, weighted women) of the last month, for birth rates
        self._blocks: tuple[np.ndarray, ...] | None = None  # the kernel's block buffers

    def checkpoint_state(self) -> dict:
        return {} if self._last is None else {"last": np.array(self._last, dtype=np.float64)}

    def restore_state(self, arrays: dict) -> None:
        self._last = tuple(float(x) for x in arrays["last"]) if "last" in arrays else None

    def _life_table(self, e0: float) -> np.ndarray:
        """Monthly cumulative hazard by sex and single year of age, shape ``(2, MAX_AGE+1)``.

        Men's hazard is ``male_mortality_ratio`` times women's from age 15; the Gompertz level
        is solved so that the mean of men's and women's life expectancy (weighted by the sex
        ratio at birth) equals ``e0``.
        """
        p = self.params
        x = np.arange(0, MAX_AGE + 1, 1.0 / 12.0) + 1.0 / 24.0
        male = np.where(x >= 15, p.male_mortality_ratio, 1.0)
        w_boy = p.sex_ratio_at_birth / (1.0 + p.sex_ratio_at_birth)

        def hazard(a3: float) -> np.ndarray:
            return (p.infant_hazard * np.exp(-p.infant_decay * x) + p.background_hazard
                    + a3 * np.exp(p.gompertz_slope * x))

        def life_exp(a3: float) -> float:
            h = hazard(a3)
            e_f = np.sum(np.exp(-np.cumsum(h) / 12.0)) / 12.0
            e_m = np.sum(np.exp(-np.cumsum(h * male) / 12.0)) / 12.0
            return float(w_boy * e_m + (1 - w_boy) * e_f)

        lo, hi = 1e-8, 1e-1
        for _ in range(80):  # bisection on log scale: e0 falls as a3 rises
            mid = math.sqrt(lo * hi)
            if life_exp(mid) > e0:
                lo = mid
            else:
                hi = mid
        h = hazard(math.sqrt(lo * hi)) / 12.0
        female = h.reshape(MAX_AGE + 1, 12).mean(axis=1)
        men = (h * male).reshape(MAX_AGE + 1, 12).mean(axis=1)
        out = np.empty((2, MAX_AGE + 1))
        out[SEX_FEMALE] = female
        out[1 - SEX_FEMALE] = men
        return out

    def _block_buffers(self, n_chunks: int) -> tuple[np.ndarray, ...]:
        """The demography kernel's block buffers (flags, hunger ** exponent, hazard, birth
        probability), one row of RNG_BLOCK per chunk, kept from month to month."""
        bufs = self._blocks
        if bufs is None or bufs[0].shape[0] < n_chunks:
            bufs = (np.empty((n_chunks, RNG_BLOCK), dtype=np.uint8),
                    np.empty((n_chunks, RNG_BLOCK), dtype=np.float64),
                    np.empty((n_chunks, RNG_BLOCK), dtype=np.float64),
                    np.empty((n_chunks, RNG_BLOCK), dtype=np.float64))
            self._blocks = bufs
        return bufs

    def step(self, sim) -> None:
        p = self.params
        persons, households = sim.persons, sim.households
        t = sim.month
        year_idx = min(month_year(t) - self.first_year, self.monthly_hazard.shape[0] - 1)
        if self._last is None:
            self._last = _census(persons.stage, persons.birth_month, persons.sex, t, self.fertility_shape)
        pop, women_w = self._last
        birth_scale = (self.cbr[year_idx] / 1000.0) * pop / 12.0 / women_w if women_w > 0 else 0.0
        # the month's event flags, a byte per person: the kernel writes every row below n
        scratch = sim.person_scratch()
        n = persons.n
        bounds = sim.chunk_bounds(n)
        counts = np.zeros((bounds.size - 1, N_COUNTS), dtype=np.int64)
        excess = np.zeros((bounds.size - 1, N_PROV), dtype=np.float64)
        prov_deaths = np.zeros((bounds.size - 1, N_PROV), dtype=np.int64)
        prov_pop = np.zeros((bounds.size - 1, N_PROV), dtype=np.int64)
        women_w_next = np.zeros(bounds.size - 1, dtype=np.float64)
        _demography_kernel(
            np.int64(t), sim.seed_key, persons.rng_id, persons.stage, persons.stage_month,
            persons.birth_month,
            persons.sex, persons.province, persons.hunger, persons.resistance,
            self.hazard_m[year_idx], self.rr3, float(p.hunger_exponent),
            self.fertility_sm * birth_scale, self.fertility_next_sm,
            self.split_age_s, float(p.household_split_prob),
            scratch, bounds, sim.chunk_groups(bounds.size - 1), counts, excess, prov_deaths,
            prov_pop, women_w_next,
            *self._block_buffers(bounds.size - 1))
        tot = counts.sum(axis=0)
        # new households and newborns, appended in table order (counts per range, then
        # each range at its offsets)
        n_split = int(tot[C_SPLITS])
        n_births = int(tot[C_BIRTHS])
        households.ensure_capacity(households.n + n_split)
        persons.ensure_capacity(n + n_births)
        new_h, new_n = _append_households_and_births(
            np.int64(t), sim.seed_key, n, households.n, scratch, float(p.sex_ratio_at_birth),
            households.full("province"), households.full("cell"), households.full("flags"),
            households.full("members"), np.int64(sim.next_uid), persons.full("uid"),
            persons.full("rng_id"), persons.full("birth_month"), persons.full("household"),
            persons.full("sex"), persons.full("province"), persons.full("songbun"),
            persons.full("stage"), persons.full("stage_month"), persons.full("resistance"),
            persons.full("legitimacy"), np.int64(sim.chunk_bounds(n).size - 1),
            sim.parts(households.n, households.n))
        households.n = new_h
        persons.n = new_n
        sim.next_uid += new_n - n
        members = _count_nonempty(households.members, sim.chunk_bounds(new_h))
        if sim.checks:
            from talbuk.checks import check_members

            check_members(sim, int(tot[C_POP] + n_births))
        self._last = (float(tot[C_POP] + n_births), float(women_w_next.sum()))
        s = sim.scale
        sim.record("population", (tot[C_POP] + n_births) * s)
        sim.record("births", n_births * s)
        sim.record("deaths", tot[C_DEATHS] * s)
        sim.record("excess_deaths", float(excess.sum()) * s)
        sim.record("deaths_abroad", tot[C_ABROAD_DEATHS] * s)
        sim.record("pop_0_14", (tot[C_0_14] + n_births) * s)
        sim.record("pop_15_64", tot[C_15_64] * s)
        sim.record("pop_65_plus", tot[C_65P] * s)
        sim.record("males", (tot[C_MALE] + _count_newborn_males(persons.sex, n, new_n)) * s)
        sim.record("new_households", n_split * s)
        sim.record("households", members * s)
        newborn_prov = np.bincount(persons.province[n:new_n], minlength=N_PROV)
        sim.record_province("deaths", prov_deaths.sum(axis=0) * s)
        sim.record_province("excess_deaths", excess.sum(axis=0) * s)
        sim.record_province("population", (prov_pop.sum(axis=0) + newborn_prov) * s)


@nb.njit(cache=True)
def _census(stage, birth_month, sex, t, shape):
    pop = 0.0
    w = 0.0
    for i in range(stage.shape[0]):
        if in_country(stage[i]):
            pop += 1.0
            if sex[i] == SEX_FEMALE:
                a = (t - birth_month[i]) // 12
                if a <= MAX_AGE:
                    w += shape[a]
    return pop, w


#: Age classes in years: hunger's relative risk of death is ``hunger_rr_child`` under
#: RR_CHILD_UNDER, ``hunger_rr_old`` from RR_OLD_FROM and ``hunger_rr_adult`` between; the
#: recorded age groups are 0-14, 15-64 and 65 and over.
RR_CHILD_UNDER = 5
RR_OLD_FROM = 60
GROUP_0_UNDER = 15
GROUP_1_UNDER = 65

#: People per block of the demography kernel: each block is first computed as a whole, in a
#: loop the compiler turns into SIMD code, then its few events are handled one at a time.
RNG_BLOCK = 1024

# What the SIMD part of the demography kernel flags for each person of a block (``ev``)
E_DIES = np.uint8(1)  # dies this month
E_HOME = np.uint8(2)  # lives in North Korea after this month's deaths
E_BIRTH = np.uint8(4)  # a resident woman who may give birth (a draw follows)
E_SPLIT = np.uint8(8)  # a resident at the age of founding a household (a draw follows)
E_DIED_HOME = np.uint8(16)  # died in North Korea (leaves the household's count)


@nb.njit(parallel=True, cache=True)
def _demography_kernel(t, seed, rng_id, stage, stage_month, birth_month, sex, province, hunger,
                       resistance, hazard_m, rr3, hunger_exp, birth_p_m, shape_next_m,
                       split_age, split_p, scratch, bounds, groups, counts, excess,
                       prov_deaths, prov_pop, women_w_next, ev, hk_b, h_b, bp_b):
    """One pass over everyone: deaths, births and household splits flagged, stocks counted.

    Tables are indexed by age in months (0 .. 12*MAX_AGE+11), so no division in the loop.
    Each block of RNG_BLOCK people goes through (1) a loop without branches that LLVM
    vectorises: hazards, deaths applied, age groups and fertility weights summed, events
    flagged; (2) a scalar loop in person order over the flags: province counts, deaths'
    records, household-split draws, the list of women who may give birth; (3) the birth draws
    (Philox on SIMD lanes) and their outcomes. Every draw and every person's result is the
    one of a person-at-a-time loop. The fertility denominator ``women_w_next`` is summed in
    fixed point (``talbuk.state.SUM_SCALE``), exact whatever the order, within about 1e-9
    of the float sum.

    ``ev``, ``hk_b``, ``h_b``, ``bp_b``: block buffers, one row of RNG_BLOCK per chunk (at
    least), kept by the module from month to month (made each month, their 6 MB were fresh
    memory mappings, about a millisecond of page faults a month whatever the population).
    Arrays passed in are known not to alias (numba marks a parallel loop's arguments so),
    which lets LLVM vectorise the loop; every entry read is written first in its block
    (``hk_b`` is read only when the exponent is not 2).
    """
    tm = np.uint64(t)
    max_m = hazard_m.shape[1] - 1
    exp2 = hunger_exp == 2.0
    # hunger's relative risk and the age groups by comparisons of the age in months, not
    # tables by age (a table read is a gather on SIMD lanes)
    rr_child = rr3[0]
    rr_adult = rr3[1]
    rr_old = rr3[2]
    child_m = np.uint64(12 * RR_CHILD_UNDER)
    old_m = np.uint64(12 * RR_OLD_FROM)
    g0_m = np.uint64(12 * GROUP_0_UNDER)
    g1_m = np.uint64(12 * GROUP_1_UNDER)
    q = SUM_SCALE
    sa0 = np.int64(split_age[0])
    sa1 = np.int64(split_age[1])
    for grp in nb.prange(groups.shape[0] - 1):
        p_deaths = np.zeros(N_PROV, dtype=np.int64)
        p_pop = np.zeros(N_PROV, dtype=np.int64)
        p_excess = np.zeros(N_PROV, dtype=np.float64)
        cand = np.empty(RNG_BLOCK, dtype=np.int64)
        cand_id = np.empty(RNG_BLOCK, dtype=np.uint32)
        cand_p = np.empty(RNG_BLOCK, dtype=np.float64)
        cand_u = np.empty(RNG_BLOCK, dtype=np.float64)
        for c in range(groups[grp], groups[grp + 1]):
            deaths = 0
            abroad_deaths = 0
            births = 0
            splits = 0
            females = np.int64(0)
            ww = np.int64(0)
            g0 = np.int64(0)
            g1 = np.int64(0)
            n_home = np.int64(0)
            run_prov = -1
            run_len = 0
            for k in range(N_PROV):
                p_deaths[k] = 0
                p_pop[k] = 0
                p_excess[k] = 0.0
            for b0 in range(bounds[c], bounds[c + 1], RNG_BLOCK):
                b1 = min(b0 + RNG_BLOCK, bounds[c + 1])
                nbk = np.uint64(b1 - b0)
                ub0 = np.uint64(b0)
                if not exp2:  # hunger ** exponent (pow is a call: not in the SIMD loop)
                    for j in range(nbk):
                        hg = np.float64(hunger[ub0 + j])
                        hk_b[c, j] = hg ** hunger_exp if hg > 0.0 else 0.0
                # 1. every person at once (SIMD): deaths applied, counts, what follows flagged
                for j in range(nbk):
                    i = ub0 + j
                    st = stage[i]
                    alive = st != DEAD
                    age_m = t - birth_month[i]
                    age_m = max_m if age_m > max_m else age_m
                    am = np.uint64(age_m)
                    s = sex[i]
                    h0 = hazard_m[s, am]
                    home = alive & in_country(st)
                    hg = np.float64(hunger[i])
                    # the default exponent 2 as a product (exact in float64 for a float32
                    # hunger, as pow is)
                    hk = hg * hg if exp2 else hk_b[c, j]
                    rr = rr_child if am < child_m else (rr_old if am >= old_m else rr_adult)
                    h = h0 * (1.0 + rr * hk) if (home & (hg > 0.0)) else h0
                    r0 = resistance[i]
                    r = r0 - h
                    dies = alive & (r <= 0.0)
                    scratch[i] = 0  # the flags of the serial loops below start clear
                    stage[i] = DEAD if dies else st
                    stage_month[i] = t if dies else stage_month[i]
                    resistance[i] = 0.0 if dies else (r if alive else r0)
                    lives = home & (not dies)
                    g0 += np.int64(lives & (am < g0_m))
                    g1 += np.int64(lives & (am >= g0_m) & (am < g1_m))
                    females += np.int64(s) if lives else np.int64(0)
                    n_home += np.int64(lives)
                    ww += np.int64(shape_next_m[s, am] * q) if lives else np.int64(0)
                    bp = birth_p_m[s, am]
                    res = lives & (st == RESIDENT)
                    sa = sa1 if s != 0 else sa0
                    e = (np.uint8(dies) | (np.uint8(lives) << np.uint8(1))
                         | (np.uint8(res & (bp > 0.0)) << np.uint8(2))
                         | (np.uint8(res & (age_m == sa)) << np.uint8(3))
                         | (np.uint8(dies & home) << np.uint8(4)))
                    ev[c, j] = e
                    h_b[c, j] = h
                    bp_b[c, j] = bp
                # 2. one at a time, cheaply: provinces, deaths, candidates (in person order)
                nb_ = 0
                for j in range(nbk):
                    i = ub0 + j
                    e = ev[c, j]
                    if e & E_HOME:
                        pr = np.int64(province[i])
                        if pr == run_prov:
                            run_len += 1
                        else:
                            if run_prov >= 0:
                                p_pop[run_prov] += run_len
                            run_prov = pr
                            run_len = 1
                    # a woman who may give birth joins the block's list (without a branch: the
                    # entry is overwritten unless the count moves on); her draw comes after
                    cand[nb_] = i
                    cand_id[nb_] = rng_id[i]
                    cand_p[nb_] = bp_b[c, j]
                    nb_ += (e >> np.uint8(2)) & np.uint8(1)
                    if e & (E_DIES | E_SPLIT):
                        if e & E_DIES:
                            if e & E_DIED_HOME:
                                scratch[i] = 4  # leaves the household's count (in the serial pass)
                                deaths += 1
                                pr = province[i]
                                p_deaths[pr] += 1
                                age_m = t - birth_month[i]
                                age_m = max_m if age_m > max_m else age_m
                                p_excess[pr] += 1.0 - hazard_m[sex[i], np.uint64(age_m)] / h_b[c, j]
                            else:
                                abroad_deaths += 1
                        elif rng.uniform1(seed, _SPLIT, tm, rng_id[i], np.uint64(0)) < split_p:
                            scratch[i] = 2
                            splits += 1
                # the block's birth draws in one loop the compiler vectorizes (Philox on SIMD
                # lanes), then their outcomes; the same draw for each woman as one at a time
                for j in range(nb_):
                    cand_u[j] = rng.uniform1(seed, _BIRTH, tm, cand_id[j], np.uint64(0))
                for j in range(nb_):
                    if cand_u[j] < cand_p[j]:
                        scratch[cand[j]] |= 1  # cleared in the block's first loop
                        births += 1
            if run_prov >= 0:
                p_pop[run_prov] += run_len
            counts[c, C_DEATHS] = deaths
            counts[c, C_ABROAD_DEATHS] = abroad_deaths
            counts[c, C_BIRTHS] = births
            counts[c, C_SPLITS] = splits
            counts[c, C_0_14] = g0
            counts[c, C_15_64] = g1
            counts[c, C_65P] = n_home - g0 - g1
            counts[c, C_POP] = n_home
            counts[c, C_MALE] = counts[c, C_POP] - females
            for k in range(N_PROV):  # element by element: a slice would be an alias, and
                prov_deaths[c, k] = p_deaths[k]  # numba then marks no array as unaliased
                prov_pop[c, k] = p_pop[k]
                excess[c, k] = p_excess[k]
            women_w_next[c] = ww / q


@nb.njit(parallel=True, cache=True)
def _append_households_and_births(t, seed, n, n_households, scratch, sex_ratio, hh_province,
                                  hh_cell, hh_flags, hh_members, next_uid, uid, rng_id, birth_month, household,
                                  sex, province, songbun, stage, stage_month, resistance,
                                  legitimacy, n_chunks, hparts):
    """The flagged few, appended in table order, so new ids never depend on threads.

    Bit 4: the person died at home this month and leaves the household's member count.
    Bit 2: the woman founds a new household in her cell (before any birth, so her child is
    born into it). Bit 1: she gives birth; the newborn is appended. Flags are cleared. The
    scans read the flags eight bytes at a time and skip empty words. Member counts are kept
    here, not recounted: a recount scattered every person into their household, which for the
    people born since 1990 (far from their households in memory) cost more than the rest of
    the step at scale 1.

    In ``n_chunks`` ranges of the table (whole words of flags; the last range also the tail):
    (1) each range counts its new households, newborns and member changes of existing
    households; (2) their offsets, range by range (table order); (3) each range appends its
    households and newborns at its offsets (the uids, rng ids and draws of a serial pass: all
    keyed by the person and the position) and lists its member changes of existing
    households, which (4) are added by the ranges of households ``hparts`` (integer sums, any
    order).
    """
    nw = n // 8
    words = scratch[: nw * 8].view(np.uint64)
    nc = n_chunks
    wb = np.empty(nc + 1, dtype=np.int64)
    for c in range(nc + 1):
        wb[c] = nw * c // nc
    cnt = np.empty((nc, 3), dtype=np.int64)  # new households, newborns, member changes
    lo_bit = np.uint64(0x0101010101010101)  # bit 0 of each byte of a word
    for c in nb.prange(nc):
        # whole words without a branch (SIMD): each byte's bits masked, the bytes of a word
        # added by a multiply (top byte); at most 3 per byte, 24 per word: no carry
        s_ = np.uint64(0)
        b_ = np.uint64(0)
        d_ = np.uint64(0)
        for w in range(np.uint64(wb[c]), np.uint64(wb[c + 1])):
            x = words[w]
            b1 = x & lo_bit  # births
            b2 = (x >> np.uint64(1)) & lo_bit  # new households
            b4 = (x >> np.uint64(2)) & lo_bit  # deaths at home
            # deaths, the founders' old households, births into an existing household
            bd = b4 + b2 + (b1 & ~b2)
            s_ += (b2 * lo_bit) >> np.uint64(56)
            b_ += (b1 * lo_bit) >> np.uint64(56)
            d_ += (bd * lo_bit) >> np.uint64(56)
        if c == nc - 1:  # the last range: the tail bytes too
            for i in range(nw * 8, n):
                f = np.uint64(scratch[i])
                s_ += (f >> np.uint64(1)) & np.uint64(1)
                b_ += f & np.uint64(1)
                d_ += (((f >> np.uint64(2)) & np.uint64(1)) + ((f >> np.uint64(1)) & np.uint64(1))
                       + (f & np.uint64(1) & ~(f >> np.uint64(1))))
        cnt[c, 0] = np.int64(s_)
        cnt[c, 1] = np.int64(b_)
        cnt[c, 2] = np.int64(d_)
    off = np.empty((nc + 1, 3), dtype=np.int64)
    off[0, 0] = n_households
    off[0, 1] = n
    off[0, 2] = 0
    for c in range(nc):
        for q in range(3):
            off[c + 1, q] = off[c, q] + cnt[c, q]
    n_d = off[nc, 2]
    d_h = np.empty(n_d, dtype=np.int64)
    d_v = np.empty(n_d, dtype=np.int32)
    p_boy = sex_ratio / (1.0 + sex_ratio)
    for c in nb.prange(nc):
        w1 = wb[c + 1] + (1 if c == nc - 1 else 0)
        k_h = off[c, 0]
        k = off[c, 1]
        e = off[c, 2]
        for w in range(wb[c], w1):
            if w < nw and words[w] == 0:
                continue
            lo = w * 8
            hi = min(lo + 8, n)
            for i in range(lo, hi):
                f = scratch[i]
                if f == 0:
                    continue
                scratch[i] = 0
                if f & 4:
                    d_h[e] = household[i]
                    d_v[e] = -1
                    e += 1
                    continue
                if f & 2:
                    old = household[i]
                    hh_province[k_h] = hh_province[old]
                    hh_cell[k_h] = hh_cell[old]
                    hh_flags[k_h] = 0  # a new family: not a farm household unless the economy says so
                    d_h[e] = old
                    d_v[e] = -1
                    e += 1
                    hh_members[k_h] = 1
                    household[i] = k_h
                    k_h += 1
                if f & 1:
                    w0_, w1_, w2_, w3_ = rng.philox4x32(rng_id[i], 0, t, 1, seed, _BIRTH)
                    child = np.uint32(w3_)
                    uid[k] = next_uid + (k - n)
                    rng_id[k] = child
                    birth_month[k] = t
                    household[k] = household[i]
                    sex[k] = 0 if rng.to_unit(w1_) < p_boy else 1
                    province[k] = province[i]
                    songbun[k] = songbun[i]
                    stage[k] = RESIDENT
                    stage_month[k] = t
                    resistance[k] = -math.log(rng.uniform1(seed, _TRAIT, np.uint64(0), child, np.uint64(0)))
                    legitimacy[k] = 1.0
                    if f & 2:
                        hh_members[household[i]] += 1  # her new household: this range's own
                    else:
                        d_h[e] = household[i]
                        d_v[e] = 1
                        e += 1
                    k += 1
    # member changes of existing households, by ranges of households (each range reads the
    # whole list and adds those in its range: no two threads write one household)
    for r in nb.prange(hparts.shape[0] - 1):
        h_lo = hparts[r]
        h_hi = hparts[r + 1]
        for j in range(n_d):
            h = d_h[j]
            if h >= h_lo and h < h_hi:
                hh_members[h] += d_v[j]
    return off[nc, 0], off[nc, 1]


@nb.njit(parallel=True, cache=True)
def _count_nonempty(members, bounds):
    """Households with at least one member in the country (an integer sum: exact)."""
    per = np.zeros(bounds.shape[0] - 1, dtype=np.int64)
    for c in nb.prange(bounds.shape[0] - 1):
        k = 0
        for h in range(bounds[c], bounds[c + 1]):
            if members[h] > 0:
                k += 1
        per[c] = k
    return per.sum()


@nb.njit(cache=True)
def _count_newborn_males(sex, lo, hi):
    c = 0
    for i in range(lo, hi):
        if sex[i] == 0:
            c += 1
    return c
