"""Implied volatility to machine precision: the scalar source shared by CPU and CUDA.

Method (written for tickpath; the ideas follow Jaeckel's normalised-Black analysis):

1. Normalise. With forward discounting ``D = exp(-rT)``, ``F = S exp((r-q)T)``, the
   price divided by ``D sqrt(F K)`` depends only on ``x = ln(F/K)`` and the total
   volatility ``s = sigma sqrt(T)``. Put-call parity removes the intrinsic value, which
   leaves the out-of-the-money value ``b(y, s)`` with ``y = -|x| <= 0``::

       b(y, s) = e^{y/2} N(y/s + s/2) - e^{-y/2} N(y/s - s/2),  0 <= b < e^{y/2}.

2. Split at the inflection point ``s_c = sqrt(2|y|)`` (where db/ds is largest). Below it
   the solver works on ``ln b`` (b is like exp(-y^2 / 2s^2) there); above it on
   ``ln(e^{y/2} - b)``, the complement evaluated as ``e^{y/2} N(-d1) + e^{-y/2} N(d2)``
   without cancellation, with its target from ``log1p``. Both objectives are smooth
   and nearly quadratic in s, so Halley's method converges in a few steps.
3. Start from asymptotic expansions (lower: ``ln b ~ -y^2/2s^2 - s^2/8 + ln(s^3/y^2)``;
   upper: ``e^{y/2} - b ~ 2 cosh(y/2) N(-s/2)`` inverted with Abramowitz-Stegun 26.2.23),
   and keep a bracket: a step that leaves it becomes a bisection, so the iteration
   always converges.

Return codes: 0 = a volatility (0.0 when the price equals its lower bound, to within
the rounding noise of an in-the-money intrinsic value: 4 ulp of max(S e^{-qT}, K e^{-rT})),
1 = NaN because the price is outside the no-arbitrage bounds, NaN, or the option has
expired with time value left; 2 = invalid contract (S <= 0, K <= 0 or T < 0).
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
HALF_LN_2PI = 0.9189385332046728
MAX_ITERATIONS = 64
# Stop after a Halley step smaller than this (relative): the error left is ~ its cube.
STEP_TOLERANCE = 1e-9

# A time value within this many ulp of max(S e^{-qT}, K e^{-rT}) of an in-the-money
# intrinsic value is treated as zero (rounding noise of the intrinsic value).
INTRINSIC_NOISE_ULPS = 4.0
EPSILON = 2.220446049250313e-16

IV_OK = 0
IV_OUT_OF_BOUNDS = 1
IV_INVALID = 2


def build(jit: Any) -> SimpleNamespace:
    """Return ``implied_vol_one``, ``solve_total_vol`` and helpers compiled with `jit`."""

    @jit
    def norm_cdf(x):
        return 0.5 * math.erfc(-x * INV_SQRT2)

    @jit
    def lower_tail_quantile(p):
        """Approximate x with N(x) = p for 0 < p <= 0.5 (|error| < 5e-4)."""
        t = math.sqrt(-2.0 * math.log(p))
        num = 2.515517 + t * (0.802853 + t * 0.010328)
        den = 1.0 + t * (1.432788 + t * (0.189269 + t * 0.001308))
        return num / den - t

    @jit
    def lower_guess(log_beta, y, s_c):
        """Starting s below s_c from the small-s asymptotics of ln b."""
        if not log_beta > -math.inf:  # beta underflowed to 0: no asymptotic guess
            return 0.5 * s_c
        y2 = y * y
        s = math.sqrt(y2 / (-2.0 * log_beta))
        for _ in range(2):
            a = -log_beta - HALF_LN_2PI + 3.0 * math.log(s) - math.log(y2)
            disc = 4.0 * a * a - y2
            if a <= 0.0 or disc < 0.0:
                break
            s2 = 4.0 * a - 2.0 * math.sqrt(disc)
            if s2 <= 0.0:
                break
            s = math.sqrt(s2)
        if not (s > 0.0 and s < s_c):
            s = 0.5 * s_c
        return s

    @jit
    def solve_total_vol(beta, y):
        """Total volatility s > 0 with b(y, s) = beta, for y <= 0, 0 < beta < e^{y/2}."""
        ehy = math.exp(0.5 * y)
        inv_ehy = 1.0 / ehy
        y2 = y * y
        s_c = math.sqrt(-2.0 * y)
        b_c = 0.5 * ehy - inv_ehy * norm_cdf(-s_c) if s_c > 0.0 else 0.0
        lower = beta < b_c
        if lower:
            # beta underflows to 0 for subnormal time values: log(0) is -inf in IEEE (and
            # on every backend), spelled out for Python's math, which raises instead.
            target = math.log(beta) if beta > 0.0 else -math.inf
            lo = 0.0
            hi = s_c
            s = lower_guess(target, y, s_c)
        else:
            # beta * inv_ehy can round to 1 at the upper bound: log1p(-1) is -inf, the
            # quantile of p = 0 is NaN (IEEE), and the fallback start below takes over.
            rest = -beta * inv_ehy
            target = 0.5 * y + (math.log1p(rest) if rest > -1.0 else -math.inf)
            lo = s_c
            hi = math.inf
            p = math.exp(target) / (ehy + inv_ehy)
            s = -2.0 * lower_tail_quantile(min(p, 0.5)) if p > 0.0 else math.nan
            if not s > s_c:
                s = s_c + 0.5 * s_c + 1e-3
        for _ in range(MAX_ITERATIONS):
            d1 = y / s + 0.5 * s
            d2 = d1 - s
            vega = INV_SQRT_2PI * math.exp(-0.5 * (y2 / (s * s) + 0.25 * s * s))
            curvature = y2 / (s * s * s) - 0.25 * s
            if lower:
                value = ehy * norm_cdf(d1) - inv_ehy * norm_cdf(d2)
                if value > 0.0:
                    f = math.log(value) - target
                    g = vega / value
                    if f < 0.0:
                        lo = s
                    else:
                        hi = s
                else:
                    f = -math.inf
                    g = 0.0
                    lo = s
            else:
                value = ehy * norm_cdf(-d1) + inv_ehy * norm_cdf(d2)
                if value > 0.0:
                    f = math.log(value) - target
                    g = -vega / value
                    if f > 0.0:
                        lo = s
                    else:
                        hi = s
                else:
                    f = -math.inf
                    g = 0.0
                    hi = s
            if f == 0.0:
                return s
            h = g * curvature - g * g
            step = math.nan
            if g != 0.0 and math.isfinite(f):
                newton = -f / g
                denom = 1.0 + 0.5 * newton * h / g
                step = newton / denom if denom > 0.5 else newton
            s_new = s + step
            if abs(step) <= STEP_TOLERANCE * s:
                return s_new
            if not (s_new > lo and s_new < hi):
                s_new = 0.5 * (lo + hi) if hi < math.inf else 2.0 * max(s, lo)
                if s_new == lo or s_new == hi:
                    return s_new
            s = s_new
        return s

    @jit
    def implied_vol_one(price, S, K, T, r, q, is_call):
        """(sigma, code) for one option; code as documented in the module."""
        if S <= 0.0 or K <= 0.0 or T < 0.0:
            return math.nan, IV_INVALID
        if not (
            math.isfinite(price)
            and math.isfinite(S)
            and math.isfinite(K)
            and math.isfinite(T)
            and math.isfinite(r)
            and math.isfinite(q)
        ):
            return math.nan, IV_OUT_OF_BOUNDS
        spot_disc = S * math.exp(-q * T)
        strike_disc = K * math.exp(-r * T)
        if is_call:
            intrinsic = max(spot_disc - strike_disc, 0.0)
        else:
            intrinsic = max(strike_disc - spot_disc, 0.0)
        time_value = price - intrinsic
        # In the money, the intrinsic value itself is only known to a few ulp of the
        # discounted spot and strike: a time value within that noise carries no
        # volatility information, and the smallest consistent volatility is zero.
        noise = (
            INTRINSIC_NOISE_ULPS * EPSILON * max(spot_disc, strike_disc) if intrinsic > 0.0 else 0.0
        )
        if abs(time_value) <= noise:
            return 0.0, IV_OK
        if time_value < 0.0 or T == 0.0 or time_value >= min(spot_disc, strike_disc):
            return math.nan, IV_OUT_OF_BOUNDS
        y = -abs(math.log(spot_disc / strike_disc))
        beta = time_value / math.sqrt(spot_disc * strike_disc)
        if not beta < math.exp(0.5 * y):
            return math.nan, IV_OUT_OF_BOUNDS
        return solve_total_vol(beta, y) / math.sqrt(T), IV_OK

    return SimpleNamespace(
        norm_cdf=norm_cdf,
        lower_tail_quantile=lower_tail_quantile,
        lower_guess=lower_guess,
        solve_total_vol=solve_total_vol,
        implied_vol_one=implied_vol_one,
    )


def _identity(func: Any) -> Any:
    return func


scalar = build(_identity)
