"""Monte Carlo under geometric Brownian motion: the scalar source shared by CPU and CUDA.

Work is cut into *lanes* of `PATHS_PER_LANE` paths (or `SCENARIOS_PER_LANE` scenarios).
A lane is one CUDA thread or one iteration of the CPU's parallel loop, and returns the
count, mean and sum of squared deviations (Welford) of its payoffs; the host combines
the lanes in a fixed order (Chan et al.). The result therefore does not depend on the
backend's thread layout, and CPU and GPU runs of the same seed agree to the last bit
wherever their libm agree (exactly under the CUDA simulator).

Random numbers (kernels.philox conventions, counter = (block, path, 0, stream)):

* European: paths 2m and 2m+1 use the two normals of block 0 of counter path m.
* Asian: path p takes the normals of step 2j and 2j+1 from block j of counter path p.
* Portfolio VaR: scenario k takes the normals of assets 2j and 2j+1 from block j of
  counter path k.
"""

# Scalar kernel functions take numba-typed arguments (their types come from the compiled
# callers' signatures), so argument annotations would be noise here.
# ruff: noqa: ANN001

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np

from tickpath.kernels import philox

PATHS_PER_LANE = 64  # even: European paths come in pairs
SCENARIOS_PER_LANE = 16
STREAM_EUROPEAN = 0
STREAM_ASIAN = 1
STREAM_VAR = 2
MAX_CUDA_ASSETS = 128  # size of the per-thread scratch in the CUDA VaR kernel


def build(jit: Any) -> SimpleNamespace:
    """Return the lane functions compiled with `jit` (see kernels.philox.build)."""
    rng = philox.build(jit)
    normal_pair = rng.normal_pair

    @jit
    def payoff(spot, K, is_call):
        if is_call:
            return max(spot - K, 0.0)
        return max(K - spot, 0.0)

    @jit
    def european_lane(lane, n_paths, S, K, log_drift, vol_sqrt_t, is_call, k0, k1):
        """(count, mean, m2) of the undiscounted payoffs of the lane's paths."""
        start = lane * PATHS_PER_LANE
        stop = min(start + PATHS_PER_LANE, n_paths)
        count = 0
        mean = 0.0
        m2 = 0.0
        for p in range(start, stop, 2):
            z0, z1 = normal_pair(0, p // 2, STREAM_EUROPEAN, k0, k1)
            value = payoff(S * math.exp(log_drift + vol_sqrt_t * z0), K, is_call)
            count += 1
            delta = value - mean
            mean += delta / count
            m2 += delta * (value - mean)
            if p + 1 < stop:
                value = payoff(S * math.exp(log_drift + vol_sqrt_t * z1), K, is_call)
                count += 1
                delta = value - mean
                mean += delta / count
                m2 += delta * (value - mean)
        return count, mean, m2

    @jit
    def asian_lane(lane, n_paths, n_steps, S, K, step_drift, step_vol, is_call, k0, k1):
        """(count, mean, m2) of undiscounted arithmetic-average payoffs; the average is
        over the n_steps fixings at T/n_steps, 2T/n_steps, ..., T."""
        start = lane * PATHS_PER_LANE
        stop = min(start + PATHS_PER_LANE, n_paths)
        count = 0
        mean = 0.0
        m2 = 0.0
        log_s0 = math.log(S)
        for p in range(start, stop):
            log_s = log_s0
            total = 0.0
            for j in range(0, n_steps, 2):
                z0, z1 = normal_pair(j // 2, p, STREAM_ASIAN, k0, k1)
                log_s += step_drift + step_vol * z0
                total += math.exp(log_s)
                if j + 1 < n_steps:
                    log_s += step_drift + step_vol * z1
                    total += math.exp(log_s)
            value = payoff(total / n_steps, K, is_call)
            count += 1
            delta = value - mean
            mean += delta / count
            m2 += delta * (value - mean)
        return count, mean, m2

    @jit
    def portfolio_pnl(scenario, value, drift, vol, chol, z, k0, k1):
        """P&L of one scenario: sum_i value_i (exp(drift_i + vol_i (L z)_i) - 1).

        value = position * spot, drift = (mu - vol^2/2) h, vol = sigma sqrt(h), chol the
        lower Cholesky factor of the correlation matrix, z scratch of >= n_assets."""
        n_assets = value.shape[0]
        for j in range(0, n_assets, 2):
            z0, z1 = normal_pair(j // 2, scenario, STREAM_VAR, k0, k1)
            z[j] = z0
            if j + 1 < n_assets:
                z[j + 1] = z1
        pnl = 0.0
        for i in range(n_assets):
            x = 0.0
            for j in range(i + 1):
                x += chol[i, j] * z[j]
            pnl += value[i] * math.expm1(drift[i] + vol[i] * x)
        return pnl

    return SimpleNamespace(
        rng=rng,
        payoff=payoff,
        european_lane=european_lane,
        asian_lane=asian_lane,
        portfolio_pnl=portfolio_pnl,
    )


def combine_lanes(
    counts: np.ndarray, means: np.ndarray, m2s: np.ndarray
) -> tuple[float, float, int]:
    """(mean, unbiased variance, n) of the union of the lanes, in a fixed order, on the host
    (the same numpy code for every backend, so equal lanes give equal results)."""
    n = int(counts.sum())
    weights = counts.astype(np.float64)
    mean = float(np.dot(weights, means) / n)
    m2 = float(m2s.sum() + np.dot(weights, (means - mean) ** 2))
    variance = m2 / (n - 1) if n > 1 else float("nan")
    return mean, variance, n


def _identity(func: Any) -> Any:
    return func


scalar = build(_identity)
