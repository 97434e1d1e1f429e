"""Streaming (microsecond-path) analytics on the CPU: one numba call per frame.

The ingest loop hands every received frame, still in its receive buffer, to
one of :func:`on_quote_frame`, :func:`on_trade_frame`, :func:`on_order_frame`.
That one call checks the header, accounts the stream's sequence numbers,
validates each record, updates the per-symbol state held in preallocated
arrays, and writes one result frame per (analytic, symbol) touched by the
input frame into preallocated output arrays, which the publisher sends as
they are.  Results are therefore *conflated per
input frame*: a frame carrying 100 trades of one symbol yields one ``trade``
result holding the state after the last of them (single-record frames yield
one result per tick).

Meaning of every analytic: see :mod:`tickpath.kernels.reference.streaming`, the plain
numpy reference the tests compare these kernels with.  State lives in a few
2-D arrays indexed ``[symbol, column]`` rather than one array per field,
because numba's dispatcher pays per argument on every call.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu import book as bk
from tickpath.kernels.cpu import clock as _clock_module
from tickpath.kernels.cpu import steps
from tickpath.kernels.cpu.cache import stamp_dependencies
from tickpath.kernels.cpu.clock import realtime_ns
from tickpath.kernels.reference import book as _book_reference

# ---------------------------------------------------------------------------
# Result frames: a header and one result record, contiguous.  The bytes of one
# element are exactly one wire frame with count == 1.
# ---------------------------------------------------------------------------


def _frame_dtype(result: np.dtype) -> np.dtype:
    return np.dtype(s.HEADER.descr + result.descr)


FRAME_QUOTE = _frame_dtype(s.RESULT_QUOTE)
FRAME_TRADE = _frame_dtype(s.RESULT_TRADE)
FRAME_BAR = _frame_dtype(s.RESULT_BAR)
FRAME_BOOK = _frame_dtype(s.RESULT_BOOK)

# Analytic indices (rows of the per-analytic arrays), in topic order.
A_QUOTE = 0
A_TRADE = 1
A_BAR = 2
A_BOOK = 3
N_ANALYTICS = 4
ANALYTIC_NAMES = ("quote", "trade", "bar", "book")
ANALYTIC_KINDS = (
    s.KIND_RESULT_QUOTE,
    s.KIND_RESULT_TRADE,
    s.KIND_RESULT_BAR,
    s.KIND_RESULT_BOOK,
)

# ---------------------------------------------------------------------------
# Counters (int64 array).  The first N_REJECT entries count rejects by reason.
# ---------------------------------------------------------------------------
C_FRAMES = s.N_REJECT + 0  # frames received (accepted or not)
C_FRAMES_ACCEPTED = s.N_REJECT + 1
C_RECORDS = s.N_REJECT + 2  # records in accepted frames
C_RECORDS_ACCEPTED = s.N_REJECT + 3  # records that passed validation
C_BYTES = s.N_REJECT + 4
C_GAPS = s.N_REJECT + 5
C_LOST = s.N_REJECT + 6
C_RESETS = s.N_REJECT + 7  # a stream restarted at sequence 0
C_PROC_QUOTE = s.N_REJECT + 8  # records processed per analytic
C_PROC_TRADE = s.N_REJECT + 9
C_PROC_BAR = s.N_REJECT + 10  # completed bars
C_PROC_BOOK = s.N_REJECT + 11
C_BOOK_DUPLICATE_ID = s.N_REJECT + 12
C_BOOK_UNKNOWN_ORDER = s.N_REJECT + 13
C_BOOK_OVERFILL = s.N_REJECT + 14
C_BOOK_LEVEL_OVERFLOW = s.N_REJECT + 15
C_BOOK_TABLE_FULL = s.N_REJECT + 16
C_WINDOW_TRUNCATED = s.N_REJECT + 17  # a trade left the VWAP window early (ring full)
C_RESULTS = s.N_REJECT + 18  # result frames emitted
C_TAKEOVERS = s.N_REJECT + 19  # a session took a stream over from a silent holder
C_SESSION_ENDS = s.N_REJECT + 20  # end-of-session frames accepted (v2, count 0)
N_COUNTERS = s.N_REJECT + 21

# Counters by name: kernels/cpu/streaming_view.py (CounterView, COUNTER_FIELDS).

# ---------------------------------------------------------------------------
_MAX_SEQ = np.iinfo(np.int64).max
_MAX_COUNT = np.iinfo(np.int64).max  # counters saturate here; they never wrap

# Per-stream state: int64[max_streams, S_COLS]
# ---------------------------------------------------------------------------
S_NEXT = 0  # next expected sequence, -1 before the first frame
S_GAPS = 1
S_LOST = 2
S_FRAMES = 3
S_SESSION = 4  # session holding the stream (u64 bits; 0: version 1 frames, no session)
S_PREV_SESSION = 5  # the holder before the last takeover (its frames are duplicates)
S_LAST_NS = 6  # recv_ns of the holder's last accepted frame
S_FIRST = 7  # first sequence seen from the holding session (records before it: not seen)
S_TAKEOVERS = 8  # times another session took the stream over
S_ENDED = 9  # 1: the holder sent its end of session (another may take over at once)
S_COLS = 10

# Ingest limits: int64[L_COLS] (StreamingState.limits), from the engine config.
L_MAX_GAP = 0  # a forward jump beyond this many records is bad_jump
L_FAILOVER_NS = 1  # holder silence after which another session may take a stream over
L_MAX_SKEW_NS = 2  # a record's ts_ns beyond recv_ns + this is bad_timestamp (0: off)
L_COLS = 3

# ---------------------------------------------------------------------------
# Per-symbol integer state: int64[n_symbols, I_COLS]
# ---------------------------------------------------------------------------
I_BID_PX = 0
I_BID_SZ = 1
I_ASK_PX = 2
I_ASK_SZ = 3
I_LAST_PX = 4
I_LAST_SZ = 5
I_N_TRADES = 6
I_RING_HEAD = 7  # trades ever pushed into the VWAP ring
I_RING_TAIL = 8  # oldest trade still in the window (ring index = tail & mask)
I_RET_COUNT = 9  # returns ever pushed into the return ring
I_BAR_START = 10  # start of the open bar, -1 when none
I_BAR_OPEN = 11
I_BAR_HIGH = 12
I_BAR_LOW = 13
I_BAR_CLOSE = 14
I_BAR_VOLUME = 15
I_BAR_TRADES = 16
I_BAR_END = 17  # end of the open bar (start + bar_ns): no division while inside it
# provenance of the newest input per analytic: ts, seq, stream, frame send_ns
I_PROV = 18  # + 4 * analytic + (0 ts, 1 seq, 2 stream, 3 send)
I_RET_SLOT = I_PROV + 4 * N_ANALYTICS  # next slot of the return ring
I_COLS = I_RET_SLOT + 1

# Per-symbol float state: float64[n_symbols, F_COLS].  The window sums are
# compensated (value, error) pairs: trades enter and leave the window, and a
# plain running sum would lose the small trades left after a large one leaves.
F_EMA = 0  # .. F_EMA + N_EMA - 1
F_PV_SESSION = s.N_EMA + 0
F_V_SESSION = s.N_EMA + 1
F_PV_WIN = s.N_EMA + 2  # + 1: its compensation term
F_V_WIN = s.N_EMA + 4
F_BUY_WIN = s.N_EMA + 6
F_SELL_WIN = s.N_EMA + 8
F_RET_MEAN = s.N_EMA + 10
F_RET_M2 = s.N_EMA + 11
F_RET_SUMSQ = s.N_EMA + 12  # + 1: its compensation term (squares enter and leave)
F_COLS = s.N_EMA + 14

# Trade ring columns: float64[n_symbols, ring_cap, R_COLS]
R_PV = 0
R_V = 1
R_BUY = 2
R_SELL = 3
R_COLS = 4


class StreamingParams(NamedTuple):
    """Sizes and analytic parameters of the streaming state (validated by the engine config)."""

    n_symbols: int = 1024
    max_streams: int = 64
    ema_spans: tuple[int, ...] = (15, 63, 255, 1023)  # alpha = 2/(span+1) = 2^-k
    vwap_window_ns: int = 60_000_000_000
    vwap_ring: int = 256  # trades kept per symbol for the window (power of two)
    vol_window: int = 64  # log returns in the rolling mean/variance/volatility
    bar_ns: int = 1_000_000_000
    book_levels: int = 64
    book_orders: int = 1 << 20
    max_records: int = 26_214  # per frame: bounds the output arrays
    max_gap: int = 1 << 32  # records: a longer forward jump is refused (bad_jump)
    failover_ns: int = 2_000_000_000  # holder silence before another session may take over
    max_clock_skew_ns: int = 60_000_000_000  # record ts_ns beyond recv_ns + this: bad_timestamp
    shard_index: int = 0  # this engine serves shard shard_index of shard_count ...
    shard_count: int = 1  # ... symbol s belongs to shard s % shard_count (1: every symbol)


class StreamingState(NamedTuple):
    """All preallocated state of the streaming kernels."""

    params: StreamingParams
    alphas: np.ndarray  # float64[N_EMA], NaN for unused slots
    limits: np.ndarray  # int64[L_COLS]: the ingest limits of params
    owned: np.ndarray  # uint8[n_symbols]: 1 if this engine's shard owns the symbol (foreign_shard)
    counters: np.ndarray  # int64[N_COUNTERS]
    streams: np.ndarray  # int64[max_streams, S_COLS]
    sym_i: np.ndarray  # int64[n_symbols, I_COLS]
    sym_f: np.ndarray  # float64[n_symbols, F_COLS]
    ring_ts: np.ndarray  # int64[n_symbols, vwap_ring]
    ring_f: np.ndarray  # float64[n_symbols, vwap_ring, R_COLS]
    ret_ring: np.ndarray  # float64[n_symbols, vol_window]
    touched: np.ndarray  # int64[N_ANALYTICS, n_symbols]: frame number that last touched
    touched_list: np.ndarray  # int32[N_ANALYTICS, max_records]
    n_touched: np.ndarray  # int64[N_ANALYTICS]; n_touched[A_BAR] counts completed bars
    out_seq: np.ndarray  # uint64[N_ANALYTICS, n_symbols]: next result sequence per topic
    out_quote: np.ndarray  # FRAME_QUOTE[max_records]
    out_trade: np.ndarray  # FRAME_TRADE[max_records]
    out_bar: np.ndarray  # FRAME_BAR[max_records]
    out_book: np.ndarray  # FRAME_BOOK[max_records]
    book: bk.BookState


def new_state(params: StreamingParams) -> StreamingState:
    """Allocate (and zero) all streaming state for ``params``."""
    if params.vwap_ring & (params.vwap_ring - 1):
        raise ValueError("vwap_ring must be a power of two")
    if not 1 <= len(params.ema_spans) <= s.N_EMA:
        raise ValueError(f"between 1 and {s.N_EMA} EMA spans")
    alphas = np.full(s.N_EMA, np.nan)
    alphas[: len(params.ema_spans)] = [2.0 / (span + 1.0) for span in params.ema_spans]
    n, m = params.n_symbols, params.max_records
    state = StreamingState(
        params=params,
        alphas=alphas,
        limits=np.array([params.max_gap, params.failover_ns, params.max_clock_skew_ns], np.int64),
        owned=(np.arange(n) % params.shard_count == params.shard_index).astype(np.uint8),
        counters=np.zeros(N_COUNTERS, np.int64),
        streams=np.zeros((params.max_streams, S_COLS), np.int64),
        sym_i=np.zeros((n, I_COLS), np.int64),
        sym_f=np.zeros((n, F_COLS), np.float64),
        ring_ts=np.zeros((n, params.vwap_ring), np.int64),
        ring_f=np.zeros((n, params.vwap_ring, R_COLS), np.float64),
        ret_ring=np.zeros((n, params.vol_window), np.float64),
        touched=np.zeros((N_ANALYTICS, n), np.int64),
        touched_list=np.zeros((N_ANALYTICS, m), np.int32),
        n_touched=np.zeros(N_ANALYTICS, np.int64),
        out_seq=np.zeros((N_ANALYTICS, n), np.uint64),
        out_quote=np.zeros(m, FRAME_QUOTE),
        out_trade=np.zeros(m, FRAME_TRADE),
        out_bar=np.zeros(m, FRAME_BAR),
        out_book=np.zeros(m, FRAME_BOOK),
        book=bk.new_book_state(n, params.book_levels, params.book_orders),
    )
    reset_state(state)
    return state


def reset_state(state: StreamingState) -> None:
    """Return every analytic and counter to its initial value."""
    state.counters[:] = 0
    state.streams[:] = 0
    state.streams[:, S_NEXT] = -1
    state.sym_i[:] = 0
    state.sym_i[:, I_BAR_START] = -1
    state.sym_f[:] = 0.0
    state.ring_ts[:] = 0
    state.ring_f[:] = 0.0
    state.ret_ring[:] = 0.0
    state.touched[:] = -1
    state.n_touched[:] = 0
    state.out_seq[:] = 0
    bk.reset_book(state.book)


# ---------------------------------------------------------------------------
# Header and sequence accounting
# ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _sat_add(a, b):
    """``a + b`` for ``b >= 0``, saturating at the int64 maximum (counters never wrap)."""
    if a > _MAX_COUNT - b:
        return _MAX_COUNT
    return a + b


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _accept_sequence(streams, counters, limits, stream, seq, count, session, recv_ns, part):
    """Account a frame's session and sequence range; return -1 to accept or a REJECT_* code.

    ``session`` is the version 2 session id as int64 bits, 0 for a version 1 frame;
    ``part`` > 0 is a continuation slice of a frame (not a frame of its own).
    """
    expected = streams[stream, S_NEXT]
    if expected >= 0 and session != streams[stream, S_SESSION]:
        if streams[stream, S_TAKEOVERS] > 0 and session == streams[stream, S_PREV_SESSION]:
            return s.REJECT_DUPLICATE  # the session this stream was taken from: old sequences
        ended = streams[stream, S_ENDED] != 0
        if not ended and recv_ns - streams[stream, S_LAST_NS] < limits[L_FAILOVER_NS]:
            return s.REJECT_FOREIGN_SESSION
        streams[stream, S_PREV_SESSION] = streams[stream, S_SESSION]
        streams[stream, S_TAKEOVERS] += 1
        counters[C_TAKEOVERS] += 1
        expected = -1  # the new session sets its own baseline
    if expected < 0:
        streams[stream, S_SESSION] = session
        streams[stream, S_FIRST] = seq
    elif seq == expected:
        pass
    elif seq > expected:
        lost = seq - expected
        if lost > limits[L_MAX_GAP]:
            return s.REJECT_BAD_JUMP
        streams[stream, S_GAPS] = _sat_add(streams[stream, S_GAPS], 1)
        streams[stream, S_LOST] = _sat_add(streams[stream, S_LOST], lost)
        counters[C_GAPS] = _sat_add(counters[C_GAPS], 1)
        counters[C_LOST] = _sat_add(counters[C_LOST], lost)
    elif seq == 0 and session == 0:
        counters[C_RESETS] += 1  # version 1: the publisher restarted its sequence
    elif seq + count <= expected:
        return s.REJECT_DUPLICATE
    else:
        return s.REJECT_OUT_OF_ORDER
    streams[stream, S_NEXT] = seq + count
    if part == 0:
        streams[stream, S_FRAMES] += 1
    streams[stream, S_LAST_NS] = recv_ns
    streams[stream, S_ENDED] = 0
    return -1


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _end_session(streams, counters, stream, session):
    """A version 2 end-of-session frame (count 0): the holder releases its stream."""
    if streams[stream, S_NEXT] >= 0 and session != streams[stream, S_SESSION]:
        if streams[stream, S_TAKEOVERS] > 0 and session == streams[stream, S_PREV_SESSION]:
            return s.REJECT_DUPLICATE
        return s.REJECT_FOREIGN_SESSION
    if streams[stream, S_NEXT] >= 0:
        streams[stream, S_ENDED] = 1
    counters[C_SESSION_ENDS] += 1
    return -1


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _check_frame(
    header, nbytes, expect_kind, record_size, max_records, streams, counters, limits, recv_ns,
    part,
):  # fmt: skip
    """Header checks and sequence accounting; return the record count or -1 (rejected).

    ``header`` is a HEADER_V2 view of the buffer; its ``session`` is read only
    for a version 2 frame long enough to hold it.  ``part`` > 0: a continuation slice
    of a frame (engine/ingest/slicer.py), whose first slice counted the frame and its
    header: it adds its records and their bytes only.
    """
    h = header[0]
    count = np.int64(h.count)
    hsize = s.HEADER_SIZE
    if h.version == s.VERSION_SESSION:
        hsize = s.HEADER_V2_SIZE
    if part == 0:
        counters[C_FRAMES] += 1
        counters[C_BYTES] = _sat_add(counters[C_BYTES], nbytes)
    else:
        counters[C_BYTES] = _sat_add(counters[C_BYTES], max(0, nbytes - hsize))
    reason = -1
    if nbytes < s.HEADER_SIZE:
        reason = s.REJECT_SHORT
    elif h.magic != s.MAGIC:
        reason = s.REJECT_BAD_MAGIC
    elif h.version != s.VERSION and h.version != s.VERSION_SESSION:
        reason = s.REJECT_BAD_VERSION
    elif nbytes < hsize:
        reason = s.REJECT_SHORT
    elif h.kind != expect_kind:
        reason = s.REJECT_BAD_KIND
    elif (count == 0 and hsize != s.HEADER_V2_SIZE) or count > max_records:
        reason = s.REJECT_BAD_COUNT  # count 0: only a version 2 end of session
    elif nbytes - hsize != count * record_size:
        reason = s.REJECT_BAD_LENGTH
    elif h.stream_id >= streams.shape[0]:
        reason = s.REJECT_UNKNOWN_STREAM
    elif hsize == s.HEADER_V2_SIZE and h.session == 0:
        reason = s.REJECT_BAD_SESSION
    elif count == 0:
        reason = _end_session(streams, counters, h.stream_id, np.int64(h.session))
    elif np.int64(h.seq) < 0 or np.int64(h.seq) > _MAX_SEQ - count:
        reason = s.REJECT_BAD_SEQUENCE  # sequences live in 63 bits: never wrap negative
    else:
        session = np.int64(0)
        if hsize == s.HEADER_V2_SIZE:
            session = np.int64(h.session)  # the u64's bits
        reason = _accept_sequence(
            streams, counters, limits, h.stream_id, np.int64(h.seq), count, session, recv_ns,
            part,
        )  # fmt: skip
    if reason >= 0:
        counters[reason] += 1
        return -1
    if part == 0:
        counters[C_FRAMES_ACCEPTED] += 1
    counters[C_RECORDS] += count
    return count


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _stamp(counters, part):
    """What a frame (part 0) or a continuation slice (``part`` > 0) stamps the symbols it
    touches with: a number no earlier call used (slices: negative, below -2**20)."""
    if part == 0:
        return counters[C_FRAMES]
    return -((counters[C_FRAMES] << 20) | part)


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _ts_limit(limits, recv_ns):
    """Largest acceptable record ts_ns for a frame received at ``recv_ns`` (skew check off: max)."""
    skew = limits[L_MAX_SKEW_NS]
    if skew <= 0 or recv_ns <= 0:
        return _MAX_COUNT
    return _sat_add(recv_ns, skew)


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _touch(state_touched, touched_list, n_touched, analytic, symbol, frame_no):
    if state_touched[analytic, symbol] != frame_no:
        state_touched[analytic, symbol] = frame_no
        touched_list[analytic, n_touched[analytic]] = symbol
        n_touched[analytic] += 1


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _provenance(sym_i, symbol, analytic, ts, seq, stream, send_ns):
    base = I_PROV + 4 * analytic
    sym_i[symbol, base + 0] = ts
    sym_i[symbol, base + 1] = seq
    sym_i[symbol, base + 2] = stream
    sym_i[symbol, base + 3] = send_ns


def record_ts_limit(limits: np.ndarray, recv_ns: int) -> int:
    """The ``ts_max`` the record checks use for a frame received at ``recv_ns`` (for tools)."""
    skew = int(limits[L_MAX_SKEW_NS])
    if skew <= 0 or recv_ns <= 0:
        return int(_MAX_COUNT)
    return min(int(recv_ns) + skew, int(_MAX_COUNT))


# ---------------------------------------------------------------------------
# Quotes
# ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def quote_reject_reason(q, n_symbols, ts_max):
    """-1 if a QUOTE record is acceptable, else its REJECT_* code (the README's rules)."""
    if q.ts_ns < 0 or q.ts_ns > ts_max:
        return s.REJECT_BAD_TIMESTAMP
    if q.symbol >= n_symbols:
        return s.REJECT_UNKNOWN_SYMBOL
    if q.bid_price < 0 or q.ask_price < 0:
        return s.REJECT_BAD_PRICE
    if q.bid_size < 0 or q.ask_size < 0:
        return s.REJECT_BAD_SIZE
    return -1


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def trade_reject_reason(t, n_symbols, ts_max):
    """-1 if a TRADE record is acceptable, else its REJECT_* code."""
    if t.ts_ns < 0 or t.ts_ns > ts_max:
        return s.REJECT_BAD_TIMESTAMP
    if t.symbol >= n_symbols:
        return s.REJECT_UNKNOWN_SYMBOL
    if t.price <= 0:
        return s.REJECT_BAD_PRICE
    if t.size <= 0:
        return s.REJECT_BAD_SIZE
    if t.side < -1 or t.side > 1:
        return s.REJECT_BAD_ACTION
    return -1


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def order_reject_reason(o, n_symbols, ts_max):
    """-1 if an ORDER record is acceptable, else its REJECT_* code."""
    action = o.action
    if o.ts_ns < 0 or o.ts_ns > ts_max:
        return s.REJECT_BAD_TIMESTAMP
    if o.symbol >= n_symbols:
        return s.REJECT_UNKNOWN_SYMBOL
    if action < s.ACTION_ADD or action > s.ACTION_EXECUTE or o.side < -1 or o.side > 1:
        return s.REJECT_BAD_ACTION
    if action == s.ACTION_ADD and o.side == 0:
        return s.REJECT_BAD_ACTION
    if (action == s.ACTION_ADD or action == s.ACTION_MODIFY) and o.price <= 0:
        return s.REJECT_BAD_PRICE
    if action != s.ACTION_CANCEL and o.size <= 0:
        return s.REJECT_BAD_SIZE
    return -1


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _ingest_quotes(
    header, quotes, nbytes, recv_ns, part, streams, counters, limits, owned, sym_i, touched,
    touched_list, n_touched,
):  # fmt: skip
    """Update the state with one QUOTE frame; return the number of records accepted."""
    max_records = touched_list.shape[1]
    n = _check_frame(
        header, nbytes, s.KIND_QUOTE, s.QUOTE_SIZE, max_records, streams, counters, limits, recv_ns,
        part,
    )  # fmt: skip
    if n < 0:
        return 0
    ts_max = _ts_limit(limits, recv_ns)
    frame_no = _stamp(counters, part)  # stamps what this frame (or slice) touched
    h = header[0]
    seq0 = np.int64(h.seq)
    n_symbols = sym_i.shape[0]
    accepted = 0
    for i in range(n):
        q = quotes[i]
        reason = quote_reject_reason(q, n_symbols, ts_max)
        if reason < 0 and owned[q.symbol] == 0:
            reason = s.REJECT_FOREIGN_SHARD
        if reason >= 0:
            counters[reason] += 1
            continue
        sym = q.symbol
        sym_i[sym, I_BID_PX] = q.bid_price
        sym_i[sym, I_BID_SZ] = q.bid_size
        sym_i[sym, I_ASK_PX] = q.ask_price
        sym_i[sym, I_ASK_SZ] = q.ask_size
        _provenance(sym_i, sym, A_QUOTE, q.ts_ns, seq0 + i, h.stream_id, h.send_ns)
        _touch(touched, touched_list, n_touched, A_QUOTE, sym, frame_no)
        accepted += 1
    counters[C_RECORDS_ACCEPTED] += accepted
    counters[C_PROC_QUOTE] += accepted
    return accepted


# ---------------------------------------------------------------------------
# Trades: last, EMA, VWAP (session and window), returns, flow imbalance, bars
# ---------------------------------------------------------------------------


# The update formulas are kernels/cpu/steps.py's (shared with tickpath.analytics); the
# column blocks below are laid out as those functions expect.
assert F_RET_M2 == F_RET_MEAN + steps.MOM_M2 and F_RET_SUMSQ == F_RET_MEAN + steps.MOM_SUMSQ
assert F_V_WIN == F_PV_WIN + steps.WIN_V and F_SELL_WIN == F_PV_WIN + steps.WIN_SELL
assert F_BUY_WIN == F_PV_WIN + steps.WIN_BUY and F_V_SESSION == F_PV_SESSION + 1
assert (R_PV, R_V, R_BUY, R_SELL) == (steps.RING_PV, steps.RING_V, steps.RING_BUY, steps.RING_SELL)
assert I_BAR_CLOSE == I_BAR_OPEN + steps.BAR_CLOSE and I_BAR_TRADES == I_BAR_OPEN + steps.BAR_TRADES


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _close_bar(sym_i, out_bar, n_touched, sym, frame_no):
    """Write the open bar of ``sym`` as a completed bar result."""
    j = n_touched[A_BAR]
    n_touched[A_BAR] = j + 1
    b = out_bar[j : j + 1]
    b[0].symbol = sym
    b[0].bar_start_ns = sym_i[sym, I_BAR_START]
    b[0].open = sym_i[sym, I_BAR_OPEN]
    b[0].high = sym_i[sym, I_BAR_HIGH]
    b[0].low = sym_i[sym, I_BAR_LOW]
    b[0].close = sym_i[sym, I_BAR_CLOSE]
    b[0].volume = sym_i[sym, I_BAR_VOLUME]
    b[0].n_trades = sym_i[sym, I_BAR_TRADES]
    base = I_PROV + 4 * A_BAR
    b[0].ts_ns = sym_i[sym, base + 0]
    b[0].in_seq = sym_i[sym, base + 1]
    b[0].in_stream = sym_i[sym, base + 2]
    b[0].in_send_ns = sym_i[sym, base + 3]


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _ingest_trades(
    header, trades, nbytes, recv_ns, part, streams, counters, limits, owned, sym_i, sym_f, alphas,
    ring_ts, ring_f, ret_ring, vwap_window_ns, bar_ns, touched, touched_list, n_touched, out_bar,
):  # fmt: skip
    """Update the state with one TRADE frame; return the number of records accepted."""
    max_records = touched_list.shape[1]
    n = _check_frame(
        header, nbytes, s.KIND_TRADE, s.TRADE_SIZE, max_records, streams, counters, limits, recv_ns,
        part,
    )  # fmt: skip
    if n < 0:
        return 0
    ts_max = _ts_limit(limits, recv_ns)
    frame_no = _stamp(counters, part)  # stamps what this frame (or slice) touched
    h = header[0]
    seq0 = np.int64(h.seq)
    n_symbols = sym_i.shape[0]
    accepted = 0
    bars = 0
    for i in range(n):
        t = trades[i]
        reason = trade_reject_reason(t, n_symbols, ts_max)
        if reason < 0 and owned[t.symbol] == 0:
            reason = s.REJECT_FOREIGN_SHARD
        if reason >= 0:
            counters[reason] += 1
            continue
        sym = t.symbol
        ts = t.ts_ns
        px = t.price / s.PRICE_SCALE
        sz = t.size / s.SIZE_SCALE
        pv = px * sz
        n_prev = sym_i[sym, I_N_TRADES]
        # log return against the previous trade of the symbol
        if n_prev > 0:
            r = steps.log_return(t.price, sym_i[sym, I_LAST_PX])
            (
                sym_i[sym, I_RET_COUNT], sym_i[sym, I_RET_SLOT], sym_f[sym, F_RET_MEAN],
                sym_f[sym, F_RET_M2], sym_f[sym, F_RET_SUMSQ], sym_f[sym, F_RET_SUMSQ + 1],
            ) = steps.moments_push(
                ret_ring, sym, sym_i[sym, I_RET_COUNT], sym_i[sym, I_RET_SLOT],
                sym_f[sym, F_RET_MEAN], sym_f[sym, F_RET_M2], sym_f[sym, F_RET_SUMSQ],
                sym_f[sym, F_RET_SUMSQ + 1], r, True,
            )  # fmt: skip
        # EMAs, seeded with the first price
        for k in range(s.N_EMA):
            a = alphas[k]
            if n_prev == 0:
                sym_f[sym, F_EMA + k] = px
            else:
                sym_f[sym, F_EMA + k] = steps.ema_update(sym_f[sym, F_EMA + k], a, px)
        sym_i[sym, I_LAST_PX] = t.price
        sym_i[sym, I_LAST_SZ] = t.size
        sym_i[sym, I_N_TRADES] = n_prev + 1
        steps.session_add(sym_f, sym, F_PV_SESSION, pv, sz)
        # rolling time window: evict trades at or before ts - window
        head, tail, truncated = steps.window_push(
            ring_ts, ring_f, sym_f, sym, F_PV_WIN, sym_i[sym, I_RING_HEAD],
            sym_i[sym, I_RING_TAIL], ts, pv, sz, sz if t.side == s.SIDE_BUY else 0.0,
            sz if t.side == s.SIDE_SELL else 0.0, vwap_window_ns,
        )  # fmt: skip
        counters[C_WINDOW_TRUNCATED] += truncated
        sym_i[sym, I_RING_HEAD] = head
        sym_i[sym, I_RING_TAIL] = tail
        # OHLCV bars: a trade in a later bucket closes the open bar
        if steps.bar_is_past(sym_i, sym, I_BAR_START, I_BAR_END, ts):
            if sym_i[sym, I_BAR_START] >= 0:  # ts is past the open bar: close it
                _close_bar(sym_i, out_bar, n_touched, sym, frame_no)
                bars += 1
            steps.bar_open(
                sym_i, sym, I_BAR_START, I_BAR_END, sym_i, I_BAR_OPEN, ts, t.price, bar_ns
            )
        steps.bar_add(sym_i, sym, I_BAR_OPEN, t.price, t.size)
        _provenance(sym_i, sym, A_TRADE, ts, seq0 + i, h.stream_id, h.send_ns)
        _provenance(sym_i, sym, A_BAR, ts, seq0 + i, h.stream_id, h.send_ns)
        _touch(touched, touched_list, n_touched, A_TRADE, sym, frame_no)
        accepted += 1
    counters[C_RECORDS_ACCEPTED] += accepted
    counters[C_PROC_TRADE] += accepted
    counters[C_PROC_BAR] += bars
    return accepted


# ---------------------------------------------------------------------------
# L3 orders -> per-symbol book
# ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _ingest_orders(
    header, orders, nbytes, recv_ns, part, streams, counters, limits, owned, sym_i, book, touched,
    touched_list, n_touched,
):  # fmt: skip
    """Update the state (the books) with one ORDER frame; return the number of records accepted."""
    max_records = touched_list.shape[1]
    n = _check_frame(
        header, nbytes, s.KIND_ORDER, s.ORDER_SIZE, max_records, streams, counters, limits, recv_ns,
        part,
    )  # fmt: skip
    if n < 0:
        return 0
    ts_max = _ts_limit(limits, recv_ns)
    frame_no = _stamp(counters, part)  # stamps what this frame (or slice) touched
    h = header[0]
    seq0 = np.int64(h.seq)
    stream_id = h.stream_id
    send_ns = h.send_ns
    n_symbols = sym_i.shape[0]
    accepted = 0
    for i in range(n):
        o = orders[i]
        reason = order_reject_reason(o, n_symbols, ts_max)
        if reason < 0 and owned[o.symbol] == 0:
            reason = s.REJECT_FOREIGN_SHARD
        if reason >= 0:
            counters[reason] += 1
            continue
        sym = o.symbol
        action = o.action
        code = bk.book_apply(book, sym, action, o.side, o.order_id, o.price, o.size)
        if code == bk.BOOK_DUPLICATE_ID:
            counters[C_BOOK_DUPLICATE_ID] += 1
        elif code == bk.BOOK_UNKNOWN_ORDER:
            counters[C_BOOK_UNKNOWN_ORDER] += 1
        elif code == bk.BOOK_OVERFILL:
            counters[C_BOOK_OVERFILL] += 1
        elif code == bk.BOOK_LEVEL_OVERFLOW:
            counters[C_BOOK_LEVEL_OVERFLOW] += 1
        elif code == bk.BOOK_TABLE_FULL:
            counters[C_BOOK_TABLE_FULL] += 1
        _provenance(sym_i, sym, A_BOOK, o.ts_ns, seq0 + i, stream_id, send_ns)
        _touch(touched, touched_list, n_touched, A_BOOK, sym, frame_no)
        accepted += 1
    counters[C_RECORDS_ACCEPTED] += accepted
    counters[C_PROC_BOOK] += accepted
    return accepted


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _header(frame, kind, symbol, seq, send_ns):
    frame.magic = s.MAGIC
    frame.version = s.VERSION
    frame.kind = kind
    frame.stream_id = symbol
    frame.count = 1
    frame.seq = seq
    frame.send_ns = send_ns


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _common(frame, sym_i, sym, analytic, recv_ns, done_ns):
    base = I_PROV + 4 * analytic
    frame.ts_ns = sym_i[sym, base + 0]
    frame.in_seq = sym_i[sym, base + 1]
    frame.in_stream = sym_i[sym, base + 2]
    frame.in_send_ns = sym_i[sym, base + 3]
    frame.recv_ns = recv_ns
    frame.done_ns = done_ns
    frame.symbol = sym


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _emit_quotes(recv_ns, done_ns, sym_i, touched_list, n_touched, out_seq, out_quote):
    for j in range(n_touched[A_QUOTE]):
        sym = touched_list[A_QUOTE, j]
        f = out_quote[j]
        _header(f, s.KIND_RESULT_QUOTE, sym, out_seq[A_QUOTE, sym], done_ns)
        out_seq[A_QUOTE, sym] += 1
        _common(f, sym_i, sym, A_QUOTE, recv_ns, done_ns)
        bp = sym_i[sym, I_BID_PX]
        bs = sym_i[sym, I_BID_SZ]
        ap = sym_i[sym, I_ASK_PX]
        az = sym_i[sym, I_ASK_SZ]
        f.bid_price = bp
        f.bid_size = bs
        f.ask_price = ap
        f.ask_size = az
        f.mid, f.spread, f.microprice, f.imbalance = steps.l1_features(
            bp, bs, ap, az, s.PRICE_SCALE
        )


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _emit_trades(
    recv_ns, done_ns, sym_i, sym_f, ret_ring, touched_list, n_touched, out_seq, out_trade, out_bar
):  # fmt: skip
    vol_window = ret_ring.shape[1]
    for j in range(n_touched[A_TRADE]):
        sym = touched_list[A_TRADE, j]
        f = out_trade[j]
        _header(f, s.KIND_RESULT_TRADE, sym, out_seq[A_TRADE, sym], done_ns)
        out_seq[A_TRADE, sym] += 1
        _common(f, sym_i, sym, A_TRADE, recv_ns, done_ns)
        f.price = sym_i[sym, I_LAST_PX]
        f.size = sym_i[sym, I_LAST_SZ]
        for k in range(s.N_EMA):
            f.ema[k] = sym_f[sym, F_EMA + k]
        f.vwap_session = steps.session_vwap(sym_f, sym, F_PV_SESSION)
        f.vwap_window = steps.window_vwap(sym_f, sym, F_PV_WIN)
        n_ret = min(sym_i[sym, I_RET_COUNT], vol_window)
        f.n_returns = n_ret
        if n_ret == 0:
            f.ret_mean = np.nan
            f.realized_vol = np.nan
        else:
            f.ret_mean = sym_f[sym, F_RET_MEAN]
            f.realized_vol = steps.root_sum_squares(steps.compensated_sum(sym_f, sym, F_RET_SUMSQ))
        if n_ret < 2:
            f.ret_var = np.nan
        else:
            f.ret_var = steps.sample_variance(sym_f[sym, F_RET_M2], n_ret, 1)
        f.trade_flow_imbalance = steps.window_flow_imbalance(sym_f, sym, F_PV_WIN)
    for j in range(n_touched[A_BAR]):
        f = out_bar[j]
        sym = f.symbol
        _header(f, s.KIND_RESULT_BAR, sym, out_seq[A_BAR, sym], done_ns)
        out_seq[A_BAR, sym] += 1
        f.recv_ns = recv_ns
        f.done_ns = done_ns


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _emit_book(recv_ns, done_ns, sym_i, book, touched_list, n_touched, out_seq, out_book):
    for j in range(n_touched[A_BOOK]):
        sym = touched_list[A_BOOK, j]
        f = out_book[j]
        _header(f, s.KIND_RESULT_BOOK, sym, out_seq[A_BOOK, sym], done_ns)
        out_seq[A_BOOK, sym] += 1
        _common(f, sym_i, sym, A_BOOK, recv_ns, done_ns)
        bk.book_fill_top(book, sym, out_book, j)


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _start_frame(n_touched):
    for a in range(N_ANALYTICS):
        n_touched[a] = 0


@numba.njit(cache=True, nogil=True, inline="always", _nrt=False)
def _results(counters, n_touched):
    total = n_touched[0] + n_touched[1] + n_touched[2] + n_touched[3]
    counters[C_RESULTS] += total
    return total


_HEADER_WORDS = s.HEADER_SIZE // 8
assert s.HEADER_SIZE % 8 == 0 and s.HEADER.fields["stream_id"][1] == 8
assert s.HEADER.fields["count"][1] == 12 and s.HEADER.fields["seq"][1] == 16
_U32 = np.uint64(32)


@numba.njit(cache=True, nogil=True, _nrt=False)
def pack_batch(frames, n, out, seq, stream_id):
    """Pack the first ``n`` result frames as one frame of ``n`` records; return its bytes.

    ``frames`` is a result array (header + one record per element) and ``out``
    the batch buffer, both seen as 8-byte words (``uint64[rows, words]`` and
    ``uint64[words]``; a frame's size is a multiple of 8).  The header is the
    first frame's with ``stream_id``, ``count = n`` and ``seq``; the records
    follow in order.  One call per batched message, no Python-level slicing.  The
    wire format is little-endian: callers on a big-endian host must not use this.
    """
    width = frames.shape[1]
    out[0] = frames[0, 0]  # magic, version, kind
    out[1] = np.uint64(stream_id) | (np.uint64(n) << _U32)  # stream_id, count
    out[2] = np.uint64(seq)
    out[3] = frames[0, 3]  # send_ns (every result of a frame has the same)
    record = width - _HEADER_WORDS
    for j in range(n):
        src = frames[j]
        base = j * record  # out[base + c] for c in HEADER_WORDS .. width - 1
        for c in range(_HEADER_WORDS, width):
            # unsigned indices: no negative-index wraparound, so the copy vectorises
            out[np.uint64(base + c)] = src[np.uint64(c)]
    return 8 * (_HEADER_WORDS + n * record)


# ---------------------------------------------------------------------------
# Entry points: one call per received frame
# ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, _nrt=False)
def on_quote_frame(
    header, quotes, nbytes, recv_ns, part, streams, counters, limits, owned, sym_i, touched,
    touched_list, n_touched, out_seq, out_quote,
):  # fmt: skip
    """Process a QUOTE frame and fill its result frames; return the number of results.

    ``header`` is a HEADER_V2 view of the receive buffer and ``quotes`` the
    records view after the frame's header (32 bytes for version 1, 40 for 2).
    """
    _start_frame(n_touched)
    if _ingest_quotes(
        header, quotes, nbytes, recv_ns, part, streams, counters, limits, owned, sym_i, touched,
        touched_list, n_touched,
    ):  # fmt: skip
        _emit_quotes(recv_ns, realtime_ns(), sym_i, touched_list, n_touched, out_seq, out_quote)
    return _results(counters, n_touched)


@numba.njit(cache=True, nogil=True, _nrt=False)
def on_trade_frame(
    header, trades, nbytes, recv_ns, part, streams, counters, limits, owned, sym_i, sym_f, alphas,
    ring_ts, ring_f, ret_ring, vwap_window_ns, bar_ns, touched, touched_list, n_touched, out_seq,
    out_trade, out_bar,
):  # fmt: skip
    """Process a TRADE frame (or reject a frame of any other kind); return the number of results."""
    _start_frame(n_touched)
    if _ingest_trades(
        header, trades, nbytes, recv_ns, part, streams, counters, limits, owned, sym_i, sym_f,
        alphas, ring_ts, ring_f, ret_ring, vwap_window_ns, bar_ns, touched, touched_list,
        n_touched, out_bar,
    ):  # fmt: skip
        _emit_trades(
            recv_ns, realtime_ns(), sym_i, sym_f, ret_ring, touched_list, n_touched, out_seq,
            out_trade, out_bar,
        )  # fmt: skip
    return _results(counters, n_touched)


@numba.njit(cache=True, nogil=True, _nrt=False)
def on_order_frame(
    header, orders, nbytes, recv_ns, part, streams, counters, limits, owned, sym_i, book_levels,
    book_sides, book_index, book_pool, book_links, book_scratch, book_counters, touched,
    touched_list, n_touched, out_seq, out_book,
):  # fmt: skip
    """Process an ORDER frame and fill its book result frames; return the number of results.

    The book comes as its arrays, in :class:`~tickpath.kernels.cpu.book.BookState` field
    order (:func:`book_arrays`): numba types an array argument from C, a NamedTuple of
    arrays with Python code, about 1 us a call.
    """
    book = bk.BookState(
        book_levels, book_sides, book_index, book_pool, book_links, book_scratch, book_counters
    )
    _start_frame(n_touched)
    if _ingest_orders(
        header, orders, nbytes, recv_ns, part, streams, counters, limits, owned, sym_i, book,
        touched, touched_list, n_touched,
    ):  # fmt: skip
        _emit_book(recv_ns, realtime_ns(), sym_i, book, touched_list, n_touched, out_seq, out_book)
    return _results(counters, n_touched)


def book_arrays(book: bk.BookState) -> tuple[np.ndarray, ...]:
    """The arguments :func:`on_order_frame` takes for ``book``."""
    return tuple(book)


# The frame kernels inline the book and the clock and freeze the schema's
# constants: their cache entries must change when those files do.
stamp_dependencies(globals(), [s, bk, _clock_module, _book_reference, steps])
