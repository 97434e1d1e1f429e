"""The engine over real ZeroMQ sockets on loopback: results, gap accounting and bad input.

Every bad-input case is sent over a real socket to a running engine, which
must reject and count it by reason, keep processing the valid records that
follow (and the valid records of the same frame), and never die.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from tests.factories import make_quotes, make_trades
from tests.waiting import wait_until
from tickpath.engine.config import load_config
from tickpath.engine.service.engine import Engine
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s


class Harness:
    """An engine running in a thread, a PUB connected to its ingest, a SUB on its results."""

    def __init__(self, **overrides):
        config = load_config(
            None,
            {
                "ingest.endpoints": ["tcp://127.0.0.1:*"],
                "publish.endpoint": "tcp://127.0.0.1:*",
                "publish.stats_interval_s": 0.2,
                "analytics.n_symbols": 16,
                "ingest.max_streams": 8,
                "ingest.max_frame_bytes": 65536,
                **overrides,
            },
        )
        self.engine = self._make_engine(config)
        self.engine.start()
        self.thread = threading.Thread(target=self.engine.run, daemon=True)
        self.thread.start()
        ctx = zmq.Context.instance()
        self.pub = ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.connect(self.engine.receiver.endpoints[0])
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(self.engine.publisher.endpoint)
        self._wait_connected()

    def _make_engine(self, config):
        return Engine(config, zmq.Context.instance())

    def _wait_connected(self, timeout=120.0):
        # Probe (on a stream of its own) until a probe's result comes back: both sockets
        # have joined. Then a fence probe: once its result is here, every earlier probe
        # has been processed and published, so no probe is still in flight. Every message
        # that is here is read each round: a probe can yield several (an extension's
        # results, stats), and reading one per probe sent would fall behind for good.
        deadline = time.monotonic() + timeout
        probe = make_quotes(1)
        seq = 0
        while self._last_probe_result(poll_ms=50) < 0:
            assert time.monotonic() < deadline, "no result of the probe frames: not joined"
            self.pub.send(codec.encode_frame(s.KIND_QUOTE, 7, seq, probe))
            seq += 1
        self.pub.send(codec.encode_frame(s.KIND_QUOTE, 7, seq, probe))
        while self._last_probe_result(poll_ms=100) < seq:
            assert time.monotonic() < deadline, "the fence probe's result never came back"
        self.base = self.engine.stats()

    def _last_probe_result(self, poll_ms):
        """Read every message that is here (waiting up to `poll_ms` for the first one): the
        highest probe sequence among their quote results, -1 if none."""
        highest = -1
        while self.sub.poll(poll_ms):
            poll_ms = 0
            topic, payload = self.sub.recv_multipart()
            if topic.startswith((b"quote.", b"batch.quote")):  # per-symbol or batched mode
                _header, records = codec.decode_frame(payload)
                probes = records["in_seq"][records["in_stream"] == 7]
                if len(probes):
                    highest = max(highest, int(probes.max()))
        return highest

    def send(self, frame):
        self.pub.send(frame)

    def wait_frames(self, n, timeout=120.0):
        """Wait until the engine has received ``n`` frames in all; its stats then."""
        wait_until(
            lambda: self.engine.stats()["frames_received"] >= n,
            timeout,
            lambda: f"{n} frames: the engine received {self.engine.stats()['frames_received']}",
        )
        return self.engine.stats()

    def close(self):
        self.engine.stop()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()
        self.pub.close()
        self.sub.close()
        self.engine.close()


@pytest.fixture
def harness():
    h = Harness()
    yield h
    h.close()


def _frames_so_far(h):
    return h.engine.stats()["frames_received"]


def test_results_flow_and_stats_topic(harness):
    trades = make_trades(200, symbols=4, seed=1)
    n0 = _frames_so_far(harness)
    for i in range(0, 200, 20):
        harness.send(codec.encode_frame(s.KIND_TRADE, 1, i, trades[i : i + 20], time.time_ns()))
    stats = harness.wait_frames(n0 + 10)
    assert stats["processed"]["trade"] == 200
    got = {}
    deadline = time.monotonic() + 120
    saw_stats = False
    while time.monotonic() < deadline and (len(got) < 4 or not saw_stats):
        if harness.sub.poll(100):
            topic, payload = harness.sub.recv_multipart()
            if topic == b"stats":
                saw_stats = True
                continue
            header, records = codec.decode_frame(payload)
            if header["kind"] == s.KIND_RESULT_TRADE:
                got[topic] = records[0]
    assert saw_stats
    assert set(got) == {f"trade.{i}".encode() for i in range(4)}
    for topic, r in got.items():
        sym = int(topic.split(b".")[1])
        assert r["symbol"] == sym and r["recv_ns"] >= r["in_send_ns"] > 0
        assert r["done_ns"] >= r["recv_ns"]


def test_gaps_account_for_every_dropped_record(harness):
    trades = make_trades(1000, symbols=3, seed=2)
    sizes = np.random.default_rng(0).integers(1, 40, 200)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    bounds = bounds[bounds <= 1000]
    dropped = {3, 4, 10, 25, 26, 27}
    n0 = _frames_so_far(harness)
    sent = 0
    lost = 0
    for j, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        if j in dropped:
            lost += hi - lo
            continue
        harness.send(codec.encode_frame(s.KIND_TRADE, 2, int(lo), trades[lo:hi]))
        sent += 1
    stats = harness.wait_frames(n0 + sent)
    assert stats["gaps"] == 3  # {3,4}, {10}, {25,26,27}
    assert stats["records_lost"] == lost
    assert stats["streams"]["2"]["records_lost"] == lost
    assert stats["processed"]["trade"] == int(bounds[-1]) - lost


def _valid_trade(symbol=1, price=1_000_000, size=10**8):
    t = make_trades(1)
    t["symbol"] = symbol
    t["price"] = price
    t["size"] = size
    return t


def _raw_header(kind=s.KIND_TRADE, stream=3, seq=0, count=1, magic=s.MAGIC, version=s.VERSION):
    h = np.zeros(1, s.HEADER)
    h[0] = (magic, version, kind, stream, count, seq, 0)
    return h.tobytes()


BAD_FRAMES = {
    "short": lambda: b"TKPT",
    "bad_magic": lambda: _raw_header(magic=0xDEADBEEF) + _valid_trade().tobytes(),
    "bad_version": lambda: _raw_header(version=9) + _valid_trade().tobytes(),
    "bad_kind": lambda: _raw_header(kind=77) + _valid_trade().tobytes(),
    "bad_count": lambda: _raw_header(count=0),
    "bad_length": lambda: _raw_header(count=2) + _valid_trade().tobytes(),
    "unknown_stream": lambda: _raw_header(stream=4000) + _valid_trade().tobytes(),
    "oversize": lambda: _raw_header(count=2000) + make_trades(2000).tobytes(),
    "bad_sequence": lambda: _raw_header(seq=2**63) + _valid_trade().tobytes(),
}


@pytest.mark.parametrize("reason", sorted(BAD_FRAMES))
def test_bad_frame_rejected_and_counted_stream_keeps_flowing(harness, reason):
    n0 = _frames_so_far(harness)
    before = harness.engine.stats()
    harness.send(BAD_FRAMES[reason]())
    harness.send(codec.encode_frame(s.KIND_TRADE, 3, 0, _valid_trade()))
    stats = harness.wait_frames(n0 + 2)
    assert stats["rejected"][reason] == before["rejected"][reason] + 1
    assert stats["frames_rejected"] == before["frames_rejected"] + 1
    assert stats["processed"]["trade"] == before["processed"]["trade"] + 1
    assert harness.thread.is_alive()


def test_multipart_message_rejected(harness):
    n0 = _frames_so_far(harness)
    frame = codec.encode_frame(s.KIND_TRADE, 3, 0, _valid_trade())
    harness.pub.send_multipart([frame, frame])
    harness.send(frame)
    stats = harness.wait_frames(n0 + 2)
    assert stats["rejected"]["multipart"] == 1
    assert stats["processed"]["trade"] == 1


BAD_RECORDS = {
    "bad_price": [
        dict(price=s.NULL_I64),  # a NaN price cast to int64 by a careless publisher
        dict(price=-5),
        dict(price=0),
    ],
    "bad_size": [dict(size=-1), dict(size=0), dict(size=s.NULL_I64)],
    "unknown_symbol": [dict(symbol=16), dict(symbol=2**32 - 1)],
    "bad_timestamp": [dict(ts_ns=-1), dict(ts_ns=s.NULL_I64)],
    "bad_action": [dict(side=5)],
}


@pytest.mark.parametrize("reason", sorted(BAD_RECORDS))
def test_bad_records_rejected_valid_neighbours_processed(harness, reason):
    n0 = _frames_so_far(harness)
    cases = BAD_RECORDS[reason]
    trades = make_trades(2 * len(cases) + 1, symbols=4, seed=3)
    for j, fields in enumerate(cases):
        for name, value in fields.items():
            trades[2 * j + 1][name] = value
    harness.send(codec.encode_frame(s.KIND_TRADE, 4, 0, trades))
    stats = harness.wait_frames(n0 + 1)
    assert stats["rejected"][reason] == len(cases)
    assert stats["records_rejected"] == len(cases)
    assert stats["processed"]["trade"] == len(cases) + 1


def test_bad_quote_and_order_records(harness):
    n0 = _frames_so_far(harness)
    q = make_quotes(4, symbols=2)
    q[1]["bid_price"] = -1
    q[2]["ask_size"] = s.NULL_I64
    o = np.zeros(5, s.ORDER)
    o["ts_ns"] = 1
    o["symbol"] = 1
    o["order_id"] = np.arange(1, 6)
    o["price"] = 1_000_000
    o["size"] = 10**8
    o["side"] = s.SIDE_BUY
    o["action"] = s.ACTION_ADD
    o[1]["action"] = 9  # no such action
    o[2]["price"] = s.NULL_I64
    o[3]["side"] = 0  # an add needs a side
    harness.send(codec.encode_frame(s.KIND_QUOTE, 5, 0, q))
    harness.send(codec.encode_frame(s.KIND_ORDER, 6, 0, o))
    stats = harness.wait_frames(n0 + 2)
    assert stats["processed"]["quote"] == 2 + harness.base["processed"]["quote"]
    assert stats["processed"]["book"] == 2
    assert stats["rejected"]["bad_price"] == 2
    assert stats["rejected"]["bad_size"] == 1
    assert stats["rejected"]["bad_action"] == 2


def test_duplicate_out_of_order_and_reset(harness):
    n0 = _frames_so_far(harness)
    t = make_trades(30)
    harness.send(codec.encode_frame(s.KIND_TRADE, 1, 0, t[:10]))
    harness.send(codec.encode_frame(s.KIND_TRADE, 1, 10, t[10:20]))
    harness.send(codec.encode_frame(s.KIND_TRADE, 1, 10, t[10:20]))  # duplicate
    harness.send(codec.encode_frame(s.KIND_TRADE, 1, 15, t[15:25]))  # overlaps: out of order
    harness.send(codec.encode_frame(s.KIND_TRADE, 1, 20, t[20:30]))  # valid continuation
    harness.send(codec.encode_frame(s.KIND_TRADE, 1, 0, t[:5]))  # publisher restarted
    stats = harness.wait_frames(n0 + 6)
    assert stats["rejected"]["duplicate"] == 1
    assert stats["rejected"]["out_of_order"] == 1
    assert stats["sequence_resets"] == 1
    assert stats["gaps"] == 0
    assert stats["processed"]["trade"] == 35


def test_garbage_storm_never_kills_the_engine(harness):
    rng = np.random.default_rng(11)
    valid = codec.encode_frame(s.KIND_TRADE, 2, 0, make_trades(8, symbols=4))
    n0 = _frames_so_far(harness)
    for _ in range(500):
        frame = bytearray(valid)
        for _ in range(rng.integers(1, 6)):
            frame[rng.integers(0, len(frame))] = rng.integers(0, 256)
        harness.send(bytes(frame[: rng.integers(0, len(frame) + 1)]))
    stats = harness.wait_frames(n0 + 500)
    assert harness.thread.is_alive()
    accounted = stats["frames_accepted"] + stats["frames_rejected"]
    assert accounted == stats["frames_received"]
