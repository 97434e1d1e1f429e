"""The wire format: record and result dtypes, scales, ``encode_frame`` / ``decode_frame``.

A frame is a 32-byte :data:`HEADER` followed by ``count`` records of one kind (all
little-endian).  Prices are int64 ticks (``price = ticks / PRICE_SCALE``), sizes
int64 lots (``size = lots / SIZE_SCALE``), timestamps int64 nanoseconds since the
Unix epoch.  A frame's ``seq`` is the sequence number of its first record; the
next frame of the stream carries ``seq + count``.  The README's "Wire format" and
"Results" sections describe every field.

Inputs: :data:`TRADE` (kind :data:`KIND_TRADE`), :data:`QUOTE`, :data:`ORDER` (L3
events: :data:`ACTION_ADD` / ``MODIFY`` / ``CANCEL`` / ``EXECUTE``).  Results the
engine publishes: :data:`RESULT_QUOTE`, :data:`RESULT_TRADE`, :data:`RESULT_BAR`,
:data:`RESULT_BOOK`, :data:`RESULT_CHAIN`, :data:`RESULT_CORR`,
:data:`RESULT_FPGA`; :data:`RECORD_DTYPES` maps each kind to its dtype.
"""

from __future__ import annotations

from tickpath.engine.wire.codec import FrameError, decode_frame, decode_header, encode_frame
from tickpath.engine.wire.schema import (
    ACTION_ADD,
    ACTION_CANCEL,
    ACTION_EXECUTE,
    ACTION_MODIFY,
    ANALYTIC_OF_KIND,
    HEADER,
    KIND_OF_ANALYTIC,
    KIND_ORDER,
    KIND_QUOTE,
    KIND_RESULT_BAR,
    KIND_RESULT_BOOK,
    KIND_RESULT_CHAIN,
    KIND_RESULT_CORR,
    KIND_RESULT_FPGA,
    KIND_RESULT_QUOTE,
    KIND_RESULT_TRADE,
    KIND_TRADE,
    N_EMA,
    ORDER,
    PRICE_SCALE,
    QUOTE,
    RECORD_DTYPES,
    RESULT_BAR,
    RESULT_BOOK,
    RESULT_CHAIN,
    RESULT_CORR,
    RESULT_FPGA,
    RESULT_QUOTE,
    RESULT_TRADE,
    SIDE_BUY,
    SIDE_SELL,
    SIDE_UNKNOWN,
    SIZE_SCALE,
    TOP_N,
    TRADE,
)

__all__ = [
    "ACTION_ADD",
    "ACTION_CANCEL",
    "ACTION_EXECUTE",
    "ACTION_MODIFY",
    "ANALYTIC_OF_KIND",
    "HEADER",
    "KIND_OF_ANALYTIC",
    "KIND_ORDER",
    "KIND_QUOTE",
    "KIND_RESULT_BAR",
    "KIND_RESULT_BOOK",
    "KIND_RESULT_CHAIN",
    "KIND_RESULT_CORR",
    "KIND_RESULT_FPGA",
    "KIND_RESULT_QUOTE",
    "KIND_RESULT_TRADE",
    "KIND_TRADE",
    "N_EMA",
    "ORDER",
    "PRICE_SCALE",
    "QUOTE",
    "RECORD_DTYPES",
    "RESULT_BAR",
    "RESULT_BOOK",
    "RESULT_CHAIN",
    "RESULT_CORR",
    "RESULT_FPGA",
    "RESULT_QUOTE",
    "RESULT_TRADE",
    "SIDE_BUY",
    "SIDE_SELL",
    "SIDE_UNKNOWN",
    "SIZE_SCALE",
    "TOP_N",
    "TRADE",
    "FrameError",
    "decode_frame",
    "decode_header",
    "encode_frame",
]
