"""The counter-based generator: known answers, range, independence from threads and order."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from talbuk import rng


@pytest.mark.parametrize(
    ("counter", "key", "expected"),
    [  # Random123 known-answer vectors for Philox-4x32-10 (kat_vectors)
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ],
)
def test_philox_known_answers(counter, key, expected):
    assert rng.philox_words(counter, key) == expected


def test_uniforms_in_open_interval_and_uniform():
    u = rng.uniforms(1, "decision", 1200, np.arange(200_000))
    assert u.min() > 0.0 and u.max() < 1.0
    # mean of 800,000 uniforms: standard error 0.0003, so 0.002 is over 6 standard errors
    assert abs(u.mean() - 0.5) < 0.002
    # lanes are uncorrelated (|r| < 0.01, about 4.5 standard errors for n=200,000)
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.01


def test_draws_depend_only_on_seed_stream_month_uid():
    uids = np.arange(1000)
    a = rng.uniforms(5, "birth", 1300, uids)
    b = rng.uniforms(5, "birth", 1300, uids[::-1])[::-1]  # any order
    assert np.array_equal(a, b)
    assert not np.array_equal(a, rng.uniforms(6, "birth", 1300, uids))  # seed
    assert not np.array_equal(a, rng.uniforms(5, "death", 1300, uids))  # stream
    assert not np.array_equal(a, rng.uniforms(5, "birth", 1301, uids))  # month


def test_thread_count_does_not_change_draws():
    uids = np.arange(100_000)
    numba.set_num_threads(1)
    one = rng.uniforms(3, "media", 1400, uids)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    many = rng.uniforms(3, "media", 1400, uids)
    assert np.array_equal(one, many)


def test_stream_registry_is_explicit_and_unique():
    assert len(set(rng.STREAMS.values())) == len(rng.STREAMS)
    with pytest.raises(KeyError, match="unknown random stream"):
        rng.stream_id("no-such-stream")


def test_uniform_lane_is_that_column_of_uniforms():
    uids = np.arange(50_000, dtype=np.int64) * 7 + 3
    four = rng.uniforms(11, "trait", 5, uids, sub=2)
    for lane in range(4):
        assert np.array_equal(rng.uniform_lane(11, "trait", 5, uids, sub=2, lane=lane), four[:, lane])
    with pytest.raises(ValueError, match="lane"):
        rng.uniform_lane(11, "trait", 5, uids, lane=4)
