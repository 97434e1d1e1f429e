"""Covariance and correlation of returns: the scalar source shared by CPU and CUDA.

* ``pair_comoment(returns, i, j, start, stop)``: two-pass (mean first, then centred
  products) co-moment of columns i and j over rows [start, stop): the stable form.
* ``pair_rolling(returns, window, ddof, i, j, out)``: covariance of columns i and j for
  every window of ``window`` rows, written to ``out[t, i, j]`` and ``out[t, j, i]``.
  It slides with the remove-then-add Welford co-moment update, O(1) per step, and
  recomputes the window exactly with the two-pass form every ``window`` steps, which
  bounds the rounding drift of the sliding updates.
"""

# Scalar kernel functions take numba-typed arguments (their types come from the compiled
# callers' signatures), so argument annotations would be noise here.
# ruff: noqa: ANN001

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


def build(jit: Any) -> SimpleNamespace:
    """Return ``pair_comoment`` and ``pair_rolling`` compiled with `jit`."""

    @jit
    def pair_comoment(returns, i, j, start, stop):
        """(mean_i, mean_j, co-moment) of columns i, j over rows [start, stop)."""
        n = stop - start
        mean_i = 0.0
        mean_j = 0.0
        for t in range(start, stop):
            mean_i += returns[t, i]
            mean_j += returns[t, j]
        mean_i /= n
        mean_j /= n
        comoment = 0.0
        for t in range(start, stop):
            comoment += (returns[t, i] - mean_i) * (returns[t, j] - mean_j)
        return mean_i, mean_j, comoment

    @jit
    def pair_rolling(returns, window, ddof, i, j, out):
        n_windows = returns.shape[0] - window + 1
        scale = 1.0 / (window - ddof)
        mean_i = 0.0
        mean_j = 0.0
        comoment = 0.0
        for t in range(n_windows):
            if t % window == 0:
                mean_i, mean_j, comoment = pair_comoment(returns, i, j, t, t + window)
            else:
                old_i = returns[t - 1, i]
                old_j = returns[t - 1, j]
                new_i = returns[t + window - 1, i]
                new_j = returns[t + window - 1, j]
                # remove the oldest row (n = window -> window - 1)
                less_i = mean_i - (old_i - mean_i) / (window - 1)
                less_j = mean_j - (old_j - mean_j) / (window - 1)
                comoment -= (old_i - less_i) * (old_j - mean_j)
                # add the newest row (n = window - 1 -> window)
                mean_i = less_i + (new_i - less_i) / window
                mean_j = less_j + (new_j - less_j) / window
                comoment += (new_i - less_i) * (new_j - mean_j)
            value = comoment * scale
            out[t, i, j] = value
            out[t, j, i] = value

    return SimpleNamespace(pair_comoment=pair_comoment, pair_rolling=pair_rolling)


def _identity(func: Any) -> Any:
    return func


scalar = build(_identity)
