"""CURVE operations over real sockets: revocation, content-based reload, refusals by reason."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from types import SimpleNamespace

import msgspec
import pytest
import zmq

from tests.factories import make_quotes
from tests.reliability.helpers import SMALL
from tickpath.engine.config import load_config
from tickpath.engine.security.config import SecurityConfig
from tickpath.engine.security.curve import apply_curve_client, load_secret_certificate
from tickpath.engine.security.extension import SecurityExtension
from tickpath.engine.security.keys import new_keypair
from tickpath.engine.service.engine import Engine
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s

DEADLINE_S = 60.0


@pytest.fixture
def keys(tmp_path):
    root = tmp_path / "keys"
    for name in ("engine", "alice", "bob", "mallory"):
        new_keypair(root, name)
    allow = tmp_path / "allow"
    allow.mkdir()
    return SimpleNamespace(
        dir=root,
        allow=allow,
        server_secret=root / "engine.key_secret",
        server_public=root / "engine.key",
        alice=root / "alice.key_secret",
        bob=root / "bob.key_secret",
        mallory=root / "mallory.key_secret",
    )


def wait_for(condition, what, timeout=DEADLINE_S):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Running:
    """An engine with CURVE on and its guard, in a thread; clients on their own context."""

    def __init__(self, keys):
        values = dict(SMALL)
        values.update(
            {
                "ingest.endpoints": ["tcp://127.0.0.1:*"],
                "publish.endpoint": "tcp://127.0.0.1:*",
                "publish.stats_interval_s": 0.1,
            }
        )
        security = SecurityConfig(
            curve=True, secret_key=str(keys.server_secret), allow=str(keys.allow)
        )
        config = msgspec.structs.replace(load_config(None, values), security=security)
        self.keys = keys
        self.context = zmq.Context()
        self.clients = zmq.Context()
        self.engine = Engine(config, self.context, extensions=[SecurityExtension(security)])
        self.engine.start()
        self.thread = threading.Thread(target=self.engine.run, daemon=True)
        self.thread.start()

    def security(self) -> dict:
        return self.engine.stats()["security"]

    def publisher(self, secret=None, public=None, server=None, curve=True):
        """An XPUB connected to the ingest endpoint (it sees the engine's subscription)."""
        sock = self.clients.socket(zmq.XPUB)
        sock.setsockopt(zmq.LINGER, 0)
        if curve:
            apply_curve_client(sock, server or self.keys.server_public, secret)
            if public is not None:
                sock.curve_publickey = public
        sock.connect(self.engine.receiver.endpoints[0])
        return sock

    def processed(self) -> int:
        return self.engine.stats()["processed"]["quote"]

    def close(self):
        self.engine.stop()
        self.thread.join(timeout=30)
        self.engine.close()
        self.clients.destroy(linger=0)
        self.context.term()


def _frame(stream, seq):
    return codec.encode_frame(s.KIND_QUOTE, stream, seq, make_quotes(1))


def _joined(pub) -> bool:
    """True once the engine's subscription reached this publisher (handshake done)."""
    if pub.poll(50):
        pub.recv()
        return True
    return False


def test_revoking_a_key_closes_its_live_connection(keys):
    shutil.copy(keys.dir / "alice.key", keys.allow / "alice.key")
    shutil.copy(keys.dir / "bob.key", keys.allow / "bob.key")
    run = Running(keys)
    try:
        alice = run.publisher(keys.alice)
        wait_for(lambda: _joined(alice), "alice's handshake")
        for seq in range(5):
            alice.send(_frame(1, seq))
        wait_for(lambda: run.processed() == 5, "alice's first frames")
        (keys.allow / "alice.key").unlink()  # revoke
        wait_for(lambda: run.security()["revoked_disconnects"] >= 1, "the revocation")
        # her client reconnects by itself, and is refused now
        wait_for(lambda: run.security()["refused"]["unknown_key"] >= 1, "alice refused")
        for seq in range(5, 10):
            alice.send(_frame(1, seq))
        bob = run.publisher(keys.bob)
        wait_for(lambda: _joined(bob), "bob's handshake")
        for seq in range(3):
            bob.send(_frame(2, seq))
        wait_for(lambda: run.engine.stats()["streams"].get("2", {}).get("next_seq") == 3, "bob")
        stats = run.engine.stats()
        assert stats["streams"]["1"]["next_seq"] == 5  # nothing of alice's after revocation
        assert stats["processed"]["quote"] == 8
    finally:
        run.close()


def test_a_key_file_overwritten_in_place_is_picked_up(keys):
    client_key = keys.allow / "client.key"
    shutil.copy(keys.dir / "alice.key", client_key)
    run = Running(keys)
    try:
        alice = run.publisher(keys.alice)
        wait_for(lambda: _joined(alice), "alice's handshake")
        alice.send(_frame(1, 0))
        wait_for(lambda: run.processed() == 1, "alice's frame")
        stamp = os.stat(keys.allow)
        reloads = run.security()["allow_list_reloads"]
        # rotate: the same file name, bob's key in it; the directory's mtime put back
        client_key.write_bytes((keys.dir / "bob.key").read_bytes())
        os.utime(client_key, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        os.utime(keys.allow, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        wait_for(lambda: run.security()["allow_list_reloads"] > reloads, "the reload")
        wait_for(lambda: run.security()["revoked_disconnects"] >= 1, "alice's disconnection")
        bob = run.publisher(keys.bob)
        wait_for(lambda: _joined(bob), "bob's handshake")
        bob.send(_frame(2, 0))
        wait_for(lambda: run.processed() == 2, "bob's frame")
        assert run.security()["allow_list_keys"] == 1
    finally:
        run.close()


def test_every_refused_handshake_is_counted_by_reason_and_logged(keys, caplog):
    shutil.copy(keys.dir / "alice.key", keys.allow / "alice.key")
    run = Running(keys)
    alice_public, _ = load_secret_certificate(keys.alice)
    mallory_public, _ = load_secret_certificate(keys.mallory)
    try:
        with caplog.at_level(logging.WARNING, logger="tickpath.security"):
            # a NULL client: libzmq reports mechanism_mismatch, or no_detail when the
            # client saw the mismatch first and hung up (a race inside libzmq)
            cases = [
                (("mechanism_mismatch", "no_detail"), dict(curve=False)),
                (("unknown_key",), dict(secret=keys.mallory)),
                # an allowed public key presented without its secret key
                (("cryptographic",), dict(secret=keys.mallory, public=alice_public)),
                # alice, but with another server's public key
                (("cryptographic",), dict(secret=keys.alice, server=mallory_public)),
            ]
            for reasons, kwargs in cases:

                def refused(reasons=reasons):
                    counts = run.security()["refused"]
                    return sum(counts[reason] for reason in reasons)

                before = refused()
                sock = run.publisher(**kwargs)
                wait_for(lambda: refused() > before, reasons)  # noqa: B023
                assert not _joined(sock)
                sock.close()
        refused = run.security()["refused"]
        assert refused["cryptographic"] >= 2
        assert run.security()["clients_allowed"] == 0
        assert "handshake refused (mechanism_mismatch)" in caplog.text or (
            "handshake refused (no_detail)" in caplog.text
        )
        assert f"CURVE client {mallory_public.decode()}" in caplog.text
        assert "key not in the allow-list" in caplog.text
        assert "handshake refused (cryptographic)" in caplog.text
        assert run.processed() == 0
    finally:
        run.close()
