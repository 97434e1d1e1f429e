"""Philox4x32-10: known-answer vectors, scalar/array identity, distribution sanity."""

from __future__ import annotations

import numpy as np
import pytest

from tickpath.kernels import philox

# Random123 known-answer vectors for philox4x32_10: (counter, key, output)
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    (
        (0xFFFFFFFF,) * 4,
        (0xFFFFFFFF, 0xFFFFFFFF),
        (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD),
    ),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("counter", "key", "expected"), KAT)
def test_known_answer_vectors_scalar_and_array(counter, key, expected):
    words = [np.uint64(c) for c in counter]
    got = philox.scalar.philox4x32(*words, np.uint64(key[0]), np.uint64(key[1]))
    assert tuple(int(w) for w in got) == expected
    arrays = philox.philox4x32_array(*([c] for c in counter), *key)
    assert tuple(int(a[0]) for a in arrays) == expected


def test_array_normals_equal_scalar_normals_bit_for_bit():
    k0, k1 = philox.seed_key(0x1234_5678_9ABC_DEF0)
    blocks = np.array([0, 1, 7, 0, 3])
    paths = np.array([0, 5, 2**33 + 1, 123456789, 2**40])
    z0, z1 = philox.normal_pairs_array(blocks, paths, 2, k0, k1)
    for b, p, a0, a1 in zip(blocks, paths, z0, z1):
        s0, s1 = philox.scalar.normal_pair(int(b), int(p), 2, k0, k1)
        assert (s0, s1) == (a0, a1)


def test_uniforms_in_open_interval_and_normals_standard():
    k0, k1 = philox.seed_key(42)
    w0, w1, w2, w3 = philox.philox4x32_array(np.arange(100_000), 0, 0, 0, k0, k1)
    u = (((w0 << np.uint64(21)) ^ (w1 >> np.uint64(11))).astype(float) + 0.5) * 2.0**-53
    assert 0.0 < u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u.size)
    z0, z1 = philox.normal_pairs_array(0, np.arange(200_000), 0, k0, k1)
    z = np.concatenate([z0, z1])
    assert abs(z.mean()) < 5 / np.sqrt(z.size)
    assert abs(z.std() - 1.0) < 5 / np.sqrt(2 * z.size)
    assert abs(np.corrcoef(z0, z1)[0, 1]) < 5 / np.sqrt(z0.size)
    # different seeds and streams give different numbers
    other, _ = philox.normal_pairs_array(0, np.arange(8), 0, *philox.seed_key(43))
    stream, _ = philox.normal_pairs_array(0, np.arange(8), 1, k0, k1)
    assert not np.array_equal(other, z0[:8]) and not np.array_equal(stream, z0[:8])


def test_seed_validation():
    assert philox.seed_key(2**32 + 5) == (5, 1)
    with pytest.raises(ValueError, match="seed"):
        philox.seed_key(-1)
    with pytest.raises(TypeError, match="seed"):
        philox.seed_key(1.5)
