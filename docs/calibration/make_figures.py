"""Figures and tables of docs/calibration.md, from a calibration's outputs.

    python docs/calibration/make_figures.py [--posterior src/talbuk/calibration/posterior.csv]
        [--summary runs/calibration/abc.calibration.json] [--draws 16] [--scale 1000] [--seed 1]

Runs ``--draws`` posterior-predictive simulations of the baseline (parameter vectors drawn from
the posterior by weight, simulation seeds SEED.. SEED+DRAWS-1), then writes

* ``docs/calibration/arrivals_posterior.png``: arrivals per year, predictive median and 5-95%
  band against the record, with the out-of-sample years 2020-2025 shaded;
* ``docs/calibration/fit.json``: per-year median, band, record and ratio; ARD 2000-2019; the
  out-of-sample years; the calibration summary (epsilons, acceptance rates, rule probabilities);
* ``docs/calibration/priors_table.md``: the priors table, generated from priors.toml.

Everything is deterministic in ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from talbuk.calibration.params import default_posterior_path, load_posterior, load_priors  # noqa: E402
from talbuk.calibration.summaries import ard, fit_table, predictive  # noqa: E402

HERE = Path(__file__).resolve().parent


def priors_table() -> str:
    lines = ["| parameter | distribution | low | high | source |", "|---|---|---|---|---|"]
    for p in load_priors():
        lines.append(f"| `{p.name}` | {p.distribution} | {p.low:g} | {p.high:g} | {p.source} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--posterior", type=Path, default=default_posterior_path())
    ap.add_argument("--summary", type=Path, default=Path("runs/calibration/abc.calibration.json"))
    ap.add_argument("--draws", type=int, default=16)
    ap.add_argument("--scale", type=float, default=1000.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()

    (args.out / "priors_table.md").write_text(priors_table())
    post = load_posterior(args.posterior)
    t0 = time.perf_counter()
    pred = predictive(post, "baseline", draws=args.draws, scale=args.scale, seed=args.seed,
                      progress=lambda i: print(f"draw {i + 1}/{args.draws} ({time.perf_counter() - t0:.0f} s)",
                                               flush=True))
    table = fit_table(pred)

    fig, ax = plt.subplots(figsize=(9, 4.8))
    ax.axvspan(2019.5, 2025.5, color="0.92", label="out of sample (not in the distance)")
    ax.fill_between(table["year"], table["p05"], table["p95"], color="tab:blue", alpha=0.25,
                    label=f"posterior predictive 5-95% ({args.draws} draws)")
    ax.plot(table["year"], table["median"], color="tab:blue", label="posterior predictive median")
    ax.plot(table["year"], table["record"], "o", color="black", ms=4, label="record")
    ax.set_yscale("log")
    ax.set_xlabel("year of arrival")
    ax.set_ylabel("arrivals in South Korea (people per year, log scale)")
    ax.set_title(f"talbuk baseline with the calibrated posterior (arrivals_expected, scale {args.scale:g})")
    ax.legend(loc="lower center", fontsize=8)
    fig.text(0.01, 0.01, "Record: src/talbuk/data/arrivals_rok.csv (Ministry of Unification; "
             "Office of the Prime Minister 2000; Good Friends). Model: docs/calibration.md.",
             fontsize=7, color="0.3")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(args.out / "arrivals_posterior.png", dpi=120)

    summary = json.loads(args.summary.read_text()) if args.summary.exists() else {}
    oos = table[table["year"] >= 2020]
    out = {
        "posterior": str(args.posterior), "draws": args.draws, "scale": args.scale, "seed": args.seed,
        "ard_2000_2019": ard(table, 2000, 2019),
        "ard_1995_2019": ard(table, 1995, 2019),
        "ard_2020_2025": ard(table, 2020, 2025),
        "out_of_sample_within_factor_2": int(oos["within_factor_2"].sum()),
        "years": table.to_dict(orient="records"),
        "calibration": {k: summary.get(k) for k in ("scale", "population", "seed", "epsilons",
                                                     "acceptance_rates", "rule_probabilities",
                                                     "wall_seconds", "posterior_mean")},
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    (args.out / "fit.json").write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(f"ARD 2000-2019 {out['ard_2000_2019']:.3f}; 2020-2025 within a factor of 2: "
          f"{out['out_of_sample_within_factor_2']}/6")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))


if __name__ == "__main__":
    main()
