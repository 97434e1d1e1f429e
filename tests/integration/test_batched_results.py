"""Batched result publishing (``publish.mode``) over real ZeroMQ sockets on loopback.

An engine runs in a thread; frames of the synthetic market (every kind, several
symbols per frame) go in over a PUB socket, and subscribers on the engine's
results check what each topic carries: one ``batch.<analytic>`` message per
input frame and analytic holding the records of every symbol the frame touched
(``count > 1``, the same wire framing, sequence numbers counting records), next
to the unchanged per-symbol messages; each subscriber gets only the topics it
chose; ``tickpath watch`` decodes both.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from tests.factories import make_trades
from tests.integration.test_engine_sockets import Harness
from tickpath.engine.feed.synthetic import SyntheticMarket
from tickpath.engine.service.publisher import BATCH_STREAM_ID
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s

N_SYMBOLS = 6  # symbols of the data; symbol PROBE only carries the subscription probes
PROBE = 15
PROBE_STREAM = 4  # probe trades; probe orders on the next stream
DEADLINE_S = 120.0
RESULT_KIND = {
    s.KIND_QUOTE: "quote",
    s.KIND_TRADE: "trade",
    s.KIND_ORDER: "book",
}


def market_frames(n_frames: int, batch: int = 48, seed: int = 3) -> list[bytes]:
    """Frames of every kind, one stream per kind with contiguous sequence numbers."""
    market = SyntheticMarket(N_SYMBOLS, seed)
    seqs: dict[int, int] = {}
    frames = []
    for _ in range(n_frames):
        kind, records = market.next_batch(batch)
        seq = seqs.get(kind, 0)
        frames.append(codec.encode_frame(kind, kind, seq, records, time.time_ns()))
        seqs[kind] = seq + len(records)
    return frames


def expected_per_frame(frames: list[bytes]) -> dict[str, list[int]]:
    """Per analytic, the number of symbols each input frame touched (frames in order)."""
    out: dict[str, list[int]] = {name: [] for name in RESULT_KIND.values()}
    for frame in frames:
        header, records = codec.decode_frame(frame)
        out[RESULT_KIND[int(header["kind"])]].append(len(np.unique(records["symbol"])))
    return out


class Batched(Harness):
    """The engine harness with extra subscribers, each on its own topic prefixes."""

    def __init__(self, mode: str, prefixes: dict[str, list[bytes]]) -> None:
        super().__init__(**{"publish.mode": mode, "analytics.bar_s": 1e-4})
        ctx = zmq.Context.instance()
        self.subs: dict[str, zmq.Socket] = {}
        for name, topics in prefixes.items():
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.RCVHWM, 0)
            for topic in topics:
                sub.setsockopt(zmq.SUBSCRIBE, topic)
            sub.connect(self.engine.publisher.endpoint)
            self.subs[name] = sub
        # what happened to the "all" subscriber's connection (a failure report names it)
        self.monitor = self.subs[next(iter(self.subs))].get_monitor_socket()
        self.events: list[str] = []
        self.received: dict[str, list[tuple[bytes, bytes]]] = {name: [] for name in self.subs}
        self.probe_seq = 0
        # every subscriber must see a probe result before the data is sent (slow joiner)
        deadline = time.monotonic() + DEADLINE_S
        while not all(self.received.values()):
            assert time.monotonic() < deadline, "a subscriber never received a probe result"
            self.probe()
            self.drain(0.05)

    def probe(self) -> None:
        """One trade and one new resting order of the probe symbol (a result of each)."""
        trades = make_trades(1, start_ns=1_000_000_000 + self.probe_seq)
        trades["symbol"] = PROBE
        self.send(codec.encode_frame(s.KIND_TRADE, PROBE_STREAM, self.probe_seq, trades))
        order = np.zeros(1, s.ORDER)
        order["ts_ns"] = 1_000_000_000 + self.probe_seq
        order["symbol"] = PROBE
        order["action"] = s.ACTION_ADD
        order["side"] = s.SIDE_BUY
        order["order_id"] = self.probe_seq
        order["price"] = 1_000_000
        order["size"] = 1
        self.send(codec.encode_frame(s.KIND_ORDER, PROBE_STREAM + 1, self.probe_seq, order))
        self.probe_seq += 1

    def drain(self, wait_s: float) -> None:
        """Read every message the subscribers have, waiting up to ``wait_s`` for the first."""
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)
            self.events.append(f"{event['event'].name} ({sum(map(len, self.received.values()))})")
        poller = zmq.Poller()
        for sub in self.subs.values():
            poller.register(sub, zmq.POLLIN)
        ready = dict(poller.poll(int(wait_s * 1000)))
        for name, sub in self.subs.items():
            if sub in ready:
                while True:
                    try:
                        self.received[name].append(tuple(sub.recv_multipart(zmq.NOBLOCK)))
                    except zmq.Again:
                        break

    def close(self) -> None:
        next(iter(self.subs.values())).disable_monitor()
        self.monitor.close(linger=0)
        for sub in self.subs.values():
            sub.close(linger=0)
        super().close()


def data_records(messages, prefix: bytes) -> dict[bytes, list]:
    """``{topic: [(header, records)]}`` of the result messages under ``prefix``, probe
    frames (which only hold the probe symbol) left out."""
    out: dict[bytes, list] = {}
    for topic, payload in messages:
        if topic == b"stats" or not topic.startswith(prefix):
            continue
        header, records = codec.decode_frame(payload)
        if np.all(records["symbol"] == PROBE):
            continue
        out.setdefault(topic, []).append((header, records))
    return out


def wait_for_everything(h: Batched, frames: list[bytes], name: str, wanted) -> None:
    """Send ``frames``, then read until ``wanted(messages)`` holds and a stats message shows
    every record accepted (stats leave the same socket after the results before them)."""
    records = sum(int(codec.decode_frame(f)[0]["count"]) for f in frames)
    accepted0 = h.engine.stats()["records_accepted"]
    for frame in frames:
        h.send(frame)
    deadline = time.monotonic() + DEADLINE_S
    while True:
        assert time.monotonic() < deadline, "the results never all arrived"
        h.drain(0.1)
        stats = [payload for topic, payload in h.received[name] if topic == b"stats"]
        done = stats and json.loads(stats[-1])["records_accepted"] >= accepted0 + records
        if done and wanted(h.received[name]):
            return


def _seq_gaps(messages, analytic: str) -> dict[bytes, list[tuple[int, int]]]:
    """Per per-symbol topic of ``analytic``: (expected, got) wherever its seq jumps."""
    last: dict[bytes, int] = {}
    gaps: dict[bytes, list[tuple[int, int]]] = {}
    for topic, payload in messages:
        if topic.startswith(f"{analytic}.".encode()):
            seq = int(codec.decode_frame(payload)[0]["seq"])
            if topic in last and seq != last[topic] + 1:
                gaps.setdefault(topic, []).append((last[topic] + 1, seq))
            last[topic] = seq
    return gaps


@pytest.fixture
def both():
    h = Batched(
        "both",
        {"all": [b""], "batch": [b"batch."], "trade": [b"trade."], "batch_book": [b"batch.book"]},
    )
    yield h
    h.close()


def test_batched_topics_carry_every_touched_symbol_next_to_per_symbol_ones(both):
    frames = market_frames(24)
    expected = expected_per_frame(frames)
    wait_for_everything(both, frames, "all", lambda msgs: True)
    stats = both.engine.stats()
    assert stats["frames_rejected"] == 0 and stats["records_rejected"] == 0
    assert stats["gaps"] == 0
    every = both.received["all"]
    batched = data_records(every, b"batch.")
    for analytic, touched in expected.items():
        messages = batched[f"batch.{analytic}".encode()]
        # one message per input frame of that kind, holding every symbol it touched
        assert [int(h["count"]) for h, _ in messages] == touched
        assert max(touched) > 1
        for header, records in messages:
            assert int(header["kind"]) == s.KIND_OF_ANALYTIC[analytic]
            assert int(header["stream_id"]) == BATCH_STREAM_ID
            assert len(np.unique(records["symbol"])) == len(records)
        # the same records, in the same order, as the per-symbol topics carried one by one
        singles = [
            (h, r)
            for topic, payload in every
            if topic.startswith(f"{analytic}.".encode())
            for h, r in [codec.decode_frame(payload)]
            if r["symbol"][0] != PROBE
        ]
        assert all(int(h["count"]) == 1 for h, _ in singles)
        assert [int(h["stream_id"]) for h, _ in singles] == [
            int(r["symbol"][0]) for _, r in singles
        ]
        joined = np.concatenate([r for _, r in messages])
        one_by_one = np.concatenate([r for _, r in singles])
        assert joined.tobytes() == one_by_one.tobytes(), (
            f"{analytic}: {len(joined)} batched records vs {len(one_by_one)} single; "
            f"first batched (symbol, in_stream, in_seq) "
            f"{joined[['symbol', 'in_stream', 'in_seq']][:3].tolist()}, first single "
            f"{one_by_one[['symbol', 'in_stream', 'in_seq']][:3].tolist()}; "
            f"per-topic seq gaps of the singles: {_seq_gaps(every, analytic)}; "
            f"the 'all' subscriber's connection events: {both.events}"
        )
    # bars close as exchange time moves on: batched like the others, when there are any
    bars = batched.get(b"batch.bar", [])
    bar_singles = data_records(every, b"bar.")
    assert sum(len(r) for _, r in bars) == sum(len(v) for v in bar_singles.values())
    # each batched topic's seq counts its records: the next message starts at seq + count;
    # stats name the last record's seq of each batched topic (a subscriber's tail check)
    for topic in (b"batch.quote", b"batch.trade", b"batch.book", b"batch.bar"):
        headers = [codec.decode_frame(payload)[0] for t, payload in every if t == topic]
        seqs = [int(h["seq"]) for h in headers]
        counts = [int(h["count"]) for h in headers]
        assert len(seqs) > 0
        assert all(b == a + n for a, b, n in zip(seqs, seqs[1:], counts, strict=False))
        analytic = topic.decode().partition(".")[2]
        assert both.engine.stats()["topics"]["batch"][analytic] == seqs[-1] + counts[-1] - 1
    assert len(bars) > 0
    # subscribers choose by topic
    assert {t for t, _ in both.received["batch"]} <= {
        b"batch.quote",
        b"batch.trade",
        b"batch.bar",
        b"batch.book",
    }
    # (the subscribers joined at different probes: compare the data's messages only)
    assert [m for m in both.received["batch"] if data_records([m], b"batch.book")] == [
        m for m in every if data_records([m], b"batch.book")
    ]
    assert {t for t, _ in both.received["batch_book"]} == {b"batch.book"}
    assert all(t.startswith(b"trade.") for t, _ in both.received["trade"])
    assert [m for m in both.received["trade"] if data_records([m], b"trade.")] == [
        m for m in every if m[0].startswith(b"trade.") and data_records([m], b"trade.")
    ]


def test_batch_mode_publishes_no_per_symbol_topics():
    h = Batched("batch", {"all": [b""]})
    try:
        frames = market_frames(12)
        expected = expected_per_frame(frames)

        def complete(messages) -> bool:
            got = data_records(messages, b"batch.")
            return all(
                len(got.get(f"batch.{a}".encode(), [])) == len(n) for a, n in expected.items()
            )

        wait_for_everything(h, frames, "all", complete)
        topics = {t for t, _ in h.received["all"]}
        assert topics - {b"stats"} <= {b"batch.quote", b"batch.trade", b"batch.bar", b"batch.book"}
        got = data_records(h.received["all"], b"batch.")
        for analytic, touched in expected.items():
            assert [int(hd["count"]) for hd, _ in got[f"batch.{analytic}".encode()]] == touched
        stats = h.engine.stats()
        assert stats["results_published"] > 0
    finally:
        h.close()


def test_watch_decodes_batched_and_per_symbol_results(tmp_path):
    h = Batched("both", {"all": [b"batch.", b"quote."]})
    out_path = tmp_path / "watch.jsonl"
    err_path = tmp_path / "watch.err"
    try:
        with open(out_path, "w") as out, open(err_path, "w") as err:
            watch = subprocess.Popen(
                [sys.executable, "-m", "tickpath", "watch", "--endpoint",
                 h.engine.publisher.endpoint, "--topic", "batch.", "--topic", "quote.", "--json",
                 "--timeout", "15"],
                stdout=out, stderr=err,
            )  # fmt: skip
            try:
                # the watcher is subscribed once it prints a probe's batched trade result
                deadline = time.monotonic() + DEADLINE_S
                while "batch.trade" not in out_path.read_text():
                    assert time.monotonic() < deadline, "watch never printed a result"
                    assert watch.poll() is None, err_path.read_text()
                    h.probe()
                    time.sleep(0.05)
                frames = market_frames(16)
                for frame in frames:
                    h.send(frame)
                watch.wait(timeout=DEADLINE_S)  # exits 15 s after the last result
            finally:
                if watch.poll() is None:
                    watch.kill()
                    watch.wait()
        assert watch.returncode == 0
        assert "gaps" not in err_path.read_text(), err_path.read_text()
        lines = [json.loads(line) for line in out_path.read_text().splitlines()]
        batch = [ln for ln in lines if ln["topic"] == "batch.quote" and ln["symbol"] != PROBE]
        single = [ln for ln in lines if ln["topic"].startswith("quote.")]
        assert batch and len(batch) == len(single)
        # the same results, decoded from one message per frame and one per symbol
        keys = ("symbol", "in_seq", "bid_price", "ask_price", "mid", "done_ns")
        assert [[ln[k] for k in keys] for ln in batch] == [[ln[k] for k in keys] for ln in single]
        seqs = [ln["seq"] for ln in lines if ln["topic"] == "batch.quote"]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert all(ln["analytic"] == "quote" for ln in batch)
    finally:
        h.close()


def test_unknown_publish_mode_is_a_one_line_error():
    from tickpath.engine.config import ConfigError, load_config

    with pytest.raises(ConfigError) as info:
        load_config(None, {"publish.mode": "per-frame"})
    message = str(info.value)
    assert "publish.mode" in message and "batch" in message and "\n" not in message
    assert load_config(None, {}).publish.mode == "symbol"  # today's topics by default
