"""Option-chain repricing on the CPU: one nogil call fills a chain's result records.

`reprice` runs, for every contract of one chain, the shared scalar source
`tickpath.kernels.reference.chain_scalar` (the same code the CUDA chain kernel runs): the implied
vol of a finite option mid, the volatility of the greeks (the model vol, or the implied
vol where the chain uses implied vols and it is finite), the Black-Scholes-Merton price
and greeks, and every field of the chain's ``RESULT_CHAIN`` records (`tickpath.engine.wire.schema`)
written into `out`, so that no per-field work is left to Python. ``done_ns`` is written
0: it is stamped when the job is finished (`tickpath.engine.dispatch.chains.ChainJob.records`).

The static fields come from the chain's template (`tickpath.engine.dispatch.chains.ChainSpec
.template`). The kernel copies them itself: a structured numpy copy of the template would
hold the GIL longer than the whole computation (tens of us for a few hundred records).
Inputs are validated by the caller (the chain's arrays once when it is built, the
underlying price per job); a contract that is invalid anyway (S <= 0, K <= 0, T < 0 or
sigma < 0) gets NaN values, as in the Black-Scholes kernels.

Returns ``(n_non_finite, n_bad_implied)``: price and greek values that are not finite,
and implied vols that are infinite or negative (what the chain job's check refuses).
Importing this module compiles (or loads from numba's cache) both variants.
"""

from __future__ import annotations

import numpy as np
from numba import from_dtype, njit, prange, types

from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu._batch_jit import compile_kernel
from tickpath.kernels.reference import black_scholes_scalar, chain_scalar, implied_vol_scalar

_fill = chain_scalar.build(njit(inline="always")).fill

# Implied vols dominate the cost; the same crossover as kernels.cpu.implied_vol.
PARALLEL_THRESHOLD = 1024

_RECORD = from_dtype(s.RESULT_CHAIN)
RECORDS = types.Array(_RECORD, 1, "C")
TEMPLATE = types.Array(_RECORD, 1, "C", readonly=True)
SIGNATURE = types.UniTuple(types.int64, 2)(
    RECORDS, TEMPLATE, types.float64[::1], types.float64, types.boolean,
    types.int64, types.int64, types.int64, types.int64, types.int64, types.int64,
)  # fmt: skip


def _body(out, template, option_mid, S, use_implied, ts_ns, in_seq, in_send_ns, recv_ns,
          in_stream, backend):  # fmt: skip
    n_non_finite = 0
    n_bad_implied = 0
    for i in prange(out.size):
        bad, bad_implied = _fill(out[i], template[i], option_mid[i], S, use_implied, ts_ns,
                                 in_seq, in_send_ns, recv_ns, in_stream, backend)  # fmt: skip
        n_non_finite += bad
        n_bad_implied += bad_implied
    return n_non_finite, n_bad_implied


_DEPENDS = (black_scholes_scalar, implied_vol_scalar, chain_scalar, s)
reprice_serial = compile_kernel(_body, [SIGNATURE], depends_on=_DEPENDS)
reprice_parallel = compile_kernel(_body, [SIGNATURE], depends_on=_DEPENDS, parallel=True)


def reprice(
    out: np.ndarray,
    template: np.ndarray,
    option_mid: np.ndarray,
    S: float,
    use_implied: bool,
    provenance: tuple[int, int, int, int, int],
    backend: int,
) -> tuple[int, int]:
    """Fill `out` (see the module docstring); the GIL is released meanwhile.

    Args:
        out: ``RESULT_CHAIN[n]``, C-contiguous and writeable (its contents are ignored).
        template: the chain's read-only ``RESULT_CHAIN[n]`` template.
        option_mid: float64[n], the option mids (NaN or inf: not quoted).
        S: the underlying price. use_implied: greeks at the implied vol where finite.
        provenance: ``(ts_ns, in_seq, in_send_ns, recv_ns, in_stream)`` of the tick.
        backend: the ``RESULT_CHAIN.backend`` code to write.

    Returns:
        ``(n_non_finite, n_bad_implied)``.
    """
    kernel = reprice_parallel if out.size >= PARALLEL_THRESHOLD else reprice_serial
    return kernel(out, template, option_mid, S, use_implied, *provenance, backend)
