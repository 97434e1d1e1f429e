"""Replay L3 order events into per-symbol order books: top levels and depth imbalance.

This is the engine's book (``tickpath.kernels.cpu.book``: an open-addressing hash
index of live orders and sorted price levels, in numba, allocation-free per event),
driven from your arrays.  Events are :data:`tickpath.wire.ORDER` records (or the
columns to build them with :func:`orders`):

* ``action``: :data:`~tickpath.wire.ACTION_ADD` (a new resting order: ``order_id``,
  ``side``, ``price``, ``size``), ``ACTION_MODIFY`` (the order now rests at ``price``
  with remaining ``size``), ``ACTION_CANCEL`` (removed whole), ``ACTION_EXECUTE``
  (``size`` lots traded; removed when nothing remains);
* ``side``: +1 bid, -1 ask (read by ADD only; the others use the order's side);
* prices in integer ticks, sizes in integer lots (``tickpath.wire.PRICE_SCALE`` /
  ``SIZE_SCALE`` convert), ``ts_ns`` int64 nanoseconds, ``order_id`` unique among a
  symbol's live orders.

After each event the book of its symbol is snapshotted into a
:data:`tickpath.wire.RESULT_BOOK` record: the best ``TOP_N`` (5) levels per side
(``bid_price``, ``bid_size``, ``bid_orders``, asks alike; 0 where empty), the number
of levels per side and ``depth_imbalance = (bid - ask) / (bid + ask)`` of the size
over those levels (NaN when both are empty).  Deeper levels: :meth:`OrderBooks.levels`.

Events the book cannot apply are not errors but codes, one per event
(:data:`BOOK_CODE_NAMES`): a duplicate ADD or an unknown order id is ignored, an
over-execution removes the order, more than ``max_levels`` levels on a side keeps the
best ``max_levels`` exact, and an ADD beyond ``max_orders`` live orders is refused.
Malformed records (a negative timestamp, an unknown symbol, action or side, a
non-positive price or size where one is required) raise ``ValueError`` naming the
first one: the engine would reject them before its book.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from tickpath.engine.wire import schema as _s
from tickpath.kernels.cpu import book as _bk
from tickpath.kernels.reference.book import BOOK_CODE_NAMES

__all__ = ["BOOK_CODE_NAMES", "BookReplay", "OrderBooks", "orders", "replay"]


class BookReplay(NamedTuple):
    """Per event: the book snapshot after it (RESULT_BOOK) and its event code (int64)."""

    snapshots: np.ndarray
    codes: np.ndarray


def orders(
    ts_ns: npt.ArrayLike,
    symbols: npt.ArrayLike,
    actions: npt.ArrayLike,
    sides: npt.ArrayLike,
    order_ids: npt.ArrayLike,
    prices: npt.ArrayLike,
    sizes: npt.ArrayLike,
) -> np.ndarray:
    """Build an ORDER record array from columns (prices in ticks, sizes in lots)."""
    columns = {
        "ts_ns": ts_ns,
        "symbol": symbols,
        "action": actions,
        "side": sides,
        "order_id": order_ids,
        "price": prices,
        "size": sizes,
    }
    arrays = {name: np.asarray(value) for name, value in columns.items()}
    n = arrays["ts_ns"].shape[0] if arrays["ts_ns"].ndim == 1 else -1
    for name, a in arrays.items():
        if a.shape != (n,) or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(
                f"{name} must be a 1-D integer array of {n} values, got {a.dtype} {a.shape}"
            )
    records = np.zeros(n, _s.ORDER)
    for name, a in arrays.items():
        records[name] = a
    return records


def _check(records: np.ndarray, n_symbols: int) -> None:
    """Raise ValueError naming the first record the engine would reject."""
    action = records["action"].astype(np.int64)
    side = records["side"].astype(np.int64)
    price = records["price"]
    size = records["size"]
    add = action == _s.ACTION_ADD
    problems = [
        (records["ts_ns"] < 0, "ts_ns < 0"),
        (records["symbol"] >= n_symbols, f"symbol >= n_symbols ({n_symbols})"),
        ((action < _s.ACTION_ADD) | (action > _s.ACTION_EXECUTE), "unknown action"),
        (
            (side < -1) | (side > 1) | (add & (side == 0)),
            "side must be +1 or -1 (0 only after ADD)",
        ),
        ((add | (action == _s.ACTION_MODIFY)) & (price <= 0), "price <= 0 in ADD/MODIFY"),
        ((action != _s.ACTION_CANCEL) & (size <= 0), "size <= 0"),
    ]
    for bad, what in problems:
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"order event {i}: {what}: {records[i]}")


class OrderBooks:
    """The L3 books of ``n_symbols`` symbols (``0 .. n_symbols - 1``), fed event arrays.

    Args:
        n_symbols: symbols in the books.
        max_levels: price levels tracked exactly per symbol and side.
        max_orders: live orders, all symbols together (40 bytes each, plus the index).
        reserve_orders: orders the book is ready for without pausing to grow its index.
    """

    def __init__(
        self,
        n_symbols: int,
        *,
        max_levels: int = 64,
        max_orders: int = 1 << 20,
        reserve_orders: int | None = None,
    ) -> None:
        self.n_symbols = int(n_symbols)
        self._state = _bk.new_book_state(self.n_symbols, max_levels, max_orders, reserve_orders)

    def apply(
        self,
        records: np.ndarray,
        *,
        out: np.ndarray | None = None,
        out_codes: np.ndarray | None = None,
    ) -> BookReplay:
        """Apply ORDER ``records`` in order; return a snapshot and a code per event.

        ``out`` (RESULT_BOOK) and ``out_codes`` (int64), of the records' length, are
        written in place when given; of ``out``, only ``symbol``, ``ts_ns`` and the
        book fields are written.
        """
        if not isinstance(records, np.ndarray) or records.dtype != _s.ORDER or records.ndim != 1:
            raise TypeError("records must be a 1-D tickpath.wire.ORDER array (see orders())")
        n = records.shape[0]
        _check(records, self.n_symbols)
        if out is None:
            out = np.zeros(n, _s.RESULT_BOOK)
        elif out.dtype != _s.RESULT_BOOK or out.shape != (n,):
            raise ValueError(f"out must be a RESULT_BOOK array of shape ({n},)")
        if out_codes is None:
            out_codes = np.zeros(n, np.int64)
        elif out_codes.dtype != np.int64 or out_codes.shape != (n,):
            raise ValueError(f"out_codes must be an int64 array of shape ({n},)")
        _bk.book_replay(self._state, np.ascontiguousarray(records), out_codes, out)
        return BookReplay(out, out_codes)

    def levels(self, symbol: int, side: int, n: int | None = None) -> list[tuple[int, int, int]]:
        """The best ``n`` (default all tracked) levels of one side, best first, as
        ``(price ticks, total size lots, order count)``; ``side`` +1 bids, -1 asks."""
        if not 0 <= symbol < self.n_symbols or side not in (_s.SIDE_BUY, _s.SIDE_SELL):
            raise ValueError(f"no book side for symbol {symbol}, side {side}")
        rows = _bk.tracked_levels(self._state, symbol, side)
        return rows if n is None else rows[:n]

    def best_bid_ask(self, symbol: int) -> tuple[int, int, int, int]:
        """``(bid price, bid size, ask price, ask size)`` in ticks and lots; 0 where empty."""
        if not 0 <= symbol < self.n_symbols:
            raise ValueError(f"symbol must be in 0..{self.n_symbols - 1}, got {symbol}")
        return tuple(int(v) for v in _bk.best_bid_ask(self._state, symbol))

    def stats(self) -> dict[str, float]:
        """Live orders, index use, probe lengths, overflow work and event counts by code."""
        return _bk.book_stats(self._state)

    def reset(self) -> None:
        """Empty every book."""
        _bk.reset_book(self._state)


def replay(
    records: np.ndarray,
    *,
    n_symbols: int | None = None,
    max_levels: int = 64,
    max_orders: int = 1 << 20,
) -> BookReplay:
    """Replay ORDER ``records`` into fresh books (``n_symbols`` defaults to the largest
    symbol + 1); a snapshot and a code per event.  See :class:`OrderBooks`."""
    if n_symbols is None:
        n_symbols = int(records["symbol"].max()) + 1 if len(records) else 1
    books = OrderBooks(n_symbols, max_levels=max_levels, max_orders=max_orders)
    return books.apply(records)
