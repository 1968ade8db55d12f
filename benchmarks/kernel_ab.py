"""One kernel, this code against a reference commit, on the same arguments in one process.

The baseline is run to month ``--until`` and the arguments of the kernel's next call are
captured; the reference commit's version of the same module is loaded from its source
(``git archive``, kept under ``--cache``) beside this one, and the two kernels are called
alternately ``--reps`` times each on fresh copies of those arguments. Calls interleaved in one
process see the same machine, so the ratio survives a shared machine's drift (on session 21's
machine, whole runs one after the other differed by 30-40% from minute to minute).

    python benchmarks/kernel_ab.py economy _household_kernel --scale 20 --threads 2
    python benchmarks/kernel_ab.py demography _demography_kernel --ref 78a71a8 --reps 12

The two versions may differ in one argument only: a parameter named ``groups`` (the chunk
groups of session 21), dropped for a reference kernel that does not take it. Results are
not compared here (tests/test_kernels.py does that); prints the minimum and median
milliseconds a call of each and the ratio of the minima, reference / this code.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import inspect
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from kernel_speedup import ref_source  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("module", help="module of talbuk.modules, e.g. economy")
    ap.add_argument("kernel", help="its kernel, e.g. _household_kernel")
    ap.add_argument("--ref", default="78a71a8", help="reference commit (default: before session 21)")
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--until", type=int, default=24, help="months simulated before the capture")
    ap.add_argument("--reps", type=int, default=12, help="calls of each version")
    ap.add_argument("--cache", default=tempfile.gettempdir())
    a = ap.parse_args(argv)

    from talbuk.sim import Sim

    mod = importlib.import_module(f"talbuk.modules.{a.module}")
    new = getattr(mod, a.kernel, None)
    if new is None or not hasattr(new, "py_func"):
        raise SystemExit(f"kernel_ab: talbuk.modules.{a.module} has no numba kernel {a.kernel!r}")
    src = ref_source(a.ref, Path(a.cache))
    path = src / "talbuk" / "modules" / f"{a.module}.py"
    spec = importlib.util.spec_from_file_location(f"talbuk_ref_{a.module}", path)
    ref_mod = importlib.util.module_from_spec(spec)
    # registered by its name: numba's cached kernels refer to their module by name, and one not
    # in sys.modules is recorded as '<dynamic>', which the next run cannot load from the cache
    sys.modules[spec.name] = ref_mod
    spec.loader.exec_module(ref_mod)  # its imports of talbuk.* resolve to this code's helpers
    old = getattr(ref_mod, a.kernel)

    sim = Sim("baseline", scale=a.scale, seed=1, threads=a.threads)
    sim.run(until=a.until)
    got: dict = {}

    def capture(*args):
        got.setdefault("args", copy.deepcopy(args))
        return new(*args)

    setattr(mod, a.kernel, capture)
    try:
        sim.step()
    finally:
        setattr(mod, a.kernel, new)
    args_new = got["args"]
    p_new = list(inspect.signature(new.py_func).parameters)
    p_old = list(inspect.signature(old.py_func).parameters)
    args_old = args_new
    if "groups" in p_new and "groups" not in p_old:
        g = p_new.index("groups")
        args_old = args_new[:g] + args_new[g + 1:]
    if len(args_old) != len(p_old):
        raise SystemExit(f"kernel_ab: {a.kernel} takes {len(p_old)} arguments at {a.ref} and "
                         f"{len(p_new)} here; only a `groups` parameter may differ")
    new(*copy.deepcopy(args_new))  # load or compile both before timing
    old(*copy.deepcopy(args_old))
    times: dict[str, list[float]] = {"ref": [], "new": []}
    for r in range(a.reps):
        order = (("new", new, args_new), ("ref", old, args_old))
        for name, f, args in (order if r % 2 == 0 else order[::-1]):
            fresh = copy.deepcopy(args)
            t0 = time.perf_counter()
            f(*fresh)
            times[name].append(time.perf_counter() - t0)
    out = {k: {"min_ms": 1e3 * min(v), "median_ms": 1e3 * statistics.median(v)}
           for k, v in times.items()}
    out["ratio_of_minima"] = out["ref"]["min_ms"] / out["new"]["min_ms"]
    print(f"{a.module}.{a.kernel}, scale {a.scale:g}, {a.threads} thread(s), month {a.until + 1}, "
          f"{a.reps} calls each: ref {a.ref} min {out['ref']['min_ms']:.2f} median "
          f"{out['ref']['median_ms']:.2f} ms | this code min {out['new']['min_ms']:.2f} median "
          f"{out['new']['median_ms']:.2f} ms | ref/new {out['ratio_of_minima']:.3f}")
    return out


if __name__ == "__main__":
    main()
