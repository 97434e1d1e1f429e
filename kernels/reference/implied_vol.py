"""Implied volatility: the vectorised reference, by bisection (numpy + scipy).

An independent method from the Halley solver of the scalar source: 160 bisections of
ln(s) for the total volatility s = sigma sqrt(T) on the normalised out-of-the-money
Black value, whose bracket [1e-12, 1e3] shrinks below one ulp. Same bounds and NaN rules
as `tickpath.kernels.batch.implied_vol`. Written against ``xp`` so that the CuPy backend can run it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tickpath.kernels.reference.black_scholes import special_module
from tickpath.kernels.reference.implied_vol_scalar import EPSILON, INTRINSIC_NOISE_ULPS

BISECTIONS = 160
LOG_S_LOW = float(np.log(1e-12))
LOG_S_HIGH = float(np.log(1e3))


def implied_vol(
    price: Any, S: Any, K: Any, T: Any, r: Any, q: Any, is_call: Any, xp: Any = np
) -> tuple[Any, int, int]:
    """(sigma, n_nan, n_invalid) for broadcast inputs; see kernels.batch.implied_vol."""
    ndtr = special_module(xp).ndtr
    price, S, K, T, r, q, is_call = xp.broadcast_arrays(
        *(xp.asarray(a, dtype=xp.float64) for a in (price, S, K, T, r, q)), xp.asarray(is_call)
    )
    invalid = (S <= 0) | (K <= 0) | (T < 0)
    finite = (
        xp.isfinite(price)
        & xp.isfinite(S)
        & xp.isfinite(K)
        & xp.isfinite(T)
        & xp.isfinite(r)
        & xp.isfinite(q)
    )
    with np.errstate(all="ignore"):
        spot_disc = S * xp.exp(-q * T)
        strike_disc = K * xp.exp(-r * T)
        intrinsic = xp.maximum(
            xp.where(is_call, spot_disc - strike_disc, strike_disc - spot_disc), 0.0
        )
        time_value = price - intrinsic
        noise = xp.where(
            intrinsic > 0,
            INTRINSIC_NOISE_ULPS * EPSILON * xp.maximum(spot_disc, strike_disc),
            0.0,
        )
        zero = xp.abs(time_value) <= noise
        y = -xp.abs(xp.log(spot_disc / strike_disc))
        beta = time_value / xp.sqrt(spot_disc * strike_disc)
        solvable = (
            finite
            & ~invalid
            & ~zero
            & (time_value > 0)
            & (T > 0)
            & (time_value < xp.minimum(spot_disc, strike_disc))
            & (beta < xp.exp(0.5 * y))
        )
        y_s = xp.where(solvable, y, -1.0)
        beta_s = xp.where(solvable, beta, 0.1)
        lo = xp.full(y_s.shape, LOG_S_LOW)
        hi = xp.full(y_s.shape, LOG_S_HIGH)
        for _ in range(BISECTIONS):
            mid = 0.5 * (lo + hi)
            s = xp.exp(mid)
            d1 = y_s / s + 0.5 * s
            value = xp.exp(0.5 * y_s) * ndtr(d1) - xp.exp(-0.5 * y_s) * ndtr(d1 - s)
            below = value < beta_s
            lo = xp.where(below, mid, lo)
            hi = xp.where(below, hi, mid)
        s = xp.exp(0.5 * (lo + hi))
        sigma = xp.where(solvable, s / xp.sqrt(xp.where(solvable, T, 1.0)), xp.nan)
    ok_zero = finite & ~invalid & zero
    sigma = xp.where(ok_zero, 0.0, sigma)
    n_invalid = int(invalid.sum())
    n_nan = int((~solvable & ~ok_zero & ~invalid).sum())
    return sigma, n_nan, n_invalid
