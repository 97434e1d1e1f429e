"""FanIn: several sockets read in turn, so a busy one cannot starve the others."""

from __future__ import annotations

import zmq

from tests.waiting import wait_until
from tickpath.engine.service.fan_in import FanIn


def _pair(ctx: zmq.Context, name: str) -> tuple[zmq.Socket, zmq.Socket]:
    pull = ctx.socket(zmq.PULL)
    pull.bind(f"inproc://fan-in-{name}")
    push = ctx.socket(zmq.PUSH)
    push.connect(f"inproc://fan-in-{name}")
    return push, pull


def test_a_busy_socket_does_not_starve_a_quiet_one():
    ctx = zmq.Context()
    try:
        (busy_in, busy), (quiet_in, quiet) = _pair(ctx, "busy"), _pair(ctx, "quiet")
        fan_in = FanIn()
        fan_in.register(busy)
        fan_in.register(quiet)  # registered last: a first-ready reader serves it last
        for i in range(500):
            busy_in.send_multipart([b"busy", b"%d" % i])
        quiet_in.send_multipart([b"quiet", b"0"])
        wait_until(lambda: quiet.poll(0) and busy.poll(0), what="both sockets readable")
        first = [fan_in.recv(1000) for _ in range(2)]
        assert sorted(parts[0] for _, parts in first) == [b"busy", b"quiet"]
        rest = []
        while (got := fan_in.recv(0)) is not None:
            rest.append(got)
        # nothing lost, each socket's messages in their order
        assert [p[1] for s, p in first + rest if s is busy] == [b"%d" % i for i in range(500)]
        assert [p for s, p in first + rest if s is quiet] == [[b"quiet", b"0"]]
        assert fan_in.recv(0) is None
    finally:
        ctx.destroy(linger=0)


def test_recv_returns_none_when_nothing_comes():
    ctx = zmq.Context()
    try:
        _, pull = _pair(ctx, "idle")
        fan_in = FanIn()
        fan_in.register(pull)
        assert fan_in.recv(10) is None
    finally:
        ctx.destroy(linger=0)
