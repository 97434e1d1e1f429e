"""ingest.public_endpoints: connections (and CURVE handshakes) on a public endpoint are
served by an I/O thread of their own, at SCHED_IDLE; the feeds on the private endpoints
keep the engine's I/O thread. Over real sockets, with CURVE on."""

from __future__ import annotations

import os
import threading

import msgspec
import pytest
import zmq

from tests.factories import make_quotes
from tests.reliability.helpers import SMALL
from tests.waiting import DEADLINE_S, wait_until
from tickpath.engine.config import ConfigError, load_config
from tickpath.engine.security.config import SecurityConfig
from tickpath.engine.security.curve import apply_curve_client
from tickpath.engine.security.extension import SecurityExtension
from tickpath.engine.service.engine import Engine
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s

FLOOD = 60  # refused handshakes on the public endpoint


def _cpu_ns(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/schedstat") as f:
        return int(f.read().split()[0])


def test_public_endpoints_need_a_bound_socket():
    with pytest.raises(ConfigError, match="public_endpoints needs ingest.bind"):
        load_config(None, {"ingest.public_endpoints": ["tcp://127.0.0.1:*"], "ingest.bind": False})


def test_a_handshake_flood_on_a_public_endpoint_stays_on_its_idle_io_thread(keys):
    values = dict(SMALL)
    values.update({
        "ingest.endpoints": ["tcp://127.0.0.1:*"],
        "ingest.public_endpoints": ["tcp://127.0.0.1:*"],
        "publish.endpoint": "tcp://127.0.0.1:*",
        "publish.stats_interval_s": 0.1,
    })  # fmt: skip
    security = SecurityConfig(curve=True, secret_key=str(keys.server_secret), allow=str(keys.allow))
    config = msgspec.structs.replace(load_config(None, values), security=security)
    engine = Engine(config, extensions=[SecurityExtension(security)])  # its own context
    engine.start()
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    client_ctx = zmq.Context()
    sockets = []

    def publisher(endpoint: str, secret) -> zmq.Socket:
        sock = client_ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.LINGER, 0)
        apply_curve_client(sock, keys.server_public, secret)
        sock.connect(endpoint)
        sockets.append(sock)
        return sock

    try:
        assert engine.context.get(zmq.IO_THREADS) == 2
        private_tid, public_tid = engine.io_threads
        assert os.sched_getscheduler(public_tid) == os.SCHED_IDLE
        assert os.sched_getscheduler(private_tid) == os.SCHED_OTHER
        (private,), (public,) = engine.receiver.endpoints, engine.receiver.public_endpoints
        # alice publishes on both: frames from either endpoint reach the kernels
        feeds = [publisher(private, keys.alice), publisher(public, keys.alice)]
        for stream, pub in enumerate(feeds, start=1):
            assert pub.poll(DEADLINE_S * 1000)  # the engine's subscription came through CURVE
            pub.recv()
            pub.send(codec.encode_frame(s.KIND_QUOTE, stream, 0, make_quotes(4)))
        wait_until(lambda: engine.stats()["processed"]["quote"] >= 8, what="8 quotes")
        # a flood of refused handshakes on the public endpoint: the public I/O thread
        # does their Curve25519 work, not the one carrying the private feed
        before = _cpu_ns(public_tid), _cpu_ns(private_tid)
        denied = engine.stats()["security"]["clients_denied"]
        for _ in range(FLOOD):
            sock = publisher(public, keys.mallory)
            sock.setsockopt(zmq.RECONNECT_IVL, -1)
        wait_until(
            lambda: engine.stats()["security"]["clients_denied"] >= denied + FLOOD,
            what=lambda: f"{FLOOD} refusals: {engine.stats()['security']}",
        )
        public_cpu = _cpu_ns(public_tid) - before[0]
        private_cpu = _cpu_ns(private_tid) - before[1]
        print(f"CPU during the flood: public I/O {public_cpu} ns, private I/O {private_cpu} ns")
        assert public_cpu > 2 * private_cpu, (public_cpu, private_cpu)
        # the private feed goes on
        feeds[0].send(codec.encode_frame(s.KIND_QUOTE, 1, 4, make_quotes(4)))
        wait_until(lambda: engine.stats()["processed"]["quote"] >= 12, what="12 quotes")
        assert engine.stats()["gaps"] == 0
    finally:
        engine.stop()
        thread.join(timeout=10)
        for sock in sockets:
            sock.close(linger=0)
        client_ctx.term()
        engine.close()
