"""Covariance and correlation of returns: the reference (numpy, or cupy through ``xp``).

The meaning is ``np.cov(window, rowvar=False, ddof=ddof)`` and ``np.corrcoef`` on each
window of rows (rows are time, columns are symbols). Row order inside a window does not
matter, so a ring buffer can be passed as it is, whatever its head position.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def covariance(window: Any, ddof: int = 1, xp: Any = np) -> Any:
    """(N, N) covariance of a (rows x N) window: two-pass, centred product."""
    centred = window - window.mean(axis=0)
    return (centred.T @ centred) / (window.shape[0] - ddof)


def correlation_from_covariance(cov: Any, xp: Any = np) -> Any:
    """Correlation matrix; NaN in the rows and columns of zero-variance symbols."""
    std = xp.sqrt(xp.diagonal(cov))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / std[:, None] / std[None, :]
    corr = xp.clip(corr, -1.0, 1.0)
    n = cov.shape[0]
    diag = xp.arange(n)
    corr[diag, diag] = xp.where(std > 0, 1.0, xp.nan)
    return corr


def correlation(window: Any, xp: Any = np) -> Any:
    """(N, N) correlation of a (rows x N) window (np.corrcoef with rowvar=False)."""
    return correlation_from_covariance(covariance(window, 1, xp), xp)


def rolling_covariance(returns: Any, window: int, ddof: int = 1, xp: Any = np) -> Any:
    """(T - window + 1, N, N): covariance of every window of `window` consecutive rows."""
    n_windows = returns.shape[0] - window + 1
    out = xp.empty((n_windows, returns.shape[1], returns.shape[1]))
    for t in range(n_windows):
        out[t] = covariance(returns[t : t + window], ddof, xp)
    return out
