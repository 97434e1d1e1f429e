"""A publisher that sends each record to the replicas of the shard that owns its symbol.

Topology (``tickpath feed --discovery FILE_OR_URL``)::

    records --split by ShardMap--> shard 0: XPUB --connect--> replica 0a, replica 0b
                                   shard 1: XPUB --connect--> replica 1a, replica 1b
                                   ...

Each shard is its own stream: one sequence per shard, so every replica of a shard
sees a contiguous stream and its gap accounting stays exact.  The replicas of a shard
(two with ``--replicas 2S --shards S``) all receive every frame of it: a PUB sends to
every connected subscriber.

The discovery document (the Mesos scheduler's, :mod:`tickpath.engine.cluster.discovery`)
is re-read every ``refresh_s``: a replica relaunched elsewhere is connected, one that is
gone is disconnected.  Each XPUB runs with ``ZMQ_XPUB_VERBOSER``, so it sees every
subscriber join (``\\x01``) and leave (``\\x00``, when the connection closes): the
publisher knows how many replicas of each shard are listening, and counts the records
it sent to a shard that had none (``undelivered``), instead of losing them silently.
Records sent in the instant between a replica's death and its connection closing are
lost for that replica only; its twin has them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import zmq

from tickpath.engine.cluster.discovery import read_discovery
from tickpath.engine.cluster.shards import ShardMap
from tickpath.engine.feed.join import JoinTimeout
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s

RECORD_DTYPE = {s.KIND_TRADE: s.TRADE, s.KIND_QUOTE: s.QUOTE, s.KIND_ORDER: s.ORDER}


@dataclass
class ShardStats:
    """What one shard's stream carried."""

    next_seq: int = 0  # sequence of the shard stream's next record
    frames: int = 0
    records: int = 0
    undelivered: int = 0  # records sent while no replica of the shard was subscribed
    listeners: int = 0  # replicas subscribed now
    endpoints: list[str] = field(default_factory=list)


class ShardingPublisher:
    """Split batches by shard and send each part to that shard's replicas (see module doc)."""

    def __init__(
        self,
        discovery: str,
        *,
        stream_id: int = 1,
        shard_map: ShardMap | None = None,
        context: zmq.Context | None = None,
        sndhwm: int = 100_000,
        linger_ms: int = 2_000,
        refresh_s: float = 1.0,
        max_frame_records: int = 65_536,
        session: int | None = None,
    ) -> None:
        self.discovery = discovery
        self.stream_id = stream_id
        self.session = session or None  # version 2 frames with this session id; None: version 1
        self.refresh_s = refresh_s
        self._own_ctx = context is None
        self.ctx = context if context is not None else zmq.Context()
        self._sndhwm = sndhwm
        self._linger_ms = linger_ms
        document = read_discovery(discovery)
        shards = int(document.get("shards") or 0)
        if shard_map is None:
            if shards < 1:
                raise ValueError(f"discovery {discovery} names no shard count")
            shard_map = ShardMap.modulo(shards)
        elif shards and shard_map.shards != shards:
            raise ValueError(
                f"the shard map has {shard_map.shards} shards, discovery {discovery} has {shards}"
            )
        self.shard_map = shard_map
        self.stats = [ShardStats() for _ in range(shard_map.shards)]
        self._socks: list[zmq.Socket] = []
        for _ in range(shard_map.shards):
            sock = self.ctx.socket(zmq.XPUB)
            sock.setsockopt(zmq.SNDHWM, sndhwm)
            sock.setsockopt(zmq.LINGER, linger_ms)
            sock.setsockopt(zmq.XPUB_VERBOSER, 1)  # joins and leaves, one message each
            # a pipe per live connection only: a peer's leaving ends its pipe (and so
            # delivers its unsubscription), and nothing queues for a replica that is gone
            sock.setsockopt(zmq.IMMEDIATE, 1)
            self._socks.append(sock)
        self._connected: list[set[str]] = [set() for _ in self._socks]
        self._buf = np.zeros(s.HEADER_V2_SIZE + max_frame_records * s.QUOTE_SIZE, np.uint8)
        self._next_refresh = 0.0
        self.refreshes = 0
        self.refresh_errors = 0
        self._apply(document)

    # -- membership ------------------------------------------------------------
    def _apply(self, document: dict) -> None:
        wanted: list[set[str]] = [set() for _ in self._socks]
        for item in document.get("endpoints", []):
            shard = int(item.get("shard", -1))
            if 0 <= shard < len(wanted) and isinstance(item.get("ingest"), str):
                wanted[shard].add(item["ingest"])
        for shard, sock in enumerate(self._socks):
            for endpoint in sorted(self._connected[shard] - wanted[shard]):
                sock.disconnect(endpoint)
            for endpoint in sorted(wanted[shard] - self._connected[shard]):
                sock.connect(endpoint)
            self._connected[shard] = wanted[shard]
            self.stats[shard].endpoints = sorted(wanted[shard])
        self._next_refresh = time.monotonic() + self.refresh_s

    def refresh(self) -> None:
        """Re-read the discovery document now and follow its changes."""
        try:
            document = read_discovery(self.discovery)
        except (OSError, ValueError):
            self.refresh_errors += 1  # keep the last known endpoints
            self._next_refresh = time.monotonic() + self.refresh_s
            return
        self.refreshes += 1
        self._apply(document)

    def _drain_membership(self) -> None:
        for shard, sock in enumerate(self._socks):
            while sock.poll(0, zmq.POLLIN):
                event = sock.recv()
                if event[:1] == b"\x01":
                    self.stats[shard].listeners += 1
                elif event[:1] == b"\x00":
                    self.stats[shard].listeners = max(0, self.stats[shard].listeners - 1)

    def wait_for_replicas(self, timeout_s: float, per_shard: int | None = None) -> None:
        """Block until every shard has ``per_shard`` replicas subscribed (JoinTimeout if not).

        ``per_shard=None``: as many as discovery lists for the shard (at least one).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            if time.monotonic() >= self._next_refresh:
                self.refresh()
            self._drain_membership()
            short = [
                i
                for i, st in enumerate(self.stats)
                if st.listeners < (per_shard or max(1, len(st.endpoints)))
            ]
            if not short:
                return
            if time.monotonic() > deadline:
                raise JoinTimeout(
                    f"shards without their subscribed replicas after {timeout_s:g} s: "
                    + ", ".join(map(str, short))
                )
            time.sleep(0.01)

    # -- sending ---------------------------------------------------------------
    def send(self, kind: int, records: np.ndarray) -> None:
        """Send ``records`` (one kind) split by shard, each part as one frame of its stream."""
        if time.monotonic() >= self._next_refresh:
            self.refresh()
        self._drain_membership()
        shards = self.shard_map.shard_of(records["symbol"])
        order = np.argsort(shards, kind="stable")  # keeps each shard's records in order
        bounds = np.searchsorted(shards[order], np.arange(len(self._socks) + 1))
        for shard in range(len(self._socks)):
            lo, hi = int(bounds[shard]), int(bounds[shard + 1])
            if lo == hi:
                continue
            part = records[order[lo:hi]]
            st = self.stats[shard]
            nbytes = s.HEADER_V2_SIZE + part.nbytes
            if nbytes > len(self._buf):
                self._buf = np.zeros(nbytes, np.uint8)
            length = codec.encode_frame_into(
                self._buf, kind, self.stream_id, st.next_seq, part, time.time_ns(), self.session
            )
            if st.listeners == 0:
                st.undelivered += hi - lo
            self._socks[shard].send(self._buf[:length], copy=True)
            st.next_seq += hi - lo
            st.frames += 1
            st.records += hi - lo

    def report(self) -> dict:
        """Per shard: endpoints, listeners, frames, records, undelivered, next sequence."""
        self._drain_membership()
        return {
            "stream_id": self.stream_id,
            "shards": [
                {
                    "shard": i,
                    "endpoints": st.endpoints,
                    "listeners": st.listeners,
                    "frames": st.frames,
                    "records": st.records,
                    "undelivered": st.undelivered,
                    "next_seq": st.next_seq,
                }
                for i, st in enumerate(self.stats)
            ],
            "refreshes": self.refreshes,
            "refresh_errors": self.refresh_errors,
        }

    def close(self) -> None:
        """Close the sockets (lingering up to ``linger_ms`` to deliver what is queued)."""
        if self.session:  # end of session: the replicas release the shard streams at once
            for shard, sock in enumerate(self._socks):
                seq = self.stats[shard].next_seq
                sock.send(
                    codec.encode_end_of_session(
                        s.KIND_TRADE, self.stream_id, seq, self.session, time.time_ns()
                    )
                )
        for sock in self._socks:
            sock.close()
        if self._own_ctx:
            self.ctx.term()

    def __enter__(self) -> ShardingPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
