"""``talbuk serve``: a local web explorer where anyone can change the history and watch the consequences.

The page (Panel, served from this machine with its own bundled assets: it needs no network)
lets the user pick a built-in scenario, edit four levers over a chosen period, run the model
at a reduced scale and compare the arrivals in South Korea with the record and with the
``baseline`` scenario run with the same seeds (common random numbers), and see who was
mainly pulled or pushed to leave. See ``docs/explorer.md``.

The parts are separate so that they can be tested without a browser:

* :func:`validate_request` turns what the browser sent (a flat dict of strings and numbers)
  into a :class:`RunRequest`, or raises :class:`InputError` naming the field and what was
  expected. Nothing runs on bad input.
* :func:`apply_edits` builds the edited scenario with :func:`dataclasses.replace` and checks
  it again by loading its TOML (so it is a validated :class:`~talbuk.scenario.Scenario`).
* :class:`Runner` runs one request at a time in a background thread, with progress, a
  timeout and a cache of baseline runs; a second request while one runs is refused.
* :func:`arrivals_figure`, :func:`motives_figure`, :func:`levers_figure` and
  :func:`summary_markdown` draw the results (matplotlib figures, no pyplot).
* :func:`build_app` assembles the page; :func:`serve` starts the server.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
import re
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from talbuk.calendar import format_month, parse_month
from talbuk.scenario import LEVERS, Point, Scenario, ScenarioError, builtin_scenarios

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "EDIT_LEVERS",
    "InputError",
    "LeverEdit",
    "RunRequest",
    "Runner",
    "Busy",
    "apply_edits",
    "arrivals_figure",
    "build_app",
    "is_loopback",
    "levers_figure",
    "motives_figure",
    "motives_table",
    "serve",
    "summary_markdown",
    "validate_request",
]

# ------------------------------------------------------------------------------------------
# limits (set by hand: what a laptop runs in about a minute and what keeps one user from
# tying up the machine; see docs/explorer.md)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5006
SCALE_MIN, SCALE_MAX, SCALE_DEFAULT = 500, 20000, 2000  # people per agent
RUNS_MIN, RUNS_MAX, RUNS_DEFAULT = 1, 5, 1
SEED_MAX = 2**31 - 1 - RUNS_MAX  # seeds SEED .. SEED+RUNS-1 stay below 2**31
TIMEOUT_DEFAULT = 300.0  # seconds for one request (all its runs)
TIMEOUT_MIN, TIMEOUT_MAX = 10.0, 3600.0
FIELD_MAX_CHARS = 64  # any single field from the browser
SCALE_FACTOR_MAX = 10.0  # "multiply by" at most this
FAMINE_FACTOR_MAX = 3.0  # the 1990s food shortfall at most three times as deep
BASELINE = "baseline"  # the reference every run is compared with
SUMMARY_YEARS = (2000, 2019)  # the period of the headline total (as in talbuk compare)

#: The levers the explorer edits, in the order they are shown.
EDIT_LEVERS: tuple[str, ...] = ("border_security", "media_supply", "market_tolerance", "food_index")

#: What can be done to a lever over a period: label shown in the page.
OPS: dict[str, str] = {
    "history": "as in the scenario",
    "set": "set to",
    "scale": "multiply by",
    "famine": "multiply the food shortfall (1 - food_index) by",
}
_OPS_FOR: dict[str, tuple[str, ...]] = {
    lever: ("history", "set", "scale") + (("famine",) if lever == "food_index" else ())
    for lever in EDIT_LEVERS
}
#: Starting values of the edit fields (the op starts at "history": nothing is changed).
EDIT_DEFAULTS: dict[str, dict[str, str]] = {
    "border_security": {"op": "set", "from": "2000-01", "to": "2025-12", "value": "1"},
    "media_supply": {"op": "set", "from": "2000-01", "to": "2025-12", "value": "0"},
    "market_tolerance": {"op": "set", "from": "1995-01", "to": "2025-12", "value": "1"},
    "food_index": {"op": "famine", "from": "1994-01", "to": "1998-12", "value": "0.5"},
}
LEVER_TITLES = {
    "border_security": "Border security",
    "media_supply": "Foreign media supply",
    "market_tolerance": "Market tolerance",
    "food_index": "Food supply (famine severity)",
}

_INT_TEXT = re.compile(r"[+-]?\d{1,12}")
_FLOAT_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?")
_MONTH_TEXT = re.compile(r"\d{4}-\d{2}")


class InputError(ValueError):
    """Bad input from the browser: ``str(err)`` is ``"{field}: {problem}"``."""

    def __init__(self, field_name: str, problem: str):
        self.field = field_name
        self.problem = problem
        super().__init__(f"{field_name}: {problem}")


class Busy(RuntimeError):
    """A run is already in progress on this server."""


@dataclass(frozen=True)
class LeverEdit:
    """Change one lever over ``[start, end]`` (months ``YYYY-MM``, both included).

    ``op`` is ``set`` (the lever takes ``value``), ``scale`` (its value times ``value``) or
    ``famine`` (``food_index`` only: the shortfall ``1 - food_index`` times ``value``).
    Results are clipped to the lever's range at each dated point.
    """

    lever: str
    op: str
    start: str
    end: str
    value: float


@dataclass(frozen=True)
class RunRequest:
    """A validated request: scenario, scale, runs (seeds ``seed .. seed+runs-1``) and edits."""

    scenario: str
    scale: int = SCALE_DEFAULT
    runs: int = RUNS_DEFAULT
    seed: int = 1
    edits: tuple[LeverEdit, ...] = ()


# ------------------------------------------------------------------------------------------
# validation of what the browser sent


def form_fields() -> tuple[str, ...]:
    """Every key :func:`validate_request` accepts."""
    keys = ["scenario", "scale", "runs", "seed"]
    for lever in EDIT_LEVERS:
        keys += [f"{lever}.op", f"{lever}.from", f"{lever}.to", f"{lever}.value"]
    return tuple(keys)


def _text(name: str, raw: Any) -> str:
    if isinstance(raw, bool) or raw is None:
        raise InputError(name, f"expected a value, got {raw!r}")
    text = str(raw)
    if len(text) > FIELD_MAX_CHARS:
        raise InputError(name, f"too long ({len(text)} characters; at most {FIELD_MAX_CHARS})")
    return text.strip()


def _int(name: str, raw: Any, low: int, high: int) -> int:
    if isinstance(raw, bool):
        raise InputError(name, f"expected a whole number from {low} to {high}, got {raw!r}")
    if isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, int):
        value = raw
    else:
        text = _text(name, raw)
        if not _INT_TEXT.fullmatch(text):
            raise InputError(name, f"expected a whole number from {low} to {high}, got {text!r}")
        value = int(text)
    if not low <= value <= high:
        raise InputError(name, f"{value} is outside the allowed range {low} to {high}")
    return value


def _float(name: str, raw: Any, low: float, high: float, what: str) -> float:
    if isinstance(raw, bool):
        raise InputError(name, f"expected a number from {low:g} to {high:g} ({what}), got {raw!r}")
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        text = _text(name, raw)
        if not _FLOAT_TEXT.fullmatch(text):
            raise InputError(name, f"expected a number from {low:g} to {high:g} ({what}), got {text!r}")
        value = float(text)
    if not math.isfinite(value) or not low <= value <= high:
        raise InputError(name, f"{value!r} is outside the allowed range {low:g} to {high:g} ({what})")
    return value


def _month(name: str, raw: Any, first: int, last: int) -> str:
    text = _text(name, raw)
    if not _MONTH_TEXT.fullmatch(text):
        raise InputError(name, f"expected a month 'YYYY-MM', got {text!r}")
    try:
        month = parse_month(text)
    except ValueError as e:
        raise InputError(name, f"expected a month 'YYYY-MM' ({e})") from None
    if not first <= month <= last:
        raise InputError(name, f"{text} is outside the scenario's period "
                               f"{format_month(first)} to {format_month(last)}")
    return text


def validate_request(form: Mapping[str, Any]) -> RunRequest:
    """Check everything the browser sent and return a :class:`RunRequest`.

    ``form`` maps the keys of :func:`form_fields` to strings or numbers (missing edit keys
    mean "as in the scenario"). Raises :class:`InputError` naming the field and what was
    expected: an unknown key, a scenario that is not a built-in name (never a path), a scale,
    number of runs or seed out of bounds, a malformed or out-of-period date, a period that
    ends before it starts, or a value outside the lever's range.
    """
    if not isinstance(form, Mapping):
        raise InputError("(form)", f"expected a set of named fields, got {type(form).__name__}")
    allowed = set(form_fields())
    for key in form:
        if key not in allowed:
            shown = str(key)[:FIELD_MAX_CHARS]
            raise InputError(shown, "unknown field")
    name = _text("scenario", form.get("scenario", BASELINE))
    known = builtin_scenarios()
    if name not in known:  # only built-in names: a path from the browser is never opened
        raise InputError("scenario", f"unknown scenario {name!r}; expected one of: {', '.join(known)}")
    from talbuk.scenario import load_scenario

    try:
        scenario = load_scenario(name)
    except ScenarioError as e:  # pragma: no cover - the built-ins are tested elsewhere
        raise InputError("scenario", str(e)) from None
    scale = _int("scale", form.get("scale", SCALE_DEFAULT), SCALE_MIN, SCALE_MAX)
    runs = _int("runs", form.get("runs", RUNS_DEFAULT), RUNS_MIN, RUNS_MAX)
    seed = _int("seed", form.get("seed", 1), 0, SEED_MAX)
    edits = []
    first, last = scenario.start_month, scenario.end_month
    for lever in EDIT_LEVERS:
        op = _text(f"{lever}.op", form.get(f"{lever}.op", "history"))
        if op not in _OPS_FOR[lever]:
            raise InputError(f"{lever}.op", f"unknown change {op!r}; expected one of: "
                                            f"{', '.join(_OPS_FOR[lever])}")
        if op == "history":
            for part in ("from", "to", "value"):  # unused, but never oversized
                if f"{lever}.{part}" in form:
                    _text(f"{lever}.{part}", form[f"{lever}.{part}"])
            continue
        start = _month(f"{lever}.from", form.get(f"{lever}.from", ""), first, last)
        end = _month(f"{lever}.to", form.get(f"{lever}.to", ""), first, last)
        if parse_month(end) < parse_month(start):
            raise InputError(f"{lever}.to", f"{end} is before the start of the period {start}")
        spec = LEVERS[lever]
        if op == "set":
            value = _float(f"{lever}.value", form.get(f"{lever}.value", ""), spec.low, spec.high,
                           f"{lever}, {spec.unit}")
        elif op == "scale":
            value = _float(f"{lever}.value", form.get(f"{lever}.value", ""), 0.0, SCALE_FACTOR_MAX,
                           "a factor")
        else:
            value = _float(f"{lever}.value", form.get(f"{lever}.value", ""), 0.0, FAMINE_FACTOR_MAX,
                           "a factor on the food shortfall")
        edits.append(LeverEdit(lever, op, start, end, value))
    return RunRequest(scenario=name, scale=scale, runs=runs, seed=seed, edits=tuple(edits))


# ------------------------------------------------------------------------------------------
# building the edited scenario


def _transform(edit: LeverEdit, value: float) -> float:
    spec = LEVERS[edit.lever]
    if edit.op == "set":
        out = edit.value
    elif edit.op == "scale":
        out = value * edit.value
    elif edit.op == "famine":
        out = 1.0 - edit.value * (1.0 - value)
    else:  # pragma: no cover - validate_request refuses other ops
        raise ValueError(f"unknown op {edit.op!r}")
    return float(min(max(out, spec.low), spec.high))


def edit_points(scenario: Scenario, edit: LeverEdit) -> tuple[Point, ...]:
    """The lever's points with ``edit`` applied over ``[edit.start, edit.end]``.

    Outside the period the lever's monthly values are exactly as before: for a linear lever a
    point is pinned in the month before the period and the value resumes in the month after
    it, as ``replace_until`` does in scenario files. Inside the period ``set`` holds the
    value; ``scale`` and ``famine`` transform the value at the period's ends and at every
    point inside it (an affine change of a piecewise linear series, so exact unless clipped
    to the lever's range).
    """
    spec = LEVERS[edit.lever]
    points = scenario.timeline[edit.lever]
    m0, m1 = parse_month(edit.start), parse_month(edit.end)
    label = (f"set by hand in talbuk serve: {edit.lever} {OPS[edit.op]} {edit.value:g} "
             f"from {edit.start} to {edit.end}")
    by_month: dict[int, Point] = {p.month: p for p in points if p.month < m0 or p.month > m1}
    if spec.mode == "linear" and m0 > scenario.start_month and (m0 - 1) not in by_month:
        by_month[m0 - 1] = Point(format_month(m0 - 1), scenario.lever_value(edit.lever, m0 - 1),
                                 "history kept up to here (talbuk serve)")
    if m1 < scenario.end_month and (m1 + 1) not in by_month:
        by_month[m1 + 1] = Point(format_month(m1 + 1), scenario.lever_value(edit.lever, m1 + 1),
                                 "history resumes here (talbuk serve)")
    inside = [m0] if edit.op == "set" else [m0] + [p.month for p in points if m0 < p.month <= m1]
    if spec.mode == "linear":
        inside.append(m1)
    for m in inside:
        by_month[m] = Point(format_month(m), _transform(edit, scenario.lever_value(edit.lever, m)),
                            label)
    return tuple(by_month[m] for m in sorted(by_month))


def apply_edits(scenario: Scenario, edits: tuple[LeverEdit, ...] | list[LeverEdit]) -> Scenario:
    """The scenario with the edits applied, validated again by loading its TOML.

    The name gets a ``+edited`` suffix when there are edits. Raises :class:`InputError` if the
    result is not a valid scenario (it always is for edits from :func:`validate_request`).
    """
    if not edits:
        return scenario
    timeline = dict(scenario.timeline)
    seen = set()
    for edit in edits:
        if edit.lever not in EDIT_LEVERS or edit.lever in seen:
            raise InputError(edit.lever, "each of the explorer's levers can be edited once")
        seen.add(edit.lever)
        # each lever is edited against the scenario as loaded: edits of different levers commute
        timeline[edit.lever] = edit_points(scenario, edit)
    what = "; ".join(f"{e.lever} {OPS[e.op]} {e.value:g} from {e.start} to {e.end}" for e in edits)
    edited = dataclasses.replace(scenario, name=f"{scenario.name}+edited",
                                 description=f"{scenario.description} (edited in talbuk serve: {what})",
                                 timeline=timeline, extends=None, source_file="talbuk serve")
    from talbuk.scenario import scenario_from_toml

    try:
        return scenario_from_toml(edited.to_toml(), file="(edited scenario)")
    except ScenarioError as e:  # pragma: no cover - defensive: edits are validated first
        raise InputError(e.key, e.problem) from None


# ------------------------------------------------------------------------------------------
# running


@dataclass
class Outcome:
    """What one request produced: per-run annual values for the scenario and the baseline."""

    request: RunRequest
    scenario: Scenario
    reference: Scenario
    annual: pd.DataFrame  # which (scenario | baseline), run, seed, year, arrivals, arrivals_expected, excess_deaths
    motives: pd.DataFrame  # which, run, stage (arrived | decided), year, generation, people, pulled
    seconds: float = 0.0
    baseline_from_cache: int = 0
    pngs: dict[str, bytes] = field(default_factory=dict)  # drawn in the worker thread


@dataclass
class JobStatus:
    """A snapshot of the runner's current or last job (safe to read from any thread)."""

    job_id: int = 0
    owner: str = ""
    running: bool = False
    fraction: float = 0.0
    message: str = ""
    error: str = ""
    outcome: Outcome | None = None
    started: float = 0.0


class RunTimeout(RuntimeError):
    """A request ran past the server's time limit."""


_ANNUAL_COLUMNS = ("arrivals", "arrivals_expected", "excess_deaths")


@dataclass
class Runner:
    """Runs one request at a time in a background thread; caches baseline runs.

    ``threads`` is numba's thread count for the runs (results do not depend on it);
    ``timeout`` the seconds one request may take in all; ``cache_size`` the number of
    baseline runs (one per scale and seed) kept in memory.
    """

    threads: int | None = None
    timeout: float = TIMEOUT_DEFAULT
    cache_size: int = 32
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _status: JobStatus = field(default_factory=JobStatus, repr=False)
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _sim_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def warm_up(self) -> threading.Thread:
        """Load numba's compiled kernels in the background (two years of a tiny run), so that
        the first request does not pay for it; a request waits for this to finish."""
        def work():
            from talbuk.sim import Sim

            with self._sim_lock:
                try:
                    Sim(BASELINE, scale=SCALE_MAX, seed=0, threads=self.threads).run(until=24)
                except Exception:  # pragma: no cover - the first request would show the error
                    traceback.print_exc(file=sys.stderr)

        thread = threading.Thread(target=work, name="talbuk-warm-up", daemon=True)
        thread.start()
        return thread

    def status(self) -> JobStatus:
        with self._lock:
            return dataclasses.replace(self._status)

    def submit(self, request: RunRequest, owner: str = "") -> int:
        """Start ``request`` in the background and return its job id; :class:`Busy` if one runs."""
        if not isinstance(request, RunRequest):
            raise TypeError("submit takes a RunRequest from validate_request")
        with self._lock:
            if self._status.running:
                done = int(100 * self._status.fraction)
                raise Busy(f"a run is already in progress on this server ({done}% done); "
                           "wait for it to finish, then press Run again")
            job_id = self._status.job_id + 1
            self._status = JobStatus(job_id=job_id, owner=owner, running=True,
                                     message="starting", started=time.monotonic())
            self._thread = threading.Thread(target=self._work, args=(job_id, request),
                                            name=f"talbuk-run-{job_id}", daemon=True)
            self._thread.start()
        return job_id

    def wait(self, timeout: float | None = None) -> JobStatus:
        """Block until the current job ends (for tests and scripts)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.status()

    def stop(self) -> None:
        """Abort the current job at the end of its month."""
        self._stop.set()
        self.wait(30)
        self._stop.clear()

    def _set(self, **changes) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(self._status, k, v)

    def _work(self, job_id: int, request: RunRequest) -> None:
        try:
            with self._sim_lock:  # after the warm-up, if it is still running
                outcome = self._execute(request, time.monotonic())
        except RunTimeout:
            self._set(running=False, error=f"the run took longer than the server's limit of "
                                           f"{self.timeout:g} s and was stopped; try a larger scale "
                                           "(fewer agents) or fewer runs", message="stopped")
        except InputError as e:
            self._set(running=False, error=str(e), message="refused")
        except Exception as e:  # shown in the page as one line; the traceback goes to the log
            traceback.print_exc(file=sys.stderr)
            self._set(running=False, error=f"the run failed: {type(e).__name__}: {e}",
                      message="failed")
        else:
            try:  # drawn here, not in the server's event loop, which stays responsive
                outcome.pngs = {"arrivals": render_png(arrivals_figure(outcome)),
                                "motives": render_png(motives_figure(outcome))}
            except Exception as e:
                traceback.print_exc(file=sys.stderr)
                self._set(running=False, error=f"could not draw the results: {type(e).__name__}: {e}",
                          message="failed")
                return
            self._set(running=False, fraction=1.0, outcome=outcome,
                      message=f"done in {outcome.seconds:.1f} s")

    def _execute(self, request: RunRequest, t0: float) -> Outcome:
        from talbuk.scenario import load_scenario
        from talbuk.sim import Sim

        reference = load_scenario(BASELINE)
        scenario = apply_edits(load_scenario(request.scenario), request.edits)
        deadline = t0 + self.timeout
        jobs = []  # (which, run, scenario, cache key or None)
        for r in range(request.runs):
            key = (reference.hash(), request.scale, request.seed + r)
            jobs.append(("baseline", r, reference, key))
            jobs.append(("scenario", r, scenario, None))
        months = reference.n_months + scenario.n_months
        total = request.runs * months
        done_months = 0
        annual, mots = [], []
        from_cache = 0
        for which, r, sc, key in jobs:
            seed = request.seed + r
            cached = None
            if key is not None:
                with self._lock:
                    cached = self._cache.get(key)
                    if cached is not None:
                        self._cache.move_to_end(key)
            if cached is not None:
                a, m = cached
                from_cache += 1
                done_months += sc.n_months
            else:
                base_done = done_months
                label = f"run {r + 1} of {request.runs}: {'baseline' if which == 'baseline' else sc.name}"

                def progress(sim, base_done=base_done, label=label):
                    if self._stop.is_set() or time.monotonic() > deadline:
                        raise RunTimeout()
                    self._set(fraction=(base_done + sim.t_index) / total,
                              message=f"{label}, {sim.describe_month()}")

                sim = Sim(sc, scale=request.scale, seed=seed, threads=self.threads)
                res = sim.run(progress=progress)
                a = res.annual[["year", *[c for c in _ANNUAL_COLUMNS if c in res.annual]]].copy()
                mgy = sc.params["economy"].market_gen_birth_year if "economy" in sc.params else 1985
                m = motives_table(res, mgy)
                done_months += sc.n_months
                if key is not None:
                    with self._lock:
                        self._cache[key] = (a, m)
                        while len(self._cache) > self.cache_size:
                            self._cache.popitem(last=False)
            annual.append(a.assign(which=which, run=r, seed=seed))
            mots.append(m.assign(which=which, run=r))
        return Outcome(request=request, scenario=scenario, reference=reference,
                       annual=pd.concat(annual, ignore_index=True),
                       motives=pd.concat(mots, ignore_index=True),
                       seconds=time.monotonic() - t0, baseline_from_cache=from_cache)


def motives_table(results, market_gen_birth_year: int = 1985) -> pd.DataFrame:
    """People mainly pulled (pull > push) by year and generation, for two groups.

    ``arrived``: arrivals in South Korea by year of arrival (:func:`talbuk.compare.motives`);
    ``decided``: everyone who decided to leave, by year of decision, with the same rule. At a
    reduced scale there are about five times more deciders than arrivals, so their share is
    less rough. Columns: stage, year, generation, people, pulled (in people).
    """
    from talbuk.compare import motives

    cols = ["stage", "year", "generation", "people", "pulled"]
    m = motives(results, market_gen_birth_year)
    arrived = m[m["generation"] != "all"].rename(columns={"arrivals": "people"}).assign(stage="arrived")
    parts = [arrived[cols]] if len(arrived) else []
    d = results.tables.get("defectors")
    if d is not None and len(d) and "decided" in d:
        dec = d[d["decided"].notna() & (d["decided"].astype(str) != "")]
        if len(dec):
            gen = np.where(dec["birth_year"] >= market_gen_birth_year, "market generation",
                           "grew up before the famine")
            w = dec["weight"].to_numpy(dtype=float)
            frame = pd.DataFrame({"year": dec["decided"].astype(str).str.slice(0, 4).astype(int).to_numpy(),
                                  "generation": gen, "people": w,
                                  "pulled": w * (dec["pull"] > dec["push"]).to_numpy()})
            frame = frame.groupby(["year", "generation"], as_index=False)[["people", "pulled"]].sum()
            parts.append(frame.assign(stage="decided")[cols])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


# ------------------------------------------------------------------------------------------
# figures and summary

_COLOURS = {"baseline": "#555555", "scenario": "#c0392b"}
_RECORD_SOURCE = ("Recorded arrivals: Ministry of Unification and earlier official counts "
                  "(talbuk/data/arrivals_rok.csv, source on every row).")


def _record() -> pd.DataFrame:
    from talbuk.population import read_data

    return read_data("arrivals_rok.csv")


def _model_note(outcome: Outcome) -> str:
    from talbuk import __version__

    r = outcome.request
    seeds = f"seed {r.seed}" if r.runs == 1 else f"seeds {r.seed}-{r.seed + r.runs - 1}"
    return (f"Model: talbuk {__version__}, 1 agent per {r.scale:,} people, {seeds}; "
            f"baseline run with the same seeds (common random numbers).")


def totals(outcome: Outcome, years: tuple[int, int] = SUMMARY_YEARS) -> dict[str, dict[str, float]]:
    """Mean over runs of arrivals (expected and sampled) summed over ``years``, by scenario."""
    a = outcome.annual[outcome.annual["year"].between(*years)]
    out = {}
    for which, g in a.groupby("which"):
        per_run = g.groupby("run")[[c for c in _ANNUAL_COLUMNS if c in g]].sum()
        out[str(which)] = {c: float(per_run[c].mean()) for c in per_run.columns}
    return out


def summary_markdown(outcome: Outcome) -> str:
    """A short text summary: totals 2000-2019 for the scenario and the baseline."""
    lo, hi = SUMMARY_YEARS
    t = totals(outcome)
    s, b = t["scenario"], t["baseline"]
    rec = _record()
    recorded = int(rec[rec["year"].between(lo, hi)]["arrivals"].sum())
    diff = s["arrivals_expected"] - b["arrivals_expected"]
    pct = f" ({diff / b['arrivals_expected']:+.0%})" if b["arrivals_expected"] > 0 else ""
    runs = outcome.request.runs
    lines = [
        f"**Arrivals in South Korea {lo}-{hi}** (expected, mean of {runs} run{'s' if runs > 1 else ''}):",
        "",
        f"- scenario `{outcome.scenario.name}`: **{s['arrivals_expected']:,.0f}** people",
        f"- baseline: **{b['arrivals_expected']:,.0f}** people",
        f"- difference: **{diff:+,.0f}**{pct}",
        f"- recorded: {recorded:,} (arrivals_rok.csv: Ministry of Unification and earlier official counts)",
        "",
        f"Sampled arrivals (each agent counts {outcome.request.scale:,} people): scenario "
        f"{s['arrivals']:,.0f}, baseline {b['arrivals']:,.0f}.",
    ]
    if "excess_deaths" in s:
        whole = totals(outcome, (1990, 2025))
        lines.append(f"Excess deaths from hunger 1990-2025: scenario "
                     f"{whole['scenario']['excess_deaths']:,.0f}, baseline "
                     f"{whole['baseline']['excess_deaths']:,.0f}.")
    lines.append("")
    lines.append(f"Ran in {outcome.seconds:.1f} s ({outcome.baseline_from_cache} baseline "
                 f"run{'s' if outcome.baseline_from_cache != 1 else ''} from the cache).")
    return "\n".join(lines)


def render_png(fig, dpi: int = 90) -> bytes:
    """The figure as PNG bytes."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


@functools.cache
def _initial_pngs() -> dict[str, bytes]:
    """The page's figures before any run (drawn once per server)."""
    base = _load(BASELINE)
    return {"arrivals": render_png(arrivals_figure(None)), "motives": render_png(motives_figure(None)),
            "levers": render_png(levers_figure(base, base))}


def _new_figure(width: float, height: float, ncols: int = 1, nrows: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def arrivals_figure(outcome: Outcome | None):
    """Arrivals by year: the record, the baseline and the edited scenario (log scale)."""
    rec = _record()
    fig, axes = _new_figure(8.5, 4.4)
    ax = axes[0, 0]
    ax.plot(rec["year"], rec["arrivals"], "o", color="black", ms=4,
            label="recorded (Ministry of Unification)")
    if outcome is not None:
        a = outcome.annual
        for which in ("baseline", "scenario"):
            g = a[a["which"] == which]
            name = "baseline" if which == "baseline" else f"scenario: {outcome.scenario.name}"
            exp = g.groupby("year")["arrivals_expected"]
            mean = exp.mean()
            ax.plot(mean.index, mean.to_numpy(), lw=2.2, color=_COLOURS[which],
                    ls="--" if which == "baseline" else "-", label=f"{name}, expected")
            if outcome.request.runs > 1:
                ax.fill_between(mean.index, exp.min().to_numpy(), exp.max().to_numpy(),
                                color=_COLOURS[which], alpha=0.15, lw=0)
            sampled = g.groupby("year")["arrivals"].mean()
            ax.plot(sampled.index, sampled.to_numpy(), lw=0.8, color=_COLOURS[which], alpha=0.5,
                    marker=".", ms=3, ls=":", label=f"{name}, sampled")
        runs = outcome.request.runs
        band = f"; band: lowest to highest of {runs} runs" if runs > 1 else ""
        ax.set_title(f"Arrivals in South Korea, model and record{band}", fontsize=10)
        fig.text(0.0, -0.04, _model_note(outcome), fontsize=7, ha="left", va="top")
    else:
        ax.set_title("Arrivals in South Korea, record (press Run to add the model)", fontsize=10)
    ax.set_yscale("symlog", linthresh=100)
    ax.set_ylim(0, None)
    ax.set_xlim(1989.5, 2025.5)
    ax.set_xlabel("year of arrival")
    ax.set_ylabel("arrivals (people per year; log scale above 100)")
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=7, loc="upper left")
    fig.text(0.0, -0.09 if outcome is not None else -0.04, _RECORD_SOURCE, fontsize=7,
             ha="left", va="top")
    return fig


PERIODS = ((1990, 1999), (2000, 2009), (2010, 2019), (2020, 2025))


def motives_figure(outcome: Outcome | None):
    """Share mainly pulled (pull > push) by period and generation: arrivals and deciders."""
    fig, axes = _new_figure(8.5, 5.6, ncols=2, nrows=2)
    gens = ("grew up before the famine", "market generation")
    stages = (("arrived", "arrived in South Korea", "period of arrival"),
              ("decided", "decided to leave", "period of decision"))
    labels = [f"{lo}-{hi % 100:02d}" for lo, hi in PERIODS]
    x = np.arange(len(PERIODS))
    for row, (stage, what, xlabel) in enumerate(stages):
        for ax, gen in zip(axes[row], gens, strict=True):
            ax.set_title(f"{what}: {gen}", fontsize=9)
            ax.set_xticks(x, labels, fontsize=8)
            ax.set_ylim(0, 1.1)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel("share mainly pulled", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(axis="y", alpha=0.3)
            if outcome is None:
                continue
            m = outcome.motives
            for k, which in enumerate(("baseline", "scenario")):
                g = m[(m["which"] == which) & (m["stage"] == stage) & (m["generation"] == gen)]
                shares, counts = [], []
                for lo, hi in PERIODS:
                    sel = g[g["year"].between(lo, hi)]
                    people = float(sel["people"].sum())
                    shares.append(float(sel["pulled"].sum()) / people if people > 0 else np.nan)
                    counts.append(int(round(people / outcome.request.scale)))
                pos = x + (k - 0.5) * 0.38
                ax.bar(pos, np.nan_to_num(shares), width=0.36, color=_COLOURS[which],
                       alpha=0.85 if which == "scenario" else 0.5,
                       label="baseline" if which == "baseline" else f"scenario: {outcome.scenario.name}")
                for p, s, n in zip(pos, shares, counts, strict=True):
                    ax.text(p, (0 if np.isnan(s) else s) + 0.02, f"n={n}", ha="center", fontsize=6)
    if outcome is not None:
        axes[0, 0].legend(frameon=False, fontsize=7, loc="upper left")
        fig.suptitle("Why they left: share mainly pulled (desire: media, kin abroad, markets) "
                     "rather than pushed (hunger, losses, punishment), by generation", fontsize=9)
        fig.text(0.0, -0.02, _model_note(outcome) + "\nn = simulated people (agents) in the bar; "
                 "few agents mean a rough share (use a smaller scale or more runs).",
                 fontsize=7, ha="left", va="top")
        fig.text(0.0, -0.07, "Source: model output (talbuk.compare.motives for arrivals; the same "
                 "pull > push rule for everyone who decided to leave).\nMarket generation: born in "
                 "or after the economy module's market_gen_birth_year (1985).",
                 fontsize=7, ha="left", va="top")
    else:
        fig.suptitle("Why they left (press Run)", fontsize=10)
    return fig


def levers_figure(reference: Scenario, edited: Scenario):
    """The four editable levers, month by month: baseline history and the edited scenario."""
    fig, axes = _new_figure(8.5, 4.2, ncols=2, nrows=2)
    months = np.arange(edited.start_month, edited.end_month + 1)
    years = 1900 + months / 12.0
    ref = reference.lever_series(edited.start_month, len(months))
    new = edited.lever_series(edited.start_month, len(months))
    for ax, lever in zip(axes.ravel(), EDIT_LEVERS, strict=True):
        spec = LEVERS[lever]
        ax.plot(years, ref[lever], color=_COLOURS["baseline"], ls="--", lw=1.5, label="baseline")
        ax.plot(years, new[lever], color=_COLOURS["scenario"], lw=1.5,
                label=f"scenario: {edited.name}")
        ax.set_title(f"{LEVER_TITLES[lever]} ({lever})", fontsize=9)
        ax.set_ylabel(f"{spec.unit}, {spec.low:g}-{spec.high:g}", fontsize=8)
        ax.set_ylim(spec.low - 0.03 * (spec.high - spec.low), spec.high + 0.03 * (spec.high - spec.low))
        ax.set_xlabel("year", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(frameon=False, fontsize=7)
    fig.suptitle("The levers as simulated (month by month)", fontsize=10)
    fig.text(0.0, -0.03, "Source: the scenarios' timelines (talbuk/scenarios/*.toml, a source on "
             "every point); edits are labelled 'set by hand in talbuk serve'.", fontsize=7,
             ha="left", va="top")
    return fig


# ------------------------------------------------------------------------------------------
# the page


def _intro() -> str:
    return (
        "## talbuk explorer: change the history, watch the consequences\n"
        "Pick a scenario, change a lever over a period, and press **Run**. The model runs at a "
        "reduced scale (1 agent per *scale* people) for the edited scenario and for the "
        "`baseline` with the same seeds, so the difference between them is the effect of your "
        "change, not luck. *Expected* arrivals are the sum of every agent's probability "
        "(low noise); *sampled* arrivals are the agents who actually arrived, times the scale. "
        f"Limits: scale {SCALE_MIN:,}-{SCALE_MAX:,}, {RUNS_MIN}-{RUNS_MAX} runs, one run at a "
        "time on this server. See docs/explorer.md."
    )


def build_app(runner: Runner, *, poll_ms: int = 300):
    """One browser session's page; all sessions share ``runner`` (one run at a time)."""
    import panel as pn

    scenarios = builtin_scenarios()
    scenario_w = pn.widgets.Select(label="Scenario", options=list(scenarios), value=BASELINE,
                                   width=260, css_classes=["tb-scenario"])
    scenario_desc = pn.pane.Markdown(scenarios.get(BASELINE, ""), width=260,
                                     styles={"font-size": "12px"})
    scale_w = pn.widgets.TextInput(label=f"Scale (people per agent, {SCALE_MIN}-{SCALE_MAX})",
                                   value=str(SCALE_DEFAULT), width=260, css_classes=["tb-scale"])
    runs_w = pn.widgets.TextInput(label=f"Runs (seeds SEED..SEED+RUNS-1, {RUNS_MIN}-{RUNS_MAX})",
                                  value=str(RUNS_DEFAULT), width=260, css_classes=["tb-runs"])
    seed_w = pn.widgets.TextInput(label="Seed", value="1", width=260, css_classes=["tb-seed"])

    lever_widgets: dict[str, dict[str, Any]] = {}
    lever_rows = []
    for lever in EDIT_LEVERS:
        spec = LEVERS[lever]
        d = EDIT_DEFAULTS[lever]
        ops = {OPS[o]: o for o in _OPS_FOR[lever]}
        w = {
            "op": pn.widgets.Select(label="change", options=ops, value="history", width=250,
                                    css_classes=[f"tb-{lever}-op"]),
            "from": pn.widgets.TextInput(label="from (YYYY-MM)", value=d["from"], width=95,
                                         css_classes=[f"tb-{lever}-from"]),
            "to": pn.widgets.TextInput(label="to (YYYY-MM)", value=d["to"], width=95,
                                       css_classes=[f"tb-{lever}-to"]),
            "value": pn.widgets.TextInput(label="value", value=d["value"], width=70,
                                          css_classes=[f"tb-{lever}-value"]),
        }
        lever_widgets[lever] = w
        lever_rows.append(pn.pane.Markdown(
            f"**{LEVER_TITLES[lever]}** (`{lever}`, {spec.unit} {spec.low:g}-{spec.high:g}): "
            f"{spec.description}", width=540, styles={"font-size": "12px"}, margin=(8, 5, 0, 5)))
        lever_rows.append(pn.Row(w["op"], w["from"], w["to"], w["value"]))

    run_w = pn.widgets.Button(label="Run", button_type="primary", width=120,
                              css_classes=["tb-run"])
    progress_w = pn.indicators.Progress(value=0, max=100, width=400,
                                        bar_color="primary", css_classes=["tb-progress"])
    status_w = pn.pane.Markdown("Ready.", width=540, css_classes=["tb-status"])
    alert_w = pn.pane.Alert("", alert_type="danger", visible=False, width=540,
                            css_classes=["tb-error"])
    summary_w = pn.pane.Markdown("Press **Run** to compare your scenario with the baseline.",
                                 width=560, css_classes=["tb-summary"])
    first = _initial_pngs()
    arrivals_w = pn.pane.PNG(first["arrivals"], width=820, css_classes=["tb-arrivals"])
    motives_w = pn.pane.PNG(first["motives"], width=820, css_classes=["tb-motives"])
    levers_w = pn.pane.PNG(first["levers"], width=820, css_classes=["tb-levers"])

    session = {"job": 0, "shown": 0}
    owner = f"session-{id(session)}"

    def show_error(message: str) -> None:
        alert_w.object = message
        alert_w.visible = True

    def form() -> dict[str, Any]:
        out = {"scenario": scenario_w.value, "scale": scale_w.value, "runs": runs_w.value,
               "seed": seed_w.value}
        for lever, w in lever_widgets.items():
            for part, widget in w.items():
                out[f"{lever}.{part}"] = widget.value
        return out

    def on_scenario(event) -> None:
        scenario_desc.object = scenarios.get(event.new, "")

    def on_run(event) -> None:
        alert_w.visible = False
        try:
            request = validate_request(form())
            edited = apply_edits(_load(request.scenario), request.edits)
            session["job"] = runner.submit(request, owner=owner)
        except (InputError, Busy) as e:
            show_error(str(e))
            return
        except Exception as e:  # never a stack trace in the page
            traceback.print_exc(file=sys.stderr)
            show_error(f"could not start the run: {type(e).__name__}: {e}")
            return
        levers_w.object = render_png(levers_figure(_load(BASELINE), edited))
        progress_w.value = 0
        status_w.object = "Starting..."

    def poll() -> None:
        try:
            st = runner.status()
            if st.running:
                progress_w.value = int(100 * st.fraction)
                mine = st.job_id == session["job"]
                status_w.object = (st.message if mine else
                                   f"Another window is running the model ({int(100 * st.fraction)}%).")
                run_w.disabled = True
                return
            run_w.disabled = False
            if st.job_id != session["job"] or session["shown"] == st.job_id:
                return
            session["shown"] = st.job_id
            if st.error:
                status_w.object = st.message or "failed"
                show_error(st.error)
                return
            progress_w.value = 100
            outcome = st.outcome
            summary_w.object = summary_markdown(outcome)
            arrivals_w.object = outcome.pngs["arrivals"]
            motives_w.object = outcome.pngs["motives"]
            status_w.object = f"Done: {st.message}."
        except Exception as e:  # never a stack trace in the page
            traceback.print_exc(file=sys.stderr)
            show_error(f"could not show the results: {type(e).__name__}: {e}")

    scenario_w.param.watch(on_scenario, "value")
    run_w.on_click(on_run)
    pn.state.add_periodic_callback(poll, period=poll_ms)

    controls = pn.Column(
        pn.pane.Markdown("### Scenario and run"), scenario_w, scenario_desc,
        scale_w, runs_w, seed_w,
        pn.pane.Markdown("### Levers (each over a period; 'as in the scenario' leaves it alone)"),
        *lever_rows,
        pn.Row(run_w, progress_w), status_w, alert_w, width=580,
    )
    results = pn.Column(summary_w, arrivals_w, motives_w, levers_w)
    return pn.Column(pn.pane.Markdown(_intro(), width=1400), pn.Row(controls, results))


_SCENARIO_CACHE: dict[str, Scenario] = {}


def _load(name: str) -> Scenario:
    from talbuk.scenario import load_scenario

    if name not in _SCENARIO_CACHE:
        _SCENARIO_CACHE[name] = load_scenario(name)
    return _SCENARIO_CACHE[name]


# ------------------------------------------------------------------------------------------
# the server


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_server_options(host: str, port: int, timeout: float, threads: int | None) -> None:
    """Raise :class:`InputError` for a bad ``--host``, ``--port``, ``--timeout`` or ``--threads``."""
    if not host or len(host) > 253 or not re.fullmatch(r"[A-Za-z0-9.:\-]+", host):
        raise InputError("--host", f"expected an IP address or host name, got {host!r}")
    if not 1 <= port <= 65535:
        raise InputError("--port", f"expected a port from 1 to 65535, got {port}")
    if not TIMEOUT_MIN <= timeout <= TIMEOUT_MAX:
        raise InputError("--timeout", f"expected {TIMEOUT_MIN:g} to {TIMEOUT_MAX:g} seconds, got {timeout:g}")
    if threads is not None and threads < 1:
        raise InputError("--threads", f"must be at least 1, got {threads}")


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, threads: int | None = None,
          timeout: float = TIMEOUT_DEFAULT, show: bool = False,
          announce: Callable[[str], None] = print) -> None:
    """Serve the explorer until interrupted; bound to 127.0.0.1 unless ``host`` says otherwise."""
    check_server_options(host, port, timeout, threads)
    import panel as pn

    runner = Runner(threads=threads, timeout=timeout)
    runner.warm_up()
    if is_loopback(host):
        origins = [f"localhost:{port}", f"127.0.0.1:{port}"]
    elif host in ("0.0.0.0", "::"):
        origins = ["*"]
    else:
        origins = [f"{host}:{port}"]
    server = pn.serve({"/": lambda: build_app(runner)}, port=port, address=host,
                      websocket_origin=origins, show=False, start=False, title="talbuk explorer",
                      verbose=False, warm=True)  # warm: imports and first figures before serving
    shown = f"[{host}]" if ":" in host else host
    announce(f"talbuk explorer: http://{shown}:{port}/  (Ctrl+C to stop)")
    if show:
        server.io_loop.add_callback(server.show, "/")
    try:
        server.start()
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        runner.stop()


def cli_serve(*, host: str, port: int, threads: int | None, timeout: float, show: bool) -> None:
    """``talbuk serve``: check the options (one line and exit status 2 if bad), warn, serve."""
    from talbuk.cli import _fail, err

    try:
        check_server_options(host, port, timeout, threads)
    except InputError as e:
        _fail(str(e))
    try:
        import panel  # noqa: F401
    except ImportError:
        _fail("talbuk serve needs Panel: install the web extra (pip install 'talbuk[web]')")
    if not is_loopback(host):
        err.print(f"[bold yellow]warning:[/] listening on {host}: anyone who can reach this "
                  f"machine on port {port} can use the explorer and run simulations on it "
                  "(there is no login)", highlight=False, soft_wrap=True)
    try:
        serve(host, port, threads=threads, timeout=timeout, show=show,
              announce=lambda line: err.print(line, highlight=False, soft_wrap=True))
    except OSError as e:  # port in use, address not on this machine
        _fail(f"--host/--port: cannot listen on {host}:{port} ({e.strerror or e})")
