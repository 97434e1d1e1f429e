"""The FPGA micro path end to end with the golden-model emulation (``serve --fpga-emulate``)."""

from __future__ import annotations

import time

import numpy as np
import zmq

from tests.factories import make_quotes, make_trades
from tests.integration.test_engine_sockets import Harness
from tests.waiting import wait_until
from tickpath.engine.backends.fpga import EmulatedOverlay
from tickpath.engine.backends.fpga.micro import FpgaMicroPath
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s
from tickpath.kernels.fixedpoint.tick_features import FeatureState, process

FEATURES = ("ema0", "ema1", "pv_lo", "pv_hi", "volume", "last_price", "bid_price", "ask_price",
            "mid_x2", "spread", "imb_num", "imb_den", "flags")  # fmt: skip


class FpgaHarness(Harness):
    def __init__(self):
        self.extension = FpgaMicroPath(EmulatedOverlay(16), "golden-model emulation")
        super().__init__()

    def _make_engine(self, config):
        from tickpath.engine.service.engine import Engine

        return Engine(config, zmq.Context.instance(), extensions=[self.extension])


def test_fpga_features_published_and_bit_exact_with_golden_model():
    h = FpgaHarness()
    try:
        trades = make_trades(300, symbols=5, seed=4)
        trades[7]["price"] = -3  # rejected by the CPU: must not reach the core either
        quotes = make_quotes(200, symbols=5, seed=5)
        n0 = h.engine.stats()["frames_received"]
        # the harness's probe quotes (one record each, stream 7) go through the core too
        probes = h.engine.stats()["streams"]["7"]["frames"]
        for i in range(0, 300, 30):
            h.send(codec.encode_frame(s.KIND_TRADE, 1, i, trades[i : i + 30]))
        for i in range(0, 200, 50):
            h.send(codec.encode_frame(s.KIND_QUOTE, 2, i, quotes[i : i + 50]))
        h.wait_frames(n0 + 14)
        got = {}
        last_quote = {sym: int(np.flatnonzero(quotes["symbol"] == sym)[-1]) for sym in range(5)}

        def complete() -> bool:  # every symbol's result of its last quote has arrived
            return all(
                any(r["core_kind"] == s.KIND_QUOTE and r["in_seq"] == seq for r in got.get(sym, []))
                for sym, seq in last_quote.items()
            )

        deadline = time.monotonic() + 120
        while not complete():
            assert time.monotonic() < deadline, f"fpga results of the last quotes: {sorted(got)}"
            if not h.sub.poll(200):
                continue
            topic, payload = h.sub.recv_multipart()
            if topic.startswith(b"fpga."):
                header, records = codec.decode_frame(payload)
                assert header["kind"] == s.KIND_RESULT_FPGA
                got.setdefault(int(header["stream_id"]), []).append(records[0].copy())
        assert set(got) == set(range(5))
        # the golden model over the same valid records, in the order the engine saw them
        state = FeatureState(16)
        valid_trades = np.delete(trades, 7)
        expect_t = process(valid_trades, state)
        expect_q = process(quotes, state)
        for sym, results in got.items():
            final = results[-1]
            want = expect_q[quotes["symbol"] == sym][-1]
            assert final["core_kind"] == s.KIND_QUOTE and final["in_stream"] == 2
            for field in FEATURES:
                assert final[field] == want[field], field
            trade_results = [r for r in results if r["core_kind"] == s.KIND_TRADE]
            last_trade = trade_results[-1]
            want_t = expect_t[valid_trades["symbol"] == sym][-1]
            assert last_trade["ema0"] == want_t["ema0"]
            assert last_trade["pv_lo"] == want_t["pv_lo"]
        wait_until(lambda: h.engine.stats()["fpga"]["records"] >= probes + 299 + 200,
                   what="the core's record count")  # fmt: skip
        stats = h.engine.stats()
        assert stats["fpga"]["records"] == probes + 299 + 200
        assert stats["fpga"]["core"]["rejected_symbol"] == 0
    finally:
        h.close()
