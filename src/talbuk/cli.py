"""The command line: ``talbuk run | resume | rerun | report | scenarios | ensemble | validate | sensitivity | serve``.

Every command calls the same public API as Python users (:class:`talbuk.sim.Sim`). Bad input
is reported in one line naming the file, the key and what was expected, with exit status 2;
nothing is written and no existing run is touched.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="talbuk: an agent-based model of North Korea, 1990-2025, and of why people defect.")
err = Console(stderr=True)
stdout = Console()

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class BadInput(Exception):
    """A user error: reported in one line, exit status 2."""


def _fail(message: str, code: int = EXIT_BAD_INPUT):
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _progress_callback(progress: Progress, task, sim, t_start: float):
    def cb(s):
        elapsed = max(time.perf_counter() - t_start, 1e-9)
        pm = s.persons.n * s.t_index  # agent-months so far, approximately
        progress.update(task, completed=s.t_index,
                        description=f"{s.describe_month()}  {pm / elapsed / 1e6:6.1f} M agent-months/s")
    return cb


def _execute(sim, run_dir: Path, *, force: bool, checkpoint_every: int | None, quiet: bool,
             run_info: dict) -> None:
    """Run ``sim`` to the end with a progress bar and checkpoints, then write ``run_dir``."""
    from talbuk.checkpoint import partial_dir, save_checkpoint

    work = partial_dir(run_dir)
    checkpoint = None
    if checkpoint_every:
        def checkpoint(s):
            save_checkpoint(s, work, run_info)
    t_start = time.perf_counter()
    months_at_start = sim.t_index
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} months"),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=err, disable=quiet,
                      transient=False) as progress:
            task = progress.add_task("starting", total=sim.n_months, completed=sim.t_index)
            results = sim.run(progress=_progress_callback(progress, task, sim, t_start),
                              checkpoint_every=checkpoint_every, checkpoint=checkpoint)
    except KeyboardInterrupt:
        if checkpoint_every and (work / "checkpoint.json").exists():
            info = json.loads((work / "checkpoint.json").read_text())
            err.print(f"interrupted; the last checkpoint ({info['months_done']} months) is kept in "
                      f"{work}\nresume with: talbuk resume {run_dir}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            err.print("interrupted; no checkpoint was written, nothing kept")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    wall = time.perf_counter() - t_start
    extra = {"wall_seconds": round(wall, 3),
             "agent_months_per_second": round(sim.persons.n * (sim.t_index - months_at_start) / max(wall, 1e-9))}
    extra.update({k: v for k, v in run_info.items() if k != "scenario_toml"})
    from talbuk.results import write_results  # pandas: only once the months are done

    write_results(results, sim.scenario.to_toml(), run_dir, force=True, extra_manifest=extra)
    shutil.rmtree(work, ignore_errors=True)
    if not quiet:
        a = results.annual
        err.print(f"wrote {run_dir} ({sim.n_months} months, {sim.next_uid:,} agents ever, "
                  f"scale {sim.scale:g}) in {wall:.1f} s")
        cols = [c for c in ("year", "population", "births", "deaths", "excess_deaths", "arrivals",
                            "arrivals_expected") if c in a.columns]
        table = Table(*cols)
        for _, row in a[cols].iloc[::5].iterrows():
            table.add_row(*[f"{int(row[c])}" if c == "year" else f"{row[c]:,.0f}" for c in cols])
        err.print(table)


def _check_out_dir(run_dir: Path, force: bool) -> None:
    from talbuk.checkpoint import partial_dir

    if run_dir.exists() and not force:
        raise BadInput(f"{run_dir}: run folder exists; use --force to replace it")
    if run_dir.exists() and not run_dir.is_dir():
        raise BadInput(f"{run_dir}: exists and is not a folder")
    parent = run_dir.resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    import tempfile

    try:  # really try: os.access is not enough (root, read-only mounts, /proc)
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise BadInput(f"{run_dir}: output folder is not writable ({probe}: {e.strerror})") from None
    work = partial_dir(run_dir)
    if work.exists() and (work / "checkpoint.json").exists() and not force:
        raise BadInput(f"{work}: an interrupted run is waiting there; resume it with "
                       f"'talbuk resume {run_dir}' or pass --force to start again")


@app.command()
def run(
    scenario: Annotated[str, typer.Option("--scenario", "-s", help="built-in name or path to a TOML file")] = "baseline",
    scale: Annotated[float, typer.Option(help="people per agent (1 = every person)")] = 100.0,
    seed: Annotated[int, typer.Option(help="random seed (non-negative)")] = 1,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="run folder to write")] = None,
    threads: Annotated[int | None, typer.Option(help="numba threads (default: all cores)")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="write a checkpoint every N months")] = None,
    force: Annotated[bool, typer.Option(help="replace an existing run folder")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar or summary")] = False,
    checks: Annotated[bool, typer.Option(help="check invariants every month (slower)")] = False,
):
    """Run a scenario and write a run folder (tables, manifest, resolved scenario)."""
    from talbuk.scenario import ScenarioError, load_scenario
    from talbuk.sim import Sim

    try:
        if not scale >= 1:
            raise BadInput(f"--scale: must be at least 1 (people per agent), got {scale:g}")
        if seed < 0:
            raise BadInput(f"--seed: must be a non-negative integer, got {seed}")
        if threads is not None and threads < 1:
            raise BadInput(f"--threads: must be at least 1, got {threads}")
        if checkpoint_every is not None and checkpoint_every < 1:
            raise BadInput(f"--checkpoint-every: must be at least 1 month, got {checkpoint_every}")
        sc = load_scenario(scenario)  # validated before anything is created
        run_dir = out if out is not None else Path("runs") / f"{sc.name}-scale{scale:g}-seed{seed}"
        _check_out_dir(run_dir, force)
    except (BadInput, ScenarioError) as e:
        _fail(str(e))
    sim = Sim(sc, scale=scale, seed=seed, threads=threads, checks=checks)
    run_info = {"checkpoint_every": checkpoint_every, "run_dir": str(run_dir)}
    _execute(sim, run_dir, force=force, checkpoint_every=checkpoint_every, quiet=quiet,
             run_info=run_info)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="the run folder given to 'talbuk run --out'")],
    quiet: Annotated[bool, typer.Option(help="no progress bar or summary")] = False,
):
    """Resume an interrupted run from its last checkpoint; ends identical to an uninterrupted run."""
    from talbuk.checkpoint import CheckpointError, load_checkpoint, partial_dir

    run_dir = Path(str(run_dir).removesuffix(".partial"))
    work = partial_dir(run_dir)
    if run_dir.exists() and not work.exists():
        _fail(f"{run_dir}: this run is already complete; nothing to resume")
    try:
        sim, info = load_checkpoint(work)
    except CheckpointError as e:
        _fail(str(e))
    if not quiet:
        err.print(f"resuming {run_dir} at month {sim.t_index} of {sim.n_months}")
    _execute(sim, run_dir, force=True, checkpoint_every=info.get("checkpoint_every"), quiet=quiet,
             run_info={"checkpoint_every": info.get("checkpoint_every"), "run_dir": str(run_dir),
                       "resumed_at_month": sim.t_index})


@app.command()
def rerun(
    run_dir: Annotated[Path, typer.Argument(help="a finished run folder")],
    out: Annotated[Path, typer.Option("--out", "-o", help="where to write the rerun")] = None,
    threads: Annotated[int | None, typer.Option(help="numba threads (results do not depend on it)")] = None,
    force: Annotated[bool, typer.Option(help="replace an existing output folder")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar or summary")] = False,
):
    """Run again from a run folder's manifest and resolved scenario, and compare the tables."""
    from talbuk.scenario import ScenarioError, scenario_from_toml
    from talbuk.sim import Sim

    manifest_path = run_dir / "manifest.json"
    if not manifest_path.exists():
        _fail(f"{manifest_path}: not a talbuk run folder (no manifest.json)")
    manifest = json.loads(manifest_path.read_text())
    target = out if out is not None else run_dir.with_name(run_dir.name + "-rerun")
    try:
        sc = scenario_from_toml((run_dir / "scenario.toml").read_text(), file=str(run_dir / "scenario.toml"))
        _check_out_dir(target, force)
    except (BadInput, ScenarioError) as e:
        _fail(str(e))
    sim = Sim(sc, scale=manifest["scale"], seed=manifest["seed"], threads=threads)
    _execute(sim, target, force=force, checkpoint_every=None, quiet=quiet, run_info={"rerun_of": str(run_dir)})
    new = json.loads((target / "manifest.json").read_text())
    same = [f for f, h in manifest["files_sha256"].items() if f.endswith(".parquet") and new["files_sha256"].get(f) == h]
    differ = [f for f in manifest["files_sha256"] if f.endswith(".parquet") and f not in same]
    if differ:
        _fail(f"{target}: tables differ from {run_dir}: {', '.join(differ)}", code=1)
    stdout.print(f"identical: {', '.join(same)}")


@app.command()
def compare(
    base: Annotated[str, typer.Argument(help="the base scenario (name or file)")],
    others: Annotated[list[str], typer.Argument(help="scenarios to compare with the base")],
    runs: Annotated[int, typer.Option(help="paired runs (seeds SEED .. SEED+RUNS-1)")] = 10,
    scale: Annotated[float, typer.Option(help="people per agent")] = 500.0,
    seed: Annotated[int, typer.Option(help="first seed")] = 1,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="comparison folder")] = None,
    threads: Annotated[int | None, typer.Option(help="numba threads")] = None,
    force: Annotated[bool, typer.Option(help="replace an existing folder")] = False,
):
    """Paired ensembles with common random numbers: differences by year with 90% bands."""
    from talbuk.compare import compare as run_compare
    from talbuk.compare import write_comparison
    from talbuk.scenario import ScenarioError, load_scenario

    try:
        if runs < 1:
            raise BadInput(f"--runs: must be at least 1, got {runs}")
        if not scale >= 1:
            raise BadInput(f"--scale: must be at least 1 (people per agent), got {scale:g}")
        if seed < 0:
            raise BadInput(f"--seed: must be a non-negative integer, got {seed}")
        names = [load_scenario(x).name for x in [base, *others]]
        target = out if out is not None else Path("runs") / ("compare-" + "-".join(names))
        _check_out_dir(target, force)
    except (BadInput, ScenarioError) as e:
        _fail(str(e))
    t0 = time.perf_counter()

    def progress(name, r):
        err.print(f"run {r + 1}/{runs}: {name}  ({time.perf_counter() - t0:.0f} s)")

    cmp = run_compare(base, others, runs=runs, scale=scale, seed=seed, threads=threads, progress=progress)
    write_comparison(cmp, target, force=force)
    table = Table("scenario", "output", "period", "median difference", "90% band")
    for _, row in cmp.totals.iterrows():
        table.add_row(row["scenario"], row["output"], row["period"], f"{row['median']:,.0f}",
                      f"{row['low']:,.0f} .. {row['high']:,.0f}")
    stdout.print(table)
    stdout.print(f"wrote {target}")


@app.command()
def scenarios():
    """List the built-in scenarios."""
    from talbuk.scenario import builtin_scenarios

    table = Table("scenario", "description")
    for name, desc in builtin_scenarios().items():
        table.add_row(name, desc)
    stdout.print(table)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="a finished run folder")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="HTML file (default RUN_DIR/report.html)")] = None,
):
    """Write a self-contained HTML report with figures for a run folder."""
    from talbuk.report import write_report

    if not (run_dir / "manifest.json").exists():
        _fail(f"{run_dir}: not a talbuk run folder (no manifest.json)")
    path = write_report(run_dir, out)
    stdout.print(f"wrote {path}")


@app.command()
def ensemble(
    scenario: Annotated[str, typer.Option("--scenario", "-s", help="built-in name or path to a TOML file")] = "baseline",
    posterior: Annotated[bool, typer.Option("--posterior", help="draw parameters from the shipped posterior")] = False,
    posterior_file: Annotated[Path | None, typer.Option("--posterior-file", help="draw parameters from this posterior (implies --posterior)")] = None,
    runs: Annotated[int, typer.Option(help="number of runs (seeds SEED .. SEED+RUNS-1)")] = 20,
    scale: Annotated[float, typer.Option(help="people per agent")] = 500.0,
    seed: Annotated[int, typer.Option(help="first seed; also seeds the posterior draws")] = 1,
    out: Annotated[Path, typer.Option("--out", "-o", help="ensemble folder to write")] = ...,
    force: Annotated[bool, typer.Option(help="replace an existing folder")] = False,
    jobs: Annotated[int, typer.Option(help="processes (results do not depend on it)")] = 1,
    threads: Annotated[int | None, typer.Option(help="numba threads per run (default: all cores; 1 with --jobs > 1)")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar or summary")] = False,
):
    """N runs of a scenario (parameter draws from a posterior, or none) with 90% bands per year."""
    from talbuk.calibration.ensemble import cli_ensemble

    cli_ensemble(scenario=scenario, posterior=posterior, posterior_file=posterior_file, runs=runs,
                 scale=scale, seed=seed, out=out, force=force, jobs=jobs, threads=threads, quiet=quiet)


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="a run folder or an ensemble folder")],
    json_path: Annotated[Path | None, typer.Option("--json", help="where to write (default PATH/validation.json)")] = None,
    column: Annotated[str, typer.Option(help="headline arrivals column: arrivals_expected or arrivals")] = "arrivals_expected",
    quiet: Annotated[bool, typer.Option(help="no tables")] = False,
):
    """Compare a run or an ensemble with the record: ARD, MASE, band coverage, targets."""
    from talbuk.calibration.validate import cli_validate

    cli_validate(path=path, json_path=json_path, column=column, quiet=quiet)


@app.command()
def sensitivity(
    priors: Annotated[Path | None, typer.Option(help="priors file (default: the shipped priors.toml)")] = None,
    scenario: Annotated[str, typer.Option("--scenario", "-s", help="built-in name or path to a TOML file")] = "baseline",
    n: Annotated[int, typer.Option("--n", help="Sobol base sample (power of 2); N*(D+2) runs")] = 32,
    scale: Annotated[float, typer.Option(help="people per agent")] = 5000.0,
    seed: Annotated[int, typer.Option(help="simulation seed of every run; also seeds the Sobol scrambling")] = 1,
    params: Annotated[str | None, typer.Option(help="comma-separated parameter names (default: all)")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="folder to write")] = ...,
    force: Annotated[bool, typer.Option(help="replace an existing folder")] = False,
    jobs: Annotated[int, typer.Option(help="processes")] = 1,
    threads: Annotated[int | None, typer.Option(help="numba threads per run")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar or tables")] = False,
):
    """Sobol indices (SALib) of arrivals 2000-2019, the 2009 peak and the 2012 drop."""
    from talbuk.calibration.sensitivity import cli_sensitivity

    cli_sensitivity(priors=priors, scenario=scenario, n=n, scale=scale, seed=seed, params=params,
                    out=out, force=force, jobs=jobs, threads=threads, quiet=quiet)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on; anything but 127.0.0.1/localhost exposes it (warned)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 5006,
    threads: Annotated[int | None, typer.Option(help="numba threads per run (results do not depend on it)")] = None,
    timeout: Annotated[float, typer.Option(help="seconds one request (all its runs) may take")] = 300.0,
    show: Annotated[bool, typer.Option(help="open the page in a browser")] = False,
):
    """The web explorer: change the levers, run, compare with the record and the baseline."""
    from talbuk.serve import cli_serve

    cli_serve(host=host, port=port, threads=threads, timeout=timeout, show=show)


@app.command()
def calibrate(
    priors: Annotated[Path | None, typer.Option(help="priors file (default: the shipped priors.toml)")] = None,
    scenario: Annotated[str, typer.Option("--scenario", "-s", help="built-in name or path to a TOML file")] = "baseline",
    scale: Annotated[float, typer.Option(help="people per agent of each simulation")] = 2000.0,
    population: Annotated[int, typer.Option(help="particles per generation")] = 40,
    generations: Annotated[int | None, typer.Option(help="total generations (a resumed run adds the missing ones)")] = None,
    min_epsilon: Annotated[float | None, typer.Option(help="stop once epsilon is below this")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="stop after the generation that ends past this")] = None,
    db: Annotated[Path, typer.Option(help="pyabc's SQLite database (outputs are written beside it)")] = Path("runs/calibration/abc.db"),
    seed: Annotated[int, typer.Option(help="calibration seed: fixes every particle and simulation seed")] = 1,
    scheduler: Annotated[str | None, typer.Option(help="address of a running Dask scheduler (tcp://HOST:PORT)")] = None,
    workers: Annotated[int, typer.Option(help="workers of the local Dask cluster")] = 2,
    resume: Annotated[bool, typer.Option(help="continue the calibration in --db")] = False,
    force: Annotated[bool, typer.Option(help="replace an existing --db")] = False,
    rules: Annotated[str | None, typer.Option(help="compare decision rules, e.g. threshold,utility,planned")] = None,
    years: Annotated[str, typer.Option(help="years of arrivals in the distance")] = "1995-2019",
    range_weight: Annotated[float | None, typer.Option(help="weight of each range target's squared miss in the distance (default 0.25)")] = None,
    ship: Annotated[bool, typer.Option(help="also copy the posterior to the package's posterior.csv")] = False,
):
    """Bayesian calibration (pyabc ABC-SMC on Dask); see docs/calibration.md."""
    try:
        from talbuk.calibration.abc import CalibrationError, calibrate_cli
    except ImportError as e:
        _fail(f"talbuk calibrate needs the calibrate extra (pip install 'talbuk[calibrate]'): {e}")
    try:
        calibrate_cli(priors=priors, scenario=scenario, scale=scale, population=population,
                      generations=generations, min_epsilon=min_epsilon, max_minutes=max_minutes,
                      db=db, seed=seed, scheduler=scheduler, workers=workers, resume=resume,
                      force=force, rules=rules, years=years, ship=ship, console=err,
                      range_weight=range_weight)
    except CalibrationError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        err.print(f"interrupted; finished generations are kept in {db}; continue with --resume")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``talbuk`` command."""
    app(args=argv, prog_name="talbuk")  # click exits with 2 on usage errors


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
