"""EngineLoopCallCosts: what one numba call and one pyzmq call cost, per frame of the engine loop.

The evidence behind docs/benchmarks.md's "where the engine's time goes": the
per-call floors of the engine loop's building blocks, on this machine.

* numba dispatch: a no-op ``@njit`` called with 0, 1, 4, 12, 20 int64 arrays, with
  two record-array views (a header and a frame's records), with the same 12 arrays
  held by one jitclass, and through the compiled overload's ``entry_point``
  (no type dispatch);
* pyzmq, inproc PUSH/PULL: ``recv_into`` alone, plus ``getsockopt(RCVMORE)`` (the
  engine's multipart check), and behind a ``zmq.Poller`` of two sockets (the loop
  when an extension registers a socket); a two-part send.

Self-checking: every call returns the value it must, and every message sent is received.

    python bench/bench_loop_costs.py [--calls 20000]
"""

from __future__ import annotations

import argparse
import sys
import time

import numba
import numpy as np
import zmq
from numba import types
from numba.experimental import jitclass


def best_ns(func, calls: int, repeats: int = 5) -> float:
    """Best mean ns per call over ``repeats`` loops of ``calls`` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(calls):
            func()
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


@numba.njit(nogil=True)
def _one(a):
    return a[0]


@numba.njit(nogil=True)
def _four(a, b, c, d):
    return a[0] + d[0]


@numba.njit(nogil=True)
def _twelve(a, b, c, d, e, f, g, h, i, j, k, l):  # noqa: E741
    return a[0] + l[0]


@numba.njit(nogil=True)
def _twenty(a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r, s, t):  # noqa: E741
    return a[0] + t[0]


_BY_ARITY = {1: _one, 4: _four, 12: _twelve, 20: _twenty}


@numba.njit(nogil=True)
def _views(header, records):
    return header[0].count + records[0].count


_SPEC = [(f"a{i}", types.int64[:]) for i in range(12)]


@jitclass(_SPEC)
class _Twelve:
    def __init__(self, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11):
        self.a0, self.a1, self.a2, self.a3 = a0, a1, a2, a3
        self.a4, self.a5, self.a6, self.a7 = a4, a5, a6, a7
        self.a8, self.a9, self.a10, self.a11 = a8, a9, a10, a11


@numba.njit(nogil=True)
def _held(state):
    return state.a0[0] + state.a11[0]


def numba_costs(calls: int) -> dict[str, float]:
    arrays = [np.full(8, i, np.int64) for i in range(20)]
    out = {}
    for n, func in _BY_ARITY.items():
        args = tuple(arrays[:n])
        assert func(*args) == (n - 1 if n > 1 else 0)
        out[f"njit, {n} arrays"] = best_ns(lambda f=func, a=args: f(*a), calls)
    twelve = tuple(arrays[:12])
    entry = _twelve.overloads[_twelve.signatures[0]].entry_point
    assert entry(*twelve) == 11
    out["njit entry_point, 12 arrays"] = best_ns(lambda: entry(*twelve), calls)
    held = _Twelve(*twelve)
    assert _held(held) == 11
    out["njit, one jitclass holding 12 arrays"] = best_ns(lambda: _held(held), calls)
    rec = np.dtype([("count", "<u4"), ("pad", "<u4")])
    buf = np.ones(64, np.uint8)
    header, records = buf[:8].view(rec), buf[8:].view(rec)
    assert _views(header, records) == 2 * 0x01010101
    out["njit, 2 record-array views"] = best_ns(lambda: _views(header, records), calls)
    return out


def zmq_costs(calls: int) -> dict[str, float]:
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 0)
    push.bind("inproc://frames")
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 0)
    pull.connect("inproc://frames")
    other = ctx.socket(zmq.PULL)
    other.bind("inproc://other")
    buf = np.zeros(1 << 16, np.uint8)
    frame = bytes(80)
    received = [0]

    def fill():
        for _ in range(calls):
            push.send(frame)

    def timed(body):
        best = float("inf")
        for _ in range(5):
            fill()
            start = time.perf_counter_ns()
            for _ in range(calls):
                body()
            best = min(best, (time.perf_counter_ns() - start) / calls)
        return best

    def plain():
        received[0] += pull.recv_into(buf) == 80

    def with_rcvmore():
        received[0] += pull.recv_into(buf) == 80
        pull.getsockopt(zmq.RCVMORE)

    poller = zmq.Poller()
    poller.register(pull, zmq.POLLIN)
    poller.register(other, zmq.POLLIN)

    def polled():
        if pull in dict(poller.poll(100)):
            received[0] += pull.recv_into(buf) == 80
            pull.getsockopt(zmq.RCVMORE)

    out = {
        "recv_into, 80 B": timed(plain),
        "recv_into + getsockopt(RCVMORE)": timed(with_rcvmore),
        "Poller(2 sockets) + recv_into + RCVMORE": timed(polled),
    }
    assert received[0] == 15 * calls, received
    payload = bytes(144)

    def send_two_parts():
        push.send(b"quote.0", zmq.SNDMORE)
        push.send(payload)

    out["two-part send, 7 B + 144 B"] = best_ns(send_two_parts, calls, repeats=1)
    for sock in (push, pull, other):
        sock.close(linger=0)
    ctx.term()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    rows = {**numba_costs(args.calls), **zmq_costs(args.calls)}
    for name, ns in rows.items():
        print(f"{name:<44} {ns:8.0f} ns per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
