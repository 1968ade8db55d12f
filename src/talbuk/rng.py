"""Counter-based random numbers: ``u = philox(seed, stream, month, uid)``.

Every random decision in talbuk is a pure function of the run's seed, a named stream, the
month and the person's (or household's) stable ``uid``. Nothing is carried from one draw to
the next, so:

* results do not depend on the number of threads nor on the order agents are visited;
* the same person meets the same luck in two scenarios (common random numbers), so a
  scenario contrast is not drowned in sampling noise;
* a resumed run draws exactly what the uninterrupted one would have drawn.

The generator is Philox-4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as
easy as 1, 2, 3", SC 2011), a vetted counter-based generator that passes TestU01's BigCrush.
The implementation is checked against the Random123 known-answer vectors in the tests.
One call returns four independent 32-bit words; a kernel uses the four lanes for four
decisions of the same stream and month.

Key = (seed, stream id); counter = (uid low 32 bits, uid high 32 bits, month, sub), where
``sub`` distinguishes several calls of one stream for the same person and month.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# Philox-4x32 constants (Random123, philox.h)
_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_MASK = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)
_TO_UNIT = 1.0 / 4294967296.0

#: The registry of named random streams. A stream's number is part of every draw's key, so
#: numbers must never be reused or renumbered: add new streams at the end.
STREAMS: dict[str, int] = {
    # population synthesis (drawn once, month = start month)
    "init_person": 1,
    "init_household": 2,
    "init_trait": 3,
    # demography
    "death": 10,  # reserved: deaths use an Exp(1) threshold drawn from "trait", not a monthly draw
    "birth": 11,
    "household_split": 12,
    # economy
    "economy_household": 20,
    "economy_person": 21,
    # information
    "media": 30,
    "media_crackdown": 31,
    # attitudes and decision
    "attitude": 40,
    "decision": 41,
    # journey and families left behind
    "journey": 50,
    "journey_extra": 51,
    "left_behind": 52,
    # fixed personal traits (risk aversion ...), month = 0
    "trait": 60,
}


def stream_id(name: str) -> int:
    """Number of a named stream; unknown names are an error, never a silent new stream."""
    try:
        return STREAMS[name]
    except KeyError:
        raise KeyError(f"unknown random stream {name!r}; known: {sorted(STREAMS)}") from None


@nb.njit(inline="always", cache=True)
def philox4x32(c0, c1, c2, c3, k0, k1):
    """Philox-4x32-10 block function on 32-bit words held in uint64 (upper bits zero)."""
    c0 = np.uint64(c0) & _MASK
    c1 = np.uint64(c1) & _MASK
    c2 = np.uint64(c2) & _MASK
    c3 = np.uint64(c3) & _MASK
    k0 = np.uint64(k0) & _MASK
    k1 = np.uint64(k1) & _MASK
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        hi0 = p0 >> _SHIFT
        lo0 = p0 & _MASK
        hi1 = p1 >> _SHIFT
        lo1 = p1 & _MASK
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return c0, c1, c2, c3


@nb.njit(inline="always", cache=True)
def to_unit(word):
    """A 32-bit word to a float64 uniform strictly inside (0, 1)."""
    return (np.float64(word) + 0.5) * _TO_UNIT


@nb.njit(inline="always", cache=True)
def uniform4(seed, stream, month, uid, sub):
    """Four independent uniforms in (0, 1) for (seed, stream, month, uid, sub)."""
    u = np.uint64(uid)
    w0, w1, w2, w3 = philox4x32(u & _MASK, u >> _SHIFT, month, sub, seed, stream)
    return to_unit(w0), to_unit(w1), to_unit(w2), to_unit(w3)


@nb.njit(inline="always", cache=True)
def uniform1(seed, stream, month, uid, sub):
    """One uniform in (0, 1); the first lane of :func:`uniform4`."""
    u = np.uint64(uid)
    w0, _w1, _w2, _w3 = philox4x32(u & _MASK, u >> _SHIFT, month, sub, seed, stream)
    return to_unit(w0)


@nb.njit(parallel=True, cache=True)
def _uniforms_kernel(seed, stream, month, uids, sub, out):
    for i in nb.prange(uids.shape[0]):
        a, b, c, d = uniform4(seed, stream, month, uids[i], sub)
        out[i, 0] = a
        out[i, 1] = b
        out[i, 2] = c
        out[i, 3] = d


def uniforms(seed: int, stream: str, month: int, uids: np.ndarray, sub: int = 0) -> np.ndarray:
    """Array version for Python-side use: shape ``(len(uids), 4)`` of uniforms in (0, 1)."""
    uids = np.ascontiguousarray(uids, dtype=np.int64)
    out = np.empty((uids.shape[0], 4), dtype=np.float64)
    _uniforms_kernel(np.uint64(seed & 0xFFFFFFFF), np.uint64(stream_id(stream)),
                     np.uint64(month), uids, np.uint64(sub), out)
    return out


@nb.njit(parallel=True, cache=True)
def _uniform_lane_kernel(seed, stream, month, uids, sub, lane, out):
    for i in nb.prange(uids.shape[0]):
        w = uniform4(seed, stream, month, uids[i], sub)
        out[i] = w[0] if lane == 0 else (w[1] if lane == 1 else (w[2] if lane == 2 else w[3]))


def uniform_lane(seed: int, stream: str, month: int, uids: np.ndarray, sub: int = 0,
                 lane: int = 0) -> np.ndarray:
    """Column ``lane`` of :func:`uniforms` alone, without the other three (1-D, float64):
    ``uniform_lane(...) == uniforms(...)[:, lane]``, bit for bit."""
    if lane not in (0, 1, 2, 3):
        raise ValueError(f"lane must be 0-3, got {lane}")
    uids = np.ascontiguousarray(uids, dtype=np.int64)
    out = np.empty(uids.shape[0], dtype=np.float64)
    _uniform_lane_kernel(np.uint64(seed & 0xFFFFFFFF), np.uint64(stream_id(stream)),
                         np.uint64(month), uids, np.uint64(sub), np.int64(lane), out)
    return out


def seed_key(seed: int) -> np.uint64:
    """The 32-bit key word for a user seed (seeds are taken modulo 2**32)."""
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return np.uint64(seed & 0xFFFFFFFF)


def philox_words(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, ...]:
    """The raw Philox-4x32-10 output words (for known-answer tests)."""
    out = philox4x32(np.uint64(counter[0]), np.uint64(counter[1]), np.uint64(counter[2]),
                     np.uint64(counter[3]), np.uint64(key[0]), np.uint64(key[1]))
    return tuple(int(w) for w in out)
