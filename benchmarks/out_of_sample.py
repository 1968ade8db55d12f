"""Out-of-sample test of a calibration (DESIGN section 7): fit to 1995-2019, predict 2020-2025.

    python benchmarks/out_of_sample.py [--posterior PATH] [--draws 8] [--scale 1000] [--seed 1]

The posterior (default: the shipped one, made by ``talbuk calibrate --years 1995-2019``) saw
no arrivals after 2019; the baseline's 2020-2025 comes from the scenario's events alone
(border closure, COVID). For each year 2020-2025 this prints the posterior-predictive median
of ``arrivals_expected``, its ratio to the record and whether it is within a factor of 2, and
writes ``benchmarks/out_of_sample.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from talbuk.calibration.params import default_posterior_path, load_posterior
from talbuk.calibration.summaries import ard, fit_table, predictive


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--posterior", type=Path, default=default_posterior_path())
    ap.add_argument("--draws", type=int, default=8)
    ap.add_argument("--scale", type=float, default=1000.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("out_of_sample.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    table = fit_table(predictive(load_posterior(args.posterior), "baseline", draws=args.draws,
                                 scale=args.scale, seed=args.seed))
    oos = table[table["year"] >= 2020]
    print("year  record  median  ratio  within x2")
    for _, r in oos.iterrows():
        print(f"{int(r['year'])}  {r['record']:6.0f}  {r['median']:6.0f}  {r['ratio']:5.2f}  {bool(r['within_factor_2'])}")
    res = {"posterior": str(args.posterior), "draws": args.draws, "scale": args.scale, "seed": args.seed,
           "ard_2020_2025": ard(table, 2020, 2025), "within_factor_2": int(oos["within_factor_2"].sum()),
           "years": oos.to_dict(orient="records"), "wall_seconds": round(time.perf_counter() - t0, 1)}
    args.out.write_text(json.dumps(res, indent=2, default=float) + "\n")
    print(f"{res['within_factor_2']}/6 years within a factor of 2; ARD 2020-2025 {res['ard_2020_2025']:.2f}")


if __name__ == "__main__":
    main()
