"""Bayesian calibration of talbuk with pyabc's ABC-SMC, distributed with Dask (DESIGN section 7).

The pieces:

* :class:`TalbukModel`: a pyabc model, one per decision rule. A particle's parameters live on
  the unit cube (``u`` in [0, 1] per prior); the model maps them through each prior's quantile
  function (:meth:`Prior.ppf`), applies them to the scenario with :func:`apply_params`, runs
  ``Sim(scale=K, threads=1)`` and returns :func:`summaries.summarise` of the results. Working
  on the unit cube makes log-uniform priors log-scaled for pyabc's perturbation kernel.
* :class:`TalbukDistance` (``distance.py``): log-scale arrivals error plus range targets.
* :class:`SeededDaskSampler`: pyabc's Dask sampler, except that every evaluation is seeded from
  ``(calibration seed, generation, evaluation number)``. pyabc's Dask sampler already keeps,
  of all evaluations, those numbered up to the n-th accepted one, whatever order they finish
  in; with seeded evaluations the accepted particles, their weights, epsilons and the
  posterior depend only on the seed: not on the number of workers, their speed, or a worker
  dying (Dask reruns its task, with the same seed). The simulation seed of a particle is drawn
  from that same seeded stream and stored with its summary statistics (``sim_seed``).
* :func:`calibrate`: builds the ABC-SMC (one model per rule for model selection), runs it with
  a per-generation progress line, writes the posterior, the rule probabilities and a summary.

pyabc's SQLite database holds the whole history; ``resume=True`` rebuilds the same ABC-SMC
from the settings saved beside the database and continues with ``ABCSMC.load``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pyabc
import scipy.stats
from pyabc.sampler import DaskDistributedSampler

from talbuk.calibration.distance import RANGE_WEIGHT, TalbukDistance
from talbuk.calibration.params import (
    Posterior,
    Prior,
    apply_params,
    default_posterior_path,
    default_priors_path,
    load_priors,
    priors_for_rule,
)
from talbuk.calibration.summaries import ARRIVAL_YEARS, DEFAULT_FIT_YEARS, observed, summarise
from talbuk.scenario import (
    DECISION_RULES,
    Scenario,
    ScenarioError,
    load_scenario,
    scenario_from_toml,
)

#: epsilon of generation 0 of a fresh calibration: every prior draw is accepted, so generation
#: 0 is a sample of the prior (no separate calibration sample is spent), and generation 1's
#: epsilon is the weighted median distance of generation 0
INITIAL_EPSILON = 1e9
#: seconds to wait for a --scheduler to answer
CONNECT_TIMEOUT_S = 10.0
#: evaluations sent to a Dask worker at a time (STACK.md: ~10 avoids per-task overhead)
DEFAULT_BATCH_SIZE = 10

log = logging.getLogger("talbuk.calibrate")


class CalibrationError(Exception):
    """Bad input to a calibration: reported in one line, exit status 2."""


# --------------------------------------------------------------------------------------------
# parameters on the unit cube


def param_key(name: str) -> str:
    """pyabc's name of a prior's unit-cube coordinate (letters, digits and underscores only)."""
    return "u_" + re.sub(r"[^A-Za-z0-9]", "_", name.replace(".", "__").replace("@", "__at__"))


def unit_prior(priors: list[Prior]) -> pyabc.Distribution:
    return pyabc.Distribution(**{param_key(p.name): pyabc.RV("uniform", 0.0, 1.0) for p in priors})


def to_theta(priors: list[Prior], pars) -> dict[str, float]:
    """Parameter values (names as in the priors file) of a unit-cube particle."""
    return {p.name: float(p.ppf(float(pars[param_key(p.name)]))) for p in priors}


# --------------------------------------------------------------------------------------------
# the model


_SCENARIO_CACHE: dict[str, Scenario] = {}


def _scenario(toml_text: str) -> Scenario:
    """The scenario of a resolved TOML text, parsed once per worker process."""
    key = hashlib.sha256(toml_text.encode()).hexdigest()
    if key not in _SCENARIO_CACHE:
        _SCENARIO_CACHE[key] = scenario_from_toml(toml_text, file="(calibration scenario)")
    return _SCENARIO_CACHE[key]


def run_summaries(scenario: Scenario, theta: dict, *, scale: float, seed: int) -> dict[str, float]:
    """Run the model for ``theta`` (names as in a priors file, plus ``rule``) and summarise it."""
    from talbuk.sim import Sim

    sc = apply_params(scenario, theta)
    results = Sim(sc, scale=scale, seed=seed, threads=1).run()
    return summarise(results.annual, results.monthly)


class TalbukModel(pyabc.Model):
    """One decision rule's model for pyabc: unit-cube parameters in, summary statistics out.

    The scenario travels as resolved TOML text, so workers on other machines need no files.
    The simulation seed is drawn from numpy's global generator, which the sampler seeds per
    evaluation (so it is fixed by the calibration seed) and is returned as ``sim_seed``.
    """

    def __init__(self, scenario_toml: str, priors: list[Prior], rule: str | None, scale: float):
        super().__init__(name=rule or "model")
        self.scenario_toml = scenario_toml
        self.priors = priors
        self.rule = rule
        self.scale = float(scale)

    def sample(self, pars) -> dict[str, float]:
        theta = to_theta(self.priors, pars)
        if self.rule is not None:
            theta["rule"] = self.rule
        seed = int(np.random.randint(0, 2**31 - 1))
        out = run_summaries(_scenario(self.scenario_toml), theta, scale=self.scale, seed=seed)
        out["sim_seed"] = float(seed)
        return out


# --------------------------------------------------------------------------------------------
# a Dask sampler whose evaluations are seeded


def evaluation_seed(seed: int, t: int, job_id: int) -> int:
    """The seed of evaluation ``job_id`` of generation ``t`` (``t = -1``: a prior sample)."""
    return int(np.random.SeedSequence([int(seed), int(t) + 1, int(job_id)]).generate_state(1)[0])


def _seeded_batch(simulate_one_pickle: bytes, seeds: list[int], job_ids: list[int]):
    """Run on a worker: one pyabc evaluation per seed, each from its own seeded state."""
    simulate_one = cloudpickle.loads(simulate_one_pickle)
    out = []
    for seed, job_id in zip(seeds, job_ids, strict=True):
        random.seed(seed)
        np.random.seed(seed)
        result = simulate_one()
        out.append((result, result.accepted, job_id))
    return out


class SeededDaskSampler(DaskDistributedSampler):
    """pyabc's ``DaskDistributedSampler`` with each evaluation seeded by its number.

    The loop is pyabc's (EPSMixin): evaluations are numbered in submission order, results are
    kept sorted by number, and the sample is every evaluation up to the n-th accepted one, so
    the sample depends only on the seeds. ``nr_evaluations_`` counts those evaluations (not the
    speculative ones cancelled or discarded after the n-th acceptance), so the acceptance rates
    in the history are reproducible too.
    """

    def __init__(self, dask_client, seed: int, batch_size: int = DEFAULT_BATCH_SIZE):
        super().__init__(dask_client=dask_client, batch_size=batch_size)
        self.seed = int(seed)

    def sample_until_n_accepted(self, n, simulate_one, t, *, max_eval=np.inf, all_accepted=False,
                                ana_vars=None):
        from time import sleep

        from sortedcontainers import SortedList

        pickled = cloudpickle.dumps(simulate_one)
        num_accepted = 0
        next_job_id = 0
        running: list = []
        results = SortedList(key=lambda r: r[2])
        while True:
            for item in list(running):
                job_id, job = item
                if job.done():
                    batch = job.result()  # re-raises a model error here
                    results.update(batch)
                    num_accepted += sum(1 for r in batch if r[1])
                    running.remove(item)
            if num_accepted >= n:
                nth = [r[2] for r in results if r[1]][n - 1]
                for item in list(running):
                    if item[0] > nth:  # started after the n-th acceptance: not needed
                        running.remove(item)
                        item[1].cancel()
                if not running:
                    break
            n_job_max = int(min(self.client_max_jobs, max(self.client_cores(), 1)))
            if len(running) < n_job_max and num_accepted < n:
                for _ in range(n_job_max - len(running)):
                    ids = list(range(next_job_id, next_job_id + self.batch_size))
                    seeds = [evaluation_seed(self.seed, t, i) for i in ids]
                    next_job_id += self.batch_size
                    job = self.client.submit(_seeded_batch, pickled, seeds, ids, pure=False)
                    running.append((ids[0], job))
            sleep(0.01)
        sample = self._create_empty_sample()
        nth = [r[2] for r in results if r[1]][n - 1]
        used = 0
        while True:
            result = results.pop(0)
            sample.append(result[0])
            used += 1
            if result[2] == nth:
                break
        if sample.n_accepted != n:  # pragma: no cover - pyabc's own check
            raise AssertionError(f"got {sample.n_accepted} accepted particles, expected {n}")
        self.nr_evaluations_ = used
        return sample


#: smallest perturbation standard deviation of the transition kernel, in the unit space of the
#: priors (each parameter's prior range mapped to [0, 1]): 2% of the range, set by hand
KERNEL_FLOOR = 0.02


class FlooredTransition(pyabc.MultivariateNormalTransition):
    """pyabc's multivariate normal kernel with a floor on its covariance (``KERNEL_FLOOR``).

    With few particles in many dimensions the importance weights concentrate on a handful of
    particles (effective sample size 1-3 of 40 was seen). The weighted covariance then has a
    rank of about that handful, the kernel is singular, a proposal that leaves its subspace by
    rounding gets density 0 and weight infinity, and pyabc stops on a weight sum of NaN (a
    21-parameter calibration on 2026-11-29, generation 5). Adding ``KERNEL_FLOOR**2`` to the
    diagonal keeps the kernel non-singular, every density positive, and the kernel at least
    2% of each prior range wide."""

    def fit(self, X: pd.DataFrame, w: np.ndarray) -> None:
        super().fit(X, w)
        self.cov = self.cov + np.eye(self.cov.shape[0]) * KERNEL_FLOOR ** 2
        self.normal = scipy.stats.multivariate_normal(cov=self.cov)


def effective_sample_size(w: np.ndarray) -> float:
    """Kish's effective sample size of importance weights, ``(sum w)^2 / sum w^2``."""
    w = np.asarray(w, dtype=float)
    return float(w.sum() ** 2 / np.sum(w ** 2)) if len(w) else 0.0


class _ABCSMC(pyabc.ABCSMC):
    """pyabc's ABCSMC with a callback after each finished generation (for progress lines)."""

    on_generation: Callable[[int, dict], None] | None = None

    def run_generation(self, t: int) -> dict:
        ret = super().run_generation(t)
        if self.on_generation is not None and ret.get("successful"):
            self.on_generation(t, ret)
        return ret


# --------------------------------------------------------------------------------------------
# settings, paths, input checks


@dataclass
class Settings:
    """Everything that defines a calibration (saved beside the database for ``--resume``)."""

    priors_file: str
    priors_text: str
    scenario: str
    scenario_toml: str
    scale: float
    population: int
    seed: int
    rules: list[str] | None  # None: the scenario's own rule, no model selection
    years: tuple[int, int] = DEFAULT_FIT_YEARS
    batch_size: int = DEFAULT_BATCH_SIZE
    extra: dict = field(default_factory=dict)
    # weight of each range target's squared miss in the distance (talbuk.calibration.distance);
    # a setup file written before the option existed reads as the default
    range_weight: float = RANGE_WEIGHT

    def priors(self) -> list[Prior]:
        with tempfile.TemporaryDirectory() as d:  # reload from the saved text (checked again)
            p = Path(d) / Path(self.priors_file).name
            p.write_text(self.priors_text)
            try:
                return load_priors(p)
            except ScenarioError as e:
                raise CalibrationError(f"{self.priors_file}: {e.key}: {e.problem}") from None

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["years"] = list(self.years)
        return d

    @classmethod
    def from_json(cls, d: dict) -> Settings:
        d = dict(d)
        d["years"] = tuple(d["years"])
        return cls(**d)


def output_paths(db: Path) -> dict[str, Path]:
    """Files written beside the database ``DIR/NAME.db``: ``DIR/NAME.{setup,calibration,...}``."""
    stem = db.with_suffix("") if db.suffix == ".db" else db
    return {"setup": Path(f"{stem}.setup.json"), "summary": Path(f"{stem}.calibration.json"),
            "posterior": Path(f"{stem}.posterior.csv"), "rules": Path(f"{stem}.rules.json")}


def parse_years(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d{4})\s*-\s*(\d{4})\s*", text or "")
    if not m:
        raise CalibrationError(f"--years: expected FIRST-LAST such as 1995-2019, got {text!r}")
    y0, y1 = int(m.group(1)), int(m.group(2))
    lo, hi = ARRIVAL_YEARS[0], ARRIVAL_YEARS[-1]
    if not lo <= y0 <= y1 <= hi:
        raise CalibrationError(f"--years: expected {lo} <= FIRST <= LAST <= {hi}, got {text!r}")
    return y0, y1


def parse_rules(text: str | None) -> list[str] | None:
    if text is None:
        return None
    rules = [r.strip() for r in text.split(",") if r.strip()]
    bad = [r for r in rules if r not in DECISION_RULES]
    if not rules or bad:
        raise CalibrationError(f"--rules: expected a comma-separated list of {', '.join(DECISION_RULES)}, "
                               f"got {text!r}")
    if len(set(rules)) != len(rules):
        raise CalibrationError(f"--rules: a rule is listed twice in {text!r}")
    return rules


_ADDRESS = re.compile(r"(tcp|tls|ucx|inproc)://[^\s/:]+(:\d{1,5})?")


def check_scheduler_address(address: str) -> None:
    if not _ADDRESS.fullmatch(address or ""):
        raise CalibrationError(f"--scheduler: expected an address such as tcp://127.0.0.1:8786, got {address!r}")


def check_db_path(db: Path, *, resume: bool, force: bool) -> None:
    """Refuse to overwrite without --resume/--force; check the folder is writable."""
    if resume and force:
        raise CalibrationError("--resume and --force: give one of them, not both")
    if db.exists() and db.is_dir():
        raise CalibrationError(f"{db}: --db: is a folder; expected a database file such as calib.db")
    if resume:
        if not db.exists():
            raise CalibrationError(f"{db}: --db: no such database to resume")
        if not output_paths(db)["setup"].exists():
            raise CalibrationError(f"{output_paths(db)['setup']}: --db: the settings of this calibration "
                                   "are missing; cannot resume it")
    elif db.exists() and not force:
        raise CalibrationError(f"{db}: --db: database exists; use --resume to continue it or --force "
                               "to replace it")
    probe = db.resolve().parent
    while not probe.exists():
        probe = probe.parent
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise CalibrationError(f"{db}: --db: folder is not writable ({probe}: {e.strerror})") from None


def file_sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# --------------------------------------------------------------------------------------------
# the cluster


class Cluster:
    """A Dask client: a local cluster (created here) or an existing scheduler's."""

    def __init__(self, scheduler: str | None, workers: int, connect_timeout: float | None = None):
        from dask.distributed import Client, LocalCluster

        if connect_timeout is None:
            connect_timeout = CONNECT_TIMEOUT_S
        self.cluster = None
        if scheduler:
            check_scheduler_address(scheduler)
            try:
                self.client = Client(scheduler, timeout=f"{connect_timeout}s")
            except (OSError, TimeoutError) as e:
                raise CalibrationError(f"--scheduler: cannot connect to {scheduler} "
                                       f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
            self.description = f"scheduler {scheduler}"
        else:
            # workers inherit this environment: one numba thread each (STACK.md: two workers
            # with numba's default threads oversubscribe two cores)
            # (set here only while the workers start: this process's environment is restored)
            before = os.environ.get("NUMBA_NUM_THREADS")
            os.environ["NUMBA_NUM_THREADS"] = "1"
            try:
                self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                            dashboard_address=None, silence_logs=logging.ERROR,
                                            env={"NUMBA_NUM_THREADS": "1"})
            finally:
                if before is None:
                    os.environ.pop("NUMBA_NUM_THREADS", None)
                else:
                    os.environ["NUMBA_NUM_THREADS"] = before
            self.client = Client(self.cluster)
            self.description = f"local cluster, {workers} workers x 1 thread"

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


# --------------------------------------------------------------------------------------------
# building the ABC-SMC and reading its results


def build_abc(settings: Settings, client, *, resume: bool) -> tuple[_ABCSMC, list[Prior], TalbukDistance]:
    priors = settings.priors()
    rules = settings.rules or [None]
    # each rule's model has its own parameters: the shared ones and those declared for it
    # (``rules = [...]`` in the priors file); without model selection, the scenario's rule's
    own = [priors_for_rule(priors, r if r is not None else _scenario(settings.scenario_toml).decision_rule)
           for r in rules]
    models = [TalbukModel(settings.scenario_toml, pr, r, settings.scale) for pr, r in zip(own, rules, strict=True)]
    distance = TalbukDistance(years=tuple(settings.years), range_weight=float(settings.range_weight))
    # fresh: generation 0 accepts every prior draw; resumed: epsilon from the last generation
    # in the database (the weighted median, as an uninterrupted run computes it)
    eps = pyabc.MedianEpsilon("from_sample" if resume else INITIAL_EPSILON)
    sampler = SeededDaskSampler(client, seed=settings.seed, batch_size=settings.batch_size)
    abc = _ABCSMC(models, [unit_prior(pr) for pr in own], distance, population_size=settings.population,
                  eps=eps, sampler=sampler,
                  transitions=[FlooredTransition() for _ in models])
    return abc, priors, distance


def rule_probabilities(history, rules: list[str] | None) -> dict[str, float]:
    """Posterior probability of each rule in the last generation (``{}`` without model selection)."""
    if not rules:
        return {}
    probs = history.get_model_probabilities(history.max_t)  # index m, column p
    col = probs["p"] if "p" in probs.columns else pd.Series(dtype=float)
    return {r: float(col.get(m, 0.0)) for m, r in enumerate(rules)}


def posterior_of(history, priors: list[Prior], rules: list[str] | None, source: str) -> Posterior:
    """The last generation's particles in parameter units, weights summing to 1 over all rules."""
    t = history.max_t
    probs = rule_probabilities(history, rules) if rules else {None: 1.0}
    frames, weights = [], []
    for m, rule in enumerate(rules or [None]):
        p = probs.get(rule, 0.0) if rules else 1.0
        if p <= 0:
            continue
        df, w = history.get_distribution(m=m, t=t)
        # a parameter outside this rule's model is empty (NaN) in its particles
        vals = pd.DataFrame({pr.name: (pr.ppf(df[param_key(pr.name)].to_numpy())
                                       if param_key(pr.name) in df.columns else np.full(len(df), np.nan))
                             for pr in priors})
        if rules and len(rules) > 1:
            vals["rule"] = rule
        frames.append(vals)
        weights.append(np.asarray(w, dtype=np.float64) / np.sum(w) * p)
    particles = pd.concat(frames, ignore_index=True)
    w = np.concatenate(weights)
    return Posterior(particles, w / w.sum(), source)


def generations_table(history) -> list[dict]:
    pops = history.get_all_populations()
    pops = pops[pops["t"] >= 0].sort_values("t")
    out = []
    for _, row in pops.iterrows():
        # every model's particles (model selection: model 0 may have died out)
        w = history.get_weighted_distances(t=int(row["t"]))["w"].to_numpy()
        out.append({"t": int(row["t"]), "epsilon": float(row["epsilon"]),
                    "effective_sample_size": effective_sample_size(w),
                    "particles": int(row["particles"]), "evaluations": int(row["samples"]),
                    "acceptance_rate": float(row["particles"]) / max(float(row["samples"]), 1.0),
                    "end_time": str(row["population_end_time"])})
    return out


# --------------------------------------------------------------------------------------------
# the calibration


@dataclass
class Outcome:
    db: Path
    paths: dict[str, Path]
    generations: list[dict]
    rule_probabilities: dict[str, float]
    posterior: Posterior
    wall_seconds: float


def prepare(*, priors_path: str | Path | None, scenario: str, scale: float, population: int,
            seed: int, rules: str | None, years: str, batch_size: int = DEFAULT_BATCH_SIZE,
            range_weight: float = RANGE_WEIGHT) -> Settings:
    """Check a new calibration's inputs and return its settings (raises CalibrationError)."""
    if not (math.isfinite(range_weight) and range_weight >= 0):
        raise CalibrationError(f"--range-weight: must be a number >= 0, got {range_weight:g}")
    if not scale >= 1:
        raise CalibrationError(f"--scale: must be at least 1 (people per agent), got {scale:g}")
    if population < 2:
        raise CalibrationError(f"--population: must be at least 2 particles, got {population}")
    if seed < 0:
        raise CalibrationError(f"--seed: must be a non-negative integer, got {seed}")
    if batch_size < 1:  # pragma: no cover - not a command-line option
        raise CalibrationError(f"batch size must be at least 1, got {batch_size}")
    ppath = Path(priors_path) if priors_path is not None else default_priors_path()
    try:
        load_priors(ppath)
        sc = load_scenario(scenario)
    except ScenarioError as e:
        raise CalibrationError(str(e)) from None
    fit_years = parse_years(years)
    rule_list = parse_rules(rules)
    try:  # the priors must fit the scenario (lever points must exist at their dates)
        from talbuk.calibration.params import theta_of
        theta_of(sc, load_priors(ppath))
    except (KeyError, StopIteration):
        raise CalibrationError(f"{ppath}: parameters: a lever point named by the priors does not exist "
                               f"in scenario {sc.name}") from None
    return Settings(priors_file=str(ppath), priors_text=ppath.read_text(), scenario=sc.name,
                    scenario_toml=sc.to_toml(), scale=float(scale), population=int(population),
                    seed=int(seed), rules=rule_list, years=fit_years, batch_size=batch_size,
                    range_weight=float(range_weight))


def calibrate(settings: Settings | None, db: Path, *, generations: int | None = None,
              min_epsilon: float | None = None, max_minutes: float | None = None,
              scheduler: str | None = None, workers: int = 2, resume: bool = False,
              force: bool = False, ship: bool = False,
              progress: Callable[[str], None] | None = None) -> Outcome:
    """Run (or resume) a calibration; ``settings`` is None when resuming (read from the db's side).

    ``generations`` is the total number of generations wanted (a resumed calibration runs only
    the ones still missing). Raises :class:`CalibrationError` on bad input, before anything is
    written.
    """
    t_start = time.perf_counter()
    db = Path(db)
    paths = output_paths(db)
    check_db_path(db, resume=resume, force=force)
    if generations is None and min_epsilon is None and max_minutes is None:
        raise CalibrationError("give --generations, --min-epsilon or --max-minutes (when to stop)")
    if generations is not None and generations < 1:
        raise CalibrationError(f"--generations: must be at least 1, got {generations}")
    if max_minutes is not None and not max_minutes > 0:
        raise CalibrationError(f"--max-minutes: must be positive, got {max_minutes:g}")
    if workers < 1:
        raise CalibrationError(f"--workers: must be at least 1, got {workers}")
    if scheduler:
        check_scheduler_address(scheduler)
    if resume:
        try:
            settings = Settings.from_json(json.loads(paths["setup"].read_text()))
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise CalibrationError(f"{paths['setup']}: (file): cannot read the calibration settings ({e})") from None
    assert settings is not None
    settings.priors()  # the saved priors still load
    db_url = "sqlite:///" + str(db.resolve())
    done_before = 0
    if resume:
        hist = pyabc.History(db_url, create=False)
        done_before = hist.max_t + 1 if hist.n_populations else 0
        if generations is not None and done_before >= generations:
            raise CalibrationError(f"{db}: --generations: the calibration already has {done_before} "
                                   f"generations; ask for more than that")

    say = progress or (lambda s: None)
    logging.getLogger("ABC").setLevel(logging.WARNING)
    cluster = Cluster(scheduler, workers)
    try:
        np.random.seed(settings.seed)  # the main process draws nothing today; kept fixed anyway
        random.seed(settings.seed)
        if not resume:
            if force:
                for p in [db, *paths.values()]:
                    p.unlink(missing_ok=True)
            db.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(paths["setup"], json.dumps(settings.to_json(), indent=2) + "\n")
        abc, priors, distance = build_abc(settings, cluster.client, resume=resume)
        if resume:
            history = abc.load(db_url, pyabc.History(db_url, create=False).id)
        else:
            history = abc.new(db_url, observed())

        def on_generation(t: int, ret: dict) -> None:
            pops = history.get_all_populations()
            row = pops[pops["t"] == t].iloc[-1]
            probs = rule_probabilities(history, settings.rules)
            ptxt = ("  rules " + " ".join(f"{r}={p:.2f}" for r, p in probs.items())) if len(probs) > 1 else ""
            w = history.get_weighted_distances(t=t)["w"].to_numpy()  # every rule's particles
            say(f"generation {t}: acceptance {ret['acceptance_rate']:.3f} ({int(row['particles'])}/"
                f"{int(row['samples'])}), epsilon {float(row['epsilon']):.4g}, "
                f"particles {int(row['particles'])}, effective sample size "
                f"{effective_sample_size(w):.1f}, elapsed {time.perf_counter() - t_start:.0f} s{ptxt}")

        abc.on_generation = on_generation
        say(f"calibrating {settings.scenario} at scale {settings.scale:g}: {len(priors)} parameters, "
            f"{settings.population} particles, rules {', '.join(settings.rules or ['(scenario)'])}, "
            f"{cluster.description}; history in {db}"
            + (f" (resuming after generation {done_before - 1})" if resume else ""))
        run_kwargs = {}
        if generations is not None:
            run_kwargs["max_nr_populations"] = generations - done_before
        if min_epsilon is not None:
            run_kwargs["minimum_epsilon"] = float(min_epsilon)
        if max_minutes is not None:
            run_kwargs["max_walltime"] = timedelta(minutes=float(max_minutes))
        abc.run(**run_kwargs)
    finally:
        cluster.close()

    history = pyabc.History(db_url, create=False)
    gens = generations_table(history)
    probs = rule_probabilities(history, settings.rules)
    source = (f"talbuk calibrate: {settings.scenario}, scale {settings.scale:g}, seed {settings.seed}, "
              f"{len(gens)} generations of {settings.population}, priors sha256 "
              f"{file_sha256_text(settings.priors_text)[:12]}")
    posterior = posterior_of(history, priors, settings.rules, source)
    posterior.save(paths["posterior"])
    wall = time.perf_counter() - t_start
    previous = {}
    if resume and paths["summary"].exists():
        try:
            previous = json.loads(paths["summary"].read_text())
        except ValueError:
            previous = {}
    summary = {
        "scenario": settings.scenario,
        "scenario_sha256": file_sha256_text(settings.scenario_toml),
        "priors_file": settings.priors_file,
        "priors_sha256": file_sha256_text(settings.priors_text),
        "scale": settings.scale,
        "population": settings.population,
        "seed": settings.seed,
        "rules": settings.rules,
        "distance": distance.config(),
        "db": str(db),
        "generations": gens,
        "epsilons": [g["epsilon"] for g in gens],
        "acceptance_rates": [g["acceptance_rate"] for g in gens],
        "rule_probabilities": probs,
        "posterior_mean": posterior.mean(),
        "wall_seconds": round(wall, 1),
        "wall_seconds_all_sessions": round(wall + float(previous.get("wall_seconds_all_sessions", 0.0)), 1),
        "cluster": cluster.description,
        "versions": {"pyabc": pyabc.__version__, "dask": _dask_version()},
    }
    _atomic_write(paths["summary"], json.dumps(summary, indent=2) + "\n")
    if settings.rules:
        _atomic_write(paths["rules"], json.dumps(probs, indent=2) + "\n")
    if ship:
        target = default_posterior_path()
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(paths["posterior"], tmp)
        tmp.replace(target)
    return Outcome(db, paths, gens, probs, posterior, wall)


def _dask_version() -> str:
    import dask

    return dask.__version__


def calibrate_cli(*, priors: Path | None, scenario: str, scale: float, population: int,
                  generations: int | None, min_epsilon: float | None, max_minutes: float | None,
                  db: Path, seed: int, scheduler: str | None, workers: int, resume: bool,
                  force: bool, rules: str | None, years: str, ship: bool, console,
                  range_weight: float | None = None) -> Outcome:
    """What ``talbuk calibrate`` does (the command in cli.py only registers the options)."""
    from rich.table import Table

    settings = None
    if not resume:
        settings = prepare(priors_path=priors, scenario=scenario, scale=scale, population=population,
                           seed=seed, rules=rules, years=years,
                           range_weight=RANGE_WEIGHT if range_weight is None else range_weight)
    out = calibrate(settings, db, generations=generations, min_epsilon=min_epsilon,
                    max_minutes=max_minutes, scheduler=scheduler, workers=workers, resume=resume,
                    force=force, ship=ship, progress=lambda s: console.print(s, highlight=False))
    if out.rule_probabilities:
        table = Table("decision rule", "posterior probability")
        for r, p in out.rule_probabilities.items():
            table.add_row(r, f"{p:.3f}")
        console.print(table)
    table = Table("parameter", "posterior mean")
    for k, v in out.posterior.mean().items():
        table.add_row(k, f"{v:.4g}")
    console.print(table)
    console.print(f"wrote {out.paths['posterior']}, {out.paths['summary']}"
                  + (f", {out.paths['rules']}" if out.rule_probabilities else "")
                  + (f"; shipped to {default_posterior_path()}" if ship else "")
                  + f" ({out.wall_seconds:.0f} s)", highlight=False)
    return out
