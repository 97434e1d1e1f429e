"""EngineLoopProfile: where the engine's own time per frame goes, measured in-process.

The engine loop (:meth:`tickpath.engine.service.engine.Engine.run`) does, per frame::

    nbytes = recv_into(buffer)             # not timed here: the socket's share
    n = processor.process(nbytes, now)     # one numba call: checks, analytics, result frames
    if n: publisher.publish_results(state, n)  # one two-part send per result

This drives the same :class:`~tickpath.engine.service.engine.StreamProcessor` and
:class:`~tickpath.engine.service.publisher.ResultPublisher` on frames copied into the
receive buffer, and times ``process`` and ``publish_results`` separately with
``perf_counter_ns``, by input kind.  A SUB socket in this process receives the
results, drained outside the timed region, so every send really travels.
Two floors put the figures in proportion: ``process`` of a frame the kernel
rejects at its first header check (the Python wrapper plus numba's dispatch of
the call's arguments), and one raw pyzmq two-part send of a result-sized
message.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import zmq

from tickpath.engine.bench.common import Latency
from tickpath.engine.config import EngineConfig
from tickpath.engine.wire import schema as s

KIND_NAMES = {s.KIND_TRADE: "trade", s.KIND_QUOTE: "quote", s.KIND_ORDER: "order"}


def _drain(sock: zmq.Socket) -> None:
    while True:
        try:
            sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return


def profile_engine_loop(config: EngineConfig, frames: Sequence[bytes]) -> dict:
    """Time ``process`` and ``publish_results`` per frame; return summaries in microseconds.

    ``frames`` are input frames with contiguous sequence numbers per stream (as
    the engine would receive them); every one must be accepted.  Results are
    published in ``config.publish.mode``.
    """
    from tickpath.engine.service.engine import StreamProcessor
    from tickpath.engine.service.publisher import ResultPublisher

    proc = StreamProcessor(config)
    proc.warm_up()
    ctx = zmq.Context()
    pub_config = config.publish.__class__(endpoint="tcp://127.0.0.1:*", mode=config.publish.mode)
    publisher = ResultPublisher(ctx, pub_config, config.analytics.n_symbols)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(publisher.endpoint)
    time.sleep(0.3)  # the subscription reaches the publisher
    try:
        return _profile(proc, publisher, sub, frames)
    finally:
        sub.close(linger=0)
        publisher.close()
        ctx.term()


def _profile(proc: Any, publisher: Any, sub: zmq.Socket, frames: Sequence[bytes]) -> dict:
    buf = proc.buffer
    state = proc.state
    publish = publisher.publish_results
    clock = time.perf_counter_ns
    wall = time.time_ns
    n = len(frames)
    kinds = np.empty(n, np.int64)
    t_process = np.empty(n, np.int64)
    t_publish = np.zeros(n, np.int64)
    results = np.zeros(n, np.int64)
    for i, frame in enumerate(frames):
        size = len(frame)
        buf[:size] = np.frombuffer(frame, np.uint8)
        kinds[i] = int(proc.kind)
        t0 = clock()
        produced = proc.process(size, wall())
        t1 = clock()
        if produced:
            publish(state, produced)
            t_publish[i] = clock() - t1
        t_process[i] = t1 - t0
        results[i] = produced
        if i % 64 == 63:
            _drain(sub)
    _drain(sub)
    accepted = proc.stats(0)["records_accepted"]
    expected = sum(int(np.frombuffer(f, s.HEADER, 1)[0]["count"]) for f in frames)

    # floors: a frame rejected at the header check, and a raw two-part send
    bad = bytearray(frames[0])
    bad[0:4] = b"XXXX"
    buf[: len(bad)] = np.frombuffer(bytes(bad), np.uint8)
    floor = np.empty(min(n, 5000), np.int64)
    for i in range(len(floor)):
        t0 = clock()
        proc.process(len(bad), wall())
        floor[i] = clock() - t0
    payload = bytes(s.HEADER_SIZE + s.RESULT_QUOTE_SIZE)
    send = publisher.socket.send
    raw_send = np.empty(len(floor), np.int64)
    for i in range(len(floor)):
        t0 = clock()
        send(b"quote.0", zmq.SNDMORE)
        send(payload)
        raw_send[i] = clock() - t0
        if i % 64 == 63:
            _drain(sub)

    out: dict[str, Any] = {"frames": n, "records_accepted_ok": accepted == expected}
    by_kind = {}
    for kind, name in KIND_NAMES.items():
        sel = kinds == kind
        if sel.any():
            by_kind[name] = {
                "frames": int(sel.sum()),
                "process": Latency(t_process[sel]).summary(),
                "publish": Latency(t_publish[sel & (results > 0)]).summary(),
                "total": Latency(t_process[sel] + t_publish[sel]).summary(),
            }
    out["process"] = Latency(t_process).summary()
    out["publish"] = Latency(t_publish[results > 0]).summary()
    out["total"] = Latency(t_process + t_publish).summary()
    out["by_kind"] = by_kind
    out["results_per_frame_mean"] = round(float(results.mean()), 3)
    out["floor_process_rejected_frame"] = Latency(floor).summary()
    out["floor_raw_two_part_send"] = Latency(raw_send).summary()
    return out
