"""The streaming CPU kernels against their numpy reference (kernels.reference.streaming).

Records are cut into frames at random points and pushed through the real
processor (the same code the engine runs); every result it emits is compared
with the reference value at the input record the result says it reflects,
and the conflation rule (one result per symbol and frame, reflecting the
symbol's last record in that frame) is checked on the way.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import make_quotes, make_trades
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s
from tickpath.kernels.reference import streaming as ref

SMALL = dict(
    n_symbols=64,
    ema_spans=(1, 3, 15, 1023),
    vwap_window_s=0.004,  # 4 ms: trades below are 0-3 ms apart, so the window slides
    vwap_ring=8,  # and sometimes overflows
    vol_window=4,
    bar_s=0.003,
)


def _feed_in_frames(proc, kind, records, cuts):
    """Send ``records`` as frames split at ``cuts``; return [(frame slice, results)]."""
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(records))), len(records)]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        frame = codec.encode_frame(kind, 0, lo, records[lo:hi], send_ns=lo)
        out.append((slice(lo, hi), proc.feed(frame, recv_ns=hi)))
    return out


def _check_conflation(records, frames, analytic):
    for window, results in frames:
        mine = [r for a, r in results if a == analytic]
        symbols = records["symbol"][window]
        assert sorted(int(r["symbol"]) for r in mine) == sorted(set(symbols.tolist()))
        for r in mine:
            last = window.start + np.flatnonzero(symbols == r["symbol"])[-1]
            assert int(r["in_seq"]) == last
            assert int(r["ts_ns"]) == records["ts_ns"][last]
            assert int(r["in_send_ns"]) == window.start


def _trade_results(frames):
    return [r for _, results in frames for a, r in results if a == "trade"]


def _assert_trade_matches(records, results, params):
    expect = ref.trade_features(
        records, params["ema_spans"], int(params["vwap_window_s"] * 1e9), params["vwap_ring"],
        params["vol_window"],
    )  # fmt: skip
    for r in results:
        i = int(r["in_seq"])
        assert r["price"] == records["price"][i] and r["size"] == records["size"][i]
        np.testing.assert_array_equal(r["ema"][: len(params["ema_spans"])], expect["ema"][i, :4][
            : len(params["ema_spans"])])  # fmt: skip
        assert r["vwap_session"] == expect["vwap_session"][i]
        np.testing.assert_allclose(r["vwap_window"], expect["vwap_window"][i], rtol=1e-12)
        np.testing.assert_allclose(
            r["trade_flow_imbalance"], expect["trade_flow_imbalance"][i], rtol=1e-9, atol=1e-12
        )
        assert r["n_returns"] == expect["n_returns"][i]
        np.testing.assert_allclose(r["ret_mean"], expect["ret_mean"][i], rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(r["ret_var"], expect["ret_var"][i], rtol=1e-7, atol=1e-18)
        np.testing.assert_allclose(
            r["realized_vol"], expect["realized_vol"][i], rtol=1e-9, atol=1e-15
        )


@st.composite
def trade_streams(draw):
    n = draw(st.integers(1, 200))
    n_sym = draw(st.integers(1, 5))
    steps = draw(st.lists(st.sampled_from([0, 0, 1, 2, 3]), min_size=n, max_size=n))
    t = np.zeros(n, s.TRADE)
    t["ts_ns"] = 10**9 + np.cumsum(steps) * 1_000_000  # equal timestamps happen often
    t["symbol"] = draw(st.lists(st.integers(0, n_sym - 1), min_size=n, max_size=n))
    t["side"] = draw(st.lists(st.integers(-1, 1), min_size=n, max_size=n))
    moves = draw(st.lists(st.integers(-30, 30), min_size=n, max_size=n))
    t["price"] = 500_000 + np.cumsum(moves) * 10
    t["size"] = draw(st.lists(st.integers(1, 10**12), min_size=n, max_size=n))
    cuts = draw(st.lists(st.integers(0, n), max_size=12))
    return t, cuts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trade_streams())
def test_trade_analytics_equal_reference(processor_factory, stream):
    trades, cuts = stream
    proc = processor_factory(**SMALL)
    frames = _feed_in_frames(proc, s.KIND_TRADE, trades, cuts)
    _check_conflation(trades, frames, "trade")
    _assert_trade_matches(trades, _trade_results(frames), SMALL)
    bars = [r for _, results in frames for a, r in results if a == "bar"]
    expect = ref.completed_bars(trades, int(SMALL["bar_s"] * 1e9))
    assert len(bars) == len(expect)
    for got, want in zip(bars, expect):
        for field in ("symbol", "bar_start_ns", "open", "high", "low", "close", "volume",
                      "n_trades"):  # fmt: skip
            assert got[field] == want[field], field
        # a bar is published with the frame of the trade that closed it
        assert got["in_seq"] == np.flatnonzero(trades["symbol"][: want["closed_by"]]
                                               == want["symbol"])[-1]  # fmt: skip


def test_first_tick_single_symbol(processor_factory):
    proc = processor_factory(**SMALL)
    trades = make_trades(1)
    (_, results), = _feed_in_frames(proc, s.KIND_TRADE, trades, [])  # fmt: skip
    (analytic, r), = results  # fmt: skip
    px = trades["price"][0] / s.PRICE_SCALE
    assert analytic == "trade"
    assert np.all(r["ema"] == px) and r["vwap_session"] == px and r["vwap_window"] == px
    assert r["n_returns"] == 0 and np.isnan(r["ret_mean"]) and np.isnan(r["ret_var"])
    assert np.isnan(r["realized_vol"])


def test_thousands_of_symbols_long_stream(processor_factory):
    params = dict(SMALL, n_symbols=5000, vwap_ring=64, vol_window=16)
    proc = processor_factory(**params)
    trades = make_trades(20_000, symbols=5000, seed=3)
    frames = _feed_in_frames(proc, s.KIND_TRADE, trades, list(range(0, 20_000, 1024)))
    _check_conflation(trades, frames, "trade")
    results = _trade_results(frames)
    assert len(results) > 5000
    # the reference is slow in pure numpy: check a sample of symbols fully
    sample = np.isin(trades["symbol"], np.arange(0, 5000, 97))
    index = np.flatnonzero(sample)
    sub = trades[index]
    remap = {int(i): j for j, i in enumerate(index)}
    picked = []
    for r in results:
        if int(r["in_seq"]) in remap:
            r = r.copy()
            r["in_seq"] = remap[int(r["in_seq"])]
            picked.append(r)
    assert picked
    _assert_trade_matches(sub, picked, params)


def test_long_single_symbol_stays_accurate(processor_factory):
    """A million-trade stream: the running window sums must not drift from the definition."""
    params = dict(SMALL, vwap_ring=64, vol_window=32, vwap_window_s=3600.0)
    proc = processor_factory(**params)
    trades = make_trades(300_000, symbols=1, seed=5)
    frames = _feed_in_frames(proc, s.KIND_TRADE, trades, list(range(0, 300_000, 4096)))
    last = _trade_results(frames)[-1]
    i = int(last["in_seq"])
    window = slice(i + 1 - 64, i + 1)
    px, sz = trades["price"] / s.PRICE_SCALE, trades["size"] / s.SIZE_SCALE
    np.testing.assert_allclose(
        last["vwap_window"], (px[window] * sz[window]).sum() / sz[window].sum(), rtol=1e-12
    )
    r = np.diff(np.log(trades["price"][i - 32 : i + 1]))
    np.testing.assert_allclose(last["ret_var"], r.var(ddof=1), rtol=1e-8)
    np.testing.assert_allclose(last["realized_vol"], np.sqrt((r * r).sum()), rtol=1e-10)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(1, 6), st.integers(0, 10_000),
       st.lists(st.integers(0, 300), max_size=8))  # fmt: skip
def test_quote_analytics_equal_reference(processor_factory, n, n_sym, seed, cuts):
    proc = processor_factory(**SMALL)
    quotes = make_quotes(n, n_sym, seed)
    rng = np.random.default_rng(seed)
    one_sided = rng.random(n) < 0.1
    quotes["bid_price"][one_sided] = 0  # a one-sided market: NaN mid, spread, microprice
    quotes["bid_size"][one_sided] = 0
    frames = _feed_in_frames(proc, s.KIND_QUOTE, quotes, cuts)
    _check_conflation(quotes, frames, "quote")
    expect = ref.quote_features(quotes)
    for _, results in frames:
        for _, r in results:
            i = int(r["in_seq"])
            for field in ("bid_price", "bid_size", "ask_price", "ask_size"):
                assert r[field] == quotes[field][i]
            for field in ("mid", "spread", "microprice", "imbalance"):
                np.testing.assert_allclose(r[field], expect[field][i], rtol=1e-14)


@pytest.mark.parametrize("spans", [(15,), (15, 63), (7, 31, 127, 511)])
def test_ema_spans_configurable_unused_slots_nan(processor_factory, spans):
    proc = processor_factory(**dict(SMALL, ema_spans=spans))
    trades = make_trades(50, seed=1)
    results = _trade_results(_feed_in_frames(proc, s.KIND_TRADE, trades, [25]))
    expect = ref.trade_features(trades, spans, 10**9, 8, 4)
    last = results[-1]
    np.testing.assert_array_equal(last["ema"][: len(spans)], expect["ema"][49, : len(spans)])
    assert np.isnan(last["ema"][len(spans) :]).all()


def test_result_frames_decode_and_count_per_topic(processor_factory):
    proc = processor_factory(**SMALL)
    trades = make_trades(10, symbols=2, seed=2)
    seqs = {}
    for i in range(10):
        for analytic, r in proc.feed(codec.encode_frame(s.KIND_TRADE, 0, i, trades[i : i + 1])):
            if analytic != "trade":
                continue
            raw = r.tobytes()
            header, records = codec.decode_frame(raw)
            assert header["kind"] == s.KIND_RESULT_TRADE and header["count"] == 1
            assert header["stream_id"] == trades["symbol"][i]
            assert records[0]["in_seq"] == i
            sym = int(header["stream_id"])
            assert int(header["seq"]) == seqs.get(sym, 0)  # per-topic sequence, no holes
            seqs[sym] = int(header["seq"]) + 1
    assert sum(seqs.values()) == 10
