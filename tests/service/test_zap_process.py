"""The CURVE allow-list check of the engine's own endpoints runs in a process of its own
(engine/security/zap_process.py): no ZAP handler thread shares the engine's GIL. Over
real sockets."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from types import SimpleNamespace

import msgspec
import pytest
import zmq
from zmq.auth.thread import AuthenticationThread

from tests.factories import make_quotes
from tests.reliability.helpers import SMALL
from tests.waiting import all_threads_stopped
from tickpath.engine.config import load_config
from tickpath.engine.security.config import SecurityConfig
from tickpath.engine.security.curve import apply_curve_client
from tickpath.engine.security.extension import SecurityExtension
from tickpath.engine.security.keys import new_keypair
from tickpath.engine.service.engine import Engine
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s

DEADLINE_S = 120.0


def wait_for(condition, what: str, timeout_s: float = DEADLINE_S):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def curve_engine(tmp_path):
    for name in ("engine", "alice", "mallory"):
        new_keypair(tmp_path / "all", name)
    allow = tmp_path / "allow"
    allow.mkdir()
    shutil.copy(tmp_path / "all" / "alice.key", allow / "alice.key")
    keys = SimpleNamespace(
        dir=tmp_path / "all", allow=allow, server_public=tmp_path / "all" / "engine.key",
        alice=tmp_path / "all" / "alice.key_secret",
        mallory=tmp_path / "all" / "mallory.key_secret",
    )  # fmt: skip
    security = SecurityConfig(
        curve=True,
        secret_key=str(tmp_path / "all" / "engine.key_secret"),
        allow=str(allow),
        zap="process",
    )
    values = dict(SMALL)
    values.update(
        {
            "ingest.endpoints": ["tcp://127.0.0.1:*"],
            "publish.endpoint": "tcp://127.0.0.1:*",
            "publish.stats_interval_s": 0.1,
        }
    )
    config = msgspec.structs.replace(load_config(None, values), security=security)
    context = zmq.Context()
    extension = SecurityExtension(security)
    engine = Engine(config, context, extensions=[extension])
    engine.start()
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    clients = zmq.Context()
    run = SimpleNamespace(engine=engine, extension=extension, keys=keys, clients=clients,
                          sockets=[], seq=0)  # fmt: skip

    def client(kind, key):
        sock = clients.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        apply_curve_client(sock, keys.server_public, key)
        if kind == zmq.XPUB:
            sock.connect(engine.receiver.endpoints[0])
        else:
            sock.setsockopt(zmq.SUBSCRIBE, b"quote.")
            sock.connect(engine.publisher.endpoint)
        run.sockets.append(sock)
        return sock

    run.client = client
    try:
        yield run
    finally:
        engine.stop()
        thread.join(timeout=10)
        for sock in run.sockets:
            sock.close()
        engine.close()
        context.term()
        clients.term()


def _round_trip(run, pub, sub) -> None:
    pub.send(codec.encode_frame(s.KIND_QUOTE, 1, run.seq, make_quotes(1)))
    run.seq += 1
    assert sub.poll(int(DEADLINE_S * 1000)), "no quote result"
    sub.recv_multipart()


def test_allow_list_checks_run_in_another_process(curve_engine):
    run = curve_engine
    zap = run.extension.authenticator
    assert zap.proc.pid != os.getpid()
    # no ZAP handler thread in the engine's process: the proxy there is C code
    assert not [t for t in threading.enumerate() if isinstance(t, AuthenticationThread)]
    alice_pub = run.client(zmq.XPUB, run.keys.alice)
    alice_sub = run.client(zmq.SUB, run.keys.alice)
    assert alice_pub.poll(int(DEADLINE_S * 1000))  # the engine's subscription: admitted
    alice_pub.recv()
    wait_for(lambda: run.engine.stats()["security"]["clients_allowed"] >= 2, "two admissions")
    mallory = run.client(zmq.XPUB, run.keys.mallory)
    wait_for(lambda: run.engine.stats()["security"]["clients_denied"] >= 1, "a refusal")
    assert not mallory.poll(200)  # refused: never sees the engine's subscription
    _round_trip_until_answered(run, alice_pub, alice_sub)


def _round_trip_until_answered(run, pub, sub) -> None:
    # the first quotes may be sent before the SUB's subscription arrived: resend until one
    # result comes back, then every further one must
    deadline = time.monotonic() + DEADLINE_S
    while True:
        pub.send(codec.encode_frame(s.KIND_QUOTE, 1, run.seq, make_quotes(1)))
        run.seq += 1
        if sub.poll(200):
            sub.recv_multipart()
            break
        assert time.monotonic() < deadline, "no quote result"
    while sub.poll(100):
        sub.recv_multipart()


def test_a_frozen_zap_process_does_not_stop_the_ticks(curve_engine):
    run = curve_engine
    alice_pub = run.client(zmq.XPUB, run.keys.alice)
    alice_sub = run.client(zmq.SUB, run.keys.alice)
    assert alice_pub.poll(int(DEADLINE_S * 1000))
    alice_pub.recv()
    _round_trip_until_answered(run, alice_pub, alice_sub)
    pid = run.extension.authenticator.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        # a group stop completes asynchronously: on a busy machine a thread of the child can
        # still answer a check after kill() returned, so wait until every thread is stopped
        wait_for(lambda: all_threads_stopped(pid), "the ZAP process to stop")
        late = run.client(zmq.XPUB, run.keys.alice)  # its check waits for the frozen process
        for _ in range(20):  # connected clients' ticks go through meanwhile
            _round_trip(run, alice_pub, alice_sub)
        assert not late.poll(300)  # not admitted while the checker is frozen
    finally:
        os.kill(pid, signal.SIGCONT)
    assert late.poll(int(DEADLINE_S * 1000))  # admitted once it runs again


def test_a_dead_zap_process_is_started_again(curve_engine):
    run = curve_engine
    zap = run.extension.authenticator
    first = zap.proc.pid
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: zap.restarts == 1 and zap.proc.pid != first, "a new ZAP process")
    alice_pub = run.client(zmq.XPUB, run.keys.alice)
    assert alice_pub.poll(int(DEADLINE_S * 1000))  # a new client is checked and admitted
