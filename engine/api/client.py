"""Talk to a running engine from Python: send market data, receive results.

:class:`Publisher` sends TRADE / QUOTE / ORDER records to the engine's ingest
endpoint (``tickpath serve --ingest ...``); :class:`Subscriber` receives the results
it publishes (``--publish ...``) as numpy records, or as pandas / polars DataFrames
with :func:`to_dataframe`, for notebooks.

A ZeroMQ publisher drops whatever it sends before the subscriber's subscription has
reached it.  :class:`Publisher` therefore sends on an XPUB, which reports each
subscription, and waits (up to ``join_timeout_s``) for the engine's before its first
frame: nothing it sends is lost to a slow join, and an engine that is not there is a
clear :class:`EngineNotFound` error instead of frames vanishing.  A
:class:`Subscriber` joins the engine's publisher the same way, from the other side:
results published before its subscription arrived are not delivered; subscribe
before the data that produces them is sent.

Records use the wire dtypes of :mod:`tickpath.wire` (prices in ticks, sizes in lots,
timestamps in ns).  Result sequence numbers are checked per topic: :attr:`Subscriber.lost`
counts results that never arrived (a subscriber slower than the engine loses them at
its high-water mark).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import msgspec
import numpy as np
import zmq

from tickpath.engine.feed.join import JoinTimeout, publishing_socket, wait_for_subscribers
from tickpath.engine.service.watch import TopicSequences
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as _s

__all__ = ["EngineNotFound", "Publisher", "Result", "Subscriber", "flatten", "to_dataframe"]


class EngineNotFound(JoinTimeout):
    """No engine subscribed to the publisher's endpoint within the timeout."""


class Publisher:
    """Sends input frames to an engine's ingest endpoint, one stream of sequence numbers.

    Args:
        endpoint: the engine's ingest endpoint, e.g. ``"tcp://127.0.0.1:5555"``.
        stream_id: the stream id of every frame (below the engine's ``max_streams``).
        first_seq: sequence number of the first record (sequences count records).
        bind: bind the endpoint instead of connecting to it (an engine that connects).
        join_timeout_s: how long the first send waits for the engine's subscription.
        sndhwm: frames queued before sends block.
        linger_s: how long :meth:`close` waits for queued frames to leave.
        context: a ZeroMQ context (default: the process' shared one).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        stream_id: int = 0,
        first_seq: int = 0,
        bind: bool = False,
        join_timeout_s: float = 30.0,
        sndhwm: int = 100_000,
        linger_s: float = 5.0,
        context: zmq.Context | None = None,
    ) -> None:
        self.stream_id = int(stream_id)
        self.next_seq = int(first_seq)
        self.join_timeout_s = float(join_timeout_s)
        self._socket = publishing_socket(
            context or zmq.Context.instance(), sndhwm=sndhwm, linger_ms=int(linger_s * 1000)
        )
        if bind:
            self._socket.bind(endpoint)
            endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        else:
            self._socket.connect(endpoint)
        self.endpoint = endpoint
        self._joined = False

    def wait_for_engine(self, timeout_s: float | None = None) -> None:
        """Block until the engine has subscribed (the first send does this by itself).

        Raises :class:`EngineNotFound` after ``timeout_s`` (default ``join_timeout_s``).
        """
        if self._joined:
            return
        timeout = self.join_timeout_s if timeout_s is None else float(timeout_s)
        try:
            wait_for_subscribers([self._socket], timeout, [self.endpoint])
        except JoinTimeout as exc:
            raise EngineNotFound(
                f"no engine subscribed at {self.endpoint} within {timeout:g} s "
                "(is `tickpath serve` running with this --ingest endpoint?)"
            ) from exc
        self._joined = True

    def send(self, kind: int, records: np.ndarray, *, send_ns: int | None = None) -> int:
        """Send ``records`` (the dtype of ``kind``) as one frame; return its first sequence.

        ``send_ns`` defaults to the wall clock (``time.time_ns()``) at the send.
        """
        if kind not in _s.INPUT_KINDS:
            raise ValueError(f"kind must be one of {_s.INPUT_KINDS} (an input), got {kind}")
        if len(records) == 0:
            raise ValueError("a frame carries at least one record")
        self.wait_for_engine()
        seq = self.next_seq
        stamp = time.time_ns() if send_ns is None else int(send_ns)
        self._socket.send(codec.encode_frame(kind, self.stream_id, seq, records, stamp))
        self.next_seq = seq + len(records)
        return seq

    def send_trades(self, records: np.ndarray) -> int:
        """Send TRADE records as one frame; return the first record's sequence number."""
        return self.send(_s.KIND_TRADE, records)

    def send_quotes(self, records: np.ndarray) -> int:
        """Send QUOTE records as one frame; return the first record's sequence number."""
        return self.send(_s.KIND_QUOTE, records)

    def send_orders(self, records: np.ndarray) -> int:
        """Send ORDER records as one frame; return the first record's sequence number."""
        return self.send(_s.KIND_ORDER, records)

    def close(self) -> None:
        """Close the socket (waiting up to ``linger_s`` for queued frames)."""
        self._socket.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Result(NamedTuple):
    """One message from the engine: a result frame, or the ``stats`` JSON.

    ``topic`` e.g. ``"trade.3"``; ``kind`` the frame's kind (``tickpath.wire.KIND_*``,
    -1 for stats); ``records`` the frame's records (a structured array of that kind's
    result dtype), None for stats; ``stats`` the decoded stats dict, None otherwise.
    """

    topic: str
    kind: int
    records: np.ndarray | None
    stats: dict | None


class Subscriber:
    """Receives an engine's results.

    Args:
        endpoint: the engine's publish endpoint, e.g. ``"tcp://127.0.0.1:5556"``.
        topics: topic prefixes (``"trade."`` all trade results, ``"book.7"`` symbol 7's
            books and also 70-79; ``""`` everything, ``"stats"`` the stats messages).
        rcvhwm: messages queued before newer ones are dropped (and counted in :attr:`lost`).
        context: a ZeroMQ context (default: the process' shared one).
    """

    def __init__(
        self,
        endpoint: str,
        topics: Sequence[str] = ("",),
        *,
        rcvhwm: int = 100_000,
        context: zmq.Context | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._socket = (context or zmq.Context.instance()).socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, rcvhwm)
        self._socket.connect(endpoint)
        for topic in topics:
            self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._sequences = TopicSequences()
        self.malformed = 0
        """Messages that were not a result frame (counted and skipped)."""

    @property
    def lost(self) -> int:
        """Results that never arrived, from gaps in the per-topic sequence numbers."""
        return self._sequences.lost

    def recv(self, timeout_s: float | None = None) -> Result | None:
        """The next message, or None when none arrives within ``timeout_s`` (None: wait)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            wait_ms = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1e3))
            if not self._socket.poll(wait_ms):
                return None
            parts = self._socket.recv_multipart()
            result = self._decode(parts)
            if result is not None:
                return result
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def _decode(self, parts: list[bytes]) -> Result | None:
        if len(parts) != 2:
            self.malformed += 1
            return None
        topic, payload = parts
        if topic == b"stats":
            try:
                return Result("stats", -1, None, msgspec.json.decode(payload))
            except msgspec.DecodeError:
                self.malformed += 1
                return None
        try:
            header, records = codec.decode_frame(payload)
        except codec.FrameError:
            self.malformed += 1
            return None
        self._sequences.observe(topic, int(header["seq"]), int(header["count"]))
        return Result(topic.decode(errors="replace"), int(header["kind"]), records, None)

    def results(self, count: int | None = None, timeout_s: float | None = None) -> Iterator[Result]:
        """Yield messages until ``count`` of them or until none came for ``timeout_s``."""
        received = 0
        while count is None or received < count:
            result = self.recv(timeout_s)
            if result is None:
                return
            received += 1
            yield result

    def __iter__(self) -> Iterator[Result]:
        return self.results()

    def collect(self, analytic: str, n: int, timeout_s: float = 60.0) -> np.ndarray:
        """Receive until ``n`` result records of ``analytic`` (``"trade"``, ``"book"``...)
        have come, or ``timeout_s`` has passed; return them as one structured array
        (other messages received meanwhile are dropped)."""
        kind = _s.KIND_OF_ANALYTIC[analytic]
        parts: list[np.ndarray] = []
        have = 0
        deadline = time.monotonic() + timeout_s
        while have < n:
            left = deadline - time.monotonic()
            result = self.recv(left) if left > 0 else None
            if result is None:
                break
            if result.kind == kind:
                parts.append(result.records)
                have += len(result.records)
        if not parts:
            return np.empty(0, _s.RECORD_DTYPES[kind])
        return np.concatenate(parts)

    def close(self) -> None:
        """Close the socket."""
        self._socket.close(linger=0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def flatten(records: np.ndarray) -> dict[str, np.ndarray]:
    """Columns of a structured array: ``_pad`` fields dropped, array fields split
    (``ema`` -> ``ema_0`` .. ``ema_3``, ``bid_price`` -> ``bid_price_0`` ..)."""
    columns: dict[str, np.ndarray] = {}
    for name in records.dtype.names:
        if name.startswith("_"):
            continue
        values = records[name]
        if values.ndim == 1:
            columns[name] = values
        else:
            for j in range(values.shape[1]):
                columns[f"{name}_{j}"] = values[:, j]
    return columns


def to_dataframe(records: np.ndarray, library: str | None = None) -> Any:
    """A DataFrame of result (or input) records: pandas, polars, or the first installed.

    ``library``: ``"pandas"``, ``"polars"`` or None (pandas if installed, else polars).
    Raises ImportError when the one asked for (or both) is not installed.
    """
    columns = flatten(records)
    if library not in (None, "pandas", "polars"):
        raise ValueError(f"library must be 'pandas', 'polars' or None, got {library!r}")
    if library in (None, "pandas"):
        try:
            import pandas
        except ImportError:
            if library == "pandas":
                raise
        else:
            return pandas.DataFrame(columns)
    import polars

    return polars.DataFrame(columns)
