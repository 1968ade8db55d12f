"""Global sensitivity analysis: Sobol indices of the main outputs to the uncertain parameters.

``sensitivity(priors, n=N)`` draws Saltelli's scheme with SALib (``SALib.sample.sobol.sample``,
scrambled Sobol sequence, ``calc_second_order=False``: ``N * (D + 2)`` runs for ``D``
parameters) on the unit cube, maps each column onto its prior with :meth:`Prior.ppf`, applies
the values to the scenario with :func:`apply_params` and runs the model. It then estimates
first-order (``S1``) and total (``ST``) indices with ``SALib.analyze.sobol.analyze`` and their
95% bootstrap half-widths (``S1_conf``, ``ST_conf``).

Outputs (all from ``arrivals_expected``, the low-noise expected flow):

* ``arrivals_2000_2019``: total arrivals 2000-2019 (people);
* ``arrivals_2009``: arrivals in 2009, the recorded peak (people);
* ``drop_2012``: ``arrivals_2012 / arrivals_2011 - 1`` (recorded: -44%);
* ``log10_arrivals_2000_2019``, ``log10_arrivals_2009``: the same counts on a log scale
  (:data:`LOG_OUTPUTS`; drawn in ``sobol.png``, the raw counts' indices are in ``sobol.csv``).

**One seed for every run** (common random numbers): every run uses the same simulation seed,
so two parameter vectors differ in outcome only because of the parameters (the same person
meets the same luck wherever their histories agree), and the indices are not blurred by
run-to-run noise. The price: the indices are those of the model at that seed; the noise that
remains (histories that diverge) shows in the bootstrap intervals.

The folder (written atomically) holds ``sobol.csv`` (output, parameter, S1, S1_conf, ST,
ST_conf), ``sobol.png`` (bars of S1 and ST with their intervals), ``samples.parquet`` (every
run's parameters and outputs) and ``sensitivity.json`` (the settings, priors, seeds and
timings).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from talbuk.calibration.params import (
    Prior,
    apply_params,
    default_priors_path,
    load_priors,
    priors_for_rule,
)
from talbuk.results import commit_folder
from talbuk.scenario import Scenario, ScenarioError, load_scenario

OUTPUTS = ("arrivals_2000_2019", "arrivals_2009", "drop_2012")
#: log10 of the two counts: over the priors they span two to three orders of magnitude with a
#: long upper tail, and variance-based indices of the raw counts are then dominated by a few
#: extreme runs (unstable at small N); on the log scale they measure relative change
LOG_OUTPUTS = ("arrivals_2000_2019", "arrivals_2009")
#: the outputs drawn in sobol.png (the raw counts' indices are in sobol.csv)
PLOTTED = ("log10_arrivals_2000_2019", "log10_arrivals_2009", "drop_2012")
#: the last month any output needs (runs stop there)
LAST_MONTH_NEEDED = "2019-12"
OUTPUT_LABELS = {"arrivals_2000_2019": "total arrivals 2000-2019",
                 "arrivals_2009": "arrivals 2009 (peak)",
                 "drop_2012": "2012 drop (2012/2011 - 1)",
                 "log10_arrivals_2000_2019": "log10 total arrivals 2000-2019",
                 "log10_arrivals_2009": "log10 arrivals 2009 (peak)"}


class SensitivityError(ValueError):
    """Bad input to a sensitivity analysis (one line, exit status 2 at the command line)."""


def outputs_of(annual: pd.DataFrame) -> dict[str, float]:
    """The three outputs of the analysis from a run's annual table."""
    a = annual.set_index("year")["arrivals_expected"]
    total = float(a.loc[2000:2019].sum()) if {2000, 2019} <= set(a.index) else math.nan
    peak = float(a.get(2009, math.nan))
    a11, a12 = float(a.get(2011, math.nan)), float(a.get(2012, math.nan))
    drop = a12 / a11 - 1.0 if a11 > 0 else math.nan
    return {"arrivals_2000_2019": total, "arrivals_2009": peak, "drop_2012": drop}


def _run_one(i: int, scenario: Scenario, theta: dict, scale: float, seed: int, threads: int | None) -> tuple[int, dict]:
    from talbuk.sim import Sim

    sc = apply_params(scenario, theta)
    res = Sim(sc, scale=scale, seed=seed, threads=threads).run()
    return i, outputs_of(res.annual)


def select(priors: list[Prior], params: list[str] | None, file: str) -> list[Prior]:
    if not params:
        return priors
    by_name = {p.name: p for p in priors}
    unknown = [p for p in params if p not in by_name]
    if unknown:
        raise SensitivityError(f"--params: {unknown[0]!r} is not a parameter of {file}; known: {sorted(by_name)}")
    if len(set(params)) != len(params):
        raise SensitivityError("--params: a parameter is listed twice")
    return [by_name[p] for p in params]


def design(priors: list[Prior], n: int, seed: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """SALib problem, unit-cube sample (N*(D+2) x D) and the values on the priors."""
    from SALib.sample import sobol as sobol_sample

    problem = {"num_vars": len(priors), "names": [p.name for p in priors], "bounds": [[0.0, 1.0]] * len(priors)}
    unit = sobol_sample.sample(problem, n, calc_second_order=False, scramble=True, seed=seed)
    values = np.column_stack([p.ppf(unit[:, j]) for j, p in enumerate(priors)])
    return problem, unit, values


def analyse_samples(samples: pd.DataFrame, names: list[str], seed: int) -> pd.DataFrame:
    """Sobol table of every output (and the log10 of the counts) from a ``samples.parquet`` table.

    The rows must be in the order of the sample (as written by :func:`sensitivity`).
    """
    problem = {"num_vars": len(names), "names": list(names), "bounds": [[0.0, 1.0]] * len(names)}
    y = {o: samples[o].to_numpy(dtype=np.float64) for o in OUTPUTS}
    with np.errstate(divide="ignore", invalid="ignore"):
        for o in LOG_OUTPUTS:
            y[f"log10_{o}"] = np.log10(y[o])
    return analyse(problem, y, seed)


def analyse(problem: dict, y: dict[str, np.ndarray], seed: int) -> pd.DataFrame:
    """Sobol indices (S1, ST and 95% bootstrap half-widths) per output and parameter."""
    from SALib.analyze import sobol as sobol_analyze

    rows = []
    for out, values in y.items():
        if not np.all(np.isfinite(values)) or np.ptp(values) == 0:
            # SALib cannot divide by a zero or undefined variance: say so in the table
            for name in problem["names"]:
                rows.append({"output": out, "parameter": name, "S1": math.nan, "S1_conf": math.nan,
                             "ST": math.nan, "ST_conf": math.nan})
            continue
        si = sobol_analyze.analyze(problem, values, calc_second_order=False, seed=seed, print_to_console=False)
        for j, name in enumerate(problem["names"]):
            rows.append({"output": out, "parameter": name, "S1": float(si["S1"][j]),
                         "S1_conf": float(si["S1_conf"][j]), "ST": float(si["ST"][j]),
                         "ST_conf": float(si["ST_conf"][j])})
    return pd.DataFrame(rows, columns=["output", "parameter", "S1", "S1_conf", "ST", "ST_conf"])


def plot(table: pd.DataFrame, path: Path, title: str) -> None:
    """Bars of S1 and ST (with 95% intervals) per parameter, one panel per output."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = set(table["output"])
    outs = [o for o in PLOTTED if o in present] or list(dict.fromkeys(table["output"]))
    params = list(dict.fromkeys(table["parameter"]))
    fig, axes = plt.subplots(1, len(outs), figsize=(4.2 * len(outs) + 2.5, 0.45 * len(params) + 1.8),
                             sharey=True, squeeze=False)
    yy = np.arange(len(params))
    for ax, out in zip(axes[0], outs, strict=True):
        t = table[table["output"] == out].set_index("parameter").loc[params]
        ax.barh(yy - 0.2, t["S1"], 0.4, xerr=t["S1_conf"], label="first order S1", color="#4c72b0", capsize=2)
        ax.barh(yy + 0.2, t["ST"], 0.4, xerr=t["ST_conf"], label="total ST", color="#dd8452", capsize=2)
        ax.axvline(0, color="#888", lw=0.8)
        ax.set_title(OUTPUT_LABELS.get(out, out), fontsize=10)
        ax.set_xlabel("Sobol index (share of output variance)")
    axes[0][0].set_yticks(yy, params, fontsize=8)
    axes[0][0].set_ylabel("parameter (priors.toml)")
    axes[0][0].invert_yaxis()
    axes[0][-1].legend(frameon=False, fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def sensitivity(out: str | Path, *, priors: str | Path | None = None, scenario: str | Path | Scenario = "baseline",
                n: int = 32, scale: float = 5000, seed: int = 1, params: list[str] | None = None,
                jobs: int = 1, threads: int | None = None, force: bool = False,
                progress: Callable[[int, int], None] | None = None) -> Path:
    """Run the Sobol analysis and write its folder atomically (see the module doc)."""
    if n < 2:
        raise SensitivityError(f"--n: must be at least 2, got {n}")
    if n & (n - 1):
        raise SensitivityError(f"--n: must be a power of 2 (Sobol sequence), got {n}")
    if not scale >= 1:
        raise SensitivityError(f"--scale: must be at least 1 (people per agent), got {scale:g}")
    if seed < 0:
        raise SensitivityError(f"--seed: must be a non-negative integer, got {seed}")
    if jobs < 1:
        raise SensitivityError(f"--jobs: must be at least 1, got {jobs}")
    priors_path = Path(priors) if priors is not None else default_priors_path()
    base = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    # a prior of another decision rule's model (``rules`` in the priors file) does nothing
    # under this scenario's rule: varying it would only spend runs
    chosen = select(priors_for_rule(load_priors(priors_path), base.decision_rule), params,
                    f"{priors_path} (rule {base.decision_rule})")
    if base.end > LAST_MONTH_NEEDED:
        # the outputs end in 2019 and the model is causal: stopping there changes none of them
        # and saves a sixth of the work
        base = replace(base, end=LAST_MONTH_NEEDED)
    problem, unit, values = design(chosen, n, seed)
    thetas = [dict(zip(problem["names"], map(float, row), strict=True)) for row in values]
    apply_params(base, thetas[0])  # a lever point missing from this scenario fails here, before any run
    out = Path(out)
    if out.exists() and not force:
        raise SensitivityError(f"{out}: folder exists; use --force to replace it")
    work = out.with_name(out.name + ".partial")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        results: dict[int, dict] = {}
        if jobs == 1:
            for i, th in enumerate(thetas):
                results[i] = _run_one(i, base, th, scale, seed, threads)[1]
                if progress is not None:
                    progress(len(results), len(thetas))
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            ctx = multiprocessing.get_context("spawn")  # numba's thread pool is not fork-safe
            pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx)
            try:
                futs = [pool.submit(_run_one, i, base, th, scale, seed, threads or 1) for i, th in enumerate(thetas)]
                for f in as_completed(futs):
                    i, r = f.result()
                    results[i] = r
                    if progress is not None:
                        progress(len(results), len(thetas))
            finally:  # on an error or interrupt: drop queued runs, let running ones end
                pool.shutdown(wait=True, cancel_futures=True)
        wall = time.perf_counter() - t0
        samples = pd.DataFrame(values, columns=problem["names"])
        for o in OUTPUTS:
            samples[o] = np.array([results[i][o] for i in range(len(thetas))])
        table = analyse_samples(samples, problem["names"], seed)
        table.to_csv(work / "sobol.csv", index=False, float_format="%.6g")
        samples.to_parquet(work / "samples.parquet", index=False)
        plot(table, work / "sobol.png",
             f"Sobol indices, {base.name}, N={n}, {len(thetas)} runs at scale {scale:g}, seed {seed} for every run")
        from talbuk import __version__

        info = {"version": __version__, "scenario": base.name, "scenario_hash": base.hash(),
                "priors": str(priors_path), "parameters": [asdict(p) for p in chosen], "n": n,
                "runs": len(thetas), "scale": scale, "seed": seed, "simulated": f"{base.start} to {base.end}",
                "sampler": "SALib.sample.sobol.sample(calc_second_order=False, scramble=True, seed=seed)",
                "analyser": "SALib.analyze.sobol.analyze(calc_second_order=False, seed=seed)",
                "common_random_numbers": "every run uses simulation seed `seed`",
                "outputs": OUTPUT_LABELS, "wall_seconds": round(wall, 1),
                "seconds_per_run": round(wall / len(thetas), 3)}
        (work / "sensitivity.json").write_text(json.dumps(info, indent=2) + "\n")
        commit_folder(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


def cli_sensitivity(*, priors: Path | None, scenario: str, n: int, scale: float, seed: int,
                    params: str | None, out: Path, force: bool, jobs: int, threads: int | None,
                    quiet: bool) -> None:
    """The ``talbuk sensitivity`` command (registered in ``talbuk.cli``)."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from talbuk.calibration.ensemble import sigterm_as_interrupt
    from talbuk.cli import BadInput, _check_out_dir, _fail, err, stdout

    sigterm_as_interrupt()
    names = [p.strip() for p in params.split(",") if p.strip()] if params else None
    try:
        if threads is not None and threads < 1:
            raise SensitivityError(f"--threads: must be at least 1, got {threads}")
        _check_out_dir(out, force)
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} runs"),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=err, disable=quiet) as bar:
            task = bar.add_task(f"Sobol, N={n}, scale {scale:g}", total=None)

            def progress(done, total):
                bar.update(task, completed=done, total=total)

            sensitivity(out, priors=priors, scenario=scenario, n=n, scale=scale, seed=seed, params=names,
                        jobs=jobs, threads=threads, force=force, progress=progress)
    except (SensitivityError, ScenarioError, BadInput) as e:
        _fail(str(e))
    except KeyboardInterrupt:
        err.print("interrupted; nothing written")
        raise SystemExit(130) from None
    if not quiet:
        t = pd.read_csv(out / "sobol.csv")
        table = Table("output", "parameter", "S1", "ST")
        for _, r in t.iterrows():
            table.add_row(r["output"], r["parameter"], f"{r['S1']:.2f} ± {r['S1_conf']:.2f}",
                          f"{r['ST']:.2f} ± {r['ST_conf']:.2f}")
        stdout.print(table)
    stdout.print(f"wrote {out}")
