"""Time every numba kernel of the modules at one state of a run, per agent-month.

Runs the baseline to month ``UNTIL`` (index from the start), then repeats each module's
``step`` ``--reps`` times at that state, timing each module and each kernel it calls (every
numba function of the module files is wrapped by a timer). Prints milliseconds per month and
nanoseconds per agent-month (agents alive in North Korea). A profile, not a benchmark: the
wrappers add a few microseconds a call, and the repeated months are not the run's own.

    python benchmarks/kernel_profile.py --scale 30 --until 300 --threads 1
"""

from __future__ import annotations

import argparse
import collections
import os
import time


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=30.0)
    ap.add_argument("--until", type=int, default=300, help="months simulated before timing")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=6)
    a = ap.parse_args(argv)
    os.environ["NUMBA_NUM_THREADS"] = str(a.threads)

    import talbuk.modules.attitudes as att
    import talbuk.modules.decision as dec
    import talbuk.modules.demography as dem
    import talbuk.modules.economy as eco
    import talbuk.modules.information as inf
    from talbuk.sim import Sim
    from talbuk.state import in_country_mask

    sim = Sim("baseline", scale=a.scale, seed=1, threads=a.threads)
    sim.run(until=a.until)
    kernel_s: dict[str, float] = collections.defaultdict(float)

    def wrap(mod, name):
        f = getattr(mod, name)
        # numba dispatchers defined in this module (not helpers imported into it, which the
        # kernels compiled later would otherwise see as Python functions)
        if not hasattr(f, "py_func") or f.py_func.__module__ != mod.__name__:
            return

        def timed(*args, **kw):
            t0 = time.perf_counter()
            r = f(*args, **kw)
            kernel_s[f"{mod.__name__.rsplit('.', 1)[-1]}.{name}"] += time.perf_counter() - t0
            return r
        setattr(mod, name, timed)

    for mod in (eco, inf, att, dec, dem):
        for name in list(vars(mod)):
            wrap(mod, name)
    module_s: dict[str, float] = collections.defaultdict(float)
    for _ in range(a.reps):
        for m in sim.modules:
            t0 = time.perf_counter()
            m.step(sim)
            module_s[m.name] += time.perf_counter() - t0
    alive = int(in_country_mask(sim.persons.stage[: sim.persons.n]).sum())
    print(f"scale {a.scale:g}, month {a.until}, {a.threads} thread(s): {sim.persons.n} persons, "
          f"{alive} alive in North Korea, {sim.households.n} households")
    for k, v in sorted(module_s.items(), key=lambda x: -x[1]):
        print(f"module {k:14s} {1e3 * v / a.reps:8.2f} ms/month {1e9 * v / a.reps / alive:7.1f} ns/agent-month")
    for k, v in sorted(kernel_s.items(), key=lambda x: -x[1]):
        if v / a.reps > 1e-4:
            print(f"  {k:40s} {1e3 * v / a.reps:8.2f} ms/month {1e9 * v / a.reps / alive:7.1f} ns/agent-month")


if __name__ == "__main__":
    main()
