"""The streaming engine: receive a frame, run the kernels on it, publish the results.

Topology (one thread, no queue hop between a tick and its features)::

    publishers -PUB-> [SUB] -> on_<kind>_frame() -> [PUB] -> subscribers
                              (one numba call:     (one send per result)
                               checks, sequence,
                               analytics, results)

The kernels are compiled (or loaded from numba's cache) in :meth:`Engine.start`,
before the sockets open, so no tick ever waits for the JIT.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import zmq

from tickpath.engine.config import EngineConfig
from tickpath.engine.ingest.receiver import FrameReceiver
from tickpath.engine.service import descriptors
from tickpath.engine.service.publisher import ResultPublisher
from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu import streaming as k

log = logging.getLogger("tickpath.engine")


def streaming_params(config: EngineConfig, max_records: int) -> k.StreamingParams:
    """Map the validated config onto the kernels' parameters."""
    a = config.analytics
    return k.StreamingParams(
        n_symbols=a.n_symbols,
        max_streams=config.ingest.max_streams,
        ema_spans=tuple(a.ema_spans),
        vwap_window_ns=int(a.vwap_window_s * 1e9),
        vwap_ring=a.vwap_ring,
        vol_window=a.vol_window,
        bar_ns=int(a.bar_s * 1e9),
        book_levels=a.book_levels,
        book_orders=a.book_orders,
        max_records=max_records,
    )


class StreamProcessor:
    """The socket-free core: a receive buffer, the streaming state and the kernels.

    ``process(nbytes, recv_ns)`` runs the kernels on the frame in ``buffer``
    and leaves its result frames in the state's output arrays, where the
    publisher sends them from.  Tests and benchmarks drive it directly.
    """

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        size = config.ingest.max_frame_bytes
        body = size - s.HEADER_SIZE
        self.buffer = np.zeros(size, np.uint8)
        self.header = self.buffer[: s.HEADER_SIZE].view(s.HEADER)
        self.trades = self._view(s.TRADE, body)
        self.quotes = self._view(s.QUOTE, body)
        self.orders = self._view(s.ORDER, body)
        self._kind = self.buffer[6:8].view("<u2")
        max_records = body // min(s.TRADE_SIZE, s.QUOTE_SIZE, s.ORDER_SIZE)
        self.state = k.new_state(streaming_params(config, max_records))

    def _view(self, dtype: np.dtype, body: int) -> np.ndarray:
        n = body // dtype.itemsize
        return self.buffer[s.HEADER_SIZE : s.HEADER_SIZE + n * dtype.itemsize].view(dtype)

    def warm_up(self) -> float:
        """Run every kernel once on the real buffers' types, reset all state; return seconds."""
        t0 = time.perf_counter()
        saved = self.buffer.copy()
        self.buffer[:] = 0
        self.header[0] = (s.MAGIC, s.VERSION, 0, 0, 1, 0, 0)
        self.trades[0] = (1, 0, 1, 0, 0, 100 * s.PRICE_SCALE, s.SIZE_SCALE, 1)
        self.quotes[0] = (
            1, 0, 0, 99 * s.PRICE_SCALE, s.SIZE_SCALE, 101 * s.PRICE_SCALE, s.SIZE_SCALE,
        )  # fmt: skip
        self.orders[0] = (1, 0, s.ACTION_ADD, s.SIDE_BUY, 0, 1, 99 * s.PRICE_SCALE, s.SIZE_SCALE)
        for kind, size in (
            (s.KIND_QUOTE, s.QUOTE_SIZE),
            (s.KIND_TRADE, s.TRADE_SIZE),
            (s.KIND_ORDER, s.ORDER_SIZE),
        ):
            self.header[0]["kind"] = kind
            if kind == s.KIND_QUOTE:  # overlapping views: rewrite the record of this kind
                self.quotes[0] = (
                    1, 0, 0, 99 * s.PRICE_SCALE, s.SIZE_SCALE, 101 * s.PRICE_SCALE, s.SIZE_SCALE,
                )  # fmt: skip
            elif kind == s.KIND_TRADE:
                self.trades[0] = (1, 0, 1, 0, 0, 100 * s.PRICE_SCALE, s.SIZE_SCALE, 1)
            else:
                self.orders[0] = (
                    1, 0, s.ACTION_ADD, s.SIDE_BUY, 0, 1, 99 * s.PRICE_SCALE, s.SIZE_SCALE,
                )  # fmt: skip
            self.process(s.HEADER_SIZE + size, 0)
        k.reset_state(self.state)
        self.buffer[:] = saved
        return time.perf_counter() - t0

    @property
    def kind(self) -> int:
        """Kind field of the frame in the buffer."""
        return int(self._kind[0])

    def process(self, nbytes: int, recv_ns: int) -> int:
        """Run the kernels on the frame of ``nbytes`` in ``buffer``; return the results ready.

        The result frames are left in the state's output arrays until the next
        call.  ``nbytes == -2`` stands for a multipart message, ``nbytes >
        len(buffer)`` for a truncated oversize frame: both are counted and rejected here.
        """
        st = self.state
        if nbytes < 0 or nbytes > len(self.buffer):
            st.n_touched[:] = 0
            st.counters[k.C_FRAMES] += 1
            if nbytes < 0:
                st.counters[s.REJECT_MULTIPART] += 1
            else:
                st.counters[k.C_BYTES] += nbytes
                st.counters[s.REJECT_OVERSIZE] += 1
            return 0
        kind = int(self._kind[0]) if nbytes >= 8 else 0
        if kind == s.KIND_QUOTE:
            return k.on_quote_frame(
                self.header, self.quotes, nbytes, recv_ns, st.streams, st.counters, st.sym_i,
                st.touched, st.touched_list, st.n_touched, st.out_seq, st.out_quote,
            )  # fmt: skip
        if kind == s.KIND_ORDER:
            return k.on_order_frame(
                self.header, self.orders, nbytes, recv_ns, st.streams, st.counters, st.sym_i,
                st.book, st.touched, st.touched_list, st.n_touched, st.out_seq, st.out_book,
            )  # fmt: skip
        # Trades, and every other kind: the trade kernel's header check rejects those.
        p = st.params
        return k.on_trade_frame(
            self.header, self.trades, nbytes, recv_ns, st.streams, st.counters, st.sym_i,
            st.sym_f, st.alphas, st.ring_ts, st.ring_f, st.ret_ring, p.vwap_window_ns, p.bar_ns,
            st.touched, st.touched_list, st.n_touched, st.out_seq, st.out_trade, st.out_bar,
        )  # fmt: skip

    def results(self) -> list[tuple[str, np.ndarray]]:
        """The emitted result frames as ``(analytic, record copy)``: for tests and tools."""
        st = self.state
        outputs = (st.out_quote, st.out_trade, st.out_bar, st.out_book)
        found = []
        for analytic, out in enumerate(outputs):
            for j in range(int(st.n_touched[analytic])):
                found.append((k.ANALYTIC_NAMES[analytic], out[j].copy()))
        return found

    def feed(self, frame: bytes, recv_ns: int = 0) -> list[tuple[str, np.ndarray]]:
        """Copy ``frame`` into the buffer, process it, return its results (tests, tools)."""
        n = len(frame)
        if n <= len(self.buffer):
            self.buffer[:n] = np.frombuffer(frame, np.uint8)
        return self.results() if self.process(n, recv_ns) else []

    def stats(self, started_ns: int) -> dict:
        """The ``stats`` message: counters, rejects by reason, gaps, per-analytic counts."""
        c = self.state.counters.tolist()
        streams = self.state.streams
        active = np.flatnonzero(streams[:, k.S_NEXT] >= 0)
        return {
            "uptime_s": round((time.time_ns() - started_ns) / 1e9, 3),
            "frames_received": c[k.C_FRAMES],
            "frames_accepted": c[k.C_FRAMES_ACCEPTED],
            "records_received": c[k.C_RECORDS],
            "records_accepted": c[k.C_RECORDS_ACCEPTED],
            "bytes_received": c[k.C_BYTES],
            "rejected": {name: c[i] for i, name in enumerate(s.REJECT_NAMES)},
            "frames_rejected": sum(c[i] for i in s.FRAME_REJECTS),
            "records_rejected": sum(c[i] for i in s.RECORD_REJECTS),
            "gaps": c[k.C_GAPS],
            "records_lost": c[k.C_LOST],
            "sequence_resets": c[k.C_RESETS],
            "processed": {name: c[i] for name, i in k.PROCESSED_COUNTERS.items()},
            "results_published": c[k.C_RESULTS],
            "book": {
                "duplicate_id": c[k.C_BOOK_DUPLICATE_ID],
                "unknown_order": c[k.C_BOOK_UNKNOWN_ORDER],
                "overfill": c[k.C_BOOK_OVERFILL],
                "level_overflow": c[k.C_BOOK_LEVEL_OVERFLOW],
                "table_full": c[k.C_BOOK_TABLE_FULL],
            },
            "vwap_window_truncated": c[k.C_WINDOW_TRUNCATED],
            "streams": {
                str(int(i)): {
                    "next_seq": int(streams[i, k.S_NEXT]),
                    "frames": int(streams[i, k.S_FRAMES]),
                    "gaps": int(streams[i, k.S_GAPS]),
                    "records_lost": int(streams[i, k.S_LOST]),
                }
                for i in active
            },
        }


class EngineExtension:
    """What a component plugged into the engine loop may implement (every method optional).

    Extensions (the journal, the snapshotter, the dispatcher, the FPGA backend)
    run on the engine thread, so they never race the kernels or the sockets.

    * ``on_start(engine)``: after the kernels are ready, before the sockets open
      (recovery replays the journal here).
    * ``on_dropped(nbytes)``: a message refused before the buffer (-2 multipart, or the
      length of an oversize frame), before it is counted.
    * ``on_frame(frame)``: every received frame, before it is processed; ``frame``
      is a memoryview of the receive buffer, valid only during the call.
    * ``on_results(engine, n)``: after a frame produced ``n`` results (already published).
    * ``sockets()``: ``[(zmq socket, handler)]`` the loop also polls; ``handler(engine)``
      runs when its socket is readable.  With none, the loop blocks in ``recv`` only.
    * ``on_tick(engine, now_ns)``: once per stats interval.
    * ``stats()``: a dict merged into the ``stats`` message under the extension's ``name``.
    * ``close()``: at shutdown.
    """

    name = "extension"


class Engine:
    """One streaming engine: ingest socket, processor and result publisher, in one thread."""

    def __init__(
        self,
        config: EngineConfig,
        context: zmq.Context | None = None,
        extensions: list[EngineExtension] | None = None,
    ) -> None:
        self.config = config
        self.context = context or zmq.Context.instance()
        self.extensions = list(extensions or [])
        self.processor = StreamProcessor(config)
        self.receiver: FrameReceiver | None = None
        self.publisher: ResultPublisher | None = None
        self.started_ns = 0
        self.stop_event = threading.Event()
        self._descriptors = False  # a descriptors.claim() to release at close

    def start(self) -> None:
        """Compile the kernels (or load them from cache), then open the sockets."""
        seconds = self.processor.warm_up()
        log.info("kernels ready in %.2f s (compiled or loaded from numba's cache)", seconds)
        if not self._descriptors:  # RLIMIT_NOFILE up to the hard limit, less a reserve
            descriptors.claim(self.config.connections.nofile_reserve)
            self._descriptors = True
        for ext in self._having("on_start"):
            ext.on_start(self)
        self.receiver = FrameReceiver(
            self.context,
            self.config.ingest,
            self.processor.buffer,
            security=self.config.security,
            connections=self.config.connections,
        )
        self.publisher = ResultPublisher(
            self.context,
            self.config.publish,
            self.config.analytics.n_symbols,
            self.config.security,
            self.config.connections,
        )
        self.started_ns = time.time_ns()
        log.info("routing: micro path (quote, trade, bar, book) -> cpu (numba), inline on ingest")
        log.info(
            "ingest %s (rcvhwm %d), publish %s (sndhwm %d), %d symbols",
            ", ".join(self.receiver.endpoints),
            self.config.ingest.effective_rcvhwm,
            self.publisher.endpoint,
            self.config.publish.effective_sndhwm,
            self.config.analytics.n_symbols,
        )

    def _having(self, method: str) -> list[EngineExtension]:
        return [ext for ext in self.extensions if hasattr(ext, method)]

    def close(self) -> None:
        """Close the extensions and the sockets (idempotent)."""
        for ext in self._having("close"):
            try:
                ext.close()
            except Exception:  # shutting down: report, keep closing the rest
                log.exception("closing %s failed", getattr(ext, "name", ext))
        self.extensions = []
        if self.receiver is not None:
            self.receiver.close()
            self.receiver = None
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None
        if self._descriptors:
            descriptors.release()
            self._descriptors = False

    def run(self, duration_s: float | None = None) -> None:
        """Receive, process and publish until :meth:`stop` is called (or ``duration_s``)."""
        interval_ns = int(self.config.publish.stats_interval_s * 1e9)
        next_stats = time.monotonic_ns() + interval_ns
        deadline = None if duration_s is None else time.monotonic_ns() + int(duration_s * 1e9)
        receiver = self.receiver
        proc = self.processor
        publish = self.publisher.publish_results
        state = proc.state
        clock = time.time_ns
        stop = self.stop_event
        frame_hooks = [ext.on_frame for ext in self._having("on_frame")]
        drop_hooks = [ext.on_dropped for ext in self._having("on_dropped")]
        result_hooks = [ext.on_results for ext in self._having("on_results")]
        tick_hooks = [ext.on_tick for ext in self._having("on_tick")]
        extra = [pair for ext in self._having("sockets") for pair in ext.sockets()]
        poller = None
        if extra:
            poller = zmq.Poller()
            poller.register(receiver.socket, zmq.POLLIN)
            handlers = {}
            for sock, handler in extra:
                poller.register(sock, zmq.POLLIN)
                handlers[sock] = handler
        view = memoryview(proc.buffer)
        receive = receiver.receive
        while not stop.is_set():
            if poller is None:
                nbytes = receive()
            else:
                nbytes = -1
                ready = dict(poller.poll(100))
                for sock in ready:
                    if sock is not receiver.socket:
                        handlers[sock](self)
                if receiver.socket in ready:
                    nbytes = receiver.receive()
            if nbytes != -1:
                if frame_hooks and 0 <= nbytes <= len(view):
                    for hook in frame_hooks:
                        hook(view[:nbytes])
                elif drop_hooks and (nbytes < 0 or nbytes > len(view)):
                    for hook in drop_hooks:
                        hook(nbytes)
                n = proc.process(nbytes, clock())
                if n:
                    publish(state, n)
                    for hook in result_hooks:
                        hook(self, n)
            now = time.monotonic_ns()
            if now >= next_stats:
                for hook in tick_hooks:
                    hook(self, time.time_ns())
                self.publisher.publish_stats(self.stats())
                next_stats = now + interval_ns
            if deadline is not None and now >= deadline:
                break
        self.publisher.publish_stats(self.stats())

    def stop(self) -> None:
        """Ask :meth:`run` to return (thread-safe)."""
        self.stop_event.set()

    def stats(self) -> dict:
        """The ``stats`` message (see :meth:`StreamProcessor.stats`)."""
        stats = self.processor.stats(self.started_ns)
        for ext in self._having("stats"):
            stats[ext.name] = ext.stats()
        return stats
