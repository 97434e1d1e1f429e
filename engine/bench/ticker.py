"""A ping-pong probe of a running engine: one quote in, its quote result back.

`Ticker` sends single-record QUOTE frames of one symbol to the engine's ingest endpoint
and waits for the ``quote.<symbol>`` result naming that frame, so each round trip is one
tick through decode, the micro-path kernels and the publisher. It also keeps the latest
``stats`` message seen on the way. Used where a closed loop is the right measure (the
milli path's effect on the micro path in bench/bench_chains.py and
tests/dispatch/test_nonblocking.py); `tickpath bench latency` is the open-loop benchmark.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import numpy as np
import zmq

from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s


class Ticker:
    """Round trips of single-record quotes of `symbol` on `stream`."""

    def __init__(
        self,
        ctx: zmq.Context,
        ingest: str,
        results: str,
        symbol: int = 1,
        stream: int = 1,
        curve: tuple[Any, Any] | None = None,
    ) -> None:
        """``curve``: ``(server_key, client_key)`` of `apply_curve_client` for an engine
        with CURVE on; None for a plain one."""
        self.pub = ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.sub = ctx.socket(zmq.SUB)
        if curve is not None:
            from tickpath.engine.security.curve import apply_curve_client

            apply_curve_client(self.pub, *curve)
            apply_curve_client(self.sub, *curve)
        self.pub.connect(ingest)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"quote.%d" % symbol)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"stats")
        self.sub.connect(results)
        self.stream = stream
        self.seq = 0
        # the last answered ping's stages from the engine's stamps on its result, in ns:
        # ingest (send to the tick thread's receive: sockets, I/O thread, queue), kernels
        # (receive to done), publish (done to this process's receive)
        self.stages_ns = (0, 0, 0)
        self.stats_payload = b""
        self.quote = np.zeros(1, s.QUOTE)
        self.quote["symbol"] = symbol
        self.quote["bid_size"] = self.quote["ask_size"] = s.SIZE_SCALE

    def send_quotes(self, symbols: np.ndarray, mids: np.ndarray, stream: int = 3) -> None:
        """One frame of quotes (two ticks wide) of `symbols` at `mids`, on another stream."""
        q = np.zeros(len(symbols), s.QUOTE)
        q["ts_ns"] = time.time_ns()
        q["symbol"] = symbols
        q["bid_price"] = np.round((mids - 0.0001) * s.PRICE_SCALE)
        q["ask_price"] = np.round((mids + 0.0001) * s.PRICE_SCALE)
        q["bid_size"] = q["ask_size"] = s.SIZE_SCALE
        self.pub.send(codec.encode_frame(s.KIND_QUOTE, stream, 0, q, time.time_ns()))

    def tick(self, timeout_s: float = 5.0) -> float | None:
        """One ping; its round trip in seconds (None: no answer in time)."""
        self.quote["ts_ns"] = time.time_ns()
        mid = 1_000_000 + (self.seq % 50) * 100
        self.quote["bid_price"], self.quote["ask_price"] = mid - 100, mid + 100
        frame = codec.encode_frame(s.KIND_QUOTE, self.stream, self.seq, self.quote, time.time_ns())
        self.seq += 1
        t0 = time.perf_counter()
        self.pub.send(frame)
        deadline = t0 + timeout_s
        while True:
            left = deadline - time.perf_counter()
            if left <= 0 or not self.sub.poll(int(left * 1000) + 1):
                return None
            topic, payload = self.sub.recv_multipart()
            if topic == b"stats":
                self.stats_payload = payload
                continue
            _, records = codec.decode_frame(payload)
            if int(records[0]["in_seq"]) == self.seq - 1:
                rtt = time.perf_counter() - t0
                r = records[0]
                send, recv, done = int(r["in_send_ns"]), int(r["recv_ns"]), int(r["done_ns"])
                self.stages_ns = (recv - send, done - recv, time.time_ns() - done)
                return rtt

    def stats(self, timeout_s: float = 5.0) -> dict:
        """The next stats message (waits for a fresh one; {} if none comes in time)."""
        self.stats_payload = b""
        deadline = time.monotonic() + timeout_s
        while not self.stats_payload and time.monotonic() < deadline:
            if self.sub.poll(100):
                topic, payload = self.sub.recv_multipart()
                if topic == b"stats":
                    self.stats_payload = payload
        return msgspec.json.decode(self.stats_payload) if self.stats_payload else {}

    def close(self) -> None:
        """Close both sockets."""
        self.pub.close()
        self.sub.close()
