"""Implied volatility on the CPU: numba kernels over the shared scalar source.

Importing this module compiles (or loads from numba's cache) the kernels for their
explicit signatures. Inputs are 1-D C-contiguous arrays of length n or 1 (broadcast).
The kernels return ``(n_nan, n_invalid)``: outputs set to NaN because the price is outside
its no-arbitrage bounds (or NaN), and contracts with S <= 0, K <= 0 or T < 0.
"""

from __future__ import annotations

from numba import njit, prange

from tickpath.kernels.cpu._batch_jit import compile_kernel
from tickpath.kernels.reference import implied_vol_scalar
from tickpath.kernels.reference.implied_vol_scalar import IV_INVALID, IV_OUT_OF_BOUNDS, build

_scalar = build(njit(inline="always"))
_implied_vol_one = _scalar.implied_vol_one

PARALLEL_THRESHOLD = 1024

SIGNATURE = (
    "UniTuple(int64, 2)(f8[::1], f8[::1], f8[::1], f8[::1], f8[::1], f8[::1], b1[::1], f8[::1])"
)


def _body(price, S, K, T, r, q, is_call, sigma):
    n = sigma.size
    mp = 1 if price.size > 1 else 0
    mS = 1 if S.size > 1 else 0
    mK = 1 if K.size > 1 else 0
    mT = 1 if T.size > 1 else 0
    mr = 1 if r.size > 1 else 0
    mq = 1 if q.size > 1 else 0
    mc = 1 if is_call.size > 1 else 0
    n_nan = 0
    n_invalid = 0
    for i in prange(n):
        vol, code = _implied_vol_one(
            price[i * mp], S[i * mS], K[i * mK], T[i * mT], r[i * mr], q[i * mq], is_call[i * mc]
        )
        sigma[i] = vol
        n_nan += 1 if code == IV_OUT_OF_BOUNDS else 0
        n_invalid += 1 if code == IV_INVALID else 0
    return n_nan, n_invalid


_DEPENDS = (implied_vol_scalar,)
implied_vol_serial = compile_kernel(_body, SIGNATURE, depends_on=_DEPENDS)
implied_vol_parallel = compile_kernel(_body, SIGNATURE, depends_on=_DEPENDS, parallel=True)
