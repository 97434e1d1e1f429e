"""Covariance and correlation on the CPU: numba kernels.

* `covariance_window`: one (rows x N) window, two-pass with a BLAS product.
* `rolling_pairs`: every window of a (T x N) block, one (i, j) pair per parallel
  iteration, from the shared scalar source (the CUDA kernel runs the same code).
* `stream_update`: the streaming state of `tickpath.kernels.batch.RollingCovariance`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from tickpath.kernels.cpu._batch_jit import compile_kernel
from tickpath.kernels.reference import correlation_scalar
from tickpath.kernels.reference.correlation_scalar import build

_scalar = build(njit(inline="always"))
_pair_rolling = _scalar.pair_rolling


@njit("void(f8[:, ::1], i8, f8[:, ::1])", cache=True, nogil=True)
def covariance_window(window, ddof, out):
    n_rows = window.shape[0]
    means = np.zeros(window.shape[1])
    for t in range(n_rows):
        means += window[t]
    means /= n_rows
    centred = window - means
    out[:, :] = np.dot(centred.T, centred) / (n_rows - ddof)


def _rolling_pairs(returns, window, ddof, pair_i, pair_j, out):
    for p in prange(pair_i.size):
        _pair_rolling(returns, window, ddof, pair_i[p], pair_j[p], out)


@njit(cache=True, nogil=True)
def _recompute(ring, count, mean, comoment):
    n_symbols = ring.shape[1]
    mean[:] = 0.0
    for t in range(count):
        mean += ring[t]
    mean /= count
    comoment[:, :] = 0.0
    for t in range(count):
        for i in range(n_symbols):
            d_i = ring[t, i] - mean[i]
            for j in range(i, n_symbols):
                comoment[i, j] += d_i * (ring[t, j] - mean[j])


@njit(
    "void(f8[:, ::1], i8[::1], f8[::1], f8[:, ::1], f8[:, ::1], i8, f8[::1], f8[::1])",
    cache=True,
    nogil=True,
)
def stream_update(ring, state, mean, comoment, rows, recompute_every, before, after):
    """Push each row of `rows` into the window. state = [head, count, since_recompute].

    The upper triangle of `comoment` holds the co-moment sum over the window; full
    windows slide with remove-then-add Welford updates and are recomputed exactly
    (two-pass over the ring) every `recompute_every` updates."""
    window, n_symbols = ring.shape
    for t in range(rows.shape[0]):
        head = state[0]
        count = state[1]
        x = rows[t]
        if count == window:
            # remove the oldest row: before = x_old - mean_without, after = x_old - mean
            for i in range(n_symbols):
                old = ring[head, i]
                less = mean[i] - (old - mean[i]) / (count - 1)
                before[i] = old - less
                after[i] = old - mean[i]
                mean[i] = less
            for i in range(n_symbols):
                for j in range(i, n_symbols):
                    comoment[i, j] -= before[i] * after[j]
            count -= 1
        count += 1
        for i in range(n_symbols):
            before[i] = x[i] - mean[i]
            mean[i] += before[i] / count
            after[i] = x[i] - mean[i]
            ring[head, i] = x[i]
        for i in range(n_symbols):
            for j in range(i, n_symbols):
                comoment[i, j] += before[i] * after[j]
        state[0] = (head + 1) % window
        state[1] = count
        state[2] += 1
        if state[2] >= recompute_every and count == window:
            _recompute(ring, count, mean, comoment)
            state[2] = 0


rolling_pairs = compile_kernel(
    _rolling_pairs,
    "void(f8[:, ::1], i8, i8, i8[::1], i8[::1], f8[:, :, ::1])",
    depends_on=(correlation_scalar,),
    parallel=True,
)
