"""Covariance / correlation kernels against np.cov and np.corrcoef."""

from __future__ import annotations

import numpy as np
import pytest

from tickpath.kernels import batch as kb


@pytest.fixture(scope="module")
def batch_returns():
    rng = np.random.default_rng(3)
    mix = rng.normal(size=(6, 6))
    return rng.normal(size=(400, 6)) @ mix * 1e-3


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_window_covariance_and_correlation(batch_returns, backend):
    window = batch_returns[:250]
    np.testing.assert_allclose(
        kb.covariance(window, backend=backend), np.cov(window, rowvar=False), rtol=1e-12, atol=1e-20
    )
    np.testing.assert_allclose(
        kb.covariance(window, ddof=0, backend=backend),
        np.cov(window, rowvar=False, ddof=0),
        rtol=1e-12,
        atol=1e-20,
    )
    np.testing.assert_allclose(
        kb.correlation(window, backend=backend),
        np.corrcoef(window, rowvar=False),
        rtol=1e-12,
        atol=1e-14,
    )


def test_ring_rotation_does_not_matter(batch_returns):
    window = batch_returns[:100]
    rotated = np.roll(window, 37, axis=0)
    np.testing.assert_allclose(
        kb.covariance(rotated), kb.covariance(window), rtol=1e-13, atol=1e-22
    )


def test_two_pass_is_stable_with_a_large_offset(batch_returns):
    shifted = batch_returns[:200] + 1e4  # prices instead of returns: a naive sum of squares fails
    np.testing.assert_allclose(
        kb.covariance(shifted), np.cov(batch_returns[:200], rowvar=False), rtol=1e-6, atol=1e-12
    )


def test_zero_variance_symbol_gives_nan_correlation(batch_returns):
    window = batch_returns[:50].copy()
    window[:, 2] = 0.5
    corr = kb.correlation(window)
    assert np.all(np.isnan(corr[2])) and np.all(np.isnan(corr[:, 2]))
    assert corr[0, 0] == 1.0 and np.all(np.abs(corr[np.ix_([0, 1], [0, 1])]) <= 1.0)


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_rolling_covariance_every_window(batch_returns, backend):
    window = 60
    out = np.empty((batch_returns.shape[0] - window + 1, 6, 6))
    result = kb.rolling_covariance(batch_returns, window, backend=backend, out=out)
    assert result is out
    for t in range(0, out.shape[0], 17):
        np.testing.assert_allclose(
            out[t], np.cov(batch_returns[t : t + window], rowvar=False), rtol=1e-9, atol=1e-18
        )
    np.testing.assert_allclose(
        out[-1], np.cov(batch_returns[-window:], rowvar=False), rtol=1e-9, atol=1e-18
    )


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_streaming_matches_np_cov_over_long_stream(backend):
    rng = np.random.default_rng(8)
    stream = rng.normal(size=(3000, 4)) * 1e-2 + 5.0  # a large mean stresses the updates
    rc = kb.RollingCovariance(4, 128, backend=backend, recompute_every=1000)
    assert np.all(np.isnan(rc.covariance()))
    for start in range(0, 3000, 250):
        rc.update(stream[start : start + 250])
        last = stream[max(0, start + 250 - 128) : start + 250]
        np.testing.assert_allclose(
            rc.covariance(), np.cov(last, rowvar=False), rtol=1e-8, atol=1e-15
        )
    np.testing.assert_allclose(
        rc.correlation(), np.corrcoef(stream[-128:], rowvar=False), rtol=1e-8
    )
    rc.update(stream[0])  # one vector
    assert rc.count == 128
    rc.reset()
    assert rc.count == 0


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: kb.covariance(np.ones(5)), ValueError, "2-D"),
        (lambda: kb.covariance(np.ones((1, 3))), ValueError, "at least 2 rows"),
        (lambda: kb.covariance(np.ones((3, 3)), ddof=3), ValueError, "ddof"),
        (lambda: kb.covariance(np.ones((3, 3), dtype=complex)), TypeError, "real numbers"),
        (lambda: kb.rolling_covariance(np.ones((5, 2)), 6), ValueError, "at least 6 rows"),
        (lambda: kb.covariance(np.ones((4, 2)), out=np.empty((3, 3))), ValueError, "shape"),
        (lambda: kb.RollingCovariance(3, 10).update(np.ones(4)), ValueError, "expected"),
        (lambda: kb.RollingCovariance(3, 10).update([np.nan, 1, 1]), ValueError, "finite"),
        (lambda: kb.RollingCovariance(3, 1), ValueError, "window"),
    ],
)
def test_invalid_arguments_raise(call, error, match):
    with pytest.raises(error, match=match):
        call()
