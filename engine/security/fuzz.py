"""Hostile-input fuzzing of the ingest path, with an independent accounting oracle.

:class:`FrameFuzzer` makes a deterministic stream of *cases* from a seed:
valid frames of a synthetic market (continuing their stream's sequence), and
mutations of them: bit flips, interesting values written over header and
record fields, truncations, extensions, spliced kinds, sequence jumps,
rewinds, resets and replays, random bytes, and (``socket_codes``) the
receiver's codes for multipart and oversize messages.

:class:`AccountingModel` is a plain-Python reading of the README's reject
rules (header checks, per-stream sequence accounting with int64 arithmetic
as the kernels use, per-kind record validation in the kernels' order).  For
every case it predicts the change of each counter the rules define, by the
counter's name (:data:`TRACKED`, read through
:class:`~tickpath.kernels.cpu.streaming_view.CounterView`); :func:`run`
feeds the cases to :meth:`StreamProcessor.process` (the code the socket path
runs) and compares the prediction with the counters after every case, so a
bad input that slips through, is counted under the wrong reason, or is
counted twice is caught at the case that caused it.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from tickpath.engine.feed.synthetic import SyntheticMarket
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu import streaming as k
from tickpath.kernels.cpu.streaming_view import CounterView, StreamTable

if TYPE_CHECKING:
    from tickpath.engine.service.engine import StreamProcessor

MULTIPART = -2

# Counters the model predicts exactly, by name (everything but bars and the book's codes).
TRACKED: tuple[str, ...] = (
    *(f"rejected.{name}" for name in s.REJECT_NAMES),
    "frames_received",
    "frames_accepted",
    "records_received",
    "records_accepted",
    "bytes_received",
    "gaps",
    "records_lost",
    "sequence_resets",
    "session_takeovers",
    "session_ends",
    "processed.quote",
    "processed.trade",
    "processed.book",
)
_SLOT = {name: slot for slot, name in enumerate(TRACKED)}
_DTYPES = {s.KIND_TRADE: s.TRADE, s.KIND_QUOTE: s.QUOTE, s.KIND_ORDER: s.ORDER}
_PROCESSED = {
    s.KIND_TRADE: "processed.trade",
    s.KIND_QUOTE: "processed.quote",
    s.KIND_ORDER: "processed.book",
}
_REJECTED = tuple(f"rejected.{name}" for name in s.REJECT_NAMES)  # by reason code
_MASK64 = (1 << 64) - 1
_MAX_I64 = (1 << 63) - 1
RECV_BASE_NS = 1_750_000_000_000_000_000  # run(): case i is received at this + i * RECV_STEP_NS
RECV_STEP_NS = 1_000_000
QUIET_EVERY = 5_000
_DEFAULTS = k.StreamingParams._field_defaults
SESSIONS = (1, 2, 3, 0xFFFF_FFFF_FFFF_FFFF)  # the fuzzer's version 2 session ids


def _i64(value: int) -> int:
    """Two's-complement wrap to int64, as numba's int64 arithmetic does."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


class AccountingModel:
    """Predicts the counter changes of one received message (see the module doc)."""

    def __init__(
        self,
        n_symbols: int,
        max_streams: int,
        max_frame_bytes: int,
        *,
        max_gap: int = _DEFAULTS["max_gap"],
        failover_ns: int = _DEFAULTS["failover_ns"],
        max_clock_skew_ns: int = _DEFAULTS["max_clock_skew_ns"],
        owned: np.ndarray | None = None,
    ) -> None:
        self.n_symbols = n_symbols
        # symbols this engine's shard owns (None: every symbol); others: foreign_shard
        self.owned = None if owned is None else np.asarray(owned, bool)
        self.max_streams = max_streams
        self.buffer_bytes = max_frame_bytes
        body = max_frame_bytes - s.HEADER_SIZE
        self.max_records = body // min(s.TRADE_SIZE, s.QUOTE_SIZE, s.ORDER_SIZE)
        self.max_gap = max_gap
        self.failover_ns = failover_ns
        self.max_clock_skew_ns = max_clock_skew_ns
        self.next_seq: dict[int, int] = {}
        self.session: dict[int, int] = {}  # stream -> holder (0: version 1)
        self.previous: dict[int, int] = {}  # stream -> the holder it was taken from
        self.last_ns: dict[int, int] = {}  # stream -> recv_ns of the holder's last frame
        self.ended: set[int] = set()  # streams whose holder sent its end of session
        self.gaps = 0  # the gaps and records_lost counters' values (they saturate)
        self.lost = 0

    @classmethod
    def for_config(cls, config: object) -> AccountingModel:
        """A model with the limits of an engine config."""
        ingest = config.ingest
        return cls(
            config.analytics.n_symbols,
            ingest.max_streams,
            ingest.max_frame_bytes,
            max_gap=ingest.max_gap,
            failover_ns=int(ingest.failover_s * 1e9),
            max_clock_skew_ns=int(ingest.max_clock_skew_s * 1e9),
            owned=_owned_symbols(config),
        )

    def expect(self, case: bytes | int, recv_ns: int = 0) -> np.ndarray:
        """Counter deltas (aligned with :data:`TRACKED`) for receiving ``case`` at ``recv_ns``."""
        delta = np.zeros(len(TRACKED), np.int64)

        def add(counter: str, amount: int = 1) -> None:
            delta[_SLOT[counter]] += amount

        add("frames_received")
        if isinstance(case, int):  # the receiver's codes
            if case < 0:
                add(_REJECTED[s.REJECT_MULTIPART])
            else:
                add("bytes_received", case)
                add(_REJECTED[s.REJECT_OVERSIZE])
            return delta
        n = len(case)
        if n > self.buffer_bytes:
            add("bytes_received", n)
            add(_REJECTED[s.REJECT_OVERSIZE])
            return delta
        add("bytes_received", n)
        reason = self._header_reason(case, n)
        if reason >= 0:
            add(_REJECTED[reason])
            return delta
        header = np.frombuffer(case, s.HEADER, count=1)[0]
        kind, count = int(header["kind"]), int(header["count"])
        v2 = int(header["version"]) == s.VERSION_SESSION
        hsize = s.HEADER_V2_SIZE if v2 else s.HEADER_SIZE
        session = int.from_bytes(case[s.HEADER_SIZE : s.HEADER_V2_SIZE], "little") if v2 else 0
        stream = int(header["stream_id"])
        if count == 0:  # a version 2 end of session
            reason = self._end_session(stream, session)
            if reason >= 0:
                add(_REJECTED[reason])
            else:
                add("session_ends")
                add("frames_accepted")
            return delta
        reason = self._sequence(stream, _i64(int(header["seq"])), count, session, recv_ns, add)
        if reason >= 0:
            add(_REJECTED[reason])
            return delta
        add("frames_accepted")
        add("records_received", count)
        records = np.frombuffer(case, _DTYPES[kind], count=count, offset=hsize)
        ts_max = _MAX_I64
        if self.max_clock_skew_ns > 0 and recv_ns > 0:
            ts_max = min(recv_ns + self.max_clock_skew_ns, _MAX_I64)
        reasons = self._record_reasons(kind, records, ts_max)
        accepted = int(np.count_nonzero(reasons < 0))
        for code in np.unique(reasons[reasons >= 0]).tolist():
            add(_REJECTED[code], int(np.count_nonzero(reasons == code)))
        add("records_accepted", accepted)
        add(_PROCESSED[kind], accepted)
        return delta

    def _header_reason(self, case: bytes, n: int) -> int:
        if n < s.HEADER_SIZE:
            return s.REJECT_SHORT
        header = np.frombuffer(case, s.HEADER, count=1)[0]
        if int(header["magic"]) != s.MAGIC:
            return s.REJECT_BAD_MAGIC
        version = int(header["version"])
        if version not in (s.VERSION, s.VERSION_SESSION):
            return s.REJECT_BAD_VERSION
        hsize = s.HEADER_V2_SIZE if version == s.VERSION_SESSION else s.HEADER_SIZE
        if n < hsize:
            return s.REJECT_SHORT
        kind = int(header["kind"])
        if kind not in _DTYPES:  # the trade kernel takes every other kind and refuses it
            return s.REJECT_BAD_KIND
        count = int(header["count"])
        if (count == 0 and version != s.VERSION_SESSION) or count > self.max_records:
            return s.REJECT_BAD_COUNT
        if n - hsize != count * _DTYPES[kind].itemsize:
            return s.REJECT_BAD_LENGTH
        if int(header["stream_id"]) >= self.max_streams:
            return s.REJECT_UNKNOWN_STREAM
        if hsize == s.HEADER_V2_SIZE and case[s.HEADER_SIZE : s.HEADER_V2_SIZE] == bytes(8):
            return s.REJECT_BAD_SESSION
        return -1

    def _sequence(self, stream: int, seq: int, count: int, session: int, recv_ns: int, add) -> int:  # noqa: ANN001, E501
        """The README's session and sequence rules, as plain Python."""
        if seq < 0 or seq > _MAX_I64 - count:
            return s.REJECT_BAD_SEQUENCE
        expected = self.next_seq.get(stream, -1)
        if expected >= 0 and session != self.session.get(stream, 0):
            if stream in self.previous and session == self.previous[stream]:
                return s.REJECT_DUPLICATE
            silent = _i64(recv_ns - self.last_ns.get(stream, 0)) >= self.failover_ns
            if not silent and stream not in self.ended:
                return s.REJECT_FOREIGN_SESSION
            self.previous[stream] = self.session.get(stream, 0)
            add("session_takeovers")
            expected = -1
        if expected < 0:
            self.session[stream] = session
        elif seq == expected:
            pass
        elif seq > expected:
            lost = seq - expected
            if lost > self.max_gap:
                return s.REJECT_BAD_JUMP
            gaps, total = min(self.gaps + 1, _MAX_I64), min(self.lost + lost, _MAX_I64)
            add("gaps", gaps - self.gaps)
            add("records_lost", total - self.lost)
            self.gaps, self.lost = gaps, total
        elif seq == 0 and session == 0:
            add("sequence_resets")
        elif seq + count <= expected:
            return s.REJECT_DUPLICATE
        else:
            return s.REJECT_OUT_OF_ORDER
        self.next_seq[stream] = seq + count
        self.last_ns[stream] = recv_ns
        self.ended.discard(stream)
        return -1

    def _end_session(self, stream: int, session: int) -> int:
        """The end-of-session rule, as plain Python."""
        held = self.next_seq.get(stream, -1) >= 0
        if held and session != self.session.get(stream, 0):
            if stream in self.previous and session == self.previous[stream]:
                return s.REJECT_DUPLICATE
            return s.REJECT_FOREIGN_SESSION
        if held:
            self.ended.add(stream)
        return -1

    def _record_reasons(self, kind: int, r: np.ndarray, ts_max: int = _MAX_I64) -> np.ndarray:
        """Per record: -1 accepted, else its REJECT_* code (first failing rule wins)."""
        n = self.n_symbols
        if kind == s.KIND_QUOTE:
            conditions = [
                (r["ts_ns"] < 0) | (r["ts_ns"] > ts_max),
                r["symbol"] >= n,
                (r["bid_price"] < 0) | (r["ask_price"] < 0),
                (r["bid_size"] < 0) | (r["ask_size"] < 0),
            ]
            codes = [
                s.REJECT_BAD_TIMESTAMP,
                s.REJECT_UNKNOWN_SYMBOL,
                s.REJECT_BAD_PRICE,
                s.REJECT_BAD_SIZE,
            ]
        elif kind == s.KIND_TRADE:
            conditions = [
                (r["ts_ns"] < 0) | (r["ts_ns"] > ts_max),
                r["symbol"] >= n,
                r["price"] <= 0,
                r["size"] <= 0,
                (r["side"] < -1) | (r["side"] > 1),
            ]
            codes = [
                s.REJECT_BAD_TIMESTAMP,
                s.REJECT_UNKNOWN_SYMBOL,
                s.REJECT_BAD_PRICE,
                s.REJECT_BAD_SIZE,
                s.REJECT_BAD_ACTION,
            ]
        else:
            action = r["action"].astype(np.int64)
            side = r["side"].astype(np.int64)
            adds = action == s.ACTION_ADD
            conditions = [
                (r["ts_ns"] < 0) | (r["ts_ns"] > ts_max),
                r["symbol"] >= n,
                (action < s.ACTION_ADD) | (action > s.ACTION_EXECUTE) | (side < -1) | (side > 1),
                adds & (side == 0),
                (adds | (action == s.ACTION_MODIFY)) & (r["price"] <= 0),
                (action != s.ACTION_CANCEL) & (r["size"] <= 0),
            ]
            codes = [
                s.REJECT_BAD_TIMESTAMP,
                s.REJECT_UNKNOWN_SYMBOL,
                s.REJECT_BAD_ACTION,
                s.REJECT_BAD_ACTION,
                s.REJECT_BAD_PRICE,
                s.REJECT_BAD_SIZE,
            ]
        reasons = np.select(conditions, codes, default=-1).astype(np.int64)
        if self.owned is not None:  # after every other rule, as in the kernels
            valid = reasons < 0
            foreign = np.zeros(len(r), bool)
            foreign[valid] = ~self.owned[r["symbol"][valid].astype(np.int64)]
            reasons[foreign] = s.REJECT_FOREIGN_SHARD
        return reasons


def _owned_symbols(config: object) -> np.ndarray | None:
    """The symbols a sharded engine config serves (None: unsharded), independently derived."""
    ingest = config.ingest
    if not getattr(ingest, "shard", ""):
        return None
    from tickpath.engine.cluster.shards import ShardMap, parse_shard

    index, count = parse_shard(ingest.shard)
    shard_map = ShardMap.from_file(ingest.shard_map) if ingest.shard_map else ShardMap(count)
    return shard_map.shard_of(np.arange(config.analytics.n_symbols)) == index


INTERESTING_64 = [0, 1, -1, 2, -(1 << 63), (1 << 63) - 1, -(1 << 63) + 1, 1 << 32, (1 << 31) - 1]
INTERESTING_32 = [0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 15, 16, 17, 255, 256, 65535]
INTERESTING_8 = [0, 1, 2, 3, 4, 5, 0x7F, 0x80, 0xFF, 0xFE]

STRATEGIES = (
    "valid",
    "bit_flips",
    "byte_values",
    "header_field",
    "record_field",
    "truncate",
    "extend",
    "splice_kind",
    "sequence",
    "replay_old",
    "random_bytes",
    "receiver_code",
    "session",
)


class FuzzReport(msgspec.Struct, kw_only=True):
    """What :func:`run` did and found."""

    seed: int
    cases: int
    seconds: float
    cases_per_s: float
    max_case_ms: float
    by_strategy: dict[str, int]
    mismatches: int
    first_mismatches: list[str]
    stats: dict


class FrameFuzzer:
    """A deterministic stream of hostile and valid messages (see the module doc)."""

    def __init__(
        self,
        seed: int,
        *,
        n_symbols: int,
        max_streams: int,
        max_frame_bytes: int,
        socket_codes: bool = True,
        weights: dict[str, float] | None = None,
        expected_seq: dict[int, int] | None = None,
        expected_session: dict[int, int] | None = None,
    ) -> None:
        """``expected_seq`` / ``expected_session``: the receiver's next expected sequence
        and holding session per stream (live dicts, e.g. the model's), so valid frames
        continue where the engine is, mostly from the session that holds the stream."""
        self.rng = random.Random(seed)
        self.expected_seq = expected_seq
        self.expected_session = expected_session
        self.market = SyntheticMarket(max(1, min(n_symbols + 2, 64)), seed)
        self.n_symbols = n_symbols
        self.max_streams = max_streams
        self.max_frame_bytes = max_frame_bytes
        self.socket_codes = socket_codes
        chosen = dict.fromkeys(STRATEGIES, 1.0)
        chosen["valid"] = 3.0
        chosen["record_field"] = 2.0
        chosen["sequence"] = 1.5
        if not socket_codes:
            chosen["receiver_code"] = 0.0
        chosen.update(weights or {})
        self.names = [name for name in STRATEGIES if chosen[name] > 0]
        self.weights = [chosen[name] for name in self.names]
        self.next_seq = [0] * (max_streams + 2)
        self.history: list[bytes] = []
        self._fields = {kind: [n for n in dt.names if n != "_pad"] for kind, dt in _DTYPES.items()}

    def _valid(self) -> bytes:
        rng = self.rng
        stream = rng.randrange(self.max_streams + 1)  # sometimes one too many
        kind, records = self.market.next_batch(rng.choice((1, 1, 2, 3, 8, 32)))
        if rng.random() < 0.05:  # symbols the engine does not know
            records = records.copy()
            records["symbol"] = self.n_symbols + rng.randrange(3)
        seq = self.next_seq[stream]
        if self.expected_seq is not None and self.expected_seq.get(stream, -1) >= 0:
            seq = self.expected_seq[stream]
        self.next_seq[stream] = seq + len(records)
        # the holder's session (0: version 1) mostly, another one sometimes
        session = rng.choice((0,) + SESSIONS)
        if self.expected_session is not None and stream in self.expected_session:
            if rng.random() < 0.95:
                session = self.expected_session[stream]
        frame = codec.encode_frame(
            kind, stream, seq, records, rng.getrandbits(62), session=session or None
        )
        if len(self.history) < 256:
            self.history.append(frame)
        else:
            self.history[rng.randrange(256)] = frame
        return frame

    def next_case(self) -> tuple[str, bytes | int]:
        """``(strategy name, message)``; an ``int`` message is a receiver code."""
        rng = self.rng
        name = rng.choices(self.names, self.weights)[0]
        if name == "valid":
            return name, self._valid()
        if name == "random_bytes":
            return name, rng.randbytes(rng.randrange(200))
        if name == "receiver_code":
            if rng.random() < 0.5:
                return name, MULTIPART
            return name, self.max_frame_bytes + rng.randrange(1, 1 << 20)
        if name == "replay_old" and self.history:
            return name, rng.choice(self.history)
        frame = bytearray(self._valid())
        if name == "bit_flips":
            for _ in range(rng.randrange(1, 9)):
                bit = rng.randrange(len(frame) * 8)
                frame[bit // 8] ^= 1 << (bit % 8)
        elif name == "byte_values":
            for _ in range(rng.randrange(1, 4)):
                frame[rng.randrange(len(frame))] = rng.choice(INTERESTING_8)
        elif name == "header_field":
            self._overwrite(frame, 0, s.HEADER, rng.choice(s.HEADER.names))
        elif name == "record_field":
            kind = int.from_bytes(frame[6:8], "little")
            dtype = _DTYPES[kind]
            hsize = s.HEADER_V2_SIZE if frame[4] == s.VERSION_SESSION else s.HEADER_SIZE
            count = (len(frame) - hsize) // dtype.itemsize
            for _ in range(rng.randrange(1, 3)):
                base = hsize + rng.randrange(count) * dtype.itemsize
                self._overwrite(frame, base, dtype, rng.choice(self._fields[kind]))
        elif name == "truncate":
            frame = frame[: rng.randrange(len(frame))]
        elif name == "extend":
            frame += rng.randbytes(rng.randrange(1, 64))
        elif name == "splice_kind":
            frame[6:8] = rng.choice((1, 2, 3)).to_bytes(2, "little")
        elif name == "sequence":
            current = int.from_bytes(frame[16:24], "little")
            choice = rng.randrange(5)
            if choice == 0:
                new = 0  # a publisher restart
            elif choice == 1:
                new = current + rng.randrange(1, 1000)  # a gap
            elif choice == 2:
                new = max(0, current - rng.randrange(1, 50))  # backwards
            elif choice == 3:
                new = rng.getrandbits(64)  # anywhere, int64-negative included
            else:
                new = (1 << 64) - rng.randrange(1, 100)  # next to u64 max
            frame[16:24] = (new & _MASK64).to_bytes(8, "little")
        elif name == "session":
            choice = rng.randrange(5)
            if choice == 4:  # an end of session: the header alone, count 0, v2 only
                if frame[4] != s.VERSION_SESSION:
                    frame[4:6] = s.VERSION_SESSION.to_bytes(2, "little")
                    frame = frame[:32] + rng.choice(SESSIONS).to_bytes(8, "little")
                frame = frame[:40]
                frame[12:16] = bytes(4)
            elif frame[4] == s.VERSION_SESSION:
                if choice == 0:  # the same frame as version 1
                    frame = frame[:4] + s.VERSION.to_bytes(2, "little") + frame[6:32] + frame[40:]
                else:  # another session id, 0 (refused) included
                    value = rng.choice((0, rng.getrandbits(64)) + SESSIONS)
                    frame[32:40] = value.to_bytes(8, "little")
            else:  # the same frame as version 2, of some session
                value = rng.choice((0,) + SESSIONS)
                frame[4:6] = s.VERSION_SESSION.to_bytes(2, "little")
                frame = frame[:32] + value.to_bytes(8, "little") + frame[32:]
        return name, bytes(frame)

    def _overwrite(self, frame: bytearray, base: int, dtype: np.dtype, field: str) -> None:
        sub, offset = dtype.fields[field][:2]
        size = sub.itemsize
        rng = self.rng
        if size == 8:
            value = rng.choice(INTERESTING_64) & _MASK64
        elif size == 4:
            value = rng.choice(INTERESTING_32)
        elif size == 2:
            value = rng.choice((0, 1, 2, 3, 4, 0xFFFF, 0x8000))
        else:
            value = rng.choice(INTERESTING_8)
        if base + offset + size <= len(frame):
            frame[base + offset : base + offset + size] = value.to_bytes(size, "little")


def run(
    processor: StreamProcessor,
    cases: int,
    seed: int,
    *,
    socket_codes: bool = True,
    max_mismatches: int = 5,
    weights: dict[str, float] | None = None,
) -> FuzzReport:
    """Feed ``cases`` fuzz cases to ``processor`` and check every counter after each one.

    ``processor`` must be fresh (warmed up, state reset): the model starts
    with no stream seen.
    """
    config = processor.config
    fuzzer = FrameFuzzer(
        seed,
        n_symbols=config.analytics.n_symbols,
        max_streams=config.ingest.max_streams,
        max_frame_bytes=config.ingest.max_frame_bytes,
        socket_codes=socket_codes,
        weights=weights,
    )
    model = AccountingModel.for_config(config)
    fuzzer.expected_seq = model.next_seq
    fuzzer.expected_session = model.session
    read_tracked = CounterView(processor.state.counters).reader(TRACKED)
    buffer = processor.buffer
    size = len(buffer)
    by_strategy: dict[str, int] = {}
    mismatches: list[str] = []
    n_mismatch = 0
    worst = 0.0
    t0 = time.perf_counter()
    before = read_tracked()
    for i in range(cases):
        name, case = fuzzer.next_case()
        by_strategy[name] = by_strategy.get(name, 0) + 1
        # a clock, so the skew and failover rules apply; every QUIET_EVERY cases it jumps
        # 3 s (a quiet market), long enough for other sessions to take streams over
        recv_ns = RECV_BASE_NS + i * RECV_STEP_NS + (i // QUIET_EVERY) * 3_000_000_000
        want = model.expect(case, recv_ns)
        t = time.perf_counter()
        if isinstance(case, int):
            processor.process(case, recv_ns)
        else:
            n = len(case)
            if n <= size:
                buffer[:n] = np.frombuffer(case, np.uint8)
            processor.process(n, recv_ns)
        worst = max(worst, time.perf_counter() - t)
        after = read_tracked()
        got = after - before
        before = after
        if not np.array_equal(got, want):
            n_mismatch += 1
            if len(mismatches) < max_mismatches:
                diff = {
                    TRACKED[j]: (int(got[j]), int(want[j]))
                    for j in np.flatnonzero(got != want).tolist()
                }
                head = bytes(case[:32]).hex() if not isinstance(case, int) else case
                mismatches.append(f"case {i} ({name}) got/expected {diff}; head {head}")
            model = _resync(model, processor)
    seconds = time.perf_counter() - t0
    return FuzzReport(
        seed=seed,
        cases=cases,
        seconds=round(seconds, 3),
        cases_per_s=round(cases / seconds, 1),
        max_case_ms=round(worst * 1e3, 3),
        by_strategy=by_strategy,
        mismatches=n_mismatch,
        first_mismatches=mismatches,
        stats=processor.stats(time.time_ns()),
    )


def _resync(model: AccountingModel, processor: StreamProcessor) -> AccountingModel:
    """After a mismatch, take the engine's stream state so later cases are judged on their own."""
    rows = StreamTable(processor.state.streams).rows()
    model.next_seq.clear()
    model.next_seq.update({row.stream: row.next_seq for row in rows})
    model.session.clear()
    model.session.update({row.stream: row.session for row in rows})
    model.previous.clear()
    model.previous.update({row.stream: row.prev_session for row in rows if row.takeovers > 0})
    model.last_ns.clear()
    model.last_ns.update({row.stream: row.last_ns for row in rows})
    model.ended.clear()
    model.ended.update(row.stream for row in rows if row.ended)
    counters = CounterView(processor.state.counters).read()
    model.gaps, model.lost = counters.gaps, counters.records_lost
    return model


# ---------------------------------------------------------------------------
# Requests (the ROUTER endpoint of engine.service.requests)
# ---------------------------------------------------------------------------

REQUEST_ERROR_CODES = frozenset(
    {"malformed", "invalid", "too_large", "busy", "expired", "failed", "shutdown"}
)

_WEIRD_VALUES: list = [
    None, True, False, 0, -1, 1, 2**63, -(2**63), 2**64, 1e308, -1e308, 1e-320, "NaN",
    "Infinity", "", "x" * 50, [], [[]], {}, [1.0, "a"], [None], 0.5, -0.5, [1e308] * 3,
]  # fmt: skip
_FIELDS = [
    "type", "id", "deadline_ms", "backend", "spot", "strike", "expiry", "vol", "call", "rate",
    "dividend", "greeks", "strikes", "expiries", "prices", "position", "correlation",
    "horizon", "confidence", "n_scenarios", "seed", "drift", "unknown_field",
]  # fmt: skip


def valid_requests() -> list[dict]:
    """Small valid requests of every type (the corpus the request fuzzer mutates)."""
    return [
        {"type": "price_chain", "id": 1, "spot": 100.0, "strike": [90.0, 100.0, 110.0],
         "expiry": [0.25, 0.5, 1.0], "vol": 0.2, "call": [True, False, True], "rate": 0.01},
        {"type": "price_chain", "id": "p", "spot": 50.0, "strike": 55.0, "expiry": 0.1,
         "vol": [0.3], "call": False, "greeks": False},
        {"type": "iv_surface", "id": 2, "spot": 100.0, "strikes": [95.0, 105.0],
         "expiries": [0.5, 1.0], "prices": [8.0, 3.5, 11.0, 6.5], "call": True},
        {"type": "var", "id": 3, "spot": [100.0, 50.0], "position": [10.0, -4.0],
         "vol": [0.2, 0.3], "correlation": [[1.0, 0.3], [0.3, 1.0]], "horizon": 0.1,
         "n_scenarios": 2000, "seed": 7},
    ]  # fmt: skip


class RequestFuzzer:
    """Deterministic hostile request bodies: valid JSON/msgpack requests and their mutations.

    ``next_case()`` returns ``(strategy, frames)``: the message parts after the
    envelope (normally one body frame; some cases send none, two, or an empty one).
    """

    STRATEGIES = (
        "valid", "bit_flips", "truncate", "extend", "random_bytes", "field_value",
        "drop_field", "unknown_field", "type_swap", "frames", "json_text",
    )  # fmt: skip

    def __init__(self, seed: int) -> None:
        from tickpath.engine.service.requests import encode_request

        self.rng = random.Random(seed)
        self.encode = encode_request
        self.corpus = valid_requests()

    def _body(self, job: dict) -> bytes:
        return self.encode(job, use_msgpack=self.rng.random() < 0.4)

    def next_case(self) -> tuple[str, list[bytes]]:
        """``(strategy, parts)`` for one request message."""
        rng = self.rng
        name = rng.choice(self.STRATEGIES)
        job = dict(rng.choice(self.corpus))
        if name == "field_value":
            for _ in range(rng.randrange(1, 3)):
                job[rng.choice(_FIELDS)] = rng.choice(_WEIRD_VALUES)
        elif name == "drop_field":
            job.pop(rng.choice(list(job)), None)
        elif name == "unknown_field":
            job["extra_" + str(rng.randrange(100))] = 1
        elif name == "type_swap":
            job["type"] = rng.choice(["price_chain", "iv_surface", "var", "PRICE_CHAIN", 5])
        elif name == "frames":
            choice = rng.randrange(3)
            if choice == 0:
                return name, []
            if choice == 1:
                return name, [self._body(job), self._body(job)]
            return name, [b""]
        try:
            body = self._body(job)
        except (TypeError, ValueError, OverflowError):  # a value msgspec cannot encode
            body = repr(job).encode()
        if name == "bit_flips":
            raw = bytearray(body)
            for _ in range(rng.randrange(1, 6)):
                bit = rng.randrange(len(raw) * 8)
                raw[bit // 8] ^= 1 << (bit % 8)
            body = bytes(raw)
        elif name == "truncate":
            body = body[: rng.randrange(len(body))]
        elif name == "extend":
            body += rng.randbytes(rng.randrange(1, 40))
        elif name == "random_bytes":
            body = rng.randbytes(rng.randrange(0, 300))
        elif name == "json_text":
            text = body.decode("latin-1") if body[:1] == b"{" else '{"type": "var"}'
            cut = rng.randrange(len(text))
            body = (text[:cut] + rng.choice(['"', "{", "]", ",", ":", "\\u0000", "9e9999"])
                    + text[cut:]).encode("latin-1")  # fmt: skip
        return name, [body]


def check_request(body: bytes, max_items: int = 1_000_000) -> str | None:
    """Decode and validate one request body as the request lane does; the error code or None.

    Anything but :class:`~tickpath.engine.dispatch.jobs.JobRejected` escaping is a bug (raised).
    """
    from types import SimpleNamespace

    from tickpath.engine.dispatch.jobs import JobRejected
    from tickpath.engine.service.requests import RequestJob

    endpoint = SimpleNamespace(
        max_items=max_items, registry_get=lambda name: object() if name == "cpu" else None
    )
    job = RequestJob(endpoint, [b"client"], body)
    try:
        job.prepare()
    except JobRejected as exc:
        if exc.code not in REQUEST_ERROR_CODES:
            raise AssertionError(f"unknown error code {exc.code!r}") from None
        return exc.code
    return None
