"""`tickpath feed` loses no frame at the join, and a replay sends the whole recording."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
import zmq

from tickpath.engine.feed.join import JoinTimeout
from tickpath.engine.feed.publisher import run_feed
from tickpath.engine.feed.recording import scan
from tickpath.engine.wire import codec

DEADLINE_S = 120.0


@pytest.fixture
def bound_sub():
    """A SUB bound like the engine's ingest: it subscribes a peer only while polled."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"tcp://127.0.0.1:{port}"
    sock.close()
    ctx.term()


def _receive_all(sock: zmq.Socket, n_records: int, until: threading.Event | None = None):
    """Receive until n_records records arrived (or the deadline); return (seqs, records)."""
    seqs, got = [], 0
    deadline = time.monotonic() + DEADLINE_S
    while got < n_records and time.monotonic() < deadline:
        if sock.poll(100):
            header, records = codec.decode_frame(sock.recv(), inputs_only=True)
            seqs.append(int(header["seq"]))
            got += len(records)
    return seqs, got


def test_feed_waits_for_a_late_engine_and_loses_no_first_frame(bound_sub, tmp_path):
    """The engine binds only after the feed connected and started: nothing is lost."""
    sock, endpoint = bound_sub
    path = tmp_path / "rec.tkp"
    run_feed(None, batch=1, duration=None, max_records=2_000, record=str(path))
    sock.unbind(endpoint)  # the port came from binding to port 0; the engine is not up yet
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(
            report=run_feed(endpoint, replay=str(path), speed=0, first_seq=100)
        ),
        daemon=True,
    )
    thread.start()
    # A late engine: a PUB that sent right away, or after a fixed sleep shorter than
    # this, sent its first frames to nobody, and ZeroMQ dropped them without a word.
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        assert thread.is_alive(), "the feed finished before the engine joined: all to nobody"
        time.sleep(0.05)
    sock.bind(endpoint)
    seqs, got = _receive_all(sock, 2_000)
    thread.join(DEADLINE_S)
    assert got == 2_000
    assert seqs == list(range(100, 2_100))
    assert result["report"].records == 2_000 and result["report"].join_s > 0.5


def test_feed_without_a_subscriber_says_so():
    ctx = zmq.Context()
    try:
        with pytest.raises(JoinTimeout, match="no subscriber joined within 0.3 s: engine at"):
            run_feed("tcp://127.0.0.1:1", join_timeout=0.3, linger_ms=0, context=ctx)
    finally:
        ctx.term()


def test_replay_sends_the_whole_recording_by_default(tmp_path, bound_sub):
    """A recording whose replay takes longer than the synthetic default of 10 s is sent whole."""
    sock, endpoint = bound_sub
    path = tmp_path / "slow.tkp"
    run_feed(None, symbols=2, rate=200, batch=4, duration=11, seed=3, record=str(path))
    total = sum(scan(path).records_by_kind.values())
    assert total == 2_200
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickpath", "feed", "--endpoint", endpoint, "--replay",
         str(path), "--speed", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, got = _receive_all(sock, total)
        out, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert got == total
    assert f"{total} records of {total} in the recording (100.0%)" in out
    assert f"{total}/{total}" in err  # the progress bar's last state


def test_replay_duration_still_cuts_when_given(tmp_path):
    path = tmp_path / "rec.tkp"
    run_feed(None, symbols=2, rate=1_000, batch=10, duration=2, seed=3, record=str(path))
    calls: list[tuple[int, int]] = []
    report = run_feed(
        "tcp://127.0.0.1:1",
        replay=str(path),
        speed=1.0,
        duration=0.3,
        join_timeout=0,
        linger_ms=0,
        progress=lambda sent, total: calls.append((sent, total)),
    )
    assert report.recording_records == 2_000
    assert 0 < report.records < 2_000
    assert calls[-1] == (report.records, 2_000)
