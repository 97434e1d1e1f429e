"""tickpath.client against a sharded, redundant set of real engines (2 shards x 2 replicas,
in this process): ``Publisher(discovery=...)`` shards the records, ``Subscriber(discovery=...)``
delivers each result once, equal to what one engine computes, and joins a replica that
discovery lists later."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import zmq

from tickpath.client import Publisher, Subscriber
from tickpath.engine.config import load_config
from tickpath.engine.feed.synthetic import SyntheticMarket
from tickpath.engine.service.engine import Engine, StreamProcessor
from tickpath.engine.wire import codec

SYMBOLS = 16
SHARDS = 2
NOT_COMPARED = {"in_seq", "in_send_ns", "recv_ns", "done_ns", "in_stream"}

pytestmark = pytest.mark.timeout(300)


def _config(shard: str | None) -> object:
    overrides = {
        "ingest.endpoints": ["tcp://127.0.0.1:*"],
        "publish.endpoint": "tcp://127.0.0.1:*",
        "publish.stats_interval_s": 0.1,
        "analytics.n_symbols": SYMBOLS,
    }
    if shard:
        overrides["ingest.shard"] = shard
    return load_config(None, overrides)


@pytest.fixture
def cluster(tmp_path):
    """4 running engines (slot i serves shard i % 2) and a discovery file listing 3 of them."""
    engines, threads = [], []
    for slot in range(2 * SHARDS):
        engine = Engine(_config(f"{slot % SHARDS}/{SHARDS}"), zmq.Context.instance())
        engine.start()
        thread = threading.Thread(target=engine.run, daemon=True)
        thread.start()
        engines.append(engine)
        threads.append(thread)
    path = tmp_path / "endpoints.json"

    def publish(slots: list[int]) -> None:
        endpoints = [
            {
                "shard": slot % SHARDS,
                "slot": slot,
                "ingest": engines[slot].receiver.endpoints[0],
                "publish": engines[slot].publisher.endpoint,
            }
            for slot in slots
        ]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"shards": SHARDS, "endpoints": endpoints}))
        tmp.replace(path)

    publish([0, 1, 2])
    yield str(path), engines, publish
    for engine in engines:
        engine.stop()
    for thread in threads:
        thread.join(timeout=60)
    for engine in engines:
        engine.close()


def _expected(plan) -> dict[str, list[np.ndarray]]:
    proc = StreamProcessor(_config(None))
    out: dict[str, list] = {}
    seq = 0
    for kind, records in plan:
        proc.feed(codec.encode_frame(kind, 1, seq, records), recv_ns=time.time_ns())
        seq += len(records)
        for analytic, frame in proc.results():
            _, recs = codec.decode_frame(frame.tobytes())
            out.setdefault(f"{analytic}.{int(recs[0]['symbol'])}", []).append(recs.copy())
    return out


def test_sharded_publisher_and_first_copy_subscriber_equal_one_engine(cluster):
    discovery, engines, publish = cluster
    market = SyntheticMarket(SYMBOLS, seed=5)
    plan = [market.next_batch(24) for _ in range(200)]
    with Subscriber(discovery=discovery, refresh_s=0.05) as sub:
        assert len(sub.endpoints) == 3
        publish([0, 1, 2, 3])  # the fourth replica appears in discovery: followed
        deadline = time.monotonic() + 120
        while len(sub.endpoints) < 4:
            assert time.monotonic() < deadline, "the subscriber never joined the 4th replica"
            sub.recv(timeout_s=0.2)
        # every engine's stats reached us: all four subscriptions are in place
        seen: set[str] = set()
        while len(seen) < 4:
            assert time.monotonic() < deadline, f"stats from {sorted(seen)}"
            result = sub.recv(timeout_s=1.0)
            if result is not None and result.topic == "stats":
                seen.add(sub.last_endpoint)
        with Publisher(discovery=discovery, stream_id=1, join_timeout_s=120) as pub:
            for kind, records in plan:
                pub.send(kind, records)
            report = pub.report()
        assert [sh["listeners"] for sh in report["shards"]] == [2, 2]
        assert all(sh["undelivered"] == 0 for sh in report["shards"])
        expected = _expected(plan)
        total = sum(len(v) for v in expected.values())
        got: dict[str, list[np.ndarray]] = {}
        while sum(len(v) for v in got.values()) < total:
            assert time.monotonic() < deadline + 120, f"{total} results"
            result = sub.recv(timeout_s=1.0)
            if result is not None and result.records is not None:
                got.setdefault(result.topic, []).append(result.records.copy())
        # each result comes twice (both replicas of its shard) and is delivered once
        while sub.duplicates < total:
            assert time.monotonic() < deadline + 240, f"{sub.duplicates} of {total} copies"
            result = sub.recv(timeout_s=1.0)
            assert result is None or result.records is None  # stats only: no third copy
        assert sub.duplicates == total
        assert sub.lost == 0
    assert set(got) == set(expected)
    for topic, want in expected.items():
        assert len(got[topic]) == len(want), topic
        for g, w in zip(got[topic], want, strict=True):
            for name in w.dtype.names:
                if name not in NOT_COMPARED:
                    np.testing.assert_array_equal(g[name], w[name], err_msg=f"{topic} {name}")


def test_publisher_needs_an_endpoint_or_discovery():
    with pytest.raises(ValueError):
        Publisher()
    with pytest.raises(ValueError):
        Subscriber()
