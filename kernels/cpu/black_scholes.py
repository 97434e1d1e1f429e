"""Black-Scholes-Merton on the CPU: numba kernels over the shared scalar source.

Importing this module compiles (or loads from numba's cache) every kernel for its
explicit signature, so a service can do it at start-up and no request waits for the JIT.

Each input is a 1-D C-contiguous array of length n or 1 (length 1 broadcasts, so scalar
rates cost no copy). The kernels return the number of invalid contracts (S <= 0,
K <= 0, T < 0 or sigma < 0, NaN excluded); their outputs are NaN.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from tickpath.kernels.cpu._batch_jit import compile_kernel
from tickpath.kernels.reference import black_scholes_scalar
from tickpath.kernels.reference.black_scholes_scalar import build

_scalar = build(njit(inline="always"))
_bs_price = _scalar.bs_price
_bs_greeks = _scalar.bs_greeks

# Below this many options the serial kernel wins (thread start-up costs ~5-20 us).
PARALLEL_THRESHOLD = 4096

_IN = "f8[::1], f8[::1], f8[::1], f8[::1], f8[::1], f8[::1], b1[::1]"
PRICE_SIGNATURE = f"int64({_IN}, f8[::1])"
GREEKS_SIGNATURE = f"int64({_IN}, f8[::1], f8[::1], f8[::1], f8[::1], f8[::1], f8[::1])"


def _price_body(S, K, T, r, q, sigma, is_call, price):
    n = price.size
    mS = 1 if S.size > 1 else 0
    mK = 1 if K.size > 1 else 0
    mT = 1 if T.size > 1 else 0
    mr = 1 if r.size > 1 else 0
    mq = 1 if q.size > 1 else 0
    mv = 1 if sigma.size > 1 else 0
    mc = 1 if is_call.size > 1 else 0
    n_invalid = 0
    for i in prange(n):
        s = S[i * mS]
        k = K[i * mK]
        t = T[i * mT]
        v = sigma[i * mv]
        if s <= 0.0 or k <= 0.0 or t < 0.0 or v < 0.0:
            n_invalid += 1
            price[i] = np.nan
        else:
            price[i] = _bs_price(s, k, t, r[i * mr], q[i * mq], v, is_call[i * mc])
    return n_invalid


def _greeks_body(S, K, T, r, q, sigma, is_call, price, delta, gamma, vega, theta, rho):
    n = price.size
    mS = 1 if S.size > 1 else 0
    mK = 1 if K.size > 1 else 0
    mT = 1 if T.size > 1 else 0
    mr = 1 if r.size > 1 else 0
    mq = 1 if q.size > 1 else 0
    mv = 1 if sigma.size > 1 else 0
    mc = 1 if is_call.size > 1 else 0
    n_invalid = 0
    for i in prange(n):
        s = S[i * mS]
        k = K[i * mK]
        t = T[i * mT]
        v = sigma[i * mv]
        if s <= 0.0 or k <= 0.0 or t < 0.0 or v < 0.0:
            n_invalid += 1
            price[i] = np.nan
            delta[i] = np.nan
            gamma[i] = np.nan
            vega[i] = np.nan
            theta[i] = np.nan
            rho[i] = np.nan
        else:
            p, d, g, ve, th, rh = _bs_greeks(s, k, t, r[i * mr], q[i * mq], v, is_call[i * mc])
            price[i] = p
            delta[i] = d
            gamma[i] = g
            vega[i] = ve
            theta[i] = th
            rho[i] = rh
    return n_invalid


_DEPENDS = (black_scholes_scalar,)
price_serial = compile_kernel(_price_body, PRICE_SIGNATURE, depends_on=_DEPENDS)
price_parallel = compile_kernel(_price_body, PRICE_SIGNATURE, depends_on=_DEPENDS, parallel=True)
greeks_serial = compile_kernel(_greeks_body, GREEKS_SIGNATURE, depends_on=_DEPENDS)
greeks_parallel = compile_kernel(_greeks_body, GREEKS_SIGNATURE, depends_on=_DEPENDS, parallel=True)
