"""Philox4x32-10 counter-based random numbers, written once for every backend.

Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as 1, 2, 3" (SC'11).
A counter of four 32-bit words and a key of two 32-bit words map to four independent
32-bit words. A path or scenario number in the counter gives every path its own stream,
so the CPU (numba) and GPU (numba-CUDA, CuPy) backends draw identical numbers whatever
the thread layout.

* `build(jit)` returns the scalar functions, compiled with `jit`:
  ``numba.njit(inline="always")`` for the CPU, ``numba.cuda.jit(device=True)`` for CUDA,
  the identity for plain Python.
* `philox4x32_array` and `normal_pairs_array` are the same generator over whole arrays,
  written against an array module ``xp`` (numpy or cupy); the tests check them
  bit-for-bit against the scalar version and against the published known-answer vectors.

Conventions shared by every kernel in ``kernels``:

* key = (seed & 0xFFFFFFFF, seed >> 32) for a 64-bit seed;
* counter = (block, path & 0xFFFFFFFF, path >> 32, stream);
* each block gives two 53-bit uniforms in (0, 1), ``u = (m + 0.5) * 2**-53``, and
  Box-Muller turns them into two standard normals (cos branch first).
"""

# Scalar kernel functions take numba-typed arguments (their types come from the compiled
# callers' signatures), so argument annotations would be noise here.
# ruff: noqa: ANN001

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np

PHILOX_M0 = np.uint64(0xD2511F53)
PHILOX_M1 = np.uint64(0xCD9E8D57)
PHILOX_W0 = np.uint64(0x9E3779B9)
PHILOX_W1 = np.uint64(0xBB67AE85)
MASK32 = np.uint64(0xFFFFFFFF)
SHIFT32 = np.uint64(32)
SHIFT21 = np.uint64(21)
SHIFT11 = np.uint64(11)
TWO_POW_M53 = 2.0**-53
TWO_PI = 2.0 * math.pi


def seed_key(seed: int) -> tuple[int, int]:
    """Split a 64-bit seed into the two 32-bit key words."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return seed & 0xFFFFFFFF, seed >> 32


def build(jit: Any) -> SimpleNamespace:
    """Return the scalar Philox functions compiled with the decorator `jit`.

    All words are carried as uint64 holding values below 2**32, so that the same code
    types identically under numba CPU, numba-CUDA and plain Python with numpy scalars.
    """

    @jit
    def philox4x32(c0, c1, c2, c3, k0, k1):
        """Ten Philox rounds; arguments and results are uint64 holding 32-bit words."""
        for _ in range(10):
            p0 = PHILOX_M0 * c0
            p1 = PHILOX_M1 * c2
            hi0 = p0 >> SHIFT32
            lo0 = p0 & MASK32
            hi1 = p1 >> SHIFT32
            lo1 = p1 & MASK32
            c0 = hi1 ^ c1 ^ k0
            c1 = lo1
            c2 = hi0 ^ c3 ^ k1
            c3 = lo0
            k0 = (k0 + PHILOX_W0) & MASK32
            k1 = (k1 + PHILOX_W1) & MASK32
        return c0, c1, c2, c3

    @jit
    def uniform53(a, b):
        """Two 32-bit words to a double in (0, 1) with 53 random bits."""
        m = (a << SHIFT21) ^ (b >> SHIFT11)
        return (float(m) + 0.5) * TWO_POW_M53

    @jit
    def normal_pair(block, path, stream, k0, k1):
        """Two standard normals for (block, path, stream) under key (k0, k1)."""
        c0 = np.uint64(block)
        p = np.uint64(path)
        c1 = p & MASK32
        c2 = p >> SHIFT32
        c3 = np.uint64(stream)
        w0, w1, w2, w3 = philox4x32(c0, c1, c2, c3, np.uint64(k0), np.uint64(k1))
        u1 = uniform53(w0, w1)
        u2 = uniform53(w2, w3)
        radius = math.sqrt(-2.0 * math.log(u1))
        angle = TWO_PI * u2
        return radius * math.cos(angle), radius * math.sin(angle)

    return SimpleNamespace(philox4x32=philox4x32, uniform53=uniform53, normal_pair=normal_pair)


def _identity(func: Any) -> Any:
    return func


scalar = build(_identity)
"""The scalar functions as plain Python (used by the tests and the CUDA simulator)."""


def philox4x32_array(c0: Any, c1: Any, c2: Any, c3: Any, k0: int, k1: int, xp: Any = np) -> tuple:
    """Philox4x32-10 over arrays of counter words (any integer dtype, values < 2**32)."""
    c0, c1, c2, c3 = (xp.asarray(c, dtype=xp.uint64) for c in (c0, c1, c2, c3))
    k0 = np.uint64(k0)
    k1 = np.uint64(k1)
    for _ in range(10):
        p0 = c0 * PHILOX_M0
        p1 = c2 * PHILOX_M1
        c0, c1, c2, c3 = (
            (p1 >> SHIFT32) ^ c1 ^ k0,
            p1 & MASK32,
            (p0 >> SHIFT32) ^ c3 ^ k1,
            p0 & MASK32,
        )
        k0 = (k0 + PHILOX_W0) & MASK32
        k1 = (k1 + PHILOX_W1) & MASK32
    return c0, c1, c2, c3


def normal_pairs_array(
    block: Any, path: Any, stream: int, k0: int, k1: int, xp: Any = np
) -> tuple[Any, Any]:
    """`normal_pair` over broadcast arrays of block and path numbers."""
    block = xp.asarray(block, dtype=xp.uint64)
    path = xp.asarray(path, dtype=xp.uint64)
    block, path = xp.broadcast_arrays(block, path)
    w0, w1, w2, w3 = philox4x32_array(
        block, path & MASK32, path >> SHIFT32, xp.full(block.shape, stream, xp.uint64), k0, k1, xp
    )
    u1 = (((w0 << SHIFT21) ^ (w1 >> SHIFT11)).astype(xp.float64) + 0.5) * TWO_POW_M53
    u2 = (((w2 << SHIFT21) ^ (w3 >> SHIFT11)).astype(xp.float64) + 0.5) * TWO_POW_M53
    radius = xp.sqrt(-2.0 * xp.log(u1))
    angle = TWO_PI * u2
    return radius * xp.cos(angle), radius * xp.sin(angle)
