"""Stream integrity attacks over real sockets: nobody but a stream's publisher moves its sequence.

Each test runs an engine in a thread, connects the real publisher and an
attacker as separate ZeroMQ connections (XPUBs, so a frame is only sent once
the engine's subscription has arrived), and checks the engine's ``stats``:

* a second connection sending one frame far ahead of a stream does not turn
  the real publisher's later frames into duplicates (v1: ``bad_jump``; v2:
  ``foreign_session``);
* a replay of a version 2 stream from seq 0 is refused as duplicates, not
  processed again as a restart;
* frames engineered to push ``records_lost`` past 2^63 leave it saturated (or
  refused), never wrapped back towards 0;
* one far-future trade does not stop the bars of its symbol (``bad_timestamp``).
"""

from __future__ import annotations

import threading
import time

import msgspec
import numpy as np
import pytest
import zmq

from tests.factories import make_trades
from tickpath.engine.config import load_config
from tickpath.engine.service.engine import TOPICS_PER_STATS, Engine
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s

DEADLINE_S = 120.0
MAX_I64 = (1 << 63) - 1


class Rig:
    """An engine in a thread; publishers connect with :meth:`connect`."""

    def __init__(self, **overrides: object) -> None:
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
        self.context = zmq.Context()
        self.engine = Engine(config, self.context)
        self.engine.start()
        self.thread = threading.Thread(target=self.engine.run, daemon=True)
        self.thread.start()
        self.sockets: list[zmq.Socket] = []
        self.sent = 0

    def connect(self) -> zmq.Socket:
        """A new publisher connection, returned once the engine has subscribed to it."""
        pub = self.context.socket(zmq.XPUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 0)
        self.sockets.append(pub)
        pub.connect(self.engine.receiver.endpoints[0])
        assert pub.poll(int(DEADLINE_S * 1000)), "the engine never subscribed"
        pub.recv()  # the subscription: nothing sent from here on is dropped for want of one
        return pub

    def subscriber(self, prefix: bytes) -> zmq.Socket:
        """A SUB on the results, returned once a stats message proves it is connected."""
        sub = self.context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, prefix)
        sub.setsockopt(zmq.SUBSCRIBE, b"stats")
        self.sockets.append(sub)
        sub.connect(self.engine.publisher.endpoint)
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if sub.poll(100) and sub.recv_multipart()[0] == b"stats":
                return sub
        raise AssertionError("no stats message reached the subscriber")

    def send(self, pub: zmq.Socket, frame: bytes) -> None:
        pub.send(frame)
        self.sent += 1

    def stats(self) -> dict:
        """The stats once every frame sent so far has been received."""
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            stats = self.engine.stats()
            if stats["frames_received"] >= self.sent:
                return stats
            time.sleep(0.01)
        raise AssertionError(f"the engine received {stats['frames_received']} of {self.sent}")

    def close(self) -> None:
        self.engine.stop()
        self.thread.join(timeout=DEADLINE_S)
        for sock in self.sockets:
            sock.close()
        self.engine.close()
        self.context.term()
        assert not self.thread.is_alive()


@pytest.fixture
def rig():
    made: list[Rig] = []

    def make(**overrides: object) -> Rig:
        made.append(Rig(**overrides))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _trade_frames(stream: int, n: int, session: int | None, first_seq: int = 0) -> list[bytes]:
    trades = make_trades(n, symbols=2, seed=stream)
    v2 = {} if session is None else {"session": session}  # version 1 frames: no session
    return [
        codec.encode_frame(s.KIND_TRADE, stream, first_seq + i, trades[i : i + 1], **v2)
        for i in range(n)
    ]


@pytest.mark.parametrize("version", [1, 2])
def test_a_second_connection_cannot_jam_a_stream_with_a_far_ahead_seq(rig, version):
    """Before: one frame at seq 2^40 from another connection made every later frame of the
    real publisher a duplicate (and the journal restored the jam)."""
    r = rig()
    session = 1111 if version == 2 else None
    real, attacker = r.connect(), r.connect()
    frames = _trade_frames(3, 40, session)
    for frame in frames[:20]:
        r.send(real, frame)
    r.stats()
    far = _trade_frames(3, 1, 2222 if version == 2 else None, first_seq=1 << 40)[0]
    r.send(attacker, far)
    r.stats()
    for frame in frames[20:]:
        r.send(real, frame)
    stats = r.stats()
    assert stats["rejected"]["duplicate"] == 0
    assert stats["processed"]["trade"] == 40  # every record of the real publisher
    assert stats["streams"]["3"]["next_seq"] == 40
    assert stats["records_lost"] == 0 and stats["gaps"] == 0
    reason = "foreign_session" if version == 2 else "bad_jump"
    assert stats["rejected"][reason] == 1
    assert stats["frames_rejected"] == 1


def test_a_replay_from_seq_0_is_duplicate_not_a_restart(rig):
    """Before: re-sending a stream from seq 0 was accepted as a publisher restart and every
    record was processed a second time."""
    r = rig()
    real, attacker = r.connect(), r.connect()
    frames = _trade_frames(4, 30, session=4242)
    for frame in frames:
        r.send(real, frame)
    r.stats()
    for frame in frames:  # captured frames, sent again by someone else
        r.send(attacker, frame)
    stats = r.stats()
    assert stats["processed"]["trade"] == 30
    assert stats["rejected"]["duplicate"] == 30
    assert stats["sequence_resets"] == 0
    assert stats["streams"]["4"]["next_seq"] == 30
    # the real publisher carries on
    for frame in _trade_frames(4, 5, session=4242, first_seq=30):
        r.send(real, frame)
    assert r.stats()["processed"]["trade"] == 35


def _wrap_attack(r: Rig) -> dict:
    """A real loss of 10 records on stream 5, then five frames built to overflow records_lost."""
    pub = r.connect()
    frames = _trade_frames(5, 1, None)  # seq 0
    frames += _trade_frames(5, 1, None, first_seq=11)  # a real gap: seq 1..10 lost
    top = MAX_I64 - 1  # the highest seq a one-record frame may carry
    for seq in (top, 0, top, 0, top):  # jump, restart, jump, ... (v1)
        frames += _trade_frames(5, 1, None, first_seq=seq)
    for frame in frames:
        r.send(pub, frame)
    return r.stats()


def test_five_frames_do_not_wrap_records_lost(rig):
    """Before: records_lost was a wrapping int64; these five frames brought it to 0 after a
    real loss (here: to a negative figure)."""
    stats = _wrap_attack(rig())
    assert stats["records_lost"] == 10  # the real loss, and nothing else: the jumps are refused
    assert stats["rejected"]["bad_jump"] == 3


def test_records_lost_saturates_when_jumps_are_allowed(rig):
    stats = _wrap_attack(rig(**{"ingest.max_gap": MAX_I64}))
    assert stats["records_lost"] == MAX_I64  # saturated: never wraps
    assert stats["streams"]["5"]["records_lost"] == MAX_I64
    assert stats["rejected"]["bad_jump"] == 0 and stats["sequence_resets"] == 2


def test_a_far_future_trade_does_not_stop_the_bars_of_its_symbol(rig):
    """Before: the far-future trade opened a bar a year ahead; every later trade joined it and
    no bar of the symbol was published again."""
    r = rig()
    sub = r.subscriber(b"bar.1")
    pub = r.connect()
    second = 1_000_000_000
    t0 = (time.time_ns() // second - 30) * second  # a bar boundary, 30 s ago
    trades = make_trades(5)
    trades["symbol"] = 1
    trades["ts_ns"] = [
        t0,
        t0 + 365 * 86_400 * second,
        t0 + second,
        t0 + 2 * second,
        t0 + 3 * second,
    ]
    for i in range(5):
        r.send(pub, codec.encode_frame(s.KIND_TRADE, 6, i, trades[i : i + 1]))
    stats = r.stats()
    assert stats["rejected"]["bad_timestamp"] == 1
    starts = []
    deadline = time.monotonic() + DEADLINE_S
    while len(starts) < 3 and time.monotonic() < deadline:
        if sub.poll(100):
            topic, payload = sub.recv_multipart()
            if topic == b"bar.1":
                _header, records = codec.decode_frame(payload)
                starts.append(int(records[0]["bar_start_ns"]))
    # the bars of t0, t0 + 1 s and t0 + 2 s close; t0 + 3 s stays open
    assert starts == [t0, t0 + second, t0 + 2 * second]
    assert np.all(np.diff(starts) > 0)


def test_a_silent_holder_can_be_taken_over_and_the_old_session_is_then_duplicate(rig):
    r = rig(**{"ingest.failover_s": 0.5})
    old, new = r.connect(), r.connect()
    for frame in _trade_frames(2, 10, session=1):
        r.send(old, frame)
    r.stats()
    for frame in _trade_frames(2, 3, session=2, first_seq=0):  # too early: foreign
        r.send(new, frame)
    early = r.stats()
    assert early["rejected"]["foreign_session"] == 3
    deadline = time.monotonic() + DEADLINE_S
    taken = early
    seq = 0
    while taken["session_takeovers"] == 0 and time.monotonic() < deadline:
        time.sleep(0.6)  # longer than the failover time: poll until the takeover shows
        r.send(new, _trade_frames(2, 1, session=2, first_seq=seq)[0])
        seq += 1
        taken = r.stats()
    assert taken["session_takeovers"] == 1
    assert taken["streams"]["2"]["session"] == 2
    first = taken["streams"]["2"]["first_seq"]
    assert taken["streams"]["2"]["next_seq"] == first + 1
    for frame in _trade_frames(2, 4, session=1, first_seq=10):  # the old holder is back
        r.send(old, frame)
    after = r.stats()
    assert after["rejected"]["duplicate"] == 4
    assert after["streams"]["2"]["session"] == 2


def test_stats_report_first_seq_and_per_topic_last_seq(rig):
    r = rig()
    pub = r.connect()
    for frame in _trade_frames(1, 6, session=9, first_seq=1000):  # joined late: 0..999 unseen
        r.send(pub, frame)
    stats = r.stats()
    assert stats["streams"]["1"]["first_seq"] == 1000
    assert stats["streams"]["1"]["session"] == 9
    topics = stats["topics"]
    # six one-record frames over symbols 0 and 1: one trade result each, numbered from 0
    assert sum(seq + 1 for seq in topics["trade"]) == 6
    assert all(seq == -1 for seq in topics["quote"])  # no quote result yet
    assert len(topics["trade"]) == len(topics["book"]) == 16  # one entry per symbol


def test_a_large_universe_s_topic_sequences_come_in_turns(rig):
    """More symbols than TOPICS_PER_STATS: each published stats message carries the
    sequences of one window of them (``topics_from``), in turn, so its size and the tick
    thread's time to encode it do not grow with the universe."""
    n = 2 * TOPICS_PER_STATS + 100
    r = rig(**{"analytics.n_symbols": n, "publish.stats_interval_s": 0.05})
    pub = r.connect()
    trades = make_trades(3, symbols=1, seed=5)
    trades["symbol"] = [5, TOPICS_PER_STATS + 7, n - 1]  # one trade in each window
    for i in range(3):
        r.send(pub, codec.encode_frame(s.KIND_TRADE, 1, i, trades[i : i + 1]))
    r.stats()
    sub = r.subscriber(b"stats")
    seen: dict[int, dict] = {}
    deadline = time.monotonic() + DEADLINE_S
    while len(seen) < 3 and time.monotonic() < deadline:
        if sub.poll(100):
            _topic, payload = sub.recv_multipart()
            stats = msgspec.json.decode(payload)
            if stats["records_accepted"] == 3:
                seen[stats["topics_from"]] = stats["topics"]
    assert sorted(seen) == [0, TOPICS_PER_STATS, 2 * TOPICS_PER_STATS]
    assert [len(seen[first]["trade"]) for first in sorted(seen)] == [
        TOPICS_PER_STATS, TOPICS_PER_STATS, 100
    ]  # fmt: skip
    for first, symbol in (
        (0, 5),
        (TOPICS_PER_STATS, TOPICS_PER_STATS + 7),
        (2 * TOPICS_PER_STATS, n - 1),
    ):
        trade = seen[first]["trade"]
        assert trade[symbol - first] == 0  # its one result: seq 0
        assert sum(seq + 1 for seq in trade) == 1  # and no other in the window


def _until(r: Rig, predicate) -> dict:  # noqa: ANN001
    """The engine's stats once ``predicate(stats)`` holds (deadline DEADLINE_S)."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        stats = r.engine.stats()
        if predicate(stats):
            return stats
        time.sleep(0.02)
    raise AssertionError(f"condition never held; last stats {r.engine.stats()}")


def test_a_restarted_feed_takes_its_stream_over_at_once_after_its_end_of_session(rig):
    """tickpath feed sends an end of session when it stops, so its restart (a new session) is
    accepted at once (without it, the new session's frames are foreign_session for
    ingest.failover_s)."""
    from tickpath.engine.feed.publisher import run_feed

    r = rig(**{"ingest.failover_s": 3600})  # only an end of session can release the stream
    endpoint = r.engine.receiver.endpoints[0]
    opts = dict(symbols=2, rate=4000, batch=10, duration=0.5, stream_id=3, join_timeout=120)
    first = run_feed(endpoint, **opts)
    _until(r, lambda st: st["session_ends"] == 1)
    second = run_feed(endpoint, **opts)
    assert second.session > first.session > 0
    stats = _until(r, lambda st: st["session_ends"] == 2)
    assert stats["rejected"]["foreign_session"] == 0
    assert stats["session_takeovers"] == 1
    assert stats["streams"]["3"]["session"] == second.session
    assert stats["streams"]["3"]["next_seq"] == second.next_seq
    assert stats["frames_rejected"] == 0


def _quote(symbol: int) -> np.ndarray:
    q = np.zeros(1, s.QUOTE)
    q["ts_ns"], q["symbol"] = 1_000, symbol
    q["bid_price"], q["ask_price"] = 1_000_000, 1_000_100
    q["bid_size"], q["ask_size"] = s.SIZE_SCALE, s.SIZE_SCALE
    return q


def _tcp_send_buffer_max() -> int:
    """The most a TCP send buffer may autotune to (``net.ipv4.tcp_wmem``), 4 MiB if unknown."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 << 20


def test_a_slow_subscriber_detects_tail_loss_from_the_stats_topics(rig):
    """Results lost at the end of a topic leave no later result to reveal the gap; the stats
    message's per-topic last seq does (before: no per-topic sequence anywhere)."""
    import json

    from tickpath.engine.service.watch import TopicSequences

    r = rig(**{"publish.sndhwm": 10})
    sub = r.context.socket(zmq.SUB)
    r.sockets.append(sub)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 10)
    sub.setsockopt(zmq.RCVBUF, 4096)
    sub.setsockopt(zmq.SUBSCRIBE, b"quote.")
    sub.setsockopt(zmq.SUBSCRIBE, b"stats")
    sub.connect(r.engine.publisher.endpoint)
    pub = r.connect()
    sequences = TopicSequences()
    topics = [f"quote.{i}".encode() for i in range(4)]
    seq = 0

    def read(seconds: float) -> dict | None:
        """Results into ``sequences``; the first stats covering every frame sent, if any."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if not sub.poll(50):
                continue
            topic, payload = sub.recv_multipart()
            if topic == b"stats":
                stats = json.loads(payload)
                if stats["frames_received"] >= r.sent:
                    return stats
            else:
                header, _ = codec.decode_frame(payload)
                sequences.observe(topic, int(header["seq"]))
        return None

    deadline = time.monotonic() + DEADLINE_S
    while not all(t in sequences.expected for t in topics):  # every topic's first result
        assert time.monotonic() < deadline, "the subscriber never got a result of each topic"
        for sym in range(4):
            r.send(pub, codec.encode_frame(s.KIND_QUOTE, 1, seq, _quote(sym), session=3))
            seq += 1
        read(0.2)
    # the subscriber does not read meanwhile; the results must overflow more than its
    # queues: the engine's TCP send buffer, autotuned, may grow to tcp_wmem's maximum (4 MiB
    # by default) and hold about 30,000 of them, so send twice that at least
    for i in range(max(20_000, 2 * _tcp_send_buffer_max() // 100)):
        r.send(pub, codec.encode_frame(s.KIND_QUOTE, 1, seq, _quote(i % 4), session=3))
        seq += 1
    r.stats()
    final = None
    while final is None:  # reading again: what was queued, then a stats message after it all
        assert time.monotonic() < deadline, "no stats message covering every frame arrived"
        final = read(1.0)

    def published(topic: bytes) -> int:  # "quote.3" -> topics["quote"][3]
        analytic, _, symbol = topic.decode().partition(".")
        return final["topics"][analytic][int(symbol)]

    last = {t: published(t) for t in topics}
    tail = {t: last[t] + 1 - sequences.expected[t] for t in topics}
    assert all(n >= 0 for n in tail.values())
    assert sum(tail.values()) > 0  # lost at the end of the topics: only the stats show it
    published = sum(last[t] + 1 - sequences.first[t] for t in topics)
    received = sum(sequences.received[t] for t in topics)
    assert received + sequences.lost + sum(tail.values()) == published
