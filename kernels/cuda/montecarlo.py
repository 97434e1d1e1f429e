"""Monte Carlo on the GPU: numba-CUDA kernels over the shared scalar lanes.

One thread per lane of `PATHS_PER_LANE` paths (European, Asian) or one thread per
scenario (portfolio P&L). The lanes come back to the host and are combined there by the
same code as the CPU backend's, so both give the same result for the same seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda, float64

from tickpath.kernels.cuda._launch import THREADS_PER_BLOCK, blocks_for
from tickpath.kernels.reference.montecarlo_scalar import MAX_CUDA_ASSETS, build

_scalar = build(cuda.jit(device=True))
_european_lane = _scalar.european_lane
_asian_lane = _scalar.asian_lane
_portfolio_pnl = _scalar.portfolio_pnl


@cuda.jit
def european_kernel(n_paths, S, K, log_drift, vol_sqrt_t, is_call, k0, k1, counts, means, m2s):
    lane = cuda.grid(1)
    if lane < counts.size:
        c, m, s = _european_lane(lane, n_paths, S, K, log_drift, vol_sqrt_t, is_call, k0, k1)
        counts[lane] = c
        means[lane] = m
        m2s[lane] = s


@cuda.jit
def asian_kernel(n_paths, n_steps, S, K, step_drift, step_vol, is_call, k0, k1, counts, means, m2s):
    lane = cuda.grid(1)
    if lane < counts.size:
        c, m, s = _asian_lane(lane, n_paths, n_steps, S, K, step_drift, step_vol, is_call, k0, k1)
        counts[lane] = c
        means[lane] = m
        m2s[lane] = s


@cuda.jit
def pnl_kernel(value, drift, vol, chol, k0, k1, pnl):
    k = cuda.grid(1)
    if k < pnl.size:
        z = cuda.local.array(MAX_CUDA_ASSETS, float64)
        pnl[k] = _portfolio_pnl(k, value, drift, vol, chol, z, k0, k1)


def _lanes(n_lanes: int) -> tuple:
    return (
        cuda.device_array(n_lanes, dtype=np.int64),
        cuda.device_array(n_lanes, dtype=np.float64),
        cuda.device_array(n_lanes, dtype=np.float64),
    )


def european_lanes(n_lanes: int, *args: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-lane (counts, means, m2s) on the host; args as kernels.cpu.montecarlo."""
    lanes = _lanes(n_lanes)
    european_kernel[blocks_for(n_lanes), THREADS_PER_BLOCK](*args, *lanes)
    return tuple(a.copy_to_host() for a in lanes)


def asian_lanes(n_lanes: int, *args: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-lane (counts, means, m2s) on the host; args as kernels.cpu.montecarlo."""
    lanes = _lanes(n_lanes)
    asian_kernel[blocks_for(n_lanes), THREADS_PER_BLOCK](*args, *lanes)
    return tuple(a.copy_to_host() for a in lanes)


def portfolio_pnl(
    value: np.ndarray,
    drift: np.ndarray,
    vol: np.ndarray,
    chol: np.ndarray,
    k0: int,
    k1: int,
    n_scenarios: int,
) -> np.ndarray:
    """Scenario P&L on the host (n_assets <= MAX_CUDA_ASSETS)."""
    pnl = cuda.device_array(n_scenarios, dtype=np.float64)
    args = [cuda.to_device(np.ascontiguousarray(a)) for a in (value, drift, vol, chol)]
    pnl_kernel[blocks_for(n_scenarios), THREADS_PER_BLOCK](*args, np.uint64(k0), np.uint64(k1), pnl)
    return pnl.copy_to_host()
