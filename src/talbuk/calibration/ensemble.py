"""Ensembles: N runs of one scenario, with parameter draws from a posterior or without.

``run_ensemble(scenario, out, runs=N, posterior=...)`` runs the scenario ``N`` times and
writes a folder::

    OUT/runs/000/ .. OUT/runs/NNN/   one normal run folder each (``talbuk report`` works on it)
    OUT/ensemble.json                scenario, posterior (path, sha256), N, scale, seed, draws
    OUT/bands.parquet                per annual output and year: q05, median, q95, mean, n

**Seeds and common random numbers.** Run ``i`` uses the simulation seed ``seed + i`` whatever
the scenario and whatever the parameters. Every random decision of the model is a
counter-based draw keyed by (seed, stream, month, person) (``talbuk.rng``), so run ``i`` of an
ensemble of one scenario and run ``i`` of an ensemble of another scenario with the same
``--seed`` meet the same luck wherever their histories agree: the two ensembles are paired,
and their run-by-run difference is free of most sampling noise (as in ``talbuk compare``).

**Parameter draws.** With a posterior, run ``i`` uses draw ``i`` of
``Posterior.draw(N, seed)`` (particles drawn with replacement by weight, deterministic in the
seed) applied to the scenario with :func:`talbuk.calibration.params.apply_params`. Without
one, every run uses the scenario's own parameters, and the bands show the stochastic spread
alone.

**Bands.** For every annual output column and year: the 5th and 95th percentiles over runs
(``q05``, ``q95``: a 90% band; numpy's linear interpolation between order statistics), the
median and the mean; ``n`` is the number of runs with a finite value (a mean over the year's
arrivals is undefined in a year with none). With 20 runs the 5th and 95th percentiles lie
between the first and second most extreme values: rough, and the number of runs is written
beside them.

The folder is built in ``OUT.partial`` and renamed into place when complete; an existing
``OUT`` is replaced only with ``force`` and only once the new one is complete. Runs may be
spread over ``jobs`` processes; results do not depend on ``jobs`` (nor on numba's threads).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from talbuk.scenario import Scenario, ScenarioError, load_scenario

if TYPE_CHECKING:
    from talbuk.calibration.params import Posterior

ENSEMBLE_KIND = "talbuk-ensemble"
#: annual columns that are bookkeeping, not outputs
NOT_OUTPUTS = ("year", "months")
QUANTILES = (0.05, 0.5, 0.95)


class EnsembleError(ValueError):
    """Bad input to an ensemble (reported in one line, exit status 2 at the command line)."""


@dataclass(frozen=True)
class Member:
    """One run of an ensemble: its index, seed, parameter draw and resolved scenario."""

    index: int
    seed: int
    theta: dict
    scenario: Scenario


def sigterm_as_interrupt() -> None:
    """Make SIGTERM (``kill PID``) clean up like Ctrl-C: no ``.partial`` folder is left behind."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def run_folder_name(i: int, runs: int) -> str:
    return f"{i:0{max(3, len(str(runs - 1)))}d}"


def _check_posterior_names(post: Posterior, file: str) -> None:
    from talbuk.calibration.params import _bounds
    from talbuk.scenario import DECISION_RULES

    for name in post.names:
        _bounds(name, file)  # raises ScenarioError naming the file and the column
    if "rule" in post.particles.columns:
        bad = sorted({str(r) for r in post.particles["rule"]} - set(DECISION_RULES))
        if bad:
            raise ScenarioError(file, "rule", f"expected one of {list(DECISION_RULES)}, got {bad[0]!r}")


def plan(scenario: str | Path | Scenario, *, runs: int, seed: int,
         posterior: str | Path | Posterior | None = None) -> tuple[Scenario, list[Member], dict | None]:
    """The ensemble's members, checked before anything runs.

    Returns the base scenario, the members and a description of the posterior (or ``None``).
    Raises :class:`EnsembleError` or :class:`ScenarioError` on bad input.
    """
    from talbuk.calibration.params import Posterior, apply_params, load_posterior
    from talbuk.results import file_sha256

    if runs < 1:
        raise EnsembleError(f"--runs: must be at least 1, got {runs}")
    if seed < 0:
        raise EnsembleError(f"--seed: must be a non-negative integer, got {seed}")
    base = load_scenario(scenario) if not isinstance(scenario, Scenario) else scenario
    post_info = None
    if posterior is None:
        draws: list[dict] = [{} for _ in range(runs)]
    else:
        if isinstance(posterior, Posterior):
            post, post_info = posterior, {"path": None, "sha256": None, "source": posterior.source}
        else:
            path = Path(posterior)
            post = load_posterior(path)
            post_info = {"path": str(path), "sha256": file_sha256(path), "source": post.source}
        file = post_info["path"] or "(posterior)"
        _check_posterior_names(post, file)
        post_info["particles"] = len(post.weights)
        post_info["parameters"] = post.names
        draws = post.draw(runs, seed)
    members = []
    for i, theta in enumerate(draws):
        try:
            sc = apply_params(base, theta) if theta else base
        except ScenarioError:
            raise
        except Exception as exc:  # noqa: BLE001 - pydantic: a value out of a module's bounds
            first = str(exc).splitlines()
            detail = first[2].strip() if len(first) > 2 else str(exc)
            raise EnsembleError(f"{post_info['path'] if post_info else '(posterior)'}: draw {i} "
                                f"cannot be applied to {base.name}: {detail}") from None
        members.append(Member(i, seed + i, theta, sc))
    return base, members, post_info


def _run_member(member: Member, scale: float, threads: int | None, run_dir: str, runs: int) -> tuple[int, pd.DataFrame, float]:
    """Run one member and write its run folder; returns (index, annual table, seconds)."""
    from talbuk.results import write_results
    from talbuk.sim import Sim

    t0 = time.perf_counter()
    sim = Sim(member.scenario, scale=scale, seed=member.seed, threads=threads)
    res = sim.run()
    wall = time.perf_counter() - t0
    write_results(res, member.scenario.to_toml(), Path(run_dir), force=False,
                  extra_manifest={"ensemble_member": member.index, "ensemble_runs": runs,
                                  "theta": member.theta, "wall_seconds": round(wall, 3)})
    return member.index, res.annual, wall


def bands(annuals: list[pd.DataFrame]) -> pd.DataFrame:
    """Per output and year over runs: q05, median, q95 (90% band), mean and n (finite values)."""
    years = annuals[0]["year"].to_numpy()
    for a in annuals[1:]:
        if not np.array_equal(a["year"].to_numpy(), years):
            raise ValueError("runs of an ensemble cover different years")
    cols = [c for c in annuals[0].columns if c not in NOT_OUTPUTS]
    frames = []
    for col in cols:
        v = np.stack([a[col].to_numpy(dtype=np.float64) for a in annuals])  # runs x years
        finite = np.isfinite(v)
        n = finite.sum(axis=0)
        q = np.full((len(QUANTILES), v.shape[1]), np.nan)
        mean = np.full(v.shape[1], np.nan)
        ok = n > 0
        if ok.any():
            q[:, ok] = np.nanquantile(v[:, ok], QUANTILES, axis=0)
            mean[ok] = np.nanmean(v[:, ok], axis=0)
        frames.append(pd.DataFrame({"output": col, "year": years, "q05": q[0], "median": q[1],
                                    "q95": q[2], "mean": mean, "n": n.astype(np.int64)}))
    return pd.concat(frames, ignore_index=True)


def run_ensemble(scenario: str | Path | Scenario, out: str | Path, *, runs: int, scale: float = 500,
                 seed: int = 1, posterior: str | Path | Posterior | None = None, jobs: int = 1,
                 threads: int | None = None, force: bool = False,
                 progress: Callable[[int, int, float], None] | None = None) -> Path:
    """Run an ensemble and write its folder atomically (see the module doc); returns ``out``.

    ``progress(done, runs, seconds)`` is called after each finished run.
    """
    from talbuk.results import commit_folder

    if jobs < 1:
        raise EnsembleError(f"--jobs: must be at least 1, got {jobs}")
    if not scale >= 1:
        raise EnsembleError(f"--scale: must be at least 1 (people per agent), got {scale:g}")
    base, members, post_info = plan(scenario, runs=runs, seed=seed, posterior=posterior)
    out = Path(out)
    if out.exists() and not force:
        raise EnsembleError(f"{out}: folder exists; use --force to replace it")
    if out.exists() and not out.is_dir():
        raise EnsembleError(f"{out}: exists and is not a folder")
    work = out.with_name(out.name + ".partial")
    if work.exists():  # left by an interrupted ensemble: ours by name, start again
        shutil.rmtree(work)
    (work / "runs").mkdir(parents=True)
    t0 = time.perf_counter()
    annuals: dict[int, pd.DataFrame] = {}
    try:
        dirs = {m.index: str(work / "runs" / run_folder_name(m.index, runs)) for m in members}
        if jobs == 1:
            for m in members:
                i, a, _ = _run_member(m, scale, threads, dirs[m.index], runs)
                annuals[i] = a
                if progress is not None:
                    progress(len(annuals), runs, time.perf_counter() - t0)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # spawn, not fork: numba's thread pool is not safe to fork; one thread per job
            # unless told otherwise, so that jobs do not oversubscribe the cores
            ctx = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(max_workers=min(jobs, runs), mp_context=ctx)
            try:
                futures = [pool.submit(_run_member, m, scale, threads or 1, dirs[m.index], runs)
                           for m in members]
                for fut in as_completed(futures):
                    i, a, _ = fut.result()
                    annuals[i] = a
                    if progress is not None:
                        progress(len(annuals), runs, time.perf_counter() - t0)
            finally:  # on an error or interrupt: drop queued runs, let running ones end, then clean up
                pool.shutdown(wait=True, cancel_futures=True)
        ordered = [annuals[i] for i in range(runs)]
        bands(ordered).to_parquet(work / "bands.parquet", index=False)
        from talbuk import __version__

        info = {
            "kind": ENSEMBLE_KIND,
            "version": __version__,
            "scenario": base.name,
            "scenario_hash": base.hash(),
            "posterior": post_info,
            "runs": runs,
            "scale": scale,
            "seed": seed,
            "seeds": [m.seed for m in members],
            "draws": [m.theta for m in members],
            "run_folders": [f"runs/{run_folder_name(m.index, runs)}" for m in members],
            "run_scenario_hashes": [m.scenario.hash() for m in members],
            "common_random_numbers": "run i uses simulation seed seed+i whatever the scenario",
            "band": "q05..q95: 5th-95th percentile over runs (90%), numpy linear interpolation",
        }
        (work / "ensemble.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        commit_folder(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


def is_ensemble(path: Path) -> bool:
    return (Path(path) / "ensemble.json").is_file() and (Path(path) / "bands.parquet").is_file()


def read_ensemble(path: str | Path) -> tuple[dict, pd.DataFrame, list[pd.DataFrame]]:
    """An ensemble folder's description, bands and the annual table of every run."""
    path = Path(path)
    info = json.loads((path / "ensemble.json").read_text())
    b = pd.read_parquet(path / "bands.parquet")
    annuals = [pd.read_parquet(path / rf / "annual.parquet") for rf in info.get("run_folders", [])]
    return info, b, annuals


def cli_ensemble(*, scenario: str, posterior: bool, posterior_file: Path | None, runs: int,
                 scale: float, seed: int, out: Path, force: bool, jobs: int, threads: int | None,
                 quiet: bool) -> None:
    """The ``talbuk ensemble`` command (registered in ``talbuk.cli``)."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from talbuk.calibration.params import default_posterior_path
    from talbuk.cli import BadInput, _check_out_dir, _fail, err, stdout

    post = None
    if posterior_file is not None:
        post = posterior_file
    elif posterior:
        post = default_posterior_path()
    try:
        if threads is not None and threads < 1:
            raise EnsembleError(f"--threads: must be at least 1, got {threads}")
        if jobs < 1:
            raise EnsembleError(f"--jobs: must be at least 1, got {jobs}")
        if not scale >= 1:
            raise EnsembleError(f"--scale: must be at least 1 (people per agent), got {scale:g}")
        plan(scenario, runs=runs, seed=seed, posterior=post)  # checked before anything is created
        _check_out_dir(out, force)
    except (EnsembleError, ScenarioError, BadInput) as e:
        _fail(str(e))
    sigterm_as_interrupt()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} runs"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err, disable=quiet) as bar:
        task = bar.add_task(f"ensemble of {runs} x {scenario} (scale {scale:g})", total=runs)

        def progress(done, total, seconds):
            bar.update(task, completed=done)

        try:
            run_ensemble(scenario, out, runs=runs, scale=scale, seed=seed, posterior=post,
                         jobs=jobs, threads=threads, force=force, progress=progress)
        except KeyboardInterrupt:
            err.print("interrupted; nothing written")
            raise SystemExit(130) from None
    if not quiet:
        b = pd.read_parquet(out / "bands.parquet")
        sel = b[(b["output"] == "arrivals_expected") & (b["year"] % 5 == 0)]
        table = Table("year", "arrivals_expected median", "90% band")
        for _, r in sel.iterrows():
            table.add_row(str(int(r["year"])), f"{r['median']:,.0f}", f"{r['q05']:,.0f} .. {r['q95']:,.0f}")
        stdout.print(table)
    stdout.print(f"wrote {out}")


__all__ = ["EnsembleError", "Member", "bands", "cli_ensemble", "is_ensemble", "plan",
           "read_ensemble", "run_ensemble"]
