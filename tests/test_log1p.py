"""The household kernel's SIMD log1p (economy._log1p_block) gives ``math.log1p``'s bits.

glibc's x86_64 libm has two builds of the same fdlibm log1p (plain, and with FMA on CPUs
that have it); :func:`economy.log1p_mode` finds which one this process uses, and the kernel
falls back to ``math.log1p`` if neither matches. These tests compare the chosen form with
``math.log1p`` on ~11 million arguments: log-uniform and uniform ones, and those near every
branch point of the algorithm (and both forms with the kernel's results on a small run)."""

from __future__ import annotations

import math
import platform

import numpy as np
import pytest

from talbuk.modules import economy as eco


def _near(p: float, rng: np.random.Generator, n_rel: int = 20000) -> np.ndarray:
    """``p``, its neighbours to 3,000 ulps either side, and relative perturbations."""
    bits = np.float64(p).view(np.int64) + np.arange(-3000, 3001, dtype=np.int64)
    near = bits[bits >= 0].view(np.float64)
    rel = p * (1.0 + np.concatenate([rng.uniform(-1e-9, 1e-9, n_rel),
                                     rng.uniform(-1e-5, 1e-5, n_rel),
                                     rng.uniform(-1e-2, 1e-2, n_rel)]))
    return np.concatenate([near, rel])


def _arguments() -> np.ndarray:
    rng = np.random.default_rng(12345)
    # branch points: the high-word tests (2**-54, 2**-29, 0.41422, 2**53), the normalisation
    # (1 + x near sqrt(2) * 2**k), |f| < 2**-20 and f == 0 (1 + x near 2**k), the
    # correction's k > 0 (x near 1), and the largest and smallest (subnormal) numbers
    pts = [0.0, 5e-324, 2.2250738585072014e-308, 1e-300, 2.0 ** -54, 2.0 ** -29,
           np.array(0x3FDA827A << 32, dtype=np.int64).view(np.float64).item(),
           np.array(0x43400000 << 32, dtype=np.int64).view(np.float64).item(), 1e6, 1.7e308]
    for k in range(0, 60, 3):
        pts += [math.sqrt(2.0) * 2.0 ** k - 1.0, 2.0 ** k - 1.0, 2.0 ** k]
    parts = [_near(p, rng) for p in pts if p > 0.0]
    parts += [10.0 ** rng.uniform(-300.0, 6.0, 3_000_000),  # log-uniform over [1e-300, 1e6]
              rng.uniform(0.0, 1e6, 2_000_000),
              rng.uniform(0.0, 1.0, 2_000_000),
              rng.uniform(0.0, 100.0, 2_000_000),
              10.0 ** rng.uniform(-20.0, 2.0, 1_000_000)]
    x = np.concatenate(parts)
    return np.concatenate([x, np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -0.5, -1.0, -3.0])])


def _n_bits_differ(a: np.ndarray, b: np.ndarray) -> int:
    """How many entries of a and b differ in their bits."""
    return int((a.view(np.int64) != b.view(np.int64)).sum())


@pytest.fixture(scope="module")
def args_and_ref():
    x = _arguments()
    ref = np.empty_like(x)
    eco._log1p_ref(x, ref)
    return x, ref


def test_the_form_is_found():
    mode = eco.log1p_mode()
    if platform.system() == "Linux" and platform.machine() == "x86_64" \
            and platform.libc_ver()[0] == "glibc":
        assert mode in (0, 1), "glibc's log1p matches neither form: the kernel is scalar again"
    elif mode == -1:
        pytest.skip("this libm's log1p is not glibc's: the kernel uses math.log1p")


def test_bit_identical_to_math_log1p(args_and_ref):
    mode = eco.log1p_mode()
    if mode == -1:
        pytest.skip("this libm's log1p is not glibc's: the kernel uses math.log1p")
    x, ref = args_and_ref
    assert x.size > 10_000_000
    got = np.empty_like(x)
    eco._log1p_by_blocks(x, got, mode == 1)
    bad = np.nonzero(got.view(np.int64) != ref.view(np.int64))[0]
    assert bad.size == 0, [(x[i], ref[i], got[i]) for i in bad[:5]]
    # the numba reference is the libm's log1p, as Python's math.log1p (on a sample)
    for i in np.random.default_rng(1).integers(0, x.size, 2000):
        r = math.log1p(float(x[i])) if x[i] >= -1.0 else float("nan")
        assert (r == got[i] and math.copysign(1, r) == math.copysign(1, got[i])) \
            or (math.isnan(r) and math.isnan(got[i]))


def test_the_two_forms_differ(args_and_ref):
    """The fused and unfused forms are told apart by log1p_mode's arguments."""
    x = eco.log1p_check_args()
    a = np.empty_like(x)
    b = np.empty_like(x)
    eco._log1p_by_blocks(x, a, True)
    eco._log1p_by_blocks(x, b, False)
    assert _n_bits_differ(a, b) > 10


def test_kernel_same_with_scalar_log1p():
    """The household kernel gives the same bits with the SIMD log1p as with math.log1p."""
    import copy

    from talbuk.sim import Sim

    mode = eco.log1p_mode()
    if mode == -1:
        pytest.skip("this libm's log1p is not glibc's: the kernel uses math.log1p")
    sim = Sim("baseline", scale=5000, seed=3, threads=1)
    sim.run(until=215)
    got = {}
    f = eco._household_kernel

    def wrap(*args):
        got.setdefault("args", copy.deepcopy(args))
        return f(*args)

    eco._household_kernel = wrap
    try:
        sim.step()
    finally:
        eco._household_kernel = f
    args = got["args"]
    assert args[-1] == mode
    n = args[23][-1]  # households: bounds[-1]
    members, savings_usd, hbits = args[5][:n], args[7][:n], args[11][:n]
    trading = (members > 0) & ((hbits & eco.B_TRADER) != 0)
    assert trading.sum() > 500 and (savings_usd[trading] > 0).sum() > 100
    a = copy.deepcopy(args)
    b = copy.deepcopy(args[:-1]) + (np.int64(-1),)
    f(*a)
    f(*b)
    for u, v in zip(a, b, strict=True):
        if isinstance(u, np.ndarray):
            assert np.array_equal(u.view(np.uint8), v.view(np.uint8))
