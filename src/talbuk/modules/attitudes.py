"""Attitudes: grievance (push), desire (pull), legitimacy and fear of every person 14+.

Mechanisms (docs/information_attitudes_decision.md, "Attitudes"; DESIGN.md 4.4). Each
attitude is an exponential moving average ``x <- x + r (x* - x)`` towards a target ``x*``
built from this month's circumstances, so recent experience weighs most and a shock fades
over months (one fused float32 pass over people, no random draws):

* **Legitimacy** (belief in the state), slow (``r = 1/24``): target
  ``L* = L0 - k_class (a_h hunger + a_m media) - a_p punished``, where ``L0`` is 1 for the
  older generations and ``market_gen_legitimacy`` for the market generation (who never relied
  on the state), and ``k_class`` is smaller for the core class (they keep rations and
  privileges: Haggard & Noland 2011, Collins 2012).
* **Grievance** (push), ``r = 1/6``: ``G* = g_h hunger + g_l loss + g_p punished +
  g_s[songbun] + g_leg (1 - L)``. ``loss`` is the household's recent loss of savings (won
  and foreign currency valued in dollars at the market rate; inflation and the 2009
  redenomination), compared with last month and remembered with a monthly decay.
* **Desire** (pull), ``r = 1/12``: ``D* = d_m media + d_k kin + d_g market_gen + d_t trader
  + d_s skill``; media counts for those who have watched (``F_MEDIA_EVER``); kin in South
  Korea count by the household's tie (``households.kin_tie``: fully at an arrival, fading
  with the years since the latest one when ``journey.kin_tie_half_life_years`` is set), kin
  in China by half (they send money and tell of life outside).
* **Fear**, ``r = 1/6``: ``F* = f_s severity (1 - c_g market_gen) + f_v surveillance
  + f_p punished + f_r raid``: the punishment-severity lever, the household's surveillance,
  the person's own punishment and a media search in the cell this month; the market
  generation fears less.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from pydantic import Field

from talbuk.modules.base import Module, ModuleParams, Output
from talbuk.state import (
    F_MARKET_GEN,
    F_MEDIA_EVER,
    F_PUNISHED,
    F_TRADER,
    SUM_SCALE,
    in_country,
    kin_weight,
)

ATTITUDE_MIN_AGE = 14
ADULT_AGE = 16


class AttitudesParams(ModuleParams):
    """Attitude parameters: weights of each circumstance in each target, and rates."""

    rate_legitimacy: float = Field(1 / 24, ge=0.001, le=1, description="assumption: beliefs in the state change over years")
    rate_grievance: float = Field(1 / 6, ge=0.001, le=1, description="assumption: grievance follows the last half year")
    rate_desire: float = Field(1 / 12, ge=0.001, le=1, description="assumption: desire builds over a year")
    rate_fear: float = Field(1 / 6, ge=0.001, le=1, description="assumption")
    legit_hunger: float = Field(0.6, ge=0, le=2, description="assumption: hunger erodes belief in the state (Haggard & Noland 2011)")
    legit_media: float = Field(0.4, ge=0, le=2, description="assumption: foreign media erode belief in the state (InterMedia 2012)")
    legit_punished: float = Field(0.3, ge=0, le=1, description="assumption")
    legit_class_core: float = Field(0.5, ge=0, le=2, description="assumption: the core class keeps privileges, loses belief more slowly")
    legit_class_hostile: float = Field(1.2, ge=0, le=2, description="assumption")
    market_gen_legitimacy: float = Field(0.6, ge=0, le=1, description="assumption: the market generation never relied on the state (DESIGN.md 0)")
    griev_hunger: float = Field(0.6, ge=0, le=3, description="assumption: hunger is the main push of the 1990s (Haggard & Noland 2011)")
    griev_loss: float = Field(0.6, ge=0, le=3, description="assumption: loss of savings (2009 redenomination)")
    griev_punished: float = Field(0.3, ge=0, le=3, description="assumption")
    griev_wavering: float = Field(0.05, ge=0, le=1, description="assumption: songbun discrimination, wavering class")
    griev_hostile: float = Field(0.15, ge=0, le=1, description="assumption: songbun discrimination, hostile class")
    griev_illegitimacy: float = Field(0.25, ge=0, le=3, description="assumption")
    loss_memory: float = Field(0.9, ge=0, le=0.999, description="assumption: monthly retention of a household's remembered loss")
    desire_media: float = Field(0.7, ge=0, le=3, description="assumption: foreign media show life in South Korea (InterMedia 2012)")
    desire_kin_south: float = Field(1.2, ge=0, le=3, description="set by hand (0.4 -> 1.2) against the 2000s rise of arrivals (chain migration: about 40% of 2010 arrivals had family in the South, targets.csv): kin in South Korea send money and tell the truth")
    desire_market_gen: float = Field(0.15, ge=0, le=3, description="assumption: the market generation seeks a better deal (DESIGN.md 0)")
    desire_trader: float = Field(0.08, ge=0, le=3, description="assumption: traders see China and prices")
    desire_skill: float = Field(0.05, ge=0, le=3, description="assumption: market skill")
    fear_severity: float = Field(0.6, ge=0, le=2, description="assumption: fear follows the punishment-severity lever")
    fear_market_gen_cut: float = Field(0.35, ge=0, le=1, description="assumption: the market generation fears less (DESIGN.md 4.2)")
    fear_surveillance: float = Field(0.3, ge=0, le=2, description="assumption")
    fear_punished: float = Field(0.2, ge=0, le=2, description="assumption")
    fear_raid: float = Field(0.2, ge=0, le=2, description="assumption: a media search in the cell")


class Attitudes(Module):
    """Grievance, desire, legitimacy and fear, updated as moving averages."""

    name = "attitudes"
    Params = AttitudesParams
    outputs = (
        Output("mean_desire", "mean", "index", "mean desire (pull) of adults 16+ in North Korea"),
        Output("mean_grievance", "mean", "index", "mean grievance (push) of adults 16+"),
        Output("mean_legitimacy", "mean", "index", "mean belief in the state of adults 16+"),
        Output("mean_fear", "mean", "index", "mean fear of adults 16+"),
    )

    def init(self, sim) -> None:
        self.prev_wealth = np.zeros(0, dtype=np.float32)  # household wealth last month, USD
        self.loss = np.zeros(0, dtype=np.float32)  # remembered loss, 0..1
        self.n_hh = 0  # households of the last step (the rows in use)
        self.started = False

    def checkpoint_state(self) -> dict:
        return {"prev_wealth": self.prev_wealth[: self.n_hh].copy(),
                "loss": self.loss[: self.n_hh].copy(),
                "started": np.array([self.started])}

    def restore_state(self, arrays: dict) -> None:
        if "prev_wealth" in arrays:
            self.prev_wealth = np.asarray(arrays["prev_wealth"], dtype=np.float32).copy()
            self.loss = np.asarray(arrays["loss"], dtype=np.float32).copy()
            self.n_hh = self.prev_wealth.shape[0]
            self.started = bool(np.asarray(arrays["started"])[0])

    def _grow(self, nh: int, capacity: int) -> None:
        # sized to the household table's capacity (pages are touched as households are
        # founded), not to this month's count: no new arrays and copies every month
        if self.prev_wealth.shape[0] < nh:
            size = max(nh, capacity)
            pw = np.zeros(size, dtype=np.float32)
            ls = np.zeros(size, dtype=np.float32)
            pw[: self.prev_wealth.shape[0]] = self.prev_wealth
            ls[: self.loss.shape[0]] = self.loss
            self.prev_wealth, self.loss = pw, ls

    def step(self, sim) -> None:
        p = self.params
        persons, households = sim.persons, sim.households
        nh = households.n
        self._grow(nh, households.capacity)
        self.n_hh = nh
        # what the person pass reads of a household, in one row (one cache line, not five
        # scattered reads): loss, kin abroad (0, 0.5, 1), surveillance, cell searched (0/1);
        # from the modules' shared work buffer (Sim.household_work), every row written by
        # _household_loss before the person pass reads it
        hh_pack = sim.household_work((np.float32, 4))[0]
        rate = sim.lever("exchange_rate")
        cell_raided = sim.shared.get("cell_raided")
        if cell_raided is None:
            cell_raided = np.zeros(int(sim.cell_province.shape[0]), dtype=np.uint8)
        _household_loss(households.savings_won, households.savings_usd, float(rate),
                        np.float32(p.loss_memory), self.prev_wealth[:nh], self.loss[:nh],
                        sim.chunk_bounds(nh), households.flags, households.surveillance,
                        households.cell, cell_raided, households.kin_tie, hh_pack.reshape(-1))
        first = not self.started
        self.started = True
        r = np.array([p.rate_legitimacy, p.rate_grievance, p.rate_desire, p.rate_fear],
                     dtype=np.float32)
        if first:
            r[:] = 1.0  # start at the targets of the first month, not at zero
        w = np.array([
            p.legit_hunger, p.legit_media, p.legit_punished, p.legit_class_core, 1.0,
            p.legit_class_hostile, p.market_gen_legitimacy,
            p.griev_hunger, p.griev_loss, p.griev_punished, 0.0, p.griev_wavering,
            p.griev_hostile, p.griev_illegitimacy,
            p.desire_media, p.desire_kin_south, p.desire_market_gen, p.desire_trader,
            p.desire_skill,
            p.fear_severity * sim.lever("punishment_severity"), p.fear_market_gen_cut,
            p.fear_surveillance, p.fear_punished, p.fear_raid,
        ], dtype=np.float32)
        bounds = sim.chunk_bounds(persons.n)
        sums = np.zeros((bounds.size - 1, 5), dtype=np.float64)
        _attitude_kernel(np.int64(sim.month), persons.stage, persons.birth_month,
                         persons.household, persons.songbun, persons.flags, persons.hunger,
                         persons.market_skill, persons.media_exposure, persons.desire,
                         persons.grievance, persons.legitimacy, persons.fear,
                         hh_pack, r, w, bounds, sums)
        tot = sums.sum(axis=0)
        n = tot[4]
        sim.record("mean_desire", tot[0] / n if n else 0.0)
        sim.record("mean_grievance", tot[1] / n if n else 0.0)
        sim.record("mean_legitimacy", tot[2] / n if n else 0.0)
        sim.record("mean_fear", tot[3] / n if n else 0.0)


@nb.njit(parallel=True, cache=True, error_model="numpy")
def _household_loss(savings_won, savings_usd, exchange_rate, memory, prev_wealth, loss, bounds,
                    hh_flags, surveillance, hh_cell, cell_raided, hh_tie, hh_pack):
    """Relative loss of household wealth (USD at the market rate) since last month; the
    household row the person pass reads (``hh_pack``).

    Without branches, so that LLVM vectorises the loop: :func:`talbuk.state.kin_weight` and
    the loss are selects (the loss's division made for every household and used where wealth
    fell; ``error_model="numpy"``: no zero test, the divisor is at least 20), the same float32
    operations as before; ``hh_pack`` flat (row ``h`` at ``4 h``: a constant stride)."""
    inv = 1.0 / exchange_rate if exchange_rate > 0 else 0.0
    zero = np.float32(0.0)
    for c in nb.prange(bounds.shape[0] - 1):
        for h in range(np.uint64(bounds[c]), np.uint64(bounds[c + 1])):  # unsigned: no test
            r = np.uint64(4) * h
            hh_pack[r + np.uint64(1)] = kin_weight(hh_flags[h], hh_tie[h])
            hh_pack[r + np.uint64(2)] = surveillance[h]
            hh_pack[r + np.uint64(3)] = np.float32(1.0) if cell_raided[np.uint64(hh_cell[h])] else zero
            wealth = np.float32(savings_usd[h] + savings_won[h] * inv)
            prev = prev_wealth[h]
            fell = (prev - wealth) / (prev + np.float32(20.0))  # 20 USD: small sums matter little
            new_loss = fell if prev > wealth else zero
            ls = loss[h] * memory + new_loss
            ls = ls if ls < np.float32(1.0) else np.float32(1.0)
            loss[h] = ls
            hh_pack[r] = ls
            prev_wealth[h] = wealth


@nb.njit(parallel=True, cache=True)
def _attitude_kernel(t, stage, birth_month, household, songbun, flags, hunger, market_skill,
                     exposure, desire, grievance, legitimacy, fear, hh_pack, r, w, bounds, sums):
    # Written so that LLVM vectorises the loop over people (SIMD lanes): no branch around
    # the work, every person computed and the result stored only for those it concerns
    # (``x[i] = new if act else old``, a select), class weights from tables rather than
    # comparisons (a chain of them becomes a ``switch``, which blocks vectorisation), and
    # the adults' sums in integers (fixed point, ``talbuk.state.SUM_SCALE``). Each person's arithmetic is the
    # same float32 operations in the same order as one at a time, so the attitudes are
    # bit-identical to the scalar loop's.
    min_age = ATTITUDE_MIN_AGE * 12
    adult_age = ADULT_AGE * 12
    one = np.float32(1.0)
    zero = np.float32(0.0)
    r_leg, r_gr, r_de, r_fe = r[0], r[1], r[2], r[3]
    l_h, l_m, l_p, l_core, l_wav, l_host, l_mg = w[0], w[1], w[2], w[3], w[4], w[5], w[6]
    g_h, g_l, g_p, g_s1, g_s2, g_leg = w[7], w[8], w[9], w[11], w[12], w[13]
    d_m, d_k, d_g, d_t, d_s = w[14], w[15], w[16], w[17], w[18]
    f_s, f_g, f_v, f_p, f_r = w[19], w[20], w[21], w[22], w[23]
    k_songbun = np.full(256, l_wav, dtype=np.float32)  # class weight of legitimacy loss
    k_songbun[0] = l_core
    k_songbun[2] = l_host
    g_songbun = np.zeros(256, dtype=np.float32)  # songbun discrimination in grievance
    g_songbun[1] = g_s1
    g_songbun[2] = g_s2
    f_mg = f_s * (one - f_g)  # fear target's severity term for the market generation
    q = SUM_SCALE
    for c in nb.prange(bounds.shape[0] - 1):
        s_d = np.int64(0)
        s_g = np.int64(0)
        s_l = np.int64(0)
        s_f = np.int64(0)
        n = np.int64(0)
        # unsigned indices: numba adds no test for negative ones
        for i in range(np.uint64(bounds[c]), np.uint64(bounds[c + 1])):
            st = stage[i]
            age_m = t - birth_month[i]
            # in North Korea (RESIDENT, PREPARING, CROSSING, DETAINED) and 14 or older
            act = in_country(st) & (age_m >= min_age)
            h = np.uint64(household[i]) if act else np.uint64(0)  # a valid row for all lanes
            fl = flags[i]
            sb = songbun[i]
            hg = hunger[i]
            mg = (fl & F_MARKET_GEN) != 0
            pun = one if (fl & F_PUNISHED) != 0 else zero
            media = exposure[i] if (fl & F_MEDIA_EVER) != 0 else zero
            # legitimacy
            k = k_songbun[sb]
            l0 = l_mg if mg else one
            lt = l0 - k * (l_h * hg + l_m * media) - l_p * pun
            lt = zero if lt < zero else lt
            lt = one if lt > one else lt
            lg0 = legitimacy[i]
            lg = lg0 + r_leg * (lt - lg0)
            # grievance (push)
            gt = g_h * hg + g_l * hh_pack[h, 0] + g_p * pun + g_songbun[sb] + g_leg * (one - lg)
            gr0 = grievance[i]
            gr = gr0 + r_gr * (gt - gr0)
            # desire (pull): kin weight 1 in South Korea (fading with the tie), 0.5 in China
            sk = market_skill[i]
            sk = one if sk > one else sk
            dt = d_m * media + d_k * hh_pack[h, 1] + d_s * sk
            dt = dt + d_g if mg else dt
            dt = dt + d_t if (fl & F_TRADER) != 0 else dt
            de0 = desire[i]
            de = de0 + r_de * (dt - de0)
            # fear; a media search in the cell this month adds f_r
            ft = (f_mg if mg else f_s) + f_v * hh_pack[h, 2] + f_p * pun
            ft = ft + f_r if hh_pack[h, 3] != zero else ft
            fe0 = fear[i]
            fe = fe0 + r_fe * (ft - fe0)
            legitimacy[i] = lg if act else lg0
            grievance[i] = gr if act else gr0
            desire[i] = de if act else de0
            fear[i] = fe if act else fe0
            ad = act & (age_m >= adult_age)
            s_d += np.int64(de * q) if ad else np.int64(0)
            s_g += np.int64(gr * q) if ad else np.int64(0)
            s_l += np.int64(lg * q) if ad else np.int64(0)
            s_f += np.int64(fe * q) if ad else np.int64(0)
            n += np.int64(ad)
        sums[c, 0] = s_d / q
        sums[c, 1] = s_g / q
        sums[c, 2] = s_l / q
        sums[c, 3] = s_f / q
        sums[c, 4] = n
