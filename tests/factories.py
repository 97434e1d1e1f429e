"""Builders of valid input records for tests."""

from __future__ import annotations

import numpy as np

from tickpath.engine.wire import schema as s


def make_trades(n, symbols=1, seed=0, start_ns=1_000_000_000, step_ns=1_000_000):
    """Valid random trades: a random walk per symbol, non-decreasing timestamps."""
    rng = np.random.default_rng(seed)
    t = np.zeros(n, s.TRADE)
    t["ts_ns"] = start_ns + np.cumsum(rng.integers(0, 2, n)) * step_ns
    t["symbol"] = rng.integers(0, symbols, n)
    t["side"] = rng.integers(-1, 2, n)
    t["price"] = 1_000_000 + rng.integers(-50, 51, n).cumsum() * 100
    t["size"] = rng.integers(1, 1000, n) * 1_000_000
    t["trade_id"] = np.arange(n)
    return t


def make_quotes(n, symbols=1, seed=0):
    rng = np.random.default_rng(seed)
    q = np.zeros(n, s.QUOTE)
    q["ts_ns"] = 1_000_000_000 + np.arange(n)
    q["symbol"] = rng.integers(0, symbols, n)
    mid = 1_000_000 + rng.integers(-500, 500, n) * 100
    spread = rng.integers(1, 5, n) * 100
    q["bid_price"] = mid - spread
    q["ask_price"] = mid + spread
    q["bid_size"] = rng.integers(0, 100, n) * s.SIZE_SCALE
    q["ask_size"] = rng.integers(0, 100, n) * s.SIZE_SCALE
    return q
