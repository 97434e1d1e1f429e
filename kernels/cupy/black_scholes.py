"""Black-Scholes-Merton with CuPy arrays (the reference formulas, element-wise on the GPU)."""

from __future__ import annotations

from typing import Any

from tickpath.kernels.reference import black_scholes as ref


def _xp(xp: Any) -> Any:
    if xp is None:
        import cupy

        return cupy
    return xp


def _inputs(values: tuple, flags: Any, n: int, xp: Any) -> tuple:
    arrays = [xp.broadcast_to(xp.asarray(v), (n,)) for v in values]
    return arrays, xp.broadcast_to(xp.asarray(flags), (n,))


def _invalid(S: Any, K: Any, T: Any, sigma: Any, xp: Any) -> Any:
    return (S <= 0) | (K <= 0) | (T < 0) | (sigma < 0)


def price(values: tuple, flags: Any, n: int, xp: Any = None) -> tuple[Any, int]:
    """(prices as xp array, number of invalid contracts)."""
    xp = _xp(xp)
    (S, K, T, r, q, sigma), call = _inputs(values, flags, n, xp)
    invalid = _invalid(S, K, T, sigma, xp)
    result = ref.black_scholes_price(S, K, T, r, q, sigma, call, xp)
    return xp.where(invalid, xp.nan, result), int(invalid.sum())


def greeks(values: tuple, flags: Any, n: int, xp: Any = None) -> tuple[list, int]:
    """([price, delta, gamma, vega, theta, rho] as xp arrays, number of invalid contracts)."""
    xp = _xp(xp)
    (S, K, T, r, q, sigma), call = _inputs(values, flags, n, xp)
    invalid = _invalid(S, K, T, sigma, xp)
    results = ref.black_scholes_greeks(S, K, T, r, q, sigma, call, xp)
    return [xp.where(invalid, xp.nan, a) for a in results], int(invalid.sum())
