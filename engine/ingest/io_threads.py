"""ZeroMQ I/O threads of the engine: one for its own connections, one for public ingest.

libzmq serves a connection (its reads, its writes and the Curve25519 work of its CURVE
handshake) on one I/O thread of the socket's context, chosen when the connection is
accepted among the threads of the socket's ``ZMQ_AFFINITY``.  With
``ingest.public_endpoints`` configured the engine makes its context with two I/O threads:

* :data:`PRIVATE` (the first) serves every socket of the engine (the context's default
  affinity) and the connections accepted on ``ingest.endpoints``;
* :data:`PUBLIC` (the second) serves only the connections accepted on
  ``ingest.public_endpoints``, and runs under Linux's ``SCHED_IDLE`` policy.

So a flood of handshakes on a public endpoint queues behind itself, not in front of the
frames of the feeds on the private endpoints, and takes only CPU time the tick thread
leaves.  A legitimate publisher on a public endpoint shares that thread with the flood.
"""

from __future__ import annotations

import logging
import os
import time

import zmq

log = logging.getLogger("tickpath.engine")

PRIVATE = 1  # ZMQ_AFFINITY bit of the first I/O thread
PUBLIC = 2  # of the second
_PRIVATE_NAME = "ZMQbg/IO/0"  # libzmq names its I/O threads ZMQbg/IO/<n>
_PUBLIC_NAME = "ZMQbg/IO/1"
_NAMED_WITHIN_S = 5.0  # a new thread names itself when it starts running


def _threads_named(name: str) -> set[int]:
    found = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip() == name:
                    found.add(int(tid))
        except OSError:
            continue  # a thread that ended meanwhile
    return found


def engine_context(public: bool) -> tuple[zmq.Context, tuple[int, int | None]]:
    """A new context with the engine's I/O threads; returns it and their thread ids
    ``(private, public)``: one thread (``public`` None), or two with ``public``.

    Every socket made from the context afterwards gets affinity :data:`PRIVATE`
    (pyzmq's context-level default), unless it sets another.  The public I/O thread
    is put under ``SCHED_IDLE`` (a refusal is logged; the split still holds).  The
    thread ids let the engine set the private thread's scheduling too
    (``scheduling.realtime_priority``, engine/service/scheduling.py).
    """
    names = (_PRIVATE_NAME, _PUBLIC_NAME) if public else (_PRIVATE_NAME,)
    before = [_threads_named(name) for name in names]
    context = zmq.Context(io_threads=len(names))
    context.setsockopt(zmq.AFFINITY, PRIVATE)
    context.socket(zmq.PAIR).close(linger=0)  # libzmq starts its threads with a first socket
    deadline = time.monotonic() + _NAMED_WITHIN_S
    while True:
        new = [_threads_named(name) - seen for name, seen in zip(names, before, strict=True)]
        if all(len(tids) == 1 for tids in new):
            break
        if time.monotonic() > deadline:
            context.destroy(linger=0)
            raise RuntimeError(f"libzmq's {len(names)} I/O thread(s) did not appear")
        time.sleep(0.001)
    private = new[0].pop()
    if not public:
        return context, (private, None)
    public_tid = new[1].pop()
    try:
        os.sched_setscheduler(public_tid, os.SCHED_IDLE, os.sched_param(0))
    except OSError as exc:
        log.warning("public ingest I/O thread: cannot set SCHED_IDLE: %s", exc)
    return context, (private, public_tid)


def has_public_thread(context: zmq.Context) -> bool:
    """Whether ``context`` has the second I/O thread that public endpoints need."""
    return context.get(zmq.IO_THREADS) >= 2
