"""Monte Carlo on the CPU: numba kernels over the shared scalar lanes.

Each kernel fills per-lane arrays (count, mean, m2) or a P&L vector;
`tickpath.kernels.reference.montecarlo_scalar.combine_lanes` reduces the lanes on the host.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from tickpath.kernels import philox
from tickpath.kernels.cpu._batch_jit import compile_kernel
from tickpath.kernels.reference import montecarlo_scalar
from tickpath.kernels.reference.montecarlo_scalar import SCENARIOS_PER_LANE, build

_scalar = build(njit(inline="always"))
_european_lane = _scalar.european_lane
_asian_lane = _scalar.asian_lane
_portfolio_pnl = _scalar.portfolio_pnl

_LANES = "i8[::1], f8[::1], f8[::1]"


def _european_lanes(n_paths, S, K, log_drift, vol_sqrt_t, is_call, k0, k1, counts, means, m2s):
    for lane in prange(counts.size):
        c, m, s = _european_lane(lane, n_paths, S, K, log_drift, vol_sqrt_t, is_call, k0, k1)
        counts[lane] = c
        means[lane] = m
        m2s[lane] = s


def _asian_lanes(n_paths, n_steps, S, K, step_drift, step_vol, is_call, k0, k1, counts, means, m2s):
    for lane in prange(counts.size):
        c, m, s = _asian_lane(lane, n_paths, n_steps, S, K, step_drift, step_vol, is_call, k0, k1)
        counts[lane] = c
        means[lane] = m
        m2s[lane] = s


def _portfolio_pnl_lanes(value, drift, vol, chol, k0, k1, pnl):
    n = pnl.size
    n_lanes = (n + SCENARIOS_PER_LANE - 1) // SCENARIOS_PER_LANE
    for lane in prange(n_lanes):
        z = np.empty(value.size + 1)
        start = lane * SCENARIOS_PER_LANE
        for k in range(start, min(start + SCENARIOS_PER_LANE, n)):
            pnl[k] = _portfolio_pnl(k, value, drift, vol, chol, z, k0, k1)


_DEPENDS = (montecarlo_scalar, philox)
european_lanes = compile_kernel(
    _european_lanes,
    f"void(i8, f8, f8, f8, f8, b1, u8, u8, {_LANES})",
    depends_on=_DEPENDS,
    parallel=True,
)
asian_lanes = compile_kernel(
    _asian_lanes,
    f"void(i8, i8, f8, f8, f8, f8, b1, u8, u8, {_LANES})",
    depends_on=_DEPENDS,
    parallel=True,
)
portfolio_pnl = compile_kernel(
    _portfolio_pnl_lanes,
    "void(f8[::1], f8[::1], f8[::1], f8[:, ::1], u8, u8, f8[::1])",
    depends_on=_DEPENDS,
    parallel=True,
)
