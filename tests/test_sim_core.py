"""The simulation core: determinism, thread independence, checkpoints, demography targets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from talbuk.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from talbuk.population import read_data
from talbuk.results import read_run, write_results
from talbuk.sim import STEP_ORDER, Sim


def _tables(results):
    return results.monthly, results.annual, results.province_annual


def test_step_order_declared_once_and_complete():
    assert STEP_ORDER[0] == "policy" and STEP_ORDER[-1] == "results"
    assert STEP_ORDER.index("demography") < STEP_ORDER.index("economy") < STEP_ORDER.index("decision")


def test_same_seed_same_tables_whatever_the_threads():
    a = Sim("baseline", scale=5000, seed=3, threads=1).run(until=60)
    b = Sim("baseline", scale=5000, seed=3, threads=2).run(until=60)
    for x, y in zip(_tables(a), _tables(b), strict=True):
        pd.testing.assert_frame_equal(x, y, check_exact=True)
    for name in a.tables:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name], check_exact=True)


def test_different_seed_different_tables():
    a = Sim("baseline", scale=5000, seed=3).run(until=36)
    b = Sim("baseline", scale=5000, seed=4).run(until=36)
    assert not a.monthly["deaths"].equals(b.monthly["deaths"])


def test_invariants_hold_every_month():
    sim = Sim("baseline", scale=5000, seed=5, checks=True)
    sim.run(until=120)  # raises InvariantError on any violation


def test_results_in_people_not_agents():
    a = Sim("baseline", scale=2000, seed=1).run(until=12)
    b = Sim("baseline", scale=4000, seed=1).run(until=12)
    # both report about 20.3 million people whatever the agents (sampling noise < 1%)
    pa, pb = a.monthly["population"].iloc[0], b.monthly["population"].iloc[0]
    assert 19.9e6 < pa < 20.6e6 and 19.9e6 < pb < 20.6e6


def test_scale_below_the_oversample_floor_is_refused():
    from talbuk.population import MIN_SCALE

    with pytest.raises(ValueError, match=f"at least {MIN_SCALE:g}"):
        Sim("baseline", scale=MIN_SCALE * 0.9, seed=1)
    with pytest.raises(ValueError, match="at least"):
        Sim("baseline", scale=float("nan"), seed=1)


def test_checkpoint_resume_is_identical(tmp_path):
    full = Sim("baseline", scale=5000, seed=11).run()
    sim = Sim("baseline", scale=5000, seed=11)
    sim.run(until=150)
    save_checkpoint(sim, tmp_path / "work", {})
    resumed, _info = load_checkpoint(tmp_path / "work")
    assert resumed.t_index == 150
    rest = resumed.run()
    for x, y in zip(_tables(full), _tables(rest), strict=True):
        pd.testing.assert_frame_equal(x, y, check_exact=True)
    for name in full.tables:
        pd.testing.assert_frame_equal(full.tables[name], rest.tables[name], check_exact=True)
    # and the written Parquet files are byte for byte the same
    write_results(full, full_toml := resumed.scenario.to_toml(), tmp_path / "a")
    write_results(rest, full_toml, tmp_path / "b")
    for f in ("monthly.parquet", "annual.parquet", "province_annual.parquet"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_corrupt_checkpoint_is_refused(tmp_path):
    sim = Sim("baseline", scale=5000, seed=1)
    sim.run(until=6)
    npz = save_checkpoint(sim, tmp_path / "w", {})
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(tmp_path / "w")


class _Killed(Exception):
    pass


@pytest.mark.parametrize("stage", ["npz-written", "npz-renamed", "json-written"])
def test_kill_during_a_checkpoint_write_leaves_the_previous_one(tmp_path, monkeypatch, stage):
    """A kill at any point of the second checkpoint's write leaves the first one loadable.

    (The bug this guards against: the data file renamed over the old one before the
    description was replaced, so a kill in between left a description whose checksum named
    data that was gone.)
    """
    import talbuk.checkpoint as ck

    sim = Sim("baseline", scale=5000, seed=1)
    sim.run(until=6)
    save_checkpoint(sim, tmp_path / "w", {})
    sim.run(until=12)
    real_replace = ck.os.replace

    def dying_write(path, writer):
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            writer(f)
        is_npz = path.suffix == ".npz"
        if (stage == "npz-written" and is_npz) or (stage == "json-written" and not is_npz):
            raise _Killed
        real_replace(tmp, path)
        if stage == "npz-renamed" and is_npz:
            raise _Killed

    monkeypatch.setattr(ck, "_write_atomic_bytes", dying_write)
    with pytest.raises(_Killed):
        save_checkpoint(sim, tmp_path / "w", {})
    monkeypatch.undo()
    resumed, info = load_checkpoint(tmp_path / "w")
    assert resumed.t_index == 6 and info["months_done"] == 6
    # the next successful write replaces it and clears the leftovers
    save_checkpoint(sim, tmp_path / "w", {})
    assert load_checkpoint(tmp_path / "w")[0].t_index == 12
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["checkpoint-0012.npz",
                                                                  "checkpoint.json"]


def test_a_second_checkpoint_of_the_same_month_never_overwrites_the_described_data(tmp_path, monkeypatch):
    """Saving twice at one month writes the second data file under another name, so a kill
    before its description is replaced still leaves the first loadable."""
    import talbuk.checkpoint as ck

    sim = Sim("baseline", scale=5000, seed=1)
    sim.run(until=6)
    first = save_checkpoint(sim, tmp_path / "w", {})
    real_write = ck._write_atomic_bytes

    def dying_write(path, writer):
        if path.name == "checkpoint.json":
            raise _Killed
        real_write(path, writer)

    monkeypatch.setattr(ck, "_write_atomic_bytes", dying_write)
    with pytest.raises(_Killed):
        save_checkpoint(sim, tmp_path / "w", {})
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "w")[1]["npz"] == first.name
    second = save_checkpoint(sim, tmp_path / "w", {})
    assert second.name != first.name and load_checkpoint(tmp_path / "w")[0].t_index == 6
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == sorted([second.name, "checkpoint.json"])


def test_run_folder_round_trip(tmp_path):
    sim = Sim("baseline", scale=5000, seed=1)
    res = sim.run(until=24)
    write_results(res, sim.scenario.to_toml(), tmp_path / "run")
    back = read_run(tmp_path / "run")
    pd.testing.assert_frame_equal(back.annual, res.annual)
    m = back.manifest
    for key in ("version", "scenario_hash", "seed", "scale", "threads", "timings_seconds", "data_sha256"):
        assert key in m
    with pytest.raises(FileExistsError):
        write_results(res, sim.scenario.to_toml(), tmp_path / "run")
    assert not any(p.name.startswith(".run.tmp") for p in tmp_path.iterdir())


def test_population_follows_censuses(baseline_small):
    """1993 and 2008 censuses and the UN 2020 estimate within 2% (data/population.csv)."""
    _sim, res = baseline_small
    m = res.monthly.set_index("month")["population"]
    pop = read_data("population.csv").set_index("year")["population"]
    assert abs(m["1993-12"] / pop[1993] - 1) < 0.02
    assert abs(m["2008-10"] / pop[2008] - 1) < 0.02
    assert abs(m["2020-07"] / pop[2020] - 1) < 0.02


def test_2008_age_structure_close_to_census(baseline_small):
    """2008 census: 0-14 23.2%, 15-64 68.1%, 65+ 8.7% (DESIGN 4.1); within 2.5 points."""
    _sim, res = baseline_small
    row = res.monthly.set_index("month").loc["2008-10"]
    shares = np.array([row["pop_0_14"], row["pop_15_64"], row["pop_65_plus"]]) / row["population"]
    assert np.all(np.abs(shares - np.array([0.232, 0.681, 0.087])) < 0.025), shares


def test_capacity_grows_when_births_exceed_it():
    sim = Sim("baseline", scale=5000, seed=1)
    cap = sim.persons.capacity
    sim.persons.ensure_capacity(sim.persons.n + 1)  # no-op
    assert sim.persons.capacity == cap
    n = sim.persons.n
    before = sim.persons.birth_month.copy()
    sim.persons.ensure_capacity(cap + 10)
    assert sim.persons.capacity >= cap + 10 and sim.persons.n == n
    assert np.array_equal(before, sim.persons.birth_month)
    with pytest.raises(AttributeError):
        sim.persons.stage = np.zeros(3)


def _malloc_probe(env_extra: dict) -> tuple[bool, int]:
    """In a fresh process: what ``tune_malloc`` says, and how much resident memory a heap
    freed in pieces between live arrays leaves behind (bytes)."""
    import os
    import subprocess
    import sys

    code = """
import numpy as np
from talbuk.memory import tune_malloc
set_ = tune_malloc()
assert tune_malloc() == set_  # once per process
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * 4096
# arrays of 4 MB: below glibc's dynamic ceiling (32 MB), above talbuk's threshold (1 MB)
big = np.zeros(8 << 20, dtype=np.uint8); big[:] = 1; del big  # raises glibc's threshold
keep, r0 = [], rss()
for _ in range(40):
    a = np.ones(1 << 20, dtype=np.float32)   # a 4 MB temporary
    keep.append(np.ones(1000, dtype=np.uint8))  # a small array that stays, after it
    del a
print(int(set_), rss() - r0)
"""
    env = {**os.environ, **env_extra}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return bool(int(out[0])), int(out[1])


def test_tune_malloc_returns_freed_arrays_to_the_system():
    """talbuk.memory: with the threshold fixed, freed month-to-month temporaries of a few MB
    are unmapped at once; with glibc's default they may stay resident. TALBUK_MALLOC=default
    turns the tuning off."""
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    tuned, leftover = _malloc_probe({})
    assert tuned
    assert leftover < 2 << 20  # nothing of the 40 temporaries stays resident
    untuned, _ = _malloc_probe({"TALBUK_MALLOC": "default"})
    assert not untuned


def _arrays_in(obj, depth=0):
    """Every numpy array reachable from ``obj``'s attributes (lists, tuples, dicts, objects)."""
    if isinstance(obj, np.ndarray):
        yield obj
    elif depth < 3 and isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _arrays_in(x, depth + 1)
    elif depth < 3 and isinstance(obj, dict):
        for x in obj.values():
            yield from _arrays_in(x, depth + 1)
    elif depth < 3 and hasattr(obj, "__dict__"):
        for x in vars(obj).values():
            yield from _arrays_in(x, depth + 1)


def test_household_work_is_one_buffer_that_no_module_holds_at_the_reorder():
    # the modules' per-household work arrays are views of one buffer (Sim.household_work) in
    # the Sim's working memory, which the January reorder then uses for its own arrays: after
    # a month no module may still refer to it (the reorder overwrites it), and the reorder
    # maps no fresh memory
    sim = Sim("baseline", scale=5000, seed=2)
    for _ in range(3):
        sim.step()
    b, c = sim.household_work(np.int32, (np.float32, 4))
    (a,) = sim.household_work(np.float32)
    assert np.shares_memory(a, b)  # the next call reuses the memory
    assert a.shape[0] >= sim.households.n and c.shape == (a.shape[0], 4)
    assert all(x.ctypes.data % 64 == 0 for x in (a, b, c))
    assert np.shares_memory(a, sim._pool)
    del a, b, c
    while sim.t_index < 24:  # months of every module, the first reorder (which sizes the pool)
        sim.step()
    pool = sim._pool
    held = [x for m in sim.modules for x in _arrays_in(m) if np.shares_memory(x, pool)]
    assert not held, "a module kept a view of the shared work buffer past its step"
    before = {name: sim.persons.full(name) for name in sim.persons.fields}
    sim.reorder()
    assert sim._work is None and sim._pool is pool  # the same memory, not made again
    # the table keeps its arrays (the fields are scattered through the pool and copied back)
    assert all(sim.persons.full(name) is before[name] for name in before)
    sim.step()  # the next month's work buffer is in it again
    assert sim._work is not None and sim._work_rows >= sim.households.n
    assert np.shares_memory(sim._work, pool)
    sim.run(until=26)  # and a run releases it before it builds the results
    assert sim._work is None and sim._pool is None


def test_move_sorts_through_a_spare_and_drops_rows():
    """PersonTable.move: rows to their new places, dropped rows gone, rows past k zeroed,
    whether the spare is given or made; a spare too small is refused."""
    sim = Sim("baseline", scale=20000, seed=3)
    p = sim.persons
    n = p.n
    rng = np.random.default_rng(1)
    keep = rng.random(n) < 0.8
    k = int(keep.sum())
    new_index = np.full(n, -1, dtype=np.int32)
    new_index[keep] = rng.permutation(k)
    expect = {name: np.zeros(n, dtype=getattr(p, name).dtype) for name in p.fields}
    for name in p.fields:
        expect[name][new_index[keep]] = getattr(p, name)[keep]
    snap = p.snapshot()
    p.move(new_index, k)
    for name in p.fields:
        np.testing.assert_array_equal(p.full(name)[:n], expect[name], err_msg=name)
    p.restore(snap, n)
    spare = np.zeros(4 * n + 64, dtype=np.uint8)
    spare = spare[-spare.ctypes.data % 64:]
    p.move(new_index, k, spare)
    for name in p.fields:
        np.testing.assert_array_equal(p.full(name)[:n], expect[name], err_msg=name)
    p.restore(snap, n)
    with pytest.raises(ValueError, match="spare"):
        p.move(new_index, k, spare[: n])


def test_move_copies_runs_when_the_table_is_mostly_in_order():
    """PersonTable.move as a reorder uses it: most rows keep their order (some dropped, the
    last ones placed among them), so it copies runs; the rows land as a row-by-row scatter
    puts them, and a shuffle falls back to that scatter."""
    from talbuk.state import _runs_of

    sim = Sim("baseline", scale=2000, seed=3)
    p = sim.persons
    n = p.n
    rng = np.random.default_rng(2)
    keep = rng.random(n) < 0.98
    key = np.arange(n, dtype=np.float64)
    tail = np.arange(n - n // 40, n)
    key[tail] = rng.random(tail.size) * n  # "newborns" placed among everyone
    order = np.flatnonzero(keep)[np.argsort(key[keep], kind="stable")]
    k = order.size
    new_index = np.full(n, -1, dtype=np.int32)
    new_index[order] = np.arange(k, dtype=np.int32)
    runs = _runs_of(new_index, n)
    assert runs is not None and 1 < runs[0].size < n // 8
    assert int(runs[2].sum()) == k  # the runs cover every kept row once
    expect = {name: np.zeros(n, dtype=getattr(p, name).dtype) for name in p.fields}
    for name in p.fields:
        expect[name][new_index[keep]] = getattr(p, name)[keep]
    p.move(new_index, k)
    for name in p.fields:
        np.testing.assert_array_equal(p.full(name)[:n], expect[name], err_msg=name)
    shuffled = np.full(n, -1, dtype=np.int32)
    shuffled[keep] = rng.permutation(k)
    assert _runs_of(shuffled, n) is None


def test_a_run_is_set_up_and_stepped_without_pandas():
    # pandas (with pyarrow) is about 70 MB that a whole-population run would hold through its
    # peak; the set-up (data files, the shipped posterior) and the months must not import it
    # (it comes when results are built)
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('pandas', 'pyarrow'):\n"
        "            raise ImportError('imported ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from talbuk.sim import Sim\n"
        "sim = Sim('baseline', scale=20000, seed=1)\n"
        "for _ in range(14):\n"
        "    sim.step()\n"
        "print(sim.scenario.posterior_info['point'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "weighted medoid" in out.stdout
