"""The child processes of ``tickpath bench``: publisher, echo, subscriber; sender, sink.

Topology (every arrow a tcp loopback hop; ``B`` binds, ``C`` connects)::

    publisher PUB -C-> B SUB tickpath serve PUB B <-C- SUB subscriber
              PUB -C-> B SUB echo           PUB B <-C-'

Each role is a separate process (``python -m tickpath.engine.bench.roles ROLE ...``),
prints one ``ready ...`` line when its sockets are up, and the publisher and
subscriber then wait for ``start T0_NS END_NS`` on stdin, so that every clock in
the run refers to the same instants (``time.time_ns()``, CLOCK_REALTIME, which
all processes of one host share).

* **publisher**: sends the frames of a plan (``plan.npz``, written by
  :mod:`tickpath.engine.bench.latency`) open loop, frame ``i`` due at ``T0 + due_ns[i]``
  to the engine or to the echo.  It stamps the *intended* time into the
  header's ``send_ns``, so a frame sent late still counts its lateness as
  latency (no coordinated omission), and it records when each frame really
  left (``sent.npy``) so its own lag is reported too.  It sleeps until
  ``spin_us`` before the due time, then busy-waits; timer slack is set to 1 ns
  (Linux), so the sleep alone wakes within tens of microseconds.
* **echo**: the raw pyzmq baseline.  A SUB bound like the engine's ingest,
  a PUB bound like its result socket; for each frame it sends one two-part
  message, a topic and a payload of the size of the result the engine sends for
  that kind, starting with the input frame as received (so the subscriber reads
  its ``send_ns`` and ``seq``).  Between frames it publishes a ``stats``
  heartbeat every :data:`HEARTBEAT_S`, as the engine publishes its stats.
* **subscriber**: one SUB connected to both; per message, one ``recv_into`` of
  the payload (truncated to the :data:`PREFIX_BYTES` of header, common result block
  and echo stamps, or whole for every ``full_every``-th message) and one ``time.time_ns()``.
  Chain results (topic ``chain.<sym>``, milli path, many records per frame) keep the
  same prefix (header, the first record's common block, its backend and flags);
  every ``chain_every``-th is kept whole, up to ``chain_keep`` frames.  Everything
  else happens after the run, in the parent.

``bench ingest`` uses two more: **sender** (every frame of a file, as fast as
the socket takes them, SNDHWM 0) and **sink** (reads every result message,
checks each topic's sequence numbers and counts messages and records, until
none came for ``idle_s`` or SIGINT/SIGTERM, then writes what it counted).
"""

from __future__ import annotations

import argparse
import ctypes
import signal
import sys
import time

import numpy as np
import zmq

from tickpath.engine.feed.join import publishing_socket, wait_for_subscribers
from tickpath.engine.wire import schema as s

HEARTBEAT_S = 0.25
HEARTBEAT_TOPIC = b"stats"
ECHO_HEARTBEAT = b'{"echo": true}'
COMMON_END = s.HEADER_SIZE + 48  # header + the common result block (ts_ns .. symbol)
# The echo writes its own two stamps here (recv, before send), as the engine stamps
# recv_ns and done_ns: the baseline's hops then split into the same stages.
ECHO_STAMPS = slice(COMMON_END, COMMON_END + 16)
PREFIX_BYTES = ECHO_STAMPS.stop  # what the subscriber keeps of every message
# payload the echo sends per input kind: the size of the engine's result frame for it
ECHO_PAYLOAD = {
    s.KIND_TRADE: s.HEADER_SIZE + s.RESULT_TRADE_SIZE,
    s.KIND_QUOTE: s.HEADER_SIZE + s.RESULT_QUOTE_SIZE,
    s.KIND_ORDER: s.HEADER_SIZE + s.RESULT_BOOK_SIZE,
}
ECHO_TOPIC = {s.KIND_TRADE: b"trade.0", s.KIND_QUOTE: b"quote.0", s.KIND_ORDER: b"book.0"}
FULL_ROW_BYTES = max(ECHO_PAYLOAD.values()) + 8  # the largest result frame fits whole
CHAIN_TOPIC = b"chain."
HWM = 100_000  # frames, as the engine's defaults
# Deadlines for start-up, generous for a busy machine: a fresh install's engine compiles
# its kernels first (about 30 s of CPU, over 100 s of wall time seen on a loaded 2-core VM).
READY_TIMEOUT_S = 600.0
JOIN_TIMEOUT_S = 120.0
_stop = False


def _on_signal(signum: int, frame: object) -> None:
    global _stop
    _stop = True


def _set_timer_slack_ns(ns: int) -> bool:
    """prctl(PR_SET_TIMERSLACK): how late the kernel may wake a sleeper (default 50 us)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(29, ctypes.c_ulong(ns), 0, 0, 0) == 0  # 29: PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        return False


def _wait_for_start() -> tuple[int, int]:
    line = sys.stdin.readline().split()
    if len(line) != 3 or line[0] != "start":
        raise SystemExit(f"expected 'start T0_NS END_NS' on stdin, got {line!r}")
    return int(line[1]), int(line[2])


def run_publisher(args: argparse.Namespace) -> int:
    """Send the plan's frames open loop; save the actual send times."""
    plan = np.load(args.plan)
    flat = np.ascontiguousarray(plan["frames"])  # every frame, concatenated, 8-byte aligned
    offset = plan["offset"].tolist()
    length = plan["length"].tolist()
    due = plan["due_ns"]
    target = plan["target"].tolist()
    send_ns = flat.view(np.int64)  # header.send_ns of frame i is send_ns[(offset[i] + 24) // 8]
    slack_ok = _set_timer_slack_ns(1)
    ctx = zmq.Context()
    socks = []
    for endpoint in (args.engine, args.echo):
        sock = publishing_socket(ctx, sndhwm=HWM, linger_ms=2000)
        sock.connect(endpoint)
        socks.append(sock)
    # both subscriptions must have reached us, or the first frames are dropped (slow joiner)
    wait_for_subscribers(socks, args.join_timeout, names=("engine", "echo"))
    print(f"ready timer_slack_1ns={slack_ok}", flush=True)
    t0, _ = _wait_for_start()
    n = len(offset)
    sent = np.zeros(n, np.int64)
    mv = memoryview(flat)
    clock = time.time_ns
    sleep = time.sleep
    spin_ns = int(args.spin_us * 1000)
    sends = [sock.send for sock in socks]
    due_abs = (due + t0).tolist()
    for i in range(n):
        when = due_abs[i]
        ahead = when - clock() - spin_ns
        if ahead > 0:
            sleep(ahead * 1e-9)
        while spin_ns and clock() < when:
            pass
        o = offset[i]
        send_ns[(o + 24) >> 3] = when
        sent[i] = clock()
        sends[target[i]](mv[o : o + length[i]])
        if _stop:
            sent = sent[: i + 1]
            break
    np.save(args.out, sent)
    for sock in socks:
        sock.close()
    ctx.term()
    return 0


def run_echo(args: argparse.Namespace) -> int:
    """Republish every frame as one result-sized message, until SIGINT/SIGTERM."""
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, HWM)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVTIMEO, 100)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.bind("tcp://127.0.0.1:*")
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, HWM)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind("tcp://127.0.0.1:*")
    ingest = sub.getsockopt_string(zmq.LAST_ENDPOINT)
    publish = pub.getsockopt_string(zmq.LAST_ENDPOINT)
    print(f"ready {ingest} {publish}", flush=True)
    buf = np.zeros(max(args.max_frame_bytes, FULL_ROW_BYTES), np.uint8)
    kind = buf[6:8].view("<u2")
    stamps = buf[ECHO_STAMPS].view(np.int64)  # over the input's records: nobody reads them
    mv = memoryview(buf)
    n_kinds = max(ECHO_PAYLOAD) + 1
    topics = [ECHO_TOPIC.get(k, b"other") for k in range(n_kinds)]
    payloads = [mv[: ECHO_PAYLOAD.get(k, s.HEADER_SIZE)] for k in range(n_kinds)]
    recv_into = sub.recv_into
    send = pub.send
    interval = int(HEARTBEAT_S * 1e9)
    next_beat = 0
    more = zmq.SNDMORE
    clock = time.time_ns
    while not _stop:
        try:
            recv_into(buf)
            stamps[0] = clock()
            k = int(kind[0])
            if k >= n_kinds:
                k = 0
            stamps[1] = clock()
            send(topics[k], more)
            send(payloads[k])
        except zmq.Again:
            pass
        now = time.monotonic_ns()
        if now >= next_beat:
            pub.send_multipart([HEARTBEAT_TOPIC, ECHO_HEARTBEAT])
            next_beat = now + interval
    sub.close()
    pub.close()
    ctx.term()
    return 0


def run_subscriber(args: argparse.Namespace) -> int:
    """Receive every result and echo message until END_NS; save them with their arrival times."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 0)  # never drop here: the subscriber is not under test
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 100)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    for endpoint in args.connect:
        sock.connect(endpoint)
    # Ready once a stats message came from every publisher: the subscriptions are through.
    seen: set[bool] = set()
    deadline = time.monotonic() + args.ready_timeout
    while len(seen) < len(args.connect):
        if time.monotonic() > deadline or _stop:
            print("error: no stats from every publisher", flush=True)
            return 1
        try:
            topic = sock.recv()
            payload = sock.recv()
        except zmq.Again:
            continue
        if topic == HEARTBEAT_TOPIC:
            seen.add(payload == ECHO_HEARTBEAT)
    print("ready", flush=True)
    _, end_ns = _wait_for_start()
    capacity = args.capacity
    every = args.full_every
    prefix = np.zeros((capacity, PREFIX_BYTES), np.uint8)
    full = np.zeros((capacity // every + 1, FULL_ROW_BYTES), np.uint8)
    arrival = np.zeros(capacity, np.int64)
    length = np.zeros(capacity, np.int32)
    topic_buf = bytearray(64)
    spill = bytearray(max(FULL_ROW_BYTES, args.chain_bytes))
    stats_topic = HEARTBEAT_TOPIC[0]
    # chain results: first topic byte compared first (-1: never, without chains)
    chain_topic = CHAIN_TOPIC[0] if args.chain_bytes else -1
    chain_every = args.chain_every
    chain_keep = args.chain_keep if args.chain_bytes else 0
    chain_full = np.zeros((chain_keep, args.chain_bytes), np.uint8)
    chain_at = np.zeros(chain_keep, np.int64)
    chains = kept = 0
    engine_stats = b"{}"
    stats_at = -1  # messages received when the last engine stats arrived
    overflow = 0
    i = 0
    clock = time.time_ns
    recv_into = sock.recv_into
    now = clock()
    while now < end_ns and not _stop:
        try:
            recv_into(topic_buf)
        except zmq.Again:
            now = clock()
            continue
        if topic_buf[0] == stats_topic:
            payload = sock.recv()
            if payload != ECHO_HEARTBEAT:
                engine_stats = payload
                stats_at = i
            now = clock()
            continue
        if i == capacity:
            recv_into(spill)
            overflow += 1
            now = clock()
            continue
        if topic_buf[0] == chain_topic and topic_buf[:6] == CHAIN_TOPIC:
            if chains % chain_every == 0 and kept < chain_keep:
                n = recv_into(chain_full[kept])
                chain_at[kept] = i
                kept += 1
            elif i % every:
                n = recv_into(prefix[i])
            else:
                n = recv_into(full[i // every])
            chains += 1
        elif i % every:
            n = recv_into(prefix[i])
        else:
            n = recv_into(full[i // every])
        now = clock()
        arrival[i] = now
        length[i] = n
        i += 1
    sampled = np.arange(0, i, every)
    prefix[sampled] = full[: len(sampled), :PREFIX_BYTES]
    if kept:
        prefix[chain_at[:kept]] = chain_full[:kept, :PREFIX_BYTES]
    np.savez(
        args.out,
        prefix=prefix[:i],
        arrival=arrival[:i],
        length=length[:i],
        full=full[: len(sampled)],
        full_every=np.int64(every),
        overflow=np.int64(overflow),
        engine_stats=np.frombuffer(engine_stats, np.uint8),
        stats_at=np.int64(stats_at),
        chain_full=chain_full[:kept],
        chain_at=chain_at[:kept],
    )
    sock.close()
    ctx.term()
    return 0


def run_sender(args: argparse.Namespace) -> int:
    """``bench ingest``: send every frame of a file as fast as the socket takes them."""
    data = np.load(args.frames)
    flat = data["frames"]
    mv = memoryview(flat)
    ctx = zmq.Context()
    # SNDHWM 0: never drop in the sender: the receiver sets the pace
    pub = publishing_socket(ctx, sndhwm=0, linger_ms=-1)
    pub.connect(args.endpoint)
    wait_for_subscribers([pub], args.join_timeout, names=[args.endpoint])
    send = pub.send
    for o, n in zip(data["offset"].tolist(), data["length"].tolist()):
        send(mv[o : o + n], copy=False)
        if _stop:
            break
    pub.close(linger=-1)
    ctx.term()
    return 0


def run_sink(args: argparse.Namespace) -> int:
    """``bench ingest``: read every result message; exit ``idle_s`` after the last one.

    Checks each topic's sequence numbers as a subscriber does (the next ``seq``
    of a topic is ``seq + count``: per-symbol and batched topics alike) and writes
    ``records messages gaps lost`` (results received, messages, sequence gaps and
    the results they lost).  Also exits on SIGINT/SIGTERM; writes the counts either way.
    """
    import struct

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.RCVTIMEO, 100)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(args.connect)
    print("ready", flush=True)
    topic_buf = bytearray(256)
    buf = bytearray(1 << 20)  # header reads only: a longer message is truncated here
    count_seq = struct.Struct("<IQ")  # the header's count and seq
    at = s.HEADER.fields["count"][1]
    expected: dict[bytes, int] = {}
    records = messages = gaps = lost = 0
    idle_ns = int(args.idle_s * 1e9)
    idle_since = None
    while not _stop:
        try:
            n = sub.recv_into(topic_buf)
            topic = bytes(topic_buf[:n])
            size = 0
            while sub.getsockopt(zmq.RCVMORE):
                size = sub.recv_into(buf)
            idle_since = None
        except zmq.Again:
            now = time.monotonic_ns()
            if idle_since is None:
                idle_since = now
            elif messages and now - idle_since >= idle_ns:
                break
            continue
        messages += 1
        if topic == HEARTBEAT_TOPIC or size < s.HEADER_SIZE:
            continue
        count, seq = count_seq.unpack_from(buf, at)
        want = expected.get(topic)
        if want is not None and seq != want:
            gaps += 1
            lost += max(0, seq - want)
        expected[topic] = seq + count
        records += count
    with open(args.out, "w") as f:
        f.write(f"{records} {messages} {gaps} {lost}\n")
    sub.close(linger=0)
    ctx.term()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m tickpath.engine.bench.roles publisher|echo|subscriber ...``."""
    parser = argparse.ArgumentParser(prog="python -m tickpath.engine.bench.roles")
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("publisher")
    p.add_argument("--plan", required=True)
    p.add_argument("--engine", required=True)
    p.add_argument("--echo", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--join-timeout", type=float, default=JOIN_TIMEOUT_S)
    p.add_argument("--spin-us", type=float, default=0.0)
    p.set_defaults(func=run_publisher)
    e = sub.add_parser("echo")
    e.add_argument("--max-frame-bytes", type=int, default=1 << 20)
    e.set_defaults(func=run_echo)
    c = sub.add_parser("subscriber")
    c.add_argument("--connect", action="append", required=True)
    c.add_argument("--capacity", type=int, required=True)
    c.add_argument("--full-every", type=int, default=4)
    c.add_argument("--out", required=True)
    c.add_argument("--ready-timeout", type=float, default=READY_TIMEOUT_S)
    c.add_argument("--chain-bytes", type=int, default=0)  # largest chain frame; 0: no chains
    c.add_argument("--chain-every", type=int, default=1)
    c.add_argument("--chain-keep", type=int, default=0)
    c.set_defaults(func=run_subscriber)
    d = sub.add_parser("sender")
    d.add_argument("--frames", required=True)
    d.add_argument("--endpoint", required=True)
    d.add_argument("--join-timeout", type=float, default=JOIN_TIMEOUT_S)
    d.set_defaults(func=run_sender)
    k = sub.add_parser("sink")
    k.add_argument("--connect", required=True)
    k.add_argument("--out", required=True)
    k.add_argument("--idle-s", type=float, default=2.0)
    k.set_defaults(func=run_sink)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
