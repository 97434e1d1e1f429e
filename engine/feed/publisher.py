"""``tickpath feed``: publish synthetic or recorded market data to the engine over ZeroMQ.

Topology (default)::

    feed XPUB --connect--> tcp://host:port <--bind-- engine ingest SUB

The feed connects (``bind=True`` makes it bind instead) an XPUB with an
explicit SNDHWM and waits until the engine's subscription has arrived on it
(:mod:`tickpath.engine.feed.join`; a PUB drops everything sent before a
subscriber's subscription has arrived, silently), up to ``join_timeout``
seconds, then sends single-part frames of ``batch`` records of one kind each.
Sequence numbers count records and run on across frames of all kinds of the
stream; ``send_ns`` is ``time.time_ns()`` just before each send.
Frames on the socket carry the version 2 header with a session id new for
every run (the engine then refuses other sessions on the stream, and a
restarted feed is a new session: README, "Stream integrity"); recordings keep
the version 1 header.

A subscriber that binds (the engine's SUB) attaches a connecting peer, and so
sends it its subscription, only while its own thread calls into the socket
(recv/poll); an engine blocked in ``poll`` is fine, an idle socket gets nothing.

Pacing is open loop: frame ``k`` has an intended send time fixed in advance
(``t0 + records_through_k / rate``, or the recording's own timeline divided by
``speed``).  The feed sleeps until that time; when it is late it sends at once
and records the lag, without ever sending faster than the schedule to make up
silently: the report states the worst and the final lag and how many frames
went out more than :data:`LATE_AFTER_S` after their time.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import msgspec
import numpy as np
import zmq

from tickpath.engine.feed.join import publishing_socket, wait_for_subscribers
from tickpath.engine.feed.recording import RecordingWriter, iter_frames, scan
from tickpath.engine.feed.synthetic import SyntheticMarket
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s

MAX_BATCH = 65_536
LATE_AFTER_S = 0.001  # a frame sent later than this after its intended time counts as late
DEFAULT_SNDHWM = 100_000  # frames
SYNTHETIC_DURATION_S = 10.0  # duration="auto" for a synthetic feed (a replay plays it all)
DEFAULT_JOIN_TIMEOUT_S = 60.0  # how long the feed waits for the engine's subscription
PROGRESS_EVERY_S = 0.25  # the replay progress callback's period


class FeedReport(msgspec.Struct, frozen=True, kw_only=True):
    """What a feed run sent, and how well it kept its schedule."""

    source: str  # "synthetic" or the replayed file
    endpoint: str | None  # None in record-only mode
    stream_id: int
    first_seq: int
    next_seq: int  # the seq the stream's next frame would carry
    frames: int
    records: int
    trades: int
    quotes: int
    orders: int
    elapsed_s: float  # from the start of the schedule to the last send
    target_rate: float | None  # records/s asked for; None when unpaced or paced by a recording
    achieved_rate: float  # records / elapsed_s
    max_lag_s: float  # worst delay of a send behind its intended time
    mean_lag_s: float
    final_lag_s: float  # delay of the last frame: how far behind the run ended
    late_frames: int  # frames sent more than LATE_AFTER_S late
    recorded_to: str | None
    recording_records: int | None = None  # replay: records in the whole recording
    join_s: float = 0.0  # seconds spent waiting for the engine's subscription
    interrupted: bool = False
    session: int = 0  # the version 2 session id the frames carried; 0: version 1 frames
    sharding: dict | None = None  # --discovery: per shard endpoints, records, undelivered


def check_feed_options(
    *,
    endpoint: str | None,
    symbols: int,
    rate: float,
    batch: int,
    duration: float | None,
    replay: str | None,
    record: str | None,
    stream_id: int,
    speed: float | None,
    sndhwm: int,
    max_records: int | None,
    discovery: str | None = None,
) -> None:
    """Raise ``ValueError`` with a one-line message for the first invalid option."""
    if endpoint is None and record is None and not discovery:
        raise ValueError(
            "--endpoint or --discovery is required (or --record-only with --record FILE)"
        )
    if endpoint is not None and "://" not in endpoint:
        raise ValueError(f"--endpoint must look like tcp://HOST:PORT, got {endpoint!r}")
    if not 1 <= symbols <= 1 << 20:
        raise ValueError(f"--symbols must be in 1..{1 << 20}, got {symbols}")
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"--rate must be a finite number > 0 records/s, got {rate}")
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"--batch must be in 1..{MAX_BATCH}, got {batch}")
    if duration is not None and not (duration >= 0 and math.isfinite(duration)):
        raise ValueError(f"--duration must be >= 0 seconds (0: no limit), got {duration}")
    if speed is not None and not (speed >= 0 and math.isfinite(speed)):
        raise ValueError(f"--speed must be >= 0 (0: as fast as possible), got {speed}")
    if speed is not None and replay is None:
        raise ValueError("--speed applies only to --replay")
    if replay is not None and record is not None:
        raise ValueError("--record cannot be combined with --replay (copy the file instead)")
    if not 0 <= stream_id <= 0xFFFFFFFF:
        raise ValueError(f"--stream-id must fit in a u32, got {stream_id}")
    if sndhwm < 0:
        raise ValueError(f"--sndhwm must be >= 0 (0: no limit), got {sndhwm}")
    if max_records is not None and max_records < 1:
        raise ValueError(f"--max-records must be >= 1, got {max_records}")


def feed_market(
    symbols: int,
    seed: int,
    rate: float,
    *,
    trade_ratio: float = 0.1,
    quote_ratio: float = 0.4,
    order_ratio: float = 0.5,
) -> SyntheticMarket:
    """The generator :func:`run_feed` uses: market time advances at ``rate`` events/s.

    So a recording of a feed replayed at ``speed=1`` has the feed's pacing.
    """
    return SyntheticMarket(
        symbols,
        seed,
        trade_ratio=trade_ratio,
        quote_ratio=quote_ratio,
        order_ratio=order_ratio,
        mean_gap_ns=1e9 / rate,
    )


class _Schedule:
    """Open-loop pacing and lag accounting."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.max_lag = 0.0
        self.sum_lag = 0.0
        self.last_lag = 0.0
        self.late = 0
        self.n = 0
        self.t_last = self.t0

    def wait_until(self, offset_s: float) -> None:
        due = self.t0 + offset_s
        now = time.perf_counter()
        if now < due:
            time.sleep(due - now)
            now = time.perf_counter()
        lag = max(0.0, now - due)
        self.max_lag = max(self.max_lag, lag)
        self.sum_lag += lag
        self.last_lag = lag
        self.late += lag > LATE_AFTER_S
        self.n += 1

    def sent(self) -> None:
        self.t_last = time.perf_counter()


def _synthetic_frames(
    market: SyntheticMarket, batch: int, max_records: int | None
) -> Iterator[tuple[int, np.ndarray]]:
    sent = 0
    while max_records is None or sent < max_records:
        n = batch if max_records is None else min(batch, max_records - sent)
        kind, records = market.next_batch(n)
        sent += n
        yield kind, records


def run_feed(
    endpoint: str | None,
    symbols: int = 8,
    rate: float = 100_000,
    batch: int = 64,
    duration: float | str | None = "auto",
    seed: int = 1,
    replay: str | None = None,
    stream_id: int = 1,
    bind: bool = False,
    record: str | None = None,
    *,
    speed: float | None = None,
    first_seq: int = 0,
    sndhwm: int = DEFAULT_SNDHWM,
    join_timeout: float = DEFAULT_JOIN_TIMEOUT_S,
    linger_ms: int = 2_000,
    max_records: int | None = None,
    trade_ratio: float = 0.1,
    quote_ratio: float = 0.4,
    order_ratio: float = 0.5,
    context: zmq.Context | None = None,
    stop: threading.Event | None = None,
    curve: tuple[str, str | None] | None = None,
    session: int | None = None,
    discovery: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> FeedReport:
    """Publish market data frames on an XPUB socket; return what was sent.

    Synthetic mode (``replay=None``): ``symbols`` symbols from
    :func:`feed_market`, ``batch`` records per frame, paced at ``rate``
    records/s for ``duration`` seconds of schedule (``"auto"``: 10 s; ``None`` or
    0: until ``max_records``, ``stop`` or Ctrl-C), optionally also written to the
    recording ``record``.  ``endpoint=None`` with ``record`` set writes the
    recording only, unpaced.

    Replay mode: the frames of the recording ``replay`` as they are (so
    ``batch`` does not apply), re-stamped with ``stream_id``, contiguous
    sequence numbers from ``first_seq`` and the send time; paced by the
    recording's own timestamps divided by ``speed`` (0: as fast as possible) or,
    if ``speed`` is None, at ``rate`` records/s.  The whole recording is sent
    unless ``duration`` (seconds of schedule) or ``max_records`` is given
    (``"auto"``: the whole recording).  ``progress(records sent, records in the
    recording)`` is called every :data:`PROGRESS_EVERY_S` and once at the end.

    Before the first frame the feed waits up to ``join_timeout`` seconds for the
    engine's subscription on its XPUB (raising
    :class:`~tickpath.engine.feed.join.JoinTimeout` without one), so no frame is
    lost at the join; ``join_timeout=0`` sends at once (to nobody, if nobody has
    joined yet).

    ``curve``: ``(server public key file, client secret key file or None)`` to
    connect to an engine that has CURVE on (docs/reliability.md).

    ``session``: the version 2 session id of the sent frames; None: a new one
    for this run (:func:`new_session_id`); 0: version 1 frames, no session.

    ``discovery`` (instead of ``endpoint``): the cluster's discovery file or URL;
    each record goes to the replicas of its symbol's shard, one stream and sequence
    per shard (:class:`~tickpath.engine.feed.sharding.ShardingPublisher`); the
    report's ``sharding`` says per shard what was sent and what no replica heard.
    """
    if session is None:
        session = new_session_id()
    if not 0 <= session < 1 << 64:
        raise ValueError(f"session must be in 0..2**64-1, not {session}")
    if duration == "auto":
        duration = SYNTHETIC_DURATION_S if replay is None else None
    if duration == 0:
        duration = None
    if isinstance(duration, str):
        raise ValueError(f"duration must be seconds, 0, None or 'auto', got {duration!r}")
    check_feed_options(
        endpoint=endpoint,
        symbols=symbols,
        rate=rate,
        batch=batch,
        duration=duration,
        replay=replay,
        record=record,
        stream_id=stream_id,
        speed=speed,
        sndhwm=sndhwm,
        max_records=max_records,
        discovery=discovery,
    )
    total = sum(scan(replay).records_by_kind.values()) if replay is not None else None
    join_s = 0.0
    if discovery is not None and endpoint is not None:
        raise ValueError("give --endpoint or --discovery, not both")
    with ExitStack() as stack:
        sock = None
        sharder = None
        if discovery is not None:
            from tickpath.engine.feed.sharding import ShardingPublisher

            ctx = context if context is not None else stack.enter_context(zmq.Context())
            sharder = ShardingPublisher(
                discovery, stream_id=stream_id, context=ctx, sndhwm=sndhwm,
                linger_ms=linger_ms, session=session,
            )  # fmt: skip
            stack.callback(sharder.close)
            if join_timeout > 0:
                t_join = time.perf_counter()
                sharder.wait_for_replicas(join_timeout)
                join_s = time.perf_counter() - t_join
        if endpoint is not None:
            ctx = context if context is not None else stack.enter_context(zmq.Context())
            sock = publishing_socket(ctx, sndhwm=sndhwm, linger_ms=linger_ms)
            stack.callback(sock.close)
            if curve is not None:
                from tickpath.engine.security.curve import apply_curve_client

                apply_curve_client(sock, curve[0], curve[1])
            if bind:
                sock.bind(endpoint)
            else:
                sock.connect(endpoint)
            if join_timeout > 0:
                t_join = time.perf_counter()
                wait_for_subscribers([sock], join_timeout, [f"engine at {endpoint}"])
                join_s = time.perf_counter() - t_join
        writer = stack.enter_context(RecordingWriter(record)) if record is not None else None
        # replay at speed 0 is unpaced: as fast as the socket takes it
        paced = (sock is not None or sharder is not None) and not (
            replay is not None and speed == 0
        )

        if replay is None:
            market = feed_market(
                symbols,
                seed,
                rate,
                trade_ratio=trade_ratio,
                quote_ratio=quote_ratio,
                order_ratio=order_ratio,
            )
            # load the numba kernels now, not on the schedule's first frame
            SyntheticMarket(1, 0).next_batch(1)
            frames: Iterator[tuple[int, np.ndarray]] = _synthetic_frames(market, batch, max_records)
            source = "synthetic"
            target_rate: float | None = rate if paced else None
        else:
            frames = ((int(f.header["kind"]), f.records) for f in iter_frames(replay))
            source = str(replay)
            target_rate = rate if paced and speed is None else None

        wire_session = session or None  # None: version 1 frames
        hsize = s.HEADER_V2_SIZE if wire_session else s.HEADER_SIZE
        buf = np.zeros(hsize + batch * s.QUOTE_SIZE, np.uint8)
        header = buf[:hsize].view(s.HEADER_V2 if wire_session else s.HEADER)
        rec_buf = np.zeros(s.HEADER_SIZE + batch * s.QUOTE_SIZE, np.uint8)
        per_kind = {s.KIND_TRADE: 0, s.KIND_QUOTE: 0, s.KIND_ORDER: 0}
        seq = first_seq
        sent = 0
        n_frames = 0
        ts_first: int | None = None
        ts_ref = 0
        interrupted = False
        next_progress = 0.0
        sched = _Schedule()
        try:
            for kind, records in frames:
                n = len(records)
                if replay is not None and max_records is not None and sent + n > max_records:
                    break
                if stop is not None and stop.is_set():
                    interrupted = True
                    break
                if paced:
                    if replay is not None and speed is not None:
                        ts_ref = max(ts_ref, int(records["ts_ns"][-1]))
                        if ts_first is None:
                            ts_first = ts_ref
                        offset = (ts_ref - ts_first) / 1e9 / speed
                    else:
                        offset = (sent + n) / rate
                    if duration is not None and offset > duration:
                        break
                    sched.wait_until(offset)
                elif replay is None and duration is not None and sent + n > rate * duration:
                    break  # record-only: what `duration` seconds at `rate` would have sent
                nbytes = hsize + records.nbytes
                if nbytes > len(buf):
                    buf = np.zeros(nbytes, np.uint8)
                    header = buf[:hsize].view(s.HEADER_V2 if wire_session else s.HEADER)
                if sharder is not None:
                    sharder.send(kind, records)
                    sched.sent()
                if sock is not None:
                    length = codec.encode_frame_into(
                        buf, kind, stream_id, seq, records, 0, wire_session
                    )
                    header["send_ns"] = time.time_ns()
                    sock.send(buf[:length], copy=True)
                    sched.sent()
                if writer is not None:  # recordings keep the version 1 header
                    if s.HEADER_SIZE + records.nbytes > len(rec_buf):
                        rec_buf = np.zeros(s.HEADER_SIZE + records.nbytes, np.uint8)
                    length = codec.encode_frame_into(rec_buf, kind, stream_id, seq, records, 0)
                    writer.write_frame(rec_buf[:length])
                seq += n
                sent += n
                n_frames += 1
                per_kind[kind] = per_kind.get(kind, 0) + n
                if progress is not None and total is not None:
                    now = time.perf_counter()
                    if now >= next_progress:
                        progress(sent, total)
                        next_progress = now + PROGRESS_EVERY_S
        except KeyboardInterrupt:
            interrupted = True
        if progress is not None and total is not None:
            progress(sent, total)
        elapsed = sched.t_last - sched.t0 if paced else time.perf_counter() - sched.t0
        sharding = sharder.report() if sharder is not None else None
        if sock is not None and wire_session:
            # release the stream: a restarted feed (a new session) is accepted at once
            sock.send(
                codec.encode_end_of_session(s.KIND_TRADE, stream_id, seq, session, time.time_ns())
            )
    return FeedReport(
        source=source,
        endpoint=endpoint,
        stream_id=stream_id,
        first_seq=first_seq,
        next_seq=seq,
        frames=n_frames,
        records=sent,
        trades=per_kind[s.KIND_TRADE],
        quotes=per_kind[s.KIND_QUOTE],
        orders=per_kind[s.KIND_ORDER],
        elapsed_s=elapsed,
        target_rate=target_rate,
        achieved_rate=sent / elapsed if elapsed > 0 else 0.0,
        max_lag_s=sched.max_lag,
        mean_lag_s=sched.sum_lag / sched.n if sched.n else 0.0,
        final_lag_s=sched.last_lag,
        late_frames=sched.late,
        recorded_to=str(record) if record is not None else None,
        interrupted=interrupted,
        session=session if endpoint is not None or discovery is not None else 0,
        sharding=sharding,
        recording_records=total,
        join_s=join_s,
    )


def new_session_id() -> int:
    """A version 2 session id for one publisher run: the start time in ns (never 0).

    A restarted publisher gets a larger id, so it is a new session; the engine
    remembers the previous holder of a stream and refuses its frames as duplicates.
    """
    return time.time_ns()
