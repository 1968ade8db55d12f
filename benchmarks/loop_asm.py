"""The machine code of each kernel's SIMD loops: instructions and gathers per person.

Runs a small baseline to month ``--until``, captures the arguments of each kernel's next call
(:func:`capture`), compiles the kernel afresh for this machine's CPU (numba's cached code
cannot be inspected; :func:`compile_kernels`, which tests/test_simd.py also uses) and reads
its assembly. In it, a loop is a label and a conditional jump back to it; for every innermost
loop of the kernel's parallel body that runs mostly on vector registers (:func:`main_loops`)
it prints the instructions of one iteration, its gathers (``vgather``/``vpgather``), the
people one iteration handles (the step of the loop's counter, read from the ``add`` to the
register the loop's last compare reads) and hence instructions and gathers per person. The
list holds every such loop (remainder loops, the draws' Philox loops, the zeroing of sums
too): which one is a person pass is read against the source (docs/performance.md does). A
static count, not a measurement of time: how much work the compiled model does per person
and month, which ``kernel_profile.py`` then times.

    python benchmarks/loop_asm.py                                  # the kernels of tests/test_simd.py
    python benchmarks/loop_asm.py attitudes._attitude_kernel --keep /tmp/asm   # and keep the .s files

Prints a table and writes it as JSON (``--out``). Under a minute for all kernels on 2 cores
(28-55 s in session 25, mostly compiling).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
from pathlib import Path

#: the kernels whose main loop is written for SIMD lanes (tests/test_simd.py's two lists)
DEFAULT = [
    "demography._demography_kernel",
    "economy._aggregate_par",
    "economy._person_kernel",
    "economy._household_kernel",
    "economy._household_scan",
    "information._media_kernel",
    "attitudes._attitude_kernel",
    "attitudes._household_loss",
    "decision._decision_kernel",
]

#: Compiles the kernels of ``args.pkl`` in the folder ``argv[1]`` afresh (numba's cached code
#: cannot be inspected) with each kernel's own options (``parallel``, ``error_model``), for
#: the argument types captured, and writes the assembly (``argv[2]`` "asm", ``.s``) or the
#: optimised LLVM IR ("llvm", ``.ll``) of each.
_COMPILE = """
import importlib, pickle, sys
from pathlib import Path
import numba as nb
out, form = Path(sys.argv[1]), sys.argv[2]
for (mod_name, name), args in pickle.loads((out / "args.pkl").read_bytes()).items():
    f = getattr(importlib.import_module(f"talbuk.modules.{mod_name}"), name)
    opts = {k: v for k, v in f.targetoptions.items() if k not in ("cache", "nopython")}
    fresh = nb.njit(**opts)(f.py_func)
    fresh.compile(tuple(nb.typeof(a) for a in args))
    text = fresh.inspect_asm() if form == "asm" else fresh.inspect_llvm()
    (out / f"{mod_name}.{name}.{'s' if form == 'asm' else 'll'}").write_text("\\n".join(text.values()))
"""

_LABEL = re.compile(r"^(\.?[A-Za-z_$][\w.$]*):")
_JUMP = re.compile(r"^\s+(j[a-z]+)\s+(\S+)")
_GATHER = re.compile(r"^\s+v(p)?gather")
_VEC = re.compile(r"%[xyz]mm")
_FUNC = re.compile(r"^\s+\.type\s+([^,]+),@function")


def capture(keys: list[tuple[str, str]], scale: float, until: int) -> dict:
    """Arguments of each kernel's first call in month ``until + 1`` of a baseline run at
    ``scale`` (seed 3); RuntimeError if one is not called that month."""
    from talbuk.sim import Sim

    sim = Sim("baseline", scale=scale, seed=3, threads=1)
    sim.run(until=until)
    got: dict = {}
    saved = []
    for mod_name, name in keys:
        mod = importlib.import_module(f"talbuk.modules.{mod_name}")
        f = getattr(mod, name)
        saved.append((mod, name, f))

        def wrap(*args, _f=f, _key=(mod_name, name)):
            got.setdefault(_key, copy.deepcopy(args))
            return _f(*args)

        setattr(mod, name, wrap)
    try:
        sim.step()
    finally:
        for mod, name, f in saved:
            setattr(mod, name, f)
    missing = [f"{m}.{n}" for m, n in keys if (m, n) not in got]
    if missing:
        raise RuntimeError(f"not called in month {until + 1}: {', '.join(missing)}")
    return got


def compile_kernels(got: dict, out: Path, form: str = "asm", env: dict | None = None,
                    processes: int = 2, timeout: float | None = None) -> None:
    """Compiles every captured kernel afresh and writes its assembly (``form="asm"``,
    ``module.kernel.s``) or optimised LLVM IR (``"llvm"``, ``.ll``) into ``out``: in
    ``processes`` processes side by side (numba compiles on one core), each with a share of
    the kernels and a numba cache of its own, with ``env`` added to their environment (numba
    reads its target, ``NUMBA_CPU_NAME``, once per process). Raises RuntimeError with the
    compiler's message if one fails; none is left running."""
    keys = sorted(got)
    procs = []
    for k in range(processes):
        part = out / f"part{k}"
        part.mkdir()
        (part / "args.pkl").write_bytes(pickle.dumps({key: got[key]
                                                      for key in keys[k::processes]}))
        penv = dict(os.environ, NUMBA_CACHE_DIR=str(part / "cache"), **(env or {}))
        procs.append((part, subprocess.Popen([sys.executable, "-c", _COMPILE, str(part), form],
                                             env=penv, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True)))
    try:
        for part, p in procs:
            _, err = p.communicate(timeout=timeout)
            if p.returncode:
                raise RuntimeError(f"compiling the kernels of {part} failed:\n{err}")
            for f in part.glob("*.s" if form == "asm" else "*.ll"):
                f.replace(out / f.name)
    finally:  # one failed or timed out: the others are not left compiling
        for _, p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def loops(asm: str) -> list[dict]:
    """Every innermost loop of the assembly (a label and a later conditional jump back to it):
    the function it is in, its instructions, gathers, how many work on vector registers, and
    its counter's step (None when not found)."""
    lines = asm.splitlines()
    where: dict[str, int] = {}
    func_at: list[str] = []
    func = ""
    for k, line in enumerate(lines):
        fm = _FUNC.match(line)
        if fm:
            func = fm.group(1)
        func_at.append(func)
        m = _LABEL.match(line)
        if m:
            where[m.group(1)] = k
    found = []
    for k, line in enumerate(lines):
        m = _JUMP.match(line)
        if not m or m.group(1) == "jmp" or m.group(2) not in where or where[m.group(2)] >= k:
            continue
        body = [s for s in lines[where[m.group(2)] + 1:k + 1]
                if s.startswith("\t") and not s.lstrip().startswith(".")]
        step = None
        for j in range(len(body) - 2, -1, -1):  # the last compare before the jump
            cm = re.match(r"^\s+cmp[a-z]*\s+(%\w+),\s*(\S+)", body[j]) or re.match(
                r"^\s+cmp[a-z]*\s+(\S+),\s*(%\w+)$", body[j])
            if cm:
                regs = {r for r in cm.groups() if r.startswith("%")}
                for s in body:
                    am = re.match(r"^\s+add[a-z]*\s+\$(\d+),\s*(%\w+)$", s)
                    if am and am.group(2) in regs:
                        step = int(am.group(1))
                break
        found.append({
            "span": (where[m.group(2)], k),
            "function": func_at[k],
            "label": m.group(2),
            "instructions": len(body),
            "gathers": sum(bool(_GATHER.match(s)) for s in body),
            "vector": sum(bool(_VEC.search(s)) for s in body),
            "step": step,
        })
    # innermost loops only: a loop holding another (an outer loop over blocks) is left out
    inner = [lp for lp in found if not any(
        o is not lp and lp["span"][0] <= o["span"][0] and o["span"][1] <= lp["span"][1]
        for o in found)]
    for lp in inner:
        del lp["span"]
    return inner


#: the smallest loop body counted as a person pass (smaller vector loops are the helpers'
#: own: maxima over chunk bounds, zeroing of buffers)
MIN_INSTRUCTIONS = 40


def main_loops(asm: str) -> list[dict]:
    """The SIMD loops of the kernel's parallel body: innermost loops in a parfor function
    (or its ``__gufunc__`` wrapper, where numba inlined the body; a loop found in both is
    listed once), at least half of whose instructions use vector registers, with a counter
    whose step was found, of at least MIN_INSTRUCTIONS."""
    out, seen = [], set()
    for lp in loops(asm):
        key = (lp["instructions"], lp["gathers"], lp["vector"], lp["step"])
        if ("parfor_gufunc" in lp["function"] and lp["step"] and key not in seen
                and lp["vector"] * 2 >= lp["instructions"]
                and lp["instructions"] >= MIN_INSTRUCTIONS):
            seen.add(key)
            out.append(lp)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kernels", nargs="*", default=DEFAULT, help="module.kernel (default: all)")
    ap.add_argument("--scale", type=float, default=2000.0)
    ap.add_argument("--until", type=int, default=24, help="months run before the capture")
    ap.add_argument("--keep", default=None, help="folder to keep the assembly in")
    ap.add_argument("--out", default=None, help="JSON file for the table")
    a = ap.parse_args(argv)
    keys = []
    for k in a.kernels:
        mod, _, name = k.partition(".")
        if not name:
            ap.error(f"kernel {k!r}: expected module.kernel, e.g. attitudes._attitude_kernel")
        try:
            f = getattr(importlib.import_module(f"talbuk.modules.{mod}"), name, None)
        except ImportError:
            ap.error(f"kernel {k!r}: no module talbuk.modules.{mod}")
        if not hasattr(f, "py_func"):
            ap.error(f"kernel {k!r}: talbuk.modules.{mod} has no numba kernel {name!r}")
        keys.append((mod, name))
    try:
        got = capture(keys, a.scale, a.until)
    except RuntimeError as e:
        raise SystemExit(f"loop_asm: {e}") from None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(a.keep) if a.keep else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        try:
            compile_kernels(got, Path(tmp))
        except RuntimeError as e:
            raise SystemExit(f"loop_asm: {e}") from None
        for f in Path(tmp).glob("*.s"):
            f.replace(out / f.name)
        rows = []
        print(f"{'kernel':34s} {'loop':>10s} {'instr':>6s} {'gathers':>7s} {'people':>6s}"
              f" {'instr/person':>12s} {'gathers/person':>14s}")
        for mod, name in keys:
            asm = (out / f"{mod}.{name}.s").read_text()
            for lp in main_loops(asm):
                st = lp["step"]
                row = {"kernel": f"{mod}.{name}", **lp,
                       "instructions_per_person": lp["instructions"] / st if st else None,
                       "gathers_per_person": lp["gathers"] / st if st else None}
                rows.append(row)
                ipp = f"{row['instructions_per_person']:.1f}" if st else "?"
                gpp = f"{row['gathers_per_person']:.2f}" if st else "?"
                print(f"{row['kernel']:34s} {lp['label']:>10s} {lp['instructions']:6d} "
                      f"{lp['gathers']:7d} {st if st else '?':>6} {ipp:>12s} {gpp:>14s}")
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1))
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
