"""Black-Scholes-Merton price and greeks: the vectorised reference (numpy + scipy).

Written against an array module ``xp`` (numpy by default; the CuPy backend passes
cupy), independently of the scalar source that the numba kernels compile, so the tests
compare two implementations. Conventions are those of `tickpath.kernels.batch.black_scholes`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

INV_SQRT_2PI = 0.3989422804014327


def special_module(xp: Any) -> Any:
    """scipy.special for numpy, cupyx.scipy.special for cupy."""
    if xp is np:
        import scipy.special

        return scipy.special
    import cupyx.scipy.special

    return cupyx.scipy.special


def _d1_d2(S: Any, K: Any, T: Any, r: Any, q: Any, sigma: Any, xp: Any) -> tuple:
    total_vol = sigma * xp.sqrt(T)
    log_moneyness = xp.log(S / K) + (r - q) * T
    positive = total_vol > 0
    safe_vol = xp.where(positive, total_vol, 1.0)
    limit = xp.where(log_moneyness > 0, xp.inf, xp.where(log_moneyness < 0, -xp.inf, 0.0))
    d1 = xp.where(positive, log_moneyness / safe_vol + 0.5 * total_vol, limit)
    d2 = xp.where(positive, d1 - total_vol, limit)
    return d1, d2, total_vol, positive, safe_vol


def black_scholes_price(
    S: Any, K: Any, T: Any, r: Any, q: Any, sigma: Any, is_call: Any, xp: Any = np
) -> Any:
    """Price of European calls (is_call True) and puts; inputs broadcast."""
    ndtr = special_module(xp).ndtr
    d1, d2, *_ = _d1_d2(S, K, T, r, q, sigma, xp)
    spot_disc = S * xp.exp(-q * T)
    strike_disc = K * xp.exp(-r * T)
    call = spot_disc * ndtr(d1) - strike_disc * ndtr(d2)
    put = strike_disc * ndtr(-d2) - spot_disc * ndtr(-d1)
    return xp.where(is_call, call, put)


def black_scholes_greeks(
    S: Any, K: Any, T: Any, r: Any, q: Any, sigma: Any, is_call: Any, xp: Any = np
) -> tuple:
    """(price, delta, gamma, vega, theta, rho) with the conventions of kernels.batch."""
    ndtr = special_module(xp).ndtr
    d1, d2, total_vol, positive, safe_vol = _d1_d2(S, K, T, r, q, sigma, xp)
    div_disc = xp.exp(-q * T)
    rate_disc = xp.exp(-r * T)
    spot_disc = S * div_disc
    strike_disc = K * rate_disc
    sqrt_t = xp.sqrt(T)
    density = xp.where(positive, INV_SQRT_2PI * xp.exp(-0.5 * d1 * d1), 0.0)
    gamma = xp.where(positive, div_disc * density / (S * safe_vol), 0.0)
    decay = xp.where(
        positive, -spot_disc * density * sigma / (2.0 * xp.where(positive, sqrt_t, 1.0)), 0.0
    )
    vega = spot_disc * density * sqrt_t
    n1 = xp.where(is_call, ndtr(d1), ndtr(-d1))
    n2 = xp.where(is_call, ndtr(d2), ndtr(-d2))
    sign = xp.where(is_call, 1.0, -1.0)
    price = sign * (spot_disc * n1 - strike_disc * n2)
    delta = sign * div_disc * n1
    theta = decay - sign * (r * strike_disc * n2 - q * spot_disc * n1)
    rho = sign * T * strike_disc * n2
    return price, delta, gamma, vega, theta, rho
