"""Option-chain repricing on the CPU: one nogil call fills a chain's result records.

`reprice` computes, per contract of one chain or of several chains taken together
(a fused group), the implied vol of a finite option mid, the volatility of the greeks
(the model vol, or the implied vol where the chain uses implied vols and it is finite),
the Black-Scholes-Merton price and greeks, and writes them straight into
``RESULT_CHAIN`` records (`engine.wire.schema`), so that no per-field work is left.

The records come in with their static fields set from the chain's template
(`engine.dispatch.chains.ChainSpec.template`): symbol, option_symbol, index, is_call,
strike, expiry, rate, dividend, and ``sigma`` holding the model vol. ``jobs`` has one row
per chain (columns ``J_*``: the provenance of the tick that triggered the repricing, the
chain's contract range ``[J_START, J_STOP)`` in the records, and whether it uses implied
vols); ``spot`` the underlying price per row. The kernel writes everything else except
``done_ns`` (the dispatcher stamps it when the job is finished).

The math is the scalar source shared with the batch kernels and the CUDA kernels
(`kernels.reference.black_scholes_scalar`, `kernels.reference.implied_vol_scalar`), so
the values are those of ``kernels.implied_vol`` followed by ``kernels.black_scholes``.
Inputs are validated by the caller (the chain's arrays once when it is built, the
underlying price per job); a contract that is invalid anyway (S <= 0, K <= 0, T < 0 or
sigma < 0) gets NaN values, as in the Black-Scholes kernels.

Returns ``(n_non_finite, n_bad_implied)``: price and greek values that are not finite,
and implied vols that are infinite or negative (what the chain job's check refuses).
Importing this module compiles (or loads from numba's cache) both variants.
"""

from __future__ import annotations

import math

import numpy as np
from numba import from_dtype, njit, prange, types

from engine.wire import schema as s
from kernels.cpu._batch_jit import compile_kernel
from kernels.reference import black_scholes_scalar, implied_vol_scalar

_bs_greeks = black_scholes_scalar.build(njit(inline="always")).bs_greeks
_implied_vol_one = implied_vol_scalar.build(njit(inline="always")).implied_vol_one

# Columns of the int64 ``jobs`` table, one row per chain of the call.
J_TS_NS = 0
J_IN_SEQ = 1
J_IN_SEND_NS = 2
J_RECV_NS = 3
J_IN_STREAM = 4
J_START = 5  # first record of the chain
J_STOP = 6  # one past its last record
J_USE_IMPLIED = 7  # 1: greeks at the implied vol where it is finite
J_COLS = 8

# Implied vols dominate the cost; the same crossover as kernels.cpu.implied_vol.
PARALLEL_THRESHOLD = 1024

_QUOTED = s.RESULT_FLAG_QUOTED
RECORDS = types.Array(from_dtype(s.RESULT_CHAIN), 1, "C")
SIGNATURE = types.UniTuple(types.int64, 2)(
    RECORDS, types.float64[::1], types.int64[:, ::1], types.float64[::1], types.int64
)


def _body(rec, option_mid, jobs, spot, backend):
    n = rec.size
    m = jobs.shape[0]
    n_non_finite = 0
    n_bad_implied = 0
    for i in prange(n):
        j = 0  # the chain of record i: jobs are in record order
        hi = m - 1
        while j < hi:
            half = (j + hi) // 2
            if i < jobs[half, J_STOP]:
                hi = half
            else:
                j = half + 1
        r = rec[i]
        S = spot[j]
        K = r.strike
        T = r.expiry
        rate = r.rate
        q = r.dividend
        call = r.is_call != 0
        quote = option_mid[i]
        implied = np.nan
        flags = 0
        if math.isfinite(quote):
            flags = _QUOTED
            implied, _ = _implied_vol_one(quote, S, K, T, rate, q, call)
        sigma = r.sigma  # the model vol, from the template
        if jobs[j, J_USE_IMPLIED] != 0 and math.isfinite(implied):
            sigma = implied
        if S <= 0.0 or K <= 0.0 or T < 0.0 or sigma < 0.0:
            price = delta = gamma = vega = theta = rho = np.nan
        else:
            price, delta, gamma, vega, theta, rho = _bs_greeks(S, K, T, rate, q, sigma, call)
        r.ts_ns = jobs[j, J_TS_NS]
        r.in_seq = jobs[j, J_IN_SEQ]
        r.in_send_ns = jobs[j, J_IN_SEND_NS]
        r.recv_ns = jobs[j, J_RECV_NS]
        r.in_stream = jobs[j, J_IN_STREAM]
        r.backend = backend
        r.flags = flags
        r.underlying = S
        r.sigma = sigma
        r.price = price
        r.delta = delta
        r.gamma = gamma
        r.vega = vega
        r.theta = theta
        r.rho = rho
        r.option_mid = quote
        r.implied_vol = implied
        bad = 0
        for value in (price, delta, gamma, vega, theta, rho):
            if not math.isfinite(value):
                bad += 1
        n_non_finite += bad
        if math.isinf(implied) or implied < 0.0:
            n_bad_implied += 1
    return n_non_finite, n_bad_implied


_DEPENDS = (black_scholes_scalar, implied_vol_scalar, s)
reprice_serial = compile_kernel(_body, [SIGNATURE], depends_on=_DEPENDS)
reprice_parallel = compile_kernel(_body, [SIGNATURE], depends_on=_DEPENDS, parallel=True)


def reprice(
    records: np.ndarray,
    option_mid: np.ndarray,
    jobs: np.ndarray,
    spot: np.ndarray,
    backend: int,
) -> tuple[int, int]:
    """Fill `records` in place (see the module docstring); the GIL is released meanwhile.

    Args:
        records: ``RESULT_CHAIN[n]``, C-contiguous, static fields from the templates.
        option_mid: float64[n], the option mids (NaN or inf: not quoted).
        jobs: int64[m, J_COLS], one row per chain, in record order, ranges covering n.
        spot: float64[m], the underlying price of each chain.
        backend: the ``RESULT_CHAIN.backend`` code to write.

    Returns:
        ``(n_non_finite, n_bad_implied)``.
    """
    kernel = reprice_parallel if records.size >= PARALLEL_THRESHOLD else reprice_serial
    return kernel(records, option_mid, jobs, spot, backend)
