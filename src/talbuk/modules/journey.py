"""The journey out and the families left behind (DESIGN sections 2 and 4.5).

Two modules live here: :class:`Journey` (``journey``) moves everyone who has decided to leave
through the pipeline, and :class:`LeftBehind` (``left_behind``) handles the households they
leave: surveillance, punishment and remittances. ``docs/journey.md`` describes both in ODD
form, with every equation and parameter.

Pipeline (stage codes in :mod:`talbuk.state`)::

    RESIDENT -(decision)-> PREPARING -> CROSSING -> IN_CHINA -> IN_TRANSIT -> ARRIVED
                              |  \\gave up      |  \\turned back  |  \\settled   |
                              |   -> RESIDENT   |   -> PREPARING |   -> SETTLED_CHINA
                              caught at the border, arrested in China or in transit -> DETAINED
                              DETAINED -> RESIDENT (punished) ; deaths on the way -> DEAD
                              IN_CHINA -> RESIDENT (home unseen, famine years)
                              IN_CHINA or IN_TRANSIT -> ARRIVED (an airlift, ``airlift`` lever)

Every person in the pipeline makes one categorical draw a month (stream ``journey``); the
probabilities come from this month's levers (``border_security``, ``china_repatriation``,
``broker_fee_usd``, ``onward_route``, ``punishment_severity``, ``exchange_rate``) and a few
personal factors (household money, distance to the border, kin in South Korea, sex). Only the
people in the pipeline are visited: the module keeps a compact index of them (and of those who
arrived or settled, whose households keep the kin flags), so a month costs O(pipeline), not
O(population).

Mechanisms and sources (starting values set by hand, see docs/journey.md):

* Preparing: the household must raise the crossing part of the broker fee
  (``data/broker_fees.csv``: tens of dollars in the 1990s, thousands in the 2000s, tens of
  thousands after 2016) from its savings in dollars and won; a floor stands for borrowing,
  selling goods and "pay on arrival" brokerage (brokers paid from the resettlement grant in
  South Korea; Washington Post 2007, BBC 2011). Kin in South Korea pay (DESIGN 4.5). People
  far from the border need longer (travel permits, bribes). Some give up each month, more so
  when the border is tight. A watched household finds it harder to leave.
* Crossing: success falls with ``border_security`` (1 = sealed: nobody crosses); a failure is
  being caught (more likely the tighter the border) or being turned back to try again; a few
  die (shoot-to-kill orders of 2008 and 2020).
* In China: monthly arrest and repatriation risk rises with ``china_repatriation``; women,
  often sold into marriage, stayed for years before the mid-2000s (their onward rate is lower
  then; later brokers ran direct routes mostly used by women); some settle for good.
* Planned escapes (from the 2000s): a crosser whose household can pay the whole fee (kin in
  South Korea paying part) may be on a planned escape, the broker taking them from the river
  to a third country in one trip: they do not settle and leave China within weeks or months
  (broker_fees.csv 2006-2007 and 2011; months abroad of 2009 arrivals, targets.csv).
* Onward route: the rate rises with ``onward_route`` and falls with the onward part of the
  fee; kin in South Korea pay and speed it; in transit (Mongolia, Vietnam, Laos, Thailand) a
  few months, with some risk of arrest.
* Detention: caught people spend months in detention (longer when ``punishment_severity`` is
  high), some die there, the rest return home punished and more afraid.
* Left behind: when a member crosses or is caught the household is watched (surveillance up)
  and may be punished (a fine taken from savings); watching fades. Members in South Korea
  send remittances. Kin flags (H_KIN_CHINA, H_KIN_SOUTH) and ``kin_abroad`` are recounted
  every month from the index, exactly, for the decision module (chain migration), with the
  strength of the ties to the South (``households.kin_tie``), which halves every
  ``kin_tie_half_life_years`` since the household's latest arrival (0: no fading).
* Low-noise expected arrivals (DESIGN section 2): a deterministic mean-field copy of the
  pipeline (mass per stage and sex) is fed each month with ``sim.shared["expected_decisions"]``
  and moved with the same probabilities the agents use that month. Where agents' probabilities
  depend on personal state (money, distance, kin, surveillance), the copy uses the mean of the
  agents' own probabilities in that stage and sex this month (or, when no agent is in that
  stage, an exponential moving average of past means). Natural deaths abroad are left out of
  the copy (at most about 2% over a three-year stay).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba as nb
import numpy as np
from pydantic import Field

from talbuk import rng
from talbuk.calendar import format_month, month_year
from talbuk.modules.base import Module, ModuleParams, Output
from talbuk.population import PROVINCE_NAMES, PROVINCES
from talbuk.state import (
    ARRIVED,
    CROSSING,
    DEAD,
    DETAINED,
    F_PUNISHED,
    H_KIN_CHINA,
    H_KIN_SOUTH,
    H_WATCHED,
    IN_CHINA,
    IN_TRANSIT,
    PREPARING,
    RESIDENT,
    SETTLED_CHINA,
    SEX_FEMALE,
    SONGBUN_NAMES,
    STAGE_NAMES,
    in_country,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

_JOURNEY = np.uint64(rng.STREAMS["journey"])
_LEFT_BEHIND = np.uint64(rng.STREAMS["left_behind"])

# columns of the per-episode month record
R_DECIDED, R_CROSSED, R_IN_CHINA, R_TRANSIT, R_ARRIVED, R_CAUGHT, R_SETTLED, R_DIED = range(8)
RECORD_COLUMNS = ("decided", "crossed", "in_china", "transit", "arrived", "caught", "settled", "died")
NO_MONTH = -1
ACTIVE = 255  # rec_outcome of an episode still in the index

# monthly counters of the journey kernel
(K_ARR, K_ARR_F, K_ARR_KIN, K_MONTHS_ABROAD, K_CROSS_OK, K_CAUGHT_CROSS, K_TURNED, K_REPAT,
 K_GAVE_UP, K_JDEATH, K_SETTLED, K_RELEASED, K_NAT_DEATH, K_EVENTS,
 S_PREP, S_CROSSING, S_CHINA, S_TRANSIT, S_SETTLED, S_DETAINED, S_ARRIVED, K_AIRLIFT,
 K_RETURNED) = range(23)
N_K = 23

# lever-derived probabilities passed to the kernel (index into ``pr``)
(P_GIVEUP, P_PREP_BASE, P_AFFORD_FLOOR, P_FEE_CROSS, P_EXCHANGE, P_KIN_PREP, P_SURV_BLOCK,
 P_CROSS_OK, P_CROSS_DIE, P_CAUGHT_FAIL, P_REP, P_SETTLE_M, P_SETTLE_F, P_DIE_CHINA, P_ONWARD,
 P_FEMALE, P_FEE_FACTOR, P_KIN_ONWARD, P_ARRIVE, P_TRANSIT_CAUGHT, P_TRANSIT_DIE, P_RELEASE,
 P_DIE_DETAINED, P_FEAR, P_GOODS, P_SETTLED_ON, P_PLANNED, P_FEE_FULL, P_PLANNED_ON, P_KIN_PLANNED,
 P_AIRLIFT, P_RETURN, P_CREDIT) = range(33)
N_P = 33

# mean-field stages (rows of ``mf``); M_PLANNED: in China on a planned escape
M_PREP, M_CROSS, M_CHINA, M_TRANSIT, M_DETAINED, M_SETTLED, M_PLANNED = range(7)
N_M = 7
# rows of the kernel's ``sums`` (per sex): people preparing and the sum of their p_go; people
# in China (not on a planned escape) and the sum of their p_on; people crossing and the sum of
# their chance of a planned escape should they get through
(U_PREP_N, U_PREP_P, U_CHINA_N, U_CHINA_P, U_CROSS_N, U_CROSS_P) = range(6)
N_U = 6
# mean-field cumulative exits (X_RELEASED: back home, released from detention or returned
# from China of their own accord)
X_GAVE_UP, X_DIED, X_ARRIVED, X_RELEASED = range(4)
# columns of the two mean-field copies (Journey._advance): (column, sex, kin in South Korea,
# -1 for the copy pooled over kin)
_COLS_POOLED = np.array([(0, 0, -1), (1, 1, -1)], dtype=np.int64)
_COLS_KIN = np.array([(0, 0, 0), (1, 1, 0), (2, 0, 1), (3, 1, 1)], dtype=np.int64)


class JourneyParams(ModuleParams):
    """Journey parameters. Defaults are starting values set by hand against the shape of
    ``data/arrivals_rok.csv`` and the targets of ``data/targets.csv`` (stock in China 2002 and
    2006, months abroad 2002 and 2009); they are priors for calibration, not estimates."""

    prepare_rate: float = Field(0.30, ge=0, le=0.95, description="assumption: monthly chance that a preparer near the border who can pay sets off (a few months of preparation)")
    afford_floor: float = Field(0.1, ge=0, le=1, description="set by hand (0.25 -> 0.1) so that the post-2012 broker fees (over $10,000, broker_fees.csv) bind for families without kin abroad: affordability of a household without the fee (borrowing, selling goods, brokers paid on arrival: Washington Post 2007, BBC 2011)")
    goods_usd: float = Field(30.0, ge=0, le=5000, description="assumption: what a household without cash can still pay a guard or a guide with (grain, goods, favours), in USD; with the fees of the 1990s (tens of dollars, broker_fees.csv) almost anyone could pay, as refugees of the famine years report wading across and bribing guards without brokers (Haggard & Noland 2011); it is small against the fees of the 2000s")
    crossing_fee_share: float = Field(0.5, ge=0.05, le=1, description="broker_fees.csv 2011: about 3,500 of 6,000 USD for the crossing, the rest for the onward route")
    distance_scale_km: float = Field(150.0, ge=10, le=2000, description="assumption: preparation rate falls as 1/(1 + distance/scale) with the road distance to the border (permits, bribes)")
    kin_prepare_mult: float = Field(1.3, ge=1, le=10, description="revised by hand (2 -> 1.3, 2026-11-30) against the kin share of 2010 arrivals (0.35-0.45, targets.csv: 0.48 with 2, 0.45 with 1.3, 0.43 with 1 and kin_onward_mult 1, 20-run posterior ensembles at scale 500, docs/journey.md); revised by hand (4 -> 2) in the 2026-11-29 refit with the settled stock in China, against the kin share of 2010 arrivals (0.35-0.45, targets.csv); set by hand (2 -> 4) against the 2005-2011 rise of arrivals (chain migration; about 40% of 2010 arrivals had family in the South, targets.csv): kin in South Korea pay the broker and arrange the crossing (DESIGN 4.5)")
    kin_tie_half_life_years: float = Field(0.0, ge=0, le=100, description="assumption, 0 = ties never fade (the model up to 2026-11-30): half-life, in years since the latest arrival of a member in South Korea, of the pull (attitudes.desire_kin_south) and the relief of risk (decision.kin_relief) that kin in the South give their household (households.kin_tie). Defectors send money home and pay brokers mostly in their first years in the South, before they start families there and while their debts to brokers are paid off; no survey shipped in data/ gives the rate, so it is a prior for calibration (priors_tie.toml: log-uniform, 0.5-20 years)")
    surveillance_block: float = Field(0.5, ge=0, le=1, description="assumption: share of the preparation rate lost in a fully watched household")
    giveup_base: float = Field(0.03, ge=0, le=0.3, description="assumption: monthly chance a preparer gives up")
    giveup_security: float = Field(0.05, ge=0, le=0.5, description="assumption: extra monthly chance of giving up per unit of border_security")
    cross_success_max: float = Field(0.9, ge=0, le=1, description="assumption: chance a crossing succeeds with an open border (border_security = 0)")
    cross_exponent: float = Field(1.0, ge=0.2, le=5, description="assumption: success = max * (1 - border_security) ** exponent; 0 when sealed")
    cross_death: float = Field(0.01, ge=0, le=0.2, description="assumption: chance of death at the crossing per unit of border_security (shoot-to-kill orders, events.csv 2008-05, 2020-08)")
    caught_base: float = Field(0.3, ge=0, le=1, description="assumption: share of failed crossings that end in arrest with an open border")
    caught_security: float = Field(0.6, ge=0, le=1, description="assumption: extra share caught per unit of border_security (caught = base + this * security, capped at 1)")
    repatriation_rate: float = Field(0.03, ge=0, le=0.5, description="assumption: monthly arrest-and-return chance in China per unit of china_repatriation; set by hand so 2002 arrivals had been abroad about 38 months (targets.csv)")
    settle_rate_male: float = Field(0.01, ge=0, le=0.2, description="revised by hand (0.004 -> 0.01) with the famine-era crossings that goods_usd lets through: men working for years on Chinese farms and logging sites; assumption: monthly chance a man stays in China for good")
    settle_rate_female: float = Field(0.04, ge=0, le=0.2, description="revised by hand (0.015 -> 0.04) so that the stock in China in 2006 reaches the 30,000-100,000 of targets.csv; assumption: monthly chance a woman stays in China for good (marriage; DESIGN 4.5); raised by hand towards the stock in China of targets.csv 2002 and 2006")
    settled_onward_rate: float = Field(0.0007, ge=0, le=0.2, description="revised by hand (0.001 -> 0.0007, 2026-11-30) with settled_onward_late 2.5, so the pull between the two targets below is no longer a compromise (0.0007: 2009 arrivals 23.5 months abroad, 2023 arrivals 249 against 196, 20-run posterior ensemble at scale 500, docs/journey.md); before: assumption, set by hand (2026-11-29) as a compromise between two targets it pulls apart (scale 500, seed 2, low-noise estimates): at 0.002 the 2009 arrivals average 32 months abroad (targets.csv: 12-24) and 2023 arrivals are 196 (record 196); at 0.001, 25 months and 109; at 0.0005, 20 months and 75: monthly chance that a person settled in China (mostly women living with Chinese men) sets off for South Korea, per unit of onward_route (no fee or kin factor: settled people have had years to save, and the mean-field copy stays exact); many arrivals of the 2000s had lived in China for years (2002 arrivals: 38 months abroad on average, targets.csv), and women long settled in China were a large share of the late-2000s arrivals")
    settled_onward_late: float = Field(2.5, ge=0, le=20, description="assumption, set by hand at 2.5 (2026-11-30; 2, 2.5 and 3 tried, docs/journey.md): the settled people's onward rate after the ramp, relative to settled_onward_rate. From the mid-2010s China's real-name registration of phone numbers (from 2013, enforced for every number by about 2016) and its camera networks made life in hiding harder for North Koreans without papers, and the arrivals of the 2020s were mostly people who had lived in China for years (Ministry of Unification briefings; not shipped in data/); with one rate for the whole period the months abroad of 2009 arrivals and the arrivals of 2023-25 pull it in opposite directions (docs/journey.md)")
    settled_ramp_start: int = Field(2013, ge=1990, le=2030, description="assumption: year the settled people's onward rate starts to rise (real-name phone registration in China from 2013)")
    settled_ramp_end: int = Field(2018, ge=1990, le=2030, description="assumption: year the settled people's onward rate reaches settled_onward_late times settled_onward_rate")
    china_death_rate: float = Field(0.0005, ge=0, le=0.05, description="assumption: monthly deaths in China beyond natural mortality (violence, illness in hiding)")
    onward_rate: float = Field(0.07, ge=0, le=1, description="revised by hand (0.10 -> 0.07) with the larger stock in China; assumption: monthly chance of setting off for South Korea per unit of onward_route (before fee, sex and kin factors); set by hand against months abroad (targets.csv)")
    female_onward_early: float = Field(0.5, ge=0, le=1.5, description="set by hand (0.3 -> 0.5, 2026-11-29) against months abroad of 2002 arrivals (targets.csv: 30-48; 48.6 with 0.3, 48.0 with 0.5 in the screening of docs/journey.md): women's onward rate relative to men's until the ramp starts (women sold into marriage stay for years; DESIGN 4.5)")
    female_onward_late: float = Field(2.0, ge=0, le=2, description="revised by hand (1.1 -> 2.0): by 2009 brokers ran direct routes from North Korea to South Korea used mostly by women (women were about three quarters of arrivals in the late 2000s: MOU statistics, not shipped in data/), so women's stays in China became short; assumption: women's onward rate relative to men's after the ramp (brokered direct routes, mostly women from the late 2000s)")
    female_ramp_start: int = Field(2004, ge=1990, le=2030, description="assumption: year the women's onward factor starts to rise")
    female_ramp_end: int = Field(2008, ge=1990, le=2030, description="revised by hand (2009 -> 2008); assumption: year the women's onward factor reaches its late value")
    onward_fee_half_usd: float = Field(15000.0, ge=100, le=1e6, description="assumption: onward fee (USD) that halves the onward rate of people without kin in South Korea")
    broker_credit_usd: float = Field(0.0, ge=0, le=100000, description="assumption, 0 = no broker credit (the model up to 2026-11-30): the part of the broker fee (USD) that a mature broker network advances to a person without kin in South Korea, repaid after arrival out of the resettlement money South Korea pays every arrival; a fixed sum, not a share, so the fees of the 2010s (over $10,000, broker_fees.csv) bind again. Evidence: broker_fees.csv 2003-2006 (26% of the arrivals KINU surveyed paid nothing before leaving, most paid 2-6 million KRW) and brokers paid on arrival (Washington Post 2007, BBC 2011). It grows with the people who have already reached the South (broker_credit_half), whoever they were: a driver of the rise of the 2000s that does not run through a family's own members, which the kin terms cover (prior: priors_broker.toml)")
    broker_credit_half: float = Field(10000.0, ge=100, le=1e7, description="assumption: people arrived in South Korea since 1990 (the mean-field copy's cumulative arrivals, low noise) at which the credit reaches half of broker_credit_usd: the network of brokers, many of them earlier defectors, grows with each arrival (cumulative arrivals since 1990: 2,525 by the end of 2002, 11,674 by the end of 2007, arrivals_rok.csv; prior: priors_broker.toml)")
    kin_onward_mult: float = Field(2.0, ge=1, le=10, description="revised by hand (4 -> 2) with kin_prepare_mult; set by hand (2 -> 4), as kin_prepare_mult: kin in South Korea pay the onward broker and speed the route (DESIGN 4.5)")
    planned_share: float = Field(1.0, ge=0, le=1, description="assumption, set by hand (2026-11-29) against the months abroad of 2009 arrivals (targets.csv: 12-24): after the ramp, the chance that a crosser who can pay the whole broker fee (or whose kin in South Korea pay it) is on a planned escape, the broker taking them from the river to a third country in one trip (broker_fees.csv 2006-2007: up to $10,000 for a planned escape with papers, Washington Post 2007, Lintner; 2011: one fee for both legs, BBC 2011)")
    kin_planned_share: float = Field(0.5, ge=0, le=1, description="assumption, set by hand (2026-11-29; 0, 0.3 and 1 tried, see docs/journey.md): share of the whole fee of a planned escape that kin in South Korea pay directly (on top of the remittances already in the household's savings)")
    planned_ramp_start: int = Field(2002, ge=1990, le=2030, description="assumption: year planned escapes begin (the organised 'planned defections' of the early 2000s)")
    planned_ramp_end: int = Field(2008, ge=1990, le=2030, description="assumption: year planned escapes reach planned_share")
    planned_onward_rate: float = Field(1.0, ge=0, le=10, description="assumption: monthly chance, per unit of onward_route (capped at 0.5), that a person on a planned escape leaves China for the onward route: weeks to a few months of hiding while the broker arranges the next leg (with onward_route 0.5 in 2007-11, two months on average)")
    return_rate: float = Field(0.015, ge=0, le=0.5, description="set by hand in the third refit of 2026-11-29 (docs/journey.md: 0.02 brought the months abroad of 2002 arrivals from 48 to 38 and the stock in China from 30,000 to 21,000, 0.015 with more decisions keeps it at 34,000): monthly chance that someone hiding in China (not settled, not on a planned escape) goes home of their own accord, unseen, at the famine's end (times return_ramp): most crossers of the famine years went to China for food or work and came back (Haggard & Noland 2011, Witness to Transformation; Good Friends surveys 1998-99; Lankov 2006), so the arrivals of the early 2000s came from a smaller, more recent pool than all the famine's crossers")
    return_ramp_start: int = Field(2000, ge=1990, le=2030, description="assumption: year the voluntary return rate starts to fall from return_rate (the famine over, food aid and markets at home)")
    return_ramp_end: int = Field(2004, ge=1990, le=2030, description="assumption: year the voluntary return rate reaches 0 (crossers of the 2000s mostly left for good, with brokers: broker_fees.csv)")
    transit_months: float = Field(1.5, ge=1, le=24, description="set by hand (3 -> 1.5): the 2020 record (229, of which 135 in the first quarter) drains about one month of 2019's flow: mean months in transit (China to Mongolia or South-East Asia, embassy, flight)")
    transit_arrest: float = Field(0.03, ge=0, le=0.5, description="assumption: monthly arrest chance in transit per unit of china_repatriation")
    transit_death: float = Field(0.002, ge=0, le=0.1, description="assumption: monthly deaths in transit (river and jungle crossings)")
    detention_months_base: float = Field(3.0, ge=1, le=60, description="assumption: months of detention with punishment_severity 0 (short labour training in the famine years; Haggard & Noland 2011)")
    detention_months_severity: float = Field(12.0, ge=0, le=120, description="assumption: extra months of detention per unit of punishment_severity")
    detention_death: float = Field(0.005, ge=0, le=0.1, description="assumption: monthly death chance in detention per unit of punishment_severity")
    fear_caught: float = Field(0.3, ge=0, le=1, description="assumption: rise in fear of a caught returnee (capped at 1)")


class Journey(Module):
    """Preparation, crossing, China, onward route, arrest and arrival (DESIGN 4.5)."""

    name = "journey"
    Params = JourneyParams
    outputs = (
        Output("arrivals", "flow", "people", "people reaching South Korea (sampled agents x scale)"),
        Output("arrivals_expected", "flow", "people", "expected arrivals from the mean-field copy of the pipeline (low noise, DESIGN 2)"),
        Output("arrivals_female", "flow", "people", "women reaching South Korea"),
        Output("arrivals_with_kin", "flow", "people", "arrivals whose household already had a member in South Korea"),
        Output("arrivals_with_kin_share", "stock", "share", "share of the year's arrivals with family already in the South (monthly value: year to date)"),
        Output("arrivals_with_kin_share_expected", "stock", "share", "share of the year's expected arrivals with family already in the South, from the kin-split mean-field copy (low noise; monthly value: year to date)"),
        Output("months_abroad_total", "flow", "person-months", "sum over arrivals of months from crossing into China to arrival"),
        Output("months_abroad_mean", "stock", "months", "mean months from crossing to arrival among the year's arrivals (monthly value: year to date)"),
        Output("months_abroad_expected", "stock", "months", "mean months from crossing to arrival of the year's expected arrivals in the mean-field copy (low noise; monthly value: year to date)"),
        Output("airlifted", "flow", "people", "arrivals flown out at once by an airlift (the airlift lever), included in arrivals"),
        Output("crossings", "flow", "people", "successful crossings into China"),
        Output("caught_crossing", "flow", "people", "people caught at the border"),
        Output("repatriated", "flow", "people", "people arrested in China or in transit and returned"),
        Output("in_china", "stock", "people", "North Koreans in China: in hiding plus settled"),
        Output("in_china_expected", "stock", "people", "in China (in hiding plus settled) in the mean-field copy"),
        Output("in_transit", "stock", "people", "people on the onward route"),
        Output("preparing", "stock", "people", "people preparing to leave"),
        Output("detained", "stock", "people", "people in detention after being caught"),
        Output("gave_up", "flow", "people", "preparers who gave up"),
        Output("journey_deaths", "flow", "people", "deaths at the border, in China, in transit or in detention (beyond natural mortality)"),
        Output("settled_china", "flow", "people", "people who settled in China for good"),
        Output("returned_punished", "flow", "people", "detainees released home, punished"),
        Output("returned_home", "flow", "people", "people back home from hiding in China of their own accord, unseen (famine years)"),
        Output("households_kin_south", "stock", "households", "households with a member in South Korea"),
        Output("broker_credit", "stock", "share", "share of the month's broker fee advanced on credit to people without kin in South Korea (broker_credit_usd, grown with cumulative arrivals, over the fee; at most 1)"),
    )

    def init(self, sim) -> None:
        p = self.params
        self.dist_factor = np.array([1.0 / (1.0 + pr.distance_to_border_km / p.distance_scale_km)
                                     for pr in PROVINCES], dtype=np.float64)
        self.n_idx = 0
        self.idx_person = np.zeros(1024, dtype=np.int64)
        self.idx_rec = np.zeros(1024, dtype=np.int64)
        self.idx_last = np.zeros(1024, dtype=np.uint8)  # stage after the last month's kernel
        # cumulative transitions between stages (from, to) made or seen by this module, for
        # the invariant "stage count = entries - exits" (checks.py)
        self.flows = np.zeros((DEAD + 1, DEAD + 1), dtype=np.int64)
        self.n_rec = 0
        self.rec_person = np.zeros(1024, dtype=np.int64)
        self.rec_months = np.full((1024, 8), NO_MONTH, dtype=np.int16)
        self.rec_outcome = np.full(1024, ACTIVE, dtype=np.uint8)
        self.rec_push = np.zeros(1024, dtype=np.float32)
        self.rec_pull = np.zeros(1024, dtype=np.float32)
        # the episode's last crossing was a planned escape (read by the kernel in China)
        self.rec_planned = np.zeros(1024, dtype=np.uint8)
        self.rows_seen = 0
        self.mf = np.zeros((N_M, 2), dtype=np.float64)  # expected agents per stage and sex
        self.mf_exits = np.zeros((4, 2), dtype=np.float64)
        # first moments: expected person-months since entering China carried by the mass in
        # China, in transit, settled and on a planned escape (rows M_CHINA, M_TRANSIT,
        # M_SETTLED, M_PLANNED; other rows 0)
        self.mf_age = np.zeros((N_M, 2), dtype=np.float64)
        self.mf_decisions = 0.0
        # moving averages of the ratio of agents' mean personal probabilities to a reference
        # probability computed from this month's levers alone (see _reference_p); the fallback
        # when a stage holds no agent, as it often does at coarse scales. A ratio, not a
        # probability, so that the fallback follows the levers (the onward route opening 50
        # times wider from 1999 to 2007, say) rather than freezing an old value. Starting
        # ratios: 0.3 for preparation (a guess at the mean affordability in the 1990s),
        # 1 for the onward route (no kin in South Korea yet), 0.3 for the share of crossers
        # who could pay a planned escape (a guess).
        self.ema = np.array([[0.3, 0.3], [1.0, 1.0], [0.3, 0.3]], dtype=np.float64)
        # a second copy split by kin in South Korea as well (columns: sex + 2 * kin),
        # for the low-noise kin share of arrivals (``arrivals_with_kin_share_expected``). It
        # is fed with the decision module's expected decisions of people whose household
        # has a member in the South, moved with the agents' mean probabilities per sex and
        # kin (kin pay the broker and speed the route), and each month a share of its
        # no-kin mass gains kin: the share of agents in the pipeline without kin whose
        # household gained a member in the South that month (a relative arriving first),
        # smoothed (ratio of moving sums, 0.9 a month). The pooled copy above, not this
        # one, gives ``arrivals_expected`` (unchanged by the split). Starting fallback
        # ratios as above, 1 for preparation with kin and 0.6 for a planned escape with kin
        # (kin pay half the whole fee, kin_planned_share) (guesses).
        self.mf_k = np.zeros((N_M, 4), dtype=np.float64)
        self.mf_k_age = np.zeros((N_M, 4), dtype=np.float64)
        self.mf_k_exits = np.zeros((4, 4), dtype=np.float64)
        self.ema_k = np.array([[0.3, 0.3, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.3, 0.3, 0.6, 0.6]],
                              dtype=np.float64)
        self.flip_ema = np.zeros(2, dtype=np.float64)  # moving sums: flips, exposure
        w = np.array([pr.population_2008 for pr in PROVINCES], dtype=np.float64)
        self.dist_ref = float(np.sum(self.dist_factor * w) / w.sum())
        # year to date: year, arrivals, with kin, months abroad (agents), then expected
        # arrivals and their expected months abroad (mean-field copy), then expected
        # arrivals and expected arrivals with kin of the kin-split copy
        self.ytd = np.zeros(8, dtype=np.float64)
        self.events_hh = np.zeros(0, dtype=np.int64)
        self.events_kind = np.zeros(0, dtype=np.uint8)

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self) -> dict:
        n, r = self.n_idx, self.n_rec
        return {"idx_person": self.idx_person[:n].copy(), "idx_rec": self.idx_rec[:n].copy(),
                "idx_last": self.idx_last[:n].copy(), "flows": self.flows.copy(),
                "rec_person": self.rec_person[:r].copy(), "rec_months": self.rec_months[:r].copy(),
                "rec_outcome": self.rec_outcome[:r].copy(), "rec_push": self.rec_push[:r].copy(),
                "rec_pull": self.rec_pull[:r].copy(), "rec_planned": self.rec_planned[:r].copy(),
                "scalars": np.array([self.rows_seen, self.mf_decisions], dtype=np.float64),
                "mf": self.mf.copy(), "mf_exits": self.mf_exits.copy(), "ema": self.ema.copy(),
                "mf_age": self.mf_age.copy(), "ytd": self.ytd.copy(),
                "mf_k": self.mf_k.copy(), "mf_k_age": self.mf_k_age.copy(),
                "mf_k_exits": self.mf_k_exits.copy(), "ema_k": self.ema_k.copy(),
                "flip_ema": self.flip_ema.copy()}

    def restore_state(self, arrays: dict) -> None:
        if "idx_person" not in arrays:
            return
        self.n_idx = 0
        self._grow_index(len(arrays["idx_person"]))
        self.n_idx = len(arrays["idx_person"])
        self.idx_person[: self.n_idx] = arrays["idx_person"]
        self.idx_rec[: self.n_idx] = arrays["idx_rec"]
        if "idx_last" in arrays:
            self.idx_last[: self.n_idx] = arrays["idx_last"]
            self.flows[:] = arrays["flows"]
        r = len(arrays["rec_person"])
        self.n_rec = 0
        self._grow_records(r)
        self.n_rec = r
        self.rec_person[:r] = arrays["rec_person"]
        self.rec_months[:r] = arrays["rec_months"]
        self.rec_outcome[:r] = arrays["rec_outcome"]
        self.rec_push[:r] = arrays["rec_push"]
        self.rec_pull[:r] = arrays["rec_pull"]
        self.rec_planned[:r] = arrays.get("rec_planned", 0)
        self.rows_seen = int(arrays["scalars"][0])
        self.mf_decisions = float(arrays["scalars"][1])
        # checkpoints written before the planned-escape row (M_PLANNED) have fewer rows: the
        # missing rows start empty (mass) or at their initial value (moving averages)
        for name in ("mf", "mf_age", "ema"):
            a = arrays[name]
            getattr(self, name)[: len(a)] = a
        self.mf_exits[:] = arrays["mf_exits"]
        self.ytd[:] = arrays["ytd"]
        for name in ("mf_k", "mf_k_age", "mf_k_exits", "ema_k", "flip_ema"):
            getattr(self, name)[:] = arrays[name]

    def _grow_index(self, extra: int) -> None:
        need = self.n_idx + extra
        if need > self.idx_person.shape[0]:
            cap = max(need, 2 * self.idx_person.shape[0])
            for name in ("idx_person", "idx_rec", "idx_last"):
                old = getattr(self, name)
                new = np.zeros(cap, dtype=old.dtype)
                new[: self.n_idx] = old[: self.n_idx]
                setattr(self, name, new)

    def _grow_records(self, extra: int) -> None:
        need = self.n_rec + extra
        if need > self.rec_person.shape[0]:
            cap = max(need, 2 * self.rec_person.shape[0])
            n = self.n_rec
            new_person = np.zeros(cap, dtype=np.int64)
            new_person[:n] = self.rec_person[:n]
            new_months = np.full((cap, 8), NO_MONTH, dtype=np.int16)
            new_months[:n] = self.rec_months[:n]
            new_outcome = np.full(cap, ACTIVE, dtype=np.uint8)
            new_outcome[:n] = self.rec_outcome[:n]
            new_push = np.zeros(cap, dtype=np.float32)
            new_push[:n] = self.rec_push[:n]
            new_pull = np.zeros(cap, dtype=np.float32)
            new_pull[:n] = self.rec_pull[:n]
            new_planned = np.zeros(cap, dtype=np.uint8)
            new_planned[:n] = self.rec_planned[:n]
            self.rec_planned = new_planned
            self.rec_person, self.rec_months, self.rec_outcome = new_person, new_months, new_outcome
            self.rec_push, self.rec_pull = new_push, new_pull

    # ------------------------------------------------------------------ reordering
    def persons_to_keep(self, sim, keep) -> None:
        """Everyone with a record stays in the person table (the ``defectors`` table reads
        their sex, birth year, province and songbun at the end of the run)."""
        keep[self.rec_person[: self.n_rec]] = True  # the pipeline index has records too

    def reordered(self, sim, new_index) -> None:
        """Person indices of the pipeline index and of the records, after Sim.reorder."""
        self.idx_person[: self.n_idx] = new_index[self.idx_person[: self.n_idx]]
        self.rec_person[: self.n_rec] = new_index[self.rec_person[: self.n_rec]]

    # ------------------------------------------------------------------ entrants
    def _new_decisions(self, sim) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows the decision module appended since last month (row in the person table, push,
        pull): the rows' ``_index`` (their ``uid`` is the stable identity)."""
        chunks = sim.tables.get("decisions", [])
        uids, push, pull = [], [], []
        offset = 0
        for c in chunks:
            n = len(c["uid"])
            if offset + n > self.rows_seen:
                lo = max(0, self.rows_seen - offset)
                uids.append(np.asarray(c["_index"][lo:], dtype=np.int64))
                push.append(np.asarray(c["push"][lo:], dtype=np.float32) if "push" in c
                            else np.zeros(n - lo, dtype=np.float32))
                pull.append(np.asarray(c["pull"][lo:], dtype=np.float32) if "pull" in c
                            else np.zeros(n - lo, dtype=np.float32))
            offset += n
        self.rows_seen = offset
        if not uids:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty.astype(np.float32), empty.astype(np.float32)
        return np.concatenate(uids), np.concatenate(push), np.concatenate(pull)

    def enroll(self, sim, uids: np.ndarray, push: np.ndarray | None = None,
               pull: np.ndarray | None = None) -> int:
        """Add people who are PREPARING this month to the pipeline index (one record each).

        Called with the decision rows each month; people not in PREPARING or already in the
        index are skipped. Returns the number enrolled.
        """
        uids = np.asarray(uids, dtype=np.int64)
        persons = sim.persons
        ok = persons.stage[uids] == PREPARING
        if self.n_idx:
            ok &= ~_found_in(uids, self.idx_person[: self.n_idx])
        uids = uids[ok]
        k = len(uids)
        if k == 0:
            return 0
        push = np.zeros(k, np.float32) if push is None else np.asarray(push, np.float32)[ok]
        pull = np.zeros(k, np.float32) if pull is None else np.asarray(pull, np.float32)[ok]
        self._grow_index(k)
        self._grow_records(k)
        recs = np.arange(self.n_rec, self.n_rec + k)
        self.rec_person[recs] = uids
        self.rec_months[recs] = NO_MONTH
        self.rec_months[recs, R_DECIDED] = persons.stage_month[uids]
        self.rec_outcome[recs] = ACTIVE
        self.rec_push[recs] = push
        self.rec_pull[recs] = pull
        self.rec_planned[recs] = 0
        self.idx_person[self.n_idx: self.n_idx + k] = uids
        self.idx_rec[self.n_idx: self.n_idx + k] = recs
        self.idx_last[self.n_idx: self.n_idx + k] = PREPARING
        self.flows[RESIDENT, PREPARING] += k  # the decision module's transition
        self.n_idx += k
        self.n_rec += k
        return k

    def rebuild_index(self, sim) -> int:
        """Enroll anyone found in PREPARING by a scan of ``stage`` (for tests and repairs)."""
        uids = np.flatnonzero(sim.persons.stage == PREPARING)
        return self.enroll(sim, uids)

    def _tie_table(self) -> np.ndarray:
        """``households.kin_tie`` by months since the latest arrival (0 to 50 years, the last
        entry for anything older): ``round(255 * 0.5 ** (months / (12 * half_life)))``, at
        least 1 so that a household with kin in the South always reads as such; 255 for ever
        with no half-life."""
        hl = float(self.params.kin_tie_half_life_years)
        if hl <= 0:
            return np.full(601, 255, dtype=np.uint8)
        m = np.arange(601, dtype=np.float64)
        return np.clip(np.rint(255.0 * 0.5 ** (m / (12.0 * hl))), 1, 255).astype(np.uint8)

    # ------------------------------------------------------------------ probabilities
    def probabilities(self, sim) -> np.ndarray:
        """This month's lever-derived probabilities (the vector ``pr`` of the kernel)."""
        p = self.params
        border = sim.lever("border_security")
        rep = sim.lever("china_repatriation")
        fee = sim.lever("broker_fee_usd")
        route = sim.lever("onward_route")
        severity = sim.lever("punishment_severity")
        pr = np.zeros(N_P, dtype=np.float64)
        pr[P_GIVEUP] = min(0.5, p.giveup_base + p.giveup_security * border)
        pr[P_PREP_BASE] = p.prepare_rate
        pr[P_AFFORD_FLOOR] = p.afford_floor
        credit = self.broker_credit(sim)
        pr[P_CREDIT] = credit
        pr[P_FEE_CROSS] = max(1.0, p.crossing_fee_share * fee)
        pr[P_EXCHANGE] = max(1e-6, sim.lever("exchange_rate"))
        pr[P_KIN_PREP] = p.kin_prepare_mult
        pr[P_SURV_BLOCK] = p.surveillance_block
        ok = p.cross_success_max * max(0.0, 1.0 - border) ** p.cross_exponent
        die = min(p.cross_death * border, 1.0 - ok)
        pr[P_CROSS_OK] = ok
        pr[P_CROSS_DIE] = die
        pr[P_CAUGHT_FAIL] = min(1.0, p.caught_base + p.caught_security * border)
        pr[P_REP] = min(0.5, p.repatriation_rate * rep)
        pr[P_SETTLE_M] = p.settle_rate_male
        pr[P_SETTLE_F] = p.settle_rate_female
        pr[P_DIE_CHINA] = p.china_death_rate
        pr[P_ONWARD] = p.onward_rate * route
        year = month_year(sim.month) + (sim.month % 12) / 12.0
        w = _ramp(year, p.female_ramp_start, p.female_ramp_end)
        pr[P_FEMALE] = p.female_onward_early + w * (p.female_onward_late - p.female_onward_early)
        onward_fee = (1.0 - credit) * ((1.0 - p.crossing_fee_share) * fee)
        pr[P_FEE_FACTOR] = p.onward_fee_half_usd / (p.onward_fee_half_usd + onward_fee)
        pr[P_KIN_ONWARD] = p.kin_onward_mult
        pr[P_ARRIVE] = 1.0 / p.transit_months
        pr[P_TRANSIT_CAUGHT] = min(0.3, p.transit_arrest * rep)
        pr[P_TRANSIT_DIE] = p.transit_death
        pr[P_RELEASE] = 1.0 / (p.detention_months_base + p.detention_months_severity * severity)
        pr[P_DIE_DETAINED] = min(0.5, p.detention_death * severity)
        pr[P_FEAR] = p.fear_caught
        pr[P_GOODS] = p.goods_usd
        settled_mult = 1.0 + _ramp(year, p.settled_ramp_start, p.settled_ramp_end) * (p.settled_onward_late - 1.0)
        pr[P_SETTLED_ON] = min(0.5, p.settled_onward_rate * settled_mult * route)
        pr[P_PLANNED] = p.planned_share * _ramp(year, p.planned_ramp_start, p.planned_ramp_end)
        pr[P_FEE_FULL] = max(1.0, fee)
        pr[P_PLANNED_ON] = min(0.5, p.planned_onward_rate * route)
        # share of a planned escape's fee paid by others: kin in the South pay their share, or
        # the broker's credit covers more where it is larger
        pr[P_KIN_PLANNED] = max(p.kin_planned_share, credit)
        pr[P_AIRLIFT] = self.airlift_share(sim)
        pr[P_RETURN] = p.return_rate * (1.0 - _ramp(year, p.return_ramp_start, p.return_ramp_end))
        return pr

    def broker_credit(self, sim) -> float:
        """Share of this month's broker fee ``F`` advanced on credit to people without kin in
        the South: ``min(1, C / F)`` with ``C = broker_credit_usd * A / (A + broker_credit_half)``,
        ``A`` the people who have reached South Korea up to last month in the mean-field copy
        (its cumulative arrivals times the scale: the same low-noise value for the agents and
        the copy, and nearly the same at every scale)."""
        p = self.params
        if p.broker_credit_usd <= 0.0:
            return 0.0
        arrived = float(self.mf_exits[X_ARRIVED].sum()) * sim.scale
        credit = p.broker_credit_usd * arrived / (arrived + p.broker_credit_half)
        return min(1.0, credit / max(1.0, float(sim.lever("broker_fee_usd"))))

    def airlift_share(self, sim) -> float:
        """Chance this month of being flown out at once (the ``airlift`` lever, in people)
        for everyone hiding in China (planned escapes included) or on the onward route:
        the lever's people over the mean-field copy's stock there (in people), at most 1.
        The copy's stock, not the agents' count, so that the chance is the same for the
        agents and the copy and the expected arrivals stay free of sampling noise."""
        people = float(sim.lever("airlift"))
        if people <= 0.0:
            return 0.0
        stock = float(self.mf[M_CHINA].sum() + self.mf[M_PLANNED].sum() + self.mf[M_TRANSIT].sum())
        return min(1.0, people / (sim.scale * stock)) if stock > 0.0 else 0.0

    # ------------------------------------------------------------------ step
    def step(self, sim) -> None:
        t = sim.month
        persons, households = sim.persons, sim.households
        uids, push, pull = self._new_decisions(sim)
        if len(uids):
            self.enroll(sim, uids, push, pull)
        pr = self.probabilities(sim)
        sim.record("broker_credit", pr[P_CREDIT])
        n = self.n_idx
        counts = np.zeros(N_K, dtype=np.int64)
        sums = np.zeros((N_U, 2), dtype=np.float64)
        sums_k = np.zeros((N_U, 4), dtype=np.float64)
        kin_b = np.zeros(n, dtype=np.uint8)
        self.events_hh = np.zeros(n, dtype=np.int64)
        self.events_kind = np.zeros(n, dtype=np.uint8)
        touched = np.zeros(n, dtype=np.int64)
        mv_h = np.empty(n, dtype=np.int64)
        mv_d = np.empty(n, dtype=np.int8)
        mv_n = np.zeros(1, dtype=np.int64)
        g_st = np.empty(n, dtype=persons.stage.dtype)
        g_h = np.empty(n, dtype=persons.household.dtype)
        g_sex = np.empty(n, dtype=np.int64)
        g_prov = np.empty(n, dtype=persons.province.dtype)
        g_u = np.empty(n, dtype=np.float64)
        g_hf = np.empty(n, dtype=households.flags.dtype)
        _journey_gather(np.int64(t), sim.seed_key, n, self.idx_person, persons.stage, persons.sex,
                        persons.province, persons.household, persons.rng_id, households.flags,
                        g_st, g_h, g_sex, g_prov, g_u, g_hf)
        new_n, n_touched = _journey_kernel(
            np.int64(t), sim.seed_key, n, self.idx_person, self.idx_rec, self.idx_last,
            self.flows, self.rec_months,
            self.rec_outcome, self.rec_planned, persons.stage, persons.stage_month, persons.flags, persons.fear,
            g_st, g_h, g_sex, g_prov, g_u, persons.rng_id,
            households.flags, mv_h, mv_d, mv_n, households.surveillance, households.savings_won,
            households.savings_usd, self.dist_factor, pr, self.events_hh, self.events_kind,
            touched, counts, sums, sums_k, kin_b)
        sim.defer_members(mv_h[: mv_n[0]], mv_d[: mv_n[0]])
        self.events_hh = self.events_hh[: counts[K_EVENTS]]
        self.events_kind = self.events_kind[: counts[K_EVENTS]]
        self.n_idx = new_n
        n_south = _recount_kin(new_n, self.idx_person, touched[:n_touched], persons.stage,
                               persons.stage_month, persons.household, households.flags,
                               households.kin_abroad, households.kin_tie, np.int64(t),
                               self._tie_table())
        flips = _kin_flips(new_n, self.idx_person, kin_b, persons.stage, persons.household,
                           households.flags)
        expected_arrivals, expected_china, expected_months = self._mean_field(sim, pr, sums)
        arr_k = self._mean_field_kin(sim, pr, sums_k, flips)
        self._record(sim, counts, expected_arrivals, expected_china, expected_months, n_south, arr_k)

    def _mean_field(self, sim, pr: np.ndarray, sums: np.ndarray) -> tuple[float, float, float]:
        """Advance the deterministic expected pipeline one month (in agents).

        Returns the expected arrivals, the expected stock in China (hiding plus settled) and
        the expected months abroad summed over the expected arrivals. For the last, each of the
        stages abroad also carries its first moment ``mf_age`` (expected person-months since
        entering China): every month the mass there grows a month older, exits take their
        proportional share (the copy's rates do not depend on time abroad, so leavers have the
        stage's mean age) and crossers enter at age 0, as in the agents' count (arrival month
        minus the month of entering China)."""
        dec, dec_f, _, _ = self._expected_decisions(sim)
        self.mf_decisions += dec
        mf = self.mf
        mf[M_PREP, 0] += dec - dec_f
        mf[M_PREP, SEX_FEMALE] += dec_f
        arrived, months = self._advance(mf, self.mf_age, self.mf_exits, self.ema, sums, pr,
                                        _COLS_POOLED)
        return (float(arrived.sum()), float(mf[M_CHINA].sum() + mf[M_SETTLED].sum() + mf[M_PLANNED].sum()),
                months)

    @staticmethod
    def _expected_decisions(sim) -> tuple[float, float, float, float]:
        """This month's expected decisions from the decision module: all, women's, of people
        with kin in the South, and women's with kin, each clamped into its superset's range
        (the partial sums are added separately and may differ in the last bit)."""
        shared = sim.shared
        dec = float(shared.get("expected_decisions", 0.0))
        dec_f = min(max(float(shared.get("expected_decisions_female", 0.0)), 0.0), dec)
        dec_k = min(max(float(shared.get("expected_decisions_kin", 0.0)), 0.0), dec)
        dec_fk = min(max(float(shared.get("expected_decisions_female_kin", 0.0)), 0.0), dec_f, dec_k)
        return dec, dec_f, dec_k, dec_fk

    def _mean_field_kin(self, sim, pr: np.ndarray, sums_k: np.ndarray,
                        flips: np.ndarray) -> np.ndarray:
        """Advance the kin-split copy one month; returns its expected arrivals per column
        (sex + 2 * kin in South Korea)."""
        dec, dec_f, dec_k, dec_fk = self._expected_decisions(sim)
        dec_mk = min(dec_k - dec_fk, dec - dec_f)  # men with kin
        mf = self.mf_k
        mf[M_PREP, 0] += (dec - dec_f) - dec_mk
        mf[M_PREP, 1] += dec_f - dec_fk
        mf[M_PREP, 2] += dec_mk
        mf[M_PREP, 3] += dec_fk
        arrived, _ = self._advance(mf, self.mf_k_age, self.mf_k_exits, self.ema_k, sums_k, pr,
                                   _COLS_KIN)
        # no-kin mass whose household gained a member in the South this month
        self.flip_ema[0] = 0.9 * self.flip_ema[0] + flips[0]
        self.flip_ema[1] = 0.9 * self.flip_ema[1] + flips[1]
        if self.flip_ema[1] > 0.0:
            r = min(1.0, self.flip_ema[0] / self.flip_ema[1])
            for s in range(2):
                move = mf[:, s] * r
                mf[:, s] -= move
                mf[:, s + 2] += move
                move = self.mf_k_age[:, s] * r
                self.mf_k_age[:, s] -= move
                self.mf_k_age[:, s + 2] += move
        return arrived

    def _advance(self, mf, age, ex, ema, sums, pr: np.ndarray, cols) -> tuple[np.ndarray, float]:
        """One month of a mean-field copy: ``cols`` lists (column, sex, kin) with kin -1 for
        a copy pooled over kin. Returns the expected arrivals per column and the expected
        months abroad summed over them (:func:`_advance_mean_field`)."""
        arrived = np.zeros(mf.shape[1], dtype=np.float64)
        months = _advance_mean_field(mf, age, ex, ema, sums, pr, cols, float(self.dist_ref),
                                     arrived)
        return arrived, months

    def check(self, sim) -> None:
        """Invariants (``Sim(checks=True)``): every stage of the journey holds exactly the
        people who entered it minus those who left it, counted from the transitions this
        module made or saw (``flows``), against a recount of the whole population; and the
        index holds exactly the people in the pipeline or abroad."""
        from talbuk.checks import InvariantError

        counts = np.bincount(sim.persons.stage[: sim.persons.n], minlength=DEAD + 1)
        for st in (PREPARING, CROSSING, IN_CHINA, IN_TRANSIT, ARRIVED, SETTLED_CHINA, DETAINED):
            net = int(self.flows[:, st].sum() - self.flows[st, :].sum())
            if counts[st] != net:
                raise InvariantError(
                    f"journey: {STAGE_NAMES[st]} holds {counts[st]} people but entries - exits = {net}")
        if counts[PREPARING:DEAD].sum() != self.n_idx:
            raise InvariantError(
                f"journey: {counts[PREPARING:DEAD].sum()} people in the pipeline or abroad, "
                f"{self.n_idx} in the index")
        # the mean-field copy neither creates nor loses expected people
        dec, held = self.mean_field_balance()
        if abs(dec - held) > 1e-6 * max(1.0, dec):
            raise InvariantError(f"journey: mean-field mass {held} != expected decisions {dec}")
        held_k = float(self.mf_k.sum() + self.mf_k_exits.sum())
        if abs(dec - held_k) > 1e-6 * max(1.0, dec):
            raise InvariantError(f"journey: kin-split mean-field mass {held_k} != expected decisions {dec}")

    def mean_field_balance(self) -> tuple[float, float]:
        """(cumulative expected decisions, expected mass in all stages plus all exits)."""
        return self.mf_decisions, float(self.mf.sum() + self.mf_exits.sum())

    def _record(self, sim, k: np.ndarray, expected_arrivals: float, expected_china: float,
                expected_months: float, n_south: int, arr_k: np.ndarray) -> None:
        s = sim.scale
        year = month_year(sim.month)
        if self.ytd[0] != year:
            self.ytd[:] = (year, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        self.ytd[1] += k[K_ARR]
        self.ytd[2] += k[K_ARR_KIN]
        self.ytd[3] += k[K_MONTHS_ABROAD]
        self.ytd[4] += expected_arrivals
        self.ytd[5] += expected_months
        self.ytd[6] += float(arr_k.sum())
        self.ytd[7] += float(arr_k[2] + arr_k[3])
        sim.record("arrivals", k[K_ARR] * s)
        sim.record("arrivals_expected", expected_arrivals * s)
        sim.record("airlifted", k[K_AIRLIFT] * s)
        sim.record("arrivals_female", k[K_ARR_F] * s)
        sim.record("arrivals_with_kin", k[K_ARR_KIN] * s)
        sim.record("months_abroad_total", k[K_MONTHS_ABROAD] * s)
        has = self.ytd[1] > 0
        sim.record("arrivals_with_kin_share", self.ytd[2] / self.ytd[1] if has else np.nan)
        sim.record("arrivals_with_kin_share_expected",
                   self.ytd[7] / self.ytd[6] if self.ytd[6] > 0 else np.nan)
        sim.record("months_abroad_mean", self.ytd[3] / self.ytd[1] if has else np.nan)
        sim.record("months_abroad_expected", self.ytd[5] / self.ytd[4] if self.ytd[4] > 0 else np.nan)
        sim.record("crossings", k[K_CROSS_OK] * s)
        sim.record("caught_crossing", k[K_CAUGHT_CROSS] * s)
        sim.record("repatriated", k[K_REPAT] * s)
        sim.record("in_china", (k[S_CHINA] + k[S_SETTLED]) * s)
        sim.record("in_china_expected", expected_china * s)
        sim.record("in_transit", k[S_TRANSIT] * s)
        sim.record("preparing", k[S_PREP] * s)
        sim.record("detained", k[S_DETAINED] * s)
        sim.record("gave_up", k[K_GAVE_UP] * s)
        sim.record("journey_deaths", k[K_JDEATH] * s)
        sim.record("settled_china", k[K_SETTLED] * s)
        sim.record("returned_punished", k[K_RELEASED] * s)
        sim.record("returned_home", k[K_RETURNED] * s)
        sim.record("households_kin_south", n_south * s)

    # ------------------------------------------------------------------ event table
    def finish_tables(self, sim) -> dict[str, pd.DataFrame]:
        """The ``defectors`` table: one row per decision episode (normally one per person)."""
        import pandas as pd  # imported when results are built (talbuk.population.read_columns)

        r = self.n_rec
        persons = sim.persons
        who = self.rec_person[:r]
        months = self.rec_months[:r].astype(np.int64)
        lo = int(min(sim.start_month, months[months >= 0].min() if (months >= 0).any() else sim.start_month))
        hi = int(max(sim.end_month, months.max() if r else sim.end_month))
        lut = np.array([format_month(m) for m in range(lo, hi + 1)] + [None], dtype=object)
        outcome = self.rec_outcome[:r].copy()
        active = outcome == ACTIVE
        outcome[active] = persons.stage[who[active]]
        df = pd.DataFrame({
            "uid": persons.uid[who].astype(np.int64),
            "sex": np.where(persons.sex[who] == SEX_FEMALE, "female", "male"),
            "birth_year": (persons.birth_month[who].astype(np.int64) // 12 + 1900).astype(np.int32),
            "province": np.array(PROVINCE_NAMES, dtype=object)[persons.province[who]],
            "songbun": np.array(SONGBUN_NAMES, dtype=object)[persons.songbun[who]],
        })
        for c, name in enumerate(RECORD_COLUMNS):
            col = months[:, c]
            df[name] = lut[np.where(col >= 0, col - lo, len(lut) - 1)]
        df["outcome"] = np.array(STAGE_NAMES, dtype=object)[outcome]
        df["planned"] = self.rec_planned[:r].astype(bool)  # last crossing: planned escape
        df["push"] = self.rec_push[:r]
        df["pull"] = self.rec_pull[:r]
        df["weight"] = np.full(r, sim.scale)
        return {"defectors": df}


def _found_in(values: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """``np.isin(values, pool)`` for a few values and a large pool: a binary search of each
    pool entry among the sorted distinct values (``np.isin`` sorts the pool and the values
    together: 7 ms a month for the whole population's pipeline index, against 0.5)."""
    uniq, inv = np.unique(values, return_inverse=True)
    found = np.zeros(uniq.shape[0], dtype=np.bool_)
    if uniq.shape[0] and pool.shape[0]:
        pos = np.minimum(np.searchsorted(uniq, pool), uniq.shape[0] - 1)
        found[pos[uniq[pos] == pool]] = True
    return found[inv.reshape(-1)]


def _ramp(year: float, start: float, end: float) -> float:
    """0 until ``start``, rising linearly to 1 at ``end`` (years, fractional)."""
    return min(1.0, max(0.0, (year - start) / max(1e-9, end - start)))


@nb.njit(inline="always", cache=True)
def _arrive(i, r, h, s, t, t16, stage, stage_month, rec_months, hh_flags, k):
    """Bookkeeping of one arrival in South Korea (inlined into the kernel)."""
    stage[i] = ARRIVED
    stage_month[i] = t16
    rec_months[r, R_ARRIVED] = t16
    k[K_ARR] += 1
    if s == 1:
        k[K_ARR_F] += 1
    if (hh_flags[h] & H_KIN_SOUTH) != 0:
        k[K_ARR_KIN] += 1
    if rec_months[r, R_IN_CHINA] >= 0:
        k[K_MONTHS_ABROAD] += t - rec_months[r, R_IN_CHINA]


@nb.njit(parallel=True, cache=True)
def _journey_gather(t, seed, n, idx_person, stage, sex, province, household, rng_id, hh_flags,
                    g_st, g_h, g_sex, g_prov, g_u, g_hf):
    """What :func:`_journey_kernel` reads of each person in the index, gathered in a parallel
    loop of independent loads (the people lie scattered over the person table: one at a time,
    each read waits for memory), with the person's draw of the month. A person's fields are
    written by the kernel only while it handles that person, so the values are the ones it
    would read. ``g_hf`` (the household's flags, which the kernel reads live, as an arrival
    earlier in the index may change them) only brings the households' lines into the cache
    (not measured apart from the gather: the kernel's 12 -> 3 + 4 ms is for both)."""
    tm = np.uint64(t)
    for j in nb.prange(n):
        i = idx_person[j]
        g_st[j] = stage[i]
        h = household[i]
        g_h[j] = h
        g_sex[j] = 1 if sex[i] == SEX_FEMALE else 0
        g_prov[j] = province[i]
        g_u[j] = rng.uniform1(seed, _JOURNEY, tm, rng_id[i], np.uint64(0))
        g_hf[j] = hh_flags[h]


@nb.njit(cache=True)
def _journey_kernel(t, seed, n, idx_person, idx_rec, idx_last, flows, rec_months, rec_outcome,
                    rec_planned, stage, stage_month, flags, fear, g_st, g_h, g_sex, g_prov, g_u,
                    rng_id, hh_flags,
                    mv_h, mv_d, mv_n, hh_surv, hh_won, hh_usd, dist_factor, pr, ev_hh, ev_kind, touched,
                    k, sums, sums_k, kin_b):
    """One month of the pipeline for the people in the index (serial: the index is small;
    what it reads of each person comes gathered by :func:`_journey_gather`).

    Each person makes one categorical draw; the index is compacted in place (people who left
    the pipeline are dropped, their households noted in ``touched`` for the kin recount).
    ``sums`` holds the mean-field inputs per sex, ``sums_k`` per sex and kin in South Korea
    (column sex + 2 * kin); ``kin_b[w]`` is 1 where the kept entry ``w``'s household had kin
    in the South this month (before the recount).
    """
    tm = np.uint64(t)
    t16 = np.int16(t)
    w = 0
    n_touched = 0
    n_ev = 0
    # an airlift takes its share first; every other exit from China or transit applies to
    # the rest (with no airlift, pa = 0 and qa = 1 leave every threshold as it was)
    pa = pr[P_AIRLIFT]
    qa = 1.0 - pa
    for j in range(n):
        i = idx_person[j]
        r = idx_rec[j]
        st = g_st[j]
        h = g_h[j]
        s = g_sex[j]
        keep = True
        if st != idx_last[j]:  # moved by another module since last month (natural death)
            flows[idx_last[j], st] += 1
        if st == DEAD:  # died of natural causes (demography) on the way or abroad
            if rec_months[r, R_DIED] < 0:
                rec_months[r, R_DIED] = stage_month[i]
            k[K_NAT_DEATH] += 1
            rec_outcome[r] = DEAD
            keep = False
        elif st == RESIDENT:  # returned by another module
            rec_outcome[r] = RESIDENT
            keep = False
        elif st == ARRIVED:
            pass
        elif st == SETTLED_CHINA:  # settled for years; some set off for South Korea later
            u = g_u[j]
            if u < pr[P_SETTLED_ON]:
                stage[i] = IN_TRANSIT
                stage_month[i] = t16
                rec_months[r, R_TRANSIT] = t16
        else:
            u = g_u[j]
            if st == PREPARING:
                kin = (hh_flags[h] & H_KIN_SOUTH) != 0
                if kin:
                    afford = pr[P_KIN_PREP]
                else:
                    money = hh_usd[h] + hh_won[h] / pr[P_EXCHANGE] + pr[P_GOODS]
                    # own money and the broker's credit (a share of every fee) against the fee
                    afford = money / pr[P_FEE_CROSS] + pr[P_CREDIT]
                    if afford > 1.0:
                        afford = 1.0
                    if afford < pr[P_AFFORD_FLOOR]:
                        afford = pr[P_AFFORD_FLOOR]
                p_go = pr[P_PREP_BASE] * dist_factor[g_prov[j]] * afford \
                    * (1.0 - pr[P_SURV_BLOCK] * hh_surv[h])
                if p_go > 0.95 - pr[P_GIVEUP]:
                    p_go = 0.95 - pr[P_GIVEUP]
                sums[U_PREP_N, s] += 1.0
                sums[U_PREP_P, s] += p_go
                ck = s + 2 if kin else s
                sums_k[U_PREP_N, ck] += 1.0
                sums_k[U_PREP_P, ck] += p_go
                if u < pr[P_GIVEUP]:
                    stage[i] = RESIDENT
                    stage_month[i] = t16
                    rec_outcome[r] = RESIDENT
                    k[K_GAVE_UP] += 1
                    keep = False
                elif u < pr[P_GIVEUP] + p_go:
                    stage[i] = CROSSING
                    stage_month[i] = t16
                    rec_months[r, R_CROSSED] = t16
            elif st == CROSSING:
                p_ok = pr[P_CROSS_OK]
                p_die = p_ok + pr[P_CROSS_DIE]
                p_caught = p_die + (1.0 - p_die) * pr[P_CAUGHT_FAIL]
                # chance of a planned escape should the crossing succeed: the whole fee paid
                # from savings, with kin in South Korea or the broker's credit paying a share
                # (P_KIN_PLANNED: the larger of the two)
                q = 0.0
                kin = (hh_flags[h] & H_KIN_SOUTH) != 0
                if pr[P_PLANNED] > 0.0:
                    full = (hh_usd[h] + hh_won[h] / pr[P_EXCHANGE]) / pr[P_FEE_FULL]
                    full += pr[P_KIN_PLANNED] if kin else pr[P_CREDIT]
                    q = pr[P_PLANNED] * (full if full < 1.0 else 1.0)
                sums[U_CROSS_N, s] += 1.0
                sums[U_CROSS_P, s] += q
                ck = s + 2 if kin else s
                sums_k[U_CROSS_N, ck] += 1.0
                sums_k[U_CROSS_P, ck] += q
                if u < p_ok:
                    stage[i] = IN_CHINA
                    stage_month[i] = t16
                    rec_months[r, R_IN_CHINA] = t16
                    planned = q > 0.0 and rng.uniform1(seed, _JOURNEY, tm, rng_id[i], np.uint64(1)) < q
                    rec_planned[r] = 1 if planned else 0
                    k[K_CROSS_OK] += 1
                    ev_hh[n_ev] = h
                    ev_kind[n_ev] = 0
                    n_ev += 1
                elif u < p_die:
                    stage[i] = DEAD
                    stage_month[i] = t16
                    rec_months[r, R_DIED] = t16
                    rec_outcome[r] = DEAD
                    k[K_JDEATH] += 1
                    keep = False
                elif u < p_caught:
                    stage[i] = DETAINED
                    stage_month[i] = t16
                    rec_months[r, R_CAUGHT] = t16
                    k[K_CAUGHT_CROSS] += 1
                    ev_hh[n_ev] = h
                    ev_kind[n_ev] = 1
                    n_ev += 1
                else:  # turned back: prepares again
                    stage[i] = PREPARING
                    stage_month[i] = t16
                    k[K_TURNED] += 1
            elif st == IN_CHINA:
                p_rep = pa + qa * pr[P_REP]
                p_die = p_rep + qa * pr[P_DIE_CHINA]
                p_ret = 0.0
                if rec_planned[r] != 0:  # the broker moves them on; nobody settles
                    p_on = pr[P_PLANNED_ON]
                    p_settle = p_die
                else:
                    kin = (hh_flags[h] & H_KIN_SOUTH) != 0
                    p_on = pr[P_ONWARD] * (pr[P_FEMALE] if s == 1 else 1.0) \
                        * (pr[P_KIN_ONWARD] if kin else pr[P_FEE_FACTOR])
                    if p_on > 0.5:
                        p_on = 0.5
                    sums[U_CHINA_N, s] += 1.0
                    sums[U_CHINA_P, s] += p_on
                    ck = s + 2 if kin else s
                    sums_k[U_CHINA_N, ck] += 1.0
                    sums_k[U_CHINA_P, ck] += p_on
                    p_settle = p_die + qa * (pr[P_SETTLE_F] if s == 1 else pr[P_SETTLE_M])
                    p_ret = qa * pr[P_RETURN]
                p_on = qa * p_on
                if u < pa:  # flown out at once (airlift lever)
                    _arrive(i, r, h, s, t, t16, stage, stage_month, rec_months, hh_flags, k)
                    k[K_AIRLIFT] += 1
                elif u < p_rep:
                    stage[i] = DETAINED
                    stage_month[i] = t16
                    rec_months[r, R_CAUGHT] = t16
                    k[K_REPAT] += 1
                    ev_hh[n_ev] = h
                    ev_kind[n_ev] = 1
                    n_ev += 1
                elif u < p_die:
                    stage[i] = DEAD
                    stage_month[i] = t16
                    rec_months[r, R_DIED] = t16
                    rec_outcome[r] = DEAD
                    k[K_JDEATH] += 1
                    keep = False
                elif u < p_settle:
                    stage[i] = SETTLED_CHINA
                    stage_month[i] = t16
                    rec_months[r, R_SETTLED] = t16
                    k[K_SETTLED] += 1
                elif u < p_settle + p_on:
                    stage[i] = IN_TRANSIT
                    stage_month[i] = t16
                    rec_months[r, R_TRANSIT] = t16
                elif u < p_settle + p_on + p_ret:  # home of their own accord, unseen
                    stage[i] = RESIDENT
                    stage_month[i] = t16
                    rec_outcome[r] = RESIDENT
                    k[K_RETURNED] += 1
                    keep = False
            elif st == IN_TRANSIT:
                p_arr = pa + qa * pr[P_ARRIVE]
                p_caught = p_arr + qa * pr[P_TRANSIT_CAUGHT]
                p_die = p_caught + qa * pr[P_TRANSIT_DIE]
                if u < p_arr:
                    _arrive(i, r, h, s, t, t16, stage, stage_month, rec_months, hh_flags, k)
                    if u < pa:
                        k[K_AIRLIFT] += 1
                elif u < p_caught:
                    stage[i] = DETAINED
                    stage_month[i] = t16
                    rec_months[r, R_CAUGHT] = t16
                    k[K_REPAT] += 1
                    ev_hh[n_ev] = h
                    ev_kind[n_ev] = 1
                    n_ev += 1
                elif u < p_die:
                    stage[i] = DEAD
                    stage_month[i] = t16
                    rec_months[r, R_DIED] = t16
                    rec_outcome[r] = DEAD
                    k[K_JDEATH] += 1
                    keep = False
            elif st == DETAINED:
                p_rel = pr[P_RELEASE]
                p_die = p_rel + pr[P_DIE_DETAINED]
                if u < p_rel:
                    stage[i] = RESIDENT
                    stage_month[i] = t16
                    flags[i] |= F_PUNISHED
                    f = fear[i] + pr[P_FEAR]
                    fear[i] = f if f < 1.0 else 1.0
                    rec_outcome[r] = RESIDENT
                    k[K_RELEASED] += 1
                    keep = False
                elif u < p_die:
                    stage[i] = DEAD
                    stage_month[i] = t16
                    rec_months[r, R_DIED] = t16
                    rec_outcome[r] = DEAD
                    k[K_JDEATH] += 1
                    keep = False
        if stage[i] != st:
            flows[st, stage[i]] += 1
            # a change of the household's count of members in the country (crossing into
            # China, coming back detained or unseen, dying at the border), applied by the Sim
            # at the end of the month
            d = int(in_country(stage[i])) - int(in_country(st))
            if d != 0:
                mv_h[mv_n[0]] = h
                mv_d[mv_n[0]] = d
                mv_n[0] += 1
        if keep:
            idx_person[w] = i
            idx_rec[w] = r
            idx_last[w] = stage[i]
            kin_b[w] = 1 if (hh_flags[h] & H_KIN_SOUTH) != 0 else 0
            w += 1
            st = stage[i]
            if st == PREPARING:
                k[S_PREP] += 1
            elif st == CROSSING:
                k[S_CROSSING] += 1
            elif st == IN_CHINA:
                k[S_CHINA] += 1
            elif st == IN_TRANSIT:
                k[S_TRANSIT] += 1
            elif st == SETTLED_CHINA:
                k[S_SETTLED] += 1
            elif st == DETAINED:
                k[S_DETAINED] += 1
            elif st == ARRIVED:
                k[S_ARRIVED] += 1
        else:
            touched[n_touched] = h
            n_touched += 1
    k[K_EVENTS] = n_ev
    return w, n_touched


@nb.njit(cache=True)
def _kin_flips(n, idx_person, kin_b, stage, household, hh_flags):
    """After the kin recount: (people in the pipeline or abroad but not arrived whose
    household had no kin in South Korea this month and has now, those without kin) for the
    kin-split mean-field copy."""
    out = np.zeros(2, dtype=np.float64)
    for j in range(n):
        if kin_b[j] != 0:
            continue
        st = stage[idx_person[j]]
        if st == ARRIVED or st == DEAD or st == RESIDENT:
            continue
        out[1] += 1.0
        if (hh_flags[household[idx_person[j]]] & H_KIN_SOUTH) != 0:
            out[0] += 1.0
    return out


@nb.njit(cache=True)
def _recount_kin(n, idx_person, touched, stage, stage_month, household, hh_flags, hh_kin,
                 hh_tie, t, tie_table):
    """Exact kin flags and ``kin_abroad`` for every household with someone in the index, and
    the strength of its ties to the South (``hh_tie``: ``tie_table`` at the months since its
    latest arrival, the largest over its members in the South)."""
    clear = np.uint8(0xFF ^ (H_KIN_CHINA | H_KIN_SOUTH))
    for j in range(touched.shape[0]):
        h = touched[j]
        hh_flags[h] &= clear
        hh_kin[h] = 0
        hh_tie[h] = 0
    for j in range(n):
        h = household[idx_person[j]]
        hh_flags[h] &= clear
        hh_kin[h] = 0
        hh_tie[h] = 0
    n_south = 0
    last = tie_table.shape[0] - 1
    for j in range(n):
        i = idx_person[j]
        st = stage[i]
        h = household[i]
        if st == IN_CHINA or st == IN_TRANSIT or st == SETTLED_CHINA:
            hh_flags[h] |= H_KIN_CHINA
        elif st == ARRIVED:
            if (hh_flags[h] & H_KIN_SOUTH) == 0:
                n_south += 1
            hh_flags[h] |= H_KIN_SOUTH
            age = t - stage_month[i]  # months since this member arrived
            tie = tie_table[min(max(age, 0), last)]
            if tie > hh_tie[h]:
                hh_tie[h] = tie
        else:
            continue
        if hh_kin[h] < 255:
            hh_kin[h] += 1
    return n_south


# ============================================================================ left behind


class LeftBehindParams(ModuleParams):
    """Families left behind. Defaults are assumptions (starting values), not estimates."""

    surveillance_on_leave: float = Field(0.4, ge=0, le=1, description="assumption: rise in household surveillance when a member crosses into China (guilt by association; DESIGN 4.5)")
    surveillance_on_caught: float = Field(0.7, ge=0, le=1, description="assumption: rise in household surveillance when a member is caught")
    surveillance_decay: float = Field(0.02, ge=0, le=1, description="assumption: monthly proportional fading of surveillance (half-life about 3 years)")
    surveillance_floor: float = Field(0.05, ge=0, le=1, description="assumption: surveillance below which a household is no longer watched")
    family_punish_prob: float = Field(0.3, ge=0, le=1, description="assumption: chance per event, per unit of punishment_severity, that the family is punished (fined, surveillance to 1)")
    family_fine_share: float = Field(0.2, ge=0, le=1, description="assumption: share of a punished family's savings taken as fines and bribes")
    remit_share: float = Field(0.6, ge=0, le=1, description="assumption: share of defectors in South Korea who send money home (refugee surveys report about half to two thirds)")
    remit_usd_per_year: float = Field(1200.0, ge=0, le=50000, description="assumption: dollars a sending defector gets to the family a year, after the broker's cut (surveys: about 1-2 million KRW a year)")
    remit_delay_months: int = Field(6, ge=0, le=120, description="assumption: months after arrival before the first remittance (resettlement, Hanawon)")


class LeftBehind(Module):
    """Surveillance, punishment and remittances of the households emigrants leave behind."""

    name = "left_behind"
    Params = LeftBehindParams
    outputs = (
        Output("remittances_usd", "flow", "USD", "money sent by defectors in South Korea and added to their families' savings"),
        Output("remitting_households", "stock", "households", "households that received a remittance this month"),
        Output("families_punished", "flow", "households", "families punished for a member's flight or arrest"),
        Output("watched_households", "stock", "households", "households under surveillance because of a member"),
    )

    def init(self, sim) -> None:
        self.watched = np.zeros(0, dtype=np.int64)
        self.remitted_usd_total = 0.0  # in agents' money (not scaled), for conservation checks
        self.fined_total = np.zeros(2, dtype=np.float64)  # won, USD taken as fines (agents' money)

    def checkpoint_state(self) -> dict:
        return {"watched": self.watched.copy(), "remitted": np.array([self.remitted_usd_total]),
                "fined": self.fined_total.copy()}

    @staticmethod
    def _check_money(households, before_won: float, before_usd: float, fined: np.ndarray,
                     sent: float) -> None:
        """Savings after this step = before - fines + remittances (to rounding)."""
        from talbuk.checks import InvariantError

        after_won = float(households.savings_won[: households.n].sum())
        after_usd = float(households.savings_usd[: households.n].sum())
        for name, before, after, delta in (("won", before_won, after_won, -fined[0]),
                                           ("USD", before_usd, after_usd, sent - fined[1])):
            tol = 1e-9 * max(1.0, abs(before), abs(after)) + 1e-6
            if abs(after - (before + delta)) > tol:
                raise InvariantError(
                    f"left_behind: savings in {name} went from {before:.6g} to {after:.6g}, "
                    f"but fines and remittances account for {delta:+.6g}")

    def restore_state(self, arrays: dict) -> None:
        if "watched" in arrays:
            self.watched = np.asarray(arrays["watched"], dtype=np.int64).copy()
            self.remitted_usd_total = float(arrays["remitted"][0])
            if "fined" in arrays:
                self.fined_total[:] = arrays["fined"]

    def step(self, sim) -> None:
        p = self.params
        journey = next((m for m in sim.modules if m.name == "journey"), None)
        households, persons = sim.households, sim.persons
        t = sim.month
        severity = sim.lever("punishment_severity")
        border = sim.lever("border_security")
        if journey is not None:
            ev_hh, ev_kind = journey.events_hh, journey.events_kind
        else:
            ev_hh, ev_kind = np.zeros(0, np.int64), np.zeros(0, np.uint8)
        # old surveillance fades first, then this month's events raise it again
        keep = np.zeros(len(self.watched), dtype=np.int64)
        n_keep = _fade(self.watched, households.flags, households.surveillance,
                       float(p.surveillance_decay), float(p.surveillance_floor), keep)
        if sim.checks:  # money is conserved: savings change only by fines and remittances
            before_won = float(households.savings_won[: households.n].sum())
            before_usd = float(households.savings_usd[: households.n].sum())
        new_watch = np.zeros(len(ev_hh), dtype=np.int64)
        fined = np.zeros(2, dtype=np.float64)  # won, USD taken as fines
        n_new, punished = _surveil(np.int64(t), sim.seed_key, ev_hh, ev_kind,
                                   households.flags, households.surveillance,
                                   households.savings_won, households.savings_usd,
                                   float(p.surveillance_on_leave), float(p.surveillance_on_caught),
                                   float(p.family_punish_prob * severity),
                                   float(p.family_fine_share), new_watch, fined)
        self.watched = np.concatenate([keep[:n_keep], new_watch[:n_new]])
        n_keep = len(self.watched)
        # remittances from members in South Korea; the channel (couriers, brokers, Chinese
        # phones) closes with the border (assumption: 1 - border_security ** 4)
        monthly = p.remit_usd_per_year / 12.0 * (1.0 - border ** 4)
        sent = 0.0
        n_hh = 0
        if journey is not None and monthly > 0:
            sent, n_hh = _remit(np.int64(t), sim.seed_key, journey.n_idx, journey.idx_person,
                                journey.idx_rec, journey.rec_months, persons.stage,
                                persons.household, persons.rng_id, households.members,
                                households.savings_usd, float(p.remit_share), monthly,
                                np.int64(p.remit_delay_months))
        self.remitted_usd_total += sent
        self.fined_total += fined
        if sim.checks:
            self._check_money(households, before_won, before_usd, fined, sent)
        s = sim.scale
        sim.record("remittances_usd", sent * s)
        sim.record("remitting_households", n_hh * s)
        sim.record("families_punished", punished * s)
        sim.record("watched_households", n_keep * s)


@nb.njit(cache=True)
def _surveil(t, seed, ev_hh, ev_kind, hh_flags, hh_surv, hh_won, hh_usd, inc_leave, inc_caught,
             p_punish, fine, new_watch, fined):
    tm = np.uint64(t)
    n_new = 0
    punished = 0
    for e in range(ev_hh.shape[0]):
        h = ev_hh[e]
        if (hh_flags[h] & H_WATCHED) == 0:
            hh_flags[h] |= H_WATCHED
            new_watch[n_new] = h
            n_new += 1
        inc = inc_caught if ev_kind[e] == 1 else inc_leave
        s = hh_surv[h] + inc
        u = rng.uniform1(seed, _LEFT_BEHIND, tm, np.uint64(h), np.uint64(e))
        if u < p_punish:
            s = 1.0
            fined[0] += hh_won[h] * fine
            fined[1] += hh_usd[h] * fine
            hh_won[h] *= 1.0 - fine
            hh_usd[h] *= 1.0 - fine
            punished += 1
        hh_surv[h] = s if s < 1.0 else 1.0
    return n_new, punished


@nb.njit(cache=True)
def _fade(watched, hh_flags, hh_surv, decay, floor, keep):
    """Surveillance fades; households below the floor are no longer watched."""
    n_keep = 0
    for j in range(watched.shape[0]):
        h = watched[j]
        s = hh_surv[h] * (1.0 - decay)
        if s < floor:
            hh_surv[h] = 0.0
            hh_flags[h] &= np.uint8(0xFF ^ H_WATCHED)
        else:
            hh_surv[h] = s
            keep[n_keep] = h
            n_keep += 1
    return n_keep


@nb.njit(cache=True)
def _remit(t, seed, n, idx_person, idx_rec, rec_months, stage, household, rng_id, members,
           hh_usd, share, monthly, delay):
    """Each sending defector in South Korea adds ``monthly`` USD to the family's savings;
    what is added is exactly what is recorded as sent."""
    sent = 0.0
    n_hh = 0
    for j in range(n):
        i = idx_person[j]
        if stage[i] != ARRIVED:
            continue
        r = idx_rec[j]
        if t - rec_months[r, R_ARRIVED] < delay:
            continue
        h = household[i]
        if members[h] <= 0:
            continue
        # whether this person sends money at all is a fixed trait (month 0 of the stream)
        if rng.uniform1(seed, _LEFT_BEHIND, np.uint64(0), rng_id[i], np.uint64(1)) >= share:
            continue
        hh_usd[h] += monthly
        sent += monthly
        n_hh += 1
    return sent, n_hh


# ---------------------------------------------------------------------- the mean-field copies
# Compiled (numba), not Python: their few hundred float operations a month on numpy scalars
# cost a small population's month about half a millisecond. The same float64 operations in
# the same order as the Python they replace, so the same bits; ``min(a, b)`` is written as
# Python evaluates it (``b if b < a else a``).
@nb.njit(cache=True)
def _reference_p(pr, row, s, kin, dist_ref):
    """Lever-only probability of a representative person: setting off from preparation
    (row 0: base rate times the population's mean distance factor ``dist_ref``, affordability
    1, not watched), leaving China onward (row 1: no kin in South Korea) or a crosser's chance
    of a planned escape (row 2: the whole fee can be paid). For the kin-split copy's columns
    with kin (``kin`` 1), kin's affordability and onward factor replace them."""
    if row == 0:
        afford = pr[P_KIN_PREP] if kin == 1 else 1.0
        a = pr[P_PREP_BASE] * dist_ref * afford
        b = 0.95 - pr[P_GIVEUP]
        return b if b < a else a
    if row == 2:
        return pr[P_PLANNED]
    factor = pr[P_KIN_ONWARD] if kin == 1 else pr[P_FEE_FACTOR]
    b = pr[P_ONWARD] * (pr[P_FEMALE] if s == SEX_FEMALE else 1.0) * factor
    return b if b < 0.5 else 0.5


@nb.njit(cache=True)
def _advance_mean_field(mf, age, ex, ema, sums, pr, cols, dist_ref, arrived):
    """One month of a mean-field copy (see :meth:`Journey._advance`): ``cols`` rows of
    (column, sex, kin); adds the expected arrivals per column into ``arrived`` and returns the
    expected months abroad summed over them."""
    months = 0.0
    avgs = np.zeros(3, dtype=np.float64)
    for q in range(cols.shape[0]):
        c = cols[q, 0]
        s = cols[q, 1]
        kin = cols[q, 2]
        for row in range(3):
            n_col = U_PREP_N if row == 0 else (U_CHINA_N if row == 1 else U_CROSS_N)
            p_col = U_PREP_P if row == 0 else (U_CHINA_P if row == 1 else U_CROSS_P)
            ref = _reference_p(pr, row, s, kin, dist_ref)
            if sums[n_col, c] > 0:
                avg = sums[p_col, c] / sums[n_col, c]
                if ref > 0:
                    ema[row, c] = 0.8 * ema[row, c] + 0.2 * (avg / ref)
            else:
                avg = ema[row, c] * ref
            avgs[row] = avg
        p_go = avgs[0]
        p_on = avgs[1]
        q_plan = avgs[2]
        prep = mf[M_PREP, c]
        cross = mf[M_CROSS, c]
        china = mf[M_CHINA, c]
        transit = mf[M_TRANSIT, c]
        det = mf[M_DETAINED, c]
        settled = mf[M_SETTLED, c]
        planned = mf[M_PLANNED, c]
        gu = prep * pr[P_GIVEUP]
        go = prep * p_go
        ok = cross * pr[P_CROSS_OK]
        dd = cross * pr[P_CROSS_DIE]
        cau = (cross - ok - dd) * pr[P_CAUGHT_FAIL]
        tb = cross - ok - dd - cau
        okp = ok * q_plan  # crossers on a planned escape
        settle = pr[P_SETTLE_F] if s == SEX_FEMALE else pr[P_SETTLE_M]
        # as the kernel: an airlift takes its share pa first, the other exits the rest
        pa = pr[P_AIRLIFT]
        qa = 1.0 - pa
        air = china * pa
        air_p = planned * pa
        rep = china * (qa * pr[P_REP])
        dh = china * (qa * pr[P_DIE_CHINA])
        st = china * (qa * settle)
        on = china * (qa * p_on)
        ret = china * (qa * pr[P_RETURN])
        arr = transit * (pa + qa * pr[P_ARRIVE])
        tc = transit * (qa * pr[P_TRANSIT_CAUGHT])
        td = transit * (qa * pr[P_TRANSIT_DIE])
        rel = det * pr[P_RELEASE]
        ddd = det * pr[P_DIE_DETAINED]
        son = settled * pr[P_SETTLED_ON]
        rep_p = planned * (qa * pr[P_REP])
        dh_p = planned * (qa * pr[P_DIE_CHINA])
        on_p = planned * (qa * pr[P_PLANNED_ON])
        # first moments, one month older; mean age of each stage's mass
        a_c = age[M_CHINA, c] + china
        a_t = age[M_TRANSIT, c] + transit
        a_s = age[M_SETTLED, c] + settled
        a_p = age[M_PLANNED, c] + planned
        m_c = a_c / china if china > 0 else 0.0
        m_t = a_t / transit if transit > 0 else 0.0
        m_s = a_s / settled if settled > 0 else 0.0
        m_p = a_p / planned if planned > 0 else 0.0
        age[M_CHINA, c] = a_c - m_c * (rep + dh + st + on + air + ret)
        age[M_TRANSIT, c] = a_t - m_t * (arr + tc + td) + m_c * on + m_s * son + m_p * on_p
        age[M_SETTLED, c] = a_s - m_s * son + m_c * st
        age[M_PLANNED, c] = a_p - m_p * (rep_p + dh_p + on_p + air_p)
        months += m_t * arr + m_c * air + m_p * air_p
        mf[M_PREP, c] = prep - gu - go + tb
        mf[M_CROSS, c] = cross - ok - dd - cau - tb + go
        mf[M_CHINA, c] = china - rep - dh - st - on - air - ret + ok - okp
        mf[M_TRANSIT, c] = transit - arr - tc - td + on + son + on_p
        mf[M_DETAINED, c] = det - rel - ddd + cau + rep + tc + rep_p
        mf[M_SETTLED, c] = settled + st - son
        mf[M_PLANNED, c] = planned - rep_p - dh_p - on_p - air_p + okp
        ex[X_GAVE_UP, c] += gu
        ex[X_DIED, c] += dd + dh + td + ddd + dh_p
        ex[X_ARRIVED, c] += arr + air + air_p
        ex[X_RELEASED, c] += rel + ret
        arrived[c] += arr + air + air_p
    return months
