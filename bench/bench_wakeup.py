"""ThreadWakeupCost: what waking a sleeping thread costs the waker, on this machine.

Every hop of a ZeroMQ pipeline is a hand-over between threads: the engine's tick
thread hands a result to the context's I/O thread, which hands it to the kernel,
which wakes the subscriber's I/O thread, and so on. When the receiving thread is
asleep, the hand-over wakes it, and on a virtual machine the inter-processor
interrupt that wakes a halted vCPU can cost the *waker* far more than the message.
This measures that cost in two forms, after the waker has computed for ``gap`` us
(as the tick thread does between two sends) and back to back (``gap`` 0):

* ``pipe``: one byte written to a pipe whose reader, another process, sleeps in
  ``read``, with the reader pinned to another CPU and to the writer's own CPU;
* ``zmq_send``: one two-part 100-byte message sent on a PUB socket of this process to
  a SUB of this process (the send wakes the context's I/O thread when it sleeps).

The figures are the waker's time inside the call (the usual percentile summary of
``--calls`` calls, in us; p50 and p90 printed), not the delivery latency.
Self-checking: every byte and message is received.

    python bench/bench_wakeup.py [--calls 2000] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import zmq

from tickpath.engine.bench.common import Latency, machine_facts, write_json

GAPS_US = (0, 20, 70, 500)


def _spin(us: int) -> None:
    """Compute (not sleep) for ``us`` microseconds: the CPU stays busy and awake."""
    end = time.perf_counter_ns() + us * 1000
    while time.perf_counter_ns() < end:
        pass


def bench_pipe(reader_cpu: int, writer_cpu: int, calls: int) -> dict[str, dict]:
    """Write one byte per call to a pipe read by a process pinned to ``reader_cpu``."""
    read_end, write_end = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the reader: sleeps in read, counts the bytes, reports them
        os.close(write_end)
        os.sched_setaffinity(0, {reader_cpu})
        got = 0
        while True:
            data = os.read(read_end, 4096)
            if not data:
                break
            got += len(data)
        os.write(done_w, got.to_bytes(8, "little"))
        os._exit(0)
    os.close(read_end)
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {writer_cpu})
    out = {}
    sent = 0
    try:
        time.sleep(0.2)  # the reader is asleep in read
        for gap in GAPS_US:
            ns = []
            for _ in range(calls):
                _spin(gap)
                t0 = time.perf_counter_ns()
                os.write(write_end, b"x")
                ns.append(time.perf_counter_ns() - t0)
                sent += 1
            out[f"gap_{gap}us"] = Latency(ns).summary()
    finally:
        os.close(write_end)
        os.sched_setaffinity(0, saved)
        got = int.from_bytes(os.read(done_r, 8), "little")
        os.close(done_r)
        os.close(done_w)
        os.waitpid(pid, 0)
    if got != sent:
        raise SystemExit(f"pipe: the reader got {got} bytes of {sent}")
    return out


def bench_zmq_send(calls: int) -> dict[str, dict]:
    """Two-part 100-byte sends on a PUB of this process to a SUB of this process."""
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://127.0.0.1:{port}")
    payload = bytes(100)
    received = 0

    def drain() -> int:
        """Read every waiting message; return how many were measured ones (not probes)."""
        n = 0
        while True:
            try:
                parts = sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return n
            n += parts == [b"topic", payload]

    try:
        deadline = time.monotonic() + 30  # the subscription reaches the publisher
        while not sub.poll(10):
            if time.monotonic() > deadline:
                raise SystemExit("zmq_send: the subscription never took effect")
            pub.send_multipart([b"probe", b""])
        drain()
        out = {}
        sent = 0
        for gap in GAPS_US:
            ns = []
            for i in range(calls):
                _spin(gap)
                t0 = time.perf_counter_ns()
                pub.send(b"topic", zmq.SNDMORE)
                pub.send(payload)
                ns.append(time.perf_counter_ns() - t0)
                sent += 1
                if i % 16 == 15:
                    received += drain()
            out[f"gap_{gap}us"] = Latency(ns).summary()
        deadline = time.monotonic() + 30
        while received < sent and time.monotonic() < deadline:
            if sub.poll(100):
                received += drain()
        if received != sent:
            raise SystemExit(f"zmq_send: {received} messages received of {sent}")
        return out
    finally:
        sub.close(linger=0)
        pub.close(linger=0)
        ctx.term()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.calls < 10:
        parser.error("--calls must be >= 10")
    cpus = sorted(os.sched_getaffinity(0))
    report: dict = {
        "benchmark": "ThreadWakeupCost",
        "machine": machine_facts(),
        "load_average": os.getloadavg()[0],
    }
    if len(cpus) >= 2:
        report["pipe_other_cpu"] = bench_pipe(cpus[1], cpus[0], args.calls)
    report["pipe_same_cpu"] = bench_pipe(cpus[0], cpus[0], args.calls)
    report["zmq_send"] = bench_zmq_send(args.calls)
    load = report["load_average"]
    print(f"waker's time per call, us (p50 / p90), {args.calls} calls; load {load:.2f}")
    print(f"{'case':<16}" + "".join(f"{f'gap {g} us':>18}" for g in GAPS_US))
    for case in ("pipe_other_cpu", "pipe_same_cpu", "zmq_send"):
        if case in report:
            cells = [report[case][f"gap_{g}us"] for g in GAPS_US]
            print(f"{case:<16}" + "".join(f"{c['p50']:>9.2f} /{c['p90']:>7.2f}" for c in cells))
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
