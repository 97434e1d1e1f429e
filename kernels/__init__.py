"""The math of tickpath, backend by backend: numpy references, numba CPU, CUDA, CuPy.

The batch (millisecond-path) API is re-exported here lazily, so importing a
streaming kernel module does not import the batch kernels::

    from tickpath.kernels import black_scholes, implied_vol
    res = black_scholes(S, K, T, r, q, sigma, is_call, backend="cpu")

``kernels`` imports nothing of ``engine`` except the wire schema.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "available_backends",
    "warmup",
    "BackendUnavailableError",
    "BlackScholesResult",
    "black_scholes",
    "black_scholes_price",
    "ImpliedVolResult",
    "implied_vol",
    "MonteCarloResult",
    "monte_carlo_european",
    "monte_carlo_asian",
    "VaRResult",
    "portfolio_var",
    "covariance",
    "correlation",
    "rolling_covariance",
    "RollingCovariance",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tickpath.kernels import batch

        return getattr(batch, name)
    raise AttributeError(f"module 'tickpath.kernels' has no attribute {name!r}")
