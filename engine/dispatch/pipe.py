"""Worker threads to the engine thread: a PUSH/PULL pair (inproc, or ipc across processes).

ZeroMQ sockets are not thread-safe, so results computed on worker threads are never
sent on the engine's PUB or ROUTER sockets from there. Each worker thread gets its own
PUSH socket (made on first use); the engine thread polls the one PULL socket (through
the extension's ``sockets()`` hook) and sends what arrives on its own sockets.

A message is ``[route, *parts]``; `ResultPipe.drain` hands ``parts`` to the handler of
``route``. Overflow policy: each PUSH queues up to ``hwm`` messages (and the PULL as many);
beyond that `ResultPipe.send` drops the message at once and counts it (``dropped``): a
worker never waits for the engine thread.
"""

from __future__ import annotations

import itertools
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Any

import zmq

_ids = itertools.count()

PUBLISH_ROUTE = b"P"  # [PUBLISH_ROUTE, topic, PUBLISH_META, records]: publish on the PUB
PUBLISH_META = struct.Struct("<HI")  # result kind, stream_id


class ResultPipe:
    """The inproc PUSH (per worker thread) / PULL (engine thread) pair."""

    def __init__(
        self,
        context: zmq.Context,
        hwm: int = 10_000,
        endpoint: str | None = None,
        *,
        pull: bool = True,
    ) -> None:
        """A pipe on `endpoint` (a private inproc address by default). ``pull=False``: the
        sending side only, in another process than the PULL's (``endpoint`` is then an
        ipc address that the PULL's process binds)."""
        self.context = context
        self.hwm = hwm
        self.endpoint = endpoint or f"inproc://tickpath-dispatch-{id(self):x}-{next(_ids)}"
        self.pull: zmq.Socket | None = None
        if pull:
            self.pull = context.socket(zmq.PULL)
            self.pull.setsockopt(zmq.RCVHWM, hwm)
            self.pull.setsockopt(zmq.LINGER, 0)
            self.pull.bind(self.endpoint)
        self._local = threading.local()
        self._pushes: list[zmq.Socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self.sent = 0
        self.dropped = 0
        self.received = 0
        self.unrouted = 0

    def send(self, parts: Sequence[Any]) -> bool:
        """Queue one message from the calling thread; False when it was dropped (full)."""
        sock = getattr(self._local, "push", None)
        if sock is None:
            with self._lock:
                if self._closed:
                    self.dropped += 1
                    return False
                sock = self.context.socket(zmq.PUSH)
                sock.setsockopt(zmq.SNDHWM, self.hwm)
                sock.setsockopt(zmq.LINGER, 0)
                sock.connect(self.endpoint)
                self._pushes.append(sock)
            self._local.push = sock
        large = sum(memoryview(p).nbytes for p in parts) > 65536
        try:
            sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=not large)
        except zmq.Again:
            with self._lock:
                self.dropped += 1
            return False
        except zmq.ZMQError:  # closed during shutdown
            with self._lock:
                self.dropped += 1
            return False
        with self._lock:
            self.sent += 1
        return True

    def drain(
        self, handlers: dict[bytes, Callable[[list[zmq.Frame]], None]], limit: int = 256
    ) -> int:
        """Hand up to `limit` waiting messages to their route's handler (engine thread)."""
        n = 0
        while n < limit:
            try:
                parts = self.pull.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            n += 1
            handler = handlers.get(parts[0].bytes)
            if handler is None:
                self.unrouted += 1
                continue
            handler(parts[1:])
        self.received += n
        return n

    def stats(self) -> dict:
        """Messages sent by workers, dropped (full), received by the engine thread."""
        with self._lock:
            return {
                "sent": self.sent,
                "dropped": self.dropped,
                "received": self.received,
                "unrouted": self.unrouted,
                "hwm": self.hwm,
            }

    def close(self) -> None:
        """Close every socket (call after the workers have stopped)."""
        with self._lock:
            self._closed = True
            for sock in self._pushes:
                sock.close(linger=0)
            self._pushes.clear()
        if self.pull is not None:
            self.pull.close(linger=0)
