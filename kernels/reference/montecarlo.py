"""Monte Carlo under GBM: the vectorised reference (numpy, or cupy through ``xp``).

Draws the same Philox numbers as the scalar lanes (kernels.philox conventions) with
array code, prices with plain means and standard deviations, and computes VaR/ES
from the whole P&L vector. Agreement with the numba and CUDA kernels is to rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tickpath.kernels import philox
from tickpath.kernels.reference.montecarlo_scalar import STREAM_ASIAN, STREAM_EUROPEAN, STREAM_VAR


def _stats(payoffs: Any, discount: float, xp: Any) -> tuple[float, float]:
    n = payoffs.shape[0]
    mean = float(payoffs.mean())
    std = float(payoffs.std(ddof=1)) if n > 1 else float("nan")
    return discount * mean, discount * std / float(np.sqrt(n))


def european(
    S: float,
    K: float,
    T: float,
    r: float,
    q: float,
    sigma: float,
    is_call: bool,
    n_paths: int,
    seed: int,
    xp: Any = np,
) -> tuple[float, float]:
    """(price, standard error) of a European option by Monte Carlo."""
    k0, k1 = philox.seed_key(seed)
    pairs = xp.arange((n_paths + 1) // 2, dtype=xp.uint64)
    z0, z1 = philox.normal_pairs_array(0, pairs, STREAM_EUROPEAN, k0, k1, xp)
    z = xp.stack([z0, z1], axis=1).reshape(-1)[:n_paths]
    spot = S * xp.exp((r - q - 0.5 * sigma * sigma) * T + sigma * np.sqrt(T) * z)
    payoffs = xp.maximum(spot - K, 0.0) if is_call else xp.maximum(K - spot, 0.0)
    return _stats(payoffs, float(np.exp(-r * T)), xp)


def asian_payoffs(
    S: float,
    K: float,
    T: float,
    r: float,
    q: float,
    sigma: float,
    is_call: bool,
    n_steps: int,
    n_paths: int,
    seed: int,
    xp: Any = np,
) -> Any:
    """Undiscounted arithmetic-average payoffs, one per path."""
    k0, k1 = philox.seed_key(seed)
    dt = T / n_steps
    blocks = xp.arange((n_steps + 1) // 2, dtype=xp.uint64)[None, :]
    paths = xp.arange(n_paths, dtype=xp.uint64)[:, None]
    z0, z1 = philox.normal_pairs_array(blocks, paths, STREAM_ASIAN, k0, k1, xp)
    z = xp.stack([z0, z1], axis=2).reshape(n_paths, -1)[:, :n_steps]
    log_paths = np.log(S) + xp.cumsum(
        (r - q - 0.5 * sigma * sigma) * dt + sigma * np.sqrt(dt) * z, axis=1
    )
    average = xp.exp(log_paths).mean(axis=1)
    return xp.maximum(average - K, 0.0) if is_call else xp.maximum(K - average, 0.0)


def asian(
    S: float,
    K: float,
    T: float,
    r: float,
    q: float,
    sigma: float,
    is_call: bool,
    n_steps: int,
    n_paths: int,
    seed: int,
    xp: Any = np,
) -> tuple[float, float]:
    """(price, standard error) of an arithmetic-average Asian option by Monte Carlo."""
    payoffs = asian_payoffs(S, K, T, r, q, sigma, is_call, n_steps, n_paths, seed, xp)
    return _stats(payoffs, float(np.exp(-r * T)), xp)


def portfolio_pnl(
    value: Any, drift: Any, vol: Any, chol: Any, n_scenarios: int, seed: int, xp: Any = np
) -> Any:
    """P&L per scenario (see montecarlo_scalar.portfolio_pnl for the parameters)."""
    k0, k1 = philox.seed_key(seed)
    n_assets = value.shape[0]
    blocks = xp.arange((n_assets + 1) // 2, dtype=xp.uint64)[None, :]
    scenarios = xp.arange(n_scenarios, dtype=xp.uint64)[:, None]
    z0, z1 = philox.normal_pairs_array(blocks, scenarios, STREAM_VAR, k0, k1, xp)
    z = xp.stack([z0, z1], axis=2).reshape(n_scenarios, -1)[:, :n_assets]
    x = z @ chol.T
    return (value[None, :] * xp.expm1(drift[None, :] + vol[None, :] * x)).sum(axis=1)


def var_es(pnl: Any, confidence: float, xp: Any = np) -> tuple[float, float]:
    """(VaR, ES) as positive losses: with k = ceil((1 - confidence) n), VaR is the k-th
    largest loss and ES the mean of the k largest losses."""
    n = pnl.shape[0]
    k = max(1, int(np.ceil((1.0 - confidence) * n - 1e-9)))
    worst = xp.partition(pnl, k - 1)[:k]
    return float(-worst.max()), float(-worst.mean())


def geometric_asian_price(
    S: float, K: float, T: float, r: float, q: float, sigma: float, is_call: bool, n_steps: int
) -> float:
    """Closed form of the discrete geometric-average Asian option (a lower bound for the
    arithmetic one, used as a check)."""
    from tickpath.kernels.reference.black_scholes import black_scholes_price

    n = n_steps
    dt = T / n
    mean_log = np.log(S) + (r - q - 0.5 * sigma**2) * dt * (n + 1) / 2.0
    var_log = sigma**2 * dt * (n + 1) * (2 * n + 1) / (6.0 * n)
    forward = np.exp(mean_log + 0.5 * var_log)
    # G is lognormal with this forward and log-variance: E[(G - K)+] is Black-Scholes
    # with zero rates, T = 1 and sigma = sqrt(var_log).
    undiscounted = black_scholes_price(forward, K, 1.0, 0.0, 0.0, np.sqrt(var_log), is_call)
    return float(np.exp(-r * T) * undiscounted)
