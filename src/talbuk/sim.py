"""The simulation: the step order (declared once, here), the run loop, recording, checkpoints."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np

from talbuk import rng
from talbuk.calendar import format_month
from talbuk.memory import tune_malloc
from talbuk.modules import MODULE_CLASSES
from talbuk.population import MIN_SCALE, PROVINCE_NAMES, synthesise
from talbuk.scenario import Scenario, load_scenario
from talbuk.state import DEAD, in_country_mask, order_by_household

#: The order of the phases of a month (DESIGN section 3). ``policy`` reads the scenario's
#: levers for the month; ``reorder`` (each January) drops the dead from the person table and
#: sorts it by household (:meth:`Sim.reorder`); ``results`` closes the month's records. Every other phase is the
#: module of that name, run if it is registered in :data:`talbuk.modules.MODULE_CLASSES`.
STEP_ORDER: tuple[str, ...] = (
    "policy",
    "reorder",
    "demography",
    "economy",
    "information",
    "attitudes",
    "decision",
    "journey",
    "left_behind",
    "results",
)

#: People are processed in this many fixed chunks: sums are formed per chunk in index order
#: and then added in chunk order, so results never depend on the number of threads.
N_CHUNKS = 256


def even_bounds(n: int, k: int) -> np.ndarray:
    """Bounds of ``k`` near-equal ranges of ``[0, n)``: ``np.linspace(0, n, k + 1)`` cast to
    int64, the same numbers by the same float64 operations (``i * (n / k)``, truncated; the
    last bound ``n``), in a few microseconds instead of tens (the bounds of a month's table
    sizes are made anew each month, as births change the size)."""
    y = np.arange(k + 1, dtype=np.float64)
    y *= float(n) / k
    b = y.astype(np.int64)
    b[k] = n
    return b


#: Groups of consecutive chunks that the threads of a parallel kernel take
#: (:meth:`Sim.chunk_groups`): each group makes its block buffers once (set by hand: at 256
#: chunks of a small population, a buffer per chunk cost more than the chunk's work; 32
#: groups still share out evenly over a few threads). Results never depend on it.
N_GROUPS = 32

#: Below this many items scanned, range-split sums (:meth:`Sim.parts`) run on one thread:
#: starting threads costs more than the scan (set by hand; results do not depend on it).
#: Until 2026-11-30 (session 18) it was a million (1 << 20), which kept the household passes
#: of the decision, information and demography modules on one thread below four million
#: agents (a million households): the million-agent point of the scaling curve paid for it
#: (docs/performance.md, "The scaling curve's small end"). 65,536 scanned items take of the
#: order of 100 microseconds (1-2 ns each), more than starting a parallel region is thought to
#: cost (tens of microseconds; not measured per region here).
PARALLEL_MIN_WORK = 1 << 16

#: The Sim's working memory (:meth:`Sim._pool_of`) is made 1/POOL_HEADROOM larger than asked,
#: so that the growth of the table over a few years does not make it again (set by hand).
POOL_HEADROOM = 32

#: Months between two reorderings of the person table (:meth:`Sim.reorder`), at the start of
#: the month (January when the run starts in January); 0: never. A reordering moves people,
#: not what happens to them: random draws are keyed by ``rng_id``, each household's sums run
#: over its members in the same order, so only the rounding of national float sums (formed
#: in chunks of the table) differs from a run without it.
REORDER_EVERY = 12

#: Capacity of the tables, allocated at the start: the people and households the run is
#: expected to hold at most, per person of the start, per year simulated. People: North
#: Korea grew by 28% from 1990 to 2025 (data/population.csv) plus a year of births and the
#: dead of a year between reorderings; households: the baseline ends with 1.37 times the
#: households it starts with. Tables grow by copying if a scenario needs more.
PERSON_CAPACITY_PER_YEAR = 0.0115
HOUSEHOLD_CAPACITY_PER_YEAR = 0.0125


class Sim:
    """One simulation of North Korea, month by month.

    >>> sim = Sim(scenario="baseline", scale=100, seed=1)  # doctest: +SKIP
    >>> results = sim.run()                                # doctest: +SKIP
    >>> results.annual[["year", "population", "births", "deaths"]]  # doctest: +SKIP

    ``scale`` is people per agent (1 = every person; down to :data:`MIN_SCALE`, an oversample
    with more agents than people, for benchmarks); results are always in people.
    ``threads`` sets numba's thread count (default: all cores); results do not depend on it.
    ``modules`` runs only the named modules (demography is required), for benchmarks and tests.
    ``reorder_every`` sets the months between reorderings of the person table (0: never;
    :data:`REORDER_EVERY`).
    """

    def __init__(self, scenario: str | Path | Scenario = "baseline", *, scale: float = 10,
                 seed: int = 1, threads: int | None = None, checks: bool = False,
                 modules: tuple[str, ...] | None = None, reorder_every: int = REORDER_EVERY):
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        tune_malloc()  # freed month-to-month arrays go back to the system (talbuk.memory)
        if not scale >= MIN_SCALE:
            raise ValueError(f"scale must be at least {MIN_SCALE:g} (people per agent; below 1 "
                             f"the agents outnumber the people), got {scale}")
        self.scale = float(scale)
        self.seed = int(seed)
        self.seed_key = rng.seed_key(self.seed)
        self.threads = int(threads) if threads else numba.config.NUMBA_NUM_THREADS
        self.checks = checks
        if int(reorder_every) < 0:
            raise ValueError(f"reorder_every must be >= 0 months, got {reorder_every}")
        self.reorder_every = int(reorder_every)
        self.start_month = self.scenario.start_month
        self.end_month = self.scenario.end_month
        self.n_months = self.end_month - self.start_month + 1
        self.levers = self.scenario.lever_series(self.start_month, self.n_months)
        if modules is not None:
            unknown = sorted(set(modules) - set(MODULE_CLASSES))
            if unknown or "demography" not in modules:
                raise ValueError(f"modules: {unknown or 'demography is required'}; known: {sorted(MODULE_CLASSES)}")
        # ``modules`` selects a subset (benchmarks of the core, tests); default: all of them
        self.modules = [MODULE_CLASSES[name](self.scenario.params[name])
                        for name in STEP_ORDER if name in MODULE_CLASSES
                        and (modules is None or name in modules)]
        self.t_index = 0  # months completed
        self._bounds_cache: dict[tuple[int, int], np.ndarray] = {}  # (n, k) -> even_bounds
        self.phase_seconds = {name: 0.0 for name in STEP_ORDER}
        self.setup_seconds = 0.0
        self._outputs = {}
        self._province_outputs = {}
        for m in self.modules:
            for o in m.outputs:
                if o.name in self._outputs:
                    raise ValueError(f"output {o.name!r} declared twice")
                self._outputs[o.name] = o
            for o in getattr(m, "province_outputs", ()):
                self._province_outputs[o.name] = o
        self.monthly = {name: np.zeros(self.n_months) for name in self._outputs}
        self.monthly_province = {name: np.zeros((self.n_months, len(PROVINCE_NAMES)))
                                 for name in self._province_outputs}
        self.tables: dict[str, list] = {}  # event tables appended by modules (e.g. defectors)
        self._members_pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.shared: dict = {}  # values modules pass each other within a month (e.g. expected_decisions)
        self._work: np.ndarray | None = None  # the modules' shared household work buffer
        self._work_rows = 0
        self._work_layouts: dict = {}  # (request, rows) -> layout (household_work)
        # working memory kept from month to month: the household work buffer lies in it, and
        # the January reorder uses it (Sim._pool_of)
        self._pool: np.ndarray | None = None
        t0 = time.perf_counter()
        numba.set_num_threads(self.threads)
        years = self.n_months / 12.0
        self.persons, self.households, self.cell_province = synthesise(
            scale=self.scale, seed=self.seed, start_month=self.start_month,
            capacity_factor=max(1.1, 1.0 + PERSON_CAPACITY_PER_YEAR * years),
            household_capacity_factor=max(1.1, 1.0 + HOUSEHOLD_CAPACITY_PER_YEAR * years))
        self.initial_persons = self.persons.n
        self.next_uid = self.persons.n  # uid of the next person appended (births)
        self.removed_dead = 0  # dead people dropped from the table by reorder()
        for m in self.modules:
            m.init(self)
        self.setup_seconds = time.perf_counter() - t0

    # ----------------------------------------------------------------- time and levers
    @property
    def month(self) -> int:
        """The month being simulated (month index since 1900-01)."""
        return self.start_month + self.t_index

    @property
    def done(self) -> bool:
        return self.t_index >= self.n_months

    def lever(self, name: str) -> float:
        """This month's value of a scenario lever."""
        return float(self.levers[name][self.t_index])

    def chunk_bounds(self, n: int) -> np.ndarray:
        """Fixed partition of ``[0, n)`` into at most :data:`N_CHUNKS` ranges (kept for the
        month's few sizes: it is asked for a dozen times a month; do not write into it)."""
        return self.chunk_bounds_of(n, N_CHUNKS)

    def chunk_groups(self, n_chunks: int) -> np.ndarray:
        """Bounds over the chunk indices ``[0, n_chunks)`` of at most :data:`N_GROUPS` groups
        of consecutive chunks: a parallel kernel's threads take groups, and each group makes
        its block buffers once for all its chunks. Every chunk's sums are still its own,
        formed in person order: results never depend on the groups."""
        return self.chunk_bounds_of(n_chunks, N_GROUPS)

    def chunk_bounds_of(self, n: int, k: int) -> np.ndarray:
        """``even_bounds(n, min(k, n))`` (at least one range), kept for the month's few sizes:
        chunks, groups and thread ranges are asked for a few dozen times a month; do not write
        into the result."""
        key = (n, max(1, min(k, n)))
        b = self._bounds_cache.get(key)
        if b is None:
            b = even_bounds(n, key[1])
            if len(self._bounds_cache) > 64:
                self._bounds_cache.clear()
            self._bounds_cache[key] = b
        return b

    def parts(self, n: int, work: int) -> np.ndarray:
        """Ranges of ``[0, n)``, one per thread, for sums that each range forms alone (each
        household or cell summed by one range in person order); one range when ``work``
        (the items scanned) is too small to pay for starting threads. Results never depend
        on it."""
        return self.chunk_bounds_of(n, self.threads if work >= PARALLEL_MIN_WORK else 1)

    # ----------------------------------------------------------------- recording
    def record(self, name: str, value: float) -> None:
        """Record this month's value of a declared output (in people, not agents)."""
        if name not in self.monthly:
            raise KeyError(f"output {name!r} is not declared by any module")
        self.monthly[name][self.t_index] = value

    def record_province(self, name: str, values: np.ndarray) -> None:
        self.monthly_province[name][self.t_index, :] = values

    def add_rows(self, table: str, rows: dict[str, np.ndarray]) -> None:
        """Append rows to an event table (for example one row per defector)."""
        self.tables.setdefault(table, []).append({k: np.asarray(v).copy() for k, v in rows.items()})

    # ----------------------------------------------------------------- running
    def step(self) -> None:
        """Simulate one month, phase by phase in :data:`STEP_ORDER`."""
        if self.done:
            raise RuntimeError("the simulation has already reached its end month")
        numba.set_num_threads(self.threads)
        by_name = {m.name: m for m in self.modules}
        for phase in STEP_ORDER:
            t0 = time.perf_counter()
            if phase in by_name:
                by_name[phase].step(self)
            elif phase == "reorder":
                if self.reorder_every and self.t_index and self.t_index % self.reorder_every == 0:
                    self.reorder()
            elif phase == "results":
                self._apply_members()
                if self.checks:
                    from talbuk.checks import check_invariants
                    check_invariants(self)
            self.phase_seconds[phase] += time.perf_counter() - t0
        self.t_index += 1

    def household_work(self, *specs) -> tuple[np.ndarray, ...]:
        """Work arrays for one module's step, one row per household (at least
        ``households.n`` rows): each spec is a dtype, ``(dtype, width)`` for a 2-D array of
        ``width`` columns, or ``(dtype, (a, b, ...))`` for an array of shape
        ``(a, b, ..., rows)`` (planes of one value per household).

        Every call returns views of one buffer that all modules share, so the month's
        per-household work arrays take the memory of the largest module's request instead of
        all of them together (docs/performance.md, "Memory: one work buffer for the
        modules"). An array is valid only during the caller's step (the next call, by any
        module, reuses the memory) and holds whatever its last user left: a module writes
        every row it reads, and keeps no reference past its step. The buffer has room for a
        few more households than the table holds; it is released before each reorder
        (:meth:`reorder`), when memory peaks, and made again by the next call.
        """
        nh = self.households.n
        rows = self._work_rows
        if self._work is None or rows < nh:
            rows = nh + nh // 50 + 64  # room for the households founded in the next months
        # the layout of a request, worked out once per (request, rows): a module asks for the
        # same arrays every month and the rows change once in a few months (its dtype and
        # shape arithmetic cost about as much as a small population's whole month of a module)
        layout = self._work_layouts.get((specs, rows))
        if layout is None:
            shapes = []  # (dtype, shape, offset and size in bytes)
            total = 0
            for spec in specs:
                dtype, width = spec if isinstance(spec, tuple) else (spec, 1)
                dtype = np.dtype(dtype)
                if isinstance(width, tuple):
                    shape = (*width, rows)
                else:
                    shape = (rows, width) if width > 1 else (rows,)
                nbytes = int(np.prod(shape)) * dtype.itemsize
                shapes.append((dtype, shape, total, nbytes))
                total += -(-nbytes // 64) * 64  # each array 64-byte aligned
            if len(self._work_layouts) > 64:
                self._work_layouts.clear()
            layout = self._work_layouts[(specs, rows)] = (tuple(shapes), total)
        shapes, total = layout
        if self._work is None or rows != self._work_rows or self._work.shape[0] < total:
            self._work = self._pool_of(total)[:total]
            self._work_rows = rows
        return tuple(self._work[off: off + nbytes].view(dtype).reshape(shape)
                     for dtype, shape, off, nbytes in shapes)

    def person_scratch(self) -> np.ndarray:
        """A byte per row of the person table (``persons.capacity`` bytes, uint8) in the Sim's
        working memory, for one module's step: like :meth:`household_work`, valid only during
        the caller's step and holding whatever its last user left, so the caller writes every
        row it reads. The demography's event flags live here: a buffer of their own held a
        byte per person for the whole run (about 28 MB at the whole population), beside working
        memory that is idle while the demography runs."""
        cap = self.persons.capacity
        return self._pool_of(cap)[:cap]

    def _pool_of(self, nbytes: int) -> np.ndarray:
        """At least ``nbytes`` of the Sim's working memory (uint8, 64-byte aligned), made
        larger (with room for a few years of growth) when asked for more than it holds.

        It holds the modules' household work buffer (:meth:`household_work`) and the
        demography's event flags (:meth:`person_scratch`) during the months and the reorder's
        arrays each January (:meth:`reorder`): the same pages serve them all, so
        none maps fresh memory (late in a whole-population run, fresh memory cost the reorder
        about 0.3 s of page faults and huge-page compaction each January), and the memory held
        is the largest request (the reorder's needed it anyway at the peak)."""
        if self._pool is None or self._pool.shape[0] < nbytes:
            self._work = None
            self._pool = None  # free the old memory before the new is made
            size = nbytes + nbytes // POOL_HEADROOM + 4096
            raw = np.zeros(size + 64, dtype=np.uint8)
            start = -raw.ctypes.data % 64
            self._pool = raw[start: start + size]
        return self._pool

    def defer_members(self, households: np.ndarray, deltas: np.ndarray) -> None:
        """Changes to ``households.members`` (people in the country) made after the demography
        phase, by people leaving the country or coming back (the journey): applied when the
        month closes, so that every module of a month sees the counts of its demography phase.
        Code that writes ``persons.stage`` by hand must call :meth:`recount_members`."""
        if len(households):
            self._members_pending.append((np.array(households, dtype=np.int64),
                                          np.array(deltas, dtype=np.int16)))

    def _apply_members(self) -> None:
        for h, d in self._members_pending:
            np.add.at(self.households.members, h, d)
        self._members_pending = []

    def reorder(self) -> None:
        """Drop the dead from the person table and sort it by household (LASER's ``squash``).

        Newborns are appended at the end of the table and women founding a household move to
        one created at the end of the household table, so over the years more and more people
        sit far in memory from their households and kernels that read household fields for
        each person wait for memory. This puts every household's members next to each other
        again (in their previous order) and drops the dead, except those a module still
        refers to: a module marks them in ``persons_to_keep(sim, keep)`` (the journey keeps
        everyone it has a record of, whom the ``defectors`` table describes). Modules that
        hold person indices remap them in ``reordered(sim, new_index)`` (``new_index``: old
        index -> new index, -1 if dropped); ``uid`` and ``rng_id`` travel with the person.
        Member counts are by household and need nothing.
        """
        self._work = None  # the modules' work buffer is made again next month
        p = self.persons
        n = p.n
        nh = self.households.n
        # in the Sim's working memory (Sim._pool_of): the spare for the table's fields (which
        # first holds ``keep`` and the counting sort's starts), then ``new_index``
        idx_type = np.dtype(np.int32 if n < 2**31 else np.int64)
        ka = -(-n // 64) * 64
        a = -(-max(n * p.widest, ka + 8 * (nh + 1)) // 64) * 64
        pool = self._pool_of(a + n * idx_type.itemsize)
        spare = pool[:a]
        new_index = pool[a: a + n * idx_type.itemsize].view(idx_type)
        keep = spare[:n].view(np.bool_)
        start = spare[ka: ka + 8 * (nh + 1)].view(np.int64)
        np.not_equal(p.stage, DEAD, out=keep)
        for m in self.modules:
            hook = getattr(m, "persons_to_keep", None)
            if hook is not None:
                hook(self, keep)
        k = int(order_by_household(p.household, keep, nh, new_index, start))
        del keep, start
        p.move(new_index, k, spare)
        self.removed_dead += n - k
        for m in self.modules:
            hook = getattr(m, "reordered", None)
            if hook is not None:
                hook(self, new_index)

    def index_of(self, uids) -> np.ndarray:
        """Current row of each ``uid`` in the person table (-1 where the person was dropped:
        dead, see :meth:`reorder`)."""
        uids = np.asarray(uids, dtype=np.int64)
        u = self.persons.uid.astype(np.int64)
        if u.size == 0:
            return np.full(uids.shape, -1, dtype=np.int64)
        order = np.argsort(u, kind="stable")
        su = u[order]
        pos = np.clip(np.searchsorted(su, uids), 0, u.size - 1)
        return np.where(su[pos] == uids, order[pos], -1)

    def recount_members(self) -> None:
        """Recount ``households.members`` from ``persons.stage`` (after a hand edit of stages,
        in tests; the modules keep the counts themselves)."""
        self._apply_members()
        p, hh = self.persons, self.households
        hh.members[:] = np.bincount(p.household[in_country_mask(p.stage)], minlength=hh.n)

    def run(self, *, progress: Callable[[Sim], None] | None = None,
            checkpoint_every: int | None = None, checkpoint: Callable[[Sim], None] | None = None,
            until: int | None = None):
        """Run to the end month (or ``until`` months completed) and return the results."""
        stop = self.n_months if until is None else min(until, self.n_months)
        while self.t_index < stop:
            self.step()
            if progress is not None:
                progress(self)
            if checkpoint_every and checkpoint is not None and self.t_index % checkpoint_every == 0 \
                    and self.t_index < self.n_months:
                checkpoint(self)
        self._work = self._pool = None  # not needed to build the results
        from talbuk.results import Results  # pandas: only once the months are done

        return Results.from_sim(self)

    def plan(self) -> str:
        """The step order with the seconds each phase took so far."""
        names = {m.name for m in self.modules}
        lines = []
        for phase in STEP_ORDER:
            state = "module" if phase in names else ("built in" if phase in ("policy", "results") else "not built")
            lines.append(f"{phase:<12} {state:<10} {self.phase_seconds[phase]:8.2f} s")
        return "\n".join(lines)

    def describe_month(self) -> str:
        return format_month(self.month)

    # ----------------------------------------------------------------- checkpoints
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to continue the run exactly, as named arrays."""
        out: dict[str, np.ndarray] = {}
        for k, v in self.persons.snapshot().items():
            out[f"persons/{k}"] = v
        for k, v in self.households.snapshot().items():
            out[f"households/{k}"] = v
        out["meta/counts"] = np.array([self.t_index, self.persons.n, self.households.n,
                                       self.next_uid, self.removed_dead], dtype=np.int64)
        out["meta/cell_province"] = self.cell_province
        for k, v in self.monthly.items():
            out[f"monthly/{k}"] = v
        for k, v in self.monthly_province.items():
            out[f"province/{k}"] = v
        out["meta/phase_seconds"] = np.array([self.phase_seconds[p] for p in STEP_ORDER])
        for m in self.modules:
            for k, v in m.checkpoint_state().items():
                out[f"module/{m.name}/{k}"] = np.asarray(v)
        for table, chunks in self.tables.items():
            if not chunks:
                continue
            keys = chunks[0].keys()
            for k in keys:
                out[f"table/{table}/{k}"] = np.concatenate([c[k] for c in chunks])
        return out

    def restore_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        t_index, n_persons, n_households, self.next_uid, self.removed_dead = (
            int(x) for x in arrays["meta/counts"])
        self.persons.restore({k: arrays[f"persons/{k}"] for k in self.persons.fields}, n_persons)
        self.households.restore({k: arrays[f"households/{k}"] for k in self.households.fields},
                                n_households)
        self.cell_province = arrays["meta/cell_province"]
        for k in self.monthly:
            self.monthly[k][:] = arrays[f"monthly/{k}"]
        for k in self.monthly_province:
            self.monthly_province[k][:] = arrays[f"province/{k}"]
        for p, s in zip(STEP_ORDER, arrays["meta/phase_seconds"], strict=True):
            self.phase_seconds[p] = float(s)
        for m in self.modules:
            prefix = f"module/{m.name}/"
            m.restore_state({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
        self.tables = {}
        tables: dict[str, dict[str, np.ndarray]] = {}
        for k, v in arrays.items():
            if k.startswith("table/"):
                _, table, col = k.split("/", 2)
                tables.setdefault(table, {})[col] = v
        for table, cols in tables.items():
            self.tables[table] = [cols]
        self.t_index = t_index
