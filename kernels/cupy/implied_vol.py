"""Implied volatility with CuPy arrays (the vectorised bisection reference on the GPU)."""

from __future__ import annotations

from typing import Any

from tickpath.kernels.reference import implied_vol as ref


def implied_vol(values: tuple, flags: Any, xp: Any = None) -> tuple[Any, int, int]:
    """(sigma as xp array, n_nan, n_invalid); rules as kernels.batch.implied_vol."""
    if xp is None:
        import cupy

        xp = cupy
    arrays = [xp.asarray(v) for v in values]
    sigma, n_nan, n_invalid = ref.implied_vol(*arrays, xp.asarray(flags), xp)
    return sigma, n_nan, n_invalid
