"""The memory-bandwidth floor of a whole-population run, and how close talbuk comes to it.

1. Measures this machine's memory bandwidth: streaming read (sum), copy and triad
   (``a = b + s c``) over arrays of 0.5-1 GiB, with numpy (one thread) and with numba
   (``prange``, 1 and 2 threads), and a kernel of a person pass's shape (twelve float32
   streams: eight fields read, four read and written back, as the attitude kernel does);
   best of several repetitions. Bytes are counted as STREAM counts them (read 8 B, copy 16 B,
   triad 24 B, the twelve streams 64 B per element; no write-allocate traffic).
2. Counts the bytes the model must move per person-month: for each pass over the people (and
   over the households) of every module's kernels, the arrays it reads and writes, with the
   dtypes of ``talbuk.state`` (person and household tables) and of the modules' own arrays
   (listed in :data:`PASSES`, read off the kernels in ``src/talbuk/modules``). A field read
   costs its size; a field written costs its size again (the line is written back). Household
   fields are divided by the people per household; ``stage`` is read for every index
   (the dead included), the rest for people in North Korea. Two floors: *as structured*
   (every pass pays for what it touches, as the kernels do now) and *fused* (every field
   read once and written once a month: the best any single-pass design could do).
3. Hence the least possible time of the whole-population run (432 months, the person-months
   taken from a baseline run at scale 2000, in people) at the best measured bandwidth, and
   the ratio of talbuk's time to it: the measured scale-1 run (``--scale1-seconds``, else
   ``full_scale_seconds`` of the results file written to or of ``benchmarks/results.json``;
   none: no ratio) and, when the results file has one, talbuk's own speed at scale 10
   extrapolated to the whole population. The floor is also given at the twelve streams'
   bandwidth with 2 threads (the shape of a person pass).

Writes its figures into ``benchmarks/results.json`` (merged: other figures are kept).

    python benchmarks/bandwidth_floor.py            # about a minute, 2 GB of memory
    python benchmarks/bandwidth_floor.py --gib 0.25 # smaller arrays (less exact)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numba as nb
import numpy as np

HERE = Path(__file__).resolve().parent
SCRIPT = "benchmarks/bandwidth_floor.py"

# Module-owned arrays (not in talbuk.state), with their dtypes as allocated in the modules.
MODULE_DTYPES = {
    # demography: birth/split flags (uint8 per person)
    "demography.scratch": np.uint8,
    # economy (per household): modules/economy.py Economy._alloc and init
    "economy.need": np.float32, "economy.hbits": np.uint8, "economy.power": np.float32,
    "economy.n_workers": np.int16, "economy.event": np.uint8, "economy.hx": np.float64,
    "economy.entry_res": np.float32, "economy.shortfall": np.float32, "economy.hh_u": np.float32,
    # information (per household): hh_watch, hh_n (int32), hh_social (float32), hh_caught (uint8)
    "information.hh_watch": np.int32, "information.hh_n": np.int32,
    "information.hh_social": np.float32, "information.hh_caught": np.uint8,
    # attitudes (per household)
    "attitudes.prev_wealth": np.float32, "attitudes.loss": np.float32,
}

#: Every pass over people ("P") or households ("H") of one month: (module, kernel, entity,
#: fields read, fields written). Person fields are ``talbuk.state.PERSON_DTYPES``; household
#: fields ``HOUSEHOLD_DTYPES`` or :data:`MODULE_DTYPES`; a person pass that reads a household
#: field through ``household[i]`` is listed as a household read of that pass (people sit next
#: to their households in memory, so such reads stream). Journey and left-behind visit only
#: the people in the pipeline (O(pipeline)) and are left out. Fields read only on rare
#: branches (a death, a birth, an entry into trading) are left out too.
PASSES = (
    ("demography", "_demography_kernel", "P",
     ("stage", "birth_month", "sex", "province", "hunger", "resistance", "rng_id",
      "demography.scratch"), ("resistance",)),
    ("demography", "_count_nonempty", "H", ("members",), ()),
    ("economy", "_aggregate_par", "P",
     ("stage", "birth_month", "sex", "household", "songbun", "flags", "market_skill"), ()),
    ("economy", "_aggregate_par", "H", (),
     ("economy.need", "economy.hbits", "economy.power", "economy.n_workers")),
    ("economy", "_household_scan", "H",
     ("flags", "province", "cell", "members", "economy.hh_u", "economy.need", "economy.hbits"),
     ("economy.hx",)),
    ("economy", "_household_kernel", "H",
     ("flags", "province", "cell", "members", "savings_won", "savings_usd", "economy.need",
      "economy.hbits", "economy.power", "economy.n_workers", "economy.hx",
      "economy.entry_res", "economy.shortfall"),
     ("flags", "savings_won", "savings_usd", "state_income", "market_income",
      "economy.entry_res", "economy.shortfall", "economy.event")),
    ("economy", "_person_kernel", "P",
     ("stage", "birth_month", "sex", "household", "province", "flags", "hunger", "market_skill"),
     ("hunger", "market_skill")),
    ("economy", "_person_kernel", "H", ("economy.shortfall", "economy.event"), ()),
    ("information", "_scatter_households", "P",
     ("stage", "birth_month", "flags", "household", "media_exposure"), ()),
    ("information", "_scatter_households", "H", (), ("information.hh_watch", "information.hh_n")),
    ("information", "_household_cells", "H",
     ("cell", "flags", "kin_abroad", "members", "information.hh_watch", "information.hh_n"),
     ("information.hh_social", "information.hh_caught")),
    ("information", "_media_kernel", "P",
     ("stage", "birth_month", "province", "household", "flags", "media_exposure", "traits"),
     ("media_exposure", "flags")),
    ("information", "_media_kernel", "H", ("information.hh_social", "information.hh_caught"), ()),
    ("attitudes", "_household_loss", "H",
     ("savings_won", "savings_usd", "attitudes.prev_wealth", "attitudes.loss"),
     ("attitudes.prev_wealth", "attitudes.loss")),
    ("attitudes", "_attitude_kernel", "P",
     ("stage", "birth_month", "household", "songbun", "flags", "hunger", "market_skill",
      "media_exposure", "desire", "grievance", "legitimacy", "fear"),
     ("desire", "grievance", "legitimacy", "fear")),
    ("attitudes", "_attitude_kernel", "H", ("cell", "flags", "surveillance", "attitudes.loss"), ()),
    ("decision", "_decision_kernel", "P",
     ("stage", "birth_month", "household", "grievance", "desire", "fear", "traits", "sex"), ()),
    ("decision", "_decision_kernel", "H", ("flags", "kin_abroad", "members"), ()),
)


def _itemsize(field: str, entity: str) -> int:
    from talbuk.state import HOUSEHOLD_DTYPES, PERSON_DTYPES

    if field in MODULE_DTYPES:
        return np.dtype(MODULE_DTYPES[field]).itemsize
    table = PERSON_DTYPES if entity == "P" else HOUSEHOLD_DTYPES
    return table[field].itemsize


def bytes_per_person_month(persons_per_household: float, index_per_alive: float) -> dict:
    """Bytes moved per person-month, as the kernels are structured and fused into one pass."""
    by_module: dict[str, float] = {}
    person_read: set[str] = set()
    person_written: set[str] = set()
    hh_read: set[str] = set()
    hh_written: set[str] = set()
    for module, _kernel, entity, read, written in PASSES:
        per = 1.0 if entity == "P" else 1.0 / persons_per_household
        b = 0.0
        for f in read:
            w = index_per_alive if (entity == "P" and f == "stage") else 1.0
            b += _itemsize(f, entity) * per * w
        b += sum(_itemsize(f, entity) for f in written) * per
        by_module[module] = by_module.get(module, 0.0) + b
        (person_read if entity == "P" else hh_read).update(read)
        (person_written if entity == "P" else hh_written).update(written)
    fused = (sum(_itemsize(f, "P") for f in person_read)
             + (index_per_alive - 1.0) * _itemsize("stage", "P")
             + sum(_itemsize(f, "P") for f in person_written)
             + (sum(_itemsize(f, "H") for f in hh_read)
                + sum(_itemsize(f, "H") for f in hh_written)) / persons_per_household)
    return {"as_structured": sum(by_module.values()), "by_module": by_module, "fused": fused,
            "person_fields_read": sorted(person_read), "person_fields_written": sorted(person_written),
            "household_fields_read": sorted(hh_read), "household_fields_written": sorted(hh_written)}


# ---------------------------------------------------------------------- bandwidth kernels
@nb.njit(parallel=True, fastmath=True, cache=True)
def _nb_sum(a):  # fastmath: lets the reduction vectorise (the order of a sum does not matter here)
    s = 0.0
    for i in nb.prange(a.shape[0]):
        s += a[i]
    return s


@nb.njit(parallel=True, cache=True)
def _nb_copy(dst, src):
    for i in nb.prange(src.shape[0]):
        dst[i] = src[i]


@nb.njit(parallel=True, cache=True)
def _nb_triad(a, b, c, s):
    for i in nb.prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


@nb.njit(parallel=True, cache=True)
def _nb_kernel_shape(a0, a1, a2, a3, a4, a5, a6, a7, o0, o1, o2, o3):
    """A person pass's shape (the attitude kernel's): eight float32 fields read, four read,
    updated and written, twelve streams at once. Every written field is also read, as in
    the model, so no write is to a line not read first (no write-allocate traffic)."""
    for i in nb.prange(a0.shape[0]):
        s = a0[i] + a1[i] + a2[i] + a3[i] + a4[i] + a5[i] + a6[i] + a7[i]
        o0[i] = o0[i] * np.float32(0.5) + s
        o1[i] = o1[i] * np.float32(0.25) + s
        o2[i] = o2[i] * np.float32(0.125) + s
        o3[i] = o3[i] * np.float32(0.0625) + s


def _best(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_bandwidth(gib: float, reps: int) -> dict:
    """Best-of-``reps`` GB/s (1e9 bytes) of streaming kernels over ``gib`` GiB arrays."""
    n = int(gib * 2**30) // 8
    a = np.ones(n)
    b = np.empty(n)
    out: dict[str, float] = {}
    out["numpy_read"] = 8 * n / _best(lambda: a.sum(), reps) / 1e9
    out["numpy_copy"] = 16 * n / _best(lambda: np.copyto(b, a), reps) / 1e9
    for th in (1, 2):
        if th > nb.config.NUMBA_NUM_THREADS:
            continue
        nb.set_num_threads(th)
        _nb_sum(a[:1000])
        _nb_copy(b[:1000], a[:1000])
        out[f"numba_read_{th}t"] = 8 * n / _best(lambda: _nb_sum(a), reps) / 1e9
        out[f"numba_copy_{th}t"] = 16 * n / _best(lambda: _nb_copy(b, a), reps) / 1e9
    b = None  # free the copy target before the triad arrays
    m = n // 2
    x, y, z = np.empty(m), np.ones(m), np.ones(m)
    for th in (1, 2):
        if th > nb.config.NUMBA_NUM_THREADS:
            continue
        nb.set_num_threads(th)
        _nb_triad(x[:1000], y[:1000], z[:1000], 3.0)
        out[f"numba_triad_{th}t"] = 24 * m / _best(lambda: _nb_triad(x, y, z, 3.0), reps) / 1e9
    x = y = z = None
    # twelve float32 streams of the same total size (64 bytes an element: 12 read, 4 written)
    k = int(gib * 2**30) // 64
    arrs = [np.ones(k, dtype=np.float32) for _ in range(12)]
    for th in (1, 2):
        if th > nb.config.NUMBA_NUM_THREADS:
            continue
        nb.set_num_threads(th)
        _nb_kernel_shape(*(a[:1000] for a in arrs))
        out[f"numba_12_streams_{th}t"] = 64 * k / _best(lambda: _nb_kernel_shape(*arrs), reps) / 1e9
    return out


def model_counts(scale: float) -> dict:
    """People per household, index per person alive, and person-months of a whole run (people)."""
    from talbuk.sim import Sim

    sim = Sim("baseline", scale=scale, seed=1)
    n0 = sim.persons.n
    res = sim.run()
    pop = res.monthly["population"].to_numpy()
    hh = res.monthly["households"].to_numpy()
    n_end = sim.persons.n
    alive_mean_agents = float(pop.mean()) / scale
    return {
        "scale": scale, "months": int(pop.size),
        "person_months_people": float(pop.sum()),
        "people_alive_mean": float(pop.mean()),
        "people_initial": n0 * scale,
        "persons_per_household": float(pop.sum() / hh.sum()),
        # the kernels scan indices 0..n (the dead too, for their stage byte); n grows about
        # linearly from the initial population to everyone ever born
        "index_per_alive": ((n0 + n_end) / 2.0) / alive_mean_agents,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=1.0, help="size of the read/copy arrays, GiB")
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--out", default=str(HERE / "results.json"))
    ap.add_argument("--scale1-seconds", type=float, default=None,
                    help="a whole-population run's time to compare (default: full_scale_seconds "
                         "of the results file, or of benchmarks/results.json)")
    args = ap.parse_args()
    if args.scale1_seconds is not None and not args.scale1_seconds > 0:
        ap.error(f"--scale1-seconds: expected a positive number of seconds, got {args.scale1_seconds}")
    sys.path.insert(0, str(HERE))
    from full_model import merge_results

    command = "python " + SCRIPT + "".join(" " + a for a in sys.argv[1:])
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} on {os.cpu_count()} CPUs (other processes lower the figures)")
    bw = measure_bandwidth(args.gib, args.reps)
    for k, v in bw.items():
        print(f"bandwidth {k:20s} {v:6.1f} GB/s", flush=True)
    best_key = max(bw, key=bw.get)
    best = bw[best_key]
    counts = model_counts(2000.0)
    b = bytes_per_person_month(counts["persons_per_household"], counts["index_per_alive"])
    pm = counts["person_months_people"]
    floor_structured = b["as_structured"] * pm / (best * 1e9)
    floor_fused = b["fused"] * pm / (best * 1e9)
    print(f"people per household {counts['persons_per_household']:.2f}; index per person alive "
          f"{counts['index_per_alive']:.3f}; person-months of a whole run {pm:.4g}")
    print(f"bytes per person-month: {b['as_structured']:.1f} as structured "
          + ", ".join(f"{k} {v:.1f}" for k, v in b["by_module"].items())
          + f"; {b['fused']:.1f} fused into one pass")
    from talbuk.results import cpu_description

    out_path = Path(args.out)
    old = json.loads(out_path.read_text()) if out_path.exists() else {}
    if args.scale1_seconds is not None:
        scale1_s, scale1_src = args.scale1_seconds, "--scale1-seconds"
    else:
        scale1_s = scale1_src = None
        default = HERE / "results.json"
        for src, data in ((out_path, old), (default, json.loads(default.read_text())
                                             if default.exists() else {})):
            full = (data.get("figures") or {}).get("full_scale_seconds")
            if full:
                scale1_s, scale1_src = float(full["value"]), f"{src.name}: {full['command']}"
                break
    streams = bw.get("numba_12_streams_2t")
    floor_streams = b["as_structured"] * pm / (streams * 1e9) if streams else None
    print(f"least time of the whole-population run at {best:.1f} GB/s ({best_key}): "
          f"{floor_structured:.0f} s as structured, {floor_fused:.0f} s fused"
          + (f"; at the twelve streams' {streams:.1f} GB/s (2 threads), {floor_streams:.0f} s as "
             "structured" if streams and best_key != "numba_12_streams_2t" else ""))
    if scale1_s:
        print(f"talbuk's whole-population run, {scale1_s:.0f} s ({scale1_src}), is "
              f"{scale1_s / floor_structured:.1f} and {scale1_s / floor_fused:.1f} times those")
    else:
        print("no whole-population time to compare (--scale1-seconds)")
    section = {
        "measured_at": stamp, "command": command, "array_gib": args.gib, "reps": args.reps,
        "load_average_at_start": load, "cpus": os.cpu_count(), "cpu": cpu_description(),
        "bandwidth_gb_per_s": bw, "best_bandwidth_gb_per_s": best, "best_kernel": best_key,
        "model_counts": counts, "bytes_per_person_month": b,
        "floor_seconds_as_structured": floor_structured, "floor_seconds_fused": floor_fused,
        "floor_seconds_as_structured_at_12_streams_2t": floor_streams,
        "scale1_seconds": scale1_s, "scale1_source": scale1_src,
        "ratio_to_floor_as_structured": scale1_s / floor_structured if scale1_s else None,
        "ratio_to_floor_fused": scale1_s / floor_fused if scale1_s else None,
    }
    agent = (old.get("figures") or {}).get("agent_months_per_second")
    if agent:
        extrapolated = pm / agent["value"]
        section["scale10_extrapolated_seconds"] = extrapolated
        section["scale10_extrapolated_from"] = agent
        section["ratio_to_floor_fused_scale10_extrapolated"] = extrapolated / floor_fused
        print(f"talbuk's speed at scale {agent['scale']:g} ({agent['value'] / 1e6:.2f} M agent-months/s) "
              f"extrapolated to the whole population: {extrapolated:.0f} s, "
              f"{extrapolated / floor_fused:.0f} times the fused floor")

    def figure(value, **where) -> dict:
        return {"value": value, "measured_at": stamp, "command": command, "script": SCRIPT, **where}

    figures = {
        "memory_bandwidth_gb_per_s": figure(best, kernel=best_key),
        "bytes_per_person_month_fused": figure(b["fused"]),
        "bytes_per_person_month_as_structured": figure(b["as_structured"]),
        "bandwidth_floor_seconds_scale1": figure(floor_fused, note="fused single pass at the best bandwidth"),
    }
    if scale1_s:
        figures["scale1_over_bandwidth_floor"] = figure(scale1_s / floor_fused, source=scale1_src)
    merge_results(out_path, figures, {"bandwidth_floor": section})
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
