"""Options and risk, in batches: Black-Scholes with greeks, implied volatility, Monte
Carlo, value at risk and expected shortfall, covariance and correlation.

These are the engine's batch (millisecond-path) kernels, on four backends chosen per
call with ``backend=``: ``"numpy"`` (the reference), ``"cpu"`` (numba, the default),
``"cuda"`` and ``"cupy"`` (GPU; :func:`available_backends` says what runs here, and
asking for a missing one raises :class:`BackendUnavailableError`).  Importing this
module compiles nothing; :func:`warmup` compiles (or loads from numba's cache) the
CPU kernels ahead of the first call.  docs/kernels.md has the details.

Units:

* ``S`` spot and ``K`` strike in price units (> 0); ``T`` time to expiry in years
  (>= 0); ``r`` continuously compounded risk-free rate and ``q`` continuous dividend
  yield, per year (0.05 = 5 %); ``sigma`` volatility per sqrt(year) (0.2 = 20 %);
  ``is_call`` True for a call, False for a put.  Element-wise inputs broadcast like
  numpy arrays.
* :func:`black_scholes` returns :class:`BlackScholesResult`: ``price`` (price units),
  ``delta`` dV/dS, ``gamma`` d2V/dS2 (per price unit), ``vega`` dV/dsigma per 1.00 of
  volatility (divide by 100 for a vol point), ``theta`` dV/dt per year of calendar
  time (divide by 365 for a day), ``rho`` dV/dr per 1.00 of rate.
* :func:`implied_vol` takes the option ``price`` instead of ``sigma`` and returns
  :class:`ImpliedVolResult` (``sigma`` per sqrt(year), NaN where the price is outside
  the no-arbitrage bounds; ``n_nan`` counts those).
* :func:`monte_carlo_european` / :func:`monte_carlo_asian`: one contract, ``n_paths``
  GBM paths (``n_steps`` averaging dates for the Asian), a ``seed``;
  :class:`MonteCarloResult` ``(price, std_error, n_paths)`` in price units.
* :func:`portfolio_var`: ``spot`` (price units), ``position`` (units held), ``vol``
  (per sqrt(year)), a correlation matrix, ``horizon`` in years, ``confidence`` in
  (0, 1); :class:`VaRResult` ``var`` and ``expected_shortfall`` as positive losses in
  currency units (price units x positions).
* :func:`covariance` / :func:`correlation` of a ``(rows x N)`` window of returns
  (``np.cov`` / ``np.corrcoef`` with ``rowvar=False``), :func:`rolling_covariance`
  over every window of a return block, :class:`RollingCovariance` streaming.
"""

from __future__ import annotations

from tickpath.kernels.batch import (
    BackendUnavailableError,
    BlackScholesResult,
    ImpliedVolResult,
    MonteCarloResult,
    RollingCovariance,
    VaRResult,
    available_backends,
    black_scholes,
    black_scholes_price,
    correlation,
    covariance,
    implied_vol,
    monte_carlo_asian,
    monte_carlo_european,
    portfolio_var,
    rolling_covariance,
    warmup,
)

__all__ = [
    "BackendUnavailableError",
    "BlackScholesResult",
    "ImpliedVolResult",
    "MonteCarloResult",
    "RollingCovariance",
    "VaRResult",
    "available_backends",
    "black_scholes",
    "black_scholes_price",
    "correlation",
    "covariance",
    "implied_vol",
    "monte_carlo_asian",
    "monte_carlo_european",
    "portfolio_var",
    "rolling_covariance",
    "warmup",
]
