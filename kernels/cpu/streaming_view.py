"""A typed view of the streaming kernels' state: the one place besides the kernels
that knows its column layout.

The frame kernels keep their state in plain numpy columns
(:mod:`tickpath.kernels.cpu.streaming` defines them): the counters (``C_*``, after the
reject reasons), the streams table (``S_*``), each symbol's state (``I_*``, ``F_*``).
Code outside the kernels reads that state here, by name:

* :class:`CounterView`: the counters as a :class:`Counters` record (the ``stats``
  message, the fuzz oracle), a counter's column by its flat name (:data:`COUNTER_FIELDS`)
  for a loop that reads one or a few of them per frame, and the counts the engine
  makes itself for a message it refused before the kernels (:meth:`CounterView.count_refused`);
* :class:`StreamTable`: one :class:`StreamRow` per stream (``stats``, the fuzz oracle's
  resync), and the one write a snapshot comparison needs
  (:meth:`StreamTable.clear_arrival_times`);
* :class:`SymbolView`: a symbol's prices and provenance (the milli path, the correlation
  sampler).

Analytic indices (``k.A_QUOTE``...) and names are the kernels' API, not part of the layout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import NamedTuple

import numpy as np

from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu import streaming as k

_U64 = (1 << 64) - 1

# The counters' columns by flat name: the ``stats`` message's keys, nested ones dotted.
# The reject reasons come first, at their wire codes (``s.REJECT_*``).
_SCALARS = {
    "frames_received": k.C_FRAMES,
    "frames_accepted": k.C_FRAMES_ACCEPTED,
    "records_received": k.C_RECORDS,
    "records_accepted": k.C_RECORDS_ACCEPTED,
    "bytes_received": k.C_BYTES,
    "gaps": k.C_GAPS,
    "records_lost": k.C_LOST,
    "sequence_resets": k.C_RESETS,
    "session_takeovers": k.C_TAKEOVERS,
    "session_ends": k.C_SESSION_ENDS,
    "results_published": k.C_RESULTS,
    "vwap_window_truncated": k.C_WINDOW_TRUNCATED,
}
_PROCESSED = {"quote": k.C_PROC_QUOTE, "trade": k.C_PROC_TRADE, "bar": k.C_PROC_BAR,
              "book": k.C_PROC_BOOK}  # fmt: skip
_BOOK = {
    "duplicate_id": k.C_BOOK_DUPLICATE_ID,
    "unknown_order": k.C_BOOK_UNKNOWN_ORDER,
    "overfill": k.C_BOOK_OVERFILL,
    "level_overflow": k.C_BOOK_LEVEL_OVERFLOW,
    "table_full": k.C_BOOK_TABLE_FULL,
}
_COLUMNS: dict[str, int] = {
    **{f"rejected.{name}": code for code, name in enumerate(s.REJECT_NAMES)},
    **_SCALARS,
    **{f"processed.{name}": i for name, i in _PROCESSED.items()},
    **{f"book.{name}": i for name, i in _BOOK.items()},
}
COUNTER_FIELDS: tuple[str, ...] = tuple(_COLUMNS)
"""Every counter's flat name: ``frames_received``..., ``rejected.<reason>``,
``processed.<analytic>``, ``book.<code>`` (the ``stats`` keys, nested ones dotted)."""


def counter_index(name: str) -> int:
    """The column of the counter ``name`` (one of :data:`COUNTER_FIELDS`).

    For a component that reads one counter per frame from the array itself (the
    journal writer's frames_accepted); everything else reads :class:`Counters`.
    """
    try:
        return _COLUMNS[name]
    except KeyError:
        raise ValueError(f"no counter named {name!r}") from None


class Counters(NamedTuple):
    """Every counter of the streaming kernels, by name (a snapshot, not a live view).

    The field names are the ``stats`` message's keys (README "The stats message").
    """

    frames_received: int  # accepted or not
    frames_accepted: int
    records_received: int  # records in accepted frames
    records_accepted: int  # records that passed validation
    bytes_received: int
    gaps: int
    records_lost: int
    sequence_resets: int  # a stream restarted at sequence 0
    session_takeovers: int  # a session took a stream over from a silent holder
    session_ends: int  # end-of-session frames accepted
    results_published: int  # result frames emitted
    vwap_window_truncated: int  # a trade left the VWAP window early (ring full)
    frames_rejected: int  # frames refused whole (the frame-level reasons)
    records_rejected: int  # records refused one by one (the record-level reasons)
    rejected: dict[str, int]  # by reason (``s.REJECT_NAMES`` order)
    processed: dict[str, int]  # records processed per analytic (bar: completed bars)
    book: dict[str, int]  # the book's own codes: duplicate_id, unknown_order, ...


# Counters.read() in one pass over the list: the scalars in the record's field order
_GET_SCALARS = itemgetter(*(_SCALARS[name] for name in Counters._fields[: len(_SCALARS)]))
_GET_FRAME_REJECTS = itemgetter(*s.FRAME_REJECTS)
_GET_RECORD_REJECTS = itemgetter(*s.RECORD_REJECTS)
_GET_PROCESSED = itemgetter(*_PROCESSED.values())
_GET_BOOK = itemgetter(*_BOOK.values())


class CounterView:
    """Named access to ``counters`` (``int64[N_COUNTERS]``), without copying it."""

    __slots__ = ("_counters",)

    def __init__(self, counters: np.ndarray) -> None:
        if counters.shape != (k.N_COUNTERS,):
            raise ValueError(f"counters must have shape ({k.N_COUNTERS},), got {counters.shape}")
        self._counters = counters

    def read(self) -> Counters:
        """Every counter, read in one ``tolist()``."""
        c = self._counters.tolist()
        return Counters(
            *_GET_SCALARS(c),
            sum(_GET_FRAME_REJECTS(c)),
            sum(_GET_RECORD_REJECTS(c)),
            dict(zip(s.REJECT_NAMES, c, strict=False)),  # the reasons come first
            dict(zip(_PROCESSED, _GET_PROCESSED(c), strict=True)),
            dict(zip(_BOOK, _GET_BOOK(c), strict=True)),
        )

    def value(self, name: str) -> int:
        """One counter by its flat name (:data:`COUNTER_FIELDS`)."""
        return int(self._counters[counter_index(name)])

    def reader(self, names: Iterable[str]) -> Callable[[], np.ndarray]:
        """A function that returns the counters ``names`` (flat names) as a new int64 array.

        The columns are looked up once, here: each call is one numpy gather.
        """
        columns = np.array([counter_index(name) for name in names], np.intp)
        counters = self._counters
        return lambda: counters[columns]

    def count_refused(self, nbytes: int) -> None:
        """Count a message refused before the kernels saw it.

        ``nbytes < 0``: a multipart message; else an oversize frame of ``nbytes``
        (its bytes are counted, as the kernels count a frame's).
        """
        c = self._counters
        c[k.C_FRAMES] += 1
        if nbytes < 0:
            c[s.REJECT_MULTIPART] += 1
        else:
            c[k.C_BYTES] += nbytes
            c[s.REJECT_OVERSIZE] += 1


class StreamRow(NamedTuple):
    """One row of the streams table (a snapshot)."""

    stream: int  # stream id (the row's index)
    next_seq: int  # next expected sequence; -1: no frame accepted yet
    frames: int  # frames accepted
    gaps: int
    records_lost: int
    first_seq: int  # first sequence seen from the holding session (before it: never seen)
    session: int  # the holding session, as u64 (0: version 1 frames, no session)
    prev_session: int  # the holder before the last takeover, as u64 (its frames: duplicates)
    takeovers: int  # times another session took the stream over
    last_ns: int  # recv_ns of the holder's last accepted frame
    ended: bool  # the holder sent its end of session


_ROW_COLUMNS = (k.S_NEXT, k.S_FRAMES, k.S_GAPS, k.S_LOST, k.S_FIRST, k.S_SESSION,
                k.S_PREV_SESSION, k.S_TAKEOVERS, k.S_LAST_NS, k.S_ENDED)  # fmt: skip


class StreamTable:
    """Named access to ``streams`` (``int64[max_streams, S_COLS]``), without copying it."""

    __slots__ = ("_streams",)

    def __init__(self, streams: np.ndarray) -> None:
        if streams.ndim != 2 or streams.shape[1] != k.S_COLS:
            raise ValueError(
                f"streams must have shape (max_streams, {k.S_COLS}), got {streams.shape}"
            )
        self._streams = streams

    def __len__(self) -> int:
        return self._streams.shape[0]

    def rows(self, streams: Iterable[int] | None = None) -> list[StreamRow]:
        """The rows of ``streams`` (every stream when None), in that order."""
        table = self._streams
        ids = list(range(table.shape[0])) if streams is None else [int(i) for i in streams]
        if not ids:
            return []
        values = table[np.ix_(ids, _ROW_COLUMNS)].tolist()  # in StreamRow's field order
        return [
            StreamRow(i, nxt, frames, gaps, lost, first, session & _U64, prev & _U64, takeovers,
                      last_ns, bool(ended))
            for i, (nxt, frames, gaps, lost, first, session, prev, takeovers, last_ns, ended)
            in zip(ids, values, strict=True)
        ]  # fmt: skip

    def active(self) -> list[StreamRow]:
        """The rows of the streams that accepted a frame (``next_seq >= 0``), by id."""
        return self.rows(np.flatnonzero(self._streams[:, k.S_NEXT] >= 0).tolist())

    def in_order(self, stream: int, seq: int, session: int) -> bool:
        """Whether a frame at ``seq`` of ``session`` (int64 bits; 0: version 1) continues
        ``stream`` exactly where it stands: the holder's session, the next sequence."""
        if not 0 <= stream < self._streams.shape[0]:
            return False
        row = self._streams[stream]
        return 0 <= seq == row[k.S_NEXT] and row[k.S_SESSION] == session

    def next_seqs(self) -> np.ndarray:
        """Every stream's next expected sequence (-1: no frame accepted yet), as a live view
        of the table (no copy: it follows the kernels' updates)."""
        return self._streams[:, k.S_NEXT]

    def clear_arrival_times(self) -> None:
        """Zero every stream's ``last_ns`` (a time, not a result: snapshots compare without it)."""
        self._streams[:, k.S_LAST_NS] = 0


class Tick(NamedTuple):
    """The newest input of one analytic of a symbol: its price and its provenance."""

    price: float  # quote: the mid (0.0 unless both sides are present); trade: last price
    ts_ns: int  # exchange timestamp
    seq: int  # sequence number of the input record
    send_ns: int  # send_ns of the frame that carried it
    stream: int  # stream id of that frame


class SymbolView:
    """Named access to ``sym_i`` (``int64[n_symbols, I_COLS]``), without copying it.

    Prices come out in price units (ticks / ``PRICE_SCALE``).
    """

    __slots__ = ("_sym_i",)

    def __init__(self, sym_i: np.ndarray) -> None:
        if sym_i.ndim != 2 or sym_i.shape[1] != k.I_COLS:
            raise ValueError(f"sym_i must have shape (n_symbols, {k.I_COLS}), got {sym_i.shape}")
        self._sym_i = sym_i

    def last_price(self, symbols: np.ndarray) -> np.ndarray:
        """Last trade price of each symbol; NaN where it has traded not yet."""
        px = self._sym_i[symbols, k.I_LAST_PX].astype(np.float64)
        return np.where(px > 0, px / s.PRICE_SCALE, np.nan)

    def mid(self, symbols: np.ndarray) -> np.ndarray:
        """Quote mid of each symbol; NaN unless both sides are present."""
        bid = self._sym_i[symbols, k.I_BID_PX]
        ask = self._sym_i[symbols, k.I_ASK_PX]
        mid = (bid + ask) / (2.0 * s.PRICE_SCALE)
        return np.where((bid > 0) & (ask > 0), mid, np.nan)

    def newest_ts(self, symbols: np.ndarray, analytic: int) -> int:
        """Exchange time of the newest input of ``analytic`` (``k.A_QUOTE``...) among them."""
        return int(self._sym_i[symbols, k.I_PROV + 4 * analytic].max())

    def tick(self, symbol: int, analytic: int) -> Tick:
        """The newest quote (``k.A_QUOTE``) or trade (``k.A_TRADE``) of ``symbol``."""
        row = self._sym_i[symbol].tolist()
        if analytic == k.A_QUOTE:  # the same mid as the quote result's
            bid, ask = row[k.I_BID_PX], row[k.I_ASK_PX]
            price = (bid + ask) / (2.0 * s.PRICE_SCALE) if bid > 0 and ask > 0 else 0.0
        else:
            price = row[k.I_LAST_PX] / s.PRICE_SCALE
        base = k.I_PROV + 4 * analytic
        return Tick(price, row[base], row[base + 1], row[base + 3], row[base + 2])
