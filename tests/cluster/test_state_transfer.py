"""A replica started with ``--state-from`` takes its twin's state while the feed runs.

Two real engines in this process (one thread each), fed by the sharding publisher: the
second joins mid-stream, loads the first's state, and must end byte-identical to it
(every state array, the counters and the frame-number stamps derived from them aside: a
covered frame that reaches the kernels counts as a duplicate); one that starts empty must
not.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
import zmq

from tests.waiting import wait_until
from tickpath.engine.cluster.state_transfer import StateTransfer, StateUnavailable, fetch_state
from tickpath.engine.config import load_config
from tickpath.engine.feed.sharding import ShardingPublisher
from tickpath.engine.feed.synthetic import SyntheticMarket
from tickpath.engine.journal.snapshot import differing_arrays
from tickpath.engine.service.engine import Engine
from tickpath.kernels.cpu.streaming_view import StreamTable

SYMBOLS = 16
ANY = "tcp://127.0.0.1:*"

pytestmark = pytest.mark.timeout(600)


def _engine(transfer: StateTransfer) -> Engine:
    config = load_config(
        None,
        {
            "analytics.n_symbols": SYMBOLS,
            "ingest.endpoints": [ANY],
            "publish.endpoint": ANY,
            "publish.stats_interval_s": 0.05,
        },
    )
    engine = Engine(config, extensions=[transfer])
    engine.start()
    return engine


def _run(engine: Engine) -> threading.Thread:
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    return thread


def _discovery(path, engines: list[Engine]) -> None:
    endpoints = [{"shard": 0, "slot": i, "ingest": e.receiver.endpoints[0]} for i, e in
                 enumerate(engines)]  # fmt: skip
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"shards": 1, "endpoints": endpoints}))
    tmp.replace(path)


def _joined_mid_stream(
    tmp_path, source_of, timeout_s: float = 60.0
) -> tuple[Engine, Engine, StateTransfer, StateTransfer]:
    """Feed engine A; start B mid-stream (B's StateTransfer from ``source_of(A's)``)."""
    twin = StateTransfer(ANY)
    a = _engine(twin)
    threads = [_run(a)]
    discovery = tmp_path / "endpoints.json"
    _discovery(discovery, [a])
    market = SyntheticMarket(SYMBOLS, seed=11)
    plan = [market.next_batch(32) for _ in range(600)]
    third = threading.Event()
    listed = threading.Event()  # B is in the discovery document
    pub = ShardingPublisher(str(discovery), stream_id=1, refresh_s=0.02)
    pub.wait_for_replicas(120, per_shard=1)

    def feed() -> None:
        for i, (kind, records) in enumerate(plan):
            if i == len(plan) // 3:
                third.set()
                assert listed.wait(120)
                pub.wait_for_replicas(120, per_shard=2)  # B subscribed: the rest reaches it
            pub.send(kind, records)
            time.sleep(0.002)  # paced: the join lands mid-stream

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    b = None
    try:
        assert third.wait(120)
        transfer = StateTransfer(None, source_of(twin), timeout_s=timeout_s)
        b = _engine(transfer)
        _discovery(discovery, [a, b])
        listed.set()
        transfer.bootstrap(b)
        threads.append(_run(b))
        feeder.join(120)
        total = sum(len(records) for _, records in plan)
        for engine in (a, b):
            next_seqs = StreamTable(engine.processor.state.streams).next_seqs()  # a live view
            wait_until(lambda n=next_seqs: n[1] == total, 120,
                       f"both engines at sequence {total}")  # fmt: skip
        # the idle engine loops have published their last results: stop and compare
    finally:
        pub.close()
        for engine in (a, b):
            if engine is not None:
                engine.stop()
        for thread in threads:
            thread.join(30)
        for engine in (a, b):
            if engine is not None:
                engine.close()
    return a, b, transfer, twin


def test_a_replica_joining_mid_stream_takes_its_twins_state(tmp_path):
    a, b, transfer, twin = _joined_mid_stream(tmp_path, lambda twin: twin.endpoint)
    assert transfer.outcome == "loaded", transfer.stats()
    assert transfer.empty_starts == 0
    assert int(transfer.covered["1"]) > 0  # the twin had processed part of the stream
    # identical analytics, books, sequences and result numbering.  B skips the queued
    # frames the snapshot covers before its kernels; one that reached them anyway (late on
    # the wire) is counted as a duplicate, so the counters may differ, and with them
    # ``touched``, which stamps each symbol with the frame counter's value
    differing = differing_arrays(a.processor.state, b.processor.state)
    assert set(differing) <= {"counters", "touched"}, (differing, transfer.stats())
    stats = b.stats()
    assert stats["gaps"] == 0 and stats["records_lost"] == 0
    served = twin.stats()
    assert served["served"] == 1 and served["last_bytes"] > 0


def test_without_a_twin_it_starts_empty_and_says_so(tmp_path, caplog):
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.ROUTER)  # a peer that never answers
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    caplog.set_level(logging.WARNING, logger="tickpath.state")
    try:
        transfer = StateTransfer(None, f"tcp://127.0.0.1:{port}", timeout_s=1.0)
        engine = _engine(transfer)
        try:
            transfer.bootstrap(engine)
            assert transfer.outcome == "empty"
            assert engine.stats()["state_transfer"]["empty_starts"] == 1
        finally:
            engine.close()
    finally:
        sock.close(linger=0)
    assert any("starting empty" in r.getMessage() for r in caplog.records)


def test_an_engine_that_started_empty_differs(tmp_path):
    """The check above can fail: a replica joining mid-stream without the state differs."""
    silent = zmq.Context.instance().socket(zmq.ROUTER)
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    try:
        a, b, transfer, _ = _joined_mid_stream(
            tmp_path, lambda twin: f"tcp://127.0.0.1:{port}", timeout_s=2.0
        )
    finally:
        silent.close(linger=0)
    assert transfer.outcome == "empty"
    assert set(differing_arrays(a.processor.state, b.processor.state)) - {"counters", "touched"}


def test_a_malformed_request_is_refused_and_counted():
    transfer = StateTransfer(ANY)
    engine = _engine(transfer)
    thread = _run(engine)
    try:
        sock = zmq.Context.instance().socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(transfer.endpoint)
        sock.send(b"not json")
        assert sock.poll(60_000)
        assert json.loads(sock.recv())["ok"] is False
        sock.close()
        with pytest.raises(StateUnavailable, match="did not reach"):
            transfer.max_wait_s = 0.5
            fetch_state(transfer.endpoint, {5: 10**9}, 60)
        assert engine.stats()["state_transfer"]["refused"] == 2
    finally:
        engine.stop()
        thread.join(30)
        engine.close()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--state-from", "tcp://127.0.0.1:1", "--journal", "JOURNAL"], "exclude each other"),
        (["--state-from", "tcp://127.0.0.1:1", "--state-timeout", "0"], "must be > 0"),
    ],
)
def test_serve_refuses_conflicting_state_flags_in_one_line(tmp_path, flags, message):
    import subprocess
    import sys

    flags = [str(tmp_path / "journal") if f == "JOURNAL" else f for f in flags]
    proc = subprocess.run(
        [sys.executable, "-m", "tickpath", "serve", "--ingest", ANY, "--publish", ANY, *flags],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("tickpath serve: error: ") and message in proc.stderr
    assert "\n" not in proc.stderr.strip()
    assert not (tmp_path / "journal").exists()  # refused before anything started
