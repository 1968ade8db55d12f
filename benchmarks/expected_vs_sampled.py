"""Low-noise expected arrivals against sampled arrivals (DESIGN section 2).

Runs the baseline once at a coarse scale (default 100 people per agent) and records its
``arrivals_expected`` (the deterministic mean-field copy of the journey pipeline), then runs it
at a fine scale (default 10) over several seeds and averages the sampled ``arrivals``. Prints
the ratio expected / sampled-mean for each year and writes them to
``benchmarks/expected_vs_sampled.json``. The target is agreement within 10% a year over
2000-2019.

    python benchmarks/expected_vs_sampled.py --coarse 100 --fine 10 --seeds 1 2 3
    # the sampled side from whole-population runs already made (talbuk run --scale 1, or
    # benchmarks/full_model.py --full-only --annual-out DIR), the expected side as the mean of
    # several coarse seeds:
    python benchmarks/expected_vs_sampled.py --fine-annual runs/full/annual.parquet --coarse-seeds 1 2 3 4

A single fine run is one history: at scale 1 its sampled arrivals have a Poisson noise of
2-3% a year, but chain migration makes whole histories differ by more than that, which the
coarse seeds' spread (printed) shows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from talbuk.sim import Sim


def annual(scale: float, seed: int):
    t0 = time.perf_counter()
    res = Sim("baseline", scale=scale, seed=seed).run()
    a = res.annual.set_index("year")
    print(f"  scale {scale:g} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    return a["arrivals"], a["arrivals_expected"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coarse", type=float, default=100.0, help="scale of the expected-arrivals run")
    ap.add_argument("--fine", type=float, default=10.0, help="scale of the sampled runs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds of the fine runs")
    ap.add_argument("--coarse-seeds", type=int, nargs="+", default=None,
                    help="seeds of the coarse runs (expected = their mean; default: the first fine seed)")
    ap.add_argument("--fine-annual", type=Path, nargs="+", default=None,
                    help="annual.parquet files of fine runs already made (replaces --fine/--seeds)")
    ap.add_argument("--first", type=int, default=2000)
    ap.add_argument("--last", type=int, default=2019)
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"))
    args = ap.parse_args()
    coarse_seeds = args.coarse_seeds or args.seeds[:1]
    print(f"expected arrivals at scale {args.coarse:g} (seeds {coarse_seeds})")
    coarse = [annual(args.coarse, s)[1] for s in coarse_seeds]
    expected = sum(coarse) / len(coarse)
    sampled, fine_expected = [], []
    if args.fine_annual:
        print(f"sampled arrivals from {[str(p) for p in args.fine_annual]}")
        for path in args.fine_annual:
            a = pd.read_parquet(path).set_index("year")
            sampled.append(a["arrivals"])
            fine_expected.append(a["arrivals_expected"])
        fine_desc = [str(p) for p in args.fine_annual]
    else:
        print(f"sampled arrivals at scale {args.fine:g}, seeds {args.seeds}")
        for seed in args.seeds:
            s, e = annual(args.fine, seed)
            sampled.append(s)
            fine_expected.append(e)
        fine_desc = args.seeds
    years = [y for y in range(args.first, args.last + 1) if y in expected.index]
    rows = []
    print(f"{'year':>4} {'expected':>10} {'sampled':>10} {'ratio':>7} {'sd_mean':>8}")
    for y in years:
        vals = np.array([s[y] for s in sampled], dtype=float)
        mean = float(vals.mean())
        sd_mean = float(vals.std(ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else float("nan")
        ratio = float(expected[y] / mean) if mean > 0 else float("nan")
        spread = [float(c[y]) for c in coarse]
        rows.append({"year": y, "expected_coarse": float(expected[y]), "sampled_fine_mean": mean,
                     "expected_coarse_by_seed": spread,
                     "sampled_fine_sd_of_mean": sd_mean, "ratio": ratio,
                     "expected_fine_mean": float(np.mean([e[y] for e in fine_expected]))})
        print(f"{y:>4} {expected[y]:>10.0f} {mean:>10.0f} {ratio:>7.3f} {sd_mean:>8.0f}")
    ratios = np.array([r["ratio"] for r in rows])
    within = int(np.sum(np.abs(ratios - 1) <= args.tolerance))
    total_ratio = sum(r["expected_coarse"] for r in rows) / sum(r["sampled_fine_mean"] for r in rows)
    print(f"years within {args.tolerance:.0%}: {within}/{len(rows)}; ratio of totals {total_ratio:.3f}")
    args.out.write_text(json.dumps({
        "coarse_scale": args.coarse, "coarse_seeds": coarse_seeds,
        "fine_scale": None if args.fine_annual else args.fine, "fine_runs": fine_desc,
        "tolerance": args.tolerance, "years_within": within, "years": len(rows),
        "ratio_of_totals": total_ratio, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
