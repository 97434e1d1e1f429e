"""Implied volatility: the 1e-10 accuracy bar against mpmath, the NaN rules, the errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickpath.kernels import batch as kb
from tickpath.kernels.cupy import implied_vol as cupy_iv

EPS = np.finfo(float).eps
R, Q, S0 = 0.03, 0.01, 100.0
STRIKES = [10, 30, 50, 70, 80, 90, 95, 100, 105, 110, 125, 150, 200, 300, 500, 1000]
MATURITIES = [1 / 365, 7 / 365, 30 / 365, 0.25, 0.5, 1, 2, 5, 10, 30]
VOLS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5]


@pytest.fixture(scope="module")
def batch_iv_grid():
    """Prices rounded from 40-digit mpmath values, with vega, over the whole grid."""
    mp = pytest.importorskip("mpmath", reason="mpmath is the high-precision oracle (dev extra)")
    return mpmath_grid(mp)


def mpmath_grid(mp):
    """The grid priced by mpmath at 40 digits: K, T, vol, call, price, vega, time_value."""
    mp.mp.dps = 40
    rows = []
    for K, T, vol, call in itertools.product(STRIKES, MATURITIES, VOLS, [True, False]):
        s, k, t, v = mp.mpf(S0), mp.mpf(K), mp.mpf(T), mp.mpf(vol)
        total = v * mp.sqrt(t)
        d1 = (mp.log(s / k) + (mp.mpf(R) - mp.mpf(Q)) * t) / total + total / 2
        d2 = d1 - total
        spot_disc = s * mp.exp(-mp.mpf(Q) * t)
        strike_disc = k * mp.exp(-mp.mpf(R) * t)
        ncdf = lambda x: mp.erfc(-x / mp.sqrt(2)) / 2  # noqa: E731
        if call:
            price = spot_disc * ncdf(d1) - strike_disc * ncdf(d2)
            intrinsic = max(spot_disc - strike_disc, 0)
        else:
            price = strike_disc * ncdf(-d2) - spot_disc * ncdf(-d1)
            intrinsic = max(strike_disc - spot_disc, 0)
        vega = spot_disc * mp.npdf(d1) * mp.sqrt(t)
        rows.append((K, T, vol, call, float(price), float(vega), float(price - intrinsic)))
    K, T, vol, call, price, vega, time_value = (np.array(c) for c in zip(*rows))
    return {
        "K": K,
        "T": T,
        "vol": vol,
        "call": call.astype(bool),
        "price": price,
        "vega": vega,
        "time_value": time_value,
    }


def identifiable(g):
    """Where the rounding of the inputs moves sigma by at most 1e-11 and tv is a normal
    double: one ulp of the price, and in the money one ulp of the discounted spot and
    strike that make up the intrinsic value."""
    spot_disc, strike_disc = S0 * np.exp(-Q * g["T"]), g["K"] * np.exp(-R * g["T"])
    itm = np.where(g["call"], spot_disc > strike_disc, strike_disc > spot_disc)
    noise = np.where(itm, np.maximum(spot_disc, strike_disc), 0.0)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        cond = EPS * (g["price"] + noise) / g["vega"]
    return (g["vega"] > 0) & (cond <= 1e-11) & (g["time_value"] > 1e-300)


def reprice_tolerance(price, vega, sigma, S, K, T, call):
    """How well any double sigma can reprice a double price: the price's own rounding,
    sigma's rounding times vega, and in the money the rounding of the intrinsic value."""
    spot_disc, strike_disc = S * np.exp(-Q * T), K * np.exp(-R * T)
    itm = np.where(call, spot_disc > strike_disc, strike_disc > spot_disc)
    noise = np.where(itm, np.maximum(spot_disc, strike_disc), 0.0)
    return 16 * EPS * (price + vega * sigma + noise) + 1e-300


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_accuracy_bar_1e_10_on_identifiable_prices(batch_iv_grid, backend):
    g = batch_iv_grid
    sigma, n_nan = kb.implied_vol(g["price"], S0, g["K"], g["T"], R, Q, g["call"], backend=backend)
    mask = identifiable(g)
    assert mask.sum() > 0.6 * mask.size  # the bar covers most of the grid
    error = np.abs(sigma[mask] - g["vol"][mask])
    assert error.max() <= 1e-10, (error.max(), np.argmax(error))
    # the grid has prices at the upper bound only where vega underflowed
    assert n_nan == np.isnan(sigma).sum()
    assert not np.any(np.isnan(sigma[mask]))


def test_non_identifiable_prices_are_repriced_within_their_precision(batch_iv_grid):
    g = batch_iv_grid
    sigma, _ = kb.implied_vol(g["price"], S0, g["K"], g["T"], R, Q, g["call"])
    finite = np.isfinite(sigma)
    assert np.all(sigma[finite] >= 0)
    ok = finite & ~identifiable(g)
    assert ok.sum() > 100
    K, T, call, price = g["K"][ok], g["T"][ok], g["call"][ok], g["price"][ok]
    again = kb.black_scholes(S0, K, T, R, Q, sigma[ok], call)
    tolerance = reprice_tolerance(price, again.vega, sigma[ok], S0, K, T, call)
    assert np.all(np.abs(again.price - price) <= tolerance)
    # NaN only where the rounded price reached the upper bound (vol so large that the
    # option is worth the discounted spot or strike to double precision)
    upper = np.where(g["call"], S0 * np.exp(-Q * g["T"]), g["K"] * np.exp(-R * g["T"]))
    assert np.all(g["price"][~finite] >= upper[~finite] * (1 - 4 * EPS))


def test_cpu_and_numpy_reference_agree_everywhere(batch_iv_grid):
    g = batch_iv_grid
    a = kb.implied_vol(g["price"], S0, g["K"], g["T"], R, Q, g["call"])
    b = kb.implied_vol(g["price"], S0, g["K"], g["T"], R, Q, g["call"], backend="numpy")
    assert a.n_nan == b.n_nan
    np.testing.assert_array_equal(np.isnan(a.sigma), np.isnan(b.sigma))
    mask = identifiable(g)
    np.testing.assert_allclose(a.sigma[mask], b.sigma[mask], rtol=0, atol=1e-10)


def test_out_of_bounds_prices_give_counted_nans_never_errors():
    T, K = 0.5, 100.0
    spot_disc, strike_disc = S0 * np.exp(-Q * T), K * np.exp(-R * T)
    prices = np.array(
        [
            -1.0,  # negative
            spot_disc - strike_disc - 0.01,  # call below intrinsic
            spot_disc,  # call at the upper bound
            spot_disc + 1.0,  # call above the upper bound
            np.nan,
            np.inf,
            5.0,  # a valid price
        ]
    )
    res = kb.implied_vol(prices, S0, K, T, R, Q, True)
    assert res.n_nan == 6
    assert np.all(np.isnan(res.sigma[:6])) and np.isfinite(res.sigma[6])
    ref = kb.implied_vol(prices, S0, K, T, R, Q, True, backend="numpy")
    assert ref.n_nan == 6 and np.isnan(ref.sigma[:6]).all()


def test_lower_bound_and_expiry_rules():
    # price equal to the discounted intrinsic value: volatility zero, not counted
    T = 1.0
    intrinsic_put = 120.0 * np.exp(-R * T) - S0 * np.exp(-Q * T)
    res = kb.implied_vol([0.0, intrinsic_put], S0, [120.0, 120.0], T, R, Q, [True, False])
    np.testing.assert_array_equal(res.sigma, [0.0, 0.0])
    assert res.n_nan == 0
    # at expiry: intrinsic gives 0, anything more is NaN
    res = kb.implied_vol([10.0, 10.5], 110.0, 100.0, 0.0, R, Q, True)
    assert res.sigma[0] == 0.0 and np.isnan(res.sigma[1]) and res.n_nan == 1


@settings(max_examples=200, deadline=None)
@given(
    log_moneyness=st.floats(-2.0, 2.0),
    T=st.floats(1 / 365, 30.0),
    vol=st.floats(0.01, 5.0),
    call=st.booleans(),
)
def test_round_trip_random_contracts(log_moneyness, T, vol, call):
    K = S0 * np.exp(log_moneyness)
    price = kb.black_scholes_price(S0, K, T, R, Q, vol, call)
    vega = kb.black_scholes(S0, K, T, R, Q, vol, call).vega
    sigma, n_nan = kb.implied_vol(price, S0, K, T, R, Q, call)
    spot_disc, strike_disc = S0 * np.exp(-Q * T), K * np.exp(-R * T)
    itm = spot_disc > strike_disc if call else strike_disc > spot_disc
    noise = max(spot_disc, strike_disc) if itm else 0.0
    if vega > 0 and EPS * (price + noise) / vega <= 1e-12 and price > 1e-300:
        # our own double price carries a few ulp of error: allow 50x the ulp sensitivity
        assert abs(sigma - vol) <= max(1e-10, 50 * EPS * price / vega)
    elif np.isfinite(sigma):
        again = kb.black_scholes(S0, K, T, R, Q, sigma, call)
        assert abs(again.price - price) <= reprice_tolerance(
            price, again.vega, sigma, S0, K, T, call
        )


def test_parallel_kernel_matches_serial_and_counts_nans():
    rng = np.random.default_rng(11)
    n = 3000  # above the parallel threshold
    K = S0 * np.exp(rng.uniform(-1, 1, n))
    T = rng.uniform(0.02, 5, n)
    vol = rng.uniform(0.05, 1.5, n)
    call = rng.random(n) < 0.5
    price = kb.black_scholes_price(S0, K, T, R, Q, vol, call)
    price[::7] = -1.0
    res = kb.implied_vol(price, S0, K, T, R, Q, call)
    assert res.n_nan == len(price[::7])
    part = kb.implied_vol(price[:500], S0, K[:500], T[:500], R, Q, call[:500])  # serial
    np.testing.assert_array_equal(part.sigma, res.sigma[:500])
    out = np.empty(n)
    assert kb.implied_vol(price, S0, K, T, R, Q, call, out=out).sigma is out


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"T": -0.1}, ValueError, "T < 0"),
        ({"K": [100.0, -5.0]}, ValueError, "1 contract"),
        ({"S": 0.0}, ValueError, "S <= 0"),
        ({"price": [1.0, 2.0], "K": [1.0, 2.0, 3.0]}, ValueError, "do not broadcast"),
        ({"price": np.array(["1"])}, TypeError, "real numbers"),
        ({"is_call": [0.0]}, TypeError, "booleans"),
    ],
)
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_invalid_contracts_raise(kwargs, error, match, backend):
    args = {"price": 5.0, "S": 100.0, "K": 100.0, "T": 1.0, "r": 0.0, "q": 0.0, "is_call": True}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        kb.implied_vol(**args, backend=backend)


def test_cupy_module_code_path_on_numpy():
    price = kb.black_scholes_price(S0, [80.0, 100.0, 130.0], 1.0, R, Q, 0.3, True)
    values = (
        price,
        np.array([S0]),
        np.array([80.0, 100.0, 130.0]),
        np.array([1.0]),
        np.array([R]),
        np.array([Q]),
    )
    sigma, n_nan, n_invalid = cupy_iv.implied_vol(values, np.array([True]), xp=np)
    np.testing.assert_allclose(sigma, 0.3, atol=1e-12)
    assert (n_nan, n_invalid) == (0, 0)
