"""CURVE on the engine's endpoints: key pairs, the allow-list, refused clients get nothing."""

from __future__ import annotations

import json
import logging
import shutil
import stat
import threading
import time
from types import SimpleNamespace

import msgspec
import pytest
import zmq

from tests.factories import make_quotes
from tests.reliability.helpers import SMALL
from tests.waiting import DEADLINE_S, wait_until
from tickpath.engine.cli import main
from tickpath.engine.config import ConfigError, load_config
from tickpath.engine.feed.publisher import run_feed
from tickpath.engine.security.config import SecurityConfig
from tickpath.engine.security.curve import apply_curve_client, is_loopback
from tickpath.engine.security.extension import SecurityExtension
from tickpath.engine.security.keys import list_keys
from tickpath.engine.service.engine import Engine
from tickpath.engine.service.watch import watch
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s


def test_keys_command_creates_private_pairs_and_lists_them(tmp_path, capsys):
    assert main(["keys", "new", "engine", "--dir", str(tmp_path)]) == 0
    assert main(["keys", "new", "feed-1", "--dir", str(tmp_path)]) == 0
    assert stat.S_IMODE((tmp_path / "engine.key_secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "engine.key").stat().st_mode) == 0o644
    assert main(["keys", "new", "engine", "--dir", str(tmp_path)]) == 2  # never overwritten
    capsys.readouterr()
    assert main(["keys", "list", "--dir", str(tmp_path), "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [k["name"] for k in listed] == ["engine", "feed-1"]
    assert all(k["secret"] and len(k["public_key"]) == 40 for k in listed)
    assert {k.public_key for k in list_keys(tmp_path)} == {k["public_key"] for k in listed}


def test_security_config_is_validated():
    with pytest.raises(ConfigError, match="secret_key is required"):
        load_config(None, {"security.curve": True})
    with pytest.raises(ConfigError, match="exactly one of allow"):
        load_config(
            None,
            {"security.curve": True, "security.secret_key": "k", "security.allow_any": True,
             "security.allow": "d"},
        )  # fmt: skip
    with pytest.raises(ConfigError, match="need curve"):
        load_config(None, {"security.secret_key": "k"})
    assert not load_config(None, {}).security.curve


def test_serve_curve_flags_are_checked_before_anything_starts(capsys):
    assert main(["serve", "--curve-secret-key", "/nonexistent.key_secret"]) == 2
    assert "exactly one of allow" in capsys.readouterr().err


def test_open_endpoints_without_curve_are_warned_about(caplog):
    config = load_config(
        None,
        {
            "ingest.endpoints": ["tcp://0.0.0.0:5555"],
            "dispatch": {"requests": {"endpoint": "tcp://10.1.2.3:5557"}},
        },
    )
    fake = SimpleNamespace(config=config, context=None)
    with caplog.at_level(logging.WARNING, logger="tickpath.security"):
        SecurityExtension(config.security).on_start(fake)
    assert "tcp://0.0.0.0:5555" in caplog.text and "CURVE is off" in caplog.text
    assert "tcp://10.1.2.3:5557" in caplog.text
    assert "tcp://127.0.0.1:5556" not in caplog.text  # the loopback publish endpoint
    assert is_loopback("tcp://127.0.0.1:1") and is_loopback("ipc:///tmp/x")
    assert not is_loopback("tcp://*:5555") and not is_loopback("tcp://10.0.0.1:5555")


DEADLINE_MS = int(DEADLINE_S * 1000)


def _stats_after(sub, uptime_s):
    """Read `sub` until a stats message the engine published after `uptime_s`."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        assert sub.poll(max(1, int((deadline - time.monotonic()) * 1000))), "no fresh stats"
        topic, payload = sub.recv_multipart()
        if topic == b"stats" and json.loads(payload)["uptime_s"] > uptime_s:
            return


class CurveEngine:
    def __init__(self, security):
        values = dict(SMALL)
        values.update(
            {
                "ingest.endpoints": ["tcp://127.0.0.1:*"],
                "publish.endpoint": "tcp://127.0.0.1:*",
                "publish.stats_interval_s": 0.1,
            }
        )
        config = load_config(None, values)
        config = msgspec.structs.replace(config, security=security)
        self.context = zmq.Context()
        self.extension = SecurityExtension(security)
        self.engine = Engine(config, self.context, extensions=[self.extension])
        self.engine.start()
        self.thread = threading.Thread(target=self.engine.run, daemon=True)
        self.thread.start()
        self.sockets = []

    def client(self, kind, server_public, client_secret=None, curve=True):
        sock = zmq.Context.instance().socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if curve:
            apply_curve_client(sock, server_public, client_secret)
        if kind == zmq.XPUB:
            sock.connect(self.engine.receiver.endpoints[0])
        else:
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.connect(self.engine.publisher.endpoint)
        self.sockets.append(sock)
        return sock

    def close(self):
        self.engine.stop()
        self.thread.join(timeout=10)
        for sock in self.sockets:
            sock.close()
        self.engine.close()
        self.context.term()


def _frame(seq):
    return codec.encode_frame(s.KIND_QUOTE, 1, seq, make_quotes(1))


def test_allowed_client_talks_refused_and_plain_clients_get_nothing(keys, caplog):
    security = SecurityConfig(curve=True, secret_key=str(keys.server_secret), allow=str(keys.allow))
    run = CurveEngine(security)
    try:
        with caplog.at_level(logging.WARNING, logger="tickpath.security"):
            alice_pub = run.client(zmq.XPUB, keys.server_public, keys.alice)
            mallory_pub = run.client(zmq.XPUB, keys.server_public, keys.mallory)
            plain_pub = run.client(zmq.XPUB, keys.server_public, curve=False)
            alice_sub = run.client(zmq.SUB, keys.server_public, keys.alice)
            mallory_sub = run.client(zmq.SUB, keys.server_public, keys.mallory)
            plain_sub = run.client(zmq.SUB, keys.server_public, curve=False)
            assert alice_pub.poll(DEADLINE_MS)  # the engine's subscription came through CURVE
            alice_pub.recv()
            for seq in range(5):
                alice_pub.send(_frame(seq))
            wait_until(lambda: run.engine.stats()["processed"]["quote"] >= 5, what="5 quotes")
            assert alice_sub.poll(DEADLINE_MS)  # results and stats reach the allowed subscriber
            # mallory's PUB and SUB were refused (counted) ...
            wait_until(
                lambda: run.engine.stats()["security"]["clients_denied"] >= 2,
                what=lambda: f"mallory refused: {run.engine.stats()['security']}",
            )
            # ... so the refused and the plain ones never see the engine's subscription,
            # nothing they send can reach it, and their SUBs receive nothing
            for seq in range(5, 10):
                mallory_pub.send(_frame(seq))
                plain_pub.send(_frame(seq))
            # the engine publishes stats after the refusals and after those sends: they
            # reach alice's subscriber, and nothing reaches the others
            since = run.engine.stats()["uptime_s"]
            _stats_after(alice_sub, since)
            assert not mallory_pub.poll(0) and not plain_pub.poll(0)
            assert not mallory_sub.poll(0) and not plain_sub.poll(0)
        stats = run.engine.stats()
        assert stats["processed"]["quote"] == 5 and stats["frames_received"] == 5
        assert stats["security"]["clients_denied"] >= 2  # mallory's PUB and SUB, at least
        assert stats["security"]["clients_allowed"] >= 2
        mallory_key = list_keys(keys.dir)[[k.name for k in list_keys(keys.dir)].index("mallory")]
        assert f"CURVE client {mallory_key.public_key}" in caplog.text
        assert "refused" in caplog.text
        # a refused connection stays refused (libzmq does not retry an authentication
        # failure); once her key is in the directory, which the engine re-reads, a new
        # connection of hers gets in
        shutil.copy(keys.dir / "mallory.key", keys.allow / "mallory.key")
        deadline = time.monotonic() + DEADLINE_S
        while True:
            again = run.client(zmq.XPUB, keys.server_public, keys.mallory)
            if again.poll(1_000):  # a new connection per second until one is let in
                break
            assert time.monotonic() < deadline, "the allow-list was not reloaded"
        again.recv()
        assert not mallory_pub.poll(0)  # the refused connection stays refused
        again.send(_frame(5))
        wait_until(lambda: run.engine.stats()["processed"]["quote"] >= 6, what="the 6th quote")
    finally:
        (keys.allow / "mallory.key").unlink(missing_ok=True)
        run.close()


def test_allow_any_accepts_throwaway_keys_and_the_feed_and_watch_commands(keys, capsys):
    security = SecurityConfig(curve=True, secret_key=str(keys.server_secret), allow_any=True)
    run = CurveEngine(security)
    try:
        report = run_feed(
            run.engine.receiver.endpoints[0],
            symbols=2,
            rate=20_000,
            batch=8,
            duration=None,
            max_records=400,
            curve=(str(keys.server_public), None),  # a throwaway client key
        )
        wait_until(
            lambda: run.engine.stats()["records_received"] >= report.records,
            what=lambda: f"{report.records} records: {run.engine.stats()['records_received']}",
        )
        code = watch(
            [run.engine.publisher.endpoint],
            ["stats"],
            count=2,
            as_json=True,
            timeout_s=5,
            curve=(str(keys.server_public), str(keys.alice)),
        )
        assert code == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 2 and json.loads(lines[0])["topic"] == "stats"
        assert json.loads(lines[-1])["records_received"] == report.records
    finally:
        run.close()


def test_a_new_guard_starts_right_after_the_previous_one_stopped():
    """libzmq frees a closed socket's inproc address only when its reaper thread gets to it:
    an engine started on a context right after another one closed must wait for the ZAP
    address, not fail (on a busy machine 290 of 300 immediate re-binds failed)."""
    from tickpath.engine.security.guard import ConnectionGuard

    context = zmq.Context()
    try:
        for _ in range(50):
            ConnectionGuard(context, SecurityConfig()).stop()
    finally:
        context.term()
