"""Reading several subscriber sockets fairly: every replica of a cluster is read in turn.

A subscriber that follows a sharded cluster has one SUB socket per replica.  Reading
the first socket ``poll`` reports ready, again and again, lets one busy replica starve
the others: their results wait in their queues, and once a queue holds ``RCVHWM``
messages ZeroMQ drops the newer ones.  :class:`FanIn` reads in rounds instead: each
round takes one message from every socket that was ready when the round began, then
polls again, so a socket with messages waits at most one round (one message from each
other socket) however busy the others are.
"""

from __future__ import annotations

from collections import deque

import zmq


class FanIn:
    """Round-robin reads over registered sockets (see the module docstring)."""

    def __init__(self) -> None:
        self._poller = zmq.Poller()
        self._round: deque[zmq.Socket] = deque()

    def register(self, sock: zmq.Socket) -> None:
        """Read ``sock`` too, from the next round on."""
        self._poller.register(sock, zmq.POLLIN)

    def recv(self, timeout_ms: int) -> tuple[zmq.Socket, list[bytes]] | None:
        """The next message and its socket, or None when none came within ``timeout_ms``."""
        if not self._round:
            self._round.extend(sock for sock, _ in self._poller.poll(timeout_ms))
        while self._round:
            sock = self._round.popleft()
            try:
                return sock, sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:  # poll said ready, but its owner read it empty meanwhile
                continue
        return None
