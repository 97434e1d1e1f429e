import sys

import numpy as np
import pytest

from tickpath.engine.feed.synthetic import DEFAULT_START_NS, SyntheticMarket
from tickpath.engine.wire import schema as s


def batches(market, n_frames, batch):
    return [market.next_batch(batch) for _ in range(n_frames)]


def test_same_seed_gives_identical_records():
    a = batches(SyntheticMarket(5, seed=42), 300, 64)
    b = batches(SyntheticMarket(5, seed=42), 300, 64)
    assert [k for k, _ in a] == [k for k, _ in b]
    for (_, ra), (_, rb) in zip(a, b):
        assert ra.tobytes() == rb.tobytes()
    c = batches(SyntheticMarket(5, seed=43), 300, 64)
    assert any(ra.tobytes() != rc.tobytes() for (_, ra), (_, rc) in zip(a, c))


def test_batches_are_full_single_kind_and_ordered_by_last_timestamp():
    market = SyntheticMarket(4, seed=3)
    last = []
    for kind, records in batches(market, 500, 50):
        assert kind in (s.KIND_TRADE, s.KIND_QUOTE, s.KIND_ORDER)
        assert records.dtype == s.RECORD_DTYPES[kind]
        assert len(records) == 50
        assert np.all(np.diff(records["ts_ns"]) >= 0)
        last.append(int(records["ts_ns"][-1]))
    assert last == sorted(last)
    assert last[0] >= DEFAULT_START_NS


def test_timestamps_monotone_within_and_across_kinds():
    market = SyntheticMarket(6, seed=9, mean_gap_ns=50.0)
    trades, quotes, orders = market.generate(100_000)
    for recs in (trades, quotes, orders):
        assert np.all(np.diff(recs["ts_ns"]) >= 0)
    merged = np.concatenate([trades["ts_ns"], quotes["ts_ns"], orders["ts_ns"]])
    assert merged.min() >= DEFAULT_START_NS
    # ties are possible at a 50 ns mean gap, but time does advance
    assert merged.max() > merged.min()


@pytest.mark.parametrize(
    ("ratios", "expected"),
    [((0.1, 0.4, 0.5), (0.1, 0.4, 0.5)), ((1, 1, 0), (0.5, 0.5, 0.0)), ((0, 0, 3), (0, 0, 1))],
)
def test_kind_mix_follows_ratios(ratios, expected):
    t, q, o = ratios
    market = SyntheticMarket(8, seed=5, trade_ratio=t, quote_ratio=q, order_ratio=o)
    n = 200_000
    counts = np.array([len(r) for r in market.generate(n)])
    assert counts.sum() == n
    share = counts / n
    # binomial sd at p=0.5, n=2e5 is 0.0011; 0.006 is > 5 sd
    np.testing.assert_allclose(share, expected, atol=0.006)
    for got, want in zip(counts, expected):
        if want == 0:
            assert got == 0


def test_quotes_have_spread_and_trades_print_at_the_touch():
    # a 1 ms mean gap makes equal timestamps (ambiguous order) practically impossible
    market = SyntheticMarket(5, seed=11, mean_gap_ns=1e6)
    trades, quotes, _ = market.generate(60_000)
    tick = market.tick_size
    assert np.all(quotes["ask_price"] - quotes["bid_price"] >= tick[quotes["symbol"]])
    assert np.all(quotes["bid_price"] > 0)
    assert np.all(quotes["bid_price"] % tick[quotes["symbol"]] == 0)
    assert np.all((quotes["bid_size"] > 0) & (quotes["ask_size"] > 0))
    assert set(np.unique(trades["side"])) == {s.SIDE_BUY, s.SIDE_SELL}
    assert np.all(np.diff(trades["trade_id"].astype(np.int64)) == 1)
    # walk the merged timeline: each trade is at the latest quote's ask (buy) or bid (sell)
    events = sorted(
        [(int(r["ts_ns"]), 1, i) for i, r in enumerate(quotes)]
        + [(int(r["ts_ns"]), 0, i) for i, r in enumerate(trades)]
    )
    assert len({e[0] for e in events}) == len(events)
    touch = {}
    checked = 0
    for _, is_quote, i in events:
        if is_quote:
            q = quotes[i]
            touch[int(q["symbol"])] = (int(q["bid_price"]), int(q["ask_price"]))
        elif int(trades[i]["symbol"]) in touch:
            t = trades[i]
            bid, ask = touch[int(t["symbol"])]
            assert int(t["price"]) == (ask if t["side"] == s.SIDE_BUY else bid)
            checked += 1
    assert checked > 5_000


def test_mid_walks_with_per_symbol_volatility():
    market = SyntheticMarket(3, seed=2, trade_ratio=0, quote_ratio=1, order_ratio=0)
    _, quotes, _ = market.generate(90_000)
    for sym in range(3):
        q = quotes[quotes["symbol"] == sym]
        bid_ticks = q["bid_price"] // market.tick_size[sym]
        steps = np.diff(bid_ticks)
        assert np.any(steps != 0)
        # rounded normal steps: sd close to the symbol's tick volatility (rounding adds ~1/12)
        expected = np.sqrt(market.tick_volatility[sym] ** 2 + 1 / 12)
        assert abs(steps.std() / expected - 1) < 0.1
        assert len(np.unique(q["ask_price"] - q["bid_price"])) > 1  # spreads vary


@pytest.mark.parametrize("max_orders", [4, 64])
def test_l3_flow_keeps_a_consistent_uncrossed_book(l3_replay, max_orders):
    market = SyntheticMarket(
        4, seed=21, trade_ratio=0.05, quote_ratio=0.25, order_ratio=0.7, max_orders=max_orders
    )
    _, _, orders = market.generate(40_000)
    actions, counts = np.unique(orders["action"], return_counts=True)
    assert set(actions.tolist()) == {
        s.ACTION_ADD,
        s.ACTION_MODIFY,
        s.ACTION_CANCEL,
        s.ACTION_EXECUTE,
    }
    assert counts.min() > 500
    live = l3_replay(orders)
    assert len(live) == market.resting_orders()
    assert len(live) <= 4 * 2 * max_orders
    ids = orders["order_id"][orders["action"] == s.ACTION_ADD]
    assert len(np.unique(ids)) == len(ids)
    assert market.next_order_id == len(ids) + 1
    # prices on the symbol's tick grid, sizes positive
    assert np.all(orders["price"] % market.tick_size[orders["symbol"]] == 0)


def test_l3_ids_unique_across_batches_and_symbols(l3_replay):
    market = SyntheticMarket(16, seed=8, max_orders=8)
    orders = [r for k, r in batches(market, 400, 64) if k == s.KIND_ORDER]
    orders = np.concatenate(orders + [r for k, r in market.flush() if k == s.KIND_ORDER])
    l3_replay(orders)
    adds = orders[orders["action"] == s.ACTION_ADD]
    assert len(np.unique(adds["order_id"])) == len(adds)
    assert len(np.unique(adds["symbol"])) == 16


def test_generation_runs_no_python_per_record():
    """1,000 times the records, not more Python: the batch comes from the compiled kernel.

    (How fast it generates is a figure of bench/bench_feed.py, not of a unit test.)
    """
    market = SyntheticMarket(8, seed=1)
    market.next_batch(64)  # compile / load cache

    def python_calls(n):
        calls = 0

        def count(frame, event, arg):
            nonlocal calls
            calls += event == "call"

        sys.setprofile(count)
        try:
            _kind, records = market.next_batch(n)
        finally:
            sys.setprofile(None)
        assert len(records) == n
        return calls

    few, many = python_calls(16), python_calls(16_384)
    assert many <= few + 10, (few, many)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_symbols": 0},
        {"trade_ratio": -1},
        {"trade_ratio": 0, "quote_ratio": 0, "order_ratio": 0},
        {"max_orders": 0},
        {"mean_gap_ns": -5},
    ],
)
def test_invalid_arguments_raise(kwargs):
    args = {"n_symbols": 2, **kwargs}
    with pytest.raises(ValueError):
        SyntheticMarket(**args)
