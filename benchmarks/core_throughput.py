"""Throughput and memory of a whole baseline run, 1990-2025.

Prints, for each scale and thread count, person-months per second (people alive in North
Korea times months, divided by the run's wall time, set-up excluded), agent-months per second,
state bytes per person and peak resident memory per person; writes them to
``benchmarks/results_core.json``. Each configuration runs in its own process, so its peak
memory is its own. Speed is also given as a ratio to a plain-numpy version of the
demography step run in the same script on the same population (the machine is shared and
absolute times drift; the ratio does not).

    python benchmarks/core_throughput.py                 # scale 10 and 1, 1 and 2 threads
    python benchmarks/core_throughput.py --scales 100 --threads 2
    python benchmarks/core_throughput.py --modules demography --out benchmarks/results_demography.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(scale: float, threads: int, modules: str) -> dict:
    from talbuk.sim import Sim

    t0 = time.perf_counter()
    sim = Sim("baseline", scale=scale, seed=1, threads=threads,
              modules=None if modules == "all" else tuple(modules.split(",")))
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = sim.run()
    wall = time.perf_counter() - t0
    person_months = float(res.monthly["population"].sum())  # people x months
    agent_months = person_months / scale
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    people0 = sim.initial_persons * scale
    return {
        "scale": scale, "threads": threads, "setup_seconds": round(setup, 2),
        "run_seconds": round(wall, 2),
        "person_months_per_second": person_months / wall,
        "agent_months_per_second": agent_months / wall,
        "state_bytes_per_person": (sim.persons.nbytes() + sim.households.nbytes()) / sim.initial_persons,
        "peak_rss_bytes_per_agent": peak / sim.initial_persons,
        "agents_initial": sim.initial_persons, "people_initial": people0, "modules": modules,
        "phase_seconds": {k: round(v, 2) for k, v in sim.phase_seconds.items() if v > 0},
    }


def numpy_reference(scale: float, months: int = 24) -> float:
    """Agent-months per second of the demography step written in plain vectorised numpy."""
    import numpy as np

    from talbuk.sim import Sim

    sim = Sim("baseline", scale=scale, seed=1)
    demo = sim.modules[0]
    p = sim.persons
    stage, bm, sex, res = p.stage.copy(), p.birth_month.astype(np.int64), p.sex, p.resistance.copy()
    gen = np.random.default_rng(1)
    t0 = time.perf_counter()
    for k in range(months):
        t = sim.start_month + k
        alive = stage != 8
        age = np.minimum((t - bm) // 12, 120)
        h = demo.monthly_hazard[0][sex, age] * (1 + demo.rr[age] * p.hunger ** 2)
        res = np.where(alive, res - h, res)
        died = alive & (res <= 0)
        stage[died] = 8
        fertile = alive & (sex == 1) & (demo.fertility_shape[age] > 0)
        _births = fertile & (gen.random(fertile.size) < demo.fertility_shape[age] * 0.01)
    return p.n * months / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="10,1")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--modules", default="all", help="'all' or a comma list, e.g. 'demography' for the core")
    ap.add_argument("--worker", nargs=3, metavar=("SCALE", "THREADS", "MODULES"))
    ap.add_argument("--out", default=str(HERE / "results_core.json"))
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(float(args.worker[0]), int(args.worker[1]), args.worker[2])))
        return
    rows = []
    for scale in (float(s) for s in args.scales.split(",")):
        for threads in (int(t) for t in args.threads.split(",")):
            r = subprocess.run([sys.executable, __file__, "--worker", str(scale), str(threads), args.modules],
                               capture_output=True, text=True, check=True)
            row = json.loads(r.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"[{args.modules}] scale {scale:>5g} threads {threads}: run {row['run_seconds']:7.1f} s  "
                  f"{row['person_months_per_second'] / 1e6:8.0f} M person-months/s  "
                  f"{row['agent_months_per_second'] / 1e6:6.1f} M agent-months/s  "
                  f"state {row['state_bytes_per_person']:5.1f} B/agent  "
                  f"peak RSS {row['peak_rss_bytes_per_agent']:6.1f} B/agent", flush=True)
            print("   phases (s):", row["phase_seconds"], flush=True)
    ref_scale = min(max(float(s) for s in args.scales.split(",")), 10.0)
    ref = numpy_reference(ref_scale)
    ours = [r for r in rows if r["scale"] == ref_scale and r["threads"] == max(x["threads"] for x in rows)]
    summary = {"runs": rows, "numpy_demography_reference_agent_months_per_second": ref}
    if ours:
        summary["speed_ratio_full_model_vs_numpy_demography_only"] = ours[0]["agent_months_per_second"] / ref
        print(f"numpy reference (demography step only) at scale {ref_scale:g}: {ref / 1e6:.1f} M agent-months/s; "
              f"full talbuk model / that reference = {summary['speed_ratio_full_model_vs_numpy_demography_only']:.2f}")
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
