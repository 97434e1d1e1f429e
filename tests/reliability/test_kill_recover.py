"""SIGKILL ``tickpath serve`` mid-stream, restart it on its journal: nothing lost, same state.

The feeder resumes where the restarted engine says it is (its ``stats``
count every frame it has applied, replayed ones included), as a publisher
that re-sends from the engine's position would.  The final state, from the
snapshot the second engine writes at its clean shutdown, is compared array by
array with an engine that processed the same messages without ever stopping.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import zmq

from tests.reliability.helpers import (
    SMALL,
    accounting_holds,
    drive,
    market_frames,
    processor,
    small_config,
    with_bad_input,
)
from tests.serving import ANY_PORT, bound_endpoints
from tests.waiting import DEADLINE_S, wait_until
from tickpath.engine.journal.snapshot import differing_arrays, list_snapshots, load_snapshot

ROOT = Path(__file__).resolve().parents[2]


def _write_config(path, ingest, publish, journal):
    sections: dict[str, dict] = {}
    for dotted, value in SMALL.items():
        section, key = dotted.split(".")
        sections.setdefault(section, {})[key] = value
    sections["ingest"]["endpoints"] = [ingest]
    sections["publish"] = {"endpoint": publish, "stats_interval_s": 0.1}
    sections["journal"] = {
        "dir": str(journal),
        "sync": "interval",
        "sync_interval_ms": 20,
        "snapshot_interval_s": 0.3,
    }
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {value!r}".replace("'", '"'))
    path.write_text("\n".join(lines) + "\n")


def _serve(config_path, log_path):
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process below
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickpath", "serve", "--config", str(config_path)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    proc.log_file = log
    return proc


class Feeder:
    """An XPUB into the engine's ingest: waits for the engine's subscription, sends items."""

    def __init__(self, context, endpoint, max_frame_bytes):
        self.pub = context.socket(zmq.XPUB)
        self.pub.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.pub.setsockopt(zmq.SNDHWM, 0)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.connect(endpoint)
        self.oversize = bytes(max_frame_bytes + 8)

    def wait_subscribed(self, timeout=DEADLINE_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pub.poll(100) and self.pub.recv()[:1] == b"\x01":
                return
        raise AssertionError("the engine never subscribed")

    def send(self, item):
        if item == -2:
            self.pub.send_multipart([b"a", b"b"])
        elif isinstance(item, int):
            self.pub.send(self.oversize)
        else:
            self.pub.send(item)


def _stats_subscriber(context, endpoint):
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"stats")
    sub.connect(endpoint)
    return sub


def _stats(sub, timeout=DEADLINE_S, predicate=lambda s: True):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sub.poll(100):
            _topic, payload = sub.recv_multipart()
            stats = msgspec.json.decode(payload)
            if predicate(stats):
                return stats
    raise AssertionError(f"no stats from the engine that match within {timeout:g} s")


def test_sigkill_mid_stream_then_restart_loses_nothing_and_state_is_identical(tmp_path):
    items = with_bad_input(market_frames(3000, seed=9), seed=10, every=11)
    oversize = SMALL["ingest.max_frame_bytes"] + 8  # what the receiver reports for one
    items = [oversize if isinstance(i, int) and i > 0 else i for i in items]
    journal = tmp_path / "journal"
    config_path = tmp_path / "engine.toml"
    # ports the OS picks, anew for each engine: the clients connect to what it logged
    _write_config(config_path, ANY_PORT, ANY_PORT, journal)
    log_path = tmp_path / "serve.log"
    log_path.touch()
    context = zmq.Context()
    feeder = sub = None
    processes = []
    try:
        first = _serve(config_path, log_path)
        processes.append(first)
        bound = bound_endpoints(log_path, first)
        feeder = Feeder(context, bound["ingest"][0], SMALL["ingest.max_frame_bytes"])
        sub = _stats_subscriber(context, bound["publish"])
        feeder.wait_subscribed()
        sending = threading.Event()
        sending.set()
        killed = threading.Event()
        sent = {"n": 0}

        def feed():
            for i, item in enumerate(items):
                if i == len(items) - 100:
                    killed.wait(DEADLINE_S)  # the stream is never over before the kill
                if not sending.is_set():
                    return
                feeder.send(item)
                sent["n"] += 1
                time.sleep(0.0003)  # pacing, so that the kill lands mid-stream

        thread = threading.Thread(target=feed)
        thread.start()
        # kill -9 while frames are still arriving, after a snapshot or two
        _stats(
            sub,
            predicate=lambda s: (
                s["frames_received"] >= len(items) // 2 and list_snapshots(journal / "snapshots")
            ),
        )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=DEADLINE_S)
        killed.set()
        at_kill = sent["n"]
        # a few frames more go to the dead engine (lost with it, PUB/SUB), then the feed stops
        wait_until(lambda: sent["n"] >= at_kill + 20 or not thread.is_alive(), what="feeding")
        sending.clear()
        thread.join(timeout=DEADLINE_S)
        assert sent["n"] < len(items), "the stream was over before the kill"
        assert list_snapshots(journal / "snapshots"), "no snapshot before the kill"
        # What was sent to the dead engine is gone (PUB/SUB); the publisher starts
        # afresh and re-sends from the position the restarted engine reports.
        feeder.pub.close()
        sub.close()
        offset = log_path.stat().st_size
        second = _serve(config_path, log_path)
        processes.append(second)
        bound = bound_endpoints(log_path, second, after=offset)
        feeder = Feeder(context, bound["ingest"][0], SMALL["ingest.max_frame_bytes"])
        sub = _stats_subscriber(context, bound["publish"])
        feeder.wait_subscribed()
        stats = _stats(sub, predicate=lambda s: "journal" in s)
        resume = stats["frames_received"]  # every message the first engine took in
        recovery = stats["journal"]["recovery"]
        assert recovery["snapshot"] is not None and recovery["replayed_entries"] > 0
        assert 0 < resume <= sent["n"]
        for item in items[resume:]:
            feeder.send(item)
        final = _stats(sub, predicate=lambda s: s["frames_received"] >= len(items))
        assert final["frames_received"] == len(items)
        assert final["gaps"] == 0 and final["records_lost"] == 0  # zero records lost
        assert accounting_holds(final)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=DEADLINE_S) == 0
    finally:
        for proc in processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=DEADLINE_S)
            proc.log_file.close()
        if feeder is not None:
            feeder.pub.close()
        if sub is not None:
            sub.close()
        context.term()
    log = log_path.read_text()
    assert "recovered from snapshot" in log, log
    reference = processor(small_config())
    drive(reference, items)
    restored = processor(small_config())
    newest = list_snapshots(journal / "snapshots")[0]
    assert newest.journal_next_index == len(items)
    load_snapshot(newest.path, restored.state)
    assert differing_arrays(restored.state, reference.state) == []
