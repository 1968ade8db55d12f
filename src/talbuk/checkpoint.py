"""Checkpoints: save a running simulation and resume it to the identical result.

A run with checkpoints works in ``<RUN_DIR>.partial/`` until it completes; the finished run
folder ``RUN_DIR`` appears only at the end (atomically). The working folder holds
``checkpoint-MMMM.npz`` (every state array, the records so far, module state, after MMMM
months) and ``checkpoint.json`` (what the run was: resolved scenario, seed, scale, threads,
the month reached, the name of the ``.npz`` and its sha256). The order of the writes makes a
kill harmless at any moment: the new ``.npz`` is written under a temporary name and renamed,
then the description is written the same way and renamed (the commit point), and only then is
the previous ``.npz`` deleted. Until the description is replaced it still names the previous
data file, which is still there; after, it names the new one. A truncated or altered
checkpoint fails its checksum and is refused.

Random numbers are counter-based (``rng.py``), so nothing about the generator needs saving:
a resumed run draws exactly what the uninterrupted one would have.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from talbuk.files import file_sha256 as _sha256

#: 2: persons carry ``uid`` and the table is reordered each January (``reorder_every``)
#: 3: the data file is ``checkpoint-MMMM.npz``, named in the description (``npz``)
#: 4: the journey carries its kin-split mean-field copy (``mf_k``, ``ema_k``, ``flip_ema``)
#: 5: households carry ``kin_tie`` (ties to kin in the South that fade)
CHECKPOINT_VERSION = 5


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt or does not match."""


def partial_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.with_name(run_dir.name + ".partial")


def _write_atomic_bytes(path: Path, writer) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        writer(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(sim, work_dir: Path, run_info: dict) -> Path:
    """Write ``checkpoint.npz`` and ``checkpoint.json`` into ``work_dir`` atomically."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    arrays = sim.state_arrays()
    npz = work_dir / f"checkpoint-{int(sim.t_index):04d}.npz"
    if npz.name == _described_npz(work_dir):  # the same month again: never overwrite the
        npz = npz.with_name(npz.stem + "-1.npz")  # data file the description still names
    _write_atomic_bytes(npz, lambda f: np.savez(f, **arrays))
    info = dict(run_info)
    info.update({
        "version": CHECKPOINT_VERSION,
        "months_done": int(sim.t_index),
        "scenario_toml": sim.scenario.to_toml(),
        "seed": sim.seed,
        "scale": sim.scale,
        "threads": sim.threads,
        "reorder_every": sim.reorder_every,
        "npz": npz.name,
        "npz_sha256": _sha256(npz),
    })
    data = json.dumps(info, indent=2, sort_keys=True).encode()
    # the commit point: until this rename the old description names the old data file
    _write_atomic_bytes(work_dir / "checkpoint.json", lambda f: f.write(data))
    for old in work_dir.glob("checkpoint*.npz*"):
        if old.name != npz.name:
            old.unlink(missing_ok=True)
    return npz


def _described_npz(work_dir: Path) -> str | None:
    """Name of the data file the current description names (None if there is none)."""
    try:
        return json.loads((work_dir / "checkpoint.json").read_text()).get("npz")
    except (OSError, ValueError, AttributeError):
        return None


def read_checkpoint_info(work_dir: Path) -> dict:
    work_dir = Path(work_dir)
    meta = work_dir / "checkpoint.json"
    if not meta.exists():
        raise CheckpointError(f"{meta}: no checkpoint to resume (was the run started with "
                              "--checkpoint-every, and has it written one yet?)")
    try:
        info = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{meta}: corrupt checkpoint description ({e})") from None
    for key in ("version", "months_done", "scenario_toml", "seed", "scale", "npz", "npz_sha256"):
        if key not in info:
            raise CheckpointError(f"{meta}: {key}: missing from the checkpoint description")
    if info["version"] != CHECKPOINT_VERSION:
        raise CheckpointError(f"{meta}: version: checkpoint format {info['version']}, "
                              f"this talbuk reads {CHECKPOINT_VERSION}")
    return info


def load_checkpoint(work_dir: Path):
    """Rebuild the Sim from a checkpoint folder, verified against its checksum."""
    from talbuk.scenario import scenario_from_toml
    from talbuk.sim import Sim

    work_dir = Path(work_dir)
    info = read_checkpoint_info(work_dir)
    name = info["npz"]
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".npz"):
        raise CheckpointError(f"{work_dir / 'checkpoint.json'}: npz: expected the file name of "
                              f"a .npz in the same folder, got {name!r}")
    npz = work_dir / name
    if not npz.exists():
        raise CheckpointError(f"{npz}: checkpoint data missing")
    digest = _sha256(npz)
    if digest != info["npz_sha256"]:
        raise CheckpointError(f"{npz}: checksum mismatch (truncated or altered checkpoint); "
                              "refusing to resume from it")
    scenario = scenario_from_toml(info["scenario_toml"], file=str(work_dir / "checkpoint.json"))
    sim = Sim(scenario, scale=info["scale"], seed=info["seed"], threads=info.get("threads"),
              reorder_every=info["reorder_every"])
    try:
        with np.load(npz) as data:
            arrays = {k: data[k] for k in data.files}
        sim.restore_arrays(arrays)
    except (KeyError, ValueError, OSError) as e:
        raise CheckpointError(f"{npz}: unreadable checkpoint ({e})") from None
    if sim.t_index != info["months_done"]:
        raise CheckpointError(f"{npz}: months_done: {sim.t_index} in data, "
                              f"{info['months_done']} in description")
    return sim, info
