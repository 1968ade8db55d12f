"""Scenario comparisons with common random numbers, and the attribution of motives.

``compare(base, others, runs=N)`` runs each scenario with seeds ``seed .. seed+N-1``. A
scenario and the base run with the same seed share every random draw that their histories
share (``rng.py``: draws are keyed by seed, stream, month and person), so the paired
difference ``other - base`` is free of most sampling noise and its spread over seeds is a
fair band. Bands are the 5th and 95th percentiles over runs (a 90% band); with few runs they
are rough, and the number of runs is written beside them.

**Motives.** Every decision records its push (hunger, lost savings, punishment, songbun,
illegitimacy) and pull (foreign media, kin abroad, the market habit) components
(docs/information_attitudes_decision.md). An arrival is *mainly pulled* when its pull exceeds
its push. :func:`motives` gives, by year of arrival and by generation, the share of arrivals
mainly pulled, in people; generations are split at the economy module's
``market_gen_birth_year`` (1985: ages 10-20 after the famine).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from talbuk.results import Results, atomic_folder, commit_folder, file_sha256
from talbuk.scenario import Scenario, load_scenario

#: Annual outputs compared by default (flows and stocks, in people or shares).
KEY_OUTPUTS = ("arrivals", "arrivals_expected", "decisions", "crossings", "in_china",
               "excess_deaths", "population", "trading_share", "media_ever_share")
#: Periods over which flows are summed for the total difference.
PERIODS = ((1990, 2025), (2000, 2019))
FLOWS = {"arrivals", "arrivals_expected", "decisions", "crossings", "excess_deaths"}


def motives(results: Results, market_gen_birth_year: int = 1985) -> pd.DataFrame:
    """Arrivals by year of arrival and generation, and the share mainly pulled (in people)."""
    d = results.tables.get("defectors")
    cols = ["year", "generation", "arrivals", "pulled", "pulled_share"]
    if d is None or d.empty:
        return pd.DataFrame(columns=cols)
    arrived = d[d["arrived"].notna() & (d["arrived"].astype(str) != "")]
    if arrived.empty:
        return pd.DataFrame(columns=cols)
    year = arrived["arrived"].astype(str).str.slice(0, 4).astype(int)
    gen = np.where(arrived["birth_year"] >= market_gen_birth_year, "market generation",
                   "grew up before the famine")
    frame = pd.DataFrame({"year": year.to_numpy(), "generation": gen,
                          "arrivals": arrived["weight"].to_numpy(),
                          "pulled": arrived["weight"].to_numpy() * (arrived["pull"] > arrived["push"]).to_numpy()})
    both = frame.assign(generation="all")
    out = pd.concat([frame, both]).groupby(["year", "generation"], as_index=False)[["arrivals", "pulled"]].sum()
    out["pulled_share"] = out["pulled"] / out["arrivals"]
    return out[cols]


def _band(values: pd.core.groupby.DataFrameGroupBy, col: str) -> pd.DataFrame:
    q = values[col].quantile([0.05, 0.5, 0.95]).unstack()
    q.columns = ["low", "median", "high"]
    return q.reset_index()


@dataclass
class Comparison:
    """Paired runs of a base scenario and others: per-run values and banded differences."""

    base: str
    others: list[str]
    runs: int
    scale: float
    seed: int
    per_run: pd.DataFrame  # scenario, run, seed, year, output, value
    differences: pd.DataFrame  # scenario, output, year, median, low, high (other - base)
    totals: pd.DataFrame  # scenario, output, period, median, low, high
    motives: pd.DataFrame  # scenario, year, generation, median, low, high of pulled_share; arrivals
    manifest: dict = field(default_factory=dict)


def compare(base: str | Scenario, others: list[str | Scenario], *, runs: int = 10,
            scale: float = 500, seed: int = 1, threads: int | None = None,
            outputs: tuple[str, ...] = KEY_OUTPUTS,
            progress: Callable[[str, int], None] | None = None) -> Comparison:
    """Run ``base`` and each of ``others`` ``runs`` times with paired seeds; see module doc."""
    from talbuk.sim import Sim

    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    scenarios = [load_scenario(base)] + [load_scenario(o) for o in others]
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):  # comparing a scenario with itself: keep them apart
        names = [f"{n}#{i}" if i else n for i, n in enumerate(names)]
    rows, mot = [], []
    for r in range(runs):
        for name, sc in zip(names, scenarios, strict=True):
            if progress is not None:
                progress(name, r)
            sim = Sim(sc, scale=scale, seed=seed + r, threads=threads)
            res = sim.run()
            a = res.annual
            for out in outputs:
                if out in a.columns:
                    rows.append(pd.DataFrame({"scenario": name, "run": r, "seed": seed + r,
                                              "year": a["year"], "output": out, "value": a[out]}))
            mgy = sc.params["economy"].market_gen_birth_year if "economy" in sc.params else 1985
            m = motives(res, mgy)
            if len(m):
                mot.append(m.assign(scenario=name, run=r))
    per_run = pd.concat(rows, ignore_index=True)
    wide = per_run.pivot_table(index=["run", "year", "output"], columns="scenario", values="value").reset_index()
    diffs, totals = [], []
    for name in names[1:]:
        d = wide[["run", "year", "output"]].assign(difference=wide[name] - wide[names[0]])
        diffs.append(_band(d.groupby(["output", "year"]), "difference").assign(scenario=name))
        for lo, hi in PERIODS:
            sel = d[d["output"].isin(FLOWS) & d["year"].between(lo, hi)]
            tot = sel.groupby(["output", "run"], as_index=False)["difference"].sum()
            totals.append(_band(tot.groupby("output"), "difference").assign(scenario=name, period=f"{lo}-{hi}"))
    differences = pd.concat(diffs, ignore_index=True) if diffs else pd.DataFrame()
    totals_df = pd.concat(totals, ignore_index=True) if totals else pd.DataFrame()
    if mot:
        allm = pd.concat(mot, ignore_index=True)
        mb = _band(allm.groupby(["scenario", "year", "generation"]), "pulled_share")
        arr = allm.groupby(["scenario", "year", "generation"], as_index=False)["arrivals"].mean()
        motives_df = mb.merge(arr, on=["scenario", "year", "generation"])
    else:
        motives_df = pd.DataFrame(columns=["scenario", "year", "generation", "low", "median", "high", "arrivals"])
    from talbuk import __version__

    manifest = {"package": "talbuk", "version": __version__, "base": names[0], "others": names[1:],
                "runs": runs, "scale": scale, "seeds": [seed, seed + runs - 1],
                "scenario_hashes": {n: s.hash() for n, s in zip(names, scenarios, strict=True)},
                "band": "5th-95th percentile over runs (90%)"}
    return Comparison(base=names[0], others=names[1:], runs=runs, scale=scale, seed=seed,
                      per_run=per_run, differences=differences, totals=totals_df,
                      motives=motives_df, manifest=manifest)


def plot_comparison(cmp: Comparison, path: Path) -> None:
    """Arrivals in each scenario (median and band) and the paired difference, with the record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from talbuk.population import read_data

    col = "arrivals_expected" if (cmp.per_run["output"] == "arrivals_expected").any() else "arrivals"
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    pr = cmp.per_run[cmp.per_run["output"] == col]
    for name, g in pr.groupby("scenario", sort=False):
        b = _band(g.groupby("year"), "value")
        axes[0].plot(b["year"], b["median"], lw=2, label=name)
        axes[0].fill_between(b["year"], b["low"], b["high"], alpha=0.2)
    rec = read_data("arrivals_rok.csv")
    axes[0].plot(rec["year"], rec["arrivals"], "o", color="k", ms=4, label="Ministry of Unification")
    axes[0].set_yscale("symlog", linthresh=100)
    axes[0].set_xlabel("year of arrival")
    axes[0].set_ylabel("arrivals in South Korea (people per year, log)")
    axes[0].set_title(f"Arrivals ({col.replace('_', ' ')}), median and 90% band over {cmp.runs} runs")
    axes[0].legend(frameon=False, fontsize=8)
    d = cmp.differences[cmp.differences["output"] == col]
    for name, g in d.groupby("scenario", sort=False):
        axes[1].plot(g["year"], g["median"], lw=2, label=f"{name} - {cmp.base}")
        axes[1].fill_between(g["year"], g["low"], g["high"], alpha=0.2)
    axes[1].axhline(0, color="#888", lw=1)
    axes[1].set_yscale("symlog", linthresh=100)
    axes[1].set_xlabel("year")
    axes[1].set_ylabel("difference in arrivals (people per year, log)")
    axes[1].set_title("Paired difference (common random numbers), 90% band")
    axes[1].legend(frameon=False, fontsize=8)
    fig.text(0.01, -0.02, "Observed arrivals: Ministry of Unification (data/arrivals_rok.csv).", fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_comparison(cmp: Comparison, out_dir: Path, *, force: bool = False) -> Path:
    """Write the comparison folder atomically: tables, figure and manifest."""
    out_dir = Path(out_dir)
    tmp = atomic_folder(out_dir, force=force)
    try:
        cmp.differences.to_parquet(tmp / "differences.parquet", index=False)
        cmp.totals.to_parquet(tmp / "totals.parquet", index=False)
        cmp.per_run.to_parquet(tmp / "runs.parquet", index=False)
        cmp.motives.to_parquet(tmp / "motives.parquet", index=False)
        plot_comparison(cmp, tmp / "differences.png")
        manifest = dict(cmp.manifest)
        manifest["files_sha256"] = {p.name: file_sha256(p) for p in sorted(tmp.iterdir())}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        commit_folder(tmp, out_dir)
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
