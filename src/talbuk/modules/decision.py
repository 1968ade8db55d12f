"""Decision: who decides to leave North Korea this month, and why (DESIGN.md 4.4).

Eligible: people aged ``min_age``-``max_age`` who are RESIDENT (not preparing, not
detained). For each, the push ``G`` (grievance), the pull ``D`` (desire) and a perceived net
risk ``R`` are combined by the scenario's ``decision_rule`` into a monthly probability
``p_i``; a random draw is made only when ``p_i > 0``.

Net risk (all rules): ``R = ra_i (w_b border_security^k + w_c china_repatriation + w_f fear)
+ w_fam family + w_age age - w_kin kin``, with ``k = border_exponent`` (a sealed border with
walls and shoot-to-kill orders is feared far more than a guarded one), ``ra_i`` a fixed
risk-aversion trait
(uniform 0.5-1.5), ``family`` the share of up to 4 relatives left behind (guilt by
association punishes them), ``age`` the years above 30 over 30, ``kin`` the household's tie
to kin in South Korea (1 at an arrival, fading with ``journey.kin_tie_half_life_years``; at
least 0.5 with kin in China), 0.5 with kin in China only (they pay brokers, tell the truth). ``fear`` carries the
punishment-severity lever, surveillance and punishment (modules/attitudes.py).

Each person has a fixed threshold ``theta_i = theta_0 + theta_s logit(u_i)`` (``u_i`` a
16-bit trait), so the timing of a decision, not the decision itself, is left to chance:

* ``threshold`` (after Epstein 2002): ``x = G + D - R - theta_i``;
* ``utility`` (rational actor): ``x = P_s v_abroad (0.3 + D) - v_stay (1 - G) - cost
  - (1 - P_s) v_pun severity ra_i (1 + family) - theta_i``, with success chance
  ``P_s = (1 - border)(1 - 0.5 china)`` raised by kin, and ``cost = fee / (fee + money)``
  (money: household savings in USD, own means and kin help);
* ``planned`` (Theory of Planned Behaviour, Ajzen 1991): ``x = w_a (D + a_G G) + w_n norm
  + w_c control - w_r R - theta_i``, norm = kin abroad and the cell's share of families with
  kin abroad, control = affordability (money vs ``broker_fee_usd``) times access (border,
  distance to it).

``p_i = h max(0, min(1, x / ramp))``: zero below the threshold, rising to the monthly hazard
``h`` above it. Each decision records push ``G``, pull ``D`` and risk ``R``; it is "pushed"
when ``G > D``. The expected number of decisions ``sum_i p_i`` (people, per sex) is recorded
beside the sampled one and passed to the journey module in ``sim.shared``.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from pydantic import Field

from talbuk import rng
from talbuk.modules.base import Module, ModuleParams, Output
from talbuk.modules.information import (
    _CTZ,
    _DEBRUIJN,
    person_traits,
    trait_leave_u,
    trait_risk_aversion,
)
from talbuk.population import PROVINCES
from talbuk.state import (
    F_DECIDED,
    H_KIN_SOUTH,
    PREPARING,
    RESIDENT,
    SEX_FEMALE,
    column_sums_in_order,
    kin_weight,
)

_DECISION = np.uint64(rng.STREAMS["decision"])
RULES = {"threshold": 0, "utility": 1, "planned": 2}
N_PROV = len(PROVINCES)
C_DEC, C_PUSHED, C_FEM = range(3)


class DecisionParams(ModuleParams):
    """Decision parameters. Thresholds and hazards were set by hand (see docs)."""

    min_age: int = Field(16, ge=10, le=40, description="assumption: youngest who decide by themselves")
    max_age: int = Field(60, ge=30, le=100, description="assumption")
    risk_border: float = Field(1.2, ge=0, le=5, description="assumption: weight of border security in perceived risk")
    border_exponent: float = Field(2.0, ge=1, le=4, description="assumption: risk rises convexly as the border closes (walls, shoot-to-kill orders)")
    risk_china: float = Field(0.2, ge=0, le=5, description="assumption: weight of China's repatriation")
    risk_fear: float = Field(0.5, ge=0, le=5, description="assumption: weight of fear (punishment severity, surveillance)")
    risk_family: float = Field(0.15, ge=0, le=5, description="assumption: family left behind are punished (guilt by association)")
    risk_age: float = Field(0.3, ge=0, le=5, description="assumption: the old leave less")
    kin_relief: float = Field(0.6, ge=0, le=5, description="set by hand (0.2 -> 0.6) against the 2000s rise of arrivals: kin abroad pay brokers, lower the risk")
    threshold_loc: float = Field(0.76, ge=-5, le=5, description="set by hand: decisions of order 3,000-10,000 a year in the 2000s; 0.8 -> 0.76 in the third refit of 2026-11-29 (docs/journey.md), with the famine's crossers going home: more decisions in the 2000s keep the stock in China and the arrivals of 2002-2009")
    threshold_scale: float = Field(0.15, ge=0.01, le=2, description="set by hand: spread of personal thresholds (logistic scale)")
    ramp: float = Field(0.2, ge=0.001, le=5, description="assumption: width over which p rises to the hazard")
    hazard: float = Field(0.022, ge=0, le=1, description="set by hand: monthly chance of deciding when well above the threshold; 0.02 -> 0.022 in the third refit of 2026-11-29 (docs/journey.md)")
    female_hazard: float = Field(1.0, ge=0.2, le=5, description="assumption, left at 1 (no difference) until a refit: women's monthly chance of deciding relative to men's. Women were 71-78% of arrivals in 2006-2011 (MOU entry statistics; validate's diagnostics) and the model gives about half: married women, not tied to a state workplace, travelled to trade, and brokers recruited women for China; at 2 (hazard 0.0147) the 2006-2011 share is 0.61, at 3 (hazard 0.011) 0.66, with ARD 0.165 and 0.191 against 0.123 in the same screening (docs/information_attitudes_decision.md)")
    utility_abroad: float = Field(1.0, ge=0, le=10, description="assumption: value of life abroad (income many times higher)")
    utility_stay: float = Field(0.8, ge=0, le=10, description="assumption: value of staying when not aggrieved")
    utility_cost: float = Field(0.3, ge=0, le=10, description="assumption: weight of the fee relative to means")
    utility_punish: float = Field(0.6, ge=0, le=10, description="assumption: weight of expected punishment if caught")
    utility_loc: float = Field(0.15, ge=-5, le=5, description="set by hand: threshold location for the utility rule")
    planned_attitude: float = Field(1.0, ge=0, le=5, description="assumption (TPB weights)")
    planned_push: float = Field(0.8, ge=0, le=5, description="assumption: hardship makes leaving look better")
    planned_norm: float = Field(0.4, ge=0, le=5, description="assumption")
    planned_control: float = Field(0.4, ge=0, le=5, description="assumption")
    planned_risk: float = Field(0.8, ge=0, le=5, description="assumption")
    planned_loc: float = Field(1.0, ge=-5, le=5, description="set by hand: threshold location for the planned rule")
    own_means_usd: float = Field(300.0, ge=0, le=100000, description="assumption: what a family can sell (goods, house rights)")
    kin_help_usd: float = Field(5000.0, ge=0, le=100000, description="assumption: kin abroad pay the broker")
    distance_scale_km: float = Field(600.0, ge=50, le=5000, description="assumption: access falls with distance to the border")


class Decision(Module):
    """The decision to leave: threshold, utility or planned-behaviour rule."""

    name = "decision"
    Params = DecisionParams
    outputs = (
        Output("decisions", "flow", "people", "people who decided to leave (sampled)"),
        Output("decisions_pushed", "flow", "people", "decisions with push (grievance) above pull (desire)"),
        Output("decisions_pulled", "flow", "people", "decisions with pull at or above push"),
        Output("expected_decisions", "flow", "people", "expected decisions: sum of each eligible person's probability"),
        Output("expected_decisions_female", "flow", "people", "expected decisions of women"),
    )

    #: deciders a chunk of people records in its row of the output buffers each month before
    #: it is scanned again (256 chunks: about 100,000 people each at scale 1, where a month
    #: has a few thousand deciders at most); grows when a month needs more
    buffer_per_chunk = 64

    def init(self, sim) -> None:
        self.rule = RULES[sim.scenario.decision_rule]
        self.dist = np.array([p.distance_to_border_km for p in PROVINCES], dtype=np.float32)
        self._theta_key = None
        self._theta = np.zeros(0, dtype=np.float32)
        self._out_idx = np.zeros((0, 0), dtype=np.int64)
        self._out_vals = np.zeros((0, 0, 3), dtype=np.float32)

    def _theta_table(self, loc: float, scale: float) -> np.ndarray:
        """Personal thresholds by the 16-bit leave trait (cached while loc and scale hold)."""
        key = (float(np.float32(loc)), float(np.float32(scale)))
        if key != self._theta_key:
            self._theta = _theta_table(np.float32(loc), np.float32(scale))
            self._theta_key = key
        return self._theta

    def step(self, sim) -> None:
        p = self.params
        persons, households = sim.persons, sim.households
        n = persons.n
        bounds = sim.chunk_bounds(n)
        nc = bounds.size - 1
        # each chunk writes its first ``cap`` deciders into its own row; a chunk with more is
        # collected again after the kernel (_collect) and ``cap`` grows for next month
        cap = self.buffer_per_chunk
        if self._out_idx.shape[0] < nc or self._out_idx.shape[1] != cap:
            self._out_idx = np.zeros((nc, cap), dtype=np.int64)
            self._out_vals = np.zeros((nc, cap, 3), dtype=np.float32)
        out_idx, out_vals = self._out_idx, self._out_vals
        cell_kin = sim.shared.get("cell_kin_share")
        if cell_kin is None:
            cell_kin = np.zeros(int(sim.cell_province.shape[0]), dtype=np.float32)
        fee = sim.lever("broker_fee_usd")
        exch = sim.lever("exchange_rate")
        border = sim.lever("border_security")
        lv = np.array([border ** p.border_exponent, sim.lever("china_repatriation"), sim.lever("punishment_severity"),
                       fee, 1.0 / exch if exch > 0 else 0.0, border], dtype=np.float64)
        loc = {0: p.threshold_loc, 1: p.utility_loc, 2: p.planned_loc}[self.rule]
        w = np.array([
            p.risk_border, p.risk_china, p.risk_fear, p.risk_family, p.risk_age, p.kin_relief,
            loc, p.threshold_scale, p.ramp, p.hazard,
            p.utility_abroad, p.utility_stay, p.utility_cost, p.utility_punish,
            p.planned_attitude, p.planned_push, p.planned_norm, p.planned_control,
            p.planned_risk, p.own_means_usd, p.kin_help_usd, p.distance_scale_km,
            p.female_hazard,
        ], dtype=np.float32)
        nh = households.n
        # kin abroad and relatives left behind per household, from the modules' shared work
        # buffer (Sim.household_work): every row written by _household_inputs
        hh_pack = sim.household_work((np.float32, 3))[0]
        hparts = sim.parts(nh, nh)
        if hparts.size > 2:
            _household_inputs_par(households.flags, households.members, households.kin_tie, hparts,
                                  hh_pack)
        else:
            _household_inputs(households.flags, households.members, households.kin_tie, 0, nh,
                              hh_pack)
        counts = np.zeros((nc, 3), dtype=np.int64)
        expected = np.zeros((nc, 4), dtype=np.float64)
        t = sim.month
        _decision_kernel(
            np.int64(self.rule), np.int64(t), sim.seed_key, persons.rng_id, persons.traits,
            persons.stage, persons.stage_month, persons.flags, persons.birth_month,
            persons.sex, persons.province, persons.household, persons.grievance,
            persons.desire, persons.fear, hh_pack, households.cell, households.savings_won,
            households.savings_usd, cell_kin, self.dist, lv, w,
            np.int64(p.min_age * 12), np.int64(p.max_age * 12), bounds,
            sim.chunk_groups(bounds.size - 1), counts, expected,
            out_idx, out_vals, self._theta_table(loc, p.threshold_scale))
        tot = counts.sum(axis=0)
        # expected flow: per-chunk partials added in chunk order (thread-independent)
        exp_all, exp_fem, exp_kin, exp_fem_kin = (
            float(x) for x in column_sums_in_order(expected))
        sim.shared["expected_decisions"] = exp_all
        sim.shared["expected_decisions_female"] = exp_fem
        # of which people whose household has a member in South Korea (the journey's
        # kin-split copy, for the low-noise kin share of arrivals)
        sim.shared["expected_decisions_kin"] = exp_kin
        sim.shared["expected_decisions_female_kin"] = exp_fem_kin
        k = int(tot[C_DEC])
        if k:
            n_dec = counts[:, C_DEC].copy()
            idx, vals = _collect(
                out_idx, out_vals, bounds, n_dec, k, np.int64(t), sim.seed_key,
                persons.rng_id, persons.traits, persons.stage, persons.stage_month,
                persons.flags, persons.birth_month, persons.household, persons.grievance,
                persons.desire, persons.fear, hh_pack, lv, w)
            most = int(n_dec.max())
            if most > cap:
                self.buffer_per_chunk = 2 * most
            sim.add_rows("decisions", {
                "uid": persons.uid[idx].astype(np.int64),
                "_index": idx.astype(np.int64),  # row in the person table this month (internal)
                "month": np.full(k, t, dtype=np.int32),
                "push": vals[:, 0].astype(np.float32),
                "pull": vals[:, 1].astype(np.float32),
                "risk": vals[:, 2].astype(np.float32),
                "rule": np.full(k, self.rule, dtype=np.uint8),
            })
        s = sim.scale
        sim.record("decisions", k * s)
        sim.record("decisions_pushed", tot[C_PUSHED] * s)
        sim.record("decisions_pulled", (k - tot[C_PUSHED]) * s)
        sim.record("expected_decisions", exp_all * s)
        sim.record("expected_decisions_female", exp_fem * s)


@nb.njit(cache=True)
def _collect(out_idx, out_vals, bounds, n_dec, k, t, seed, rng_id, traits, stage,
             stage_month, flags, birth_month, household, grievance, desire, fear, hh_pack, lv, w):
    """The deciders each chunk wrote into its row, chunk after chunk (table order). A chunk
    with more deciders than its row holds: after the last one recorded, its
    deciders are found again (PREPARING since this month, flagged as deciders) and their push,
    pull and risk recomputed as the kernel computed them (``_risk``)."""
    cap = out_idx.shape[1]
    idx = np.empty(k, dtype=out_idx.dtype)
    vals = np.empty((k, out_vals.shape[2]), dtype=out_vals.dtype)
    j = 0
    for c in range(n_dec.shape[0]):
        for m in range(min(n_dec[c], cap)):
            idx[j] = out_idx[c, m]
            vals[j, :] = out_vals[c, m, :]
            j += 1
        if n_dec[c] > cap:  # rare: the rest of the chunk's deciders, found again
            for i in range(out_idx[c, cap - 1] + 1, bounds[c + 1]):
                if stage[i] == PREPARING and stage_month[i] == t and (flags[i] & F_DECIDED):
                    if j >= k:
                        raise RuntimeError("decision: more deciders found again than counted")
                    idx[j] = i
                    vals[j, 0] = grievance[i]
                    vals[j, 1] = desire[i]
                    vals[j, 2] = _risk(t - birth_month[i], person_traits(seed, traits, rng_id, i),
                                       fear[i], hh_pack[household[i], 0],
                                       hh_pack[household[i], 1], lv, w)
                    j += 1
    if j != k:
        raise RuntimeError("decision: deciders found again do not match the count")
    return idx, vals


@nb.njit(inline="always", cache=True)
def _risk_s(age_m, ra, fear_i, kin, fam, r_bc, w2, w3, w4, w5):
    """Perceived risk R from scalars: ``r_bc = w[0] lv[0] + w[1] lv[1]`` (border and China),
    the other weights ``w[2:6]``. The one formula of the kernel and of :func:`_risk`."""
    zero = np.float32(0.0)
    old = (np.float32(age_m) / np.float32(12.0) - np.float32(30.0)) / np.float32(30.0)
    old = zero if old < zero else old
    return ra * (r_bc + w2 * fear_i) + w3 * fam + w4 * old - w5 * kin


@nb.njit(inline="always", cache=True)
def _risk(age_m, tr, fear_i, kin, fam, lv, w):
    """Perceived risk R of a person (the kernel's formula, shared with the overflow path)."""
    return _risk_s(age_m, trait_risk_aversion(tr), fear_i, kin, fam, w[0] * lv[0] + w[1] * lv[1],
                   w[2], w[3], w[4], w[5])


@nb.njit(cache=True)
def _theta_table(loc, scale):
    """``theta = loc + scale logit(u)`` for each value of the 16-bit leave trait (bits 8-23),
    with exactly the float32 operations of a per-person evaluation (no log per person)."""
    one = np.float32(1.0)
    out = np.empty(65536, dtype=np.float32)
    for k in range(65536):
        u1 = trait_leave_u(np.uint32(k) << np.uint32(8))
        out[k] = loc + scale * math.log(u1 / (one - u1))
    return out


@nb.njit(cache=True)
def _household_inputs(hh_flags, members, hh_tie, lo, hi, hh_pack):
    """Per household of ``[lo, hi)``, in one row for the person pass: kin abroad (0.5 in
    China; in South Korea the tie, 1 fading with the years since the latest arrival, at least
    0.5 while someone is also in China), the share of up to 4 relatives who would be left
    behind, and 1 if a member is in South Korea (0 if not)."""
    zero = np.float32(0.0)
    for h in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no test for negative indices
        hf = hh_flags[h]
        kin = kin_weight(hf, hh_tie[h])
        south = np.float32(1.0) if hf & H_KIN_SOUTH else zero
        fam = np.float32(members[h] - 1)
        if fam > np.float32(4.0):
            fam = np.float32(4.0)
        fam = fam * np.float32(0.25)
        if fam < zero:
            fam = zero
        hh_pack[h, 0] = kin
        hh_pack[h, 1] = fam
        hh_pack[h, 2] = south


@nb.njit(parallel=True, cache=True)
def _household_inputs_par(hh_flags, members, hh_tie, hparts, hh_pack):
    for part in nb.prange(hparts.shape[0] - 1):
        _household_inputs(hh_flags, members, hh_tie, hparts[part], hparts[part + 1], hh_pack)


#: People per block of the decision kernel: a block's push, pull, risk and ``x`` are computed
#: in a loop the compiler vectorizes (SIMD lanes), into block-local buffers; the few people
#: with ``x > 0`` are then visited one at a time, in table order.
BLOCK = 1024


@nb.njit(forceinline=True, cache=True)
def _x_rule0(lo, nbk, t, min_age, max_age, stage, birth_month, household, province, traits,
             grievance, desire, fear, hh_pack, hh_cell, savings_won, savings_usd, cell_kin, dist,
             theta_tab, r_bc, w2, w3, w4, w5, own, kin_help, inv_rate, fee, p_succ0, u_ab, u_st,
             u_co, u_pu, severity, border, p_a, p_g, p_n, p_c, p_r, dscale, xb, rb, pm):
    """x of the threshold rule for people ``[lo, lo + nbk)`` into ``xb``, R into ``rb``, the
    bits of ``x > 0`` into ``pm``; returns (people with x > 0, eligible people without a trait
    word)."""
    u64 = np.uint64
    miss = 0
    npos = 0
    for g0 in range(u64(0), nbk, u64(64)):
        m0 = u64(0)
        for jj0 in range(min(u64(64), nbk - g0)):
            j0 = g0 + jj0
            i0 = lo + j0
            age0 = t - birth_month[i0]
            act0 = (stage[i0] == RESIDENT) & (age0 >= min_age) & (age0 <= max_age)
            h0 = u64(household[i0]) if act0 else u64(0)
            tr0 = traits[i0]
            miss += act0 & (tr0 == 0)
            R0 = _risk_s(age0, trait_risk_aversion(tr0), fear[i0], hh_pack[h0, 0],
                         hh_pack[h0, 1], r_bc, w2, w3, w4, w5)
            # theta = loc + scale * logit(u) of the 16-bit leave trait, from a table
            theta0 = theta_tab[(tr0 >> np.uint32(8)) & np.uint32(0xFFFF)]
            x0 = grievance[i0] + desire[i0] - R0 - theta0
            pos0 = act0 & (not (x0 <= 0.0))
            npos += pos0
            m0 |= u64(pos0) << jj0
            xb[j0] = x0 if act0 else 0.0
            rb[j0] = R0
        pm[g0 >> u64(6)] = m0
    return npos, miss


@nb.njit(forceinline=True, error_model="numpy", cache=True)
def _x_rule1(lo, nbk, t, min_age, max_age, stage, birth_month, household, province, traits,
             grievance, desire, fear, hh_pack, hh_cell, savings_won, savings_usd, cell_kin, dist,
             theta_tab, r_bc, w2, w3, w4, w5, own, kin_help, inv_rate, fee, p_succ0, u_ab, u_st,
             u_co, u_pu, severity, border, p_a, p_g, p_n, p_c, p_r, dscale, xb, rb, pm):
    """x of the utility rule for people ``[lo, lo + nbk)`` into ``xb``, R into ``rb``, the
    bits of ``x > 0`` into ``pm``; returns (people with x > 0, eligible people without a trait
    word).
    ``error_model="numpy"``: a float division has no test for a zero divisor (whose
    exception would stop the loop from being vectorised); its divisors (money + fee + 1,
    ``distance_scale_km``) are positive, so the results are the same."""
    one = np.float32(1.0)
    u64 = np.uint64
    miss = 0
    npos = 0
    for g1 in range(u64(0), nbk, u64(64)):
        m1 = u64(0)
        for jj1 in range(min(u64(64), nbk - g1)):
            j1 = g1 + jj1
            i1 = lo + j1
            age1 = t - birth_month[i1]
            act1 = (stage[i1] == RESIDENT) & (age1 >= min_age) & (age1 <= max_age)
            h1 = u64(household[i1]) if act1 else u64(0)
            tr1 = traits[i1]
            miss += act1 & (tr1 == 0)
            ra1 = trait_risk_aversion(tr1)
            G1 = grievance[i1]
            D1 = desire[i1]
            kin1 = hh_pack[h1, 0]
            fam1 = hh_pack[h1, 1]
            R1 = _risk_s(age1, ra1, fear[i1], kin1, fam1, r_bc, w2, w3, w4, w5)
            theta1 = theta_tab[(tr1 >> np.uint32(8)) & np.uint32(0xFFFF)]
            money1 = own + kin1 * kin_help + savings_usd[h1] + savings_won[h1] * inv_rate
            afford1 = money1 / (money1 + fee + 1.0)
            ps1 = p_succ0 * (1.0 + 0.3 * kin1)
            ps1 = 1.0 if ps1 > 1.0 else ps1
            x1 = (ps1 * u_ab * (0.3 + D1) - u_st * (one - G1) - u_co * (1.0 - afford1)
                  - (1.0 - ps1) * u_pu * severity * ra1 * (one + fam1) - theta1)
            pos1 = act1 & (not (x1 <= 0.0))
            npos += pos1
            m1 |= u64(pos1) << jj1
            xb[j1] = x1 if act1 else 0.0
            rb[j1] = R1
        pm[g1 >> u64(6)] = m1
    return npos, miss


@nb.njit(forceinline=True, error_model="numpy", cache=True)
def _x_rule2(lo, nbk, t, min_age, max_age, stage, birth_month, household, province, traits,
             grievance, desire, fear, hh_pack, hh_cell, savings_won, savings_usd, cell_kin, dist,
             theta_tab, r_bc, w2, w3, w4, w5, own, kin_help, inv_rate, fee, p_succ0, u_ab, u_st,
             u_co, u_pu, severity, border, p_a, p_g, p_n, p_c, p_r, dscale, xb, rb, pm):
    """x of the planned-behaviour rule for people ``[lo, lo + nbk)`` into ``xb``, R into ``rb``, the
    bits of ``x > 0`` into ``pm``; returns (people with x > 0, eligible people without a trait
    word).
    ``error_model="numpy"``: a float division has no test for a zero divisor (whose
    exception would stop the loop from being vectorised); its divisors (money + fee + 1,
    ``distance_scale_km``) are positive, so the results are the same."""
    one = np.float32(1.0)
    u64 = np.uint64
    miss = 0
    npos = 0
    for g2 in range(u64(0), nbk, u64(64)):
        m2 = u64(0)
        for jj2 in range(min(u64(64), nbk - g2)):
            j2 = g2 + jj2
            i2 = lo + j2
            age2 = t - birth_month[i2]
            act2 = (stage[i2] == RESIDENT) & (age2 >= min_age) & (age2 <= max_age)
            h2 = u64(household[i2]) if act2 else u64(0)
            pr2 = u64(province[i2]) if act2 else u64(0)
            tr2 = traits[i2]
            miss += act2 & (tr2 == 0)
            G2 = grievance[i2]
            D2 = desire[i2]
            kin2 = hh_pack[h2, 0]
            R2 = _risk_s(age2, trait_risk_aversion(tr2), fear[i2], kin2,
                         hh_pack[h2, 1], r_bc, w2, w3, w4, w5)
            theta2 = theta_tab[(tr2 >> np.uint32(8)) & np.uint32(0xFFFF)]
            money2 = own + kin2 * kin_help + savings_usd[h2] + savings_won[h2] * inv_rate
            afford2 = money2 / (money2 + fee + 1.0)
            norm2 = np.float32(0.6) * kin2 + cell_kin[u64(hh_cell[h2])] * np.float32(4.0)
            norm2 = one if norm2 > one else norm2
            access2 = (1.0 - border) * (1.0 - dist[pr2] / dscale)
            access2 = 0.0 if access2 < 0.0 else access2
            x2 = (p_a * (D2 + p_g * G2) + p_n * norm2 + p_c * afford2 * access2
                  - p_r * R2 - theta2)
            pos2 = act2 & (not (x2 <= 0.0))
            npos += pos2
            m2 |= u64(pos2) << jj2
            xb[j2] = x2 if act2 else 0.0
            rb[j2] = R2
        pm[g2 >> u64(6)] = m2
    return npos, miss


@nb.njit(forceinline=True, cache=True)
def _chunks(rule, c0, c1, t, seed, rng_id, traits, stage, stage_month, flags, birth_month, sex,
           province, household, grievance, desire, fear, hh_pack, hh_cell, savings_won,
           savings_usd, cell_kin, dist, lv, w, min_age, max_age, bounds, counts, expected,
           out_idx, out_vals, theta_tab):
    """Chunks ``c0`` to ``c1 - 1`` of the decision kernel under ``rule`` (a constant at each
    call: the compiled function holds only that rule's loop), each with its own counts and
    sums; the block buffers are made once for all of them."""
    china, severity, fee, inv_rate, border = lv[1], lv[2], lv[3], lv[4], lv[5]
    r_bc = w[0] * lv[0] + w[1] * lv[1]  # risk weights w[0:6] and border factor lv[0]: _risk_s
    w2, w3, w4, w5 = w[2], w[3], w[4], w[5]
    ramp, hz = w[8], w[9]  # w[6], w[7] (threshold location and scale): in theta_tab
    hz_f = hz * w[22]  # women's hazard
    u_ab, u_st, u_co, u_pu = w[10], w[11], w[12], w[13]
    p_a, p_g, p_n, p_c, p_r = w[14], w[15], w[16], w[17], w[18]
    own, kin_help, dscale = w[19], w[20], w[21]
    tm = np.uint64(t)
    cap = out_idx.shape[1]
    u64 = np.uint64
    # success chance before kin (utility rule); access through the border (planned rule)
    p_succ0 = (1.0 - border) * (1.0 - 0.5 * china)
    xb = np.empty(BLOCK, dtype=np.float64)  # x of the block's people (0 if not eligible)
    rb = np.empty(BLOCK, dtype=np.float32)  # their risk R
    pm = np.zeros(BLOCK // 64, dtype=np.uint64)  # bit j % 64 of word j // 64: x > 0
    for c in range(c0, c1):
        k = 0
        pushed = 0
        fem = 0
        e_all = 0.0
        e_fem = 0.0
        e_kin = 0.0
        e_fem_kin = 0.0
        for b0 in range(bounds[c], bounds[c + 1], BLOCK):
            lo = u64(b0)
            nbk = u64(min(b0 + BLOCK, bounds[c + 1]) - b0)
            npos = 0
            for _again in range(2):
                # unsigned indices: numba adds no test for negative ones (see the attitudes kernel)
                if rule == 0:
                    npos, miss = _x_rule0(
                        lo, nbk, t, min_age, max_age, stage, birth_month, household, province, traits,
                        grievance, desire, fear, hh_pack, hh_cell, savings_won, savings_usd, cell_kin,
                        dist, theta_tab, r_bc, w2, w3, w4, w5, own, kin_help, inv_rate, fee, p_succ0,
                        u_ab, u_st, u_co, u_pu, severity, border, p_a, p_g, p_n, p_c, p_r, dscale, xb,
                        rb, pm)
                elif rule == 1:
                    npos, miss = _x_rule1(
                        lo, nbk, t, min_age, max_age, stage, birth_month, household, province, traits,
                        grievance, desire, fear, hh_pack, hh_cell, savings_won, savings_usd, cell_kin,
                        dist, theta_tab, r_bc, w2, w3, w4, w5, own, kin_help, inv_rate, fee, p_succ0,
                        u_ab, u_st, u_co, u_pu, severity, border, p_a, p_g, p_n, p_c, p_r, dscale, xb,
                        rb, pm)
                else:
                    npos, miss = _x_rule2(
                        lo, nbk, t, min_age, max_age, stage, birth_month, household, province, traits,
                        grievance, desire, fear, hh_pack, hh_cell, savings_won, savings_usd, cell_kin,
                        dist, theta_tab, r_bc, w2, w3, w4, w5, own, kin_help, inv_rate, fee, p_succ0,
                        u_ab, u_st, u_co, u_pu, severity, border, p_a, p_g, p_n, p_c, p_r, dscale, xb,
                        rb, pm)
                if miss == 0:
                    break
                # rare (people who come of age): their trait words drawn, then the block again
                for jm in range(nbk):
                    im = lo + jm
                    age_m = t - birth_month[im]
                    if stage[im] == RESIDENT and age_m >= min_age and age_m <= max_age:
                        person_traits(seed, traits, rng_id, im)
            if npos == 0:
                continue
            # the block's people with x > 0, in table order
            for q in range((nbk + u64(63)) >> u64(6)):
                m = pm[q]
                while m != 0:
                    low = m & (u64(0) - m)  # lowest set bit
                    m = m ^ low
                    j = (q << u64(6)) + u64(_CTZ[(low * _DEBRUIJN) >> u64(58)])
                    i = lo + j
                    p = xb[j] / ramp
                    if p > 1.0:
                        p = 1.0
                    female = sex[i] == SEX_FEMALE
                    p = p * (hz_f if female else hz)
                    if p > 1.0:
                        p = 1.0
                    e_all += p
                    if female:
                        e_fem += p
                    # a member already in South Korea (the journey's kin-split copy)
                    if hh_pack[u64(household[i]), 2] != 0:
                        e_kin += p
                        if female:
                            e_fem_kin += p
                    if rng.uniform1(seed, _DECISION, tm, rng_id[i], u64(0)) < p:
                        G = grievance[i]
                        D = desire[i]
                        stage[i] = PREPARING
                        stage_month[i] = t
                        flags[i] |= F_DECIDED
                        if k < cap:
                            out_idx[c, k] = i
                            out_vals[c, k, 0] = G
                            out_vals[c, k, 1] = D
                            out_vals[c, k, 2] = rb[j]
                        k += 1
                        if G > D:
                            pushed += 1
                        if female:
                            fem += 1
        counts[c, C_DEC] = k
        counts[c, C_PUSHED] = pushed
        counts[c, C_FEM] = fem
        expected[c, 0] = e_all
        expected[c, 1] = e_fem
        expected[c, 2] = e_kin
        expected[c, 3] = e_fem_kin


@nb.njit(parallel=True, cache=True)
def _decision_kernel(rule, t, seed, rng_id, traits, stage, stage_month, flags, birth_month, sex,
                     province, household, grievance, desire, fear, hh_pack, hh_cell, savings_won,
                     savings_usd, cell_kin, dist, lv, w, min_age, max_age, bounds, groups, counts,
                     expected, out_idx, out_vals, theta_tab):
    # Written so that LLVM vectorises the pass over people (SIMD lanes): per block of BLOCK
    # people, one loop per rule computes every person's R and x without a branch (eligible
    # or not; ``h`` is a valid row for all lanes) into block buffers, with a bit per person
    # for ``x > 0``; then the people with a bit set (about 1 in 150 eligible) are visited in
    # table order for their probability, the expected sums (float64, in the same order as one
    # at a time), their draw and decision. Drawing for the chunk's candidates together, in a
    # vectorised loop, measured no faster: they are too few. Each person's arithmetic is the
    # same float operations in the same order as the scalar loop, so every result is
    # bit-identical to it.
    # one loop over groups of chunks per rule, so that each holds only its rule's code
    if rule == 0:
        for grp in nb.prange(groups.shape[0] - 1):
            _chunks(0, groups[grp], groups[grp + 1], t, seed, rng_id, traits, stage,
                    stage_month, flags, birth_month, sex, province, household, grievance, desire,
                    fear, hh_pack, hh_cell, savings_won, savings_usd, cell_kin, dist, lv, w,
                    min_age, max_age, bounds, counts, expected, out_idx, out_vals, theta_tab)
    elif rule == 1:
        for grp in nb.prange(groups.shape[0] - 1):
            _chunks(1, groups[grp], groups[grp + 1], t, seed, rng_id, traits, stage,
                    stage_month, flags, birth_month, sex, province, household, grievance, desire,
                    fear, hh_pack, hh_cell, savings_won, savings_usd, cell_kin, dist, lv, w,
                    min_age, max_age, bounds, counts, expected, out_idx, out_vals, theta_tab)
    else:
        for grp in nb.prange(groups.shape[0] - 1):
            _chunks(2, groups[grp], groups[grp + 1], t, seed, rng_id, traits, stage,
                    stage_month, flags, birth_month, sex, province, household, grievance, desire,
                    fear, hh_pack, hh_cell, savings_won, savings_usd, cell_kin, dist, lv, w,
                    min_age, max_age, bounds, counts, expected, out_idx, out_vals, theta_tab)
