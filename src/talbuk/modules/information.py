"""Information: foreign media supply, entry through the border, sharing, crackdowns.

Mechanisms (docs/information_attitudes_decision.md, "Information"):

* **Supply by era.** The ``media_supply`` lever (tapes and radio in the 1990s, Chinese DVD
  players from about 2000, USB/SD cards and Notel players from about 2005) sets how much
  foreign media is on offer. Media enter with cross-border trade (``trade_with_china``) and
  spread inland along market routes: each province's availability ``L_p`` follows a target
  ``supply * trade_factor * exp(-d_p / route_km)`` with a lag of ``1 + d_p / route_speed``
  months, ``d_p`` the distance to the Chinese border (population.PROVINCES).
* **Channels.** A person's media pressure is the sum of three channels weighted by where
  North Koreans got their media in a 2022 survey (64% borrowed from family, 50% from friends,
  22% bought in markets): the market (higher for traders), the household's share of
  watchers and the inminban cell's share of watchers (a scatter-add per month), all
  multiplied by the province's availability ``L_p`` (what is shared is what markets bring
  in): ``pressure = gain * L_p * (w_m (1 + b_trader) + (w_f hh_share + w_n cell_share)
  (1 - cut * crackdown))``, capped at 1. Crackdowns cut the two sharing channels.
* **Adoption.** ``media_exposure`` is an exponential moving average of that pressure
  (0..1, how much foreign media reaches the person these months). A person first watches
  (flag ``F_MEDIA_EVER``, never cleared) when it exceeds a fixed personal threshold: a
  threshold model of diffusion (Granovetter 1978, Valente 1996). Thresholds are fixed
  traits (exponential, from rng stream ``trait``), so no random draw per person-month is
  needed; the spread is driven by supply and by neighbours who already watch.
* **Crackdowns.** Each month an inminban cell is searched with probability
  ``inspect_rate * media_crackdown`` (Group 109 from 2004, 114 Sangmu from 2012, the 2020
  law); in a searched cell each household with watchers is caught with probability
  ``catch_prob``. The caught watchers are punished (``F_PUNISHED``), lose media
  (exposure halved), their fear rises, and the household's surveillance rises.

Outputs: ``media_ever_share`` (share of adults 16+ who ever watched), the same among the
border provinces (the people refugee and traveller surveys reach: InterMedia 2012 found
about 20% in 2008 and 48% in 2010), and the people caught each month.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from pydantic import Field

from talbuk import rng
from talbuk.modules.base import Module, ModuleParams, Output
from talbuk.population import PROVINCES
from talbuk.state import F_MEDIA_EVER, F_PUNISHED, F_TRADER, PREPARING, RESIDENT

_MEDIA = np.uint64(rng.STREAMS["media"])
_CRACKDOWN = np.uint64(rng.STREAMS["media_crackdown"])
_TRAIT = np.uint64(rng.STREAMS["trait"])
N_PROV = len(PROVINCES)
MEDIA_MIN_AGE = 10  # years: children watch too; adults (16+) are reported
#: A household's people 10+ and its watchers are counted in one int32 (one add per person):
#: people 10+ in the low WATCH_SHIFT bits, watchers above (no household has 65,536 members)
WATCH_SHIFT = 16
WATCH_UNIT = 1 << WATCH_SHIFT
COUNT_MASK = WATCH_UNIT - 1
ADULT_AGE = 16
C_ADULTS, C_EVER, C_B_ADULTS, C_B_EVER, C_CAUGHT = range(5)
N_COUNTS = 5
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)  # the lowest set bit of a 64-bit word by a multiply


def _ctz_table() -> np.ndarray:
    """Bit index of ``b`` for each power of two ``b`` by ``(b * _DEBRUIJN) >> 58``."""
    tab = np.zeros(64, dtype=np.uint8)
    for k in range(64):
        tab[((1 << k) * int(_DEBRUIJN) & 0xFFFFFFFFFFFFFFFF) >> 58] = k
    return tab


_CTZ = _ctz_table()


@nb.njit(inline="always", cache=True)
def person_traits(seed, traits, rng_id, i):
    """The person's fixed trait word, drawn on first use (a pure function of rng_id)."""
    tr = traits[i]
    if tr == 0:
        w0, _w1, _w2, _w3 = rng.philox4x32(np.uint64(rng_id[i]), np.uint64(0), np.uint64(0),
                                           np.uint64(1), seed, _TRAIT)
        tr = np.uint32(w0)
        if tr == 0:
            tr = np.uint32(1)
        traits[i] = tr
    return tr


@nb.njit(inline="always", cache=True)
def trait_risk_aversion(tr):
    """Risk aversion, uniform on [0.5, 1.5) (bits 0-7)."""
    return np.float32(0.5) + np.float32((tr & np.uint32(0xFF)) + 0.5) / np.float32(256.0)


@nb.njit(inline="always", cache=True)
def trait_leave_u(tr):
    """Uniform in (0, 1) for the leave threshold (bits 8-23, 16 bits for fine tails)."""
    return (np.float32((tr >> np.uint32(8)) & np.uint32(0xFFFF)) + np.float32(0.5)) / np.float32(65536.0)


@nb.njit(inline="always", cache=True)
def trait_media_threshold(tr):
    """Weibull (shape 2, scale 1) media adoption threshold from bits 24-31."""
    u = (np.float32(tr >> np.uint32(24)) + np.float32(0.5)) / np.float32(256.0)
    return math.sqrt(-math.log(np.float32(1.0) - u))


class InformationParams(ModuleParams):
    """Foreign media parameters."""

    route_km: float = Field(450.0, ge=50, le=5000, description="assumption: availability inland falls as exp(-distance/route_km) from the border")
    route_speed_km_per_month: float = Field(25.0, ge=1, le=1000, description="assumption: media travel inland along market routes at this speed (sets the lag of inland provinces)")
    trade_weight: float = Field(0.5, ge=0, le=1, description="assumption: share of supply that scales with trade_with_china (the rest is smuggling)")
    market_weight: float = Field(0.22, ge=0, le=2, description="2022 survey: 22% bought media in markets")
    family_weight: float = Field(0.64, ge=0, le=2, description="2022 survey: 64% borrowed from family")
    friends_weight: float = Field(0.50, ge=0, le=2, description="2022 survey: 50% borrowed from friends")
    trader_bonus: float = Field(1.0, ge=0, le=5, description="assumption: traders meet twice the market supply (smugglers, imports)")
    pressure_gain: float = Field(0.95, ge=0, le=10, description="set by hand so the border provinces reach InterMedia's 20% (2008) and 48% (2010)")
    threshold_scale: float = Field(0.55, ge=0.01, le=10, description="set by hand (as pressure_gain): scale of the Weibull(2) adoption thresholds")
    exposure_rate: float = Field(0.2, ge=0.01, le=1, description="assumption: monthly weight of the moving average of media pressure")
    crackdown_sharing_cut: float = Field(0.5, ge=0, le=1, description="assumption: a full crackdown halves lending among family and friends")
    inspect_rate: float = Field(0.02, ge=0, le=1, description="assumption: monthly chance a cell is searched at crackdown 1")
    catch_prob: float = Field(0.05, ge=0, le=1, description="assumption: chance a watching household in a searched cell is caught")
    caught_surveillance: float = Field(0.3, ge=0, le=1, description="assumption: rise of household surveillance when caught")
    caught_fear: float = Field(0.3, ge=0, le=1, description="assumption: rise of fear of a caught watcher and their household")
    watching_min: float = Field(0.05, ge=0, le=1, description="assumption: exposure above which an ever-watcher still watches (can be caught)")


class Information(Module):
    """Foreign media: supply, entry at the border, sharing, adoption, crackdowns."""

    name = "information"
    Params = InformationParams
    outputs = (
        Output("media_ever_share", "stock", "share", "share of adults (16+) in North Korea who ever watched foreign media"),
        Output("media_ever_share_border", "stock", "share", "the same among adults of the provinces bordering China"),
        Output("media_caught", "flow", "people", "people caught watching foreign media"),
    )

    def init(self, sim) -> None:
        self.dist = np.array([p.distance_to_border_km for p in PROVINCES], dtype=np.float64)
        self.border = np.array([p.borders_china for p in PROVINCES], dtype=np.bool_)
        self.level = np.zeros(N_PROV, dtype=np.float64)  # availability L_p, carried
        self.n_cells = int(sim.cell_province.shape[0])
        # the economy's pass over everyone counts each household's people 10+ and watchers
        # for this module (Economy.step), with these
        sim.shared["media_count_params"] = (np.float32(self.params.watching_min), MEDIA_MIN_AGE * 12)

    def checkpoint_state(self) -> dict:
        return {"level": self.level.copy()}

    def restore_state(self, arrays: dict) -> None:
        if "level" in arrays:
            self.level = np.asarray(arrays["level"], dtype=np.float64).copy()

    def step(self, sim) -> None:
        p = self.params
        persons, households = sim.persons, sim.households
        t = sim.month
        supply = sim.lever("media_supply")
        trade = sim.lever("trade_with_china")
        crackdown = sim.lever("media_crackdown")
        trade_factor = (1.0 - p.trade_weight) + p.trade_weight * trade
        target = supply * trade_factor * np.exp(-self.dist / p.route_km)
        lag = 1.0 + self.dist / p.route_speed_km_per_month
        if sim.t_index == 0 and not np.any(self.level):
            self.level[:] = target  # start in equilibrium with the 1990 supply
        else:
            self.level += (target - self.level) / lag
        nh = households.n
        # per-household work arrays from the modules' shared buffer (Sim.household_work):
        # hh_nw (people 10+ and watchers, WATCH_UNIT) is zeroed by the counting kernels
        # (_count_range), hh_social and hh_caught written for every household by
        # _household_cells
        # the counts may come from the economy's pass this month (Economy.step: the same
        # integers, in the first array of its work buffer, which is this one)
        counted = sim.shared.pop("media_counts", None)
        if counted is not None and not (counted[0] == sim.t_index and counted[1].shape[0] == nh):
            counted = None
        parts = sim.parts(persons.n, persons.n)
        n_partial = 0 if counted is not None else max(parts.size - 2, 0)  # ranges after the first
        hh_nw, hh_social, hh_caught, partial = sim.household_work(
            np.int32, np.float32, np.uint8, (np.int32, (n_partial,)))
        hh_nw, hh_social, hh_caught = (a[:nh] for a in (hh_nw, hh_social, hh_caught))
        if counted is not None:
            # the buffer was made again (its address from the array interface: ``.ctypes``
            # makes a ctypes object, tens of microseconds)
            if counted[1].__array_interface__["data"][0] != hh_nw.__array_interface__["data"][0]:
                hh_nw[:] = counted[1]
            del counted
        elif parts.size > 2:  # counts per range of people, then added per household (exact)
            _scatter_households_par(np.int64(t), persons.stage, persons.birth_month,
                                    persons.flags, persons.household, persons.media_exposure,
                                    np.float32(p.watching_min), hh_nw, parts, partial,
                                    sim.chunk_bounds(nh))
        else:
            _scatter_households(np.int64(t), persons.stage, persons.birth_month, persons.flags,
                                persons.household, persons.media_exposure,
                                np.float32(p.watching_min), hh_nw)
        cell_kin = np.zeros(self.n_cells, dtype=np.float32)
        cell_raided = np.zeros(self.n_cells, dtype=np.uint8)
        share_cut = 1.0 - p.crackdown_sharing_cut * crackdown
        _household_cells(np.int64(t), sim.seed_key, households.cell, households.flags,
                         households.kin_abroad, households.members, households.surveillance,
                         hh_nw, float(p.family_weight * share_cut),
                         float(p.friends_weight * share_cut), float(p.inspect_rate * crackdown),
                         float(p.catch_prob), np.float32(p.caught_surveillance),
                         hh_social, hh_caught, cell_kin, cell_raided, sim.parts(nh, nh),
                         sim.chunk_bounds(nh))
        bounds = sim.chunk_bounds(persons.n)
        counts = np.zeros((bounds.size - 1, N_COUNTS), dtype=np.int64)
        _media_kernel(np.int64(t), sim.seed_key, persons.rng_id, persons.traits, persons.stage,
                      persons.birth_month, persons.province, persons.household, persons.flags,
                      persons.media_exposure, persons.fear, hh_social, hh_caught,
                      self.level.astype(np.float32), np.float32(p.market_weight), self.border, np.float32(p.trader_bonus), np.float32(p.pressure_gain),
                      _threshold_table(np.float32(p.threshold_scale)), np.float32(p.exposure_rate),
                      np.float32(p.watching_min), np.float32(p.caught_fear), bounds,
                      sim.chunk_groups(bounds.size - 1), counts)
        tot = counts.sum(axis=0)
        sim.shared["cell_kin_share"] = cell_kin
        sim.shared["cell_raided"] = cell_raided
        sim.record("media_ever_share", tot[C_EVER] / tot[C_ADULTS] if tot[C_ADULTS] else 0.0)
        sim.record("media_ever_share_border",
                   tot[C_B_EVER] / tot[C_B_ADULTS] if tot[C_B_ADULTS] else 0.0)
        sim.record("media_caught", tot[C_CAUGHT] * sim.scale)


@nb.njit(inline="always", cache=True)
def count_term(st, age_m, fl, exposure, watching_min, min_age_m):
    """What one person adds to their household's count (int32): 1 if 10+ and at home
    (resident or preparing to leave), plus WATCH_UNIT if also still watching foreign media.
    Without branches, for SIMD loops (the economy's sums into households take it too)."""
    a = np.int32(((st == RESIDENT) | (st == PREPARING)) & (age_m >= min_age_m))
    w = a & np.int32(((fl & F_MEDIA_EVER) != 0) & (exposure >= watching_min))
    return a + w * np.int32(WATCH_UNIT)


@nb.njit(inline="always", cache=True)
def _count_range(t, lo, hi, stage, birth_month, flags, household, exposure, watching_min,
                 min_age, pnw):
    """Zero ``pnw`` and count people ``[lo, hi)`` into it: people 10+ plus watchers times
    WATCH_UNIT per household.

    Without a branch: every person adds to the row of their household (row 0 for those not
    counted, which adds nothing). A scatter-add, so not vectorised; the branches it replaces
    (on stage, age and watching, which the processor cannot predict) cost more than the adds."""
    for h in range(pnw.shape[0]):
        pnw[h] = 0
    for i in range(np.uint64(lo), np.uint64(hi)):  # unsigned: no test for negative indices
        x = count_term(stage[i], t - birth_month[i], flags[i], exposure[i], watching_min, min_age)
        h = np.uint64(household[i]) * np.uint64(x != 0)  # the household's row, or row 0 adding nothing
        pnw[h] += x


@nb.njit(cache=True)
def _scatter_households(t, stage, birth_month, flags, household, exposure, watching_min, hh_nw):
    """Serial scatter: people 10+ and watchers per household (integer counts, WATCH_UNIT)."""
    _count_range(t, 0, stage.shape[0], stage, birth_month, flags, household, exposure,
                 watching_min, MEDIA_MIN_AGE * 12, hh_nw)


@nb.njit(parallel=True, cache=True)
def _scatter_households_par(t, stage, birth_month, flags, household, exposure, watching_min,
                            hh_nw, parts, partial, hbounds):
    """:func:`_scatter_households` by ranges of people: the first range counts into
    ``hh_nw``, range ``r > 0`` into ``partial[r - 1]``; the counts are then added per
    household. Integer counts, the same whatever the ranges."""
    min_age = MEDIA_MIN_AGE * 12
    nh = hh_nw.shape[0]
    for r in nb.prange(parts.shape[0] - 1):
        if r == 0:
            _count_range(t, parts[0], parts[1], stage, birth_month, flags, household, exposure,
                         watching_min, min_age, hh_nw)
        else:
            _count_range(t, parts[r], parts[r + 1], stage, birth_month, flags, household,
                         exposure, watching_min, min_age, partial[r - 1, :nh])
    # range by range (a loop over households the compiler vectorises; integer sums, so the
    # same whatever the order)
    for c in nb.prange(hbounds.shape[0] - 1):
        for r in range(parts.shape[0] - 2):
            for h in range(np.uint64(hbounds[c]), np.uint64(hbounds[c + 1])):
                hh_nw[h] += partial[r, h]


#: Households per block of the household pass of :func:`_household_cells`
CELL_BLOCK = 1024


@nb.njit(parallel=True, cache=True)
def _household_cells(t, seed, cell, hh_flags, kin_abroad, members, surveillance, hh_nw,
                     w_family, w_friends, inspect_p, catch_p, caught_surv, hh_social,
                     hh_caught, cell_kin, cell_raided, parts, hbounds):
    """Cell shares of watchers and of families with kin abroad; searches and catches.

    Three parallel passes: (1) each range of households in ``parts`` sums its households
    into its own rows of cell counts (integer sums: the same whatever the ranges); (2) per
    cell, the ranges' counts added, the shares and the cell's search draw; (3) per household
    (ranges ``hbounds``, blocks of CELL_BLOCK), every row of ``hh_social`` and ``hh_caught``
    written in a loop LLVM vectorises (``hh_caught`` first marks the households that may be
    caught: watchers in a searched cell), then the block's few marked households get their
    catch draw. Every draw is keyed by its cell or household, so the results do not depend
    on the ranges or the threads."""
    n_cells = cell_kin.shape[0]
    nr = parts.shape[0] - 1
    # per range and cell: watchers, people 10+, households with members, those with kin abroad
    # (np.empty, zeroed by its range: np.zeros would be one more parallel pass to join)
    acc = np.empty((nr, n_cells, 4), dtype=np.int32)
    cell_share = np.empty(n_cells, dtype=np.float32)
    tm = np.uint64(t)
    for r in nb.prange(nr):
        for c in range(n_cells):
            for q in range(4):
                acc[r, c, q] = 0
        # households are nearly in cell order: each run of one cell is summed in registers
        # and added to the cell's row when the cell changes
        pc = np.uint64(0)
        sw = np.int32(0)
        sn = np.int32(0)
        so = np.int32(0)
        sk = np.int32(0)
        for h in range(np.uint64(parts[r]), np.uint64(parts[r + 1])):  # unsigned: no test
            c = np.uint64(cell[h])
            if c != pc:
                acc[r, pc, 0] += sw
                acc[r, pc, 1] += sn
                acc[r, pc, 2] += so
                acc[r, pc, 3] += sk
                sw = np.int32(0)
                sn = np.int32(0)
                so = np.int32(0)
                sk = np.int32(0)
                pc = c
            occ = members[h] > 0
            kin = (kin_abroad[h] > 0) | ((hh_flags[h] & 12) != 0)  # H_KIN_CHINA | H_KIN_SOUTH
            x = hh_nw[h]
            sw += x >> np.int32(WATCH_SHIFT)
            sn += x & np.int32(COUNT_MASK)
            so += np.int32(occ)
            sk += np.int32(occ & kin)
        acc[r, pc, 0] += sw
        acc[r, pc, 1] += sn
        acc[r, pc, 2] += so
        acc[r, pc, 3] += sk
    for c in nb.prange(n_cells):
        cw = np.int64(0)
        cn = np.int64(0)
        ch = np.int64(0)
        ck = np.int64(0)
        for r in range(nr):
            cw += acc[r, c, 0]
            cn += acc[r, c, 1]
            ch += acc[r, c, 2]
            ck += acc[r, c, 3]
        cell_share[c] = cw / cn if cn > 0 else 0.0
        if ch > 0:
            cell_kin[c] = ck / ch
        if inspect_p > 0.0 and cw > 0:
            if rng.uniform1(seed, _CRACKDOWN, tm, np.uint64(c), np.uint64(0)) < inspect_p:
                cell_raided[c] = 1
    for k in nb.prange(hbounds.shape[0] - 1):
        for b0 in range(hbounds[k], hbounds[k + 1], CELL_BLOCK):
            b1 = min(b0 + CELL_BLOCK, hbounds[k + 1])
            ub0 = np.uint64(b0)
            nbk = np.uint64(b1 - b0)
            m = np.int64(0)
            for j in range(nbk):
                h = ub0 + j
                x = hh_nw[h]
                n = x & np.int32(COUNT_MASK)
                w = x >> np.int32(WATCH_SHIFT)
                c = np.uint64(cell[h])
                nn = n if n != 0 else np.int32(1)
                soc = w_family * (w / nn) + w_friends * cell_share[c]
                hh_social[h] = soc if n != 0 else np.float32(0.0)
                mark = (cell_raided[c] != 0) & (w > 0) & (n != 0)
                hh_caught[h] = np.uint8(mark)
                m += np.int64(mark)
            if m == 0:
                continue
            for j in range(nbk):
                h = ub0 + j
                if hh_caught[h] != 0:
                    if rng.uniform1(seed, _CRACKDOWN, tm, np.uint64(h), np.uint64(1)) < catch_p:
                        s = surveillance[h] + caught_surv
                        surveillance[h] = s if s < 1.0 else 1.0
                    else:
                        hh_caught[h] = 0


@nb.njit(cache=True)
def _threshold_table(threshold_scale):
    """Adoption thresholds ``threshold_scale * Weibull(u)`` for each value of the trait's top
    byte, with exactly the float32 operations of a per-person evaluation."""
    out = np.empty(256, dtype=np.float32)
    for k in range(256):
        out[k] = threshold_scale * trait_media_threshold(np.uint32(k) << np.uint32(24))
    return out


#: People per block of the media kernel: the people of a block whose trait word is drawn on
#: first use are marked (a bit each) by the vectorised loop and handled after it, one at a time.
BLOCK = 1024


@nb.njit(parallel=True, cache=True)
def _media_kernel(t, seed, rng_id, traits, stage, birth_month, province, household, flags,
                  exposure, fear, hh_social, hh_caught, prov_level, market_w, border, trader_bonus,
                  gain, thr_tab, rate, watching_min, caught_fear, bounds, groups, counts):
    # Written so that LLVM vectorises the pass over people (SIMD lanes): every person is
    # computed without a branch (``h`` and ``pr`` are valid rows for all lanes) and the new
    # exposure, flags and fear are stored only for those they concern (``x[i] = new if act
    # else old``, a select); the border provinces are bits of a word (a load of a bool array
    # in the loop stops it from being vectorised). A person first exposed whose trait word is
    # not drawn yet (it is drawn on first use) is left unadopted in the loop, marked with a bit,
    # and tested after the loop, one at a time. Each person's arithmetic is the same float32
    # operations in the same order as one at a time, so the results are bit-identical to the
    # scalar loop's; the counts are integers.
    min_age = MEDIA_MIN_AGE * 12
    adult_age = ADULT_AGE * 12
    one = np.float32(1.0)
    zero = np.float32(0.0)
    u64 = np.uint64
    market_tr = market_w * (one + trader_bonus)  # a trader's market channel
    # the provinces bordering China as bits of a word
    bmask = u64(0)
    for p in range(border.shape[0]):
        if border[p]:
            bmask |= u64(1) << u64(p)
    for grp in nb.prange(groups.shape[0] - 1):
        pm = np.zeros(BLOCK // 64, dtype=np.uint64)  # bit j % 64 of word j // 64: trait to draw
        for c in range(groups[grp], groups[grp + 1]):
            adults = 0
            ever = 0
            b_adults = 0
            b_ever = 0
            caught = 0
            for b0 in range(bounds[c], bounds[c + 1], BLOCK):
                lo = u64(b0)
                nbk = u64(min(b0 + BLOCK, bounds[c + 1]) - b0)
                nmiss = 0
                # unsigned indices: numba adds no test for negative ones (see the attitudes kernel)
                for g in range(u64(0), nbk, u64(64)):
                    m = u64(0)
                    for jj in range(min(u64(64), nbk - g)):
                        i = lo + g + jj
                        st = stage[i]
                        age_m = t - birth_month[i]
                        act = ((st == RESIDENT) | (st == PREPARING)) & (age_m >= min_age)
                        h = u64(household[i]) if act else u64(0)
                        pr = u64(province[i]) if act else u64(0)
                        fl = flags[i]
                        market = market_tr if (fl & F_TRADER) != 0 else market_w
                        # sharing passes on what the markets bring in: every channel scales with L_p
                        pressure = gain * prov_level[pr] * (market + hh_social[h])
                        pressure = one if pressure > one else pressure
                        e0 = exposure[i]
                        e = e0 + rate * (pressure - e0)
                        ever0 = (fl & F_MEDIA_EVER) != 0
                        tr = traits[i]
                        first = (not ever0) & (pressure > zero)  # the adoption test is due
                        need = act & first & (tr == 0)  # ... with the trait word still to draw
                        adopt = first & (tr != 0) & (e > thr_tab[tr >> np.uint32(24)])
                        hc = hh_caught[h] != 0
                        catch = ever0 & hc & (e >= watching_min)
                        fl2 = fl | (F_MEDIA_EVER if adopt else 0) | (F_PUNISHED if catch else 0)
                        e2 = e * np.float32(0.5) if catch else e
                        f0 = fear[i]
                        f = f0 + caught_fear
                        f = f if f < one else one
                        fear[i] = f if act & hc else f0
                        exposure[i] = e2 if act else e0
                        flags[i] = fl2 if act else fl
                        caught += act & catch
                        adult = act & (age_m >= adult_age)
                        is_ever = (fl2 & F_MEDIA_EVER) != 0
                        bd = ((bmask >> pr) & u64(1)) != 0
                        adults += adult
                        ever += adult & is_ever
                        b_adults += adult & bd
                        b_ever += adult & bd & is_ever
                        nmiss += need
                        m |= u64(need) << jj
                    pm[g >> u64(6)] = m
                if nmiss == 0:
                    continue
                # the marked people (rare: people who come of age): trait word, adoption test
                for q in range((nbk + u64(63)) >> u64(6)):
                    m = pm[q]
                    while m != 0:
                        low = m & (u64(0) - m)  # lowest set bit
                        m = m ^ low
                        i = lo + (q << u64(6)) + u64(_CTZ[(low * _DEBRUIJN) >> u64(58)])
                        tr = person_traits(seed, traits, rng_id, i)
                        if exposure[i] > thr_tab[tr >> np.uint32(24)]:
                            flags[i] |= F_MEDIA_EVER
                            if t - birth_month[i] >= adult_age:
                                ever += 1
                                if (bmask >> u64(province[i])) & u64(1):
                                    b_ever += 1
            counts[c, C_ADULTS] = adults
            counts[c, C_EVER] = ever
            counts[c, C_B_ADULTS] = b_adults
            counts[c, C_B_EVER] = b_ever
            counts[c, C_CAUGHT] = caught
