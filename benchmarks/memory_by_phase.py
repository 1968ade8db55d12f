"""Peak resident memory by phase of a baseline run (Linux).

A sampler thread reads ``/proc/self/statm`` every 20 ms and keeps, for each phase, the highest
resident size seen while it ran and the month. Each module's step, the January reorder and
the building of the results are phases; "between" is the rest of a month (the member counts,
the checks).

    python benchmarks/memory_by_phase.py SCALE [--months N] [--threads T]

Prints one line per phase, highest first, in MB and in bytes per agent of January 1990 above
the resident size before the ``Sim`` was built (the interpreter, numpy, numba and talbuk).
Session 22, whole population (scale 1, 2 threads): the peak, 2,449 MB, is in the last month's
steps; building the results (pandas and pyarrow imported then) stayed below it (2,400 MB).
Session 24, on a machine of another kind: 2,486 MB, then 2,458 MB once the demography's event
flags lay in the Sim's working memory (docs/performance.md).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from full_model import _current_rss  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, tuple[int, int]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scale", type=float)
    ap.add_argument("--months", type=int, default=None, help="months to run (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)

    from talbuk.sim import Sim

    cur = {"phase": "setup", "t": -1}
    peaks: dict[str, tuple[int, int]] = {}
    done = threading.Event()

    def sampler() -> None:
        while not done.is_set():
            r = _current_rss()
            k = cur["phase"]
            if r > peaks.get(k, (0, 0))[0]:
                peaks[k] = (r, cur["t"])
            time.sleep(0.02)

    base = _current_rss()
    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    sim = Sim("baseline", scale=a.scale, seed=1, threads=a.threads)
    for m in sim.modules:
        def wrap(s, _f=m.step, _n=m.name):
            cur["phase"], cur["t"] = _n, s.t_index
            _f(s)
            cur["phase"] = "between"
        m.step = wrap
    reorder = sim.reorder

    def traced_reorder(*args, **kw):
        cur["phase"], cur["t"] = "reorder", sim.t_index
        out = reorder(*args, **kw)
        cur["phase"] = "between"
        return out

    sim.reorder = traced_reorder
    n0 = sim.persons.n
    cur["phase"] = "between"
    stop = sim.n_months if a.months is None else min(a.months, sim.n_months)
    while sim.t_index < stop:
        sim.step()
    cur["phase"] = "results"
    sim.run(until=stop)  # no month left: builds the results
    time.sleep(0.1)
    done.set()
    th.join()
    print(f"scale {a.scale:g}, {a.threads} thread(s): {n0} agents in January 1990; "
          f"{base / 1e6:.0f} MB resident before the Sim was built")
    for k, (r, t) in sorted(peaks.items(), key=lambda x: -x[1][0]):
        print(f"{k:12s} peak {r / 1e6:8.1f} MB ({(r - base) / n0:6.1f} B per agent above that), "
              f"month {t}")
    return peaks


if __name__ == "__main__":
    main()
