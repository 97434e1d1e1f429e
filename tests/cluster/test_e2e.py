"""End to end: Mesos-scheduled real ``tickpath serve`` replicas turn ticks into results."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from standin_master import AgentSpec, wait_for

from tests.cluster.scheduler import fast_config
from tickpath.engine.cluster.discovery import follow_endpoints, read_discovery
from tickpath.engine.wire import schema as s
from tickpath.engine.wire.codec import decode_frame, encode_frame

REPO = Path(__file__).resolve().parents[2]
SERVE = (
    f"exec {sys.executable} -m tickpath serve --ingest tcp://127.0.0.1:{{ingest_port}} "
    "--publish tcp://127.0.0.1:{publish_port} --symbols-shard {shard}/{shards} --symbols 16"
)


def _serve_available() -> bool:
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tickpath", "serve", "--help"],
            cwd=REPO,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and b"--ingest" in done.stdout


pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(not _serve_available(), reason="tickpath serve not available"),
]


def trades(symbol: int, price_ticks: int, trade_id: int) -> np.ndarray:
    rec = np.zeros(1, s.TRADE)
    rec["ts_ns"] = time.time_ns()
    rec["symbol"] = symbol
    rec["side"] = s.SIDE_BUY
    rec["price"] = price_ticks
    rec["size"] = 2 * s.SIZE_SCALE
    rec["trade_id"] = trade_id
    return rec


def test_ticks_into_scheduled_replicas_come_out_of_their_publish_ports(standin, runner):
    pytest.importorskip("pymesos")
    master = standin([AgentSpec("h0"), AgentSpec("h1"), AgentSpec("h2")])
    cfg = fast_config(
        replicas=2,
        command=SERVE,
        environment={"PYTHONPATH": str(REPO)},
        kill_grace_period=5.0,
    )
    r = runner(cfg, master)
    wait_for(lambda: len(r.status().get("endpoints", [])) == 2, 60, "2 running replicas")
    discovery = str(r.discovery.path)
    publish = follow_endpoints(discovery)
    ingest = [e["ingest"] for e in read_discovery(discovery)["endpoints"]]
    assert len(publish) == 2 and len(ingest) == 2

    ctx = zmq.Context()
    try:
        for shard, (ingest_ep, publish_ep) in enumerate(zip(ingest, publish)):
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.SUBSCRIBE, b"trade.")
            sub.connect(publish_ep)
            pub = ctx.socket(zmq.PUB)
            pub.setsockopt(zmq.LINGER, 0)
            pub.connect(ingest_ep)
            # a symbol of this replica's shard (symbol % 2 == shard): others are foreign_shard
            symbol, price = 4 + shard, 1_000_000 + shard * 10_000
            deadline = time.monotonic() + 120  # the replica may still be compiling its kernels
            seq, got = 0, None
            while got is None and time.monotonic() < deadline:
                pub.send(encode_frame(s.KIND_TRADE, 0, seq, trades(symbol, price, seq + 1)))
                seq += 1
                if sub.poll(250):
                    got = sub.recv_multipart()
            sub.close()
            pub.close()
            assert got is not None, f"no result from shard {shard} at {publish_ep}"
            topic, frame = got
            assert topic == f"trade.{symbol}".encode()
            header, records = decode_frame(frame)
            assert int(header["kind"]) == s.KIND_RESULT_TRADE
            assert int(records[0]["symbol"]) == symbol and int(records[0]["price"]) == price
    finally:
        ctx.term()
    assert r.errors == 0 and len(master.launched) == 2
