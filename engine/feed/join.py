"""Publishing sockets that know when their subscribers have joined.

A ZeroMQ PUB drops every message sent before a subscriber's subscription has
reached it (the "slow joiner"), and a plain PUB cannot tell when that happened:
a fixed sleep after ``connect`` is a guess that a busy machine proves wrong.  An
XPUB sends exactly like a PUB but also delivers each new subscription to its
owner as a message (``b"\\x01" + topic``), so the sender can wait for it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import zmq


class JoinTimeout(RuntimeError):
    """No subscription arrived on a publishing socket within the deadline."""


def publishing_socket(ctx: zmq.Context, *, sndhwm: int, linger_ms: int) -> zmq.Socket:
    """An XPUB that sends like a PUB and reports its subscribers' subscriptions."""
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.SNDHWM, sndhwm)
    sock.setsockopt(zmq.LINGER, linger_ms)
    return sock


def wait_for_subscribers(
    socks: Sequence[zmq.Socket], timeout_s: float, names: Sequence[str] = ()
) -> None:
    """Block until every XPUB in ``socks`` has received at least one subscription.

    Raises :class:`JoinTimeout` naming the sockets (``names``, or their index)
    that got none within ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    waiting = {i: sock for i, sock in enumerate(socks)}
    poller = zmq.Poller()
    for sock in socks:
        poller.register(sock, zmq.POLLIN)
    while waiting:
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            missing = ", ".join(names[i] if i < len(names) else str(i) for i in waiting)
            raise JoinTimeout(f"no subscriber joined within {timeout_s:g} s: {missing}")
        for sock, _ in poller.poll(min(left_ms, 100)):
            message = sock.recv()
            if message[:1] == b"\x01":  # a subscription (b"\x00" is an unsubscription)
                waiting = {i: s for i, s in waiting.items() if s is not sock}
