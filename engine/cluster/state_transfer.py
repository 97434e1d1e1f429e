"""A relaunched replica starts from its twin's state, not empty.

With two replicas per shard (``mesos run --replicas 2S --shards S``) the twin of a
dead replica holds the shard's whole analytic state (EMAs, VWAP windows, books,
per-stream sequences, result sequences).  A replica started with
``serve --state-from ENDPOINT`` takes it over before it processes anything::

    relaunched replica                              twin (serve --state-endpoint ...)
    1. open ingest: the feed's frames queue
       in its SUB socket from now on
    2. hold the first frame (stream, seq)
    3. REQ {"need": {stream: seq}}  --------->  ROUTER (its own thread)
                                                 the engine thread, at its next stats tick
                                                 (at most ``publish.stats_interval_s``), once
                                                 its stream has reached ``seq``: fork(); the
                                                 child encodes the state as at the fork (the
                                                 journal's snapshot format) into a pipe
                                                 the ROUTER thread: read the pipe, send it
    4. load it (same checks as a journal  <------
       snapshot: format, checksums, params)
    5. the held frame, then the queued ones: those the snapshot covers are skipped (counted
       in ``covered_skipped``; one the kernels still see is a duplicate by the stream
       sequence rules), the rest are processed: neither gap nor double processing.
       Nothing is published before 4.

``need`` makes the twin wait until it has processed the replica's first frame's
predecessor, so the snapshot reaches at least where the replica's queue starts even
when the twin lags behind the feed.  The twin serves requests only from its engine
loop's ticks, so a replica still starting (compiling, loading its own state) answers
once it runs.

A twin that does not answer within ``--state-timeout`` (gone, unreachable, other
analytics parameters): the replica starts empty, logs a WARNING and shows it in
``stats.state_transfer`` (``outcome``, ``empty_starts``).

Cost to the twin, per request: one ``fork()`` on its engine thread (the stall its frames
see, ``last_copy_ms``: page tables, a few ms; then a page fault for each page it changes
while the child encodes), and the encoding in the child, outside the engine's
interpreter (``last_encode_ms``: fork to the last byte read); the ROUTER thread only reads
the pipe and sends.  See docs/mesos.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from dataclasses import dataclass

import numpy as np
import zmq

from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu.streaming_view import StreamTable

log = logging.getLogger("tickpath.state")

DEFAULT_TIMEOUT_S = 30.0
FIRST_FRAME_WAIT_S = 1.0  # how long a starting replica waits for its first frame to hold
MAX_REQUEST_BYTES = 64 * 1024


class StateUnavailable(Exception):
    """The twin's state could not be had (no answer in time, refused, damaged)."""


@dataclass
class _Request:
    envelope: list[bytes]
    need: dict[int, int]  # stream -> the twin's next sequence must be >= this
    received: float


def _covers(streams: np.ndarray, need: dict[int, int]) -> bool:
    next_seqs = StreamTable(streams).next_seqs()
    return all(
        0 <= stream < len(next_seqs) and int(next_seqs[stream]) >= seq
        for stream, seq in need.items()
    )


def parse_need(body: bytes) -> dict[int, int]:
    """The ``need`` of a state request (``{"need": {"<stream>": seq}}``); ValueError if bad."""
    if len(body) > MAX_REQUEST_BYTES:
        raise ValueError(f"request of {len(body)} bytes")
    doc = json.loads(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("need", {}), dict):
        raise ValueError('a state request is {"need": {"<stream>": seq}}')
    need = {int(k): int(v) for k, v in doc.get("need", {}).items()}
    if any(k < 0 or v < 0 for k, v in need.items()):
        raise ValueError("streams and sequences are >= 0")
    return need


class StateTransfer:
    """The engine extension of both sides (see the module docstring).

    Args:
        endpoint: bind a state endpoint here (``--state-endpoint``; ``tcp://*:0`` picks a
            port, read :attr:`endpoint` after start), or None to serve no state.
        source: the twin's state endpoint (``--state-from``), or None to start empty.
        timeout_s: how long to wait for the twin's state before starting empty.
        max_wait_s: how long the server keeps a request its state does not cover yet.
    """

    name = "state_transfer"

    def __init__(
        self,
        endpoint: str | None = None,
        source: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_wait_s: float = DEFAULT_TIMEOUT_S,
        context: zmq.Context | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.source = source
        self.timeout_s = float(timeout_s)
        self.max_wait_s = float(max_wait_s)
        self._ctx = context or zmq.Context.instance()
        self._lock = threading.Lock()
        self._requests: list[_Request] = []
        self._copied = threading.Event()  # a forked encoder is writing the state to send
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._thread: threading.Thread | None = None
        self._bind_error: str | None = None
        self._state = None
        # (pid, pipe read end, streams covered, requests, start) of the forked encoder
        self._in_flight: tuple | None = None
        # server figures
        self.requests = 0
        self.served = 0
        self.refused = 0
        self.last_copy_ms = 0.0
        self.last_encode_ms = 0.0
        self.last_bytes = 0
        # client figures
        self.outcome = "none"  # none | loaded | empty (no state from the twin)
        self.empty_starts = 0
        self.load_ms = 0.0
        self.covered_skipped = 0  # queued frames the snapshot covered, skipped before the kernels
        self.covered: dict[str, int] = {}
        self.error: str | None = None

    # -- engine hooks (engine thread) ----------------------------------------
    def on_start(self, engine: object) -> None:
        """Keep the state; bind the state endpoint in its own thread."""
        self._state = engine.processor.state
        if self.endpoint is None:
            return
        self._thread = threading.Thread(target=self._serve, name="tickpath-state", daemon=True)
        self._thread.start()
        self._bound.wait(30)
        if self._bind_error is not None:
            raise RuntimeError(f"state endpoint {self.endpoint}: {self._bind_error}")
        log.info("serving this replica's state on %s", self.endpoint)

    def on_tick(self, engine: object, now_ns: int) -> None:
        """Fork a child that encodes the state as it is now, when a waiting request can be
        served (the engine thread pays the fork, not a copy or the encoding)."""
        if not self._requests or self._copied.is_set():
            return
        from tickpath.engine.journal.snapshot import encode_snapshot, forked, state_arrays

        state = self._state
        with self._lock:  # taken off the list now: _expire cannot answer them too
            ready = [r for r in self._requests if _covers(state.streams, r.need)]
            self._requests = [r for r in self._requests if r not in ready]
        if not ready:
            return
        streams = StreamTable(state.streams).next_seqs()
        covered = {str(i): int(v) for i, v in enumerate(streams.tolist()) if v >= 0}
        arrays, params, extra = state_arrays(state), state.params, {
            "sender": self.endpoint, "streams_next": covered,
        }  # fmt: skip
        t0 = time.perf_counter()
        try:
            read_end, write_end = os.pipe()
        except OSError as exc:  # no descriptor free: the request waits (and may expire)
            log.warning("state request waits: cannot open a pipe: %s", exc)
            self._put_back(ready)
            return

        def encode_into_pipe() -> None:
            os.close(read_end)
            data = memoryview(encode_snapshot(arrays, params, extra=extra))
            while data:
                data = data[os.write(write_end, data) :]

        try:
            pid = forked(encode_into_pipe)
        except OSError as exc:
            os.close(read_end)
            os.close(write_end)
            log.warning("state request waits: fork failed: %s", exc)
            self._put_back(ready)
            return
        os.close(write_end)
        self.last_copy_ms = (time.perf_counter() - t0) * 1e3
        self._in_flight = (pid, read_end, covered, ready, t0)
        self._copied.set()

    def _put_back(self, requests: list[_Request]) -> None:
        with self._lock:
            self._requests = requests + self._requests

    def stats(self) -> dict:
        """Counters for the ``stats`` message (``state_transfer``)."""
        return {
            "endpoint": self.endpoint,
            "requests": self.requests,
            "served": self.served,
            "refused": self.refused,
            "pending": len(self._requests),
            "last_copy_ms": round(self.last_copy_ms, 3),
            "last_encode_ms": round(self.last_encode_ms, 3),
            "last_bytes": self.last_bytes,
            "source": self.source,
            "outcome": self.outcome,
            "empty_starts": self.empty_starts,
            "load_ms": round(self.load_ms, 3),
            "covered_skipped": self.covered_skipped,
            "covered": self.covered,
            "error": self.error,
        }

    def close(self) -> None:
        """Stop the state endpoint's thread (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    # -- server thread ---------------------------------------------------------
    def _serve(self) -> None:
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES * 2)
        try:
            sock.bind(self.endpoint)
            self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as exc:
            self._bind_error = str(exc)
            sock.close()
            self._bound.set()
            return
        self._bound.set()
        try:
            while not self._stop.is_set():
                if sock.poll(50):
                    self._receive(sock)
                if self._copied.is_set():
                    self._answer(sock)
                self._expire(sock)
        finally:
            sock.close()

    def _receive(self, sock: zmq.Socket) -> None:
        parts = sock.recv_multipart()
        envelope, body = parts[:-1], parts[-1]
        self.requests += 1
        try:
            need = parse_need(body)
        except (ValueError, TypeError, AttributeError) as exc:
            self.refused += 1
            log.warning("state request refused: %s", exc)
            sock.send_multipart([*envelope, json.dumps({"ok": False, "error": str(exc)}).encode()])
            return
        with self._lock:
            self._requests.append(_Request(envelope, need, time.monotonic()))

    def _answer(self, sock: zmq.Socket) -> None:
        """Read the forked encoder's bytes and send them to the requests it serves."""
        from tickpath.engine.journal.snapshot import exit_reason

        pid, read_end, covered, ready, t0 = self._in_flight
        chunks = []
        try:
            while chunk := os.read(read_end, 1 << 20):  # releases the GIL while it waits
                chunks.append(chunk)
        finally:
            os.close(read_end)
        why = exit_reason(os.waitpid(pid, 0)[1])
        self.last_encode_ms = (time.perf_counter() - t0) * 1e3
        if why:
            log.error("encoding the state for %d replica(s) failed: %s", len(ready), why)
            refusal = json.dumps({"ok": False, "error": f"encoding the state: {why}"}).encode()
            for request in ready:
                sock.send_multipart([*request.envelope, refusal])
                self.refused += 1
        else:
            data = b"".join(chunks)
            self.last_bytes = len(data)
            head = json.dumps({"ok": True, "bytes": len(data), "streams_next": covered}).encode()
            for request in ready:
                sock.send_multipart([*request.envelope, head, data], copy=False)
                self.served += 1
            log.info(
                "state sent to %d replica(s): %d bytes, fork %.1f ms, encode %.1f ms",
                len(ready),
                len(data),
                self.last_copy_ms,
                self.last_encode_ms,
            )
        self._in_flight = None
        self._copied.clear()

    def _expire(self, sock: zmq.Socket) -> None:
        if not self._requests:
            return
        now = time.monotonic()
        with self._lock:
            old = [r for r in self._requests if now - r.received > self.max_wait_s]
            self._requests = [r for r in self._requests if r not in old]
        for request in old:
            self.refused += 1
            why = f"this replica's streams did not reach {request.need} in {self.max_wait_s:g} s"
            refusal = json.dumps({"ok": False, "error": why}).encode()
            sock.send_multipart([*request.envelope, refusal])

    # -- client: the starting replica -----------------------------------------
    def bootstrap(self, engine: object) -> None:
        """Load the twin's state into ``engine`` (started, not yet running); see module doc.

        Call between ``engine.start()`` (the ingest socket is open) and ``engine.run()``.
        Without a twin's answer within ``timeout_s`` the engine stays empty (WARNING).
        """
        if self.source is None:
            return
        from tickpath.engine.journal.snapshot import SnapshotError, decode_snapshot
        from tickpath.kernels.cpu.streaming import reset_state

        t0 = time.monotonic()
        proc = engine.processor
        held, nbytes = self._hold_first_frame(engine, t0)
        need: dict[int, int] = {}
        first = _frame_position(held)
        if first is not None:
            need[first[0]] = first[1]
        try:
            left = self.timeout_s - (time.monotonic() - t0)
            head, data = fetch_state(self.source, need, max(left, 0.1), self._ctx)
            decode_snapshot(data, proc.state, f"state from {self.source}")
        except (StateUnavailable, SnapshotError) as exc:
            self._start_empty(proc.state, reset_state, exc)
        else:
            self.outcome = "loaded"
            self.covered = head.get("streams_next", {})
            self.load_ms = (time.monotonic() - t0) * 1e3
            log.info(
                "state of %s loaded in %.0f ms (%d bytes); next sequences %s",
                self.source,
                self.load_ms,
                len(data),
                self.covered,
            )
        # The held frame, then the queued frames the snapshot covers, are skipped here (a
        # covered version 1 frame at sequence 0 would read as a publisher restart to the
        # kernels); the first frame it does not cover is processed, and the loop takes over.
        while nbytes != -1:
            if self.outcome == "loaded" and _covered(
                first, StreamTable(proc.state.streams).next_seqs()
            ):
                self.covered_skipped += 1  # the snapshot holds it already
            else:
                if held is not None:
                    proc.buffer[: len(held)] = np.frombuffer(held, np.uint8)
                n = proc.process(nbytes, time.time_ns())
                if n:
                    engine.publisher.publish_results(proc.state, n)
                return
            nbytes = engine.receiver.receive()  # the next queued frame (100 ms at most)
            held = None
            first = None
            if 0 <= nbytes <= len(proc.buffer):
                first = _frame_position(bytes(proc.buffer[: min(nbytes, s.HEADER_SIZE)]))

    def _hold_first_frame(self, engine: object, t0: float) -> tuple[bytes | None, int]:
        """Receive the first queued frame (if one comes soon) and keep a copy of it."""
        receiver = engine.receiver
        buffer = engine.processor.buffer
        wait = min(FIRST_FRAME_WAIT_S, self.timeout_s)
        while time.monotonic() - t0 < wait:
            nbytes = receiver.receive()  # blocks up to the receiver's timeout (100 ms)
            if nbytes == -1:
                continue
            if 0 <= nbytes <= len(buffer):
                return bytes(buffer[:nbytes]), nbytes
            return None, nbytes
        return None, -1

    def _start_empty(self, state: object, reset: object, exc: Exception) -> None:
        reset(state)  # a partly loaded state is no state
        self.outcome = "empty"
        self.empty_starts += 1
        self.error = str(exc)
        log.warning(
            "no state from %s (%s): starting empty; this replica's analytics restart from "
            "scratch and may differ from its twin's until their windows refill",
            self.source,
            exc,
        )


def _covered(position: tuple[int, int, int] | None, next_seq: np.ndarray) -> bool:
    """True when a frame at ``position`` (stream, seq, count) lies wholly before ``next_seq``."""
    if position is None:
        return False
    stream, seq, count = position
    return 0 <= stream < len(next_seq) and seq + count <= int(next_seq[stream])


def _frame_position(frame: bytes | None) -> tuple[int, int, int] | None:
    """``(stream, seq, count)`` of a held input frame, None if it is not a readable one."""
    if frame is None or len(frame) < s.HEADER_SIZE:
        return None
    header = np.frombuffer(frame[: s.HEADER_SIZE], s.HEADER)[0]
    if int(header["magic"]) != s.MAGIC or int(header["count"]) == 0:
        return None
    return int(header["stream_id"]), int(header["seq"]), int(header["count"])


def fetch_state(
    endpoint: str, need: dict[int, int], timeout_s: float, context: zmq.Context | None = None
) -> tuple[dict, bytes]:
    """Ask the replica at ``endpoint`` for its state; return (reply head, snapshot bytes).

    ``need``: stream -> sequence its state must have reached.  Raises
    :class:`StateUnavailable` on no answer within ``timeout_s`` or a refusal.
    """
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send(json.dumps({"need": {str(k): v for k, v in need.items()}}).encode())
        if not sock.poll(int(timeout_s * 1000)):
            raise StateUnavailable(f"no answer from {endpoint} within {timeout_s:g} s")
        parts = sock.recv_multipart()
    finally:
        sock.close(linger=0)
    try:
        head = json.loads(parts[0])
    except ValueError:
        raise StateUnavailable(f"{endpoint}: not a state reply") from None
    if not head.get("ok"):
        raise StateUnavailable(f"{endpoint} refused: {head.get('error')}")
    if len(parts) != 2:
        raise StateUnavailable(f"{endpoint}: a state reply has 2 parts, got {len(parts)}")
    return head, parts[1]


# -- tickpath serve flags --------------------------------------------------------


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """``--state-endpoint``, ``--state-from`` and ``--state-timeout`` of ``tickpath serve``."""
    parser.add_argument(
        "--state-endpoint",
        metavar="ENDPOINT",
        help="serve this replica's state to a relaunched twin on ENDPOINT (bound; "
        "tcp://*:PORT); set by the cluster scheduler",
    )
    parser.add_argument(
        "--state-from",
        metavar="ENDPOINT",
        help="start from the state of the replica at ENDPOINT (its --state-endpoint), "
        "not empty: frames queue while it loads; set by the scheduler for a replica "
        "whose twin runs",
    )
    parser.add_argument(
        "--state-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"start empty (WARNING) when the state has not come after S seconds "
        f"(default {DEFAULT_TIMEOUT_S:g})",
    )


def serve_extension(args: argparse.Namespace, journal_dir: object) -> StateTransfer | None:
    """The extension the flags ask for, or None.  ValueError for a conflicting journal."""
    if not (args.state_endpoint or args.state_from):
        return None
    if args.state_from and journal_dir:
        raise ValueError("--state-from and a journal exclude each other (the journal recovers)")
    if args.state_timeout <= 0:
        raise ValueError("--state-timeout must be > 0")
    return StateTransfer(args.state_endpoint, args.state_from, timeout_s=args.state_timeout)
