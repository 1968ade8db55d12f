"""talbuk's rules written the way a Mesa user would write them: one Python object per person.

This is the reference implementation the benchmarks compare talbuk's array kernels with
(DESIGN.md section 8, CONVENTIONS.md habit 7). It ports, rule for rule, the modules of
``src/talbuk/modules`` (demography, economy, information, attitudes, decision, journey and
the families left behind) in the order of :data:`talbuk.sim.STEP_ORDER`:

* people (:class:`Person`) and households (:class:`Household`) are ``mesa.Agent`` objects
  with plain attributes; each phase is ``AgentSet.shuffle_do("<phase>_step")`` over them;
* aggregates (household sums, inminban cell shares, province counts) are loops over agents
  that add into attributes and dicts, as a Mesa model would do them;
* random numbers come from Mesa's ``model.random`` (Python's Mersenne Twister), not from
  talbuk's counter-based Philox streams, so the two agree statistically, not draw for draw;
* inputs are identical: the parameters and the monthly lever series of the same
  :class:`talbuk.scenario.Scenario`, and the same initial people and households (built by
  :func:`talbuk.population.synthesise` for the same scale and seed, then wrapped in agents).
  The Siler life tables are computed once by talbuk's own ``Demography._life_table`` (set-up,
  not per-agent work).

Personal traits (risk aversion, leave threshold, media threshold) are drawn when the agent
is made, quantised as talbuk's trait word is (8, 16 and 8 bits). The dead are removed from the
model (``agent.remove()``), as Mesa models do. :meth:`TalbukMesa.from_sim` builds the model in
the exact state of a talbuk ``Sim``, so that one month of both can be compared rule by rule.

The port follows talbuk as of commit 17477c1 (journey's mean-field fallback), with the
journey's broker credit and the settled people's onward ramp added on 2026-11-30. Not ported:
kin ties that fade (``journey.kin_tie_half_life_years``; the shipped parameters keep its
default, 0, ties that never fade). When a rule changes in talbuk,
``tests/test_mesa_reference.py`` (one month from the same state) shows it.

It is not vectorised and not slowed on purpose. Only a few outputs are recorded (those the
agreement test and the benchmarks need).
"""

from __future__ import annotations

import math

import mesa
import numpy as np
import pandas as pd

from talbuk.calendar import month_year
from talbuk.modules.demography import Demography
from talbuk.population import PROVINCES, read_data, synthesise
from talbuk.scenario import Scenario, load_scenario
from talbuk.state import (
    ARRIVED,
    CROSSING,
    DEAD,
    DETAINED,
    F_DECIDED,
    F_MARKET_GEN,
    F_MEDIA_EVER,
    F_PUNISHED,
    F_TRADER,
    H_FARM,
    H_KIN_CHINA,
    H_KIN_SOUTH,
    H_TRADING,
    H_WATCHED,
    IN_CHINA,
    IN_TRANSIT,
    PREPARING,
    RESIDENT,
    SETTLED_CHINA,
    SEX_FEMALE,
)

MAX_AGE = 120
MAX_AGE_MONTHS = (MAX_AGE + 1) * 12 - 1
EV_NONE, EV_ENTER, EV_QUIT = 0, 1, 2
IN_COUNTRY = (RESIDENT, PREPARING, CROSSING, DETAINED)
RULES = {"threshold": 0, "utility": 1, "planned": 2}

#: Outputs recorded each month and how months become years (as talbuk's ``Output.kind``).
OUTPUT_KINDS = {
    "population": "stock", "births": "flow", "deaths": "flow", "excess_deaths": "flow",
    "trading_share": "mean", "pds_share": "mean", "hunger_mean": "mean",
    "media_ever_share": "stock", "mean_desire": "mean", "mean_grievance": "mean",
    "decisions": "flow", "expected_decisions": "flow", "arrivals": "flow",
    "arrivals_expected": "flow", "crossings": "flow", "in_china": "stock",
}


def _ramp(year: float, start: float, end: float) -> float:
    """0 until ``start``, rising linearly to 1 at ``end`` (years, fractional)."""
    return min(1.0, max(0.0, (year - start) / max(1e-9, end - start)))


def _age_years(age_m: int) -> int:
    return min(age_m, MAX_AGE_MONTHS) // 12


class Household(mesa.Agent):
    """A household: province, inminban cell, money, flags, and this month's member sums."""

    def __init__(self, model: TalbukMesa, province: int, cell: int, flags: int):
        super().__init__(model)
        self.province = province
        self.cell = cell
        self.flags = flags
        self.members = 0
        self.savings_won = 0.0
        self.savings_usd = 0.0
        self.state_income = 0.0
        self.market_income = 0.0
        self.surveillance = 0.0
        self.kin_abroad = 0
        # economy: market entry/quit threshold (Exp(1) minus hazard used), food shortfall,
        # fixed triage jitter; member sums refreshed each month
        self.entry_res = model.random.expovariate(1.0)
        self.shortfall = 0.0
        self.jitter_u = model.random.random()
        self.need = 0.0
        self.n_workers = 0
        self.power = 0.0
        self.has_woman = False
        self.has_mg = False
        self.has_trader = False
        self.min_songbun = 3
        self.event = EV_NONE
        self.covered = False
        # information and attitudes
        self.n_media_age = 0
        self.n_watching = 0
        self.social = 0.0
        self.caught = False
        self.prev_wealth = 0.0
        self.loss = 0.0

    # ------------------------------------------------------------------ economy
    def economy_step(self) -> None:
        m = self.model
        e = m.econ
        p = m.p_econ
        if self.members <= 0:
            self.event = EV_NONE
            self.state_income = 0.0
            self.market_income = 0.0
            return
        ev = EV_NONE
        nd = self.need
        won = self.savings_won * e["keep"]
        usd = self.savings_usd * e["keep"]
        rate = e["rate"]
        if e["redenom"]:
            if won > p.redenomination_cap_old_won:
                lost = (won - p.redenomination_cap_old_won) * (1.0 - p.redenomination_excess_kept)
                e["redenom_loss"] += lost / (rate * 100.0)
                won -= lost
            won = won / 100.0
        price = e["price"]
        state_usd = 0.0
        if self.flags & H_FARM:
            food = min(p.farm_advantage * e["fi"], p.farm_cap) * nd
            state_usd = food * p.price0_usd
        else:
            if self.covered:
                food = e["ration"] / p.need_grams * nd
                state_usd = food * p.price0_usd
                if e["ration"] >= p.pds_fed_fraction * p.need_grams:
                    e["pds_fed"] += self.members
            else:
                food = e["coping"] * nd
            state_usd += e["wage"] * self.n_workers
        sav_usd = usd + won / rate
        mk = 0.0
        if self.has_trader:
            capf = 1.0 + p.capital_gain * math.log1p(max(sav_usd, 0.0) / p.capital_scale_usd)
            mk = (p.income_base_usd * self.power * e["tol_income"]
                  * (1.0 + e["china"] * m.prov_china[self.province]) * capf)
        money = mk
        gap = nd - food
        bought = 0.0
        if gap > 0.0:
            bought = min(money / price, gap)
            money -= bought * price
            gap -= bought
        if gap > 0.0 and sav_usd > 0.0:
            can = min(sav_usd * p.drawdown_rate / price, gap)
            spend = can * price
            won_usd = won / rate
            if spend <= won_usd:
                won -= spend * rate
            else:
                won = 0.0
                usd = max(0.0, usd - (spend - won_usd))
            bought += can
            gap -= can
        if money > 0.0:
            saved = money * p.save_rate
            usd += saved * e["dollar_share"]
            won += saved * (1.0 - e["dollar_share"]) * rate
        prev_gap = self.shortfall
        self.shortfall = gap / nd if nd > 0.0 and gap > 0.0 else 0.0
        self.savings_won = won
        self.savings_usd = usd
        self.market_income = mk * rate
        self.state_income = state_usd * rate
        e["market_usd"] += mk
        e["state_usd"] += state_usd
        e["households"] += 1
        if self.has_trader:
            e["trading"] += 1
            self.flags |= H_TRADING
            hz = e["quit_hazard"] * (1.0 - min(prev_gap, 1.0))
            if hz > 0.0:
                self.entry_res -= hz
                if self.entry_res <= 0.0:
                    ev = EV_QUIT
                    self.flags &= ~H_TRADING
                    self.entry_res = m.random.expovariate(1.0)
        else:
            self.flags &= ~H_TRADING
            if self.n_workers > 0 and e["tol"] > 0.0:
                hz = (p.entry_base * e["tol"] * (1.0 + p.necessity * prev_gap)
                      * (1.0 + p.imitation * m.cell_trading.get(self.cell, 0.0)))
                if not self.has_woman:
                    hz *= p.men_only_entry
                if self.has_mg:
                    hz *= 1.0 + p.mg_entry_boost
                self.entry_res -= hz
                if self.entry_res <= 0.0:
                    ev = EV_ENTER
                    self.entry_res = m.random.expovariate(1.0)
        self.event = ev

    # ------------------------------------------------------------------ attitudes
    def loss_step(self) -> None:
        """Relative loss of wealth (USD at the market rate) since last month."""
        m = self.model
        wealth = self.savings_usd + self.savings_won / m.lever("exchange_rate")
        new_loss = 0.0
        if self.prev_wealth > wealth:
            new_loss = (self.prev_wealth - wealth) / (self.prev_wealth + 20.0)
        self.loss = min(1.0, self.loss * m.p_att.loss_memory + new_loss)
        self.prev_wealth = wealth


class Person(mesa.Agent):
    """A person, with the attributes of ``talbuk.state.PERSON_DTYPES`` as plain attributes."""

    def __init__(self, model: TalbukMesa, household: Household, birth_month: int, sex: int,
                 province: int, songbun: int, resistance: float, traits: int = 0):
        super().__init__(model)
        self.household = household
        self.birth_month = birth_month
        self.sex = sex
        self.province = province
        self.songbun = songbun
        self.stage = RESIDENT
        self.stage_month = model.month
        self.flags = 0
        self.resistance = resistance
        self.hunger = 0.0
        self.market_skill = 0.0
        self.media_exposure = 0.0
        self.desire = 0.0
        self.grievance = 0.0
        self.legitimacy = 1.0
        self.fear = 0.0
        # fixed traits (talbuk draws them from its "trait" stream on first use)
        # (quantised as talbuk's trait word: 8 bits, 16 bits, 8 bits)
        # (quantised as talbuk's trait word: 8, 16 and 8 bits; a given word is decoded)
        if traits:
            b_risk, b_leave, b_media = traits & 0xFF, (traits >> 8) & 0xFFFF, traits >> 24
        else:
            rnd = model.random
            b_risk, b_leave, b_media = rnd.randrange(256), rnd.randrange(65536), rnd.randrange(256)
        self.risk_aversion = 0.5 + (b_risk + 0.5) / 256.0
        u = (b_leave + 0.5) / 65536.0
        self.leave_threshold = model.theta_loc + model.p_dec.threshold_scale * math.log(u / (1.0 - u))
        u = (b_media + 0.5) / 256.0
        self.media_threshold = math.sqrt(-math.log(1.0 - u))  # Weibull(2, 1)
        self.sends_money = None  # drawn when first needed (remittances)
        self.flag_birth = False
        self.flag_split = False

    def age_months(self) -> int:
        return self.model.month - self.birth_month

    def in_country(self) -> bool:
        return self.stage in IN_COUNTRY

    # ------------------------------------------------------------------ demography
    def demography_step(self) -> None:
        m = self.model
        d = m.demo
        if self.stage == DEAD:
            return
        age_m = min(self.model.month - self.birth_month, MAX_AGE_MONTHS)
        age = age_m // 12
        h0 = d["hazard"][self.sex][age]
        home = self.stage in IN_COUNTRY
        h = h0
        if home and self.hunger > 0.0:
            h = h0 * (1.0 + m.rr[age] * self.hunger ** m.p_demo.hunger_exponent)
        self.resistance -= h
        if self.resistance <= 0.0:
            self.stage = DEAD
            self.stage_month = m.month
            m.died.append(self)
            if home:
                d["deaths"] += 1
                d["excess"] += 1.0 - h0 / h
            else:
                d["deaths_abroad"] += 1
            return
        if not home:
            return
        d["pop"] += 1
        if self.sex == SEX_FEMALE:
            bp = m.fertility_shape[age] * d["birth_scale"]
            if bp > 0.0 and self.stage == RESIDENT and m.random.random() < bp:
                self.flag_birth = True
                m.mothers.append(self)
            if age_m == m.p_demo.household_split_age * 12 and self.stage == RESIDENT:
                if m.random.random() < m.p_demo.household_split_prob:
                    self.flag_split = True
                    if not self.flag_birth:
                        m.mothers.append(self)
            d["women_w_next"] += m.fertility_shape[min((age_m + 1) // 12, MAX_AGE)]

    # ------------------------------------------------------------------ economy
    def economy_step(self) -> None:
        m = self.model
        e = m.econ
        p = m.p_econ
        st = self.stage
        if st not in IN_COUNTRY:
            return
        hh = self.household
        e["pop"] += 1
        mg = self.birth_month >= m.mg_birth
        if mg:
            e["market_gen"] += 1
            self.flags |= F_MARKET_GEN
        sh = hh.shortfall
        if sh > p.hunger_threshold or self.hunger > 0.0:
            target = min(1.0, max(0.0, (sh - p.hunger_threshold) / (1.0 - p.hunger_threshold)
                                  * p.hunger_severity))
            hg = self.hunger + p.hunger_smoothing * (target - self.hunger)
            self.hunger = 0.0 if hg < 1e-4 else hg
        e["hunger_sum"] += self.hunger
        if self.hunger > p.hungry_level:
            e["hungry"] += 1
        age = _age_years(m.month - self.birth_month)
        worker = 16 <= age <= 64 and st <= PREPARING
        if self.flags & F_TRADER:
            if hh.event == EV_QUIT or not worker:
                self.flags &= ~F_TRADER
            else:
                learn = p.skill_learn * (1.5 if mg else 1.0)
                self.market_skill += learn * (1.0 - self.market_skill)
        else:
            if hh.event == EV_ENTER and worker and st == RESIDENT:
                pt = p.p_trader_woman if self.sex == SEX_FEMALE else p.p_trader_man
                if mg:
                    pt = min(1.0, pt * p.mg_trader_boost)
                if m.random.random() < pt:
                    self.flags |= F_TRADER
                    hh.flags |= H_TRADING
            elif self.market_skill > 0.0:
                sk = self.market_skill - p.skill_forget * self.market_skill
                self.market_skill = sk if sk > 1e-3 else 0.0

    # ------------------------------------------------------------------ information
    def media_step(self) -> None:
        m = self.model
        p = m.p_info
        if self.stage != RESIDENT and self.stage != PREPARING:
            return
        age_m = m.month - self.birth_month
        if age_m < 120:
            return
        hh = self.household
        market = p.market_weight
        if self.flags & F_TRADER:
            market *= 1.0 + p.trader_bonus
        pressure = min(1.0, p.pressure_gain * m.media_level[self.province] * (market + hh.social))
        e = self.media_exposure + p.exposure_rate * (pressure - self.media_exposure)
        if not self.flags & F_MEDIA_EVER:
            if pressure > 0.0 and e > p.threshold_scale * self.media_threshold:
                self.flags |= F_MEDIA_EVER
        elif hh.caught and e >= p.watching_min:
            self.flags |= F_PUNISHED
            e *= 0.5
            m.info["caught"] += 1
        if hh.caught:
            self.fear = min(1.0, self.fear + p.caught_fear)
        self.media_exposure = e
        if age_m >= 16 * 12:
            m.info["adults"] += 1
            if self.flags & F_MEDIA_EVER:
                m.info["ever"] += 1

    # ------------------------------------------------------------------ attitudes
    def attitude_step(self) -> None:
        m = self.model
        p = m.p_att
        r = m.att_rates
        if self.stage not in IN_COUNTRY:
            return
        age_m = m.month - self.birth_month
        if age_m < 14 * 12:
            return
        hh = self.household
        fl = self.flags
        sb = self.songbun
        mg = bool(fl & F_MARKET_GEN)
        pun = 1.0 if fl & F_PUNISHED else 0.0
        media = self.media_exposure if fl & F_MEDIA_EVER else 0.0
        k = p.legit_class_core if sb == 0 else (p.legit_class_hostile if sb == 2 else 1.0)
        l0 = p.market_gen_legitimacy if mg else 1.0
        lt = min(1.0, max(0.0, l0 - k * (p.legit_hunger * self.hunger + p.legit_media * media)
                          - p.legit_punished * pun))
        self.legitimacy += r[0] * (lt - self.legitimacy)
        gs = p.griev_wavering if sb == 1 else (p.griev_hostile if sb == 2 else 0.0)
        gt = (p.griev_hunger * self.hunger + p.griev_loss * hh.loss + p.griev_punished * pun
              + gs + p.griev_illegitimacy * (1.0 - self.legitimacy))
        self.grievance += r[1] * (gt - self.grievance)
        kin = 1.0 if hh.flags & H_KIN_SOUTH else (0.5 if hh.flags & H_KIN_CHINA else 0.0)
        dt = p.desire_media * media + p.desire_kin_south * kin + p.desire_skill * min(self.market_skill, 1.0)
        if mg:
            dt += p.desire_market_gen
        if fl & F_TRADER:
            dt += p.desire_trader
        self.desire += r[2] * (dt - self.desire)
        ft = (m.fear_severity * ((1.0 - p.fear_market_gen_cut) if mg else 1.0)
              + p.fear_surveillance * hh.surveillance + p.fear_punished * pun)
        if hh.cell in m.cells_raided:
            ft += p.fear_raid
        self.fear += r[3] * (ft - self.fear)
        if age_m >= 16 * 12:
            a = m.att
            a["n"] += 1
            a["desire"] += self.desire
            a["grievance"] += self.grievance

    # ------------------------------------------------------------------ decision
    def decision_step(self) -> None:
        m = self.model
        p = m.p_dec
        if self.stage != RESIDENT:
            return
        age_m = m.month - self.birth_month
        if age_m < p.min_age * 12 or age_m > p.max_age * 12:
            return
        dv = m.dec
        hh = self.household
        G, D = self.grievance, self.desire
        ra = self.risk_aversion
        if hh.flags & H_KIN_SOUTH:
            kin = 1.0
        elif hh.flags & H_KIN_CHINA or hh.kin_abroad > 0:
            kin = 0.5
        else:
            kin = 0.0
        fam = max(0.0, min(hh.members - 1, 4) * 0.25)
        old = max(0.0, (age_m / 12.0 - 30.0) / 30.0)
        R = (ra * (p.risk_border * dv["border_k"] + p.risk_china * dv["china"] + p.risk_fear * self.fear)
             + p.risk_family * fam + p.risk_age * old - p.kin_relief * kin)
        theta = self.leave_threshold
        rule = m.rule
        if rule == 0:
            x = G + D - R - theta
        else:
            money = p.own_means_usd + kin * p.kin_help_usd + hh.savings_usd + hh.savings_won * dv["inv_rate"]
            afford = money / (money + dv["fee"] + 1.0)
            if rule == 1:
                ps = min(1.0, dv["p_succ0"] * (1.0 + 0.3 * kin))
                x = (ps * p.utility_abroad * (0.3 + D) - p.utility_stay * (1.0 - G)
                     - p.utility_cost * (1.0 - afford)
                     - (1.0 - ps) * p.utility_punish * dv["severity"] * ra * (1.0 + fam) - theta)
            else:
                norm = min(1.0, 0.6 * kin + m.cell_kin.get(hh.cell, 0.0) * 4.0)
                access = max(0.0, (1.0 - dv["border"]) * (1.0 - m.dist[self.province] / p.distance_scale_km))
                x = (p.planned_attitude * (D + p.planned_push * G) + p.planned_norm * norm
                     + p.planned_control * afford * access - p.planned_risk * R - theta)
        if x <= 0.0:
            return
        prob = min(1.0, x / p.ramp) * p.hazard
        if self.sex == SEX_FEMALE:
            prob = min(1.0, prob * p.female_hazard)
        dv["expected"] += prob
        if self.sex == SEX_FEMALE:
            dv["expected_female"] += prob
        if m.random.random() < prob:
            self.stage = PREPARING
            self.stage_month = m.month
            self.flags |= F_DECIDED
            dv["decisions"] += 1
            m.new_deciders.append(self)


class TalbukMesa(mesa.Model):
    """The talbuk model as a Mesa model.

    >>> model = TalbukMesa("baseline", scale=1000, seed=1)  # doctest: +SKIP
    >>> annual = model.run()                                # doctest: +SKIP
    """

    def __init__(self, scenario: str | Scenario = "baseline", *, scale: float = 1000,
                 seed: int = 1, state=None):
        super().__init__(seed=seed)
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        sc = self.scenario
        self.scale = float(scale)
        self.start_month = sc.start_month
        self.n_months = sc.n_months
        self.levers = sc.lever_series(self.start_month, self.n_months)
        self.t_index = 0
        self.month = self.start_month
        prm = sc.params
        self.p_demo, self.p_econ, self.p_info = prm["demography"], prm["economy"], prm["information"]
        self.p_att, self.p_dec, self.p_jour, self.p_left = (prm["attitudes"], prm["decision"],
                                                             prm["journey"], prm["left_behind"])
        self.rule = RULES[sc.decision_rule]
        self.theta_loc = {0: self.p_dec.threshold_loc, 1: self.p_dec.utility_loc,
                          2: self.p_dec.planned_loc}[self.rule]
        self.monthly = {name: np.zeros(self.n_months) for name in OUTPUT_KINDS}
        self._init_tables()
        if state is None:
            self._init_population(seed)
        else:
            self._copy_population(state)
        self.persons = self.agents_by_type[Person]
        self.households_set = self.agents_by_type[Household]
        # state carried by modules from month to month
        self._last = None  # (population, weighted women) for births
        self.media_level = [0.0] * len(PROVINCES)
        self.cells_raided: set[int] = set()
        self.cell_kin: dict[int, float] = {}
        self.cell_trading: dict[int, float] = {}
        self.attitudes_started = False
        self.pipeline: list[list] = []  # [person, record dict] of everyone in the pipeline
        self.new_deciders: list[Person] = []
        self.events: list[tuple[Household, int]] = []
        self.watched: list[Household] = []
        self.mf = [[0.0, 0.0] for _ in range(5)]  # mean-field agents per stage and sex
        # moving ratios of agents' mean probabilities to a lever-only reference (the fallback
        # when a stage holds no agent), as talbuk's journey module keeps them
        self.ema = [[0.3, 0.3], [1.0, 1.0], [0.3, 0.3]]
        self.mf_settled = [0.0, 0.0]  # expected settled in China, by sex
        self.mf_planned = [0.0, 0.0]  # expected in China on a planned escape, by sex
        self.mf_arrived = 0.0  # expected arrivals so far, in agents (the broker network)
        weights = [pr.population_2008 for pr in PROVINCES]
        self.dist_ref = sum(f * w for f, w in zip(self.dist_factor, weights, strict=True)) / sum(weights)
        self.phase_seconds: dict[str, float] = {}
        if state is not None:
            self._copy_module_state(state)

    @classmethod
    def from_sim(cls, sim) -> TalbukMesa:
        """A Mesa model in exactly the state of a talbuk ``Sim`` (for one-phase comparisons):
        the same people (the dead left out), households, traits and carried module state."""
        return cls(sim.scenario, scale=sim.scale, seed=sim.seed, state=sim)

    # ------------------------------------------------------------------ set-up
    def _init_tables(self) -> None:
        p = self.p_demo
        sc = self.scenario
        vr = read_data("vital_rates.csv")
        years = np.arange(month_year(sc.start_month), month_year(sc.end_month) + 1)
        self.first_year = int(years[0])
        self.cbr = list(np.interp(years + 0.5, vr["year"] + 0.5, vr["crude_birth_rate_per_1000"])
                        * p.fertility_multiplier)
        e0 = np.interp(years, [1990, 2005, 2010, 2020],
                       [p.life_expectancy_1990, p.life_expectancy_2005, p.life_expectancy_2010,
                        p.life_expectancy_2020])
        life = Demography(p)  # the same Siler table as talbuk (computed once, not per agent)
        self.hazard = [life._life_table(float(e)).tolist() for e in e0]  # [year][sex][age]
        self.rr = [p.hunger_rr_child if a < 5 else (p.hunger_rr_old if a >= 60 else p.hunger_rr_adult)
                   for a in range(MAX_AGE + 1)]
        shape = [0.0] * (MAX_AGE + 1)
        for lo, val in ((20, 0.25), (25, 0.40), (30, 0.25), (35, 0.10)):
            for a in range(lo, lo + 5):
                shape[a] = val / 5.0
        self.fertility_shape = shape
        pe = self.p_econ
        self.need_w = [pe.need_child if a < 5 else (pe.need_young if a < 15 else
                       (pe.need_old if a >= 60 else 1.0)) for a in range(MAX_AGE + 1)]
        self.prov_priority = [pe.priority_pyongyang if pr.name == "Pyongyang" else
                              (pe.priority_northeast if pr.northeast else pe.priority_other)
                              for pr in PROVINCES]
        self.songbun_priority = [pe.priority_core, pe.priority_wavering, 0.0]
        self.score_max = max(self.prov_priority) + max(self.songbun_priority) + pe.priority_jitter + 1e-6
        self.prov_china = [math.exp(-pr.distance_to_border_km / pe.china_range_km) for pr in PROVINCES]
        self.dist = [pr.distance_to_border_km for pr in PROVINCES]
        self.border = [pr.borders_china for pr in PROVINCES]
        self.mg_birth = (pe.market_gen_birth_year - 1900) * 12
        tol = self.levers["market_tolerance"]
        ref, r = [], tol[0]
        for x in tol:
            r = max(x, r - pe.tolerance_memory)
            ref.append(r)
        self.tol_ref = ref
        redenom = self.levers["redenomination"] > 0.5
        self.won_factor = list(np.where(np.cumsum(redenom) > 0, 100.0, 1.0))
        self.dist_factor = [1.0 / (1.0 + d / self.p_jour.distance_scale_km) for d in self.dist]

    def _init_population(self, seed: int) -> None:
        """The same initial people and households as talbuk's, wrapped in agents."""
        persons, households, _cells = synthesise(scale=self.scale, seed=seed,
                                                 start_month=self.start_month)
        hh_objs = [Household(self, int(pr), int(c), int(f)) for pr, c, f in
                   zip(households.province.tolist(), households.cell.tolist(),
                       households.flags.tolist(), strict=True)]
        for bm, sx, pr, sb, hh, res in zip(persons.birth_month.tolist(), persons.sex.tolist(),
                                           persons.province.tolist(), persons.songbun.tolist(),
                                           persons.household.tolist(),
                                           persons.resistance.tolist(), strict=True):
            Person(self, hh_objs[hh], int(bm), int(sx), int(pr), int(sb), float(res))
        self.initial_persons = persons.n
        self.farm_share = {}
        for k in range(len(PROVINCES)):
            mine = [h for h in hh_objs if h.province == k]
            self.farm_share[k] = (sum(1 for h in mine if h.flags & H_FARM) / len(mine)) if mine else 0.38

    def _copy_population(self, sim) -> None:
        self.t_index = sim.t_index
        self.month = sim.month
        hh, ps = sim.households, sim.persons
        econ = next(m for m in sim.modules if m.name == "economy")
        att = next(m for m in sim.modules if m.name == "attitudes")
        h_objs = []
        for k in range(hh.n):
            h = Household(self, int(hh.province[k]), int(hh.cell[k]), int(hh.flags[k]))
            h.members = int(hh.members[k])
            h.savings_won = float(hh.savings_won[k])
            h.savings_usd = float(hh.savings_usd[k])
            h.state_income = float(hh.state_income[k])
            h.market_income = float(hh.market_income[k])
            h.surveillance = float(hh.surveillance[k])
            h.kin_abroad = int(hh.kin_abroad[k])
            h.entry_res = float(econ.entry_res[k])
            h.shortfall = float(econ.shortfall[k])
            h.jitter_u = float(econ.hh_u[k])
            if k < att.prev_wealth.shape[0]:
                h.prev_wealth = float(att.prev_wealth[k])
                h.loss = float(att.loss[k])
            h_objs.append(h)
        self.by_uid: dict[int, Person] = {}
        for i in range(ps.n):
            if ps.stage[i] == DEAD:
                continue
            a = Person(self, h_objs[int(ps.household[i])], int(ps.birth_month[i]), int(ps.sex[i]),
                       int(ps.province[i]), int(ps.songbun[i]), float(ps.resistance[i]),
                       traits=int(ps.traits[i]))
            for f in ("stage", "flags", "stage_month"):
                setattr(a, f, int(getattr(ps, f)[i]))
            for f in ("hunger", "market_skill", "media_exposure", "desire", "grievance",
                      "legitimacy", "fear"):
                setattr(a, f, float(getattr(ps, f)[i]))
            self.by_uid[i] = a
        self._h_objs = h_objs
        self.initial_persons = sim.initial_persons
        self.farm_share = {k: float(v) for k, v in enumerate(econ.farm_share)}

    def _copy_module_state(self, sim) -> None:
        mods = {m.name: m for m in sim.modules}
        demo = mods["demography"]
        self._last = None if demo._last is None else tuple(demo._last)
        self.media_level = [float(x) for x in mods["information"].level]
        self.attitudes_started = bool(mods["attitudes"].started)
        jr = mods["journey"]
        from talbuk.modules.journey import R_ARRIVED, R_IN_CHINA

        for j in range(jr.n_idx):
            i, r = int(jr.idx_person[j]), int(jr.idx_rec[j])
            if i in self.by_uid:
                rec = {"decided": int(jr.rec_months[r, 0]),
                       "in_china": int(jr.rec_months[r, R_IN_CHINA]) if jr.rec_months[r, R_IN_CHINA] >= 0 else None,
                       "arrived": int(jr.rec_months[r, R_ARRIVED]) if jr.rec_months[r, R_ARRIVED] >= 0 else None,
                       "planned": bool(jr.rec_planned[r])}
                self.pipeline.append([self.by_uid[i], rec])
        from talbuk.modules.journey import M_PLANNED, M_SETTLED, X_ARRIVED

        self.mf = [[float(x) for x in row] for row in jr.mf[:5]]
        self.mf_settled = [float(x) for x in jr.mf[M_SETTLED]]
        self.mf_planned = [float(x) for x in jr.mf[M_PLANNED]]
        self.mf_arrived = float(jr.mf_exits[X_ARRIVED].sum())
        self.ema = [[float(x) for x in row] for row in jr.ema]
        self.watched = [self._h_objs[int(h)] for h in mods["left_behind"].watched]

    def lever(self, name: str) -> float:
        return float(self.levers[name][self.t_index])

    def record(self, name: str, value: float) -> None:
        self.monthly[name][self.t_index] = value

    # ------------------------------------------------------------------ the month
    def step(self) -> None:
        import time

        for phase, fn in (("demography", self.demography), ("economy", self.economy),
                          ("information", self.information), ("attitudes", self.attitudes),
                          ("decision", self.decision), ("journey", self.journey),
                          ("left_behind", self.left_behind)):
            t0 = time.perf_counter()
            fn()
            self.phase_seconds[phase] = self.phase_seconds.get(phase, 0.0) + time.perf_counter() - t0
        self.t_index += 1
        self.month += 1

    def run(self) -> pd.DataFrame:
        """Run to the scenario's end month; return the annual table (in people)."""
        while self.t_index < self.n_months:
            self.step()
        return self.annual()

    def annual(self) -> pd.DataFrame:
        years = np.array([month_year(self.start_month + k) for k in range(self.t_index)])
        rows = []
        for y in np.unique(years):
            sel = years == y
            row = {"year": int(y)}
            for name, kind in OUTPUT_KINDS.items():
                v = self.monthly[name][: self.t_index][sel]
                row[name] = v.sum() if kind == "flow" else (v[-1] if kind == "stock" else v.mean())
            rows.append(row)
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ demography
    def demography(self) -> None:
        year_idx = min(month_year(self.month) - self.first_year, len(self.hazard) - 1)
        if self._last is None:
            pop, ww = 0.0, 0.0
            for a in self.persons:
                if a.stage in IN_COUNTRY:
                    pop += 1
                    if a.sex == SEX_FEMALE:
                        age = (self.month - a.birth_month) // 12
                        if age <= MAX_AGE:
                            ww += self.fertility_shape[age]
            self._last = (pop, ww)
        pop, ww = self._last
        self.demo = d = {"hazard": self.hazard[year_idx], "deaths": 0, "excess": 0.0,
                         "deaths_abroad": 0, "pop": 0, "women_w_next": 0.0,
                         "birth_scale": self.cbr[year_idx] / 1000.0 * pop / 12.0 / ww if ww > 0 else 0.0}
        self.died: list[Person] = []
        self.mothers: list[Person] = []
        self.persons.shuffle_do("demography_step")
        for a in self.died:  # the dead leave the model (those abroad stay in the pipeline list)
            a.remove()
        births = 0
        p_boy = self.p_demo.sex_ratio_at_birth / (1.0 + self.p_demo.sex_ratio_at_birth)
        for mother in self.mothers:
            if mother.flag_split:  # she founds a household in her cell, before any birth
                mother.flag_split = False
                old = mother.household
                new = Household(self, old.province, old.cell, 0)
                if self.random.random() < self.farm_share[new.province]:
                    new.flags |= H_FARM
                mother.household = new
            if mother.flag_birth:
                mother.flag_birth = False
                sex = 0 if self.random.random() < p_boy else 1
                Person(self, mother.household, self.month, sex, mother.province, mother.songbun,
                       self.random.expovariate(1.0))
                births += 1
        # members living in North Korea, per household (a loop over agents)
        for h in self.households_set:
            h.members = 0
        for a in self.persons:
            if a.stage in IN_COUNTRY:
                a.household.members += 1
        self._last = (d["pop"] + births, d["women_w_next"])
        s = self.scale
        self.record("population", (d["pop"] + births) * s)
        self.record("births", births * s)
        self.record("deaths", d["deaths"] * s)
        self.record("excess_deaths", d["excess"] * s)

    # ------------------------------------------------------------------ economy
    def economy(self) -> None:
        p = self.p_econ
        k = self.t_index
        fi = max(self.lever("food_index"), 0.05)
        tol = self.lever("market_tolerance")
        rate = self.lever("exchange_rate")
        rate_old = rate * self.won_factor[k]
        grams = self.lever("pds_grams")
        cover = min(1.0, max(0.0, (grams - p.pds_floor_grams) / (p.pds_full_grams - p.pds_floor_grams)))
        ration = min(grams / cover, p.pds_norm_grams) if cover > 0 else 0.0
        drop = max(0.0, self.tol_ref[k] - tol)
        price = p.price0_usd * fi ** (-p.price_elasticity)
        lr = math.log(800000.0 / 7.0)
        dollar_share = min(p.dollar_share_max,
                           max(0.0, p.dollar_share_max * math.log(max(rate_old, 7.0) / 7.0) / lr))
        # 1. members -> household sums (need, workers, women, market generation, traders)
        hhs = self.households_set
        for h in hhs:
            h.need = 0.0
            h.n_workers = 0
            h.power = 0.0
            h.has_woman = h.has_mg = h.has_trader = False
            h.min_songbun = 3
        month = self.month
        for a in self.persons:
            st = a.stage
            if st not in IN_COUNTRY:
                continue
            h = a.household
            age = _age_years(month - a.birth_month)
            h.need += self.need_w[age]
            if a.songbun < h.min_songbun:
                h.min_songbun = a.songbun
            if 16 <= age <= 64 and st <= PREPARING:
                h.n_workers += 1
                mg = a.birth_month >= self.mg_birth
                if a.sex == SEX_FEMALE:
                    h.has_woman = True
                if mg:
                    h.has_mg = True
                if a.flags & F_TRADER:
                    h.has_trader = True
                    w = p.skill_floor + a.market_skill
                    if mg:
                        w *= 1.0 + p.mg_income_bonus
                    h.power += w
        # 2. cell trading shares, PDS triage (top share of dependents by score), need sums
        cell_n: dict[int, int] = {}
        cell_tr: dict[int, int] = {}
        farm_need = dep_need = 0.0
        dependents = []
        for h in hhs:
            if h.members <= 0:
                continue
            cell_n[h.cell] = cell_n.get(h.cell, 0) + 1
            if h.flags & H_TRADING:
                cell_tr[h.cell] = cell_tr.get(h.cell, 0) + 1
            h.covered = False
            if h.flags & H_FARM:
                farm_need += h.need
            else:
                dep_need += h.need
                sb = h.min_songbun if h.min_songbun < 3 else 1
                score = (self.prov_priority[h.province] + self.songbun_priority[sb]
                         + p.priority_jitter * h.jitter_u)
                dependents.append((score, h))
        self.cell_trading = {c: cell_tr.get(c, 0) / n for c, n in cell_n.items()}
        if ration > 0.0:  # the state covers the top share ``cover`` of dependents by score
            n_bins = 512  # scores binned as talbuk bins them (the cut falls inside a bin)
            hist = [0] * n_bins
            for score, h in dependents:
                hist[min(int(score / self.score_max * n_bins), n_bins - 1)] += h.members
            total = sum(hist)
            cut_bin, cut_frac = -1, 1.0
            if cover < 1.0 and total > 0:
                cut_bin, cut_frac = (n_bins, 0.0) if cover <= 0.0 else (-1, 1.0)
                acc = 0.0
                for b in range(n_bins - 1, -1, -1):
                    if cover > 0.0 and acc + hist[b] >= cover * total:
                        cut_bin, cut_frac = b, (cover * total - acc) / hist[b] if hist[b] else 0.0
                        break
                    acc += hist[b]
            for score, h in dependents:
                x = score / self.score_max * n_bins
                b = min(int(x), n_bins - 1)
                h.covered = b > cut_bin or (b == cut_bin and (x - b) >= 1.0 - cut_frac)
        farm_food = farm_need * min(p.farm_cap, p.farm_advantage * fi)
        pds_food = dep_need * cover * ration / p.need_grams
        uncovered = dep_need * (1.0 - cover)
        residual = 0.0
        if uncovered > 1e-9:
            residual = min(1.0, max(0.0, (fi * (farm_need + dep_need) - farm_food - pds_food) / uncovered))
        self.econ = {
            "fi": fi, "tol": tol, "rate": rate, "redenom": self.lever("redenomination") > 0.5,
            "ration": ration, "coping": p.informal_share * residual, "price": price,
            "wage": max(p.wage_floor_usd, p.wage_1990_usd * 7.0 / rate_old),
            "tol_income": p.income_tol_floor + (1.0 - p.income_tol_floor) * tol,
            "china": p.china_gain * self.lever("trade_with_china"), "dollar_share": dollar_share,
            "quit_hazard": p.quit_base + p.crackdown_quit * drop, "keep": 1.0 - p.savings_spend,
            "redenom_loss": 0.0, "pds_fed": 0, "market_usd": 0.0, "state_usd": 0.0,
            "households": 0, "trading": 0, "pop": 0, "market_gen": 0, "hunger_sum": 0.0,
            "hungry": 0,
        }
        # 3. households: food, income, savings, market entry and quitting
        hhs.shuffle_do("economy_step")
        # 4. people: hunger, who trades, skill
        self.persons.shuffle_do("economy_step")
        e = self.econ
        pop = max(e["pop"], 1)
        self.record("pds_share", e["pds_fed"] / pop)
        self.record("trading_share", e["trading"] / max(e["households"], 1))
        self.record("hunger_mean", e["hunger_sum"] / pop)

    # ------------------------------------------------------------------ information
    def information(self) -> None:
        p = self.p_info
        supply = self.lever("media_supply")
        trade = self.lever("trade_with_china")
        crackdown = self.lever("media_crackdown")
        trade_factor = (1.0 - p.trade_weight) + p.trade_weight * trade
        for k, d in enumerate(self.dist):
            target = supply * trade_factor * math.exp(-d / p.route_km)
            if self.t_index == 0:
                self.media_level[k] = target
            else:
                self.media_level[k] += (target - self.media_level[k]) / (1.0 + d / p.route_speed_km_per_month)
        hhs = self.households_set
        for h in hhs:
            h.n_media_age = 0
            h.n_watching = 0
            h.social = 0.0
            h.caught = False
        month = self.month
        for a in self.persons:
            if a.stage != RESIDENT and a.stage != PREPARING:
                continue
            if month - a.birth_month < 120:
                continue
            h = a.household
            h.n_media_age += 1
            if a.flags & F_MEDIA_EVER and a.media_exposure >= p.watching_min:
                h.n_watching += 1
        cw: dict[int, int] = {}
        cn: dict[int, int] = {}
        ck: dict[int, int] = {}
        ch: dict[int, int] = {}
        for h in hhs:
            c = h.cell
            cw[c] = cw.get(c, 0) + h.n_watching
            cn[c] = cn.get(c, 0) + h.n_media_age
            if h.members > 0:
                ch[c] = ch.get(c, 0) + 1
                if h.kin_abroad > 0 or h.flags & (H_KIN_CHINA | H_KIN_SOUTH):
                    ck[c] = ck.get(c, 0) + 1
        cell_share = {c: cw[c] / n for c, n in cn.items() if n > 0}
        self.cell_kin = {c: ck.get(c, 0) / n for c, n in ch.items()}
        inspect_p = p.inspect_rate * crackdown
        self.cells_raided = set()
        if inspect_p > 0.0:
            for c, w in cw.items():
                if w > 0 and self.random.random() < inspect_p:
                    self.cells_raided.add(c)
        share_cut = 1.0 - p.crackdown_sharing_cut * crackdown
        for h in hhs:
            if h.n_media_age == 0:
                continue
            h.social = (p.family_weight * share_cut * h.n_watching / h.n_media_age
                        + p.friends_weight * share_cut * cell_share.get(h.cell, 0.0))
            if h.cell in self.cells_raided and h.n_watching > 0 and self.random.random() < p.catch_prob:
                h.caught = True
                h.surveillance = min(1.0, h.surveillance + p.caught_surveillance)
        self.info = {"adults": 0, "ever": 0, "caught": 0}
        self.persons.shuffle_do("media_step")
        self.record("media_ever_share", self.info["ever"] / self.info["adults"] if self.info["adults"] else 0.0)

    # ------------------------------------------------------------------ attitudes
    def attitudes(self) -> None:
        p = self.p_att
        self.households_set.shuffle_do("loss_step")
        if self.attitudes_started:
            self.att_rates = (p.rate_legitimacy, p.rate_grievance, p.rate_desire, p.rate_fear)
        else:  # start at the targets of the first month
            self.att_rates = (1.0, 1.0, 1.0, 1.0)
            self.attitudes_started = True
        self.fear_severity = p.fear_severity * self.lever("punishment_severity")
        self.att = {"n": 0, "desire": 0.0, "grievance": 0.0}
        self.persons.shuffle_do("attitude_step")
        n = self.att["n"]
        self.record("mean_desire", self.att["desire"] / n if n else 0.0)
        self.record("mean_grievance", self.att["grievance"] / n if n else 0.0)

    # ------------------------------------------------------------------ decision
    def decision(self) -> None:
        p = self.p_dec
        border = self.lever("border_security")
        exch = self.lever("exchange_rate")
        china = self.lever("china_repatriation")
        self.dec = {
            "border_k": border ** p.border_exponent, "china": china, "border": border,
            "severity": self.lever("punishment_severity"), "fee": self.lever("broker_fee_usd"),
            "inv_rate": 1.0 / exch if exch > 0 else 0.0,
            "p_succ0": (1.0 - border) * (1.0 - 0.5 * china),
            "expected": 0.0, "expected_female": 0.0, "decisions": 0,
        }
        self.new_deciders = []
        self.persons.shuffle_do("decision_step")
        s = self.scale
        self.record("decisions", self.dec["decisions"] * s)
        self.record("expected_decisions", self.dec["expected"] * s)

    # ------------------------------------------------------------------ journey
    def _journey_probabilities(self) -> dict[str, float]:
        p = self.p_jour
        border = self.lever("border_security")
        rep = self.lever("china_repatriation")
        fee = self.lever("broker_fee_usd")
        severity = self.lever("punishment_severity")
        ok = p.cross_success_max * max(0.0, 1.0 - border) ** p.cross_exponent
        year = month_year(self.month) + (self.month % 12) / 12.0
        w = _ramp(year, p.female_ramp_start, p.female_ramp_end)
        w_p = _ramp(year, p.planned_ramp_start, p.planned_ramp_end)
        w_r = _ramp(year, p.return_ramp_start, p.return_ramp_end)
        # an airlift (people) over the expected stock hiding in China or in transit
        stock = sum(self.mf[2]) + sum(self.mf[3]) + sum(self.mf_planned)
        people = self.lever("airlift")
        air = min(1.0, people / (self.scale * stock)) if people > 0 and stock > 0 else 0.0
        # broker credit: a sum that grows with the people arrived so far, as a share of the fee
        credit = 0.0
        if p.broker_credit_usd > 0.0:
            arrived = self.mf_arrived * self.scale
            usd = p.broker_credit_usd * arrived / (arrived + p.broker_credit_half)
            credit = min(1.0, usd / max(1.0, fee))
        return {
            "credit": credit,
            "airlift": air,
            "return": p.return_rate * (1.0 - w_r),
            "planned": p.planned_share * w_p,
            "fee_full": max(1.0, fee),
            "planned_on": min(0.5, p.planned_onward_rate * self.lever("onward_route")),
            "giveup": min(0.5, p.giveup_base + p.giveup_security * border),
            "fee_cross": max(1.0, p.crossing_fee_share * fee),
            "exchange": max(1e-6, self.lever("exchange_rate")),
            "cross_ok": ok, "cross_die": min(p.cross_death * border, 1.0 - ok),
            "caught_fail": min(1.0, p.caught_base + p.caught_security * border),
            "rep": min(0.5, p.repatriation_rate * rep),
            "onward": p.onward_rate * self.lever("onward_route"),
            "settled_on": min(0.5, p.settled_onward_rate * self.lever("onward_route") * (
                1.0 + _ramp(year, p.settled_ramp_start, p.settled_ramp_end) * (p.settled_onward_late - 1.0))),
            "female": p.female_onward_early + w * (p.female_onward_late - p.female_onward_early),
            "fee_factor": p.onward_fee_half_usd / (p.onward_fee_half_usd
                                                   + (1.0 - credit) * (1.0 - p.crossing_fee_share) * fee),
            "arrive": 1.0 / p.transit_months,
            "transit_caught": min(0.3, p.transit_arrest * rep),
            "release": 1.0 / (p.detention_months_base + p.detention_months_severity * severity),
            "die_detained": min(0.5, p.detention_death * severity),
        }

    def journey(self) -> None:
        p = self.p_jour
        in_index = {id(a) for a, _ in self.pipeline}
        for a in self.new_deciders:
            if a.stage == PREPARING and id(a) not in in_index:
                self.pipeline.append([a, {"decided": self.month, "in_china": None,
                                          "arrived": None}])
        pr = self._journey_probabilities()
        t = self.month
        rnd = self.random
        self.events = []
        touched = []
        keep_list = []
        arrivals = crossings = 0
        # prep n, prep p_go sum, china n, china p_on sum, crossing n, crossing planned-chance sum
        sums = [[0.0, 0.0] for _ in range(6)]
        for entry in self.pipeline:
            a, rec = entry
            st = a.stage
            h = a.household
            s = 1 if a.sex == SEX_FEMALE else 0
            keep = True
            if st == DEAD or st == RESIDENT:
                keep = False
            elif st == ARRIVED:
                pass
            elif st == SETTLED_CHINA:  # settled for years; some set off for South Korea later
                if rnd.random() < pr["settled_on"]:
                    a.stage, a.stage_month = IN_TRANSIT, t
            else:
                u = rnd.random()
                if st == PREPARING:
                    if h.flags & H_KIN_SOUTH:
                        afford = p.kin_prepare_mult
                    else:
                        money = h.savings_usd + h.savings_won / pr["exchange"] + p.goods_usd
                        afford = max(p.afford_floor, min(1.0, money / pr["fee_cross"] + pr["credit"]))
                    p_go = (p.prepare_rate * self.dist_factor[a.province] * afford
                            * (1.0 - p.surveillance_block * h.surveillance))
                    p_go = min(p_go, 0.95 - pr["giveup"])
                    sums[0][s] += 1.0
                    sums[1][s] += p_go
                    if u < pr["giveup"]:
                        a.stage, a.stage_month, keep = RESIDENT, t, False
                    elif u < pr["giveup"] + p_go:
                        a.stage, a.stage_month = CROSSING, t
                elif st == CROSSING:
                    p_ok = pr["cross_ok"]
                    p_die = p_ok + pr["cross_die"]
                    p_caught = p_die + (1.0 - p_die) * pr["caught_fail"]
                    q = 0.0  # chance of a planned escape: the whole fee paid, kin or credit help
                    if pr["planned"] > 0.0:
                        full = (h.savings_usd + h.savings_won / pr["exchange"]) / pr["fee_full"]
                        if h.flags & H_KIN_SOUTH:
                            full += max(p.kin_planned_share, pr["credit"])
                        else:
                            full += pr["credit"]
                        q = pr["planned"] * min(1.0, full)
                    sums[4][s] += 1.0
                    sums[5][s] += q
                    if u < p_ok:
                        a.stage, a.stage_month = IN_CHINA, t
                        rec["in_china"] = t
                        rec["planned"] = q > 0.0 and rnd.random() < q
                        crossings += 1
                        self.events.append((h, 0))
                    elif u < p_die:
                        self._dies_abroad(a)
                        keep = False
                    elif u < p_caught:
                        a.stage, a.stage_month = DETAINED, t
                        self.events.append((h, 1))
                    else:
                        a.stage, a.stage_month = PREPARING, t
                elif st == IN_CHINA:
                    pa = pr["airlift"]  # the airlift first, the other exits on the rest
                    qa = 1.0 - pa
                    p_rep = pa + qa * pr["rep"]
                    p_die = p_rep + qa * p.china_death_rate
                    p_ret = 0.0
                    if rec.get("planned"):  # the broker moves them on; nobody settles
                        p_on = pr["planned_on"]
                        p_settle = p_die
                    else:
                        p_ret = qa * pr["return"]
                        p_on = pr["onward"] * (pr["female"] if s == 1 else 1.0) * (
                            p.kin_onward_mult if h.flags & H_KIN_SOUTH else pr["fee_factor"])
                        p_on = min(p_on, 0.5)
                        sums[2][s] += 1.0
                        sums[3][s] += p_on
                        p_settle = p_die + qa * (p.settle_rate_female if s == 1 else p.settle_rate_male)
                    p_on = qa * p_on
                    if u < pa:
                        a.stage, a.stage_month = ARRIVED, t
                        rec["arrived"] = t
                        arrivals += 1
                    elif u < p_rep:
                        a.stage, a.stage_month = DETAINED, t
                        self.events.append((h, 1))
                    elif u < p_die:
                        self._dies_abroad(a)
                        keep = False
                    elif u < p_settle:
                        a.stage, a.stage_month = SETTLED_CHINA, t
                    elif u < p_settle + p_on:
                        a.stage, a.stage_month = IN_TRANSIT, t
                    elif u < p_settle + p_on + p_ret:  # home of their own accord
                        a.stage, a.stage_month, keep = RESIDENT, t, False
                elif st == IN_TRANSIT:
                    pa = pr["airlift"]
                    qa = 1.0 - pa
                    p_arr = pa + qa * pr["arrive"]
                    p_caught = p_arr + qa * pr["transit_caught"]
                    if u < p_arr:
                        a.stage, a.stage_month = ARRIVED, t
                        rec["arrived"] = t
                        arrivals += 1
                    elif u < p_caught:
                        a.stage, a.stage_month = DETAINED, t
                        self.events.append((h, 1))
                    elif u < p_caught + qa * p.transit_death:
                        self._dies_abroad(a)
                        keep = False
                elif st == DETAINED:
                    p_rel = pr["release"]
                    if u < p_rel:
                        a.stage, a.stage_month = RESIDENT, t
                        a.flags |= F_PUNISHED
                        a.fear = min(1.0, a.fear + p.fear_caught)
                        keep = False
                    elif u < p_rel + pr["die_detained"]:
                        self._dies_abroad(a)
                        keep = False
            if keep:
                keep_list.append(entry)
            else:
                touched.append(h)
        self.pipeline = keep_list
        # kin flags recounted exactly from the pipeline (chain migration)
        for h in touched:
            h.flags &= ~(H_KIN_CHINA | H_KIN_SOUTH)
            h.kin_abroad = 0
        for a, _ in self.pipeline:
            a.household.flags &= ~(H_KIN_CHINA | H_KIN_SOUTH)
            a.household.kin_abroad = 0
        for a, _ in self.pipeline:
            h = a.household
            if a.stage in (IN_CHINA, IN_TRANSIT, SETTLED_CHINA):
                h.flags |= H_KIN_CHINA
            elif a.stage == ARRIVED:
                h.flags |= H_KIN_SOUTH
            else:
                continue
            h.kin_abroad = min(255, h.kin_abroad + 1)
        expected_arrivals, expected_china = self._mean_field(pr, sums)
        s = self.scale
        self.record("arrivals", arrivals * s)
        self.record("arrivals_expected", expected_arrivals * s)
        self.record("crossings", crossings * s)
        self.record("in_china", sum(1 for a, _ in self.pipeline if a.stage in (IN_CHINA, SETTLED_CHINA)) * s)

    def _dies_abroad(self, a: Person) -> None:
        a.stage = DEAD
        a.stage_month = self.month
        a.remove()

    def _mean_field(self, pr: dict, sums: list) -> tuple[float, float]:
        """The deterministic expected pipeline (talbuk's low-noise arrivals), in agents."""
        p = self.p_jour
        dec = self.dec["expected"]
        dec_f = min(max(self.dec["expected_female"], 0.0), dec)
        mf = self.mf
        mf[0][0] += dec - dec_f
        mf[0][1] += dec_f
        arrived = 0.0
        for s in range(2):
            avg = []
            for row, (n_col, p_col) in enumerate(((0, 1), (2, 3), (4, 5))):
                if row == 0:  # lever-only reference: preparing, mean distance, affordable
                    ref = min(p.prepare_rate * self.dist_ref, 0.95 - pr["giveup"])
                elif row == 1:  # leaving China onward without kin in the South
                    ref = min(0.5, pr["onward"] * (pr["female"] if s == 1 else 1.0) * pr["fee_factor"])
                else:  # a crosser's chance of a planned escape, the whole fee affordable
                    ref = pr["planned"]
                if sums[n_col][s] > 0:
                    v = sums[p_col][s] / sums[n_col][s]
                    if ref > 0:
                        self.ema[row][s] = 0.8 * self.ema[row][s] + 0.2 * (v / ref)
                else:
                    v = self.ema[row][s] * ref
                avg.append(v)
            p_go, p_on, q_plan = avg
            prep, cross, china, transit, det = (mf[k][s] for k in range(5))
            gu, go = prep * pr["giveup"], prep * p_go
            ok, dd = cross * pr["cross_ok"], cross * pr["cross_die"]
            cau = (cross - ok - dd) * pr["caught_fail"]
            tb = cross - ok - dd - cau
            okp = ok * q_plan
            settle = p.settle_rate_female if s == 1 else p.settle_rate_male
            pa = pr["airlift"]
            qa = 1.0 - pa
            planned = self.mf_planned[s]
            air, air_p = china * pa, planned * pa
            rep, dh = china * qa * pr["rep"], china * qa * p.china_death_rate
            st, on = china * qa * settle, china * qa * p_on
            ret = china * qa * pr["return"]
            arr = transit * (pa + qa * pr["arrive"])
            tc, td = transit * qa * pr["transit_caught"], transit * qa * p.transit_death
            rel, ddd = det * pr["release"], det * pr["die_detained"]
            son = self.mf_settled[s] * pr["settled_on"]
            rep_p, dh_p = planned * qa * pr["rep"], planned * qa * p.china_death_rate
            on_p = planned * qa * pr["planned_on"]
            mf[0][s] = prep - gu - go + tb
            mf[1][s] = cross - ok - dd - cau - tb + go
            mf[2][s] = china - rep - dh - st - on - air - ret + ok - okp
            mf[3][s] = transit - arr - tc - td + on + son + on_p
            mf[4][s] = det - rel - ddd + cau + rep + tc + rep_p
            self.mf_settled[s] += st - son
            self.mf_planned[s] = planned - rep_p - dh_p - on_p - air_p + okp
            arrived += arr + air + air_p
        self.mf_arrived += arrived
        return arrived, (mf[2][0] + mf[2][1] + self.mf_settled[0] + self.mf_settled[1]
                         + self.mf_planned[0] + self.mf_planned[1])

    # ------------------------------------------------------------------ left behind
    def left_behind(self) -> None:
        p = self.p_left
        severity = self.lever("punishment_severity")
        border = self.lever("border_security")
        still = []
        for h in self.watched:  # old surveillance fades first
            s = h.surveillance * (1.0 - p.surveillance_decay)
            if s < p.surveillance_floor:
                h.surveillance = 0.0
                h.flags &= ~H_WATCHED
            else:
                h.surveillance = s
                still.append(h)
        self.watched = still
        for h, kind in self.events:  # this month's crossings and arrests
            if not h.flags & H_WATCHED:
                h.flags |= H_WATCHED
                self.watched.append(h)
            s = h.surveillance + (p.surveillance_on_caught if kind == 1 else p.surveillance_on_leave)
            if self.random.random() < p.family_punish_prob * severity:
                s = 1.0
                h.savings_won *= 1.0 - p.family_fine_share
                h.savings_usd *= 1.0 - p.family_fine_share
            h.surveillance = min(1.0, s)
        monthly = p.remit_usd_per_year / 12.0 * (1.0 - border ** 4)
        if monthly > 0:
            for a, rec in self.pipeline:
                if a.stage != ARRIVED or self.month - rec["arrived"] < p.remit_delay_months:
                    continue
                if a.household.members <= 0:
                    continue
                if a.sends_money is None:  # a fixed trait
                    a.sends_money = self.random.random() < p.remit_share
                if a.sends_money:
                    a.household.savings_usd += monthly
