"""Monte Carlo kernels: CPU equals the reference stream, convergence, VaR/ES rules."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtri

from tickpath.kernels import batch as kb
from tickpath.kernels.reference import montecarlo as ref

CONTRACT = (100.0, 105.0, 0.75, 0.03, 0.01, 0.25)


@pytest.mark.parametrize("is_call", [True, False])
def test_european_cpu_matches_reference_stream(is_call):
    cpu = kb.monte_carlo_european(*CONTRACT, is_call, n_paths=20_001, seed=9)
    npy = kb.monte_carlo_european(*CONTRACT, is_call, n_paths=20_001, seed=9, backend="numpy")
    assert cpu.n_paths == npy.n_paths == 20_001
    assert cpu.price == pytest.approx(npy.price, rel=1e-12)
    assert cpu.std_error == pytest.approx(npy.std_error, rel=1e-10)


@pytest.mark.parametrize(
    ("K", "is_call"), [(70.0, True), (100.0, True), (130.0, True), (90.0, False), (120.0, False)]
)
def test_european_converges_to_black_scholes(K, is_call):
    S, _, T, r, q, sigma = CONTRACT
    exact = float(kb.black_scholes_price(S, K, T, r, q, sigma, is_call))
    mc = kb.monte_carlo_european(S, K, T, r, q, sigma, is_call, n_paths=400_000, seed=2024)
    assert abs(mc.price - exact) < 4 * mc.std_error
    assert mc.std_error < 0.01 * max(exact, 1.0)


def test_seed_changes_paths_and_same_seed_repeats():
    a = kb.monte_carlo_european(*CONTRACT, True, n_paths=10_000, seed=1)
    b = kb.monte_carlo_european(*CONTRACT, True, n_paths=10_000, seed=1)
    c = kb.monte_carlo_european(*CONTRACT, True, n_paths=10_000, seed=2)
    assert a == b and a.price != c.price


@pytest.mark.parametrize("is_call", [True, False])
def test_asian_cpu_matches_reference_and_bounds(is_call):
    cpu = kb.monte_carlo_asian(*CONTRACT, is_call, n_steps=13, n_paths=4_001, seed=5)
    npy = kb.monte_carlo_asian(
        *CONTRACT, is_call, n_steps=13, n_paths=4_001, seed=5, backend="numpy"
    )
    assert cpu.price == pytest.approx(npy.price, rel=1e-12)
    assert cpu.std_error == pytest.approx(npy.std_error, rel=1e-10)
    big = kb.monte_carlo_asian(*CONTRACT, is_call, n_steps=12, n_paths=100_000, seed=8)
    geometric = ref.geometric_asian_price(*CONTRACT, is_call, 12)
    # arithmetic >= geometric average: calls are worth more, puts less
    if is_call:
        assert big.price > geometric - 4 * big.std_error
        assert big.price < float(kb.black_scholes_price(*CONTRACT, True))
    else:
        assert big.price < geometric + 4 * big.std_error
    assert abs(big.price - geometric) < 0.1 * geometric + 4 * big.std_error


def test_asian_with_zero_volatility_is_deterministic():
    S, K, T, r, q = 100.0, 95.0, 1.0, 0.05, 0.0
    res = kb.monte_carlo_asian(S, K, T, r, q, 0.0, True, n_steps=4, n_paths=64, seed=0)
    fixings = S * np.exp(r * T * np.arange(1, 5) / 4)
    assert res.price == pytest.approx(np.exp(-r * T) * (fixings.mean() - K), rel=1e-14)
    assert res.std_error == 0.0


def test_single_asset_var_matches_lognormal_quantile():
    spot, position, vol, h, conf = 100.0, 10.0, 0.3, 10 / 252, 0.99
    res = kb.portfolio_var(
        [spot], [position], [vol], [[1.0]], horizon=h, confidence=conf, n_scenarios=200_000, seed=17
    )
    exact = -position * spot * np.expm1(-0.5 * vol**2 * h + vol * np.sqrt(h) * ndtri(1 - conf))
    assert res.var == pytest.approx(exact, rel=0.02)
    assert res.expected_shortfall > res.var
    npy = kb.portfolio_var(
        [spot],
        [position],
        [vol],
        [[1.0]],
        horizon=h,
        confidence=conf,
        n_scenarios=200_000,
        seed=17,
        backend="numpy",
    )
    assert res.var == pytest.approx(npy.var, rel=1e-13)
    assert res.expected_shortfall == pytest.approx(npy.expected_shortfall, rel=1e-13)


def test_portfolio_var_definition_and_pnl_out():
    corr = np.array([[1.0, 0.6, -0.2], [0.6, 1.0, 0.1], [-0.2, 0.1, 1.0]])
    pnl = np.empty(1000)
    res = kb.portfolio_var(
        [100, 50, 20],
        [10, -4, 30],
        [0.2, 0.35, 0.15],
        corr,
        horizon=1 / 52,
        confidence=0.95,
        n_scenarios=1000,
        seed=4,
        pnl_out=pnl,
    )
    losses = np.sort(-pnl)[::-1]
    k = 50  # ceil(0.05 * 1000)
    assert res.var == losses[k - 1]
    assert res.expected_shortfall == pytest.approx(losses[:k].mean(), rel=1e-14)
    # diversification: a hedged book loses less than the sum of its legs' VaR
    legs = [
        kb.portfolio_var(
            [s], [p], [v], [[1.0]], horizon=1 / 52, confidence=0.95, n_scenarios=20_000, seed=4
        ).var
        for s, p, v in [(100, 10, 0.2), (50, -4, 0.35), (20, 30, 0.15)]
    ]
    assert res.var < sum(legs)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: kb.monte_carlo_european(100, 100, -1, 0, 0, 0.2, True, n_paths=10),
            ValueError,
            "T >= 0",
        ),
        (
            lambda: kb.monte_carlo_european(100, 100, 1, 0, 0, -0.2, True, n_paths=10),
            ValueError,
            "sigma",
        ),
        (
            lambda: kb.monte_carlo_european(100, 100, 1, 0, 0, 0.2, True, n_paths=1.5),
            TypeError,
            "n_paths",
        ),
        (
            lambda: kb.monte_carlo_european([1, 2], 100, 1, 0, 0, 0.2, True, n_paths=10),
            ValueError,
            "scalar",
        ),
        (
            lambda: kb.monte_carlo_asian(100, 100, 1, 0, 0, 0.2, True, n_steps=0, n_paths=10),
            ValueError,
            "n_steps",
        ),
        (
            lambda: kb.monte_carlo_european(100, 100, 1, 0, 0, 0.2, True, n_paths=10, seed=-3),
            ValueError,
            "seed",
        ),
        (
            lambda: kb.portfolio_var([1, 2], [1], [0.1, 0.1], np.eye(2), horizon=1, n_scenarios=10),
            ValueError,
            "one length",
        ),
        (
            lambda: kb.portfolio_var(
                [1, 2], [1, 1], [0.1, 0.1], [[1, 2], [2, 1]], horizon=1, n_scenarios=10
            ),
            ValueError,
            "positive definite",
        ),
        (
            lambda: kb.portfolio_var(
                [1], [1], [0.1], [[1]], horizon=1, confidence=1.0, n_scenarios=10
            ),
            ValueError,
            "confidence",
        ),
        (
            lambda: kb.portfolio_var([1], [1], [-0.1], [[1]], horizon=1, n_scenarios=10),
            ValueError,
            "vol",
        ),
    ],
)
def test_invalid_arguments_raise(call, error, match):
    with pytest.raises(error, match=match):
        call()
