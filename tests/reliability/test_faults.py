"""Injected faults: a subscriber too slow for the publisher, publisher restarts, engine restarts.

Loss is never silent: a subscriber counts what it missed from the per-topic
result sequence numbers (``tickpath.engine.service.watch.TopicSequences``, the code
``tickpath watch`` runs), and the engine counts ingest gaps and resets.
"""

from __future__ import annotations

import threading
import time

import msgspec
import pytest
import zmq

from tests.factories import make_quotes
from tests.reliability.helpers import SMALL
from tests.waiting import DEADLINE_S, wait_until
from tickpath.engine.config import load_config
from tickpath.engine.journal.extension import JournalExtension
from tickpath.engine.service.engine import Engine
from tickpath.engine.service.watch import TopicSequences
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu import streaming as k


class Running:
    """An engine in a thread, a PUB into its ingest (awaiting its subscription) and SUBs."""

    def __init__(self, ingest=None, publish=None, journal=None, **overrides):
        values = dict(SMALL)
        values.update(
            {
                "ingest.endpoints": [ingest or "tcp://127.0.0.1:*"],
                "publish.endpoint": publish or "tcp://127.0.0.1:*",
                "publish.stats_interval_s": 0.1,
                **overrides,
            }
        )
        if journal is not None:
            values["journal.dir"] = str(journal)
        self.config = load_config(None, values)
        self.context = zmq.Context()
        extensions = [JournalExtension(self.config.journal)] if journal is not None else []
        self.engine = Engine(self.config, self.context, extensions=extensions)
        self.engine.start()
        self.thread = threading.Thread(target=self.engine.run, daemon=True)
        self.thread.start()
        self.pubs = []
        self.subs = []

    @property
    def publish_endpoint(self):
        return self.engine.publisher.endpoint

    def publisher(self):
        """A PUB connected to the ingest, returned once the engine's subscription arrived."""
        pub = self.context.socket(zmq.XPUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, 0)
        pub.connect(self.engine.receiver.endpoints[0])
        assert pub.poll(int(DEADLINE_S * 1000)), "the engine never subscribed"
        pub.recv()
        self.pubs.append(pub)
        return pub

    def subscriber(self, rcvhwm=100_000, rcvbuf=-1, topic=b"quote."):
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, rcvhwm)
        sub.setsockopt(zmq.RCVBUF, rcvbuf)
        sub.setsockopt(zmq.SUBSCRIBE, topic)
        sub.connect(self.publish_endpoint)
        self.subs.append(sub)
        return sub

    def wait_frames(self, n, timeout=DEADLINE_S):
        wait_until(
            lambda: self.engine.stats()["frames_received"] >= n,
            timeout,
            lambda: f"{n} frames, {self.engine.stats()['frames_received']} received",
        )
        return self.engine.stats()

    def stop(self, close_subs=True):
        self.engine.stop()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()
        for sock in self.pubs + (self.subs if close_subs else []):
            sock.close()
        self.engine.close()
        self.context.term()


def _quote(symbol, ts):
    q = make_quotes(1, symbols=1)
    q["symbol"] = symbol
    q["ts_ns"] = ts
    return q


def _read(sub, sequences, until, timeout=DEADLINE_S):
    """Receive results into ``sequences`` until ``until(sequences)``; return the stats seen."""
    deadline = time.monotonic() + timeout
    stats = None
    while not until(sequences):
        assert time.monotonic() < deadline, "results did not arrive"
        if not sub.poll(100):
            continue
        topic, payload = sub.recv_multipart()
        if topic == b"stats":
            stats = msgspec.json.decode(payload)
            continue
        header, _ = codec.decode_frame(payload)
        sequences.observe(topic, int(header["seq"]), int(header["count"]))
    return stats


def test_slow_subscriber_loses_results_and_counts_them_exactly():
    run = Running(**{"publish.sndhwm": 10})
    try:
        pub = run.publisher()
        sub = run.subscriber(rcvhwm=10, rcvbuf=4096)
        symbols = 4
        seq = 0
        sequences = TopicSequences()
        topics = [f"quote.{i}".encode() for i in range(symbols)]
        # the first result of every topic arrives (so later loss is measurable) ...
        deadline = time.monotonic() + DEADLINE_S
        while not all(t in sequences.expected for t in topics):
            assert time.monotonic() < deadline, "subscriber never connected"
            for sym in range(symbols):
                pub.send(codec.encode_frame(s.KIND_QUOTE, 1, seq, _quote(sym, seq)))
                seq += 1
            _read(sub, sequences, lambda q: True, timeout=1)
            while sub.poll(50):  # what came of this round (a 50 ms poll paces the rounds)
                topic, payload = sub.recv_multipart()
                if topic != b"stats":
                    header, _ = codec.decode_frame(payload)
                    sequences.observe(topic, int(header["seq"]))
        # ... then it stops reading while 20,000 results are published
        for i in range(20_000):
            pub.send(codec.encode_frame(s.KIND_QUOTE, 1, seq, _quote(i % symbols, seq)))
            seq += 1
        run.wait_frames(seq)
        # it reads again; one more result per topic reveals any loss at the end
        while sub.poll(200):
            topic, payload = sub.recv_multipart()
            if topic != b"stats":
                header, _ = codec.decode_frame(payload)
                sequences.observe(topic, int(header["seq"]))
        for sym in range(symbols):
            pub.send(codec.encode_frame(s.KIND_QUOTE, 1, seq, _quote(sym, seq)))
            seq += 1
        run.wait_frames(seq)
        out_seq = run.engine.processor.state.out_seq[k.A_QUOTE]
        _read(
            sub,
            sequences,
            lambda q: all(q.expected.get(t, 0) == int(out_seq[i]) for i, t in enumerate(topics)),
        )
        # published since the first result the subscriber saw on each topic
        published = sum(int(out_seq[i]) - sequences.first[t] for i, t in enumerate(topics))
        received = sum(sequences.received[t] for t in topics)
        assert sequences.lost > 0, "the subscriber kept up: no loss to count"
        assert sequences.gaps > 0 and sequences.resets == 0
        assert received + sequences.lost == published  # every result received or counted lost
        assert run.engine.stats()["records_lost"] == 0  # the engine itself lost nothing
    finally:
        run.stop()


def test_publisher_restart_is_counted_as_a_reset_not_as_loss():
    run = Running()
    try:
        first = run.publisher()
        trades_sent = 0
        for i in range(50):
            q = _quote(i % 3, i)
            first.send(codec.encode_frame(s.KIND_QUOTE, 2, i, q))
            trades_sent += 1
        run.wait_frames(50)
        first.close()
        run.pubs.remove(first)
        second = run.publisher()  # the feed restarted: its sequence starts at 0 again
        for i in range(30):
            second.send(codec.encode_frame(s.KIND_QUOTE, 2, i, _quote(i % 3, 100 + i)))
        stats = run.wait_frames(80)
        assert stats["sequence_resets"] == 1
        assert stats["gaps"] == 0 and stats["records_lost"] == 0
        assert stats["rejected"]["duplicate"] == 0 and stats["rejected"]["out_of_order"] == 0
        assert stats["processed"]["quote"] == 80
    finally:
        run.stop()


@pytest.mark.parametrize("journal", [False, True])
def test_engine_restart_results_reset_without_journal_continue_with_it(tmp_path, journal):
    journal_dir = tmp_path / "journal" if journal else None
    run = Running(journal=journal_dir)  # ports the OS picks ...
    # ... and the restarted engine binds the same ones (the point: clients reconnect)
    ingest, publish = run.engine.receiver.endpoints[0], run.publish_endpoint
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"quote.")
    sub.connect(publish)
    sequences = TopicSequences()
    topic = b"quote.5"
    try:
        pub = run.publisher()
        seq = 0
        deadline = time.monotonic() + DEADLINE_S
        while topic not in sequences.expected:  # subscriber connected
            assert time.monotonic() < deadline
            pub.send(codec.encode_frame(s.KIND_QUOTE, 1, seq, _quote(5, seq)))
            seq += 1
            _read(sub, sequences, lambda q: True, timeout=1)
            if sub.poll(100):
                _t, payload = sub.recv_multipart()
                sequences.observe(_t, int(codec.decode_frame(payload)[0]["seq"]))
        for _ in range(20):
            pub.send(codec.encode_frame(s.KIND_QUOTE, 1, seq, _quote(5, seq)))
            seq += 1
        run.wait_frames(seq)
        _read(sub, sequences, lambda q: q.expected[topic] == seq)
        run.stop()
        # a new engine on the same endpoints; the subscriber reconnects by itself
        run = Running(ingest=ingest, publish=publish, journal=journal_dir)
        pub = run.publisher()
        before = sequences.received[topic]
        deadline = time.monotonic() + DEADLINE_S
        while sequences.received[topic] == before:
            assert time.monotonic() < deadline, "no result after the restart"
            pub.send(codec.encode_frame(s.KIND_QUOTE, 1, seq, _quote(5, seq)))
            seq += 1
            while sub.poll(50):  # a 50 ms poll paces the sends
                _t, payload = sub.recv_multipart()
                sequences.observe(_t, int(codec.decode_frame(payload)[0]["seq"]))
        stats = run.engine.stats()
        if journal:
            # state recovered: the ingest stream continues (no reset), results continue
            assert stats["sequence_resets"] == 0
            assert sequences.resets == 0
            assert stats["journal"]["recovery"]["snapshot"] is not None  # the final one
        else:
            # a fresh engine: its result sequences restart at 0, which the subscriber sees
            assert sequences.resets == 1
    finally:
        run.stop()
        sub.close()


def test_topic_sequences_counts_gaps_loss_and_resets():
    seqs = TopicSequences()
    for seq in (0, 1, 2, 5, 6, 10):
        seqs.observe(b"trade.1", seq)
    seqs.observe(b"trade.2", 7)  # first seen: nothing known before it
    seqs.observe(b"trade.1", 0)  # the engine restarted
    seqs.observe(b"trade.1", 1)
    seqs.observe(b"trade.2", 3)  # restarted, its first results lost on reconnection
    assert (seqs.gaps, seqs.lost, seqs.resets) == (2, 5, 2)
    assert seqs.received == {b"trade.1": 8, b"trade.2": 2}
    assert seqs.expected == {b"trade.1": 2, b"trade.2": 4}
    assert seqs.first == {b"trade.1": 0, b"trade.2": 7}
