"""tickpath.book: replaying L3 events equals the dict-based reference book, event by event."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tickpath.book as tb
from tickpath.engine.wire import schema as s
from tickpath.kernels.reference.book import ReferenceBook


@st.composite
def events(draw):
    """Valid ORDER events over a few symbols: adds, modifies, cancels, executes of live
    and unknown ids, near a mid so that levels pile up (and overflow 6 tracked levels)."""
    n = draw(st.integers(1, 150))
    n_sym = draw(st.integers(1, 3))
    rows = []
    for i in range(n):
        action = draw(st.sampled_from([s.ACTION_ADD] * 4 + [2, 3, 4]))
        side = draw(st.sampled_from([s.SIDE_BUY, s.SIDE_SELL]))
        oid = draw(st.integers(1, 40))
        offset = draw(st.integers(1, 12))
        price = 10_000 - offset if side == s.SIDE_BUY else 10_000 + offset
        size = draw(st.integers(1, 50))
        sym = draw(st.integers(0, n_sym - 1))
        if action == s.ACTION_CANCEL:
            size = 0
        rows.append((i, sym, action, side if action == s.ACTION_ADD else 0, oid, price, size))
    cols = list(zip(*rows))
    return tb.orders(*(np.array(c) for c in cols)), n_sym


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events(), st.lists(st.integers(1, 149), max_size=5))
def test_replay_equals_the_reference_book(stream, cuts):
    records, n_sym = stream
    whole = tb.replay(records, n_symbols=n_sym, max_levels=6, max_orders=64)
    ref = ReferenceBook(n_sym, max_levels=6, max_orders=64)
    for i, r in enumerate(records):
        code = ref.apply(int(r["symbol"]), int(r["action"]), int(r["side"]), int(r["order_id"]),
                         int(r["price"]), int(r["size"]))  # fmt: skip
        assert whole.codes[i] == code
        snap = ref.snapshot(int(r["symbol"]))
        got = whole.snapshots[i]
        assert got["symbol"] == r["symbol"] and got["ts_ns"] == r["ts_ns"]
        for field, value in snap.items():
            if field == "depth_imbalance":
                assert (math.isnan(value) and math.isnan(got[field])) or got[field] == value
            else:
                np.testing.assert_array_equal(got[field], value, err_msg=field)
    # fed in chunks to one OrderBooks: the same snapshots and codes
    books = tb.OrderBooks(n_sym, max_levels=6, max_orders=64)
    bounds = [0, *sorted(c for c in set(cuts) if c < len(records)), len(records)]
    parts = [books.apply(records[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]
    np.testing.assert_array_equal(np.concatenate([p.codes for p in parts]), whole.codes)
    joined = np.concatenate([p.snapshots for p in parts])
    assert joined.tobytes() == whole.snapshots.tobytes()  # NaN imbalances included
    for sym in range(n_sym):
        assert books.best_bid_ask(sym) == ref.best_bid_ask(sym)
        assert books.levels(sym, s.SIDE_BUY, 3) == ref.levels(sym, s.SIDE_BUY)[:3]


def test_malformed_events_raise_naming_the_first():
    good = tb.orders([1, 2], [0, 0], [s.ACTION_ADD] * 2, [1, -1], [1, 2], [99, 101], [5, 5])
    books = tb.OrderBooks(1)
    bad = good.copy()
    bad["price"][1] = 0
    with pytest.raises(ValueError, match="order event 1: price <= 0"):
        books.apply(bad)
    bad = good.copy()
    bad["symbol"][0] = 3
    with pytest.raises(ValueError, match=r"order event 0: symbol >= n_symbols \(1\)"):
        books.apply(bad)
    assert books.stats()["live_orders"] == 0  # nothing applied
    result = books.apply(good)
    assert list(result.codes) == [0, 0]
    assert result.snapshots[1]["depth_imbalance"] == 0.0
    assert books.best_bid_ask(0) == (99, 5, 101, 5)
    with pytest.raises(TypeError, match="ORDER array"):
        books.apply(np.zeros(2))
