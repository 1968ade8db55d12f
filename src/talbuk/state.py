"""The model's state as structs of arrays. Every attribute's dtype is declared here, once.

Arrays are preallocated to a capacity and exposed as views sliced to the live count, as in
LASER. The initial population is ordered by province, cell and household so that kernels read
neighbours that sit next to each other in memory. Within a year the dead are flagged by
``stage`` and newborns are appended at the end; each January :meth:`talbuk.sim.Sim.reorder`
drops the dead (except people the journey has a record of, whom the ``defectors`` table
describes) and sorts everyone by household again, as LASER's ``squash`` does, so a person's
index changes over the run. A person's identity is ``uid``: numbered 0, 1, 2, ... in order of
appearance (the initial population, then births in the order they are appended), never
reused, kept through every reordering. Random draws are keyed by ``rng_id``, not the index.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# Pipeline stages (DESIGN 4.5). Everyone is RESIDENT until they decide to leave.
RESIDENT = 0
PREPARING = 1
CROSSING = 2
IN_CHINA = 3
IN_TRANSIT = 4
ARRIVED = 5  # arrived in South Korea: what the Ministry of Unification counts
SETTLED_CHINA = 6
DETAINED = 7  # caught, in detention in North Korea; returns home punished
DEAD = 8
#: the stages lived in North Korea: counted in the population and in ``households.members``
IN_COUNTRY_STAGES = (RESIDENT, PREPARING, CROSSING, DETAINED)
STAGE_NAMES = ("resident", "preparing", "crossing", "in_china", "in_transit", "arrived",
               "settled_china", "detained", "dead")

# Person flag bits (``person.flags``)
F_PUNISHED = 1  # has been punished (detained, sent to a camp, fined)
F_TRADER = 2  # trades in the markets
F_MEDIA_EVER = 4  # has ever watched foreign media
F_DECIDED = 8  # has ever decided to leave
F_MARKET_GEN = 16  # formative years (ages 10-20) fell after the famine

# Household flag bits (``household.flags``)
H_FARM = 1  # cooperative farm household: fed from its own harvest, not the PDS
H_TRADING = 2  # at least one member trades
H_KIN_CHINA = 4  # a member is in China
H_KIN_SOUTH = 8  # a member has reached South Korea
H_WATCHED = 16  # under surveillance because a member left or was caught

SEX_MALE = 0
SEX_FEMALE = 1
SONGBUN_NAMES = ("core", "wavering", "hostile")

#: Per-person attributes and their dtypes (57 bytes a person).
PERSON_DTYPES: dict[str, np.dtype] = {
    "uid": np.dtype(np.uint32),  # stable identity (the index changes when the table is reordered)
    "birth_month": np.dtype(np.int16),  # months since 1900-01 (may be negative)
    # Key of this person's random draws: the index for the initial population; for a
    # newborn a hash of the mother's rng_id and the birth month, so the same child meets the
    # same luck in two scenarios even when earlier births shifted the indices.
    "rng_id": np.dtype(np.uint32),
    "household": np.dtype(np.int32),
    "sex": np.dtype(np.uint8),
    "province": np.dtype(np.uint8),
    "songbun": np.dtype(np.uint8),  # 0 core, 1 wavering, 2 hostile
    "stage": np.dtype(np.uint8),
    "flags": np.dtype(np.uint8),
    "stage_month": np.dtype(np.int16),  # month the current stage began
    "resistance": np.dtype(np.float32),  # remaining Exp(1) death threshold minus cumulative hazard
    "hunger": np.dtype(np.float32),  # recent food shortfall, 0 (fed) to 1 (starving)
    "market_skill": np.dtype(np.float32),
    "media_exposure": np.dtype(np.float32),
    "desire": np.dtype(np.float32),  # pull
    "grievance": np.dtype(np.float32),  # push
    "legitimacy": np.dtype(np.float32),  # belief in the state
    "fear": np.dtype(np.float32),
    # Fixed personal traits drawn once from rng stream "trait" (sub 1), 0 = not drawn yet:
    # bits 0-7 risk aversion, 8-23 leave threshold, 24-31 media adoption threshold
    # (modules/information.py, modules/decision.py).
    "traits": np.dtype(np.uint32),
}

#: Per-household attributes and their dtypes.
HOUSEHOLD_DTYPES: dict[str, np.dtype] = {
    "province": np.dtype(np.uint8),
    "cell": np.dtype(np.int32),  # inminban (neighbourhood unit of about 30 households)
    "flags": np.dtype(np.uint8),
    # people living in North Korea, kept (not recounted) by the modules that move people:
    # demography (deaths, births, new households) and the journey (leaving the country and
    # coming back, applied at the end of the month, Sim.defer_members); code that writes
    # persons.stage by hand calls Sim.recount_members
    "members": np.dtype(np.int16),
    "savings_won": np.dtype(np.float64),
    "savings_usd": np.dtype(np.float64),  # foreign currency (dollars and yuan, in USD)
    "state_income": np.dtype(np.float32),
    "market_income": np.dtype(np.float32),
    "surveillance": np.dtype(np.float32),
    "kin_abroad": np.dtype(np.uint8),  # members in China or South Korea (capped at 255)
    # strength of the ties to members in South Korea, 255 (a member arrived this month) fading
    # with the years since the latest arrival (journey.kin_tie_half_life_years; 255 for ever
    # when that is 0); written by the journey's kin recount, read only where H_KIN_SOUTH is set
    "kin_tie": np.dtype(np.uint8),
}


#: Scale of the fixed-point sums that kernels form for recorded means (2**30): each value is
#: added as ``int64(x * SUM_SCALE)``, so a chunk's sum is exact whatever the order, and a
#: loop that forms it can be vectorised (an ordered floating-point sum cannot). The product of
#: a float32 and a power of two is exact, so the conversion loses nothing for values of 2**-6
#: and above and under 2**-30 below; int64 holds 25 million values of up to 300.
SUM_SCALE = np.float32(1 << 30)


@nb.njit(inline="always", cache=True)
def in_country(st):
    """True for a stage of :data:`IN_COUNTRY_STAGES` (for kernels). Bitwise, without a
    short-circuit branch, so that it can stand in a loop LLVM vectorises."""
    return (st <= CROSSING) | (st == DETAINED)


@nb.njit(inline="always", cache=True)
def kin_weight(hh_flags, tie):
    """What kin abroad weigh for a household (for kernels; the attitudes' pull and the
    decision rules): its tie to members in South Korea (``households.kin_tie`` / 255, 1 at an
    arrival), at least 0.5 while a member is in China; 0.5 with members in China only; 0
    without kin abroad. Selects rather than branches, so that it can stand in a loop LLVM
    vectorises (the division is made for every household and used where it counts)."""
    kin = np.float32(0.5) if (hh_flags & H_KIN_CHINA) != 0 else np.float32(0.0)
    south = np.float32(tie) / np.float32(255.0)  # 255 / 255 is exactly 1
    return south if ((hh_flags & H_KIN_SOUTH) != 0) & (south > kin) else kin


@nb.njit(inline="always", cache=True)
def group_rows(bounds, groups, g, block):
    """Rows of a block buffer for the chunks of group ``g`` (``groups``: bounds over the chunk
    indices, :meth:`talbuk.sim.Sim.chunk_groups`): the longest of its chunks, at most
    ``block``. A kernel makes its buffers once per group, not per chunk: at small
    populations (256 chunks of a few dozen people) the allocations of every chunk cost more
    than its work."""
    m = 0
    for c in range(groups[g], groups[g + 1]):
        d = bounds[c + 1] - bounds[c]
        m = d if d > m else m
    return block if m > block else m


@nb.njit(cache=True)
def column_sums_in_order(a):
    """Sums of the columns of a 2-D float64 array, each added row after row from 0.0: the
    float64 additions of a Python loop over the rows, in the same order (so the same bits),
    without its cost (a few hundred rows a month, one per chunk)."""
    out = np.zeros(a.shape[1], dtype=np.float64)
    for r in range(a.shape[0]):
        for k in range(a.shape[1]):
            out[k] += a[r, k]
    return out


def in_country_mask(stage: np.ndarray) -> np.ndarray:
    """Who is in the country (:data:`IN_COUNTRY_STAGES`), for array code."""
    return np.isin(stage, IN_COUNTRY_STAGES)


class Table:
    """A struct of arrays with a fixed capacity and a live count ``n``.

    ``table.name`` is a view of the first ``n`` rows; attributes cannot be rebound, so a
    kernel always writes into the preallocated storage.
    """

    def __init__(self, dtypes: dict[str, np.dtype], capacity: int, n: int = 0):
        object.__setattr__(self, "_dtypes", dict(dtypes))
        object.__setattr__(self, "_data", {k: np.zeros(capacity, dtype=d) for k, d in dtypes.items()})
        object.__setattr__(self, "n", int(n))

    @property
    def capacity(self) -> int:
        return next(iter(self._data.values())).shape[0]

    @property
    def widest(self) -> int:
        """The largest item size of the fields, in bytes (:meth:`move` needs ``n`` times it)."""
        return max(np.dtype(d).itemsize for d in self._dtypes.values())

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self._dtypes)

    def __getattr__(self, name: str) -> np.ndarray:
        data = object.__getattribute__(self, "_data")
        if name in data:
            return data[name][: object.__getattribute__(self, "n")]
        raise AttributeError(name)

    def __setattr__(self, name: str, value) -> None:
        if name == "n":
            if not 0 <= int(value) <= self.capacity:
                raise ValueError(f"count {value} outside capacity {self.capacity}")
            object.__setattr__(self, "n", int(value))
            return
        raise AttributeError(f"cannot rebind {name!r}: write into table.{name}[...] instead")

    def full(self, name: str) -> np.ndarray:
        """The whole preallocated array (capacity rows), for kernels that append."""
        return self._data[name]

    def ensure_capacity(self, needed: int) -> None:
        """Grow (by copying) so that at least ``needed`` rows fit."""
        if needed <= self.capacity:
            return
        new_cap = max(needed, int(self.capacity * 1.25) + 1)
        for k, arr in self._data.items():
            grown = np.zeros(new_cap, dtype=arr.dtype)
            grown[: self.n] = arr[: self.n]
            self._data[k] = grown

    def move(self, new_index: np.ndarray, k: int, spare: np.ndarray | None = None) -> None:
        """Move row ``i`` to row ``new_index[i]`` and drop the rows whose ``new_index`` is
        negative; ``new_index`` maps the kept rows one to one onto ``[0, k)`` and ``n``
        becomes ``k``.

        Each field is scattered into ``spare`` (bytes, 64-byte aligned, at least ``n`` times
        the largest item size; made here if not given) and copied back into its own array, so
        the table keeps its arrays and no fresh memory is touched: :meth:`talbuk.sim.Sim.reorder`
        passes memory it keeps from month to month. Late in a whole-population run, memory
        mapped afresh cost the reorder a few tenths of a second of page faults and compaction
        of huge pages each January. Rows past ``k`` are left zero, as appends expect.
        """
        n = self.n
        width = self.widest
        if spare is None:
            spare = np.empty(n * width + 64, dtype=np.uint8)
            spare = spare[-spare.ctypes.data % 64:]
        if spare.shape[0] < n * width or spare.ctypes.data % 64:
            raise ValueError(f"spare: need {n * width} bytes, 64-byte aligned")
        runs = _runs_of(new_index, n)
        for name in self._dtypes:
            data = self._data[name]
            tmp = spare[: n * data.itemsize].view(data.dtype)
            if runs is None:
                _scatter(new_index, data, tmp, n)
            else:
                _copy_runs(*runs, data, tmp)
            _copy_back(tmp, data, k, n)
        object.__setattr__(self, "n", int(k))

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._data.values())

    def snapshot(self) -> dict[str, np.ndarray]:
        """Copies of the live rows, for checkpoints."""
        return {k: a[: self.n].copy() for k, a in self._data.items()}

    def restore(self, arrays: dict[str, np.ndarray], n: int) -> None:
        self.ensure_capacity(n)
        for k in self._dtypes:
            self._data[k][:n] = arrays[k]
            self._data[k][n:] = 0
        object.__setattr__(self, "n", int(n))


def bytes_per_row(dtypes: dict[str, np.dtype]) -> int:
    return sum(d.itemsize for d in dtypes.values())


@nb.njit(cache=True)
def order_by_household(household, keep, n_households, new_index, start):
    """Write into ``new_index`` each person's index once the kept people are sorted by
    household, each household's members in their present order (-1 if dropped), and return
    how many are kept: a counting sort, two passes over the people, one over the households
    (``start``: work array of at least ``n_households + 1`` entries). Used by
    :meth:`talbuk.sim.Sim.reorder` and, to build the initial population, by
    :func:`talbuk.population.stable_order`."""
    n = household.shape[0]
    for h in range(n_households + 1):
        start[h] = 0
    # unsigned indices: numba adds no test for negative ones
    for i in range(np.uint64(n)):
        if keep[i]:
            start[np.uint64(household[i]) + np.uint64(1)] += 1
    for h in range(n_households):
        start[h + 1] += start[h]
    for i in range(np.uint64(n)):
        if keep[i]:
            h = np.uint64(household[i])
            j = start[h]
            new_index[i] = j
            start[h] = j + 1
        else:
            new_index[i] = -1
    return start[n_households]


#: Chunks of the person table for the run search of :meth:`Table.move` (a run never crosses
#: a chunk's start; set by hand, not tuned; results do not depend on the number).
MOVE_CHUNKS = 64
#: :meth:`Table.move` copies runs when there are at most ``n // MOVE_MAX_RUN_SHARE`` of them
#: (12 bytes of work memory per run), and scatters row by row otherwise. Set by hand, not
#: tuned: the whole-population January reorder measured took the run path; results do not
#: depend on it.
MOVE_MAX_RUN_SHARE = 8


def _runs_of(new_index: np.ndarray, n: int):
    """The moves of :meth:`Table.move` as runs: maximal stretches of kept rows ``i .. i+L-1``
    that land on ``new_index[i] .. new_index[i]+L-1``. A reorder moves the table mostly in
    such stretches (everyone already in household order keeps their order; a newborn placed
    with their household, a person dropped or moved ends one), and copying a stretch costs
    far less than placing each row through the index. None when there are too many runs
    for that to pay (then every row is scattered)."""
    if n == 0:
        return None
    bounds = np.linspace(0, n, min(MOVE_CHUNKS, n) + 1).astype(np.int64)
    counts = np.zeros(bounds.size - 1, dtype=np.int64)
    offsets = np.zeros(bounds.size, dtype=np.int64)
    idx = np.int32 if n < 2**31 else np.int64
    none = np.empty(0, dtype=idx)
    _scan_runs(new_index, bounds, offsets, counts, none, none, none, False)
    total = int(counts.sum())
    if total > n // MOVE_MAX_RUN_SHARE:
        return None
    np.cumsum(counts, out=offsets[1:])
    src0 = np.empty(total, dtype=idx)
    dst0 = np.empty(total, dtype=idx)
    length = np.empty(total, dtype=idx)
    _scan_runs(new_index, bounds, offsets, counts, src0, dst0, length, True)
    rb = np.linspace(0, total, min(MOVE_CHUNKS, max(total, 1)) + 1).astype(np.int64)
    return src0, dst0, length, rb


@nb.njit(parallel=True, cache=True)
def _scan_runs(new_index, bounds, offsets, counts, src0, dst0, length, fill):
    """Per chunk of rows: count its runs into ``counts``; with ``fill``, also write each run's
    first row, its new place and its length from ``offsets[c]`` on. A run starts at a chunk's
    first row and wherever a kept row's new place does not follow the previous row's (a
    dropped row ends a run: its neighbours are not contiguous)."""
    for c in nb.prange(bounds.shape[0] - 1):
        r = offsets[c] - 1
        cnt = 0
        prev = np.int64(-2)
        for i in range(bounds[c], bounds[c + 1]):
            j = np.int64(new_index[i])
            if j < 0:
                prev = -2
                continue
            if j != prev + 1 or i == bounds[c]:
                cnt += 1
                if fill:
                    r += 1
                    src0[r] = i
                    dst0[r] = j
                    length[r] = 0
            if fill:
                length[r] += 1
            prev = j
        counts[c] = cnt


@nb.njit(parallel=True, cache=True)
def _copy_runs(src0, dst0, length, rbounds, src, dst):
    """``dst[dst0[r] + k] = src[src0[r] + k]`` for every run ``r`` and ``k < length[r]``."""
    for c in nb.prange(rbounds.shape[0] - 1):
        for r in range(rbounds[c], rbounds[c + 1]):
            s = np.uint64(src0[r])
            d = np.uint64(dst0[r])
            for k in range(np.uint64(length[r])):
                dst[d + k] = src[s + k]


@nb.njit(parallel=True, cache=True)
def _copy_back(src, dst, k, n):
    """``dst[:k] = src[:k]`` and ``dst[k:n] = 0`` (a parallel copy)."""
    for j in nb.prange(k):
        dst[j] = src[j]
    for j in nb.prange(k, n):
        dst[j] = 0


@nb.njit(parallel=True, cache=True)
def _scatter(new_index, src, dst, n):
    """``dst[new_index[i]] = src[i]`` for ``i < n`` with ``new_index[i] >= 0`` (one to one)."""
    for i in nb.prange(n):
        j = new_index[i]
        if j >= 0:
            dst[np.uint64(j)] = src[i]  # unsigned: numba adds no test for negative indices
