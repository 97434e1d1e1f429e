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
from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np
import zmq

from tickpath.engine.config import EngineConfig
from tickpath.engine.ingest.io_threads import engine_context
from tickpath.engine.ingest.receiver import FrameReceiver
from tickpath.engine.ingest.slicer import FrameSlicer
from tickpath.engine.service import descriptors, scheduling
from tickpath.engine.service.publisher import ResultPublisher
from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu import streaming as k
from tickpath.kernels.cpu.calls import compiled_for
from tickpath.kernels.cpu.streaming_view import CounterView, StreamTable

log = logging.getLogger("tickpath.engine")

STATS_VERSION = 2  # the ``stats`` message's schema version (README "The stats message")
# Symbols whose per-topic sequences one ``stats`` message carries: a larger universe is
# carried in turns (``topics_from``), so a message's size and the tick thread's time to
# build and encode it stay bounded (about 161 KiB and 0.25 ms) whatever ``n_symbols`` is.
TOPICS_PER_STATS = 4096
# How long the loop waits for a frame before it looks at the clock (stats, deadline, stop).
WAIT_MS = 100
# While no frame comes, the subscriptions queued for the publish socket are applied at most
# this often (a subscriber then gets publish.subscription_backlog applied per interval).
SUBSCRIPTIONS_EVERY_NS = 1_000_000
COMPILE_NOTICE_S = 2.0  # a start-up longer than this is compiling: say so


def _compile_notice(done: threading.Event) -> None:
    """After COMPILE_NOTICE_S of start-up, say whether the kernels compile or load slowly."""
    # The frame kernels are warmed first: a cache miss (counted before numba compiles)
    # tells a compile from a slow load.
    kernels = (k.on_quote_frame, k.on_trade_frame, k.on_order_frame)
    if done.wait(COMPILE_NOTICE_S):
        return
    while True:
        hits = sum(sum(d.stats.cache_hits.values()) for d in kernels)
        misses = sum(sum(d.stats.cache_misses.values()) for d in kernels)
        if misses:
            log.warning(
                "compiling kernels, first run only (about 30 s of CPU; later starts load "
                "them from numba's cache)"
            )
            return
        if hits:
            log.warning("loading kernels from numba's cache, slowly (a busy machine?)")
            return
        if done.wait(0.2):
            return


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
        max_gap=config.ingest.max_gap,
        failover_ns=int(config.ingest.failover_s * 1e9),
        max_clock_skew_ns=int(config.ingest.max_clock_skew_s * 1e9),
        **_shard_params(config),
    )


def _shard_params(config: EngineConfig) -> dict[str, int]:
    if not config.ingest.shard:
        return {}
    from tickpath.engine.cluster.shards import parse_shard

    index, count = parse_shard(config.ingest.shard)
    return {"shard_index": index, "shard_count": count}


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
        # Version 1 and 2 headers share their first 32 bytes; the kernels read
        # ``session`` only from a version 2 frame long enough to hold it.
        self.header = self.buffer[: s.HEADER_V2_SIZE].view(s.HEADER_V2)
        self.trades = self._view(s.TRADE, body)
        self.quotes = self._view(s.QUOTE, body)
        self.orders = self._view(s.ORDER, body)
        # records after a version 2 header (40 bytes)
        self.trades_v2 = self._view(s.TRADE, body, s.HEADER_V2_SIZE)
        self.quotes_v2 = self._view(s.QUOTE, body, s.HEADER_V2_SIZE)
        self.orders_v2 = self._view(s.ORDER, body, s.HEADER_V2_SIZE)
        # the header's version (word 2) and kind (word 3) as Python ints, no numpy scalar
        self._words = memoryview(self.buffer[:8]).cast("H")
        max_records = body // min(s.TRADE_SIZE, s.QUOTE_SIZE, s.ORDER_SIZE)
        self.state = k.new_state(streaming_params(config, max_records))
        if config.ingest.shard_map:  # uneven shards: ownership from the map, not symbol % N
            from tickpath.engine.cluster.shards import ShardMap

            shard_map = ShardMap.from_file(config.ingest.shard_map)
            symbols = np.arange(config.analytics.n_symbols)
            index = self.state.params.shard_index
            self.state.owned[:] = shard_map.shard_of(symbols) == index
        self._calls = self._bind_calls()

    def _bind_calls(self, compiled: bool = False) -> dict[tuple[int, bool], tuple]:
        """Per (kind, version 2): the kernel and its arguments after ``nbytes, recv_ns``,
        made once, so a frame costs one call and no attribute lookups.

        ``compiled`` (after the warm-up): the kernel is its overload for these arguments,
        called without the dispatcher's typing of every array (kernels/cpu/calls.py).
        """
        st = self.state
        p = st.params
        common = (st.streams, st.counters, st.limits, st.owned, st.sym_i)
        calls = {}
        for v2 in (False, True):
            calls[s.KIND_QUOTE, v2] = (k.on_quote_frame, self.quotes_v2 if v2 else self.quotes, (
                *common, st.touched, st.touched_list, st.n_touched, st.out_seq, st.out_quote,
            ))  # fmt: skip
            calls[s.KIND_ORDER, v2] = (k.on_order_frame, self.orders_v2 if v2 else self.orders, (
                *common, *k.book_arrays(st.book), st.touched, st.touched_list, st.n_touched,
                st.out_seq, st.out_book,
            ))  # fmt: skip
            # Trades, and every other kind: the trade kernel's header check rejects those.
            calls[s.KIND_TRADE, v2] = (k.on_trade_frame, self.trades_v2 if v2 else self.trades, (
                *common, st.sym_f, st.alphas, st.ring_ts, st.ring_f, st.ret_ring,
                p.vwap_window_ns, p.bar_ns, st.touched, st.touched_list, st.n_touched,
                st.out_seq, st.out_trade, st.out_bar,
            ))  # fmt: skip
        if compiled:
            for key, (kernel, records, rest) in calls.items():
                # process() passes nbytes, recv_ns and part as Python ints
                kernel = compiled_for(kernel, (self.header, records, 0, 0, 0, *rest))
                calls[key] = (kernel, records, rest)
        return calls

    def _view(self, dtype: np.dtype, body: int, offset: int = s.HEADER_SIZE) -> np.ndarray:
        n = (body - (offset - s.HEADER_SIZE)) // dtype.itemsize
        return self.buffer[offset : offset + n * dtype.itemsize].view(dtype)

    def warm_up(self) -> float:
        """Run every kernel once on the real buffers' types, reset all state; return seconds."""
        t0 = time.perf_counter()
        saved = self.buffer.copy()
        self.buffer[:] = 0
        self.header[0] = (s.MAGIC, s.VERSION, 0, 0, 1, 0, 0, 0)
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
        self._calls = self._bind_calls(compiled=True)
        return time.perf_counter() - t0

    @property
    def kind(self) -> int:
        """Kind field of the frame in the buffer."""
        return self._words[3]

    def records(self, kind: int) -> np.ndarray:
        """The records view of ``kind`` for the frame in the buffer (after its header)."""
        v2 = self._words[2] == s.VERSION_SESSION
        if kind == s.KIND_QUOTE:
            return self.quotes_v2 if v2 else self.quotes
        if kind == s.KIND_ORDER:
            return self.orders_v2 if v2 else self.orders
        return self.trades_v2 if v2 else self.trades

    def process(self, nbytes: int, recv_ns: int, part: int = 0) -> int:
        """Run the kernels on the frame of ``nbytes`` in ``buffer``; return the results ready.

        The result frames are left in the state's output arrays until the next
        call.  ``nbytes == -2`` stands for a multipart message, ``nbytes >
        len(buffer)`` for a truncated oversize frame: both are counted and rejected here.
        ``part`` > 0: the buffer holds continuation slice ``part`` of a larger frame
        (engine/ingest/slicer.py), counted as records of that frame, not as a frame.
        """
        if nbytes < 0 or nbytes > len(self.buffer):
            self.state.n_touched[:] = 0
            CounterView(self.state.counters).count_refused(nbytes)
            return 0
        words = self._words
        kind = words[3] if nbytes >= 8 else 0
        v2 = nbytes >= 6 and words[2] == s.VERSION_SESSION
        call = self._calls.get((kind, v2))
        if call is None:  # any other kind: the trade kernel's header check rejects it
            call = self._calls[s.KIND_TRADE, v2]
        kernel, records, rest = call
        return kernel(self.header, records, nbytes, recv_ns, part, *rest)

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

    def stats(self, started_ns: int, topics_from: int = 0) -> dict:
        """The ``stats`` message: counters, rejects by reason, gaps, per-analytic counts,
        and the per-topic sequences of symbols ``topics_from`` onwards (at most
        :data:`TOPICS_PER_STATS` of them)."""
        c = CounterView(self.state.counters).read()
        return {
            "version": STATS_VERSION,
            "state": "running" if c.frames_received else "ready",
            "uptime_s": round((time.time_ns() - started_ns) / 1e9, 3),
            "frames_received": c.frames_received,
            "frames_accepted": c.frames_accepted,
            "records_received": c.records_received,
            "records_accepted": c.records_accepted,
            "bytes_received": c.bytes_received,
            "rejected": c.rejected,
            "frames_rejected": c.frames_rejected,
            "records_rejected": c.records_rejected,
            "gaps": c.gaps,
            "records_lost": c.records_lost,
            "sequence_resets": c.sequence_resets,
            "session_takeovers": c.session_takeovers,
            "session_ends": c.session_ends,
            "processed": c.processed,
            "results_published": c.results_published,
            "book": c.book,
            "vwap_window_truncated": c.vwap_window_truncated,
            "streams": {
                str(row.stream): {
                    "next_seq": row.next_seq,
                    "frames": row.frames,
                    "gaps": row.gaps,
                    "records_lost": row.records_lost,
                    # join accounting: records before first_seq were never seen by this engine
                    "first_seq": row.first_seq,
                    "session": row.session,  # 0: version 1 frames
                    "takeovers": row.takeovers,
                }
                for row in StreamTable(self.state.streams).active()
            },
            "topics": self.topic_sequences(topics_from),
            "topics_from": topics_from,
        }

    def topic_sequences(self, first: int = 0) -> dict[str, list[int]]:
        """``{"<analytic>": [last result seq of <analytic>.<symbol>, per symbol]}`` for the
        symbols ``first .. first + TOPICS_PER_STATS - 1`` (those that exist); -1 for a
        topic with no result yet.

        A subscriber that received fewer results of a topic than this figure + 1
        lost the difference (a slow subscriber's tail loss shows here).  One list per
        analytic, not one key per topic: built and encoded in C (about 0.1 ms for 4,096
        symbols, against 3.4 ms for 16,384 keys), so the tick thread that sends the
        ``stats`` message does not stall on a large universe.
        """
        window = self.state.out_seq[:, first : first + TOPICS_PER_STATS]
        last = (window.astype(np.int64) - 1).tolist()
        return dict(zip(k.ANALYTIC_NAMES, last, strict=True))


class EngineExtension:
    """Base of a component plugged into the engine loop: a ``name`` and any of the hooks.

    Extensions (the journal, the snapshotter, the dispatcher, the FPGA backend)
    run on the engine thread, so they never race the kernels or the sockets.  Each
    hook is a typed protocol below; the engine calls a hook of the extensions that
    implement it (``isinstance(ext, FrameHook)``), and no other:

    * :class:`PrepareHook` ``on_prepare(engine)``: before the kernels are compiled.
    * :class:`StartHook` ``on_start(engine)``: after the kernels are ready, before the
      sockets open (recovery replays the journal here).
    * :class:`DropHook` ``on_dropped(nbytes, recv_ns)``: a message refused before the buffer
      (-2 multipart, or the length of an oversize frame), before it is counted.
    * :class:`FrameHook` ``on_frame(frame, recv_ns, part)``: every received frame, before
      it is processed; ``frame`` is a memoryview of the receive buffer, valid only during
      the call; ``recv_ns`` is the receive time the kernels get with it; ``part`` > 0:
      ``frame`` is continuation slice ``part`` of a larger frame (engine/ingest/slicer.py).
    * :class:`ResultsHook` ``on_results(engine, n)``: after a frame produced ``n`` results
      (already published).
    * :class:`SocketsHook` ``sockets()``: ``[(zmq socket, handler)]`` the loop also polls;
      ``handler(engine)`` runs when its socket is readable.  With none, the loop blocks
      in ``recv`` only.
    * :class:`TickHook` ``on_tick(engine, now_ns)``: once per stats interval.
    * :class:`StatsHook` ``stats()``: a dict merged into the ``stats`` message under the
      extension's ``name``.
    * :class:`CloseHook` ``close()``: at shutdown.
    """

    name = "extension"


@runtime_checkable
class PrepareHook(Protocol):
    """An extension that starts slow work of its own before the kernels are compiled
    (a child process that loads its kernels meanwhile)."""

    def on_prepare(self, engine: Engine) -> None: ...


@runtime_checkable
class StartHook(Protocol):
    """An extension that prepares itself once the kernels are ready."""

    def on_start(self, engine: Engine) -> None: ...


@runtime_checkable
class DropHook(Protocol):
    """An extension told of each message refused before the receive buffer."""

    def on_dropped(self, nbytes: int, recv_ns: int) -> None: ...


@runtime_checkable
class FrameHook(Protocol):
    """An extension that sees every received frame before it is processed."""

    def on_frame(self, frame: memoryview, recv_ns: int, part: int = 0) -> None:
        """``frame`` was received at ``recv_ns``; ``part`` > 0: it is continuation slice
        ``part`` of a larger frame (engine/ingest/slicer.py)."""


@runtime_checkable
class ResultsHook(Protocol):
    """An extension called after a frame produced results."""

    def on_results(self, engine: Engine, n_results: int) -> None: ...


@runtime_checkable
class SocketsHook(Protocol):
    """An extension with sockets of its own for the engine loop to poll."""

    def sockets(self) -> list[tuple[zmq.Socket, Callable[[Engine], None]]]: ...


@runtime_checkable
class TickHook(Protocol):
    """An extension called once per stats interval."""

    def on_tick(self, engine: Engine, now_ns: int) -> None: ...


@runtime_checkable
class StatsHook(Protocol):
    """An extension that adds its figures to the ``stats`` message."""

    name: str

    def stats(self) -> dict: ...


@runtime_checkable
class CloseHook(Protocol):
    """An extension with something to release at shutdown."""

    def close(self) -> None: ...


_Hook = TypeVar("_Hook")


class Engine:
    """One streaming engine: ingest socket, processor and result publisher, in one thread."""

    def __init__(
        self,
        config: EngineConfig,
        context: zmq.Context | None = None,
        extensions: list[EngineExtension] | None = None,
    ) -> None:
        self.config = config
        public = bool(config.ingest.public_endpoints)
        realtime = config.scheduling.realtime_priority > 0
        self._own_context = context is None and (public or realtime)
        # thread ids of the context's I/O threads (private, public or None) when the engine
        # made its context: for ingest.public_endpoints (a second, SCHED_IDLE I/O thread)
        # or scheduling.realtime_priority (engine/ingest/io_threads.py); None otherwise
        self.io_threads: tuple[int, int | None] | None = None
        if self._own_context:
            context, self.io_threads = engine_context(public)
        self.context = context or zmq.Context.instance()
        self.extensions = list(extensions or [])
        self.processor = StreamProcessor(config)
        self.receiver: FrameReceiver | None = None
        self.slicer: FrameSlicer | None = None
        self.publisher: ResultPublisher | None = None
        self.started_ns = 0
        self.topics_from = 0  # first symbol of the next stats message's topic sequences
        self.stop_event = threading.Event()
        self._descriptors = False  # a descriptors.claim() to release at close
        # with scheduling.realtime_priority: the tick thread's id and what applies to it
        # and to the private I/O thread (the ``scheduling`` object of stats)
        self.tick_thread_id = 0
        self.scheduling: dict[str, object] | None = None

    def start(self) -> None:
        """Compile the kernels (or load them from cache), then open the sockets.

        When that takes longer than :data:`COMPILE_NOTICE_S` (a cold numba cache:
        the first run after an install), a log line says so while it lasts.
        """
        done = threading.Event()
        notice = threading.Thread(target=_compile_notice, args=(done,), daemon=True)
        notice.start()
        try:
            for ext in self._having(PrepareHook):
                ext.on_prepare(self)
            seconds = self.processor.warm_up()
            log.info("kernels ready in %.2f s (compiled or loaded from numba's cache)", seconds)
            if not self._descriptors:  # RLIMIT_NOFILE up to the hard limit, less a reserve
                descriptors.claim(self.config.connections.nofile_reserve)
                self._descriptors = True
            for ext in self._having(StartHook):
                ext.on_start(self)
        finally:
            done.set()
        self.receiver = FrameReceiver(
            self.context,
            self.config.ingest,
            self.processor.buffer,
            security=self.config.security,
            connections=self.config.connections,
        )
        if self.config.ingest.slice_records:
            self.slicer = FrameSlicer(
                self.receiver,
                StreamTable(self.processor.state.streams),
                self.config.ingest.slice_records,
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
        if self.receiver.public_endpoints:
            public = ", ".join(self.receiver.public_endpoints)
            log.info("ingest, public (an I/O thread of their own, SCHED_IDLE): %s", public)
        log.info(
            "ingest %s (rcvhwm %d), publish %s (sndhwm %d), %d symbols",
            ", ".join(self.receiver.endpoints),
            self.config.ingest.effective_rcvhwm,
            self.publisher.endpoint,
            self.publisher.sndhwm,
            self.config.analytics.n_symbols,
        )
        connections = self.config.connections
        log.info(
            "connections: SO_RCVBUF %s, SO_SNDBUF %s",
            *(f"{b} bytes" if b else "autotuned"
              for b in (connections.receive_buffer_bytes, connections.send_buffer_bytes)),
        )  # fmt: skip

    def _having(self, hook: type[_Hook]) -> list[_Hook]:
        """The extensions that implement ``hook``, in order."""
        return [ext for ext in self.extensions if isinstance(ext, hook)]

    def close(self) -> None:
        """Close the extensions and the sockets (idempotent)."""
        for ext in self._having(CloseHook):
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
        if self._own_context:
            self.context.destroy(linger=0)
            self._own_context = False

    def run(self, duration_s: float | None = None) -> None:
        """Receive, process and publish until :meth:`stop` is called (or ``duration_s``).

        The calling thread is the tick thread: with ``scheduling.realtime_priority`` it
        runs under ``SCHED_FIFO`` until this returns (engine/service/scheduling.py).
        """
        priority = self.config.scheduling.realtime_priority
        if not priority:
            self._loop(duration_s)
            return
        self.tick_thread_id = threading.get_native_id()
        tick = scheduling.set_realtime(0, priority, "tick thread")
        if self.io_threads is not None:
            io = scheduling.set_realtime(self.io_threads[0], priority, "private I/O thread")
        else:  # a context the caller made: its threads are the caller's to schedule
            io = "the caller's context"
        self.scheduling = {"realtime_priority": priority, "tick_thread": tick, "io_thread": io}
        log.info("scheduling: tick thread %s, private I/O thread %s", tick, io)
        try:
            self._loop(duration_s)
        finally:
            if tick != scheduling.NORMAL:
                scheduling.set_normal(0)

    def _loop(self, duration_s: float | None) -> None:
        interval_ns = int(self.config.publish.stats_interval_s * 1e9)
        next_stats = time.monotonic_ns() + interval_ns
        log.info("ready: receiving on %s", ", ".join(self.receiver.endpoints))
        self.publisher.publish_stats(self.stats())
        deadline = None if duration_s is None else time.monotonic_ns() + int(duration_s * 1e9)
        receiver = self.receiver
        proc = self.processor
        publish = self.publisher.publish_results
        state = proc.state
        clock = time.time_ns
        stop = self.stop_event
        frame_hooks = [ext.on_frame for ext in self._having(FrameHook)]
        drop_hooks = [ext.on_dropped for ext in self._having(DropHook)]
        result_hooks = [ext.on_results for ext in self._having(ResultsHook)]
        tick_hooks = [ext.on_tick for ext in self._having(TickHook)]
        extra = [pair for ext in self._having(SocketsHook) for pair in ext.sockets()]
        # Subscriptions: libzmq applies those queued for the publish socket (at most
        # publish.subscription_backlog per subscriber) when the socket is next used, by a
        # send or by reading ZMQ_EVENTS. While frames come, the sends do it; while none
        # come, the loop waits on the socket's command descriptor as well and applies
        # them, at most once per SUBSCRIPTIONS_EVERY_NS, so a flood of subscriptions is
        # held back by TCP instead of taking the tick thread (docs/reliability.md).
        poller = zmq.Poller()
        poller.register(receiver.socket, zmq.POLLIN)
        handlers = {}
        for sock, handler in extra:
            poller.register(sock, zmq.POLLIN)
            handlers[sock] = handler
        wait = poller.poll
        pub_socket = self.publisher.socket
        commands = pub_socket.getsockopt(zmq.FD)  # readable: the socket has commands pending
        with_subscriptions = zmq.Poller()
        for sock in (receiver.socket, *handlers):
            with_subscriptions.register(sock, zmq.POLLIN)
        with_subscriptions.register(commands, zmq.POLLIN)
        wait_or_subscriptions = with_subscriptions.poll
        subscriptions_at = 0  # monotonic ns after which waiting subscriptions are applied
        monotonic_ns = time.monotonic_ns
        events = zmq.EVENTS
        buffer = receiver.buffer
        receive_into = receiver.receive_into
        nowait = zmq.NOBLOCK
        view = memoryview(proc.buffer)
        slicer = self.slicer

        def handle(nbytes: int, recv_ns: int, part: int = 0) -> None:
            """Journal (and the other frame hooks), process and publish one frame (or
            continuation slice ``part``)."""
            if frame_hooks and 0 <= nbytes <= len(view):
                for hook in frame_hooks:
                    hook(view[:nbytes], recv_ns, part)
            elif drop_hooks and (nbytes < 0 or nbytes > len(view)):
                for hook in drop_hooks:
                    hook(nbytes, recv_ns)
            n = proc.process(nbytes, recv_ns, part)
            if n:
                publish(state, n)
                for hook in result_hooks:
                    hook(self, n)

        while not stop.is_set():
            # a waiting frame first; without handlers, wait only when there is none
            nbytes = -1 if handlers else receive_into(buffer, nowait)
            if nbytes == -1:
                now = monotonic_ns()
                if now >= subscriptions_at:
                    ready = dict(wait_or_subscriptions(WAIT_MS))
                    if commands in ready:
                        pub_socket.getsockopt(events)  # applies what libzmq queued
                        subscriptions_at = monotonic_ns() + SUBSCRIPTIONS_EVERY_NS
                else:
                    ready = dict(wait(max(1, (subscriptions_at - now) // 1_000_000)))
                for sock in ready:
                    if sock in handlers:
                        handlers[sock](self)
                if receiver.socket in ready:
                    nbytes = receive_into(buffer, nowait)
            if nbytes != -1:
                recv_ns = clock()  # one stamp: the journal's entry and the kernels' rules
                if slicer is None:
                    handle(nbytes, recv_ns)
                else:  # a large in-order frame in slices (slicer.py)
                    slicer.process(nbytes, recv_ns, handle, clock)
            now = time.monotonic_ns()
            if now >= next_stats:
                for hook in tick_hooks:
                    hook(self, time.time_ns())
                self.publisher.publish_stats(self.stats())
                self._next_topics()
                next_stats = now + interval_ns
            if deadline is not None and now >= deadline:
                break
        self.publisher.publish_stats(self.stats("stopped"))

    def _next_topics(self) -> None:
        """Move the stats messages' window of topic sequences on (a universe larger than
        TOPICS_PER_STATS symbols is carried in turns)."""
        following = self.topics_from + TOPICS_PER_STATS
        self.topics_from = following if following < self.config.analytics.n_symbols else 0

    def stop(self) -> None:
        """Ask :meth:`run` to return (thread-safe)."""
        self.stop_event.set()

    def stats(self, state: str | None = None) -> dict:
        """The ``stats`` message (see :meth:`StreamProcessor.stats`) with its ``state``.

        ``state``: ``"ready"`` while no frame has arrived yet (also in the message
        sent as the loop starts), ``"running"`` after, ``"stopped"`` in the last one.
        """
        stats = self.processor.stats(self.started_ns, self.topics_from)
        if state is not None:
            stats["state"] = state
        if self.publisher is not None and self.publisher.batched:
            stats["topics"]["batch"] = self.publisher.batch_sequences()
        if self.slicer is not None:
            stats["slicing"] = self.slicer.stats()
        if self.scheduling is not None:
            stats["scheduling"] = dict(self.scheduling)
        for ext in self._having(StatsHook):
            stats[ext.name] = ext.stats()
        return stats
