"""Results as tidy tables, and the run folder: Parquet tables, manifest, resolved scenario.

A run folder holds:

* ``scenario.toml``: the resolved scenario (no ``extends``), enough to rerun;
* ``manifest.json``: package version, seed, scale, threads, scenario and data hashes, timings;
* ``monthly.parquet``, ``annual.parquet``: one row per month / year, outputs in people;
* ``province_annual.parquet``: one row per year and province;
* one Parquet file per event table (``defectors.parquet`` ...).

Folders are written atomically: everything goes into a temporary sibling folder that is
renamed into place at the end, so a crash never leaves a half-written run and an existing
run is replaced only with ``force`` and only once the new one is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from talbuk.calendar import format_month
from talbuk.files import file_sha256
from talbuk.population import PROVINCE_NAMES


@dataclass
class Results:
    """What a run produced, as pandas tables (all counts in people)."""

    monthly: pd.DataFrame
    annual: pd.DataFrame
    province_annual: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)

    @classmethod
    def from_sim(cls, sim) -> Results:
        n = sim.t_index
        months = np.arange(sim.start_month, sim.start_month + n)
        monthly = pd.DataFrame({"month": [format_month(m) for m in months],
                                "year": months // 12 + 1900})
        for name, values in sim.monthly.items():
            monthly[name] = values[:n]
        annual = _annualise(monthly, {k: o.kind for k, o in sim._outputs.items()})
        rows = []
        years = months // 12 + 1900
        for name, values in sim.monthly_province.items():
            kind = sim._province_outputs[name].kind
            for y in np.unique(years):
                sel = years == y
                agg = values[:n][sel]
                vals = agg.sum(axis=0) if kind == "flow" else (agg[-1] if kind == "stock" else agg.mean(axis=0))
                for p, v in enumerate(vals):
                    rows.append((int(y), PROVINCE_NAMES[p], name, float(v)))
        if rows:
            long = pd.DataFrame(rows, columns=["year", "province", "name", "value"])
            province_annual = long.pivot_table(index=["year", "province"], columns="name",
                                               values="value", sort=False).reset_index()
            province_annual.columns.name = None
        else:
            province_annual = pd.DataFrame({"year": [], "province": []})
        tables = {}
        for table, chunks in sim.tables.items():
            if chunks:
                # columns named with a leading underscore are internal (for example a
                # person's row in the table that month, which a reordering changes)
                tables[table] = pd.DataFrame({k: np.concatenate([c[k] for c in chunks])
                                              for k in chunks[0] if not k.startswith("_")})
        for m in sim.modules:
            finish = getattr(m, "finish_tables", None)
            if finish is not None:
                tables.update(finish(sim))
        return cls(monthly=monthly, annual=annual, province_annual=province_annual,
                   tables=tables, manifest=build_manifest(sim))


def _annualise(monthly: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    groups = monthly.groupby("year", sort=True)
    out = pd.DataFrame({"year": np.array(list(groups.groups.keys()), dtype=np.int64)})
    out["months"] = groups.size().to_numpy()
    for name, kind in kinds.items():
        if kind == "flow":
            out[name] = groups[name].sum().to_numpy()
        elif kind == "stock":
            out[name] = groups[name].last().to_numpy()
        else:
            out[name] = groups[name].mean().to_numpy()
    return out


def data_hashes() -> dict[str, str]:
    """sha256 of every data file shipped with the package."""
    out = {}
    for entry in sorted(resources.files("talbuk").joinpath("data").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".csv"):
            out[entry.name] = hashlib.sha256(entry.read_bytes()).hexdigest()
    return out


def build_manifest(sim) -> dict:
    import numba

    from talbuk import __version__

    manifest = {
        "package": "talbuk",
        "version": __version__,
        "scenario": sim.scenario.name,
        "scenario_hash": sim.scenario.hash(),
        "seed": sim.seed,
        "scale": sim.scale,
        "threads": sim.threads,
        "reorder_every_months": sim.reorder_every,
        "start": format_month(sim.start_month),
        "end": format_month(sim.end_month),
        "months_simulated": int(sim.t_index),
        "agents_initial": int(sim.initial_persons),
        "agents_ever": int(sim.next_uid),
        "agents_in_table": int(sim.persons.n),
        "households": int(sim.households.n),
        "state_bytes": int(sim.persons.nbytes() + sim.households.nbytes()),
        "data_sha256": data_hashes(),
        "timings_seconds": {"setup": round(sim.setup_seconds, 3),
                            **{k: round(v, 3) for k, v in sim.phase_seconds.items()}},
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "numba": numba.__version__, "pandas": pd.__version__},
        "cpu": cpu_description(),
        "command": " ".join(sys.argv) if sys.argv else "",
    }
    info = getattr(sim.scenario, "posterior_info", None)
    if info is not None:  # calibrated parameters applied at load (scenario key ``posterior``)
        manifest["posterior"] = {"path": info["path"], "sha256": info["sha256"], "rule": info["rule"],
                                 "point": info.get("point"), "values": info.get("values")}
    return manifest


def cpu_description() -> dict:
    """The processor the run ran on, for the manifest and the benchmarks' records: timings
    are only comparable on the same kind of CPU (the same code took 1.5 times as long on two
    machines of one description; docs/performance.md). On Linux, from the first processor of
    ``/proc/cpuinfo``: vendor, model name, family and model numbers, whether it has AVX-512
    (numba compiles for the host, so the code run differs with it), and the logical CPUs;
    elsewhere ``platform.processor()`` and the CPU count."""
    out = {"name": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return out
    first: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            first[key.strip()] = value.strip()
    keys = {"vendor_id": "vendor", "model name": "name", "cpu family": "family", "model": "model"}
    for k, name in keys.items():
        if k in first:
            out[name] = int(first[k]) if name in ("family", "model") and first[k].isdigit() else first[k]
    if "flags" in first:
        out["avx512"] = "avx512f" in first["flags"].split()
    return out


def atomic_folder(out_dir: Path, *, force: bool) -> Path:
    """A fresh temporary folder beside ``out_dir``; commit it with :func:`commit_folder`."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise FileExistsError(f"{out_dir}: run folder exists; use --force to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))


def commit_folder(tmp: Path, out_dir: Path) -> None:
    """Move a finished temporary folder into place; an old run is removed only after."""
    out_dir = Path(out_dir)
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_results(results: Results, scenario_toml: str, out_dir: Path, *, force: bool = False,
                  extra_manifest: dict | None = None) -> Path:
    """Write a run folder atomically and return its path."""
    out_dir = Path(out_dir)
    tmp = atomic_folder(out_dir, force=force)
    try:
        (tmp / "scenario.toml").write_text(scenario_toml)
        results.monthly.to_parquet(tmp / "monthly.parquet", index=False)
        results.annual.to_parquet(tmp / "annual.parquet", index=False)
        results.province_annual.to_parquet(tmp / "province_annual.parquet", index=False)
        for name, df in results.tables.items():
            df.to_parquet(tmp / f"{name}.parquet", index=False)
        manifest = dict(results.manifest)
        manifest.update(extra_manifest or {})
        manifest["files_sha256"] = {p.name: file_sha256(p) for p in sorted(tmp.iterdir())}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        commit_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def read_run(run_dir: Path) -> Results:
    """Load a run folder written by :func:`write_results`."""
    run_dir = Path(run_dir)
    if not (run_dir / "manifest.json").exists():
        raise FileNotFoundError(f"{run_dir}: not a talbuk run folder (no manifest.json)")
    tables = {p.stem: pd.read_parquet(p) for p in run_dir.glob("*.parquet")
              if p.stem not in ("monthly", "annual", "province_annual")}
    return Results(monthly=pd.read_parquet(run_dir / "monthly.parquet"),
                   annual=pd.read_parquet(run_dir / "annual.parquet"),
                   province_annual=pd.read_parquet(run_dir / "province_annual.parquet"),
                   tables=tables,
                   manifest=json.loads((run_dir / "manifest.json").read_text()))
