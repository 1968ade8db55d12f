"""Quick look at the fit of a parameter setting: a few seeds at a reduced scale, one table.

Used for the hand refits recorded in docs/journey.md ("Tuning"). It runs ``--seeds`` runs of
the baseline (or ``--scenario``) with the parameters of THETA set (names as in
``calibration/priors.toml``, lever points included), two processes at a time, one thread each,
and prints per year the record, the median over runs of ``arrivals_expected`` and of the
stock in China, the expected months abroad of the mean-field copy (what validation compares
with targets.csv), and the pooled sampled statistics (months abroad and kin share of the year's
arrivals: all runs' arrivals together, since at these scales a run has a few dozen), then one
line of headline figures (with the kin share of 2008-2011 and the women's share of 2006-2011
arrivals, pooled the same way):

* ``ARD``: mean over 2000-2019 of |median - record| / record (as ``talbuk validate``);
* ``MASE``: mean absolute error 2001-2019 over that of the persistence forecast;
* ``fall2012``: 1 - median(2012) / median(2011) (the record: 0.44);
* the range targets of ``data/targets.csv`` that concern the journey, and the out-of-sample
  ratios median / record for 2020-2025.

    python docs/validation/quick_fit.py                       # the baseline as shipped
    python docs/validation/quick_fit.py '{"journey.onward_rate": 0.05}' --scale 200 --seeds 4

This is a screening tool, not the validation: ``talbuk ensemble`` + ``talbuk validate`` give
the figures reported in docs/validation.md.
"""

from __future__ import annotations

import argparse
import json
import os
from multiprocessing import Pool

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from talbuk.calibration.params import apply_params  # noqa: E402
from talbuk.calibration.validate import read_data  # noqa: E402
from talbuk.scenario import load_scenario  # noqa: E402
from talbuk.sim import Sim  # noqa: E402

COLUMNS = ("arrivals_expected", "in_china_expected", "months_abroad_expected", "crossings",
           "settled_china", "repatriated", "decisions")


def _one(args) -> pd.DataFrame:
    theta, scale, seed, scenario = args
    sc = apply_params(load_scenario(scenario), theta)
    return Sim(sc, scale=scale, seed=seed, threads=1).run().annual.set_index("year")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("theta", nargs="?", default="{}", help="JSON object of parameter values")
    ap.add_argument("--scale", type=float, default=200.0)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--scenario", default="baseline")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args(argv)
    theta = json.loads(a.theta)
    jobs = [(theta, a.scale, s, a.scenario) for s in range(1, a.seeds + 1)]
    with Pool(a.jobs) as pool:
        runs = pool.map(_one, jobs)
    med = pd.concat([r[list(COLUMNS)] for r in runs]).groupby(level=0).median()
    tot = sum(r[["arrivals", "arrivals_with_kin", "arrivals_female", "months_abroad_total"]]
              for r in runs)
    med["months_abroad_pooled"] = tot["months_abroad_total"] / tot["arrivals"]
    med["kin_share_pooled"] = tot["arrivals_with_kin"] / tot["arrivals"]
    med["sampled_arrivals_pooled"] = tot["arrivals"] / a.scale
    med["record"] = read_data("arrivals_rok.csv").set_index("year")["arrivals"]
    pd.set_option("display.width", 250)
    print(med.loc[1994:2025].round(2).to_string())
    yrs = list(range(2000, 2020))
    e, o = med.loc[yrs, "arrivals_expected"].to_numpy(), med.loc[yrs, "record"].to_numpy()
    ae = med["arrivals_expected"]
    out = {
        "theta": theta, "scale": a.scale, "seeds": a.seeds, "scenario": a.scenario,
        "ard_2000_2019": float(np.mean(np.abs(e - o) / o)),
        "mase_2000_2019": float(np.mean(np.abs(e[1:] - o[1:])) / np.mean(np.abs(o[1:] - o[:-1]))),
        "fall_2012": float(1.0 - ae[2012] / ae[2011]),
        "peak_year": int(ae.loc[2000:2019].idxmax()),
        "in_china_2002": float(med.loc[2002, "in_china_expected"]),
        "in_china_2006": float(med.loc[2006, "in_china_expected"]),
        "months_abroad_2002": float(med.loc[2002, "months_abroad_pooled"]),
        "months_abroad_2009": float(med.loc[2009, "months_abroad_pooled"]),
        "months_abroad_expected_2002": float(med.loc[2002, "months_abroad_expected"]),
        "months_abroad_expected_2009": float(med.loc[2009, "months_abroad_expected"]),
        "kin_share_2010": float(med.loc[2010, "kin_share_pooled"]),
        "kin_share_2008_2011": float(tot.loc[2008:2011, "arrivals_with_kin"].sum()
                                     / tot.loc[2008:2011, "arrivals"].sum()),
        "women_share_2006_2011": float(tot.loc[2006:2011, "arrivals_female"].sum()
                                       / tot.loc[2006:2011, "arrivals"].sum()),
        "sampled_arrivals_2010": float(med.loc[2010, "sampled_arrivals_pooled"]),
        "out_of_sample_ratio": {y: float(ae[y] / med.loc[y, "record"]) for y in range(2020, 2026)},
    }
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
