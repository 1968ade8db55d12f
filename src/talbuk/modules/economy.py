"""Economy: rations (PDS), farm food, hunger, markets, savings and currency shocks.

Mechanisms (docs/economy.md has the equations, DESIGN.md section 4.2 the account):

* **Food need.** A household's need is the sum of its members' needs in adult equivalents
  (children 0-4, 5-14 and people 60+ weighted below 1; FAO/WHO energy requirements,
  approximately). One adult need is ``need_grams`` of grain a day.
* **Farm food.** Cooperative farm households (``H_FARM``) eat from their harvest: per adult
  need ``min(farm_cap, farm_advantage * food_index)`` (farmers kept grain back; Haggard &
  Noland 2007). The ``food_index`` lever is national supply relative to need.
* **Rations (PDS) and triage.** Other households depend on the Public Distribution System.
  The ``pds_grams`` lever is the grain distributed per dependent; the state does not spread a
  shrinking supply evenly but covers a share ``s = clip((g - pds_floor_grams) /
  (pds_full_grams - pds_floor_grams), 0, 1)`` of dependents, in order of a priority score:
  province (Pyongyang first, the north-east, ``Province.northeast``, last) plus songbun (core
  first) plus a fixed household jitter. Covered households receive ``min(g / s,
  pds_norm_grams)`` per person. The two thresholds were set by hand so that 600 g (1990)
  covers every dependent (62% of people) and 128 g (1997) about a tenth of them (6% of
  people, ``data/targets.csv``).
* **Markets.** A household that does not trade enters with a monthly hazard (consumed
  against a household Exp(1) threshold, so no draw is needed each month)
  ``entry_base * tolerance * (1 + necessity * gap) * (1 + imitation * cell_share) * sex *
  (1 + mg_entry_boost * has_market_generation)``, where ``gap`` is last month's food
  shortfall, ``cell_share`` the share of households of its inminban cell already trading
  (a scatter-add each month), and ``sex`` is 1 when a working-age woman lives there and
  ``men_only_entry`` otherwise (men had to attend state workplaces). On entry, working-age
  members become traders (``F_TRADER``) with probability ``p_trader_woman`` or
  ``p_trader_man``. Traders quit with hazard ``quit_base + crackdown_quit * drop``, where
  ``drop`` is the fall of tolerance below its recent maximum (crackdowns of 2005, 2008,
  2009-10), damped by the household's hunger (the hungry cannot afford to stop).
* **Market income** (USD a month, real) per trader: ``income_base_usd * (skill_floor + skill)
  * (1 + mg_income_bonus) * (income_tol_floor + (1 - income_tol_floor) * tolerance) *
  (1 + china_gain * trade_with_china * exp(-distance_km / china_range_km)) * (1 +
  capital_gain * log1p(savings_usd / capital_scale_usd))``. Skill is learned by doing.
* **Informal food.** Dependents the PDS does not cover get ``informal_share * r`` per
  need, where ``r`` is the residual grain per uncovered need: national supply
  (``food_index`` times total need) minus what farm households eat and what the PDS hands
  out (barter, gleaning, selling belongings, kin in the countryside). So the same PDS cut
  is far deadlier when the harvest has failed (the famine is a failure of both).
* **Food bought.** The household's money (market income, then a share of its savings if
  still short; state wages paid for the subsidised ration and buy nothing more) buys food
  at ``price0_usd * food_index**(-price_elasticity)`` per adult need. Leftover money is saved (``save_rate``), in dollars for a share that rises with the
  won's depreciation (``exchange_rate`` lever), the rest in won.
* **Hunger.** ``hunger += hunger_smoothing * (target - hunger)`` with ``target = clip(
  hunger_severity * (shortfall - hunger_threshold) / (1 - hunger_threshold), 0, 1)``;
  demography turns hunger into deaths.
* **Redenomination** (``redenomination`` pulse, 30 Nov 2009): won savings above the exchange
  cap (``redenomination_cap_old_won``) are lost (all but ``redenomination_excess_kept``), the
  rest is converted 100:1.
* **The market generation** (``F_MARKET_GEN``): born in or after ``market_gen_birth_year``
  (1985), so that ages 10-20 fell in 1995-2005, after the PDS collapsed. In the economy they
  enter trading more, are likelier to be the member who trades, learn faster and earn more.
"""

from __future__ import annotations

import functools
import math

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic
from pydantic import Field

from talbuk import rng
from talbuk.modules.base import Module, ModuleParams, Output
from talbuk.modules.information import count_term
from talbuk.population import PROVINCES
from talbuk.state import (
    F_MARKET_GEN,
    F_TRADER,
    H_FARM,
    H_TRADING,
    PREPARING,
    RESIDENT,
    SEX_FEMALE,
    group_rows,
    in_country,
)

_HH = np.uint64(rng.STREAMS["economy_household"])
_PERSON = np.uint64(rng.STREAMS["economy_person"])
N_PROV = len(PROVINCES)
MAX_AGE = 120
AGE_MONTHS = (MAX_AGE + 1) * 12  # length of the tables by age in months
#: Age classes in years: a person's need weighs ``need_child`` under NEED_CHILD_UNDER,
#: ``need_young`` under NEED_YOUNG_UNDER, ``need_old`` from NEED_OLD_FROM and 1 between;
#: working age is WORK_FROM to WORK_TO. The SIMD loops compare the age in months with these
#: (a table read would be a gather on SIMD lanes); the scalar ones read the tables ``need_m``
#: and ``worker_m`` made from them.
NEED_CHILD_UNDER = 5
NEED_YOUNG_UNDER = 15
NEED_OLD_FROM = 60
WORK_FROM = 16
WORK_TO = 64
N_BINS = 512  # priority-score histogram bins for the PDS triage
EV_NONE, EV_ENTER, EV_QUIT = 0, 1, 2
# Bits of ``hbits``, what a household's members are (OR over members: order-free). Bits 0-2:
# some member has songbun 0, 1, 2 (the lowest set bit is the lowest songbun).
B_SB_OTHER, B_WOMAN, B_MG, B_TRADER = 8, 16, 32, 64  # songbun > 2; working-age woman,
# working-age member of the market generation, trader
# household-pass counters (columns of ``hcounts``)
(K_PDS_FED, K_MARKET_USD, K_STATE_USD, K_TRADING_HH, K_HH, K_SAV_USD, K_DOLLARS, K_REDENOM,
 K_ENTER, K_QUIT, K_FOOD_BOUGHT, K_NEED) = range(12)
N_HCOUNTS = 12
# person-pass counters
(P_POP, P_HUNGRY, P_HUNGER_SUM, P_TRADER_W, P_WORKER_W, P_TRADER_M, P_WORKER_M, P_MG,
 P_TRADER_MG, P_WORKER_MG) = range(10)
N_PCOUNTS = 10


class EconomyParams(ModuleParams):
    """Economy parameters. 'set by hand' marks values adjusted against a named target."""

    need_grams: float = Field(600.0, ge=300, le=900, description="grain per adult need per day (about 2,100 kcal; WFP planning figure)")
    need_child: float = Field(0.45, ge=0.1, le=1, description="need of ages 0-4 relative to an adult (FAO/WHO energy requirements, approx.)")
    need_young: float = Field(0.75, ge=0.1, le=1, description="need of ages 5-14 relative to an adult (FAO/WHO, approx.)")
    need_old: float = Field(0.80, ge=0.1, le=1, description="need of ages 60+ relative to an adult (FAO/WHO, approx.)")
    farm_advantage: float = Field(1.05, ge=0.5, le=2, description="farm households' supply per need relative to food_index (assumption: farmers held back grain; Haggard & Noland 2007)")
    farm_cap: float = Field(1.1, ge=0.5, le=2, description="most a farm household eats per need (assumption)")
    pds_full_grams: float = Field(550.0, ge=100, le=900, description="national ration at which every dependent is covered; set by hand: 600 g in 1990 -> 62% of people fed (targets.csv)")
    pds_floor_grams: float = Field(80.0, ge=0, le=300, description="ration below which no one is covered; set by hand: 128 g in 1997 -> about 6% of people fed (targets.csv)")
    pds_norm_grams: float = Field(700.0, ge=300, le=900, description="most a covered dependent receives: official norm for workers (pds_rations.csv 1987)")
    pds_fed_fraction: float = Field(0.6, ge=0.1, le=1, description="ration (share of need_grams) that counts as 'fed by the PDS' in pds_share (assumption: 'most of a ration')")
    priority_pyongyang: float = Field(2.0, ge=0, le=5, description="triage score of Pyongyang households (assumption: the capital kept longest; Haggard & Noland 2007)")
    priority_other: float = Field(1.0, ge=0, le=5, description="triage score of households outside Pyongyang and the north-east")
    priority_northeast: float = Field(0.0, ge=0, le=5, description="triage score of north-eastern households (cut first; Haggard & Noland 2007)")
    priority_core: float = Field(1.0, ge=0, le=5, description="triage score added for core-class households (assumption)")
    priority_wavering: float = Field(0.5, ge=0, le=5, description="triage score added for wavering-class households (assumption)")
    priority_jitter: float = Field(1.0, ge=0, le=5, description="width of a fixed random score per household (workplace, local officials; assumption)")
    informal_share: float = Field(0.9, ge=0, le=1, description="share of the residual grain (supply not eaten by farms nor distributed by the PDS) that reaches households outside the PDS through barter, gleaning, selling belongings and kin; set by hand against excess deaths (targets.csv)")
    price0_usd: float = Field(6.0, ge=0.5, le=50, description="market price of one adult need-month of grain at food_index 1 (assumption: 18 kg of maize at about $0.33/kg)")
    price_elasticity: float = Field(1.5, ge=0, le=4, description="food price rises as food_index**(-e) (assumption)")
    wage_1990_usd: float = Field(10.0, ge=0, le=50, description="state wage per worker in 1990, USD (about 100 won a month; assumption)")
    wage_floor_usd: float = Field(0.5, ge=0, le=10, description="state wage floor in USD (3,000-5,000 new won a month in the 2010s; DailyNK; assumption)")
    income_base_usd: float = Field(18.0, ge=0, le=500, description="trader's monthly market income at skill 0.7 with no bonuses; set by hand: markets' income share 60-80% in the 2010s (targets.csv)")
    skill_floor: float = Field(0.3, ge=0, le=1, description="income weight of a beginner (assumption)")
    skill_learn: float = Field(0.03, ge=0, le=1, description="monthly step of skill towards 1 while trading (assumption)")
    skill_forget: float = Field(0.01, ge=0, le=1, description="monthly loss of skill when not trading (assumption)")
    income_tol_floor: float = Field(0.3, ge=0, le=1, description="market income at tolerance 0, relative to tolerance 1 (assumption)")
    china_gain: float = Field(0.6, ge=0, le=5, description="income bonus at the border per unit of trade_with_china (assumption: smuggling and imports)")
    china_range_km: float = Field(150.0, ge=10, le=1000, description="distance over which the China bonus decays by 1/e (assumption)")
    capital_gain: float = Field(0.3, ge=0, le=3, description="income gain per log unit of savings (assumption)")
    capital_scale_usd: float = Field(100.0, ge=1, le=10000, description="savings scale of the capital effect, USD (assumption)")
    save_rate: float = Field(0.3, ge=0, le=1, description="share of money left after food that is saved (assumption)")
    savings_spend: float = Field(0.02, ge=0, le=1, description="share of savings spent each month on other things (durables, bribes, weddings, losses; assumption)")
    drawdown_rate: float = Field(0.25, ge=0, le=1, description="share of savings a short household spends on food in a month (assumption)")
    dollar_share_max: float = Field(0.7, ge=0, le=1, description="share of new savings kept in foreign currency at 800,000 old won per USD (assumption)")
    entry_base: float = Field(0.02, ge=0, le=1, description="monthly entry hazard at tolerance 1, no gap, no neighbours trading; set by hand against the rise of markets (assumption)")
    necessity: float = Field(8.0, ge=0, le=50, description="entry hazard gain per unit of food gap (assumption)")
    imitation: float = Field(3.0, ge=0, le=50, description="entry hazard gain per unit of the cell's trading share (assumption)")
    men_only_entry: float = Field(0.4, ge=0, le=1, description="entry hazard of a household with no working-age woman (men must attend state workplaces; assumption)")
    p_trader_woman: float = Field(0.85, ge=0, le=1, description="chance a working-age woman of an entering household trades (assumption; most market traders were women, Haggard & Noland 2011)")
    p_trader_man: float = Field(0.25, ge=0, le=1, description="chance a working-age man of an entering household trades (assumption)")
    quit_base: float = Field(0.005, ge=0, le=1, description="monthly hazard of a trading household stopping (assumption)")
    crackdown_quit: float = Field(0.15, ge=0, le=5, description="extra quit hazard per unit drop of tolerance below its recent maximum (assumption)")
    tolerance_memory: float = Field(0.02, ge=0, le=1, description="monthly decay of the 'recent maximum' of tolerance (assumption)")
    market_gen_birth_year: int = Field(1985, ge=1975, le=1995, description="first birth year of the market generation: ages 10-20 in 1995-2005, after the PDS collapsed (DESIGN 4.2)")
    mg_entry_boost: float = Field(0.5, ge=0, le=5, description="entry hazard gain when a working-age member is of the market generation (assumption)")
    mg_trader_boost: float = Field(1.3, ge=1, le=3, description="multiplier of the chance a market-generation member trades (assumption)")
    mg_income_bonus: float = Field(0.2, ge=0, le=2, description="income bonus of market-generation traders (assumption)")
    hunger_threshold: float = Field(0.25, ge=0, le=0.9, description="food shortfall absorbed without hunger (weight loss, less activity); set by hand so that food_index 0.82 with history's rations (no-famine) kills few (assumption)")
    hunger_severity: float = Field(1.6, ge=0.1, le=5, description="hunger per unit of shortfall above the threshold; set by hand with demography's hunger_rr_* against excess deaths 1993-2000 (targets.csv)")
    hunger_smoothing: float = Field(0.35, ge=0.01, le=1, description="monthly weight of this month's shortfall in hunger (a few months' memory)")
    hungry_level: float = Field(0.3, ge=0, le=1, description="hunger above which a person counts as hungry in hungry_share")
    redenomination_cap_old_won: float = Field(150000.0, ge=0, le=1e7, description="cash exchangeable per household in the 2009 redenomination, old won: first 100,000, raised to 150,000 (reports range 100,000-500,000; events.csv 2009-11)")
    redenomination_excess_kept: float = Field(0.0, ge=0, le=1, description="share of won above the cap that survives (assumption: lost)")


def _tolerance_reference(tol: np.ndarray, decay: float) -> np.ndarray:
    """Running 'recent maximum' of tolerance: max(tol, previous - decay)."""
    ref = np.empty_like(tol)
    r = tol[0]
    for k in range(tol.size):
        r = max(tol[k], r - decay)
        ref[k] = r
    return ref


class Economy(Module):
    """Rations, farm food, hunger, markets, savings and currency shocks."""

    name = "economy"
    Params = EconomyParams
    outputs = (
        Output("pds_share", "mean", "share", "share of people fed by the PDS (receiving most of a ration)"),
        Output("trading_share", "mean", "share", "share of households with a member trading"),
        Output("trader_share_women", "mean", "share", "share of women 16-64 who trade"),
        Output("trader_share_men", "mean", "share", "share of men 16-64 who trade"),
        Output("trader_share_market_gen", "mean", "share", "share of market-generation people 16-64 who trade"),
        Output("market_income_share", "mean", "share", "markets' share of household income (market / (market + state))"),
        Output("hungry_share", "mean", "share", "share of people with hunger above hungry_level"),
        Output("hunger_mean", "mean", "0-1", "mean hunger of people in North Korea"),
        Output("savings_usd_mean", "stock", "USD", "mean household savings (won converted at the market rate, plus foreign currency), USD"),
        Output("dollar_savings_mean", "stock", "USD", "mean household foreign-currency savings, USD"),
        Output("market_income_usd_mean", "mean", "USD/month", "mean household market income, USD a month"),
        Output("food_price_usd", "mean", "USD", "market price of one adult need-month of grain, USD"),
        Output("food_bought_share", "mean", "share", "share of food need bought in markets"),
        Output("market_gen_share", "stock", "share", "share of people of the market generation"),
        Output("redenomination_loss_usd", "flow", "USD", "won savings wiped out by the redenomination, valued in USD (people-scaled)"),
    )
    province_outputs = (
        Output("hungry_people", "mean", "people", "people with hunger above hungry_level"),
        Output("pds_fed", "mean", "people", "people fed by the PDS"),
    )

    def init(self, sim) -> None:
        p = self.params
        ages = np.arange(MAX_AGE + 1)
        self.need_w = np.where(ages < NEED_CHILD_UNDER, p.need_child,
                               np.where(ages < NEED_YOUNG_UNDER, p.need_young,
                                        np.where(ages >= NEED_OLD_FROM, p.need_old, 1.0))
                               ).astype(np.float32)
        # the same by age in months (no division per person): age // 12, capped at MAX_AGE
        age_m = np.minimum(np.arange(AGE_MONTHS) // 12, MAX_AGE)
        self.need_m = self.need_w[age_m]
        self.worker_m = ((age_m >= WORK_FROM) & (age_m <= WORK_TO)).astype(np.uint8)
        self.prov_priority = np.array(
            [p.priority_pyongyang if pr.name == "Pyongyang" else
             (p.priority_northeast if pr.northeast else p.priority_other) for pr in PROVINCES])
        self.songbun_priority = np.array([p.priority_core, p.priority_wavering, 0.0])
        self.score_max = float(self.prov_priority.max() + self.songbun_priority.max()
                               + p.priority_jitter) + 1e-6
        self.prov_china = np.array([math.exp(-pr.distance_to_border_km / p.china_range_km)
                                    for pr in PROVINCES])
        hh = sim.households
        farm = (hh.flags & H_FARM) != 0
        self.farm_share = np.array([farm[hh.province == k].mean() if np.any(hh.province == k)
                                    else 0.38 for k in range(N_PROV)])
        # per-month series derived from the levers (no state to carry)
        lv = sim.levers
        self.tol_ref = _tolerance_reference(lv["market_tolerance"], p.tolerance_memory)
        redenom = lv["redenomination"] > 0.5
        self.won_factor = np.where(np.cumsum(redenom) > 0, 100.0, 1.0)  # old won per won
        self.mg_birth = (p.market_gen_birth_year - 1900) * 12
        n = hh.n
        # The initial population is sorted by household and its households by cell: the
        # aggregation passes run in parallel over that prefix (checked each month, with a
        # serial fallback) and fix up later households, movers and the born by household
        # ranges.
        self.p0 = int(sim.persons.n)
        self.h0 = int(n)
        # households whose members lie in household order in the person prefix [0, p0)
        # (the initial ones; after a reorder, all)
        self.hp0 = int(n)
        # per chunk of the prefix, room for the indices of people in a household >= hp0
        # (moved since the last reorder); grown when a chunk has more
        self.movers_per_chunk = 64
        self.movers = np.zeros(0, dtype=np.int32)
        self.entry_res = np.zeros(hh.capacity, dtype=np.float32)
        self.entry_res[:n] = -np.log(rng.uniform_lane(sim.seed, "economy_household", 0,
                                                      np.arange(n)))
        self.shortfall = np.zeros(hh.capacity, dtype=np.float32)
        self.hh_u = np.zeros(hh.capacity, dtype=np.float32)
        self._fill_hh_u(sim.seed, 0, n)
        self.n_seen = n
        self._hist_c = None  # the household scan's histograms, one row per chunk (step)
        # the month's work arrays, set by _work during a step (Sim.household_work)
        self.need = self.hbits = self.power = self.n_workers = self.event = self.hx = None

    def reordered(self, sim, new_index) -> None:
        """After :meth:`talbuk.sim.Sim.reorder` the whole table is sorted by household: the
        parallel prefix of the aggregation covers everyone (households created since the
        start too: only people who move to a new household after it come as movers)."""
        self.p0 = int(sim.persons.n)
        self.hp0 = int(sim.households.n)

    def _fill_hh_u(self, seed: int, lo: int, hi: int) -> None:
        """Fixed per-household triage jitter: the same draw as the prepass gives new ones."""
        if hi > lo:
            u = rng.uniform_lane(seed, "economy_household", 0, np.arange(lo, hi), sub=7, lane=2)
            self.hh_u[lo:hi] = u

    def _work(self, sim) -> None:
        """The month's per-household work arrays, from the modules' shared buffer
        (:meth:`talbuk.sim.Sim.household_work`): each is written for every household before
        it is read within the step (need, members' bits, trading power and workers by the
        sum of members; the triage score by the household scan; the event by the household
        pass)."""
        (self.m_nw,  # the information module's people 10+ and watchers (see step): first, at
         # the offset of its own first work array
         self.need,  # adult-equivalent need of the members
         self.hbits,  # B_* bits of the members
         self.power,  # trading power of the members
         self.n_workers,
         self.event,  # EV_* of the household pass, read by the person pass
         self.hx,  # triage score in histogram units
         ) = sim.household_work(np.int32, np.float32, np.uint8, np.float32, np.int16, np.uint8,
                                np.float64)

    def _grow(self, hcap: int) -> None:
        if self.entry_res.shape[0] < hcap:
            for name in ("entry_res", "shortfall", "hh_u"):
                old = getattr(self, name)
                new = np.zeros(hcap, dtype=old.dtype)
                new[: old.shape[0]] = old
                setattr(self, name, new)

    def checkpoint_state(self) -> dict:
        return {"entry_res": self.entry_res[: self.n_seen].copy(),
                "shortfall": self.shortfall[: self.n_seen].copy(),
                "hh_u": self.hh_u[: self.n_seen].copy(),
                "n_seen": np.array([self.n_seen], dtype=np.int64)}

    def restore_state(self, arrays: dict) -> None:
        n = int(arrays["n_seen"][0])
        self._grow(max(n, 1))
        self.entry_res[:] = 0
        self.shortfall[:] = 0
        self.entry_res[:n] = arrays["entry_res"]
        self.shortfall[:n] = arrays["shortfall"]
        self.hh_u[:] = 0
        self.hh_u[:n] = arrays["hh_u"]
        self.n_seen = n

    # ------------------------------------------------------------------ month
    def pds_coverage(self, grams: float) -> tuple[float, float]:
        """(share of dependents covered, grams a covered dependent receives)."""
        p = self.params
        s = min(1.0, max(0.0, (grams - p.pds_floor_grams) / (p.pds_full_grams - p.pds_floor_grams)))
        ration = min(grams / s, p.pds_norm_grams) if s > 0 else 0.0
        return s, ration

    def residual_food(self, fi: float, farm_need: float, dep_need: float, cover: float,
                      ration: float) -> float:
        """Grain per need left for PDS dependents who get no ration: national supply minus
        what farm households eat and what the PDS distributes, capped at 1."""
        p = self.params
        farm_food = farm_need * min(p.farm_cap, p.farm_advantage * fi)
        pds_food = dep_need * cover * ration / p.need_grams
        uncovered = dep_need * (1.0 - cover)
        if uncovered <= 1e-9:
            return 0.0
        left = fi * (farm_need + dep_need) - farm_food - pds_food
        return float(min(1.0, max(0.0, left / uncovered)))

    def step(self, sim) -> None:
        p = self.params
        persons, hh = sim.persons, sim.households
        k = sim.t_index
        t = sim.month
        nh = hh.n
        self._grow(hh.capacity)
        self._work(sim)
        fi = max(sim.lever("food_index"), 0.05)
        tol = sim.lever("market_tolerance")
        rate = sim.lever("exchange_rate")
        won_factor = float(self.won_factor[k])
        rate_old = rate * won_factor
        redenom = sim.lever("redenomination") > 0.5
        trade = sim.lever("trade_with_china")
        cover, ration = self.pds_coverage(sim.lever("pds_grams"))
        drop = max(0.0, float(self.tol_ref[k]) - tol)
        price = p.price0_usd * fi ** (-p.price_elasticity)
        wage = max(p.wage_floor_usd, p.wage_1990_usd * 7.0 / rate_old)
        lr = math.log(800000.0 / 7.0)
        dollar_share = min(p.dollar_share_max, max(0.0, p.dollar_share_max * math.log(max(rate_old, 7.0) / 7.0) / lr))

        # 1. persons -> households: parallel over the sorted initial population, then the
        #    fix-up of chunk-boundary households, movers and the born, split over household
        #    ranges (each household's sums in person order, whatever the threads)
        n = persons.n
        p0 = min(self.p0, n)
        pb0 = sim.chunk_bounds(p0)
        hb = sim.chunk_bounds(nh)
        nc0 = pb0.size - 1
        first_h = np.empty(nc0, dtype=np.int64)
        last_h = np.empty(nc0, dtype=np.int64)
        defer_end = np.empty(nc0, dtype=np.int64)
        n_movers = np.empty(nc0, dtype=np.int64)
        ok = np.empty(nc0, dtype=np.bool_)
        # The same pass counts, for the information module, each household's people 10+ at
        # home and its watchers of foreign media (a pass of its own over everyone saved):
        # the module publishes what it counts (sim.shared["media_count_params"]: watching
        # threshold, minimum age in months) and reads the counts in its step, which comes
        # next (sim.shared["media_counts"]). Integer counts: the same as its own.
        mcp = sim.shared.get("media_count_params")
        watching_min, media_age_m = (np.float32(mcp[0]), np.int64(mcp[1])) if mcp else (
            np.float32(0.0), np.int64(0))
        args = (np.int64(t), persons.stage, persons.birth_month, persons.sex, persons.household,
                persons.songbun, persons.flags, persons.market_skill, self.need_m,
                self.worker_m, np.int64(self.mg_birth), float(p.skill_floor),
                float(p.mg_income_bonus), self.need, self.hbits, self.power, self.n_workers,
                persons.media_exposure, watching_min, media_age_m, self.m_nw)
        while True:
            if self.movers.shape[0] < nc0 * self.movers_per_chunk:
                self.movers = np.zeros(nc0 * self.movers_per_chunk, dtype=np.int32)
            _aggregate_par(np.int64(self.hp0), hb, pb0, sim.chunk_groups(nc0), first_h, last_h,
                           defer_end, self.movers, np.int64(self.movers_per_chunk), n_movers, ok,
                           *args)
            most = int(n_movers.max()) if nc0 else 0
            if most <= self.movers_per_chunk:
                break
            # a chunk had more movers than room: grow and redo the pass (it starts from zero)
            self.movers_per_chunk = 2 * most
        if _prefix_in_order(pb0, first_h, last_h, ok):
            _aggregate_fixup_par(np.int64(p0), sim.parts(nh, (n - p0) * FIXUP_WORK_PER_PERSON),
                                 pb0, first_h, defer_end,
                                 self.movers, np.int64(self.movers_per_chunk), n_movers, *args)
        else:
            _aggregate(nh, *args)  # the prefix was not sorted: plain serial scatter
        if mcp:
            sim.shared["media_counts"] = (sim.t_index, self.m_nw[:nh])
        # 2. households: new ones (serial), then cell trading shares, triage scores and
        #    histogram, need sums (parallel, exact: integer counts, sums of float32 needs)
        n_cells = sim.cell_province.shape[0]
        _new_households(np.int64(t), sim.seed_key, np.int64(self.n_seen), hh.flags, hh.province,
                        self.farm_share, self.entry_res, self.shortfall, self.hh_u)
        self.n_seen = nh
        cell_share = np.zeros(n_cells, dtype=np.float32)
        cell_n = np.zeros(n_cells, dtype=np.int32)
        cell_tr = np.zeros(n_cells, dtype=np.int32)
        nch = hb.size - 1
        # every chunk writes all its bins; kept from month to month (a megabyte at 256
        # chunks: made each month, its pages were fresh mappings to fault in)
        if self._hist_c is None or self._hist_c.shape[0] != nch:
            self._hist_c = np.empty((nch, N_BINS), dtype=np.float64)
        hist_c = self._hist_c
        need_c = np.zeros((nch, 2), dtype=np.float64)  # farm, PDS-dependent
        first_c = np.empty((nch, 4), dtype=np.int64)  # first cell, its households, trading, last cell
        ok_c = np.empty(nch, dtype=np.bool_)
        _household_scan(np.int64(self.h0), hh.flags, hh.province, hh.cell, hh.members,
                        self.hh_u, self.need, self.hbits, self.prov_priority, self.songbun_priority,
                        float(p.priority_jitter), float(self.score_max), self.hx, hb,
                        sim.chunk_groups(hb.size - 1), hist_c,
                        need_c, cell_n, cell_tr, first_c, ok_c)
        _cell_shares(np.int64(self.h0), hh.flags, hh.cell, hh.members, first_c, ok_c, cell_n,
                     cell_tr, cell_share)
        need_sums = need_c.sum(axis=0)
        cut_bin, cut_frac = _triage_cut(hist_c, float(cover))
        residual = self.residual_food(fi, need_sums[0], need_sums[1], cover, ration)
        # 3. households: food, income, savings, entry and quitting (parallel)
        bounds = hb
        hcounts = np.zeros((bounds.size - 1, N_HCOUNTS), dtype=np.float64)
        prov_fed = np.zeros((bounds.size - 1, N_PROV), dtype=np.float64)
        hp = np.array([
            p.farm_advantage, p.farm_cap, ration / p.need_grams, p.pds_fed_fraction * p.need_grams,
            ration, p.informal_share * residual, price, wage, p.income_base_usd, p.income_tol_floor,
            p.china_gain * trade, p.capital_gain, p.capital_scale_usd, p.save_rate,
            p.drawdown_rate, dollar_share, rate, fi, tol, p.entry_base, p.necessity,
            p.imitation, p.men_only_entry, p.mg_entry_boost, p.quit_base + p.crackdown_quit * drop,
            p.redenomination_cap_old_won,
            p.redenomination_excess_kept, 1.0 if redenom else 0.0, price / p.price0_usd,
            1.0 - p.savings_spend,
        ], dtype=np.float64)
        _household_kernel(np.int64(t), sim.seed_key, hh.flags, hh.province, hh.cell, hh.members,
                          hh.savings_won, hh.savings_usd, hh.state_income, hh.market_income,
                          self.need, self.hbits, self.power, self.n_workers,
                          self.hx, self.entry_res, self.shortfall, self.event, cell_share, np.int64(cut_bin),
                          float(cut_frac), self.prov_china, hp, bounds,
                          sim.chunk_groups(bounds.size - 1), hcounts, prov_fed,
                          np.int64(log1p_mode()))
        # 4. persons: hunger, traders, skill, market generation (parallel)
        pb = sim.chunk_bounds(n)
        pcounts = np.zeros((pb.size - 1, N_PCOUNTS), dtype=np.float64)
        prov_hungry = np.zeros((pb.size - 1, N_PROV), dtype=np.float64)
        pp = np.array([p.hunger_threshold, p.hunger_severity, p.hunger_smoothing, p.hungry_level,
                       p.p_trader_woman, p.p_trader_man, p.mg_trader_boost, p.skill_learn,
                       p.skill_forget], dtype=np.float64)
        _person_kernel(np.int64(t), sim.seed_key, persons.rng_id, persons.stage,
                       persons.birth_month, persons.sex, persons.household, persons.province,
                       persons.flags, persons.hunger, persons.market_skill, hh.flags,
                       self.shortfall, self.event, self.worker_m, np.int64(self.mg_birth), pp, pb,
                       sim.chunk_groups(pb.size - 1), pcounts, prov_hungry)
        hc = hcounts.sum(axis=0)
        pc = pcounts.sum(axis=0)
        s = sim.scale
        pop = max(pc[P_POP], 1.0)
        nhh = max(hc[K_HH], 1.0)
        sim.record("pds_share", hc[K_PDS_FED] / pop)
        sim.record("trading_share", hc[K_TRADING_HH] / nhh)
        sim.record("trader_share_women", pc[P_TRADER_W] / max(pc[P_WORKER_W], 1.0))
        sim.record("trader_share_men", pc[P_TRADER_M] / max(pc[P_WORKER_M], 1.0))
        sim.record("trader_share_market_gen", pc[P_TRADER_MG] / max(pc[P_WORKER_MG], 1.0))
        income = hc[K_MARKET_USD] + hc[K_STATE_USD]
        sim.record("market_income_share", hc[K_MARKET_USD] / income if income > 0 else 0.0)
        sim.record("hungry_share", pc[P_HUNGRY] / pop)
        sim.record("hunger_mean", pc[P_HUNGER_SUM] / pop)
        sim.record("savings_usd_mean", hc[K_SAV_USD] / nhh)
        sim.record("dollar_savings_mean", hc[K_DOLLARS] / nhh)
        sim.record("market_income_usd_mean", hc[K_MARKET_USD] / nhh)
        sim.record("food_price_usd", price)
        sim.record("food_bought_share", hc[K_FOOD_BOUGHT] / max(hc[K_NEED], 1e-9))
        sim.record("market_gen_share", pc[P_MG] / pop)
        sim.record("redenomination_loss_usd", hc[K_REDENOM] * s)
        # no reference to the shared work buffer past the step (Sim.household_work)
        self.need = self.hbits = self.power = self.n_workers = self.event = self.hx = None
        self.m_nw = None
        sim.record_province("hungry_people", prov_hungry.sum(axis=0) * s)
        sim.record_province("pds_fed", prov_fed.sum(axis=0) * s)


#: Weight of one person of the fix-up (born, movers) against one item of a plain scan, for
#: ``sim.parts``: a scattered add into a household far away in memory costs about as much as
#: a dozen scanned items, so the fix-up splits from about 65,000 such people instead of a
#: million (set by hand: with 424,000 born at scale 10, two ranges took 7.2 ms against 10.1 ms
#: for one; results never depend on it).
FIXUP_WORK_PER_PERSON = 16


# ---------------------------------------------------------------------- kernels
# The sum of one person into their household (need by age, lowest songbun, workers, women,
# market generation, traders and their trading power) is ``_add_person``, used by the three
# scatter passes below. numba inlines it in its IR (``inline="always"``): an ordinary call
# would pass the arrays with reference counting, which costs more than the sum itself.
@nb.njit(inline="always", cache=True)
def _add_person(i, h, t, stage, birth_month, sex, songbun, flags, skill, need_m, worker_m,
                mg_birth, skill_floor, mg_bonus, need, hbits, power, n_workers, amax,
                exposure, watching_min, media_age_m, m_nw):
    # Without branches on the person's traits: who is a worker, a woman, of the market
    # generation or a trader is close to a coin toss from one person to the next, and a
    # mispredicted branch costs more than the arithmetic. Every household field is written
    # whatever the person; adding 0 leaves a sum unchanged, so the sums are those of the
    # branching form, bit for bit.
    i = np.uint64(i)  # unsigned indices: numba adds no test for negative ones
    h = np.uint64(h)
    st = stage[i]
    bm = birth_month[i]
    a = t - bm
    if a > amax:
        a = amax
    a = np.uint64(a)
    need[h] += need_m[a]
    sb = songbun[i]
    bits = (1 << sb) if sb < 3 else B_SB_OTHER
    wk = np.int64(worker_m[a] != 0) & np.int64(st <= PREPARING)
    mg = np.int64(bm >= mg_birth)
    tr = np.int64((flags[i] & F_TRADER) != 0)
    fem = np.int64(sex[i] == SEX_FEMALE)
    bits |= -wk & ((fem * B_WOMAN) | (mg * B_MG) | (tr * B_TRADER))
    n_workers[h] += wk
    w = skill_floor + skill[i]
    w *= (1.0 + mg_bonus) if mg else 1.0
    power[h] += w * (wk & tr)
    hbits[h] |= bits
    m_nw[h] += count_term(st, t - bm, flags[i], exposure[i], watching_min, media_age_m)


@nb.njit(cache=True)
def _aggregate(nh, t, stage, birth_month, sex, household, songbun, flags, skill, need_m,
               worker_m, mg_birth, skill_floor, mg_bonus, need, hbits, power, n_workers,
               exposure, watching_min, media_age_m, m_nw):
    """Serial scatter of persons into household sums (need, traders, workers, songbun; the
    information module's counts of people 10+ and watchers, see Economy.step)."""
    amax = need_m.shape[0] - 1
    for h in range(nh):
        need[h] = 0.0
        hbits[h] = 0
        power[h] = 0.0
        n_workers[h] = 0
        m_nw[h] = 0
    for i in range(stage.shape[0]):
        st = stage[i]
        if not in_country(st):
            continue
        h = household[i]
        _add_person(i, h, t, stage, birth_month, sex, songbun, flags, skill, need_m, worker_m,
                    mg_birth, skill_floor, mg_bonus, need, hbits, power, n_workers, amax,
                    exposure, watching_min, media_age_m, m_nw)


@nb.njit(parallel=True, cache=True)
def _aggregate_par(h0, hbounds, pbounds, groups, first_h, last_h, defer_end, movers, mcap,
                   n_movers, ok, t, stage, birth_month, sex, household, songbun, flags, skill, need_m,
                   worker_m, mg_birth, skill_floor, mg_bonus, need, hbits, power, n_workers,
                   exposure, watching_min, media_age_m, m_nw):
    """Parallel part of the scatter, over the initial population ``[0, pbounds[-1])``.

    Its members of households ``< h0`` come in household order, so a chunk owns every
    household it meets except its first one (shared with the chunk before), which it defers
    to :func:`_aggregate_fixup_par` together with members who moved to a later household
    (chunk ``c`` lists them in ``movers[c * mcap:]``; ``n_movers[c]`` counts them all, more
    than ``mcap`` meaning the caller must grow the list and run the pass again).
    Each household's sums are thereby still formed in person-index order.

    Per block of BLOCK people, each person's terms of the sums (those of
    :func:`_add_person`, the same operations) are first computed in a loop the compiler
    vectorizes, then added into the households in a scalar loop, in person order.
    """
    amax = need_m.shape[0] - 1
    mg_w = 1.0 + mg_bonus
    # need weights and working age by comparisons of the age in months (the classes of the
    # tables need_m and worker_m, whose values they take)
    nd_child = need_m[12 * NEED_CHILD_UNDER - 1]
    nd_young = need_m[12 * NEED_YOUNG_UNDER - 1]
    nd_adult = need_m[12 * NEED_YOUNG_UNDER]
    nd_old = need_m[12 * NEED_OLD_FROM]
    child_m = np.uint64(12 * NEED_CHILD_UNDER)
    young_m = np.uint64(12 * NEED_YOUNG_UNDER)
    old_m = np.uint64(12 * NEED_OLD_FROM)
    work0_m = np.uint64(12 * WORK_FROM)
    work1_m = np.uint64(12 * (WORK_TO + 1))
    for c in nb.prange(hbounds.shape[0] - 1):
        for h in range(hbounds[c], hbounds[c + 1]):
            need[h] = 0.0
            hbits[h] = 0
            power[h] = 0.0
            n_workers[h] = 0
            m_nw[h] = 0
    for grp in nb.prange(groups.shape[0] - 1):
        nbuf = group_rows(pbounds, groups, grp, BLOCK)  # block buffers: the group's longest chunk
        hh_b = np.zeros(nbuf, dtype=np.int64)  # household, -1 for people outside the country
        need_b = np.zeros(nbuf, dtype=np.float32)
        power_b = np.zeros(nbuf, dtype=np.float64)
        bits_b = np.zeros(nbuf, dtype=np.int64)
        wk_b = np.zeros(nbuf, dtype=np.int64)
        mnw_b = np.zeros(nbuf, dtype=np.int32)  # the information module's counts (10+, watching)
        for c in range(groups[grp], groups[grp + 1]):
            hf = np.int64(-1)
            prev = np.int64(-1)
            dend = pbounds[c]
            nm = 0
            good = np.int64(1)  # an integer: a boolean would make numba drop noalias
            for b0 in range(pbounds[c], pbounds[c + 1], BLOCK):
                b1 = min(b0 + BLOCK, pbounds[c + 1])
                # unsigned indices: numba adds no test for negative ones
                ub0 = np.uint64(b0)
                for i in range(ub0, np.uint64(b1)):
                    j = i - ub0
                    st = stage[i]
                    act = in_country(st)
                    hh_b[j] = np.int64(household[i]) if act else np.int64(-1)
                    bm = birth_month[i]
                    a = t - bm
                    a = a if a < amax else amax
                    a = a if act else 0
                    a = np.uint64(a)
                    need_b[j] = nd_child if a < child_m else (
                        nd_young if a < young_m else (nd_old if a >= old_m else nd_adult))
                    sb = songbun[i]
                    bits = np.int64(1 << sb) if sb < 3 else np.int64(B_SB_OTHER)
                    wk = np.int64((a >= work0_m) & (a < work1_m)) & np.int64(st <= PREPARING)
                    mg = np.int64(bm >= mg_birth)
                    tr = np.int64((flags[i] & F_TRADER) != 0)
                    fem = np.int64(sex[i] == SEX_FEMALE)
                    bits |= -wk & ((fem * B_WOMAN) | (mg * B_MG) | (tr * B_TRADER))
                    bits_b[j] = bits
                    wk_b[j] = wk
                    w = skill_floor + skill[i]
                    w = w * mg_w if mg else w  # (w * 1.0 is w)
                    power_b[j] = w * (wk & tr)
                    mnw_b[j] = count_term(st, t - bm, flags[i], exposure[i], watching_min,
                                          media_age_m)
                for j in range(b1 - b0):
                    hh = hh_b[j]
                    if hh < 0:
                        continue
                    if hh >= h0:
                        if nm < mcap:
                            movers[c * mcap + nm] = b0 + j
                        nm += 1
                        continue
                    if hh < prev:
                        good = 0
                    prev = hh
                    if hf < 0:
                        hf = hh
                    if hh == hf:
                        dend = b0 + j + 1
                        continue
                    uh = np.uint64(hh)
                    need[uh] += need_b[j]
                    hbits[uh] |= bits_b[j]
                    n_workers[uh] += wk_b[j]
                    power[uh] += power_b[j]
                    m_nw[uh] += mnw_b[j]
            first_h[c] = hf
            last_h[c] = prev
            defer_end[c] = dend
            n_movers[c] = nm
            ok[c] = good != 0


@nb.njit(cache=True)
def _prefix_in_order(pbounds, first_h, last_h, ok):
    """True if every chunk of the initial population met its households in order."""
    prev = -1
    for c in range(pbounds.shape[0] - 1):
        if not ok[c]:
            return False
        if first_h[c] >= 0:
            if first_h[c] < prev:
                return False
            prev = last_h[c]
    return True


@nb.njit(parallel=True, cache=True)
def _aggregate_fixup_par(p0, hparts, pbounds, first_h, defer_end, movers, mcap, n_movers,
                         t, stage, birth_month, sex, household, songbun, flags, skill, need_m,
                         worker_m, mg_birth, skill_floor, mg_bonus, need, hbits, power, n_workers,
                         exposure, watching_min, media_age_m, m_nw):
    """Rest of the scatter (after :func:`_aggregate_par`, once :func:`_prefix_in_order`):
    the chunks' first households, the initial people who moved to a new household, and the
    born. Each range of ``hparts`` owns the households in it and scans the three lists in
    the same order, so every household's sums are formed in person order, whatever the
    number of ranges (the scans are repeated per range; the scattered adds are not)."""
    amax = need_m.shape[0] - 1
    nc = pbounds.shape[0] - 1
    n = stage.shape[0]
    for r in nb.prange(hparts.shape[0] - 1):
        hlo = hparts[r]
        hhi = hparts[r + 1]
        for c in range(nc):
            hf = first_h[c]
            if hf < hlo or hf >= hhi:
                continue
            for i in range(pbounds[c], defer_end[c]):
                if in_country(stage[i]) and household[i] == hf:
                    _add_person(i, hf, t, stage, birth_month, sex, songbun, flags, skill,
                                need_m, worker_m, mg_birth, skill_floor, mg_bonus, need, hbits,
                                power, n_workers, amax, exposure, watching_min, media_age_m,
                                m_nw)
        for c in range(nc):
            base = c * mcap
            for j in range(n_movers[c]):
                i = movers[base + j]
                h = household[i]
                if h >= hlo and h < hhi:
                    _add_person(i, h, t, stage, birth_month, sex, songbun, flags, skill,
                                need_m, worker_m, mg_birth, skill_floor, mg_bonus, need, hbits,
                                power, n_workers, amax, exposure, watching_min, media_age_m,
                                m_nw)
        for i in range(p0, n):
            if in_country(stage[i]):
                h = household[i]
                if h >= hlo and h < hhi:
                    _add_person(i, h, t, stage, birth_month, sex, songbun, flags, skill,
                                need_m, worker_m, mg_birth, skill_floor, mg_bonus, need, hbits,
                                power, n_workers, amax, exposure, watching_min, media_age_m,
                                m_nw)


@nb.njit(cache=True)
def _new_households(t, seed, n_seen, flags, province, farm_share, entry_res, shortfall, hh_u):
    """Households founded since last month: farm flag, entry threshold, triage jitter."""
    tm = np.uint64(t)
    for h in range(n_seen, flags.shape[0]):
        u0, u1, u2, _u3 = rng.uniform4(seed, _HH, tm, np.uint64(h), np.uint64(1))
        if u0 < farm_share[province[h]]:
            flags[h] |= H_FARM
        entry_res[h] = -math.log(u1)
        shortfall[h] = 0.0
        hh_u[h] = u2


#: Fixed-point scale of the need sums of the household scan. A household's need is a float32
#: of at least 0.1 (the smallest weight of a person: EconomyParams bounds), hence a multiple
#: of 2**-27; a chunk's sum in float64 is then exact whatever the order (below 2**26), and so
#: is the integer sum of need * NEED_Q: both give the same bits. A chunk where a need is not
#: such a multiple (outside the bounds) is summed again in float64, in order.
NEED_Q = np.float64(1 << 27)


@nb.njit(parallel=True, cache=True)
def _household_scan(h0, flags, province, cell, members, hh_u, need, hbits, prov_priority,
                    songbun_priority, jitter, score_max, hx, hbounds, groups, hist_c, need_c,
                    cell_n, cell_tr, first_c, ok_c):
    """Per chunk of households: triage scores and histogram, need sums, cell counts.

    Initial households (``< h0``) come in cell order: a chunk counts every cell it meets
    except its first (kept apart, added by :func:`_cell_shares`); later households are
    counted there too. All sums here are exact (integers; float32 needs summed in float64,
    here as integers, NEED_Q).

    Per block of BLOCK households, a loop the compiler vectorizes computes the scores, need
    sums and each household's histogram bin and cell; a scalar loop then adds the bins and
    counts the cells (runs of one cell are counted in registers).
    """
    q = NEED_Q
    # score of the lowest songbun of the members from bits 0-2 of hbits (songbun 0, 1, 2;
    # none of them: as wavering), a table rather than a chain of tests
    sb_score = np.empty(8, dtype=np.float64)
    for k in range(8):
        sb = 0 if k & 1 else (1 if k & 2 else (2 if k & 4 else 1))
        sb_score[k] = songbun_priority[sb]
    uh0 = np.uint64(max(h0, 0))
    for grp in nb.prange(groups.shape[0] - 1):
        hist = np.zeros(N_BINS + 1, dtype=np.int64)  # the last bin: households not scored
        nbuf = group_rows(hbounds, groups, grp, BLOCK)  # block buffers: the group's longest chunk
        bin_b = np.zeros(nbuf, dtype=np.int64)
        m_b = np.zeros(nbuf, dtype=np.int64)
        cc_b = np.zeros(nbuf, dtype=np.int64)
        tr_b = np.zeros(nbuf, dtype=np.int64)
        for c in range(groups[grp], groups[grp + 1]):
            fc = -1
            prevc = -1
            fn = 0
            ftr = 0
            good = np.int64(1)  # integers, not booleans: numba takes a boolean variable for a
            exact = np.int64(1)  # possible alias of an array, and then marks no array noalias
            nf = np.int64(0)
            nd = np.int64(0)
            run_c = -1  # the cell being counted, its households and trading ones
            run_n = 0
            run_tr = 0
            for k in range(N_BINS + 1):
                hist[k] = 0
            for b0 in range(hbounds[c], hbounds[c + 1], BLOCK):
                b1 = min(b0 + BLOCK, hbounds[c + 1])
                # unsigned indices: numba adds no test for negative ones
                ub0 = np.uint64(b0)
                for hu in range(ub0, np.uint64(b1)):
                    j = hu - ub0
                    m = members[hu]
                    live = m > 0
                    fl = flags[hu]
                    farm = (fl & H_FARM) != 0
                    dep = live & (not farm)
                    v = np.float64(need[hu])
                    vq = v * q
                    iv = np.int64(vq)
                    exact &= np.int64(np.float64(iv) == vq)
                    nf += iv if live & farm else np.int64(0)
                    nd += iv if dep else np.int64(0)
                    # cell of an initial household (-1: not counted here)
                    cc_b[j] = np.int64(cell[hu]) if live & (hu < uh0) else np.int64(-1)
                    tr_b[j] = np.int64((fl & H_TRADING) != 0)
                    # triage score: province, lowest songbun of the members, fixed jitter
                    pr = province[hu] if live else np.uint8(0)
                    s = prov_priority[pr] + sb_score[hbits[hu] & 7] + jitter * hh_u[hu]
                    x = s / score_max * N_BINS
                    x0 = hx[hu]
                    hx[hu] = x if dep else x0
                    b = int(x) if dep else N_BINS
                    b = N_BINS - 1 if b > N_BINS - 1 else b
                    bin_b[j] = b if dep else N_BINS
                    m_b[j] = np.int64(m)
                for j in range(b1 - b0):
                    hist[bin_b[j]] += m_b[j]
                    cc = cc_b[j]
                    if cc < 0:
                        continue
                    tr = tr_b[j]
                    if cc < prevc:
                        good = 0
                    prevc = cc
                    if fc < 0:
                        fc = cc
                    if cc == fc:
                        fn += 1
                        ftr += tr
                    else:
                        if cc != run_c:
                            if run_c >= 0:
                                cell_n[run_c] += run_n
                                cell_tr[run_c] += run_tr
                            run_c = cc
                            run_n = 0
                            run_tr = 0
                        run_n += 1
                        run_tr += tr
            if run_c >= 0:
                cell_n[run_c] += run_n
                cell_tr[run_c] += run_tr
            if exact != 0:
                need_c[c, 0] = nf / q
                need_c[c, 1] = nd / q
            else:  # a need off the 2**-27 grid: the float64 sums in order
                snf = 0.0
                snd = 0.0
                for h in range(hbounds[c], hbounds[c + 1]):
                    if members[h] > 0:
                        if flags[h] & H_FARM:
                            snf += need[h]
                        else:
                            snd += need[h]
                need_c[c, 0] = snf
                need_c[c, 1] = snd
            for k in range(N_BINS):
                hist_c[c, k] = hist[k]
            first_c[c, 0] = fc
            first_c[c, 1] = fn
            first_c[c, 2] = ftr
            first_c[c, 3] = prevc
            ok_c[c] = good != 0


@nb.njit(cache=True)
def _cell_shares(h0, flags, cell, members, first_c, ok_c, cell_n, cell_tr, cell_share):
    """Finish the cell counts (chunks' first cells, new households) and form the shares."""
    nh = flags.shape[0]
    good = True
    prev = -1
    for c in range(first_c.shape[0]):
        if not ok_c[c]:
            good = False
        if first_c[c, 0] >= 0:
            if first_c[c, 0] < prev:
                good = False
            prev = first_c[c, 3]
    if good:
        for c in range(first_c.shape[0]):
            if first_c[c, 0] >= 0:
                cell_n[first_c[c, 0]] += first_c[c, 1]
                cell_tr[first_c[c, 0]] += first_c[c, 2]
        lo = min(h0, nh)
    else:  # households out of cell order: count them all here
        cell_n[:] = 0
        cell_tr[:] = 0
        lo = 0
    for h in range(lo, nh):
        if members[h] > 0:
            cc = cell[h]
            cell_n[cc] += 1
            if flags[h] & H_TRADING:
                cell_tr[cc] += 1
    for c in range(cell_share.shape[0]):
        if cell_n[c] > 0:
            cell_share[c] = np.float32(cell_tr[c]) / np.float32(cell_n[c])


@nb.njit(cache=True)
def _triage_cut(hist_c, cover):
    """Bin and within-bin fraction above which dependents are covered (top share ``cover``),
    from the chunks' histograms ``hist_c`` (people by bin, chunk by chunk: integer counts in
    float64, so their sums are exact in any order). Compiled: a Python loop over the 512 bins
    cost a small population's month about a quarter of a millisecond."""
    nb_ = hist_c.shape[1]
    hist = np.zeros(nb_, dtype=np.float64)
    for c in range(hist_c.shape[0]):
        for b in range(nb_):
            hist[b] += hist_c[c, b]
    total = 0.0
    for b in range(nb_):
        total += hist[b]
    if cover >= 1.0 or total <= 0:
        return -1, 1.0
    if cover <= 0.0:
        return N_BINS, 0.0
    target = cover * total
    acc = 0.0
    for b in range(N_BINS - 1, -1, -1):
        if acc + hist[b] >= target:
            frac = (target - acc) / hist[b] if hist[b] > 0 else 0.0
            return b, float(frac)
        acc += hist[b]
    return -1, 1.0


@nb.njit(inline="always", cache=True)
def entry_hazard(gap, cell_share, tolerance, has_woman, has_mg, entry_base, necessity,
                 imitation, men_only_entry, mg_entry_boost):
    """Monthly hazard that a non-trading household starts trading (see module docstring).

    Selects rather than branches: :func:`_household_kernel` calls it in its SIMD loop."""
    hz = entry_base * tolerance * (1.0 + necessity * gap) * (1.0 + imitation * cell_share)
    hz = hz if has_woman else hz * men_only_entry
    return hz * (1.0 + mg_entry_boost) if has_mg else hz


#: People (or households) per block of the person and household kernels: a block is first
#: computed in a loop the compiler turns into SIMD code, then its rare scalar work (random
#: draws of those who enter the markets, logarithms) is done for the few who need it.
BLOCK = 1024
#: Fixed-point scale of the person pass's hunger sum (``hunger_mean``): an integer sum is
#: exact and independent of the order, so the loop vectorizes (a float sum in order would
#: not). Hunger lies in [0, 1] and is 0 or at least 1e-4, so each term is truncated by less
#: than 2**-36 (a relative 1.5e-7 at worst); int64 holds 134 million people at hunger 1.
HSUM_Q = np.float64(1 << 36)


# --- log1p on SIMD lanes, bit for bit glibc's ------------------------------------------
# The capital effect takes log1p of every trading household's savings: ~460,000 calls a
# month at scale 10, 4.4 ms in glibc's scalar log1p. _log1p_block computes a block of them
# in loops LLVM vectorises, with glibc's own algorithm (sysdeps/ieee754/dbl-64/s_log1p.c,
# fdlibm's: reduction by the high word, then a polynomial), written with selects instead of
# branches, so that each result has the bits of ``math.log1p``. glibc's x86_64 libm (2.36 as
# built by Debian, at least) chooses at load time between that C compiled for SSE2 and the
# same C compiled with FMA (on CPUs with FMA and AVX2), where GCC fused the products into
# the following additions: the two differ by 1 ulp for about one argument in 3,600 (128
# of month 216's 459,889 at scale 10), so both are written out (``fused``) and
# :func:`log1p_mode` finds, once per process, which of them this process's ``math.log1p``
# is, by comparing them on 64,518 arguments. If neither matches (another libm), the kernel
# keeps the scalar ``math.log1p``.
_LN2_HI = 6.93147180369123816490e-01  # 3fe62e42 fee00000
_LN2_LO = 1.90821492927058770002e-10  # 3dea39ef 35793c76
_LP1 = 6.666666666666735130e-01  # 3FE55555 55555593
_LP2 = 3.999999999940941908e-01  # 3FD99999 9997FA04
_LP3 = 2.857142874366239149e-01  # 3FD24924 94229359
_LP4 = 2.222219843214978396e-01  # 3FCC71C5 1D8E78AF
_LP5 = 1.818357216161805012e-01  # 3FC74664 96CB03DE
_LP6 = 1.531383769920937332e-01  # 3FC39A09 D078C69F
_LP7 = 1.479819860511658591e-01  # 3FC2F112 DF3E5244


@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c`` rounded once (LLVM's ``llvm.fma``: an FMA instruction, SIMD in a loop)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(d, [d, d, d]),
                                            "llvm.fma.f64")
        return builder.call(fn, args)

    return sig, codegen


@nb.njit(inline="always", cache=True)
def _mad(a, b, c, fused):
    """``a * b + c``: rounded once (as glibc's FMA build) if ``fused``, else twice."""
    return _fma(a, b, c) if fused else a * b + c


@nb.njit(error_model="numpy", cache=True)
def _log1p_block(n, fused, xs, us, ws, kf, cs, hs, out):
    """``out[j] = math.log1p(xs[j])`` for ``j < n``, bit for bit (see above).

    SIMD for finite ``x >= 0`` (and -0.0); anything else (NaN, inf, x < 0) is passed to
    ``math.log1p`` in a scalar loop afterwards. ``us``, ``ws``, ``kf``, ``cs`` (float64) and
    ``hs`` (int64) are work buffers of at least ``n``. The bit manipulations go through int64
    views of float64 buffers (written in one loop, read in the next: numba has no scalar
    bitcast). ``error_model="numpy"``: no zero-divisor test (which would stop the
    vectorisation); the divisors, ``u >= 1`` and ``2 + f > 1.29``, are never 0."""
    xi = xs.view(np.int64)
    ui = us.view(np.int64)
    wi = ws.view(np.int64)
    for j in range(n):
        us[j] = 1.0 + xs[j]
    # reduction: 1 + x = 2**k * (1 + f), sqrt(2)/2 < 1 + f < sqrt(2), with the correction c
    # of the rounding of 1 + x; k = 0 and f = x (no reduction) below x < 0.41422
    for j in range(n):
        x = xs[j]
        xb = xi[j]
        hx = xb >> 32  # the high word (signed: -0.0 is negative)
        big = hx >= 0x43400000  # x >= 2**53: u = x, c = 0
        u = x if big else us[j]
        bits = xb if big else ui[j]
        hu = bits >> 32
        k = (hu >> 20) - 1023
        c = 1.0 - (u - x) if k > 0 else x - (u - 1.0)
        c = c / u
        c = 0.0 if big else c
        hu = hu & 0xfffff
        up = hu >= 0x6a09e  # normalise u / 2 rather than u
        k = k + 1 if up else k
        high = hu | (0x3fe00000 if up else 0x3ff00000)
        wi[j] = (high << 32) | (bits & 0xffffffff)
        hu = (0x100000 - hu) >> 2 if up else hu
        k0 = hx < 0x3FDA827A
        kf[j] = 0.0 if k0 else np.float64(k)
        cs[j] = c
        hs[j] = 1 if k0 else hu
    n_other = 0
    for j in range(n):
        x = xs[j]
        hx = xi[j] >> 32
        k0 = hx < 0x3FDA827A
        f = x if k0 else ws[j] - 1.0
        dk = kf[j]
        c = cs[j]
        kz = dk == 0.0
        hfsq = 0.5 * f * f
        ck = _mad(dk, _LN2_LO, c, fused)
        # |f| < 2**-20 (hu == 0)
        Rs = hfsq * (_fma(-f, 0.66666666666666666, 1.0) if fused
                     else 1.0 - 0.66666666666666666 * f)
        r_f0 = 0.0 if kz else _mad(dk, _LN2_HI, ck, fused)
        r_s = f - Rs if kz else _mad(dk, _LN2_HI, -((Rs - ck) - f), fused)
        r_h = r_f0 if f == 0.0 else r_s
        # the polynomial: log1p(f) = f - (hfsq - s * (hfsq + R)), s = f / (2 + f)
        s = f / (2.0 + f)
        z = s * s
        z2 = z * z
        z4 = z2 * z2
        z6 = z4 * z2
        R2 = _mad(z, _LP3, _LP2, fused)
        R3 = _mad(z, _LP5, _LP4, fused)
        R4 = _mad(z, _LP7, _LP6, fused)
        R = _mad(z6, R4, _mad(z4, R3, _mad(z, _LP1, z2 * R2, fused), fused), fused)
        t = s * (hfsq + R)
        r_p = f - (hfsq - t) if kz else _mad(dk, _LN2_HI, -((hfsq - (t + ck)) - f), fused)
        r = r_h if hs[j] == 0 else r_p
        # |x| < 2**-29: x - x * x / 2; |x| < 2**-54 (and +-0): x
        r_t = x if hx < 0x3c900000 else _mad(-(x * x), 0.5, x, fused)
        r = r_t if hx < 0x3e200000 else r
        n_other += np.int64(not ((x >= 0.0) & (x < np.inf)))
        out[j] = r
    if n_other > 0:
        for j in range(n):
            x = xs[j]
            if not ((x >= 0.0) & (x < np.inf)):
                out[j] = math.log1p(x)


@nb.njit(cache=True)
def _log1p_ref(x, out):
    for j in range(x.shape[0]):
        out[j] = math.log1p(x[j])


@nb.njit(cache=True)
def _log1p_by_blocks(x, out, fused):
    """:func:`_log1p_block` over an array, by blocks of BLOCK (for the test and the check)."""
    xs = np.empty(BLOCK)
    us = np.empty(BLOCK)
    ws = np.empty(BLOCK)
    kf = np.empty(BLOCK)
    cs = np.empty(BLOCK)
    hs = np.empty(BLOCK, dtype=np.int64)
    lg = np.empty(BLOCK)
    for b0 in range(0, x.shape[0], BLOCK):
        n = min(BLOCK, x.shape[0] - b0)
        for j in range(n):
            xs[j] = x[b0 + j]
        _log1p_block(n, fused, xs, us, ws, kf, cs, hs, lg)
        for j in range(n):
            out[b0 + j] = lg[j]


def log1p_check_args() -> np.ndarray:
    """Arguments on which :func:`log1p_mode` compares: savings-like, log-uniform and near the
    algorithm's branch points (2**-54, 2**-29, sqrt(2)-1, the normalisation, 2**53)."""
    rng_ = np.random.default_rng(20091130)
    pts = np.array([2.0 ** -54, 2.0 ** -29, math.sqrt(2.0) - 1.0, 0.41422, 1.0, 2.0 ** 53])
    return np.concatenate([
        rng_.uniform(0.0, 3.0, 24576), 10.0 ** rng_.uniform(-20.0, 6.0, 24576),
        (pts[:, None] * (1.0 + rng_.uniform(-1e-6, 1e-6, (pts.size, 2560)))).ravel(),
        np.array([0.0, -0.0, 1e-300, 5e-324, 1e6, np.inf]),
    ])


@functools.cache
def log1p_mode() -> int:
    """Which of :func:`_log1p_block`'s two forms gives this process's ``math.log1p`` bit for
    bit on :func:`log1p_check_args` (64,518 arguments): 1 fused, 0 not fused, -1 neither
    (the kernel then keeps ``math.log1p``)."""
    x = log1p_check_args()
    ref = np.empty_like(x)
    _log1p_ref(x, ref)
    got = np.empty_like(x)
    for mode in (1, 0):
        _log1p_by_blocks(x, got, mode == 1)
        if np.array_equal(got.view(np.int64), ref.view(np.int64)):
            return mode
    return -1


@nb.njit(parallel=True, cache=True)
def _household_kernel(t, seed, flags, province, cell, members, savings_won, savings_usd,
                      state_income, market_income, need, hbits, power, n_workers, hx,
                      entry_res, shortfall, event, cell_share, cut_bin,
                      cut_frac, prov_china, hp, bounds, groups, hcounts, prov_fed, l1p_mode):
    # Vectorized as the person kernel, per block of BLOCK households: (A) a SIMD loop for the
    # savings after the redenomination; (L) the capital effect's log1p, for every household
    # of the block in _log1p_block's SIMD loops (glibc's bits; l1p_mode = log1p_mode(): 1 or
    # 0 its fused or unfused form) or, if neither is this libm's (-1), math.log1p for the
    # trading households only, listed in a scalar loop; (B) a SIMD
    # loop for food, income, savings, hunger gap and the entry or quitting hazard, every
    # household computed without a branch and its results stored with selects; (C) the new
    # Exp(1) thresholds (a log) of the rare households that entered or quit. The float sums
    # of the counters are taken in a scalar loop over block buffers in household order, so
    # they are the scalar loop's bit for bit; the counts are integers. Each household's
    # arithmetic is the same operations in the same order as one at a time: every household
    # result is bit-identical to the scalar loop's.
    (farm_adv, farm_cap, ration_need, fed_grams, ration, coping, price, wage, income_base,
     tol_floor, china, cap_gain, cap_scale, save_rate, drawdown, dollar_share, rate, fi, tol,
     entry_base, necessity, imitation, men_only, mg_boost, quit_h, cap_won, excess_kept,
     redenom, price_rel, keep) = (hp[0], hp[1], hp[2], hp[3], hp[4], hp[5], hp[6], hp[7], hp[8],
                            hp[9], hp[10], hp[11], hp[12], hp[13], hp[14], hp[15], hp[16],
                            hp[17], hp[18], hp[19], hp[20], hp[21], hp[22], hp[23], hp[24],
                            hp[25], hp[26], hp[27] > 0.5, hp[28], hp[29])
    tm = np.uint64(t)
    tol_income = tol_floor + (1.0 - tol_floor) * tol
    has_ration = ration > 0.0
    full_ration = ration >= fed_grams
    may_enter = tol > 0.0
    for grp in nb.prange(groups.shape[0] - 1):
        p_fed = np.zeros(N_PROV, dtype=np.float64)
        # block buffers (a value for every household of the block, 0 where it adds nothing),
        # made once per group of chunks, as long as its longest chunk (at most BLOCK)
        nbuf = group_rows(bounds, groups, grp, BLOCK)
        won_b = np.zeros(nbuf, dtype=np.float64)
        usd_b = np.zeros(nbuf, dtype=np.float64)
        sav_b = np.zeros(nbuf, dtype=np.float64)
        red_b = np.zeros(nbuf, dtype=np.float64)
        capf_b = np.ones(nbuf, dtype=np.float64)
        cand = np.zeros(nbuf, dtype=np.int64)
        trd_b = np.zeros(nbuf, dtype=np.uint8)
        mk_b = np.zeros(nbuf, dtype=np.float64)
        st_b = np.zeros(nbuf, dtype=np.float64)
        sv_b = np.zeros(nbuf, dtype=np.float64)
        dol_b = np.zeros(nbuf, dtype=np.float64)
        bt_b = np.zeros(nbuf, dtype=np.float64)
        nd_b = np.zeros(nbuf, dtype=np.float64)
        fed_b = np.zeros(nbuf, dtype=np.int64)
        # _log1p_block's argument, work buffers and result
        l1x_b = np.zeros(nbuf, dtype=np.float64)
        l1u_b = np.zeros(nbuf, dtype=np.float64)
        l1w_b = np.zeros(nbuf, dtype=np.float64)
        l1k_b = np.zeros(nbuf, dtype=np.float64)
        l1c_b = np.zeros(nbuf, dtype=np.float64)
        l1h_b = np.zeros(nbuf, dtype=np.int64)
        l1_b = np.zeros(nbuf, dtype=np.float64)
        for c in range(groups[grp], groups[grp + 1]):
            k_fed = np.int64(0)
            k_market = 0.0
            k_state = 0.0
            k_trading = np.int64(0)
            k_hh = np.int64(0)
            k_sav = 0.0
            k_dol = 0.0
            k_red = 0.0
            k_enter = np.int64(0)
            k_quit = np.int64(0)
            k_bought = 0.0
            k_need = 0.0
            for k in range(N_PROV):
                p_fed[k] = 0.0
            for b0 in range(bounds[c], bounds[c + 1], BLOCK):
                b1 = min(b0 + BLOCK, bounds[c + 1])
                # unsigned indices: numba adds no test for negative ones (see the attitudes kernel)
                ub0 = np.uint64(b0)
                ub1 = np.uint64(b1)
                # (A) savings after the redenomination (30 Nov 2009)
                for h in range(ub0, ub1):
                    j = h - ub0
                    live = members[h] > 0
                    won = savings_won[h] * keep
                    usd = savings_usd[h] * keep
                    over = redenom & (won > cap_won)
                    lost = (won - cap_won) * (1.0 - excess_kept)
                    red_b[j] = lost / (rate * 100.0) if over & live else 0.0
                    won = won - lost if over else won
                    won = won / 100.0 if redenom else won
                    won_b[j] = won
                    usd_b[j] = usd
                    sav_b[j] = usd + won / rate
                    trd_b[j] = live & ((hbits[h] & B_TRADER) != 0)
                # (L) the capital effect (used for the trading households only)
                if l1p_mode >= 0:
                    for j in range(b1 - b0):
                        l1x_b[j] = max(sav_b[j], 0.0) / cap_scale
                    _log1p_block(b1 - b0, l1p_mode == 1, l1x_b, l1u_b, l1w_b, l1k_b, l1c_b, l1h_b,
                                 l1_b)
                    for j in range(b1 - b0):
                        capf_b[j] = 1.0 + cap_gain * l1_b[j]
                else:
                    n_tr = 0
                    for j in range(b1 - b0):
                        cand[n_tr] = j
                        n_tr += trd_b[j]
                    for k in range(n_tr):
                        j = cand[k]
                        capf_b[j] = 1.0 + cap_gain * math.log1p(max(sav_b[j], 0.0) / cap_scale)
                # (B) food from the farm or the PDS (valued at the normal price, price0), market
                # income, food bought, savings, hunger gap, entering or leaving the markets
                n_draw = np.int64(0)
                pmin = np.int64(255)  # provinces of the block's households fed by the PDS
                pmax = np.int64(0)
                n_fed = np.int64(0)
                for h in range(ub0, ub1):
                    j = h - ub0
                    m = members[h]
                    live = m > 0
                    fl = flags[h]
                    nd = need[h]
                    trd = trd_b[j] != 0
                    nwk = n_workers[h]
                    pr = province[h]
                    won = won_b[j]
                    usd = usd_b[j]
                    sav_usd = sav_b[j]
                    farm = (fl & H_FARM) != 0
                    per = farm_adv * fi
                    per = farm_cap if per > farm_cap else per
                    food_farm = per * nd
                    # the triage score, computed by _household_scan for live PDS dependents
                    x = hx[h] if live & (not farm) else 0.0
                    b = int(x)
                    b = N_BINS - 1 if b > N_BINS - 1 else b
                    covered = has_ration & ((b > cut_bin) | ((b == cut_bin) & ((x - b) >= 1.0 - cut_frac)))
                    food_pds = ration_need * nd if covered else coping * nd  # uncovered: a share of the residual grain
                    food = food_farm if farm else food_pds
                    s0 = food * (price / price_rel)
                    state_pds = (s0 if covered else 0.0) + wage * nwk
                    state_usd = s0 if farm else state_pds
                    fed = live & (not farm) & covered & full_ration
                    mf = np.int64(m) if fed else np.int64(0)
                    fed_b[j] = mf
                    n_fed += mf
                    prf = np.int64(pr)
                    pmn = prf if fed else np.int64(255)
                    pmx = prf if fed else np.int64(0)
                    pmin = pmn if pmn < pmin else pmin
                    pmax = pmx if pmx > pmax else pmax
                    # market income of the household's traders
                    mk = income_base * power[h] * tol_income * (1.0 + china * prov_china[pr]) * capf_b[j]
                    mk = mk if trd else 0.0
                    # state wages paid for the (subsidised) ration and little else: they count as
                    # state income but do not buy market food
                    money = mk
                    gap = nd - food
                    g1 = gap > 0.0
                    bt = money / price
                    bt = gap if bt > gap else bt
                    bought = bt if g1 else 0.0
                    money = money - bt * price if g1 else money
                    gap = gap - bt if g1 else gap
                    g2 = (gap > 0.0) & (sav_usd > 0.0)
                    can = sav_usd * drawdown / price
                    can = gap if can > gap else can
                    spend = can * price
                    # spend won first (it loses value), then dollars
                    won_usd = won / rate
                    first = spend <= won_usd
                    won2 = won - spend * rate if first else 0.0
                    usd2 = usd - (spend - won_usd)
                    usd2 = 0.0 if usd2 < 0.0 else usd2
                    usd2 = usd if first else usd2
                    won = won2 if g2 else won
                    usd = usd2 if g2 else usd
                    bought = bought + can if g2 else bought
                    gap = gap - can if g2 else gap
                    sv = money * save_rate
                    saves = money > 0.0
                    usd = usd + sv * dollar_share if saves else usd
                    won = won + sv * (1.0 - dollar_share) * rate if saves else won
                    sh = gap / nd if (nd > 0.0) & (gap > 0.0) else 0.0
                    prev_gap = shortfall[h]
                    shortfall[h] = sh if live else prev_gap
                    savings_won[h] = won if live else savings_won[h]
                    savings_usd[h] = usd if live else savings_usd[h]
                    market_income[h] = mk * rate if live else 0.0
                    state_income[h] = state_usd * rate if live else 0.0
                    mk_b[j] = mk if live else 0.0
                    st_b[j] = state_usd if live else 0.0
                    sv_b[j] = usd + won / rate if live else 0.0
                    dol_b[j] = usd if live else 0.0
                    bt_b[j] = bought if live else 0.0
                    nd_b[j] = np.float64(nd) if live else 0.0
                    k_hh += np.int64(live)
                    # entering or leaving the markets: hazards consumed against an Exp(1)
                    # threshold
                    hz_q = quit_h * (1.0 - min(prev_gap, 1.0))
                    cc = np.uint64(cell[h]) if live else np.uint64(0)
                    hb = hbits[h]
                    hz_e = entry_hazard(prev_gap, cell_share[cc], tol, (hb & B_WOMAN) != 0,
                                        (hb & B_MG) != 0, entry_base, necessity, imitation,
                                        men_only, mg_boost)
                    quits = trd & (hz_q > 0.0)
                    enters = live & (not trd) & (nwk > 0) & may_enter
                    hz = hz_q if trd else hz_e
                    er0 = entry_res[h]
                    r = er0 - hz
                    fire = r <= 0.0
                    q_ev = quits & fire
                    e_ev = enters & fire
                    entry_res[h] = np.float32(r) if (quits | enters) & (not fire) else er0
                    event[h] = np.uint8(q_ev) * np.uint8(EV_QUIT) + np.uint8(e_ev) * np.uint8(EV_ENTER)
                    fl_t = fl & ~H_TRADING if q_ev else fl | H_TRADING
                    fl_n = fl_t if trd else fl & ~H_TRADING
                    flags[h] = fl_n if live else fl
                    k_trading += np.int64(trd)
                    k_quit += np.int64(q_ev)
                    k_enter += np.int64(e_ev)
                    n_draw += np.int64(q_ev | e_ev)
                # (C) a new Exp(1) threshold for those who entered or quit, listed first (a
                # loop with the draw inside its test would be vectorized with a draw for every
                # household: 3 ms more at scale 10)
                if n_draw > 0:
                    n_ev = 0
                    for j in range(b1 - b0):
                        cand[n_ev] = j
                        n_ev += event[ub0 + np.uint64(j)] != EV_NONE
                    for k in range(n_ev):
                        h = ub0 + np.uint64(cand[k])
                        sub = np.uint64(2) if event[h] == EV_QUIT else np.uint64(3)
                        entry_res[h] = -math.log(rng.uniform1(seed, _HH, tm, np.uint64(h), sub))
                k_fed += n_fed
                if n_fed > 0:
                    if pmin == pmax:
                        p_fed[pmin] += n_fed
                    else:
                        for j in range(b1 - b0):
                            p_fed[province[b0 + j]] += fed_b[j]
                # the float sums, in household order (as the scalar loop: the same bits)
                for j in range(b1 - b0):
                    k_market += mk_b[j]
                    k_state += st_b[j]
                    k_sav += sv_b[j]
                    k_dol += dol_b[j]
                    k_bought += bt_b[j]
                    k_need += nd_b[j]
                if redenom:
                    for j in range(b1 - b0):
                        k_red += red_b[j]
            hcounts[c, K_PDS_FED] = k_fed
            hcounts[c, K_MARKET_USD] = k_market
            hcounts[c, K_STATE_USD] = k_state
            hcounts[c, K_TRADING_HH] = k_trading
            hcounts[c, K_HH] = k_hh
            hcounts[c, K_SAV_USD] = k_sav
            hcounts[c, K_DOLLARS] = k_dol
            hcounts[c, K_REDENOM] = k_red
            hcounts[c, K_ENTER] = k_enter
            hcounts[c, K_QUIT] = k_quit
            hcounts[c, K_FOOD_BOUGHT] = k_bought
            hcounts[c, K_NEED] = k_need
            for k in range(N_PROV):
                prov_fed[c, k] = p_fed[k]


@nb.njit(parallel=True, cache=True)
def _person_kernel(t, seed, rng_id, stage, birth_month, sex, household, province, flags, hunger,
                   skill, hh_flags, shortfall, event, worker_m, mg_birth, pp, bounds, groups,
                   pcounts, prov_hungry):
    # Written so that LLVM vectorizes the loop over people (SIMD lanes), as the attitude
    # kernel: every person is computed without a branch and the results stored with a
    # select (``x[i] = new if act else old``), the counters are integers (the hunger sum in
    # fixed point, HSUM_Q), and the two things that cannot run on SIMD lanes are left to a
    # scalar loop per block of BLOCK people: the draw of those whose household enters the
    # markets (rare) and the hungry by province when a block spans several provinces
    # (people are sorted by province, so a block's hungry usually share one). Each person's
    # arithmetic is the same operations in the same order as one at a time: hunger, skill
    # and flags are bit-identical to the scalar loop's. No array view is taken in the
    # parallel loop (``prov_hungry`` is written element by element): numba then marks the
    # arrays as not aliasing each other, which the vectorizer needs.
    h_thr, severity, smooth, hungry_level, p_woman, p_man, mg_boost, learn, forget = (
        pp[0], pp[1], pp[2], pp[3], pp[4], pp[5], pp[6], pp[7], pp[8])
    tm = np.uint64(t)
    inv = 1.0 / (1.0 - h_thr)
    amax = worker_m.shape[0] - 1
    work0_m = np.uint64(12 * WORK_FROM)  # working age by comparisons (the classes of worker_m)
    work1_m = np.uint64(12 * (WORK_TO + 1))
    q = HSUM_Q
    for grp in nb.prange(groups.shape[0] - 1):
        p_h = np.zeros(N_PROV, dtype=np.float64)
        ent = np.zeros(BLOCK, dtype=np.uint8)  # enters the markets (draw pending)
        hgr = np.zeros(BLOCK, dtype=np.uint8)  # hungry
        for c in range(groups[grp], groups[grp + 1]):
            pop = np.int64(0)
            hungry = np.int64(0)
            hsum = np.int64(0)
            tw = np.int64(0)
            ww = np.int64(0)
            tmn = np.int64(0)  # all traders of working age until the end of the chunk
            wm = np.int64(0)  # all workers until the end of the chunk
            mgc = np.int64(0)
            tmg = np.int64(0)
            wmg = np.int64(0)
            for k in range(N_PROV):
                p_h[k] = 0
            for b0 in range(bounds[c], bounds[c + 1], BLOCK):
                b1 = min(b0 + BLOCK, bounds[c + 1])
                # unsigned indices: numba adds no test for negative ones (see the attitudes kernel)
                ub0 = np.uint64(b0)
                n_ent = np.int64(0)
                n_hg = np.int64(0)
                pmin = np.int64(255)  # provinces of the block's hungry
                pmax = np.int64(0)
                for i in range(ub0, np.uint64(b1)):
                    st = stage[i]
                    act = in_country(st)
                    h = np.uint64(household[i]) if act else np.uint64(0)  # a valid row for all lanes
                    fl0 = flags[i]
                    bm = birth_month[i]
                    mg = bm >= mg_birth
                    fl = fl0 | (F_MARKET_GEN * np.uint8(mg))
                    # hunger: smoothed target from the household's food shortfall
                    sh = shortfall[h]
                    hg0 = np.float64(hunger[i])
                    upd = act & ((sh > h_thr) | (hg0 > 0.0))
                    target = min(max((sh - h_thr) * inv * severity, 0.0), 1.0)
                    hg1 = hg0 + smooth * (target - hg0)
                    hg1 = hg1 if hg1 >= 1e-4 else 0.0
                    hg = hg1 if upd else hg0
                    hunger[i] = np.float32(hg)  # the same bits when unchanged
                    hsum += np.int64(hg * q) if act else np.int64(0)
                    ish = act & (hg > hungry_level)
                    n_hg += np.int64(ish)
                    hgr[i - ub0] = ish
                    pr = np.int64(province[i])
                    pmn = pr if ish else np.int64(255)
                    pmx = pr if ish else np.int64(0)
                    pmin = pmn if pmn < pmin else pmin
                    pmax = pmx if pmx > pmax else pmax
                    # trading
                    a = t - bm  # age in months: working age (16-64)
                    a = a if a < amax else amax
                    a = a if act else 0
                    a = np.uint64(a)
                    worker = (a >= work0_m) & (a < work1_m) & (st <= PREPARING)
                    ev = event[h]
                    # Whether a person trades is close to a coin toss from one person to the
                    # next, so the skill is updated without a branch on it: a trader who stays
                    # learns, a non-trader (not entering this month) forgets, the rest keep
                    # theirs; the skill is stored every time (the same bits when unchanged).
                    is_tr = (fl & F_TRADER) != 0
                    stays = is_tr & (ev != EV_QUIT) & worker
                    enter = (not is_tr) & (ev == EV_ENTER) & worker & (st == RESIDENT)
                    ent[i - ub0] = enter
                    n_ent += np.int64(enter)
                    fl &= ~(F_TRADER * np.uint8(is_tr & (not stays)))
                    sk0 = skill[i]
                    sk = np.float64(sk0)
                    rate = learn * (1.5 if mg else 1.0)
                    learned = sk + rate * (1.0 - sk)
                    forgot = sk - forget * sk
                    forgot = forgot if forgot > 1e-3 else 0.0
                    forgets = (not is_tr) & (not enter)
                    nsk = learned if stays else (forgot if forgets else sk)
                    skill[i] = np.float32(nsk) if act else sk0
                    flags[i] = fl if act else fl0
                    # integer counters of workers without branches (women, all, market
                    # generation); those who enter are added after their draw
                    wk = np.int64(worker)
                    tr = np.int64((fl & F_TRADER) != 0) & wk
                    fem = np.int64(sex[i] == SEX_FEMALE) & wk
                    mgi = np.int64(mg) & wk
                    ww += fem
                    tw += tr & fem
                    wm += wk
                    tmn += tr
                    wmg += mgi
                    tmg += tr & mgi
                    pop += np.int64(act)
                    mgc += np.int64(act & mg)
                hungry += n_hg
                if n_hg > 0:
                    if pmin == pmax:
                        p_h[pmin] += n_hg
                    else:
                        for k in range(ub0, np.uint64(b1)):
                            p_h[province[k]] += hgr[k - ub0]
                # the draws of those entering the markets (working age, so all count as workers)
                if n_ent > 0:
                    for k in range(ub0, np.uint64(b1)):
                        if ent[k - ub0]:
                            fem_k = sex[k] == SEX_FEMALE
                            pt = p_woman if fem_k else p_man
                            mg_k = birth_month[k] >= mg_birth
                            if mg_k:
                                pt = min(1.0, pt * mg_boost)
                            if rng.uniform1(seed, _PERSON, tm, rng_id[k], np.uint64(0)) < pt:
                                flags[k] |= F_TRADER
                                hh_flags[np.uint64(household[k])] |= H_TRADING  # every writer sets the same bit
                                tw += np.int64(fem_k)
                                tmn += 1
                                tmg += np.int64(mg_k)
            pcounts[c, P_POP] = pop
            pcounts[c, P_HUNGRY] = hungry
            pcounts[c, P_HUNGER_SUM] = hsum / q
            pcounts[c, P_TRADER_W] = tw
            pcounts[c, P_WORKER_W] = ww
            pcounts[c, P_TRADER_M] = tmn - tw
            pcounts[c, P_WORKER_M] = wm - ww
            pcounts[c, P_MG] = mgc
            pcounts[c, P_TRADER_MG] = tmg
            pcounts[c, P_WORKER_MG] = wmg
            for k in range(N_PROV):
                prov_hungry[c, k] = p_h[k]
