"""Speed of each phase of a month, this code against a reference commit, measured back to back.

The machine is shared and absolute times drift, so the two versions are timed alternately
(round after round, each in its own process) on the same state and the ratios are printed:
the minimum over rounds of each phase's seconds, old / new. Both versions must give
byte-identical results (see tests/test_kernels.py); this script only times them.

    python benchmarks/kernel_speedup.py                          # scale 30, months 300-311, 1 thread
    python benchmarks/kernel_speedup.py --scale 10 --threads 2 --rounds 2
    python benchmarks/kernel_speedup.py --ref 4abf9bb            # any commit with the same state layout

``--ref`` defaults to 4abf9bb, the commit before the kernel work (set by hand). The state at
month ``--start`` is made once by this code and cached under ``--cache``; both versions
continue from it for ``--months`` months.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PHASES = ("demography", "economy", "information", "attitudes", "decision", "journey",
          "left_behind")


def worker(scale: float, threads: int, state: str, months: int, clock: str) -> dict:
    import types

    import talbuk
    import talbuk.sim
    from talbuk.sim import Sim

    if clock == "cpu":  # time phases by this process's CPU time (robust to a loaded machine)
        talbuk.sim.time = types.SimpleNamespace(perf_counter=time.process_time)

    # load or compile every kernel first: 25 months of a tiny population, past the first
    # January reorder and the first defectors (with 2 months, as before, a reference whose
    # numba cache was empty compiled kernels inside the timed months: 572 s against 10)
    warm = Sim("baseline", scale=20000, seed=1, threads=threads)
    warm.run(until=25)
    sim = Sim("baseline", scale=scale, seed=1, threads=threads)
    with open(state, "rb") as f:
        sim.restore_arrays(pickle.load(f))
    for k in sim.phase_seconds:
        sim.phase_seconds[k] = 0.0
    now = time.process_time if clock == "cpu" else time.perf_counter
    t0 = now()
    sim.run(until=sim.t_index + months)
    wall = now() - t0
    return {"src": str(Path(talbuk.__file__).parent), "wall": wall,
            "phases": {k: sim.phase_seconds[k] for k in PHASES}}


def make_state(scale: float, start: int, path: Path) -> None:
    from talbuk.sim import Sim

    sim = Sim("baseline", scale=scale, seed=1, threads=1)
    sim.run(until=start)
    with open(path, "wb") as f:
        pickle.dump(sim.state_arrays(), f)


def ref_source(ref: str, cache: Path) -> Path:
    """The reference commit's ``src`` folder, extracted with ``git archive`` into
    ``cache/talbuk_ref_<commit>`` (kept, so that numba's cache of its kernels is reused by the
    next run). A name that moves (``HEAD``, a branch) is resolved to its commit first, so a
    folder kept from an earlier commit is never taken for it."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{ref}^{{commit}}"],
                         capture_output=True, text=True, check=True).stdout.strip()
    dest = Path(cache) / f"talbuk_ref_{sha[:12]}"
    if (dest / "src").exists():
        return dest / "src"
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "src"],
                             capture_output=True, check=True).stdout
    tar_path = dest / "ref.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(dest, filter="data")
    return dest / "src"


def run_worker(src: Path, args, state: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), NUMBA_NUM_THREADS=str(args.threads))
    r = subprocess.run([sys.executable, __file__, "--worker", str(args.scale), str(args.threads),
                        str(state), str(args.months), args.clock], env=env, capture_output=True,
                       text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", default="4abf9bb", help="reference commit (default: before the kernel work)")
    ap.add_argument("--scale", type=float, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--start", type=int, default=300, help="months simulated before timing")
    ap.add_argument("--months", type=int, default=12, help="months timed")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cache", default=tempfile.gettempdir())
    ap.add_argument("--out", default=str(HERE / "results_kernel_speedup.json"))
    ap.add_argument("--clock", choices=("cpu", "wall"), default=None,
                    help="cpu: process CPU time (default with 1 thread); wall: elapsed time")
    ap.add_argument("--worker", nargs=5, metavar=("SCALE", "THREADS", "STATE", "MONTHS", "CLOCK"))
    args = ap.parse_args()
    if args.worker:
        w = args.worker
        print(json.dumps(worker(float(w[0]), int(w[1]), w[2], int(w[3]), w[4])))
        return
    if args.clock is None:
        args.clock = "cpu" if args.threads == 1 else "wall"
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    state = Path(args.cache) / f"talbuk_state_s{args.scale:g}_m{args.start}.pkl"
    new_src = REPO / "src"
    if not state.exists():
        print(f"making the state at month {args.start} (scale {args.scale:g}) ...", flush=True)
        env = dict(os.environ, PYTHONPATH=str(new_src))
        subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                        "from kernel_speedup import make_state; from pathlib import Path; "
                        "make_state(float(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))",
                        str(HERE), str(args.scale), str(args.start), str(state)], env=env, check=True)
    ref_src = ref_source(args.ref, Path(args.cache))
    best = {"ref": {}, "new": {}}
    for r in range(args.rounds):
        # alternate which version goes first, so a drift in load favours neither
        order = (("ref", ref_src), ("new", new_src))
        for name, src in (order if r % 2 == 0 else order[::-1]):
            res = run_worker(src, args, state)
            for k, v in list(res["phases"].items()) + [("total", res["wall"])]:
                best[name][k] = min(best[name].get(k, float("inf")), v)
            print(f"round {r + 1} {name}: {res['wall']:.2f} s ({res['src']})", flush=True)
    print(f"\nscale {args.scale:g}, {args.threads} thread(s), months {args.start}-"
          f"{args.start + args.months - 1} from the start; min over {args.rounds} rounds, "
          f"{args.clock} ms per month")
    print(f"{'phase':<12} {'ref ' + args.ref:>14} {'new':>10} {'speed-up':>9}")
    rows = {}
    for k in (*PHASES, "total"):
        a = best["ref"][k] / args.months * 1e3
        b = best["new"][k] / args.months * 1e3
        rows[k] = {"ref_ms_per_month": a, "new_ms_per_month": b, "speedup": a / b if b > 0 else None}
        print(f"{k:<12} {a:14.2f} {b:10.2f} {a / b if b > 0 else float('nan'):9.2f}")
    Path(args.out).write_text(json.dumps({"ref": args.ref, "scale": args.scale,
                                          "threads": args.threads, "start": args.start,
                                          "months": args.months, "rounds": args.rounds,
                                          "clock": args.clock,
                                          "phases": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
