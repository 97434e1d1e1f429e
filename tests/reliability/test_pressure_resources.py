"""Resources under pressure, over real sockets: descriptors, byte budgets, connection caps.

* Idle TCP connections beyond a lowered descriptor limit: the journaled engine
  keeps running, rolling segments and taking snapshots, and reports the refusals.
* Worst-case memory: a backlog of legal 1 MiB frames from every allowed publisher
  plus stalled subscribers; the engine's peak RSS (VmHWM) stays within the
  formula of docs/reliability.md.
* Re-sent (duplicate) 1 MiB frames cost the journal a small marker each.
* Oversize messages are refused by libzmq (ZMQ_MAXMSGSIZE); subscribers beyond
  ``publish.max_subscribers`` are refused and counted.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest
import zmq

from tests.reliability.helpers import SMALL, market_frames
from tests.serving import ANY_PORT, bound_endpoints
from tickpath.engine.config import RESULT_MESSAGE_COST, ConfigError, load_config
from tickpath.engine.journal.extension import JournalExtension
from tickpath.engine.journal.reader import open_journal
from tickpath.engine.journal.recovery import recover
from tickpath.engine.security.extension import SecurityExtension
from tickpath.engine.service.engine import Engine, StreamProcessor
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s

ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 120.0

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")


def wait_for(condition, what, timeout=DEADLINE_S):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _toml(values: dict) -> str:
    sections: dict[str, dict] = {}
    for dotted, value in values.items():
        section, key = dotted.split(".", 1)
        sections.setdefault(section, {})[key] = value
    lines = []
    for section, items in sections.items():
        lines.append(f"[{section}]")
        for key, value in items.items():
            lines.append(f"{key} = {value!r}".replace("'", '"').replace("True", "true"))
    return "\n".join(lines) + "\n"


class Served:
    """``tickpath serve`` in a subprocess, its stats read from a SUB socket."""

    def __init__(self, tmp_path: Path, values: dict, nofile: int | None = None) -> None:
        values = {
            **values,
            "ingest.endpoints": [ANY_PORT],  # the engine binds port 0 and logs the port
            "publish.endpoint": ANY_PORT,
            "publish.stats_interval_s": 0.1,
        }
        config = tmp_path / "engine.toml"
        config.write_text(_toml(values))
        self.log_path = tmp_path / "serve.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in close()

        def lower_nofile() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tickpath", "serve", "--config", str(config)],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=lower_nofile if nofile else None,
        )
        bound = bound_endpoints(self.log_path, self.proc)
        self.ingest, self.publish = bound["ingest"][0], bound["publish"]
        self.context = zmq.Context()
        self.sub = self.context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"stats")
        self.sub.connect(self.publish)
        self.latest: dict = {}

    def stats(self, predicate=lambda s: True, what="stats", timeout=DEADLINE_S) -> dict:
        """The newest stats message that satisfies ``predicate`` (waits for one)."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"the engine exited:\n{self.log()[-3000:]}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            if not self.sub.poll(100):
                continue
            while self.sub.poll(0):
                _topic, payload = self.sub.recv_multipart()
                self.latest = msgspec.json.decode(payload)
            if predicate(self.latest):
                return self.latest

    def publisher(self, sndhwm: int = 1000) -> zmq.Socket:
        pub = self.context.socket(zmq.XPUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.setsockopt(zmq.SNDHWM, sndhwm)
        pub.connect(self.ingest)
        wait_for(lambda: pub.poll(50), "the engine's subscription")
        pub.recv()
        return pub

    def status(self, field: str) -> int:
        """A ``VmRSS``/``VmHWM`` figure of the engine process, in bytes."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} in /proc/{self.proc.pid}/status")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._log.close()
        self.context.destroy(linger=0)


def _idle_connections(endpoint: str, n: int) -> list[socket.socket]:
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    conns = []
    for _ in range(n):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        c.connect_ex((host, int(port)))  # never completes a ZMTP greeting
        conns.append(c)
    return conns


def test_idle_connections_beyond_the_descriptor_limit_do_not_stop_a_journaled_engine(tmp_path):
    nofile = 256
    attackers = 600
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < attackers + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, attackers + 200), hard))
    values = {
        **SMALL,
        "journal.dir": str(tmp_path / "journal"),
        "journal.segment_bytes": 65536,
        "journal.snapshot_interval_s": 0.3,
        "journal.retain": "snapshots",
        "connections.handshake_timeout_s": 3.0,
        "connections.log_interval_s": 1.0,
    }
    served = Served(tmp_path, values, nofile=nofile)
    conns: list[socket.socket] = []
    try:
        served.stats(lambda s: "journal" in s, "the engine")
        pub = served.publisher(sndhwm=0)
        frames = market_frames(40_000, seed=5)
        stop = threading.Event()

        def feed() -> None:
            for frame in frames:
                if stop.is_set():
                    return
                pub.send(frame)
                time.sleep(0.0005)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        conns = _idle_connections(served.ingest, attackers)
        saturated = served.stats(
            lambda s: s["security"]["connections"]["ingest"]["accept_failed"] > 0,
            "the descriptor table to fill up",
        )
        journal = saturated["journal"]
        # while the idle peers keep the table full, segments roll and snapshots happen
        later = served.stats(
            lambda s: (
                s["journal"]["segments_created"] >= journal["segments_created"] + 3
                and s["journal"]["snapshots"]["taken"] >= journal["snapshots"]["taken"] + 2
                and s["security"]["connections"]["ingest"]["accept_failed"]
                > saturated["security"]["connections"]["ingest"]["accept_failed"]
            ),
            "segments and snapshots under saturation",
        )
        assert later["journal"]["snapshots"]["failed"] == 0, served.log()[-3000:]
        # idle peers are reaped by the handshake deadline, and counted
        reaped = served.stats(
            lambda s: (
                s["security"]["connections"]["ingest"]["disconnected"] >= 100
                and s["security"]["refused"]["no_detail"] >= 100
            ),
            "the idle connections to be reaped",
        )
        assert reaped["journal"]["snapshots"]["failed"] == 0, served.log()[-3000:]
        stop.set()
        feeder.join(timeout=30)
        for c in conns:
            c.close()
        conns = []
        assert served.terminate() == 0
        log = served.log()
        assert "accepting a connection failed: EMFILE" in log
        assert "more like it since the last report" in log or log.count("EMFILE") < 20
    finally:
        for c in conns:
            c.close()
        served.close()


def _quote_frame(stream: int, seq: int, count: int, n_symbols: int) -> bytes:
    quotes = np.zeros(count, s.QUOTE)
    quotes["symbol"] = np.arange(count) % n_symbols
    quotes["ts_ns"] = 1_000 + seq + np.arange(count)
    quotes["bid_price"] = 99 * s.PRICE_SCALE
    quotes["bid_size"] = s.SIZE_SCALE
    quotes["ask_price"] = 101 * s.PRICE_SCALE
    quotes["ask_size"] = s.SIZE_SCALE
    return codec.encode_frame(s.KIND_QUOTE, stream, seq, quotes)


def worst_case_bytes(config) -> int:
    """docs/reliability.md, "Worst-case memory": what libzmq may hold for the engine."""
    ingest, publish = config.ingest, config.publish
    per_message = ingest.message_limit + 1024  # content block, msg_t, malloc header
    queued = ingest.max_connections * (ingest.effective_rcvhwm + 1) * per_message
    n_symbols = config.analytics.n_symbols
    sent = (
        publish.max_subscribers
        * publish.effective_sndhwm(n_symbols)
        * publish.message_cost(n_symbols)
    )
    buffers = (ingest.max_connections + publish.max_subscribers) * (64 << 10)
    return queued + sent + buffers


def _stalled_subscribers_and_a_backlog(served, config, frame, per_publisher) -> int:
    """Fill every subscriber slot with stalled subscribers, then let every allowed
    publisher send ``frame(publisher, i)`` for ``i < per_publisher`` as fast as it can;
    return how much the engine's peak RSS grew over its size after the first frame."""
    served.stats(lambda s: "security" in s, "the engine")
    # the baseline: the engine after start-up, one frame of each size processed
    warm = served.publisher()
    warm.send(frame(0, 0))
    served.stats(lambda s: s["frames_received"] >= 1, "the first frame")
    baseline = served.status("VmRSS")
    # stalled subscribers: they subscribe to everything and never read
    stalled = []
    for _ in range(config.publish.max_subscribers - 1):  # with the stats reader: the cap
        sub = served.context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 1)
        sub.setsockopt(zmq.RCVBUF, 4096)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(served.publish)
        stalled.append(sub)
    served.stats(
        lambda s: (
            s["security"]["connections"]["publish"]["handshakes"] >= config.publish.max_subscribers
        ),
        "the subscribers",
    )
    warm.close()
    pubs = [served.publisher(sndhwm=0) for _ in range(config.ingest.max_connections - 1)]
    frames = [[frame(1 + p, i) for i in range(per_publisher)] for p in range(len(pubs))]
    for i in range(per_publisher):
        for pub, mine in zip(pubs, frames, strict=True):
            pub.send(mine[i], copy=False)
    total = 1 + per_publisher * len(pubs)
    final = served.stats(lambda s: s["frames_received"] >= total, "the backlog to drain")
    growth = served.status("VmHWM") - baseline
    assert final["frames_accepted"] == total
    for sock in stalled + pubs:
        sock.close()
    return growth


def _peak_memory_within_the_bound(tmp_path, values, frame, per_publisher) -> None:
    """Serve ``values``, run the attack of :func:`_stalled_subscribers_and_a_backlog` and
    check the engine's peak RSS growth against :func:`worst_case_bytes`."""
    config = load_config(None, values)
    bound = worst_case_bytes(config)
    served = Served(tmp_path, values)
    try:
        growth = _stalled_subscribers_and_a_backlog(served, config, frame, per_publisher)
        assert growth <= bound, (
            f"peak RSS grew by {growth / 2**20:.1f} MiB, the bound is {bound / 2**20:.1f} MiB"
        )
        assert served.terminate() == 0
    finally:
        served.close()


# the budgets both worst-case attacks run under (with their own frame sizes and backlog)
BUDGETS = {
    **SMALL,
    "analytics.n_symbols": 256,
    "ingest.max_connections": 4,
    "publish.subscriber_queue_bytes": 2 << 20,
    "publish.max_subscribers": 8,
}


def test_peak_memory_stays_within_the_documented_worst_case(tmp_path):
    values = {
        **BUDGETS,
        "ingest.max_frame_bytes": 1 << 20,
        "ingest.backlog_bytes": 24 << 20,  # 22 frames of 1 MiB per publisher
    }
    count = ((1 << 20) - s.HEADER_SIZE) // s.QUOTE_SIZE  # legal 1 MiB frames

    def frame(stream: int, i: int) -> bytes:
        return _quote_frame(stream, i * count, count, 256)

    _peak_memory_within_the_bound(tmp_path, values, frame, 120)


def test_batched_topics_stay_within_the_documented_worst_case(tmp_path):
    """A batched message holds a frame's results for every symbol it touched: 256 quote
    results (20.5 KiB) from a 12 KiB frame here.  SNDHWM counts messages, so it must be
    derived from a whole batch's cost, not one result's (which let 4,297 batches, 88 MiB,
    wait for a stalled subscriber under a 2 MiB budget)."""
    values = {
        **BUDGETS,
        "ingest.max_frame_bytes": 64 << 10,
        "ingest.backlog_bytes": 2 << 20,
        "publish.mode": "batch",
    }

    def frame(stream: int, i: int) -> bytes:
        return _quote_frame(stream, i * 256, 256, 256)  # one quote of every symbol

    _peak_memory_within_the_bound(tmp_path, values, frame, 2000)


def test_duplicate_frames_cost_the_journal_a_marker_each_and_recover_exactly(tmp_path):
    values = {
        **SMALL,
        "ingest.max_frame_bytes": 1 << 20,
        "ingest.endpoints": ["tcp://127.0.0.1:*"],
        "publish.endpoint": "tcp://127.0.0.1:*",
        "journal.dir": str(tmp_path / "journal"),
        "journal.snapshot_interval_s": 0.0,
        "journal.snapshot_on_close": False,
    }
    config = load_config(None, values)
    context = zmq.Context()
    journal = JournalExtension(config.journal)
    engine = Engine(config, context, extensions=[journal])
    engine.start()
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    pub = context.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 0)
    try:
        pub.connect(engine.receiver.endpoints[0])
        wait_for(lambda: pub.poll(50), "the engine's subscription")
        pub.recv()
        count = ((1 << 20) - s.HEADER_SIZE) // s.QUOTE_SIZE
        frame = _quote_frame(1, 1000, count, 16)  # not 0: a frame at 0 is a restart
        pub.send(frame)
        wait_for(lambda: engine.stats()["frames_accepted"] == 1, "the frame")
        size = journal.writer.stats()["bytes"]
        for _ in range(100):
            pub.send(frame)  # a re-sent stream: 100 MiB of duplicates
        pub.send(_quote_frame(1, 1000 + count, 2, 16))  # and one new frame after them
        wait_for(lambda: engine.stats()["frames_received"] == 102, "the duplicates")
        live = engine.stats()
        assert live["rejected"]["duplicate"] == 100
    finally:
        engine.stop()
        thread.join(timeout=30)
        engine.close()
        pub.close()
        context.term()
    grown = live["journal"]["bytes"] - size
    assert grown < 100 * 128 + (1 << 10), grown  # a marker each, plus the small frame
    assert live["journal"]["rejected_frames_shrunk"] == 100
    recovered = StreamProcessor(config)
    recovered.warm_up()
    report = recover(recovered, config.journal.dir, open_journal(config.journal.dir))
    assert report.replayed_entries == 102 and report.replayed_rejects == 100
    again = recovered.stats(0)
    for key in ("frames_received", "frames_accepted", "records_received", "bytes_received"):
        if key in live:
            assert again[key] == live[key], key
    assert again["rejected"] == live["rejected"]


def test_oversize_messages_and_extra_subscribers_are_refused_and_counted(tmp_path):
    values = {
        **SMALL,
        "ingest.endpoints": ["tcp://127.0.0.1:*"],
        "publish.endpoint": "tcp://127.0.0.1:*",
        "publish.stats_interval_s": 0.1,
        "publish.max_subscribers": 2,
        "publish.max_message_bytes": 64,  # without CURVE: every topic's subscription fits
    }
    config = load_config(None, values)
    context = zmq.Context()
    engine = Engine(config, context, extensions=[SecurityExtension(config.security)])
    engine.start()
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    sockets = []

    def connections(role: str) -> dict:
        return engine.stats()["security"]["connections"][role]

    try:
        subs = []
        for n in range(1, 4):
            sub = context.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.SUBSCRIBE, b"stats")
            sub.connect(engine.publisher.endpoint)
            sockets.append(sub)
            subs.append(sub)
            if n < 3:  # one at a time: the third is the one over the cap
                wait_for(lambda n=n: connections("publish")["handshakes"] >= n, "a subscriber")
        wait_for(lambda: engine.stats()["security"]["refused"]["connection_cap"] >= 1, "the cap")
        for sub in subs[:2]:
            wait_for(lambda sub=sub: sub.poll(50), "stats on an admitted subscriber")
        assert not subs[2].poll(500)
        assert connections("publish")["open"] <= 2
        # a message over ZMQ_MAXMSGSIZE: libzmq drops its sender before buffering it
        big = context.socket(zmq.XPUB)
        big.setsockopt(zmq.LINGER, 0)
        sockets.append(big)
        big.connect(engine.receiver.endpoints[0])
        wait_for(lambda: big.poll(50), "the engine's subscription")
        big.recv()
        before = connections("ingest")["disconnected"]
        big.send(bytes(config.ingest.message_limit + 1))
        wait_for(lambda: connections("ingest")["disconnected"] > before, "the disconnection")
        assert engine.stats()["frames_received"] == 0  # never reached the engine
        # a subscription longer than publish.max_message_bytes drops its subscriber before
        # libzmq adds it to its subscription trie
        for sub in (subs[2], subs[0]):  # the refused one would retry and take the slot
            sub.close(linger=0)
        wait_for(lambda: connections("publish")["open"] <= 1, "a free subscriber slot")
        before = connections("publish")
        long = context.socket(zmq.SUB)
        long.setsockopt(zmq.LINGER, 0)
        long.setsockopt(zmq.SUBSCRIBE, b"quote." + b"7" * 100)
        long.connect(engine.publisher.endpoint)
        sockets.append(long)
        wait_for(
            lambda: (
                (now := connections("publish"))["handshakes"] > before["handshakes"]
                and now["disconnected"] > before["disconnected"]
                and now["open"] <= 1
            ),
            "the long subscription's disconnection",
            timeout=60,  # it happens at the handshake; under a 1 KiB limit it stays connected
        )
        assert subs[1].poll(DEADLINE_S * 1000), "stats stopped for the admitted subscriber"
    finally:
        engine.stop()
        thread.join(timeout=30)
        for sock in sockets:
            sock.close(linger=0)
        engine.close()
        context.term()


_FROZEN_PEER = """
import sys, time, zmq
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"stats")
sub.connect(sys.argv[1])
sub.recv_multipart()  # connected and handshaken: now it stops (SIGSTOP) and answers nothing
print("joined", flush=True)
time.sleep(600)
"""


def test_heartbeats_close_a_peer_that_stopped_answering(tmp_path):
    values = {
        **SMALL,
        "ingest.endpoints": ["tcp://127.0.0.1:*"],
        "publish.endpoint": "tcp://127.0.0.1:*",
        "publish.stats_interval_s": 0.1,
        "connections.heartbeat_ivl_s": 0.2,
        "connections.heartbeat_timeout_s": 1.0,
    }
    config = load_config(None, values)
    context = zmq.Context()
    engine = Engine(config, context, extensions=[SecurityExtension(config.security)])
    engine.start()
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    peer = subprocess.Popen(
        [sys.executable, "-c", _FROZEN_PEER, engine.publisher.endpoint],
        stdout=subprocess.PIPE,
        text=True,
    )

    def publish() -> dict:
        return engine.stats()["security"]["connections"]["publish"]

    try:
        assert peer.stdout.readline().strip() == "joined"
        wait_for(lambda: publish()["open"] == 1, "the peer's connection")
        peer.send_signal(signal.SIGSTOP)  # the process (its libzmq I/O thread too) freezes
        wait_for(lambda: publish()["open"] == 0, "the heartbeat timeout to close it")
        assert publish()["disconnected"] == 1
    finally:
        peer.kill()
        peer.wait(timeout=30)
        peer.stdout.close()
        engine.stop()
        thread.join(timeout=30)
        engine.close()
        context.term()


def _journal_frames(tmp_path, n_dups):
    """A writer fed like the engine does it: one frame, then ``n_dups`` duplicates of it."""
    from tickpath.engine.journal.config import JournalConfig
    from tickpath.engine.journal.writer import JournalWriter
    from tickpath.kernels.cpu.streaming_view import counter_index

    config = load_config(None, dict(SMALL))
    proc = StreamProcessor(config)
    proc.warm_up()
    state = proc.state
    writer = JournalWriter(
        tmp_path,
        JournalConfig(dir=str(tmp_path), sync="os"),
        max_streams=state.streams.shape[0],
        max_records=state.touched_list.shape[1],
        counters=state.counters,
        accepted_counter=counter_index("frames_accepted"),
    )
    frame = _quote_frame(1, 7, 500, 16)
    view = memoryview(proc.buffer)
    for _ in range(1 + n_dups):
        proc.buffer[: len(frame)] = np.frombuffer(frame, np.uint8)
        writer.append_frame(view[: len(frame)])
        proc.process(len(frame), 0)
    return proc, writer, frame


def test_a_refused_frame_becomes_a_marker_and_a_crash_mid_rewrite_leaves_a_torn_tail(tmp_path):
    from tickpath.engine.journal import format as fmt

    proc, writer, frame = _journal_frames(tmp_path, 1)
    writer.settle()
    stats = writer.stats()
    assert stats["frames"] == 1 and stats["rejects"] == 1 and stats["rejected_frames_shrunk"] == 1
    writer.close()
    (segment,) = sorted(tmp_path.glob("*.journal"))
    whole = fmt.SEGMENT_HEADER_SIZE + fmt.ENTRY_SIZE + len(frame)
    marker = fmt.ENTRY_SIZE + fmt.REJECT_PREFIX.size + s.HEADER_V2_SIZE  # a whole v2 header
    assert segment.stat().st_size == whole + marker
    replayed = StreamProcessor(proc.config)
    replayed.warm_up()
    report = recover(replayed, tmp_path, open_journal(tmp_path))
    assert report.replayed_frames == 1 and report.replayed_rejects == 1
    assert replayed.stats(0)["rejected"] == proc.stats(0)["rejected"]
    # the crash window: the marker written over the frame's entry, the file not yet cut
    # (the rest of the duplicate's entry, header + frame, follows the marker)
    segment.write_bytes(segment.read_bytes() + frame[marker - fmt.ENTRY_SIZE :])
    opened = open_journal(tmp_path)  # cuts the rest of the old entry as a torn tail
    assert opened.next_index == 2 and opened.repairs
    again = StreamProcessor(proc.config)
    again.warm_up()
    recover(again, tmp_path, opened)
    assert again.stats(0)["rejected"] == proc.stats(0)["rejected"]


def test_budget_fields_are_validated_and_derive_the_high_water_marks():
    config = load_config(
        None, {"ingest.backlog_bytes": 10 << 20, "ingest.max_frame_bytes": 1 << 20}
    )
    assert config.ingest.message_limit == (1 << 20) + (64 << 10)
    assert config.ingest.effective_rcvhwm == (10 << 20) // ((1 << 20) + (64 << 10))
    assert load_config(None, {"ingest.rcvhwm": 3}).ingest.effective_rcvhwm == 3
    publish = load_config(None, {"publish.subscriber_queue_bytes": 1 << 20}).publish
    assert publish.effective_sndhwm(1024) == (1 << 20) // RESULT_MESSAGE_COST
    # batched topics: a message holds a whole batch, so the same bytes hold fewer messages
    batched = load_config(
        None, {"publish.subscriber_queue_bytes": 1 << 20, "publish.mode": "batch"}
    ).publish
    # (docs/reliability.md: C = 224 + max(min(n_symbols, B) x 232, B x 72), B = 1024)
    assert batched.message_cost(1024) == 224 + 1024 * 232  # a book record per symbol
    assert batched.message_cost(8) == 224 + 1024 * 72  # few symbols: up to B bars
    assert batched.effective_sndhwm(1024) == (1 << 20) // (224 + 1024 * 232)
    # a byte budget beyond a C int's count of messages is clamped, not an overflow
    unbounded = {"publish.subscriber_queue_bytes": 1 << 50, "publish.sndhwm": 0}
    assert load_config(None, unbounded).publish.effective_sndhwm(1) == (1 << 31) - 1
    for key, value in (
        ("ingest.max_message_bytes", 1000),  # below max_frame_bytes
        ("ingest.backlog_bytes", 1000),  # not one message
        ("publish.subscriber_queue_bytes", 10),
        ("publish.max_subscribers", 0),
        ("publish.batch_max_records", 0),
        ("publish.sndhwm", 1 << 31),  # a C int in libzmq
        ("ingest.rcvhwm", 1 << 31),
        ("connections.heartbeat_timeout_s", 0),
    ):
        with pytest.raises(ConfigError) as err:
            load_config(None, {key: value})
        assert key.split(".")[1] in str(err.value) and "\n" not in str(err.value)
