"""Sharded, redundant replicas end to end (issue 17): Mesos places 4 shards x 2 replicas
(real ``tickpath serve`` processes on stand-in agents), the sharding publisher feeds them a
seeded stream over 64 symbols, and two subscribers read them all: the library
``Subscriber(discovery=...)`` and ``tickpath watch --discovery``, both first-copy-wins.

Mid-stream one replica of shard 1 is SIGKILLed; Mesos relaunches it, and it starts from
its twin's state (``--state-from``, filled in by the scheduler).  Then the *twin* is
SIGKILLed: from there on the relaunched replica alone computes shard 1, so the results
stay equal to the single engine's only if it took over the whole state (a replica that
started empty computes other EMAs, VWAPs, bars, books and result sequences:
``tests/cluster/test_state_transfer.py`` shows that this comparison catches it).

What the subscribers get must equal, result by result, what one unsharded engine
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
from standin_master import AgentSpec, wait_for

from tests.cluster.scheduler import fast_config
from tickpath.client import Subscriber
from tickpath.engine.cluster.discovery import read_discovery
from tickpath.engine.config import load_config
from tickpath.engine.feed.sharding import ShardingPublisher
from tickpath.engine.feed.synthetic import SyntheticMarket
from tickpath.engine.service.engine import StreamProcessor
from tickpath.engine.wire import codec

SYMBOLS = 64
SHARDS = 4
REPLICAS = 2 * SHARDS
SERVE = (
    f"exec {sys.executable} -m tickpath serve --ingest tcp://127.0.0.1:{{ingest_port}} "
    f"--publish tcp://127.0.0.1:{{publish_port}} --symbols-shard {{shard}}/{{shards}} "
    f"--symbols {SYMBOLS} --state-endpoint tcp://127.0.0.1:{{state_port}} {{state_from}}"
)
# provenance and timing: they differ between a sharded and a single engine by design
NOT_COMPARED = {"in_seq", "in_send_ns", "recv_ns", "done_ns", "in_stream"}
TOPICS = ("stats", "quote.", "trade.", "bar.", "book.")

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


def batches(n_batches: int, batch: int = 32) -> list[tuple[int, np.ndarray]]:
    market = SyntheticMarket(SYMBOLS, seed=7)
    return [market.next_batch(batch) for _ in range(n_batches)]


def single_engine_results(plan) -> dict[str, list[tuple[int, np.ndarray]]]:
    """topic -> [(result seq, records)] from one unsharded engine fed the same records."""
    proc = StreamProcessor(load_config(None, {"analytics.n_symbols": SYMBOLS}))
    out: dict[str, list] = {}
    seq = 0
    for kind, records in plan:
        proc.feed(codec.encode_frame(kind, 1, seq, records), recv_ns=time.time_ns())
        seq += len(records)
        for analytic, frame in proc.results():
            header, recs = codec.decode_frame(frame.tobytes())
            topic = f"{analytic}.{int(recs[0]['symbol'])}"
            out.setdefault(topic, []).append((int(header["seq"]), recs.copy()))
    return out


class Collector(threading.Thread):
    """The library subscriber over discovery, drained on a thread."""

    def __init__(self, discovery: str) -> None:
        super().__init__(daemon=True)
        self.sub = Subscriber(topics=TOPICS, discovery=discovery, refresh_s=0.2)
        self.results: dict[str, list[np.ndarray]] = {}
        self.stats: dict[str, dict] = {}  # publish endpoint -> its last stats
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            result = self.sub.recv(timeout_s=0.1)
            if result is None:
                continue
            if result.stats is not None:
                self.stats[self.sub.last_endpoint] = result.stats
            else:
                self.results.setdefault(result.topic, []).append(result.records.copy())

    def count(self) -> int:
        return sum(len(v) for v in list(self.results.values()))

    def close(self) -> None:
        self.stop.set()
        self.join(timeout=30)
        self.sub.close()


def _loaded(stats: dict | None) -> bool:
    return bool(stats) and stats.get("state_transfer", {}).get("outcome") == "loaded"


def _from(stats: dict, replica: dict) -> bool:
    """A stats message of ``replica`` (a discovery entry): its state endpoint says so."""
    return stats.get("state_transfer", {}).get("endpoint") == replica["state"]


def test_replicas_die_one_after_the_other_and_subscribers_miss_nothing(standin, runner):
    pytest.importorskip("pymesos")
    master = standin([AgentSpec(f"h{i}") for i in range(REPLICAS + 2)])
    cfg = fast_config(
        replicas=REPLICAS, shards=SHARDS, command=SERVE, backoff_initial=0.5, backoff_max=2.0,
        kill_grace_period=5.0,
    )  # fmt: skip
    r = runner(cfg, master)
    wait_for(lambda: len(r.status().get("endpoints", [])) == REPLICAS, 300, "8 replicas")
    discovery = str(r.discovery.path)

    def listed() -> dict[str, dict]:
        """publish endpoint -> discovery entry, of every replica listed now."""
        return {e["publish"]: e for e in read_discovery(discovery)["endpoints"]}

    collector = Collector(discovery)
    collector.start()
    topics = [arg for t in TOPICS for arg in ("--topic", t)]
    watcher = subprocess.Popen(
        [sys.executable, "-m", "tickpath", "watch", "--discovery", discovery, "--json", *topics],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[dict] = []
    reader = threading.Thread(
        target=lambda: lines.extend(json.loads(line) for line in watcher.stdout), daemon=True
    )
    reader.start()
    plan = batches(800)
    relaunched: dict = {}

    def seen() -> str:
        """What the cluster and the subscribers show now (a wait that timed out says it)."""
        return (
            f"listed {sorted(listed())}; stats from {sorted(collector.stats)}; "
            f"{collector.count()} results, {len(lines)} watch lines; "
            f"scheduler {r.status().get('counters')}"
        )

    def relaunch_listed() -> bool:
        for item in listed().values():
            if item["slot"] == 1 and item["task_id"] != victim["task_id"]:
                relaunched.update(item)
                return True
        return False

    try:
        # every replica listed has loaded its kernels and published stats: subscriptions
        # are up (one relaunched meanwhile may leave its old endpoint among the stats)
        wait_for(
            lambda: len(now := listed()) == REPLICAS and set(now) <= set(collector.stats),
            300,
            "stats from every replica",
            explain=seen,
        )
        by_slot = {e["slot"]: e for e in listed().values()}
        victim, twin = by_slot[1], by_slot[1 + SHARDS]  # both serve shard 1
        assert victim["shard"] == twin["shard"] == 1 and twin["state"].startswith("tcp://")
        wait_for(lambda: sum(x["topic"] == "stats" for x in lines) >= 2 * REPLICAS, 120,
                 "stats reaching tickpath watch")  # fmt: skip
        with ShardingPublisher(discovery, stream_id=1, refresh_s=0.2) as pub:
            pub.wait_for_replicas(120, per_shard=2)
            for i, (kind, records) in enumerate(plan):
                if i == len(plan) // 4:
                    master.crash_task(victim["task_id"])  # SIGKILL, mid-stream
                elif i == len(plan) // 2:
                    # Mesos relaunched slot 1 with --state-from its twin; the feed goes on
                    # while the new replica loads the state (its frames queue meanwhile)
                    wait_for(relaunch_listed, 300, "slot 1 relaunched and running", seen)
                    pub.wait_for_replicas(120, per_shard=2)
                elif i == 3 * len(plan) // 4:
                    # both subscribers follow the relaunched replica, and it has the state
                    wait_for(lambda: _loaded(collector.stats.get(relaunched["publish"])), 300,
                             "the relaunched replica's stats, state loaded", seen)  # fmt: skip
                    wait_for(lambda: any(_loaded(x) and _from(x, relaunched) for x in lines),
                             120, "tickpath watch on the relaunched replica", seen)  # fmt: skip
                    master.crash_task(twin["task_id"])  # now it alone serves shard 1
                pub.send(kind, records)
                time.sleep(0.001)  # paced, so the kills land while frames are in flight
            report = pub.report()
        # shard 1 always had a replica listening: nothing was sent into the void
        assert all(sh["undelivered"] == 0 for sh in report["shards"]), report
        expected = single_engine_results(plan)
        total = sum(len(v) for v in expected.values())
        wait_for(lambda: collector.count() >= total, 300, f"{total} results", seen)
        wait_for(lambda: sum(x["topic"] != "stats" for x in lines) >= total, 120,
                 f"{total} results in tickpath watch", seen)  # fmt: skip
    finally:
        collector.close()
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=60)
    state = collector.stats[relaunched["publish"]]["state_transfer"]
    assert state["source"] == twin["state"] and state["empty_starts"] == 0
    shown = [(x["topic"], x["seq"]) for x in lines if x["topic"] != "stats"]
    assert len(shown) == len(set(shown)) == total  # each result once: second copies dropped
    assert "second copies dropped" in err
    # the result sequence numbers run on across both kills: the relaunched replica
    # continued its twin's numbering
    watch_seqs: dict[str, list[int]] = {}
    for topic, seq in shown:
        watch_seqs.setdefault(topic, []).append(seq)
    assert {t: sorted(v) for t, v in watch_seqs.items()} == {
        t: [seq for seq, _ in want] for t, want in expected.items()
    }
    assert set(collector.results) == set(expected)
    for topic, want in expected.items():
        got = collector.results[topic]
        assert len(got) == len(want), topic
        for g, (_, w) in zip(got, want, strict=True):
            for name in w.dtype.names:
                if name not in NOT_COMPARED:
                    np.testing.assert_array_equal(g[name], w[name], err_msg=f"{topic} {name}")
    # both replicas of a pair published; (``sub.lost`` is per connection: a replica
    # relaunched on its predecessor's address continues its twin's numbering, a jump there)
    assert collector.sub.duplicates > 0
