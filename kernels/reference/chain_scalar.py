"""One option-chain contract repriced into its result record: the scalar source shared by
the CPU chain kernel (`tickpath.kernels.cpu.chain`) and the CUDA one
(`tickpath.kernels.cuda.chain`).

`build(jit, branch_free)` returns ``fill(r, c, quote, S, use_implied, ts_ns, in_seq,
in_send_ns, recv_ns, in_stream, backend) -> (bad, bad_implied)``: from the contract's
template record `c` (`tickpath.engine.dispatch.chains.ChainSpec.template`: symbol, option_symbol,
index, is_call, strike, expiry, rate, dividend, and sigma holding the model vol) and the
option's mid `quote` (NaN: not quoted), it computes the implied vol of a finite quote, the
volatility of the greeks (the model vol, or the implied vol where `use_implied` and it is
finite), the Black-Scholes-Merton price and greeks, and writes every field of the
``RESULT_CHAIN`` record `r` (``done_ns`` 0: stamped when the job is finished). It returns
the number of price and greek values that are not finite, and 1 when the implied vol is
infinite or negative (what the chain job's check refuses).

Fields are read and written by name (``r["price"]``), which numba compiles for CPU and
GPU records alike and the CUDA simulator runs on numpy records.
"""

# Scalar kernel functions take numba-typed arguments (their types come from the compiled
# callers' signatures), so argument annotations would be noise here.
# ruff: noqa: ANN001

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

from tickpath.engine.wire import schema as s
from tickpath.kernels.reference import black_scholes_scalar, implied_vol_scalar

QUOTED = s.RESULT_FLAG_QUOTED


def build(jit: Any, *, branch_free: bool = False) -> SimpleNamespace:
    """Return ``fill`` compiled with `jit` (Black-Scholes layout as `black_scholes_scalar`)."""
    bs_greeks = black_scholes_scalar.build(jit, branch_free=branch_free).bs_greeks
    implied_vol_one = implied_vol_scalar.build(jit).implied_vol_one

    @jit
    def fill(r, c, quote, S, use_implied, ts_ns, in_seq, in_send_ns, recv_ns, in_stream,
             backend):  # fmt: skip
        K = c["strike"]
        T = c["expiry"]
        rate = c["rate"]
        q = c["dividend"]
        call = c["is_call"] != 0
        implied = math.nan
        flags = 0
        if math.isfinite(quote):
            flags = QUOTED
            implied, _ = implied_vol_one(quote, S, K, T, rate, q, call)
        sigma = c["sigma"]  # the model vol
        if use_implied and math.isfinite(implied):
            sigma = implied
        if S <= 0.0 or K <= 0.0 or T < 0.0 or sigma < 0.0:
            price = delta = gamma = vega = theta = rho = math.nan
        else:
            price, delta, gamma, vega, theta, rho = bs_greeks(S, K, T, rate, q, sigma, call)
        r["ts_ns"] = ts_ns
        r["in_seq"] = in_seq
        r["in_send_ns"] = in_send_ns
        r["recv_ns"] = recv_ns
        r["done_ns"] = 0
        r["in_stream"] = in_stream
        r["symbol"] = c["symbol"]
        r["option_symbol"] = c["option_symbol"]
        r["index"] = c["index"]
        r["is_call"] = c["is_call"]
        r["backend"] = backend
        r["flags"] = flags
        r["_pad"] = 0
        r["strike"] = K
        r["expiry"] = T
        r["underlying"] = S
        r["rate"] = rate
        r["dividend"] = q
        r["sigma"] = sigma
        r["price"] = price
        r["delta"] = delta
        r["gamma"] = gamma
        r["vega"] = vega
        r["theta"] = theta
        r["rho"] = rho
        r["option_mid"] = quote
        r["implied_vol"] = implied
        bad = 0
        if not math.isfinite(price):
            bad += 1
        if not math.isfinite(delta):
            bad += 1
        if not math.isfinite(gamma):
            bad += 1
        if not math.isfinite(vega):
            bad += 1
        if not math.isfinite(theta):
            bad += 1
        if not math.isfinite(rho):
            bad += 1
        bad_implied = 1 if (math.isinf(implied) or implied < 0.0) else 0
        return bad, bad_implied

    return SimpleNamespace(fill=fill)
