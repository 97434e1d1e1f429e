"""Black-Scholes-Merton price and greeks: the scalar source shared by CPU and CUDA.

`build(jit)` returns the functions compiled with `jit` (``numba.njit(inline="always")``
for the CPU kernels, ``numba.cuda.jit(device=True)`` for the CUDA kernels, identity for
plain Python). The math is written here once; `tickpath.kernels.reference.black_scholes` is the
independent vectorised numpy/scipy reference the tests compare against.

Conventions (see `tickpath.kernels.batch.black_scholes`): continuous rate r and dividend yield q,
T in years, vega per 1.00 of volatility, rho per 1.00 of rate (q held fixed), theta the
calendar-time derivative dV/dt = -dV/dT per year. When sigma*sqrt(T) == 0 the values are
the limits of the discounted forward intrinsic value: at the money the delta is half the
discounted unit and the (divergent) diffusion term of theta is dropped.
"""

# Scalar kernel functions take numba-typed arguments (their types come from the compiled
# callers' signatures), so argument annotations would be noise here.
# ruff: noqa: ANN001

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

INV_SQRT2 = 0.7071067811865476
INV_SQRT_2PI = 0.3989422804014327


def build(jit: Any, *, branch_free: bool = False) -> SimpleNamespace:
    """Return ``norm_cdf``, ``norm_pdf``, ``bs_price`` and ``bs_greeks`` compiled with `jit`.

    `branch_free` evaluates calls and puts on one path (a sign instead of a branch): a GPU
    warp of mixed calls and puts then runs erfc twice, not four times (sm_90 PTX of the
    greeks kernel: 453 float64 instructions against 694). The CPU keeps the branch, which
    measured 6-7 % faster there. Both give the same values to the bit: only the order of
    the operands' signs differs, never the rounding.
    """

    @jit
    def norm_cdf(x):
        """Standard normal CDF via erfc: accurate to a few ulp deep in both tails."""
        return 0.5 * math.erfc(-x * INV_SQRT2)

    @jit
    def norm_pdf(x):
        return INV_SQRT_2PI * math.exp(-0.5 * x * x)

    @jit
    def d1_d2(S, K, T, r, q, sigma):
        """(d1, d2, sigma*sqrt(T)); infinite d's with the sign of ln(F/K) when the
        total volatility is zero."""
        total_vol = sigma * math.sqrt(T)
        log_moneyness = math.log(S / K) + (r - q) * T
        if total_vol > 0.0:
            d1 = log_moneyness / total_vol + 0.5 * total_vol
            return d1, d1 - total_vol, total_vol
        if log_moneyness > 0.0:
            return math.inf, math.inf, 0.0
        if log_moneyness < 0.0:
            return -math.inf, -math.inf, 0.0
        return 0.0, 0.0, 0.0

    @jit
    def bs_price(S, K, T, r, q, sigma, is_call):
        """Black-Scholes-Merton price of a European call (is_call) or put."""
        d1, d2, _ = d1_d2(S, K, T, r, q, sigma)
        spot_disc = S * math.exp(-q * T)
        strike_disc = K * math.exp(-r * T)
        if branch_free:  # call: S' N(d1) - K' N(d2); put: -(S' N(-d1) - K' N(-d2))
            sign = 1.0 if is_call else -1.0
            return sign * (spot_disc * norm_cdf(sign * d1) - strike_disc * norm_cdf(sign * d2))
        if is_call:
            return spot_disc * norm_cdf(d1) - strike_disc * norm_cdf(d2)
        return strike_disc * norm_cdf(-d2) - spot_disc * norm_cdf(-d1)

    @jit
    def bs_greeks(S, K, T, r, q, sigma, is_call):
        """(price, delta, gamma, vega, theta, rho) of a European call or put."""
        d1, d2, total_vol = d1_d2(S, K, T, r, q, sigma)
        div_disc = math.exp(-q * T)
        rate_disc = math.exp(-r * T)
        spot_disc = S * div_disc
        strike_disc = K * rate_disc
        sqrt_t = math.sqrt(T)
        if total_vol > 0.0:
            density = norm_pdf(d1)
            gamma = div_disc * density / (S * total_vol)
            decay = -spot_disc * density * sigma / (2.0 * sqrt_t)
        else:
            density = 0.0
            gamma = 0.0
            decay = 0.0
        vega = spot_disc * density * sqrt_t
        # With s = +1 (call) or -1 (put): n1 = N(s d1), n2 = N(s d2), price = s (S' n1 -
        # K' n2), delta = s e^{-qT} n1, theta = decay - s (r K' n2 - q S' n1), rho = s T K' n2.
        if branch_free:
            sign = 1.0 if is_call else -1.0
            n1 = norm_cdf(sign * d1)
            n2 = norm_cdf(sign * d2)
            price = sign * (spot_disc * n1 - strike_disc * n2)
            delta = sign * div_disc * n1
            theta = decay - sign * (r * strike_disc * n2 - q * spot_disc * n1)
            rho = sign * T * strike_disc * n2
        elif is_call:
            n1 = norm_cdf(d1)
            n2 = norm_cdf(d2)
            price = spot_disc * n1 - strike_disc * n2
            delta = div_disc * n1
            theta = decay - (r * strike_disc * n2 - q * spot_disc * n1)
            rho = T * strike_disc * n2
        else:
            n1 = norm_cdf(-d1)
            n2 = norm_cdf(-d2)
            price = strike_disc * n2 - spot_disc * n1
            delta = -div_disc * n1
            theta = decay + (r * strike_disc * n2 - q * spot_disc * n1)
            rho = -T * strike_disc * n2
        return price, delta, gamma, vega, theta, rho

    return SimpleNamespace(
        norm_cdf=norm_cdf, norm_pdf=norm_pdf, d1_d2=d1_d2, bs_price=bs_price, bs_greeks=bs_greeks
    )


def _identity(func: Any) -> Any:
    return func


scalar = build(_identity)
