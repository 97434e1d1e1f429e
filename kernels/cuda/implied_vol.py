"""Implied volatility on the GPU: numba-CUDA kernel over the shared scalar source."""

from __future__ import annotations

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
from tickpath.kernels.reference.implied_vol_scalar import IV_INVALID, IV_OUT_OF_BOUNDS, build

_scalar = build(cuda.jit(device=True))
_implied_vol_one = _scalar.implied_vol_one


@cuda.jit
def implied_vol_kernel(price, S, K, T, r, q, is_call, sigma, counts):
    i = cuda.grid(1)
    if i < sigma.size:
        vol, code = _implied_vol_one(
            price[i if price.size > 1 else 0],
            S[i if S.size > 1 else 0],
            K[i if K.size > 1 else 0],
            T[i if T.size > 1 else 0],
            r[i if r.size > 1 else 0],
            q[i if q.size > 1 else 0],
            is_call[i if is_call.size > 1 else 0],
        )
        sigma[i] = vol
        if code == IV_OUT_OF_BOUNDS:
            cuda.atomic.add(counts, 0, 1)
        elif code == IV_INVALID:
            cuda.atomic.add(counts, 1, 1)


def implied_vol(values: tuple, flags: Any, n: int, out: Any = None) -> tuple[Any, int, int]:
    """(sigma, n_nan, n_invalid); inputs flat of length n or 1."""
    inputs = [on_device(v) for v in values]
    result = device_output(out, n)
    counts = cuda.to_device(np.zeros(2, dtype=np.int64))
    implied_vol_kernel[blocks_for(n), THREADS_PER_BLOCK](*inputs, on_device(flags), result, counts)
    n_nan, n_invalid = (int(c) for c in counts.copy_to_host())
    return deliver(result, out, n), n_nan, n_invalid
