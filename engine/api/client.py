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
from tickpath.engine.service.dedup import ResultDeduplicator
from tickpath.engine.service.fan_in import FanIn
from tickpath.engine.service.watch import TopicSequences
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as _s

__all__ = ["EngineNotFound", "Publisher", "Result", "Subscriber", "flatten", "to_dataframe"]


class EngineNotFound(JoinTimeout):
    """No engine subscribed to the publisher's endpoint within the timeout."""


class Publisher:
    """Sends input frames to an engine's ingest endpoint, one stream of sequence numbers.

    With ``discovery`` instead of ``endpoint`` it feeds a sharded cluster: each batch is
    split by the shard map and every part goes to all replicas of its shard, each shard
    its own stream of sequences (:class:`~tickpath.engine.feed.sharding.ShardingPublisher`).

    Args:
        endpoint: the engine's ingest endpoint, e.g. ``"tcp://127.0.0.1:5555"``.
        discovery: a Mesos scheduler's discovery file or ``http://`` URL (instead of
            ``endpoint``); the first send waits for every replica it lists.
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
        endpoint: str | None = None,
        *,
        discovery: str | None = None,
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
        self._joined = False
        self._sharded = None
        if (endpoint is None) == (discovery is None):
            raise ValueError("give either endpoint or discovery")
        if discovery is not None:
            from tickpath.engine.feed.sharding import ShardingPublisher

            self._sharded = ShardingPublisher(
                discovery,
                stream_id=self.stream_id,
                context=context or zmq.Context.instance(),
                sndhwm=sndhwm,
                linger_ms=int(linger_s * 1000),
            )
            self.endpoint = discovery
            return
        self._socket = publishing_socket(
            context or zmq.Context.instance(), sndhwm=sndhwm, linger_ms=int(linger_s * 1000)
        )
        if bind:
            self._socket.bind(endpoint)
            endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        else:
            self._socket.connect(endpoint)
        self.endpoint = endpoint

    def wait_for_engine(self, timeout_s: float | None = None) -> None:
        """Block until the engine has subscribed (the first send does this by itself).

        Raises :class:`EngineNotFound` after ``timeout_s`` (default ``join_timeout_s``).
        """
        if self._joined:
            return
        timeout = self.join_timeout_s if timeout_s is None else float(timeout_s)
        if self._sharded is not None:
            try:
                self._sharded.wait_for_replicas(timeout)
            except JoinTimeout as exc:
                raise EngineNotFound(f"discovery {self.endpoint}: {exc}") from exc
            self._joined = True
            return
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

        ``send_ns`` defaults to the wall clock (``time.time_ns()``) at the send.  With
        ``discovery``: one frame per shard that has records in the batch, each numbered in
        its shard's stream (see :meth:`report`); the return value then counts the records
        sent before this batch, over all shards, and ``send_ns`` is the clock at the send.
        """
        if kind not in _s.INPUT_KINDS:
            raise ValueError(f"kind must be one of {_s.INPUT_KINDS} (an input), got {kind}")
        if len(records) == 0:
            raise ValueError("a frame carries at least one record")
        self.wait_for_engine()
        seq = self.next_seq
        if self._sharded is not None:
            self._sharded.send(kind, records)
            self.next_seq = seq + len(records)
            return seq
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

    def report(self) -> dict:
        """With ``discovery``: per shard, its replicas, records sent and ``undelivered``.

        Without: the stream id and the next sequence number.
        """
        if self._sharded is not None:
            return self._sharded.report()
        return {"stream_id": self.stream_id, "next_seq": self.next_seq}

    def close(self) -> None:
        """Close the socket(s) (waiting up to ``linger_s`` for queued frames)."""
        if self._sharded is not None:
            self._sharded.close()
            return
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
    """Receives an engine's results: from one engine, several, or a sharded cluster.

    Args:
        endpoint: the engine's publish endpoint, e.g. ``"tcp://127.0.0.1:5556"``, or a
            list of them (every replica of a sharded cluster; one SUB socket each, so
            each replica's result sequences are checked on their own).
        topics: topic prefixes (``"trade."`` all trade results, ``"book.7"`` symbol 7's
            books and also 70-79; ``""`` everything, ``"stats"`` the stats messages).
        discovery: a Mesos scheduler's discovery file or ``http://`` URL: subscribe to
            every replica it lists, and to every replica it lists later (a relaunched one),
            re-reading it every ``refresh_s``.
        first_copy: deliver only the first copy of each result (redundant replicas
            publish every result twice; see
            :class:`~tickpath.engine.service.dedup.ResultDeduplicator`).  Default: on
            with ``discovery`` or several endpoints, off for one endpoint.
        rcvhwm: messages queued before newer ones are dropped (and counted in :attr:`lost`).
        context: a ZeroMQ context (default: the process' shared one).
    """

    def __init__(
        self,
        endpoint: str | Sequence[str] | None = None,
        topics: Sequence[str] = ("",),
        *,
        discovery: str | None = None,
        first_copy: bool | None = None,
        refresh_s: float = 1.0,
        rcvhwm: int = 100_000,
        context: zmq.Context | None = None,
    ) -> None:
        endpoints = [endpoint] if isinstance(endpoint, str) else list(endpoint or [])
        if not endpoints and discovery is None:
            raise ValueError("give an endpoint (or several), or discovery")
        self._ctx = context or zmq.Context.instance()
        self._topics = [topic.encode() for topic in topics]
        self._rcvhwm = rcvhwm
        self._fan_in = FanIn()  # one busy replica cannot starve the others
        self._endpoint_of: dict[zmq.Socket, str] = {}  # every socket, in the order joined
        self._sequences: dict[zmq.Socket, TopicSequences] = {}
        self.endpoints: list[str] = []
        """Every publish endpoint subscribed to, in the order they were joined."""
        self._follower = None
        if discovery is not None:
            from tickpath.engine.cluster.discovery import EndpointFollower

            self._follower = EndpointFollower(discovery, refresh_s)
            endpoints += [e for e in self._follower.poll(force=True) if e not in endpoints]
            if not endpoints:
                raise EngineNotFound(f"discovery {discovery} lists no running replica")
        for each in endpoints:
            self._join(each)
        self.endpoint = self.endpoints[0]
        if first_copy is None:
            first_copy = discovery is not None or len(self.endpoints) > 1
        self._dedup = ResultDeduplicator() if first_copy else None
        self.malformed = 0
        """Messages that were not a result frame (counted and skipped)."""
        self.last_endpoint: str | None = None
        """The publish endpoint the last message returned by :meth:`recv` came from."""

    def _join(self, endpoint: str) -> None:
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, self._rcvhwm)
        # A SUB socket sends only its subscriptions, and ZeroMQ drops those beyond SNDHWM
        # (1,000) silently: a long topic list would lose its tail while the engine applies
        # them a few at a time (publish.subscription_backlog). No mark: keep them all.
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.connect(endpoint)
        for topic in self._topics:
            sock.setsockopt(zmq.SUBSCRIBE, topic)
        self._fan_in.register(sock)
        self._endpoint_of[sock] = endpoint
        self._sequences[sock] = TopicSequences()
        self.endpoints.append(endpoint)

    def follow(self, force: bool = False) -> list[str]:
        """Subscribe to replicas discovery lists since the last look; return their endpoints.

        :meth:`recv` calls this by itself (every ``refresh_s``); ``force`` reads now.
        """
        if self._follower is None:
            return []
        new = [e for e in self._follower.poll(force) if e not in self.endpoints]
        for endpoint in new:
            self._join(endpoint)
        return new

    @property
    def lost(self) -> int:
        """Results that never arrived, from gaps in each publisher's per-topic sequences.

        With redundant replicas a result one replica lost may still come from its twin.
        """
        return sum(seqs.lost for seqs in self._sequences.values())

    @property
    def duplicates(self) -> int:
        """Second copies of results dropped (``first_copy``), 0 without it."""
        return self._dedup.duplicates if self._dedup is not None else 0

    def recv(self, timeout_s: float | None = None) -> Result | None:
        """The next message, or None when none arrives within ``timeout_s`` (None: wait)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            self.follow()
            wait_ms = 100 if deadline is None else max(0, int((deadline - time.monotonic()) * 1e3))
            if self._follower is not None:
                wait_ms = min(wait_ms, 100)  # look at discovery while waiting
            received = self._fan_in.recv(wait_ms)
            if received is not None:
                sock, parts = received
                result = self._decode(parts, sock)
                if result is not None:
                    self.last_endpoint = self._endpoint_of[sock]
                    return result
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def _decode(self, parts: list[bytes], sock: zmq.Socket | None = None) -> Result | None:
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
        sequences = self._sequences[sock if sock is not None else next(iter(self._endpoint_of))]
        sequences.observe(topic, int(header["seq"]), int(header["count"]))
        if self._dedup is not None and not self._dedup.first_copy(topic, payload, sock):
            return None  # the other replica's copy, already delivered
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
        """Close the sockets."""
        for sock in self._endpoint_of:
            sock.close(linger=0)

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
