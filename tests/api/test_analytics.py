"""tickpath.analytics: equal to the numpy references, to the engine's frame kernels on the
same ticks, and chunk by chunk to one call over the whole arrays."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tickpath.analytics as ta
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s
from tickpath.kernels.reference import streaming as ref

PARAMS = dict(
    n_symbols=8,
    ema_spans=(1, 3, 15, 1023),
    vwap_window_s=0.004,  # 4 ms: trades below are 0-3 ms apart, so the window slides
    vwap_ring=8,  # and sometimes overflows
    vol_window=4,
    bar_s=0.003,
)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def trade_streams(draw, max_symbols=5):
    """TRADE records (ticks and lots) with equal timestamps, both sides, and chunk cuts."""
    n = draw(st.integers(1, 200))
    n_sym = draw(st.integers(1, max_symbols))
    gaps = draw(st.lists(st.sampled_from([0, 0, 1, 2, 3]), min_size=n, max_size=n))
    t = np.zeros(n, s.TRADE)
    t["ts_ns"] = 10**9 + np.cumsum(gaps) * 1_000_000
    t["symbol"] = draw(st.lists(st.integers(0, n_sym - 1), min_size=n, max_size=n))
    t["side"] = draw(st.lists(st.integers(-1, 1), min_size=n, max_size=n))
    moves = draw(st.lists(st.integers(-30, 30), min_size=n, max_size=n))
    t["price"] = 500_000 + np.cumsum(moves) * 10
    t["size"] = draw(st.lists(st.integers(1, 10**12), min_size=n, max_size=n))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=8))))
    return t, [c for c in cuts if 0 < c < n]


def _columns(trades):
    return (
        trades["price"] / s.PRICE_SCALE,
        trades["size"] / s.SIZE_SCALE,
        trades["ts_ns"],
        trades["side"],
        trades["symbol"],
    )


def _chunks(cuts, n):
    bounds = [0, *cuts, n]
    return list(zip(bounds[:-1], bounds[1:]))


# ---------------------------------------------------------------------------
# against the numpy reference
# ---------------------------------------------------------------------------


@SETTINGS
@given(trade_streams())
def test_trade_analytics_equal_numpy_reference(stream):
    trades, _ = stream
    px, sz, ts, side, sym = _columns(trades)
    expect = ref.trade_features(trades, (1, 3, 15, 1023), 4_000_000, 8, 4)
    for k, span in enumerate((1, 3, 15, 1023)):
        np.testing.assert_array_equal(ta.ema(px, span, symbols=sym), expect["ema"][:, k])
    np.testing.assert_allclose(ta.vwap(px, sz, symbols=sym), expect["vwap_session"], rtol=1e-12)
    window = ta.TradeWindow(4_000_000, max_trades=8, n_symbols=int(sym.max()) + 1)
    got = window.update(px, sz, ts, side, sym)
    np.testing.assert_allclose(got.vwap, expect["vwap_window"], rtol=1e-12)
    np.testing.assert_allclose(
        got.flow_imbalance, expect["trade_flow_imbalance"], rtol=1e-9, atol=1e-12
    )
    ret = ta.rolling_returns(px, 4, symbols=sym)
    np.testing.assert_array_equal(ret.n_returns, expect["n_returns"])
    np.testing.assert_allclose(ret.mean, expect["ret_mean"], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(ret.var, expect["ret_var"], rtol=1e-7, atol=1e-18)
    np.testing.assert_allclose(ret.realized_vol, expect["realized_vol"], rtol=1e-7, atol=1e-15)
    np.testing.assert_array_equal(ta.realized_volatility(px, 4, symbols=sym), ret.realized_vol)


@SETTINGS
@given(trade_streams())
def test_bars_equal_numpy_reference(stream):
    trades, _ = stream
    px, sz, ts, _, sym = _columns(trades)
    expect = ref.completed_bars(trades, 3_000_000)
    got = ta.ohlcv_bars(px, sz, ts, 3_000_000, symbols=sym)
    assert len(got) == len(expect)
    for field in ("symbol", "bar_start_ns", "closed_by"):
        np.testing.assert_array_equal(got[field], expect[field])
    for field in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(got[field], expect[field] / s.PRICE_SCALE)
    np.testing.assert_allclose(got["volume"], expect["volume"] / s.SIZE_SCALE, rtol=1e-12)
    np.testing.assert_array_equal(got["n_trades"], expect["n_trades"])


@st.composite
def quotes(draw):
    n = draw(st.integers(1, 100))
    q = np.zeros(n, s.QUOTE)
    for field in ("bid_price", "ask_price"):
        q[field] = draw(st.lists(st.integers(0, 10**7), min_size=n, max_size=n))
    for field in ("bid_size", "ask_size"):
        q[field] = draw(st.lists(st.integers(0, 10**12), min_size=n, max_size=n))
    return q


@SETTINGS
@given(quotes())
def test_l1_equals_numpy_reference(q):
    expect = ref.quote_features(q)
    args = (q["bid_price"] / s.PRICE_SCALE, q["bid_size"] / s.SIZE_SCALE)
    args += (q["ask_price"] / s.PRICE_SCALE, q["ask_size"] / s.SIZE_SCALE)
    got = ta.l1(*args)
    for field in ("mid", "spread", "microprice", "imbalance"):
        np.testing.assert_allclose(getattr(got, field), expect[field], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ta.microprice(*args), got.microprice)
    np.testing.assert_array_equal(ta.l1_imbalance(*args), got.imbalance)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=300),
    st.integers(1, 40),
    st.integers(0, 1),
    st.data(),
)
def test_rolling_moments_equal_numpy(values, window, ddof, data):
    x = np.array(values)
    min_periods = data.draw(st.integers(1, window))
    got = ta.RollingMoments(window, ddof=ddof, min_periods=min_periods).update(x)
    for i in range(len(x)):
        w = x[max(0, i + 1 - window) : i + 1]
        if len(w) < min_periods:
            assert np.isnan(got.mean[i]) and np.isnan(got.var[i])
            continue
        np.testing.assert_allclose(got.mean[i], w.mean(), rtol=1e-9, atol=1e-9)
        if len(w) > ddof:
            np.testing.assert_allclose(got.var[i], w.var(ddof=ddof), rtol=1e-7, atol=1e-7)
            np.testing.assert_allclose(got.std[i], np.sqrt(got.var[i]))
        else:
            assert np.isnan(got.var[i])
    np.testing.assert_array_equal(
        ta.rolling_std(x, window, ddof=ddof, min_periods=min_periods), got.std
    )
    np.testing.assert_array_equal(ta.rolling_mean(x, window, min_periods=min_periods), got.mean)


@pytest.mark.parametrize("window", [1, 3, 20, 64, 100])
def test_rolling_moments_are_the_engine_steps_bits_in_any_chunking(window):
    """The whole-window loop (one ring turn at a time) gives the bits of the per-tick step
    the engine runs (``steps.moments_push``, one value at a time), chunked or not."""
    from tickpath.kernels.cpu import steps

    rng = np.random.default_rng(window)
    x = 100.0 + np.cumsum(rng.normal(0, 0.01, 1500))
    ring = np.zeros((1, window))
    count, slot, mean, m2 = 0, 0, 0.0, 0.0
    means, m2s = [], []
    for value in x:
        count, slot, mean, m2, _, _ = steps.moments_push(
            ring, 0, count, slot, mean, m2, 0.0, 0.0, value, False
        )
        means.append(mean)
        m2s.append(m2)
    k = np.minimum(np.arange(1, len(x) + 1), window)
    expect_var = np.array(
        [steps.sample_variance(m, n, 1) if n > 1 else np.nan for m, n in zip(m2s, k)]
    )
    moments = ta.RollingMoments(window, ddof=1, min_periods=1)
    cuts = np.sort(rng.choice(np.arange(1, len(x)), 9, replace=False))
    parts = [moments.update(chunk) for chunk in np.split(x, cuts)]
    np.testing.assert_array_equal(np.concatenate([p.mean for p in parts]), np.array(means))
    np.testing.assert_array_equal(np.concatenate([p.var for p in parts]), expect_var)
    np.testing.assert_array_equal(ta.rolling_std(x, window, min_periods=1), np.sqrt(expect_var))


def test_rolling_std_stays_accurate_on_a_long_series_with_a_large_offset():
    rng = np.random.default_rng(7)
    x = 1e6 + rng.normal(0, 1e-3, 200_000)  # variance 1e-6 on top of 1e12 squares
    got = ta.rolling_std(x, 50)
    np.testing.assert_allclose(got[-1], x[-50:].std(ddof=1), rtol=1e-6)


def test_ema_sma_seed_is_talibs_definition():
    x = np.arange(1.0, 21.0)
    got = ta.ema(x, 5, seed="sma")
    assert np.isnan(got[:4]).all()
    assert got[4] == x[:5].mean()
    e = x[:5].mean()
    for i in range(5, 20):
        e = e + (2 / 6) * (x[i] - e)
        assert got[i] == e


# ---------------------------------------------------------------------------
# against the frame kernels (the engine), on the same ticks
# ---------------------------------------------------------------------------


@SETTINGS
@given(trade_streams())
def test_trade_analytics_equal_the_frame_kernels(processor_factory, stream):
    trades, cuts = stream
    proc = processor_factory(**PARAMS)
    results, bars = [], []
    for lo, hi in _chunks(cuts, len(trades)):
        frame = codec.encode_frame(s.KIND_TRADE, 0, lo, trades[lo:hi], send_ns=lo)
        for analytic, r in proc.feed(frame, recv_ns=hi):
            (results if analytic == "trade" else bars).append(r.copy())
    px, sz, ts, side, sym = _columns(trades)
    n_sym = PARAMS["n_symbols"]
    ema = np.stack([ta.ema(px, span, symbols=sym) for span in PARAMS["ema_spans"]], axis=1)
    session = ta.vwap(px, sz, symbols=sym)
    window = ta.TradeWindow(4_000_000, max_trades=8, n_symbols=n_sym).update(px, sz, ts, side, sym)
    ret = ta.Returns(4, n_symbols=n_sym).update(px, sym)
    assert results
    for r in results:
        i = int(r["in_seq"])  # the input record this result reflects
        # the same step functions on the same values: the same bits
        np.testing.assert_array_equal(r["ema"], ema[i])
        assert r["vwap_session"] == session[i]
        assert r["vwap_window"] == window.vwap[i]
        np.testing.assert_array_equal(r["trade_flow_imbalance"], window.flow_imbalance[i])
        assert r["n_returns"] == ret.n_returns[i]
        # returns: the engine divides ticks, the library price units (last-bit differences)
        np.testing.assert_allclose(r["ret_mean"], ret.mean[i], rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(r["ret_var"], ret.var[i], rtol=1e-7, atol=1e-18)
        np.testing.assert_allclose(r["realized_vol"], ret.realized_vol[i], rtol=1e-9, atol=1e-15)
    got_bars = ta.ohlcv_bars(px, sz, ts, 3_000_000, symbols=sym)
    assert len(bars) == len(got_bars)
    for r, b in zip(bars, got_bars):
        assert (int(r["symbol"]), int(r["bar_start_ns"])) == (b["symbol"], b["bar_start_ns"])
        assert r["open"] / s.PRICE_SCALE == b["open"] and r["close"] / s.PRICE_SCALE == b["close"]
        assert r["high"] / s.PRICE_SCALE == b["high"] and r["low"] / s.PRICE_SCALE == b["low"]
        assert r["n_trades"] == b["n_trades"]


# ---------------------------------------------------------------------------
# chunk by chunk == one call over the whole arrays
# ---------------------------------------------------------------------------


@SETTINGS
@given(trade_streams(), st.sampled_from(["first", "sma"]))
def test_chunked_equals_whole(stream, seed):
    trades, cuts = stream
    px, sz, ts, side, sym = _columns(trades)
    n_sym = int(sym.max()) + 1
    pieces = _chunks(cuts, len(trades))

    def fed(obj_factory, call):
        obj = obj_factory()
        return [call(obj, slice(lo, hi)) for lo, hi in pieces]

    whole = ta.ema(px, 15, seed=seed, symbols=sym)
    parts = fed(
        lambda: ta.EMA(15, seed=seed, n_symbols=n_sym), lambda o, w: o.update(px[w], sym[w])
    )
    np.testing.assert_array_equal(np.concatenate(parts), whole)

    whole = ta.ema(px, 15, seed=seed)  # one series: the register fast path
    parts = fed(lambda: ta.EMA(15, seed=seed), lambda o, w: o.update(px[w]))
    np.testing.assert_array_equal(np.concatenate(parts), whole)

    parts = fed(lambda: ta.VWAP(n_symbols=n_sym), lambda o, w: o.update(px[w], sz[w], sym[w]))
    np.testing.assert_array_equal(np.concatenate(parts), ta.vwap(px, sz, symbols=sym))

    whole = ta.TradeWindow(4_000_000, max_trades=8, n_symbols=n_sym).update(px, sz, ts, side, sym)
    parts = fed(
        lambda: ta.TradeWindow(4_000_000, max_trades=8, n_symbols=n_sym),
        lambda o, w: o.update(px[w], sz[w], ts[w], side[w], sym[w]),
    )
    for k in range(2):
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), whole[k])
    np.testing.assert_array_equal(
        whole.vwap, ta.rolling_vwap(px, sz, ts, 4_000_000, max_trades=8, symbols=sym)
    )
    np.testing.assert_array_equal(
        whole.flow_imbalance,
        ta.trade_flow_imbalance(sz, side, ts, 4_000_000, max_trades=8, symbols=sym),
    )

    whole = ta.rolling_returns(px, 4, symbols=sym)
    parts = fed(lambda: ta.Returns(4, n_symbols=n_sym), lambda o, w: o.update(px[w], sym[w]))
    for k in range(4):
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), whole[k])

    whole = ta.RollingMoments(7, min_periods=2).update(px)
    parts = fed(lambda: ta.RollingMoments(7, min_periods=2), lambda o, w: o.update(px[w]))
    for k in range(3):
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), whole[k])

    whole = ta.ohlcv_bars(px, sz, ts, 3_000_000, symbols=sym, include_open=True)
    bars = ta.Bars(3_000_000, n_symbols=n_sym)
    parts = []
    for lo, hi in pieces:
        got = bars.update(px[lo:hi], sz[lo:hi], ts[lo:hi], sym[lo:hi]).copy()
        got["closed_by"] += lo  # indices are per call
        parts.append(got)
    parts.append(bars.open_bars())
    np.testing.assert_array_equal(np.concatenate(parts), whole)


# ---------------------------------------------------------------------------
# out=, errors
# ---------------------------------------------------------------------------


def test_out_arrays_are_written_in_place():
    px = np.linspace(100.0, 101.0, 1000)
    out = np.empty(1000)
    assert ta.ema(px, 15, out=out) is out
    np.testing.assert_array_equal(out, ta.ema(px, 15))
    assert ta.rolling_std(px, 20, out=out) is out
    means, stds = np.empty(1000), np.empty(1000)
    res = ta.RollingMoments(20).update(px, out_mean=means, out_std=stds)
    assert res.mean is means and res.std is stds


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ta.ema(np.ones(3)), "exactly one of span and alpha"),
        (lambda: ta.ema(np.ones(3), 0), "span must be a positive integer"),
        (lambda: ta.ema(np.ones(3), 5, seed="zero"), "seed must be"),
        (
            lambda: ta.ema(np.ones(3), 5, out=np.empty(4)),
            r"out must be a float64 array of shape \(3,\)",
        ),
        (lambda: ta.ema(np.ones((3, 2)), 5), "prices must be 1-D"),
        (lambda: ta.vwap(np.ones(3), np.ones(2)), "sizes has 2 values, expected 3"),
        (lambda: ta.EMA(5, n_symbols=2).update(np.ones(2), [0, 2]), r"symbols must be in 0..1"),
        (lambda: ta.TradeWindow(10, max_trades=6), "power of two"),
        (lambda: ta.RollingMoments(5, min_periods=6), "min_periods"),
        (lambda: ta.Returns(4).update([1.0, 0.0]), "prices must be > 0"),
        (lambda: ta.Bars(10).update([1.0], [1.0], [-5]), "timestamps must be >= 0"),
        (lambda: ta.rolling_vwap([1.0], [1.0], [1.5], 10), "timestamps must be a 1-D integer"),
    ],
)
def test_bad_arguments_raise_one_line_errors(call, message):
    with pytest.raises((ValueError, TypeError), match=message) as info:
        call()
    assert "\n" not in str(info.value)
