"""The one definition of tickpath's hot-path records.

Every frame on the wire is a 32-byte header followed by ``count`` fixed-size
records of one kind.  All integers are little-endian.  Prices are signed
integer ticks (``price = ticks / PRICE_SCALE``), sizes are signed integer lots
(``size = lots / SIZE_SCALE``), timestamps are int64 nanoseconds since the Unix
epoch.  The codec, the numba CPU kernels, the CUDA kernels, the FPGA golden
model and the RTL field offsets all import this module; it imports only numpy.

Sequence numbers count *records*, not frames: a frame's ``seq`` is the
sequence number of its first record, so the next frame of the same stream
must carry ``seq + count``.

Two input header versions are accepted.  Version 1 is the 32-byte
:data:`HEADER`.  Version 2 (:data:`HEADER_V2`, 40 bytes) appends a u64
publisher ``session`` id, as MoldUDP64 does: a stream belongs to the session
that holds it, other sessions' frames are refused until the holder has been
silent for the failover time, and a publisher that restarts starts a new
session.  Result frames keep the version 1 header.
"""

from __future__ import annotations

import numpy as np

MAGIC = 0x54504B54  # b"TKPT" read as a little-endian u32
VERSION = 1  # the 32-byte header: inputs without a session, and every result frame
VERSION_SESSION = 2  # the 40-byte input header with a publisher session id

PRICE_SCALE = 10_000  # 4 implied decimals, as in NASDAQ ITCH
SIZE_SCALE = 100_000_000  # 8 implied decimals: fractional crypto sizes fit
NULL_I64 = np.iinfo(np.int64).min  # what a float NaN cast to int64 becomes on x86

# ---------------------------------------------------------------------------
# Record kinds (header.kind).  Inputs are < 16, results are >= 16.
# ---------------------------------------------------------------------------
KIND_TRADE = 1
KIND_QUOTE = 2
KIND_ORDER = 3
KIND_RESULT_QUOTE = 16
KIND_RESULT_TRADE = 17
KIND_RESULT_BAR = 18
KIND_RESULT_BOOK = 19
KIND_RESULT_FPGA = 21  # tick features from the FPGA overlay (or its emulation)
KIND_RESULT_CHAIN = 20  # milli path: option chain repricing, one record per contract
KIND_RESULT_CORR = 22  # milli path: rolling covariance/correlation, one record per pair

# Trade aggressor side and order book side.
SIDE_UNKNOWN = 0
SIDE_BUY = 1  # trade: buyer was the aggressor; order: resting bid
SIDE_SELL = -1  # trade: seller was the aggressor; order: resting ask

# L3 order actions (ORDER.action).
ACTION_ADD = 1  # new resting order: order_id, side, price, size
ACTION_MODIFY = 2  # order now rests at price with remaining size (may move level)
ACTION_CANCEL = 3  # order removed whole; price and size are ignored
ACTION_EXECUTE = 4  # size lots of the order traded; removed when nothing remains

N_EMA = 4  # EMA slots in a trade result; unused slots are NaN
TOP_N = 5  # price levels per side in a book result

HEADER = np.dtype(
    [
        ("magic", "<u4"),
        ("version", "<u2"),
        ("kind", "<u2"),
        ("stream_id", "<u4"),
        ("count", "<u4"),
        ("seq", "<u8"),
        ("send_ns", "<i8"),
    ]
)

# Version 2: the version 1 fields, then the publisher's session id (never 0).
HEADER_V2 = np.dtype(HEADER.descr + [("session", "<u8")])

TRADE = np.dtype(
    [
        ("ts_ns", "<i8"),
        ("symbol", "<u4"),
        ("side", "i1"),
        ("flags", "u1"),
        ("_pad", "<u2"),
        ("price", "<i8"),
        ("size", "<i8"),
        ("trade_id", "<u8"),
    ]
)

QUOTE = np.dtype(
    [
        ("ts_ns", "<i8"),
        ("symbol", "<u4"),
        ("_pad", "<u4"),
        ("bid_price", "<i8"),
        ("bid_size", "<i8"),
        ("ask_price", "<i8"),
        ("ask_size", "<i8"),
    ]
)

ORDER = np.dtype(
    [
        ("ts_ns", "<i8"),
        ("symbol", "<u4"),
        ("action", "u1"),
        ("side", "i1"),
        ("_pad", "<u2"),
        ("order_id", "<u8"),
        ("price", "<i8"),
        ("size", "<i8"),
    ]
)

# Every result record starts with the same provenance and timing block, so a
# subscriber can tie a result to the input record that produced it and split
# its latency into stages.
_RESULT_COMMON = [
    ("ts_ns", "<i8"),  # exchange timestamp of the newest input record used
    ("in_seq", "<u8"),  # sequence number of that input record
    ("in_send_ns", "<i8"),  # send_ns of the input frame that carried it
    ("recv_ns", "<i8"),  # engine: frame received (wall clock)
    ("done_ns", "<i8"),  # engine: kernels finished for that frame (wall clock)
    ("in_stream", "<u4"),  # stream id of the input frame
    ("symbol", "<u4"),
]

RESULT_QUOTE = np.dtype(
    _RESULT_COMMON
    + [
        ("bid_price", "<i8"),
        ("bid_size", "<i8"),
        ("ask_price", "<i8"),
        ("ask_size", "<i8"),
        ("mid", "<f8"),  # in price units (ticks / PRICE_SCALE)
        ("spread", "<f8"),
        ("microprice", "<f8"),
        ("imbalance", "<f8"),  # (bid_size - ask_size) / (bid_size + ask_size)
    ]
)

RESULT_TRADE = np.dtype(
    _RESULT_COMMON
    + [
        ("price", "<i8"),  # last trade, ticks
        ("size", "<i8"),  # last trade, lots
        ("ema", "<f8", (N_EMA,)),  # EMA of trade price, one per configured span
        ("vwap_session", "<f8"),
        ("vwap_window", "<f8"),  # over the trades of the last vwap_window_ns
        ("ret_mean", "<f8"),  # rolling mean of log returns (last vol_window)
        ("ret_var", "<f8"),  # rolling sample variance of log returns
        ("realized_vol", "<f8"),  # sqrt(sum of squared log returns in window)
        ("trade_flow_imbalance", "<f8"),  # (buy - sell) / (buy + sell) volume, window
        ("n_returns", "<u4"),  # returns in the rolling window so far
        ("_pad", "<u4"),
    ]
)

RESULT_BAR = np.dtype(
    _RESULT_COMMON
    + [
        ("bar_start_ns", "<i8"),
        ("open", "<i8"),
        ("high", "<i8"),
        ("low", "<i8"),
        ("close", "<i8"),
        ("volume", "<i8"),
        ("n_trades", "<u4"),
        ("_pad", "<u4"),
    ]
)

RESULT_BOOK = np.dtype(
    _RESULT_COMMON
    + [
        ("bid_price", "<i8", (TOP_N,)),  # best first; 0 where the level is empty
        ("bid_size", "<i8", (TOP_N,)),
        ("bid_orders", "<u4", (TOP_N,)),
        ("ask_price", "<i8", (TOP_N,)),
        ("ask_size", "<i8", (TOP_N,)),
        ("ask_orders", "<u4", (TOP_N,)),
        ("bid_levels", "<u4"),  # levels tracked per side: min(levels, book_levels)
        ("ask_levels", "<u4"),
        ("depth_imbalance", "<f8"),  # over the TOP_N levels; NaN if both empty
    ]
)

# The FPGA tick-features core's output (kernels/fixedpoint/layout.FEATURE) after
# the common block: fixed-point values as the core computes them.
RESULT_FPGA = np.dtype(
    _RESULT_COMMON
    + [
        ("core_kind", "u1"),  # kind of the input record (1 trade, 2 quote)
        ("flags", "u1"),  # FLAG_* bits of kernels.fixedpoint.layout
        ("_pad", "<u2"),
        ("_pad2", "<u4"),
        ("core_seq", "<u8"),  # records the core has seen since its reset
        ("last_price", "<i8"),  # ticks
        ("last_size", "<i8"),  # lots
        ("ema0", "<i8"),  # EMA of trade price, alpha = 2^-k0, ticks * 2^16
        ("ema1", "<i8"),  # EMA of trade price, alpha = 2^-k1, ticks * 2^16
        ("pv_lo", "<u8"),  # session sum of price*size (ticks*lots), low 64 bits
        ("pv_hi", "<i8"),  # high 64 bits (signed)
        ("volume", "<i8"),  # session sum of size, lots
        ("bid_price", "<i8"),
        ("ask_price", "<i8"),
        ("mid_x2", "<i8"),  # bid + ask: the mid in half ticks
        ("spread", "<i8"),  # ticks
        ("imb_num", "<i8"),  # bid_size - ask_size, lots
        ("imb_den", "<i8"),  # bid_size + ask_size, lots
    ]
)

# Milli-path results (engine/dispatch, docs/dispatch.md).  Unlike the streaming
# results, one frame carries many records: a whole chain, or a whole matrix.
NO_SYMBOL = 0xFFFFFFFF  # RESULT_CHAIN.option_symbol of a contract without quotes
# RESULT_CHAIN.backend / RESULT_CORR.backend: where the numbers were computed.
BACKEND_CODES = {"numpy": 0, "cpu": 1, "cuda": 2, "cupy": 3, "fpga": 4}
BACKEND_OTHER = 255  # a backend registered at run time without a code of its own
# RESULT_CHAIN.flags / RESULT_CORR.flags
RESULT_FLAG_FALLBACK = 1  # the routed backend failed; computed by the CPU fallback
RESULT_FLAG_LATE = 2  # finished after the job's deadline
RESULT_FLAG_QUOTED = 4  # chain: implied_vol comes from a quote of the option

RESULT_CHAIN = np.dtype(
    _RESULT_COMMON  # the tick that triggered the repricing; symbol: the underlying
    + [
        ("option_symbol", "<u4"),  # symbol id of the option's QUOTEs, or NO_SYMBOL
        ("index", "<u4"),  # position of the contract in the chain
        ("is_call", "u1"),
        ("backend", "u1"),  # BACKEND_CODES
        ("flags", "<u2"),  # RESULT_FLAG_*
        ("_pad", "<u4"),
        ("strike", "<f8"),  # price units
        ("expiry", "<f8"),  # years to expiry
        ("underlying", "<f8"),  # underlying price used (quote mid or last trade)
        ("rate", "<f8"),
        ("dividend", "<f8"),
        ("sigma", "<f8"),  # volatility the price and greeks use
        ("price", "<f8"),
        ("delta", "<f8"),
        ("gamma", "<f8"),
        ("vega", "<f8"),  # per 1.00 of volatility
        ("theta", "<f8"),  # per year
        ("rho", "<f8"),  # per 1.00 of rate
        ("option_mid", "<f8"),  # mid of the option's latest quote; NaN without one
        ("implied_vol", "<f8"),  # from option_mid; NaN without a quote or outside bounds
    ]
)

RESULT_CORR = np.dtype(
    _RESULT_COMMON  # ts_ns: newest input; in_seq: samples so far; symbol: first of the pair
    + [
        ("symbol_b", "<u4"),  # second symbol of the pair (i <= j in configured order)
        ("n_rows", "<u4"),  # returns in the window
        ("backend", "u1"),  # BACKEND_CODES
        ("flags", "u1"),  # RESULT_FLAG_*
        ("_pad", "<u2"),
        ("n_symbols", "<u4"),  # symbols in the matrix
        ("covariance", "<f8"),  # of log returns per sample interval
        ("correlation", "<f8"),  # NaN when either symbol has zero variance
    ]
)

# kind -> record dtype, for every kind that may appear in a frame.
RECORD_DTYPES: dict[int, np.dtype] = {
    KIND_TRADE: TRADE,
    KIND_QUOTE: QUOTE,
    KIND_ORDER: ORDER,
    KIND_RESULT_QUOTE: RESULT_QUOTE,
    KIND_RESULT_TRADE: RESULT_TRADE,
    KIND_RESULT_BAR: RESULT_BAR,
    KIND_RESULT_BOOK: RESULT_BOOK,
    KIND_RESULT_FPGA: RESULT_FPGA,
    KIND_RESULT_CHAIN: RESULT_CHAIN,
    KIND_RESULT_CORR: RESULT_CORR,
}
INPUT_KINDS = (KIND_TRADE, KIND_QUOTE, KIND_ORDER)

# Result analytic names, used in topics ("<analytic>.<symbol>") and stats.
ANALYTIC_OF_KIND = {
    KIND_RESULT_QUOTE: "quote",
    KIND_RESULT_TRADE: "trade",
    KIND_RESULT_BAR: "bar",
    KIND_RESULT_BOOK: "book",
    KIND_RESULT_FPGA: "fpga",
    KIND_RESULT_CHAIN: "chain",
    KIND_RESULT_CORR: "corr",
}
KIND_OF_ANALYTIC = {name: kind for kind, name in ANALYTIC_OF_KIND.items()}

# Record sizes as plain ints, for numba code (dtype.itemsize is not a constant there).
HEADER_SIZE = HEADER.itemsize
HEADER_V2_SIZE = HEADER_V2.itemsize
TRADE_SIZE = TRADE.itemsize
QUOTE_SIZE = QUOTE.itemsize
ORDER_SIZE = ORDER.itemsize
RESULT_QUOTE_SIZE = RESULT_QUOTE.itemsize
RESULT_TRADE_SIZE = RESULT_TRADE.itemsize
RESULT_BAR_SIZE = RESULT_BAR.itemsize
RESULT_BOOK_SIZE = RESULT_BOOK.itemsize
RESULT_FPGA_SIZE = RESULT_FPGA.itemsize
RESULT_CHAIN_SIZE = RESULT_CHAIN.itemsize
RESULT_CORR_SIZE = RESULT_CORR.itemsize


def field_offsets(dtype: np.dtype) -> dict[str, tuple[int, int]]:
    """Return ``{field: (byte offset, byte width)}`` of a record dtype.

    The FPGA tools use this to generate (or check) the RTL's field offsets.
    """
    return {name: (off, dt.itemsize) for name, (dt, off, *_) in dtype.fields.items()}


def _check_layout() -> None:
    # The wire layout is a contract: these sizes are documented in the README.
    expected = {HEADER: 32, HEADER_V2: 40, TRADE: 40, QUOTE: 48, ORDER: 40}
    for dtype, size in expected.items():
        assert dtype.itemsize == size, (dtype, dtype.itemsize)
        assert dtype.itemsize % 8 == 0
    for dtype in RECORD_DTYPES.values():
        assert dtype.itemsize % 8 == 0, dtype


_check_layout()

# ---------------------------------------------------------------------------
# Reasons a frame or a record is rejected.  Codes index the ``rejected``
# counters of the ingest stage; names appear in the ``stats`` message.
# Frame-level reasons reject the whole frame; record-level reasons reject one
# record while the valid records of the same frame are processed.
# ---------------------------------------------------------------------------
REJECT_SHORT = 0  # shorter than a header
REJECT_OVERSIZE = 1  # larger than the configured max_frame_bytes
REJECT_BAD_MAGIC = 2
REJECT_BAD_VERSION = 3
REJECT_BAD_KIND = 4  # not an input kind
REJECT_BAD_COUNT = 5  # count == 0 or count > max records per frame
REJECT_BAD_LENGTH = 6  # payload length != count * record size
REJECT_UNKNOWN_STREAM = 7  # stream_id >= configured max_streams
REJECT_DUPLICATE = 8  # every record's sequence was already seen
REJECT_OUT_OF_ORDER = 9  # starts before the next expected sequence, but not a duplicate
REJECT_BAD_PRICE = 10  # record: NULL (NaN cast), negative, or zero where a price is required
REJECT_BAD_SIZE = 11  # record: NULL, negative, or zero where a size is required
REJECT_UNKNOWN_SYMBOL = 12  # record: symbol >= configured n_symbols
REJECT_BAD_ACTION = 13  # record: order action or side outside the enumeration
REJECT_BAD_TIMESTAMP = 14  # record: ts_ns < 0 (NULL included) or beyond recv + max_clock_skew
REJECT_MULTIPART = 15  # a multipart ZeroMQ message (tickpath frames are single-part)
REJECT_BAD_SEQUENCE = 16  # seq + count does not fit in 63 bits
REJECT_FOREIGN_SESSION = 17  # another session holds the stream and has not been silent long enough
REJECT_BAD_JUMP = 18  # a forward jump of more than ingest.max_gap records (not taken as a gap)
REJECT_BAD_SESSION = 19  # a version 2 header with session id 0
REJECT_FOREIGN_SHARD = 20  # record: its symbol belongs to another replica's shard

REJECT_NAMES = (
    "short",
    "oversize",
    "bad_magic",
    "bad_version",
    "bad_kind",
    "bad_count",
    "bad_length",
    "unknown_stream",
    "duplicate",
    "out_of_order",
    "bad_price",
    "bad_size",
    "unknown_symbol",
    "bad_action",
    "bad_timestamp",
    "multipart",
    "bad_sequence",
    "foreign_session",
    "bad_jump",
    "bad_session",
    "foreign_shard",
)
N_REJECT = len(REJECT_NAMES)
RECORD_REJECTS = (
    REJECT_BAD_PRICE,
    REJECT_BAD_SIZE,
    REJECT_UNKNOWN_SYMBOL,
    REJECT_BAD_ACTION,
    REJECT_BAD_TIMESTAMP,
    REJECT_FOREIGN_SHARD,
)
FRAME_REJECTS = tuple(r for r in range(N_REJECT) if r not in RECORD_REJECTS)
