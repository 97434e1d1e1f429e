"""Covariance on the GPU: numba-CUDA kernels, one thread per (i, j) symbol pair."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from tickpath.kernels.cuda._launch import THREADS_PER_BLOCK, blocks_for, on_device
from tickpath.kernels.reference.correlation_scalar import build

_scalar = build(cuda.jit(device=True))
_pair_comoment = _scalar.pair_comoment
_pair_rolling = _scalar.pair_rolling


@cuda.jit
def covariance_kernel(window, ddof, pair_i, pair_j, out):
    p = cuda.grid(1)
    if p < pair_i.size:
        i = pair_i[p]
        j = pair_j[p]
        _, _, comoment = _pair_comoment(window, i, j, 0, window.shape[0])
        value = comoment / (window.shape[0] - ddof)
        out[i, j] = value
        out[j, i] = value


@cuda.jit
def rolling_kernel(returns, window, ddof, pair_i, pair_j, out):
    p = cuda.grid(1)
    if p < pair_i.size:
        _pair_rolling(returns, window, ddof, pair_i[p], pair_j[p], out)


def _deliver(device: Any, out: Any) -> Any:
    if out is None:
        return device.copy_to_host()
    if hasattr(out, "__cuda_array_interface__"):
        return out
    device.copy_to_host(out)
    return out


def _output(out: Any, shape: tuple) -> Any:
    if out is not None and hasattr(out, "__cuda_array_interface__"):
        return cuda.as_cuda_array(out)
    return cuda.device_array(shape, dtype=np.float64)


def covariance(window: Any, ddof: int, out: Any = None) -> Any:
    """(N, N) covariance of a (rows x N) window (two-pass per pair)."""
    n = window.shape[1]
    pair_i, pair_j = (np.ascontiguousarray(a, dtype=np.int64) for a in np.triu_indices(n))
    result = _output(out, (n, n))
    covariance_kernel[blocks_for(pair_i.size), THREADS_PER_BLOCK](
        on_device(window), ddof, on_device(pair_i), on_device(pair_j), result
    )
    return _deliver(result, out)


def rolling(
    returns: Any, window: int, ddof: int, pair_i: np.ndarray, pair_j: np.ndarray, out: Any = None
) -> Any:
    """(T - window + 1, N, N) covariance of every window."""
    n = returns.shape[1]
    result = _output(out, (returns.shape[0] - window + 1, n, n))
    rolling_kernel[blocks_for(pair_i.size), THREADS_PER_BLOCK](
        on_device(returns), window, ddof, on_device(pair_i), on_device(pair_j), result
    )
    return _deliver(result, out)
