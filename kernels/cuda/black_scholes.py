"""Black-Scholes-Merton on the GPU: numba-CUDA kernels over the shared scalar source."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import cuda

from tickpath.kernels.cuda._launch import (
    THREADS_PER_BLOCK,
    blocks_for,
    deliver,
    device_output,
    on_device,
)
from tickpath.kernels.reference.black_scholes_scalar import build

_scalar = build(cuda.jit(device=True), branch_free=True)  # no divergence on call/put
_bs_price = _scalar.bs_price
_bs_greeks = _scalar.bs_greeks

_FIELDS = ("price", "delta", "gamma", "vega", "theta", "rho")


@cuda.jit
def price_kernel(S, K, T, r, q, sigma, is_call, price, invalid):
    i = cuda.grid(1)
    if i < price.size:
        s = S[i if S.size > 1 else 0]
        k = K[i if K.size > 1 else 0]
        t = T[i if T.size > 1 else 0]
        v = sigma[i if sigma.size > 1 else 0]
        if s <= 0.0 or k <= 0.0 or t < 0.0 or v < 0.0:
            cuda.atomic.add(invalid, 0, 1)
            price[i] = math.nan
        else:
            rr = r[i if r.size > 1 else 0]
            qq = q[i if q.size > 1 else 0]
            price[i] = _bs_price(s, k, t, rr, qq, v, is_call[i if is_call.size > 1 else 0])


@cuda.jit
def greeks_kernel(S, K, T, r, q, sigma, is_call, price, delta, gamma, vega, theta, rho, invalid):
    i = cuda.grid(1)
    if i < price.size:
        s = S[i if S.size > 1 else 0]
        k = K[i if K.size > 1 else 0]
        t = T[i if T.size > 1 else 0]
        v = sigma[i if sigma.size > 1 else 0]
        if s <= 0.0 or k <= 0.0 or t < 0.0 or v < 0.0:
            cuda.atomic.add(invalid, 0, 1)
            price[i] = math.nan
            delta[i] = math.nan
            gamma[i] = math.nan
            vega[i] = math.nan
            theta[i] = math.nan
            rho[i] = math.nan
        else:
            rr = r[i if r.size > 1 else 0]
            qq = q[i if q.size > 1 else 0]
            call = is_call[i if is_call.size > 1 else 0]
            p, d, g, ve, th, rh = _bs_greeks(s, k, t, rr, qq, v, call)
            price[i] = p
            delta[i] = d
            gamma[i] = g
            vega[i] = ve
            theta[i] = th
            rho[i] = rh


def price(values: tuple, flags: Any, n: int, out: Any = None) -> tuple[Any, int]:
    """(prices, number of invalid contracts); inputs flat of length n or 1."""
    inputs = [on_device(v) for v in values]
    result = device_output(out, n)
    invalid = cuda.to_device(np.zeros(1, dtype=np.int64))
    price_kernel[blocks_for(n), THREADS_PER_BLOCK](*inputs, on_device(flags), result, invalid)
    count = int(invalid.copy_to_host()[0])
    return deliver(result, out, n), count


def greeks(values: tuple, flags: Any, n: int, out: Any = None) -> tuple[list, int]:
    """([price, delta, gamma, vega, theta, rho], number of invalid contracts)."""
    inputs = [on_device(v) for v in values]
    outs = [device_output(None if out is None else getattr(out, f), n) for f in _FIELDS]
    invalid = cuda.to_device(np.zeros(1, dtype=np.int64))
    greeks_kernel[blocks_for(n), THREADS_PER_BLOCK](*inputs, on_device(flags), *outs, invalid)
    count = int(invalid.copy_to_host()[0])
    delivered = [
        deliver(d, None if out is None else getattr(out, f), n) for d, f in zip(outs, _FIELDS)
    ]
    return delivered, count
