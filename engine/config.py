"""The engine's one typed, validated configuration: a TOML file plus command-line flags.

Every field has a default that works on a laptop.  Unknown keys, wrong types
and out-of-range values are refused with a one-line :class:`ConfigError`.

Example ``tickpath.toml``::

    [ingest]
    endpoints = ["tcp://127.0.0.1:5555"]
    rcvhwm = 100000

    [analytics]
    n_symbols = 4096
    ema_spans = [15, 63, 255, 1023]

    [publish]
    endpoint = "tcp://127.0.0.1:5556"
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import msgspec

from tickpath.engine.dispatch.config import DispatchConfig
from tickpath.engine.journal.config import JournalConfig
from tickpath.engine.security.config import SecurityConfig
from tickpath.engine.wire import schema as s


class ConfigError(ValueError):
    """A configuration that cannot be used; the message is one line."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


INGEST_MESSAGE_SLACK = 64 << 10  # default ingest.max_message_bytes = max_frame_bytes + this
# What one queued result costs libzmq at most, in bytes: two 64-byte zmq_msg_t (topic and
# frame; a topic of <= 33 bytes lives inside its msg_t), the largest streaming result frame
# (header + record) and its content block and malloc overhead (64 bytes).
RESULT_MESSAGE_COST = (
    2 * 64
    + s.HEADER_SIZE
    + max(d.itemsize for d in (s.RESULT_QUOTE, s.RESULT_TRADE, s.RESULT_BAR, s.RESULT_BOOK))
    + 64
)

_INT_MAX = (1 << 31) - 1
BATCH_MAX_RECORDS = 1024  # default publish.batch_max_records


def batch_message_cost(n_symbols: int, batch_max_records: int) -> int:
    """What one queued batched result message costs libzmq at most, in bytes.

    A batched message carries at most one quote, trade or book result per symbol
    an input frame touched (``min(n_symbols, batch_max_records)`` records) or
    ``batch_max_records`` completed bars; larger batches are split.  Costed as
    :data:`RESULT_MESSAGE_COST` is: two ``zmq_msg_t``, the header, the records, 64 bytes of
    content block and malloc overhead.
    """
    largest = max(d.itemsize for d in (s.RESULT_QUOTE, s.RESULT_TRADE, s.RESULT_BOOK))
    per_symbol = min(n_symbols, batch_max_records) * (largest - s.HEADER_SIZE)
    bars = batch_max_records * (s.RESULT_BAR.itemsize - s.HEADER_SIZE)
    return 2 * 64 + s.HEADER_SIZE + max(per_symbol, bars) + 64


class IngestConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Where market data comes in."""

    endpoints: tuple[str, ...] = ("tcp://127.0.0.1:5555",)
    # Endpoints for publishers on networks you do not control (bound, on the same socket):
    # their connections, CURVE handshakes included, are served by a ZeroMQ I/O thread of
    # their own that runs SCHED_IDLE, so a handshake flood there does not delay the frames
    # arriving on ``endpoints`` (docs/reliability.md, "Pressure").  A publisher there gets
    # CPU only when no normal thread of the host wants it.  Needs bind = true.
    public_endpoints: tuple[str, ...] = ()
    bind: bool = True  # the engine binds its SUB socket; publishers connect
    rcvhwm: int = 100_000  # most frames queued per publisher (see effective_rcvhwm)
    max_frame_bytes: int = 1 << 20  # larger frames are rejected as "oversize"
    max_streams: int = 64  # stream ids 0..max_streams-1 are accepted
    # A forward sequence jump of more than this many records is refused (bad_jump) instead of
    # being taken as a gap: one stray frame cannot push a stream far ahead.
    max_gap: int = 1 << 32
    # Version 2: another session may take a stream over once its holder was silent this long.
    failover_s: float = 2.0
    # A record ts_ns later than the receive time + this is refused (bad_timestamp); 0: off.
    max_clock_skew_s: float = 60.0
    # Serve one symbol shard: "I/N" (symbol s belongs to shard s % N, or to what shard_map
    # says); records of other shards are refused (foreign_shard). "": every symbol.
    shard: str = ""
    shard_map: str = ""  # a JSON shard map file (docs/mesos.md); "" : symbol % N
    # Byte budget of the frames queued in libzmq per publisher connection: the queue
    # holds at most backlog_bytes // max_message_bytes frames (effective_rcvhwm).
    backlog_bytes: int = 256 << 20
    # ZMQ_MAXMSGSIZE: a publisher that sends a larger message is disconnected by
    # libzmq before the message is buffered.  None: max_frame_bytes + 64 KiB (frames
    # a little over max_frame_bytes still arrive and are counted "oversize").
    max_message_bytes: int | None = None
    max_connections: int = 16  # publisher connections to the ingest socket (ZAP refuses more)
    # A frame of more records than this that continues its stream in order is processed
    # (journaled and published) as slices of this many records, and a waiting frame of
    # another stream may be processed between two slices (engine/ingest/slicer.py); its
    # results then come per slice.  0 (the default): every frame whole.
    slice_records: int = 0

    def __post_init__(self) -> None:
        _require(len(self.endpoints) > 0, "ingest.endpoints must not be empty")
        if self.shard:
            from tickpath.engine.cluster.shards import ShardMap, ShardMapError, parse_shard

            try:
                _, count = parse_shard(self.shard)
                if self.shard_map:
                    shards = ShardMap.from_file(self.shard_map).shards
                    _require(shards == count, f"ingest.shard_map has {shards} shards, "
                             f"ingest.shard says {count}")  # fmt: skip
            except ShardMapError as exc:
                raise ConfigError(f"ingest.shard: {exc}") from None
        else:
            _require(not self.shard_map, "ingest.shard_map needs ingest.shard (I/N)")
        for endpoint in (*self.endpoints, *self.public_endpoints):
            _require("://" in endpoint, f"ingest endpoint {endpoint!r} is not a ZeroMQ endpoint")
        _require(
            self.bind or not self.public_endpoints,
            "ingest.public_endpoints needs ingest.bind = true (the engine binds them)",
        )
        _require(0 <= self.rcvhwm <= _INT_MAX, f"ingest.rcvhwm must be in 0..{_INT_MAX}")
        _require(
            self.slice_records == 0 or 64 <= self.slice_records <= 1 << 20,
            "ingest.slice_records must be 0 (off) or in 64..1048576",
        )
        _require(
            s.HEADER_SIZE + s.QUOTE_SIZE <= self.max_frame_bytes <= 1 << 26,
            "ingest.max_frame_bytes must be between 80 and 64 MiB",
        )
        _require(1 <= self.max_streams <= 1 << 16, "ingest.max_streams must be in 1..65536")
        _require(1 <= self.max_gap <= (1 << 63) - 1, "ingest.max_gap must be in 1..2**63-1")
        _require(0 <= self.failover_s <= 86_400, "ingest.failover_s must be in 0..86400")
        _require(
            0 <= self.max_clock_skew_s <= 31_536_000, "ingest.max_clock_skew_s must be in 0..1 year"
        )
        _require(
            self.max_message_bytes is None or self.max_message_bytes >= self.max_frame_bytes,
            "ingest.max_message_bytes must be >= ingest.max_frame_bytes",
        )
        _require(
            self.backlog_bytes >= self.message_limit,
            "ingest.backlog_bytes must hold at least one message of max_message_bytes",
        )
        _require(1 <= self.max_connections <= 1 << 16, "ingest.max_connections must be in 1..65536")

    @property
    def message_limit(self) -> int:
        """ZMQ_MAXMSGSIZE of the ingest socket (``max_message_bytes`` or its default)."""
        if self.max_message_bytes is not None:
            return self.max_message_bytes
        return self.max_frame_bytes + INGEST_MESSAGE_SLACK

    @property
    def effective_rcvhwm(self) -> int:
        """RCVHWM set on the socket: ``min(rcvhwm, backlog_bytes // message_limit)``.

        ``rcvhwm = 0`` (libzmq: no limit) still gets the byte-derived bound.
        """
        derived = min(max(1, self.backlog_bytes // self.message_limit), _INT_MAX)
        return derived if self.rcvhwm == 0 else min(self.rcvhwm, derived)


class AnalyticsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Per-symbol streaming analytics and the memory they preallocate."""

    n_symbols: int = 1024  # symbol ids 0..n_symbols-1 are accepted
    ema_spans: tuple[int, ...] = (15, 63, 255, 1023)  # alpha = 2/(span+1): 2^-3 .. 2^-9
    vwap_window_s: float = 60.0
    vwap_ring: int = 256  # trades per symbol the VWAP window can hold (power of two)
    vol_window: int = 64  # log returns in the rolling mean / variance / volatility
    bar_s: float = 1.0  # OHLCV bar length
    book_levels: int = 64  # price levels per side and symbol in the L3 book
    book_orders: int = 1 << 20  # resting orders across all symbols

    def __post_init__(self) -> None:
        _require(1 <= self.n_symbols <= 1 << 20, "analytics.n_symbols must be in 1..1048576")
        _require(
            1 <= len(self.ema_spans) <= s.N_EMA,
            f"analytics.ema_spans needs 1 to {s.N_EMA} spans",
        )
        _require(all(span >= 1 for span in self.ema_spans), "analytics.ema_spans must be >= 1")
        _require(self.vwap_window_s > 0, "analytics.vwap_window_s must be > 0")
        _require(
            self.vwap_ring >= 2 and self.vwap_ring & (self.vwap_ring - 1) == 0,
            "analytics.vwap_ring must be a power of two >= 2",
        )
        _require(2 <= self.vol_window <= 1 << 16, "analytics.vol_window must be in 2..65536")
        _require(self.bar_s > 0, "analytics.bar_s must be > 0")
        _require(self.book_levels >= 5, "analytics.book_levels must be >= 5")
        _require(self.book_orders >= 16, "analytics.book_orders must be >= 16")


PUBLISH_MODES = ("symbol", "batch", "both")


class PublishConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Where results go out."""

    endpoint: str = "tcp://127.0.0.1:5556"
    bind: bool = True
    sndhwm: int = 100_000  # most messages queued per subscriber (see effective_sndhwm)
    stats_interval_s: float = 1.0
    # "symbol": one message per (analytic, symbol) per input frame, topics <analytic>.<sym>;
    # "batch": one message per analytic per input frame, topics batch.<analytic>, holding
    # the results of every symbol the frame touched; "both": both sets of topics
    mode: str = "symbol"
    # Byte budget of one subscriber's send queue in libzmq: the queue holds at most
    # subscriber_queue_bytes // (the largest message's cost) messages (effective_sndhwm).
    subscriber_queue_bytes: int = 48 << 20  # 100,000 results of 488 bytes
    # Records in one batched message at most: a frame's batch beyond it is split into
    # several messages (seq + count still chains them); bounds a batched message's bytes
    batch_max_records: int = BATCH_MAX_RECORDS
    max_subscribers: int = 32  # subscriber connections (ZAP refuses more)
    # ZMQ_MAXMSGSIZE: a longer subscription (ZMTP 3.1: 10 bytes + topic) or handshake
    # command disconnects its subscriber; CURVE's INITIATE needs about 300 bytes.  Without
    # CURVE, 64 fits every topic the engine publishes (docs/reliability.md, "Subscriptions").
    max_message_bytes: int = 1024
    # ZMQ_RCVHWM of the publish socket: subscription messages queued per subscriber.
    # libzmq applies them in the thread that uses the socket (the tick thread), as many as
    # are queued at a time; beyond this many it stops reading that subscriber's connection,
    # so a subscription flood is held back by TCP instead of stalling the tick thread
    # (docs/reliability.md, "Subscriptions"). The engine applies them while idle too.
    # 1 is refused: with it, libzmq never applied a CURVE subscriber's subscriptions in a
    # bench_pressure run.
    subscription_backlog: int = 2

    def __post_init__(self) -> None:
        _require("://" in self.endpoint, f"publish endpoint {self.endpoint!r} is not an endpoint")
        _require(
            2 <= self.subscription_backlog <= 1 << 20,
            "publish.subscription_backlog must be in 2..1048576",
        )
        _require(
            self.mode in PUBLISH_MODES,
            f"publish.mode must be one of {', '.join(PUBLISH_MODES)}, got {self.mode!r}",
        )
        _require(0 <= self.sndhwm <= _INT_MAX, f"publish.sndhwm must be in 0..{_INT_MAX}")
        _require(self.stats_interval_s > 0, "publish.stats_interval_s must be > 0")
        _require(
            self.subscriber_queue_bytes >= RESULT_MESSAGE_COST,
            f"publish.subscriber_queue_bytes must be >= {RESULT_MESSAGE_COST}",
        )
        _require(
            1 <= self.max_subscribers <= 1 << 16, "publish.max_subscribers must be in 1..65536"
        )
        _require(
            64 <= self.max_message_bytes <= 1 << 20,
            "publish.max_message_bytes must be in 64..1048576",
        )
        _require(
            1 <= self.batch_max_records <= 1 << 16,
            "publish.batch_max_records must be in 1..65536",
        )

    def message_cost(self, n_symbols: int) -> int:
        """The most one queued message costs libzmq, in bytes: :data:`RESULT_MESSAGE_COST`
        with per-symbol topics only, :func:`batch_message_cost` with batched ones."""
        if self.mode == "symbol":
            return RESULT_MESSAGE_COST
        return max(RESULT_MESSAGE_COST, batch_message_cost(n_symbols, self.batch_max_records))

    def effective_sndhwm(self, n_symbols: int) -> int:
        """SNDHWM set on the socket: ``min(sndhwm, subscriber_queue_bytes //
        message_cost(n_symbols))``, at least 1.

        ``sndhwm = 0`` (libzmq: no limit) still gets the byte-derived bound.
        """
        derived = max(1, self.subscriber_queue_bytes // self.message_cost(n_symbols))
        derived = min(derived, _INT_MAX)  # a socket option is a C int
        return derived if self.sndhwm == 0 else min(self.sndhwm, derived)


class ConnectionsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Descriptors and peers: heartbeats, handshake deadline, refused-connection logging.

    Applied to every socket the engine binds or connects for peers (ingest, publish).
    """

    heartbeat_ivl_s: float = 2.0  # ZMQ_HEARTBEAT_IVL: PING a silent peer this often (0: off)
    heartbeat_timeout_s: float = 10.0  # ZMQ_HEARTBEAT_TIMEOUT (and TTL): no traffic -> closed
    handshake_timeout_s: float = 10.0  # ZMQ_HANDSHAKE_IVL: a peer that never greets is closed
    log_interval_s: float = 10.0  # refused/dropped connections: one log line per reason and this
    nofile_reserve: int = 32  # descriptors kept out of libzmq's reach for the journal/snapshots
    # ZMQ_RCVBUF (SO_RCVBUF) of every TCP connection to the ingest and publish endpoints:
    # bounds the bytes a peer has in flight in the kernel and what one read copies (under
    # Linux's default non-preemptive kernel a multi-MiB copy delays the tick thread's
    # wake-up); 0: the kernel's autotuning (up to net.ipv4.tcp_rmem's maximum). A feed
    # across a network needs bandwidth x round trip: 64 KiB carries 650 MB/s at 100 us.
    receive_buffer_bytes: int = 64 << 10
    # ZMQ_SNDBUF (SO_SNDBUF) of the same connections: bounds the kernel memory a subscriber
    # that reads slowly (or not at all) holds beyond its SNDHWM queue, and what one write
    # of libzmq's I/O thread copies (the same non-preemptive-kernel concern); 0: the
    # kernel's autotuning (up to net.ipv4.tcp_wmem's maximum). Same bandwidth x round
    # trip rule as the receive buffer for subscribers across a network.
    send_buffer_bytes: int = 64 << 10

    def __post_init__(self) -> None:
        _require(
            0 <= self.heartbeat_ivl_s <= 3600, "connections.heartbeat_ivl_s must be in 0..3600"
        )
        _require(
            0.01 <= self.heartbeat_timeout_s <= 3600,
            "connections.heartbeat_timeout_s must be in 0.01..3600",
        )
        _require(
            0.01 <= self.handshake_timeout_s <= 3600,
            "connections.handshake_timeout_s must be in 0.01..3600",
        )
        _require(self.log_interval_s > 0, "connections.log_interval_s must be > 0")
        _require(0 <= self.nofile_reserve <= 4096, "connections.nofile_reserve must be in 0..4096")
        _require(
            self.receive_buffer_bytes == 0 or 4096 <= self.receive_buffer_bytes <= 64 << 20,
            "connections.receive_buffer_bytes must be 0 or in 4096..67108864",
        )
        _require(
            self.send_buffer_bytes == 0 or 4096 <= self.send_buffer_bytes <= 64 << 20,
            "connections.send_buffer_bytes must be 0 or in 4096..67108864",
        )


class SchedulingConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """How the kernel schedules the micro path's threads (engine/service/scheduling.py)."""

    # 1..99: the tick thread and the engine's private ZeroMQ I/O thread run under Linux's
    # SCHED_FIFO at this priority, so no normal, nice or SCHED_IDLE thread of the host keeps
    # them waiting for a CPU; 0: the default policy. Needs CAP_SYS_NICE (or RLIMIT_RTPRIO);
    # refused, it is logged and the engine runs at normal priority.
    realtime_priority: int = 0

    def __post_init__(self) -> None:
        _require(0 <= self.realtime_priority <= 99, "scheduling.realtime_priority must be in 0..99")


class EngineConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Everything ``tickpath serve`` needs."""

    ingest: IngestConfig = IngestConfig()
    analytics: AnalyticsConfig = AnalyticsConfig()
    publish: PublishConfig = PublishConfig()
    journal: JournalConfig = JournalConfig()  # write-ahead journal, snapshots (off by default)
    security: SecurityConfig = SecurityConfig()  # CURVE on every endpoint (off by default)
    dispatch: DispatchConfig = DispatchConfig()  # milli path: routing, queues, chains
    connections: ConnectionsConfig = ConnectionsConfig()  # heartbeats, descriptors, refusals
    scheduling: SchedulingConfig = SchedulingConfig()  # real-time priority of the micro path
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        _require(
            self.log_level in ("DEBUG", "INFO", "WARNING", "ERROR"),
            "log_level must be DEBUG, INFO, WARNING or ERROR",
        )


def parse_setting(text: str) -> tuple[str, Any]:
    """``"section.key=VALUE"`` -> ``("section.key", value)``, VALUE read as a TOML value.

    Numbers, booleans, quoted strings and arrays are TOML (``max_wait_ms=0.5``,
    ``endpoints=["tcp://*:5555"]``); anything else is taken as a plain string
    (``log_level=DEBUG``). Raises ``ValueError`` with a one-line message.
    """
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key or not raw:
        raise ValueError(f"expected KEY=VALUE (e.g. publish.sndhwm=1000), got {text!r}")
    if not all(part.isidentifier() for part in key.split(".")):
        raise ValueError(f"{key!r} is not a config key (dotted names, e.g. publish.sndhwm)")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> EngineConfig:
    """Read a TOML file (optional), apply ``{"section.key": value}`` overrides, validate.

    Raises :class:`ConfigError` with a one-line message on any problem.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key {key!r} must be a table")
        node[leaf] = value
    try:
        return msgspec.convert(data, EngineConfig)
    except (msgspec.ValidationError, ValueError) as exc:
        where = f"config {path}: " if path else "config: "
        raise ConfigError(where + str(exc).splitlines()[0]) from None
