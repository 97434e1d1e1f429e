"""Sharded, redundant replicas end to end: Mesos places 2 replicas per shard (real
``tickpath serve`` processes on stand-in agents), the sharding publisher feeds them, a
first-copy-wins subscriber reads them all; one replica is SIGKILLed mid-stream.

What the subscriber gets must equal, result by result, what one unsharded engine
computes from the same records (the timing and provenance fields aside: the sharded
streams number their records per shard).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zmq
from standin_master import AgentSpec, wait_for

from tests.cluster.scheduler import fast_config
from tickpath.engine.cluster.discovery import read_discovery
from tickpath.engine.config import load_config
from tickpath.engine.feed.sharding import ShardingPublisher
from tickpath.engine.feed.synthetic import SyntheticMarket
from tickpath.engine.service.dedup import ResultDeduplicator
from tickpath.engine.service.engine import StreamProcessor
from tickpath.engine.wire import codec

SYMBOLS = 16
SHARDS = 2
SERVE = (
    f"exec {sys.executable} -m tickpath serve --ingest tcp://127.0.0.1:{{ingest_port}} "
    f"--publish tcp://127.0.0.1:{{publish_port}} --symbols-shard {{shard}}/{{shards}} "
    f"--symbols {SYMBOLS}"
)
# provenance and timing: they differ between a sharded and a single engine by design
NOT_COMPARED = {"in_seq", "in_send_ns", "recv_ns", "done_ns", "in_stream"}

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]


def batches(n_batches: int, batch: int = 32) -> list[tuple[int, np.ndarray]]:
    market = SyntheticMarket(SYMBOLS, seed=7)
    return [market.next_batch(batch) for _ in range(n_batches)]


def single_engine_results(plan) -> dict[bytes, list[tuple[int, np.ndarray]]]:
    """topic -> [(result seq, records)] from one unsharded engine fed the same records."""
    proc = StreamProcessor(load_config(None, {"analytics.n_symbols": SYMBOLS}))
    out: dict[bytes, list] = {}
    seq = 0
    for kind, records in plan:
        proc.feed(codec.encode_frame(kind, 1, seq, records), recv_ns=time.time_ns())
        seq += len(records)
        for analytic, frame in proc.results():
            header, recs = codec.decode_frame(frame.tobytes())
            topic = f"{analytic}.{int(recs[0]['symbol'])}".encode()
            out.setdefault(topic, []).append((int(header["seq"]), recs.copy()))
    return out


class Collector(threading.Thread):
    """One SUB per replica publish endpoint; the first copy of each result is kept."""

    def __init__(self, endpoints: list[str]) -> None:
        super().__init__(daemon=True)
        self.ctx = zmq.Context()
        self.socks = []
        for endpoint in endpoints:
            sub = self.ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.setsockopt(zmq.LINGER, 0)
            sub.connect(endpoint)
            self.socks.append(sub)
        self.dedup = ResultDeduplicator()
        self.results: dict[bytes, list] = {}
        self.stats_seen: set[int] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        poller = zmq.Poller()
        for sub in self.socks:
            poller.register(sub, zmq.POLLIN)
        while not self.stop.is_set():
            for sub, _ in poller.poll(100):
                topic, payload = sub.recv_multipart()
                if topic == b"stats":
                    self.stats_seen.add(self.socks.index(sub))
                    continue
                if self.dedup.first_copy(topic, payload):
                    header, recs = codec.decode_frame(payload)
                    self.results.setdefault(topic, []).append((int(header["seq"]), recs.copy()))

    def close(self) -> None:
        self.stop.set()
        self.join(timeout=30)
        for sub in self.socks:
            sub.close()
        self.ctx.term()


def test_one_replica_of_a_pair_dies_and_subscribers_miss_nothing(standin, runner):
    pytest.importorskip("pymesos")
    master = standin([AgentSpec(f"h{i}") for i in range(2 * SHARDS)])
    # no relaunch within the test: a relaunched replica starts empty (docs/mesos.md)
    cfg = fast_config(
        replicas=2 * SHARDS, shards=SHARDS, command=SERVE, backoff_initial=3600.0,
        backoff_max=3600.0, kill_grace_period=5.0,
    )  # fmt: skip
    r = runner(cfg, master)
    wait_for(lambda: len(r.status().get("endpoints", [])) == 2 * SHARDS, 120, "4 replicas")
    discovery = str(r.discovery.path)
    endpoints = read_discovery(discovery)["endpoints"]
    collector = Collector([e["publish"] for e in endpoints])
    collector.start()
    # and `tickpath watch --discovery`, as a user would follow the cluster
    watcher = subprocess.Popen(
        [sys.executable, "-m", "tickpath", "watch", "--discovery", discovery, "--json",
         "--topic", "stats", "--topic", "quote.", "--topic", "trade.", "--topic", "bar.",
         "--topic", "book."],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[dict] = []
    reader = threading.Thread(
        target=lambda: lines.extend(json.loads(line) for line in watcher.stdout), daemon=True
    )
    reader.start()
    plan = batches(400)
    try:
        # every replica has compiled its kernels and published stats: subscriptions are up
        wait_for(lambda: len(collector.stats_seen) == 2 * SHARDS, 300, "stats from every replica")
        wait_for(lambda: sum(x["topic"] == "stats" for x in lines) >= 4 * SHARDS, 120,
                 "stats reaching tickpath watch")  # fmt: skip
        with ShardingPublisher(discovery, stream_id=1) as pub:
            pub.wait_for_replicas(120, per_shard=2)
            victim = next(e for e in endpoints if e["shard"] == 1)
            for i, (kind, records) in enumerate(plan):
                if i == len(plan) // 2:
                    master.crash_task(victim["task_id"])  # SIGKILL, mid-stream
                pub.send(kind, records)
                time.sleep(0.001)  # paced, so the kill lands while frames are in flight
            report = pub.report()
        assert all(sh["undelivered"] == 0 for sh in report["shards"])  # the twin listened
        wait_for(lambda: victim["task_id"] not in {t.task_id for t in master.live_tasks()}, 60,
                 "the killed replica seen dead by its agent")  # fmt: skip
        assert len(master.live_tasks()) == 2 * SHARDS - 1
        expected = single_engine_results(plan)
        total = sum(len(v) for v in expected.values())

        def complete() -> bool:
            return sum(len(v) for v in collector.results.values()) >= total

        wait_for(complete, 120, f"{total} results")
        wait_for(lambda: sum(x["topic"] != "stats" for x in lines) >= total, 120,
                 f"{total} results in tickpath watch")  # fmt: skip
    finally:
        collector.close()
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=60)
    shown = [(x["topic"], x["seq"]) for x in lines if x["topic"] != "stats"]
    assert len(shown) == len(set(shown)) == total  # each result once: second copies dropped
    assert "second copies dropped" in err
    assert set(collector.results) == set(expected)
    for topic, want in expected.items():
        got = collector.results[topic]
        assert [seq for seq, _ in got] == [seq for seq, _ in want], topic
        for (_, g), (_, w) in zip(got, want):
            for name in w.dtype.names:
                if name not in NOT_COMPARED:
                    np.testing.assert_array_equal(g[name], w[name], err_msg=f"{topic} {name}")
    assert collector.dedup.duplicates > 0  # both replicas of a pair did publish
