"""SymbolView reads the streaming state by name: what the result frames report."""

from __future__ import annotations

import numpy as np
import pytest

from tests.factories import make_quotes, make_trades
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu import streaming as k
from tickpath.kernels.cpu.streaming_view import SymbolView


def test_view_agrees_with_the_result_frames(processor_factory):
    proc = processor_factory(n_symbols=8)
    view = SymbolView(proc.state.sym_i)
    symbols = np.arange(8)
    assert np.isnan(view.last_price(symbols)).all() and np.isnan(view.mid(symbols)).all()
    trades = make_trades(40, symbols=4, seed=2)
    quotes = make_quotes(30, symbols=3, seed=5)
    last = {}
    for i, frame in enumerate(
        [codec.encode_frame(s.KIND_TRADE, 1, 0, trades, send_ns=11)]
        + [codec.encode_frame(s.KIND_QUOTE, 2, 0, quotes, send_ns=22)]
    ):
        for analytic, r in proc.feed(frame, recv_ns=i):
            last[(analytic, int(r["symbol"]))] = r.copy()
    for (analytic, sym), r in last.items():
        tick = view.tick(sym, k.A_TRADE if analytic == "trade" else k.A_QUOTE)
        assert (tick.ts_ns, tick.seq, tick.send_ns, tick.stream) == (
            int(r["ts_ns"]), int(r["in_seq"]), int(r["in_send_ns"]), int(r["in_stream"]),
        )  # fmt: skip
        if analytic == "trade":
            assert tick.price == r["price"] / s.PRICE_SCALE == view.last_price(np.array([sym]))[0]
        else:
            mid = view.mid(np.array([sym]))[0]
            assert tick.price == (0.0 if np.isnan(r["mid"]) else r["mid"])
            assert (np.isnan(mid) and np.isnan(r["mid"])) or mid == r["mid"]
    assert view.newest_ts(np.arange(4), k.A_TRADE) == trades["ts_ns"].max()
    assert np.isnan(view.last_price(np.array([7])))[0]


def test_view_refuses_an_array_of_another_layout():
    with pytest.raises(ValueError, match="sym_i must have shape"):
        SymbolView(np.zeros((4, k.I_COLS + 1), np.int64))
