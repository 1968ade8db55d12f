"""The person passes are written so that LLVM vectorises them (SIMD lanes; docs/performance.md,
"Person passes on SIMD lanes"). A small edit (a branch around a store, a slice assignment in
the kernel, an ordered floating-point sum, a call in the loop) silently turns a loop back
into scalar code, 1.5-2 times slower, with the same results: no other test would notice.
These tests compile each kernel afresh (numba's cached code cannot be inspected) for the
argument types of one month of a small run and look for SIMD gathers (``llvm.masked.gather``,
the vector loads of household rows and age tables) in its parallel loop.

The kernels are compiled for one fixed target, :data:`TARGET`, not for the machine the tests
run on, and only compiled, never run (in a process of their own: numba sets its target once
per process). LLVM's cost model decides per CPU whether a gather pays: on a Zen 3 CPU (session
20's machine) it vectorises the same loops but loads each lane's household row on its own, so
the IR has no gather and the test would fail for the machine, not for the code."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

#: (module, kernel) written for SIMD; their loops gather household rows or table entries
KERNELS = [
    ("attitudes", "_attitude_kernel"),
    ("demography", "_demography_kernel"),
    ("economy", "_household_scan"),
    ("economy", "_household_kernel"),
    ("economy", "_person_kernel"),
    ("information", "_media_kernel"),
    ("decision", "_decision_kernel"),  # the baseline's rule, threshold
]
#: kernels whose SIMD loop reads only contiguous rows (no gather), and what only that loop
#: holds when vectorised: any vector of floats (the household loss), a comparison of floats
#: on lanes (the sums into households compare exposures with the watching threshold; their
#: zeroing loops also give float vectors, so those would not tell)
CONTIGUOUS = [
    ("attitudes", "_household_loss", r"<(4|8|16) x float>"),
    ("economy", "_aggregate_par", r"fcmp [a-z]+ <(4|8|16) x float>"),
]


def _loop_asm():
    """benchmarks/loop_asm.py, which captures kernels' arguments and compiles them afresh."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "loop_asm.py"
    spec = importlib.util.spec_from_file_location("loop_asm", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def captured():
    """Arguments of each kernel in month 25 of a small baseline run."""
    return _loop_asm().capture(KERNELS + [c[:2] for c in CONTIGUOUS], scale=20000, until=24)


#: The target the kernels are compiled for: Zen 4 with its own features (AVX-512), whose cost
#: model uses gathers wherever a loop reads rows through an index; the IR is then the same
#: on every machine. ``skylake-avx512`` gave the same answers for every kernel here.
TARGET = {"NUMBA_CPU_NAME": "znver4", "NUMBA_CPU_FEATURES": ""}

#: Processes the kernels are compiled in, side by side (numba compiles on one core: the
#: compilations took about 100 s in one process on session 21's machine)
COMPILE_PROCESSES = 2


@pytest.fixture(scope="module")
def fresh_ir(captured, tmp_path_factory):
    """Each kernel's optimised LLVM IR for :data:`TARGET`, compiled afresh (not from the
    cache) with its own options, in processes of their own (:data:`COMPILE_PROCESSES`)."""
    out = tmp_path_factory.mktemp("simd")
    _loop_asm().compile_kernels(captured, out, form="llvm", env=TARGET,
                                processes=COMPILE_PROCESSES, timeout=1800)

    def ir(mod_name: str, name: str) -> str:
        text = (out / f"{mod_name}.{name}.ll").read_text()
        assert "parfor_gufunc" in text
        return text
    return ir


@pytest.mark.parametrize(("mod_name", "name"), KERNELS)
def test_the_person_pass_is_vectorised(fresh_ir, mod_name, name):
    ir = fresh_ir(mod_name, name)
    assert "llvm.masked.gather" in ir, f"{mod_name}.{name}: its loop is no longer vectorised"


@pytest.mark.parametrize(("mod_name", "name", "pattern"), CONTIGUOUS)
def test_the_contiguous_pass_is_vectorised(fresh_ir, mod_name, name, pattern):
    ir = fresh_ir(mod_name, name)
    assert re.search(pattern, ir), f"{mod_name}.{name}: its loop is no longer vectorised"


#: a made-up assembly listing: a parallel body with an outer loop over blocks holding an inner
#: loop on vector registers (8 people an iteration, one gather), and a scalar loop
_ASM = """\t.type\t_ZN13_3cdynamic_3e36__numba_parfor_gufunc_0x1,@function
_ZN13_3cdynamic_3e36__numba_parfor_gufunc_0x1:
.LBB0_1:
\tmovq\t8(%rsp), %r10
.LBB0_2:
\tvmovups\t(%rdx,%r11,4), %ymm12
\tvgatherqps\t(%rbx,%zmm30,4), %ymm15 {%k3}
""" + "".join("\tvmulps\t%ymm1, %ymm2, %ymm3\n" for _ in range(40)) + """\taddq\t$8, %r11
\tcmpq\t%r11, -104(%rsp)
\tjne\t.LBB0_2
\tdecq\t%rcx
\tjne\t.LBB0_1
.LBB0_3:
""" + "".join("\taddq\t%rax, %rbx\n" for _ in range(50)) + """\tincq\t%r9
\tcmpq\t%r9, %r8
\tjne\t.LBB0_3
"""


def test_loop_asm_finds_the_inner_vector_loop():
    """benchmarks/loop_asm.py's reading of an assembly listing: the innermost loop on vector
    registers, its instructions, gathers and the people an iteration handles; the outer loop
    (it holds another) and the scalar loop are not counted as SIMD passes."""
    loop_asm = _loop_asm()
    inner = {lp["label"]: lp for lp in loop_asm.loops(_ASM)}
    assert set(inner) == {".LBB0_2", ".LBB0_3"}  # .LBB0_1 holds .LBB0_2
    assert inner[".LBB0_3"]["vector"] == 0 and inner[".LBB0_3"]["step"] is None  # incq: no add
    (main,) = loop_asm.main_loops(_ASM)
    assert main["label"] == ".LBB0_2"
    assert main["instructions"] == 45  # 1 load, 1 gather, 40 multiplies, add, compare, jump
    assert main["gathers"] == 1 and main["step"] == 8
