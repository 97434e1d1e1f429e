"""Black-Scholes-Merton kernels: every backend against the reference and mpmath."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tickpath.kernels import batch as kb
from tickpath.kernels.cupy import black_scholes as cupy_bs
from tickpath.kernels.reference.black_scholes import black_scholes_greeks

FIELDS = ("price", "delta", "gamma", "vega", "theta", "rho")


def grid():
    S, K, T, sigma, call = (
        np.array(v, dtype=float).ravel()
        for v in np.meshgrid(
            [100.0],
            [20, 60, 90, 100, 110, 150, 400],
            [0.0, 1 / 365, 0.1, 1.0, 10.0],
            [0.0, 0.01, 0.2, 1.0, 4.0],
            [0, 1],
            indexing="ij",
        )
    )
    return S, K, T, 0.03, 0.01, sigma, call.astype(bool)


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_greeks_match_reference_on_grid(backend):
    S, K, T, r, q, sigma, call = grid()
    result = kb.black_scholes(S, K, T, r, q, sigma, call, backend=backend)
    with np.errstate(all="ignore"):
        expected = black_scholes_greeks(S, K, T, r, q, sigma, call)
    for field, want in zip(FIELDS, expected):
        got = getattr(result, field)
        np.testing.assert_allclose(got, want, rtol=2e-13, atol=1e-12, err_msg=field)


def test_parallel_and_serial_cpu_kernels_agree():
    rng = np.random.default_rng(5)
    n = 5000  # above the parallel threshold
    K = rng.uniform(50, 150, n)
    T = rng.uniform(0.01, 3, n)
    sigma = rng.uniform(0.05, 1, n)
    call = rng.random(n) < 0.5
    big = kb.black_scholes(100.0, K, T, 0.02, 0.0, sigma, call)
    small = [
        kb.black_scholes(100.0, K[i::50], T[i::50], 0.02, 0.0, sigma[i::50], call[i::50])
        for i in range(3)
    ]
    for i, part in enumerate(small):
        for field in FIELDS:
            np.testing.assert_array_equal(getattr(part, field), getattr(big, field)[i::50])


MP_CASES = list(itertools.product([60.0, 100.0, 140.0], [0.05, 1.5], [0.15, 0.8], [True, False]))


def mp_value(mp, S, K, T, r, q, vol, call):
    """Black-Scholes-Merton value in mpmath arithmetic."""
    S, K, T, r, q, vol = (mp.mpf(x) for x in (S, K, T, r, q, vol))
    total = vol * mp.sqrt(T)
    d1 = (mp.log(S / K) + (r - q) * T) / total + total / 2
    d2 = d1 - total

    def ncdf(x):
        return mp.erfc(-x / mp.sqrt(2)) / 2

    if call:
        return S * mp.exp(-q * T) * ncdf(d1) - K * mp.exp(-r * T) * ncdf(d2)
    return K * mp.exp(-r * T) * ncdf(-d2) - S * mp.exp(-q * T) * ncdf(-d1)


def mp_greeks(mp, S, K, T, r, q, vol, call):
    """Price and greeks by 40-digit numerical differentiation of the mpmath value."""
    return {
        "price": mp_value(mp, S, K, T, r, q, vol, call),
        "delta": mp.diff(lambda x: mp_value(mp, x, K, T, r, q, vol, call), S),
        "gamma": mp.diff(lambda x: mp_value(mp, x, K, T, r, q, vol, call), S, 2),
        "vega": mp.diff(lambda x: mp_value(mp, S, K, T, r, q, x, call), vol),
        "theta": -mp.diff(lambda x: mp_value(mp, S, K, x, r, q, vol, call), T),
        "rho": mp.diff(lambda x: mp_value(mp, S, K, T, x, q, vol, call), r),
    }


def test_against_mpmath_with_finite_difference_greeks():
    mp = pytest.importorskip("mpmath", reason="mpmath is the high-precision oracle (dev extra)")
    mp.mp.dps = 40
    r, q, S = 0.03, 0.01, 100.0
    for K, T, vol, call in MP_CASES:
        got = kb.black_scholes(S, K, T, r, q, vol, call)
        for field, want in mp_greeks(mp, S, K, T, r, q, vol, call).items():
            g, w = float(getattr(got, field)), float(want)
            assert abs(g - w) <= 1e-13 * max(1.0, abs(w)), (field, K, T, vol, call, g, w)


def test_conventions_theta_negative_for_atm_call_and_put_call_parity():
    res_c = kb.black_scholes(100.0, 100.0, 0.5, 0.05, 0.0, 0.2, True)
    res_p = kb.black_scholes(100.0, 100.0, 0.5, 0.05, 0.0, 0.2, False)
    assert res_c.theta < 0 and res_c.vega > 0 and res_c.rho > 0 and res_p.rho < 0
    parity = res_c.price - res_p.price
    assert parity == pytest.approx(100.0 - 100.0 * np.exp(-0.05 * 0.5), rel=1e-14)
    assert res_c.delta - res_p.delta == pytest.approx(1.0, rel=1e-15)
    assert res_c.gamma == pytest.approx(res_p.gamma, rel=1e-15)


def test_zero_total_volatility_gives_discounted_intrinsic_limits():
    res = kb.black_scholes([120.0, 80.0], 100.0, 0.0, 0.05, 0.0, 0.3, [True, True])
    np.testing.assert_array_equal(res.price, [20.0, 0.0])
    np.testing.assert_array_equal(res.delta, [1.0, 0.0])
    np.testing.assert_array_equal(res.gamma, [0.0, 0.0])
    res = kb.black_scholes(120.0, 100.0, 1.0, 0.05, 0.0, 0.0, False)
    assert res.price == 0.0 and res.delta == 0.0
    res = kb.black_scholes(120.0, 100.0, 1.0, 0.05, 0.0, 0.0, True)
    assert res.price == pytest.approx(120.0 - 100.0 * np.exp(-0.05))
    assert res.theta == pytest.approx(-0.05 * 100.0 * np.exp(-0.05))


def test_broadcasting_like_numpy_and_price_only_api():
    K = np.array([[90.0], [100.0], [110.0]])
    T = np.array([[0.25, 0.5, 1.0, 2.0]])
    res = kb.black_scholes(100.0, K, T, 0.01, 0.0, 0.25, True)
    assert res.price.shape == (3, 4)
    for i, j in itertools.product(range(3), range(4)):
        one = kb.black_scholes(100.0, K[i, 0], T[0, j], 0.01, 0.0, 0.25, True)
        assert res.price[i, j] == one.price and res.vega[i, j] == one.vega
    np.testing.assert_array_equal(
        kb.black_scholes_price(100.0, K, T, 0.01, 0.0, 0.25, True), res.price
    )
    np.testing.assert_allclose(
        kb.black_scholes_price(100.0, K, T, 0.01, 0.0, 0.25, True, backend="numpy"),
        res.price,
        rtol=1e-14,
    )


def test_out_arrays_are_filled_in_place():
    out = kb.BlackScholesResult.empty(3)
    ids = [id(getattr(out, f)) for f in FIELDS]
    res = kb.black_scholes([90.0, 100.0, 110.0], 100.0, 1.0, 0.0, 0.0, 0.2, True, out=out)
    assert res is out and [id(getattr(res, f)) for f in FIELDS] == ids
    assert np.all(np.isfinite(out.price)) and out.price[2] > out.price[0]
    price = np.empty(3)
    assert (
        kb.black_scholes_price([90.0, 100.0, 110.0], 100.0, 1.0, 0.0, 0.0, 0.2, True, out=price)
        is price
    )
    np.testing.assert_array_equal(price, out.price)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"S": [1.0, 2.0], "K": [1.0, 2.0, 3.0]}, ValueError, "do not broadcast"),
        ({"T": -1.0}, ValueError, "T < 0"),
        ({"sigma": [0.2, -0.1]}, ValueError, "1 contract"),
        ({"S": 0.0}, ValueError, "S <= 0"),
        ({"S": np.array([1 + 1j])}, TypeError, "real numbers"),
        ({"is_call": 0.5}, TypeError, "booleans"),
        ({"S": "100"}, TypeError, "real numbers"),
    ],
)
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_invalid_inputs_raise_one_line_errors(kwargs, error, match, backend):
    args = {"S": 100.0, "K": 100.0, "T": 1.0, "r": 0.0, "q": 0.0, "sigma": 0.2, "is_call": True}
    args.update(kwargs)
    with pytest.raises(error, match=match) as info:
        kb.black_scholes(**args, backend=backend)
    assert "\n" not in str(info.value)


def test_wrong_out_is_rejected():
    with pytest.raises(TypeError, match="float64"):
        kb.black_scholes_price(
            [1.0, 2.0], 1.0, 1.0, 0.0, 0.0, 0.2, True, out=np.empty(2, np.float32)
        )
    with pytest.raises(ValueError, match="shape"):
        kb.black_scholes_price([1.0, 2.0], 1.0, 1.0, 0.0, 0.0, 0.2, True, out=np.empty(3))
    with pytest.raises(TypeError, match="BlackScholesResult"):
        kb.black_scholes(1.0, 1.0, 1.0, 0.0, 0.0, 0.2, True, out=np.empty(1))


def test_cupy_module_code_path_on_numpy():
    S, K, T, r, q, sigma, call = grid()
    values = (S, K, T, np.array([r]), np.array([q]), sigma)
    arrays, invalid = cupy_bs.greeks(values, call, S.size, xp=np)
    expected = kb.black_scholes(S, K, T, r, q, sigma, call)
    assert invalid == 0
    for field, got in zip(FIELDS, arrays):
        np.testing.assert_allclose(got, getattr(expected, field), rtol=2e-13, atol=1e-12)
    prices, invalid = cupy_bs.price(
        (S, K, T, np.array([r]), np.array([q]), -sigma - 1), call, S.size, xp=np
    )
    assert invalid == S.size and np.all(np.isnan(prices))


def test_branch_free_layout_gives_the_same_bits():
    """The GPU's call/put-without-a-branch layout of the scalar source equals the CPU's."""
    from tickpath.kernels.reference.black_scholes_scalar import build

    branchy = build(lambda f: f)
    branch_free = build(lambda f: f, branch_free=True)
    rng = np.random.default_rng(5)
    for _ in range(3000):
        args = (
            rng.uniform(1, 200), rng.uniform(1, 200), float(rng.choice([0.0, rng.uniform(0, 5)])),
            rng.uniform(-0.05, 0.1), rng.uniform(-0.02, 0.08),
            float(rng.choice([0.0, rng.uniform(0.01, 3)])), bool(rng.random() < 0.5),
        )  # fmt: skip
        assert branchy.bs_price(*args) == branch_free.bs_price(*args), args
        assert branchy.bs_greeks(*args) == branch_free.bs_greeks(*args), args
