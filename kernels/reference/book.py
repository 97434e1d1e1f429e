"""The meaning of tickpath's per-symbol L3 order book, in plain Python.

This is the oracle for :mod:`tickpath.kernels.cpu.book`: it is written for clarity, not
speed.  It keeps a dict of live orders per symbol and, per side, every price
level's total size and order count in a dict with the level prices in a sorted
list (so a replay of a real capture with thousands of levels takes seconds, not
hours); :meth:`ReferenceBook.levels_recomputed` rebuilds the levels from the
orders alone, and the tests check that both always agree.

Semantics (shared with the numba book, which must agree event for event):

* ``ADD`` of an id that is live for that symbol is ignored: ``BOOK_DUPLICATE_ID``.
  An ``ADD`` when ``max_orders`` orders are live (all symbols together) is
  refused: ``BOOK_TABLE_FULL``.
* ``MODIFY``, ``CANCEL`` and ``EXECUTE`` of an id that is not live are ignored:
  ``BOOK_UNKNOWN_ORDER``.  They use the side stored with the order; the side
  of the record is not read.
* ``MODIFY``: the order now rests at ``price`` with remaining ``size``.
* ``CANCEL``: the whole order is removed (price and size are not read).
* ``EXECUTE``: remaining size is reduced by ``size``; the order is removed when
  nothing remains.  Executing more than remains removes the order and returns
  ``BOOK_OVERFILL``.
* Level overflow: a book keeps exact aggregates for the best ``max_levels``
  price levels per side.  An ``ADD`` or a price-changing ``MODIFY`` returns
  ``BOOK_LEVEL_OVERFLOW`` (the order is still applied) when, after it, the side
  has more than ``max_levels`` levels and either the order rests beyond the
  best ``max_levels`` levels or its price is a level that did not exist before
  (so a tracked level was pushed out).  ``bid_levels``/``ask_levels`` report
  ``min(levels, max_levels)``.
"""

from __future__ import annotations

import bisect
import math

from tickpath.engine.wire.schema import (
    ACTION_ADD,
    ACTION_CANCEL,
    ACTION_EXECUTE,
    ACTION_MODIFY,
    SIDE_BUY,
    SIDE_SELL,
    TOP_N,
)

# Event codes returned by ``apply`` (and by the numba ``book_apply``).
BOOK_OK = 0
BOOK_DUPLICATE_ID = 1  # ADD of a live id: ignored
BOOK_UNKNOWN_ORDER = 2  # MODIFY/CANCEL/EXECUTE of an id that is not live: ignored
BOOK_OVERFILL = 3  # EXECUTE larger than the remaining size: order removed
BOOK_LEVEL_OVERFLOW = 4  # order applied, but the side has more than max_levels levels
BOOK_TABLE_FULL = 5  # ADD refused: max_orders orders are live
N_BOOK_CODES = 6
BOOK_CODE_NAMES = (
    "ok",
    "duplicate_id",
    "unknown_order",
    "overfill",
    "level_overflow",
    "table_full",
)


class ReferenceBook:
    """Dict-based L3 books for ``n_symbols`` symbols.

    ``orders[symbol]`` maps ``order_id -> [side, price, remaining]``.
    """

    def __init__(self, n_symbols: int, max_levels: int = 64, max_orders: int = 1 << 20) -> None:
        if n_symbols < 1 or max_levels < 1 or max_orders < 1:
            raise ValueError("n_symbols, max_levels and max_orders must be >= 1")
        self.n_symbols = n_symbols
        self.max_levels = max_levels
        self.max_orders = max_orders
        self.orders: list[dict[int, list[int]]] = [{} for _ in range(n_symbols)]
        self.live = 0
        # per symbol and side (SIDE_BUY, SIDE_SELL): price -> [total size, order count],
        # and the sorted keys (-price for bids, price for asks: best first)
        self._agg: list[dict[int, dict[int, list[int]]]] = [
            {SIDE_BUY: {}, SIDE_SELL: {}} for _ in range(n_symbols)
        ]
        self._keys: list[dict[int, list[int]]] = [
            {SIDE_BUY: [], SIDE_SELL: []} for _ in range(n_symbols)
        ]

    @staticmethod
    def _key(side: int, price: int) -> int:
        return -price if side == SIDE_BUY else price

    def _level_add(self, symbol: int, side: int, price: int, size: int) -> None:
        level = self._agg[symbol][side].get(price)
        if level is None:
            self._agg[symbol][side][price] = [size, 1]
            bisect.insort(self._keys[symbol][side], self._key(side, price))
        else:
            level[0] += size
            level[1] += 1

    def _level_remove(self, symbol: int, side: int, price: int, size: int) -> None:
        level = self._agg[symbol][side][price]
        level[0] -= size
        level[1] -= 1
        if level[1] == 0:
            del self._agg[symbol][side][price]
            keys = self._keys[symbol][side]
            del keys[bisect.bisect_left(keys, self._key(side, price))]

    def levels(
        self, symbol: int, side: int, limit: int | None = None
    ) -> list[tuple[int, int, int]]:
        """The levels of one side as ``(price, total size, order count)``, best first
        (the best ``limit`` of them if given)."""
        agg = self._agg[symbol][side]
        sign = -1 if side == SIDE_BUY else 1
        keys = self._keys[symbol][side] if limit is None else self._keys[symbol][side][:limit]
        return [(sign * k, *agg[sign * k]) for k in keys]

    def levels_recomputed(self, symbol: int, side: int) -> list[tuple[int, int, int]]:
        """:meth:`levels`, recomputed from the live orders alone (for the tests)."""
        agg: dict[int, list[int]] = {}
        for s, price, remaining in self.orders[symbol].values():
            if s == side:
                level = agg.setdefault(price, [0, 0])
                level[0] += remaining
                level[1] += 1
        prices = sorted(agg, reverse=(side == SIDE_BUY))
        return [(p, agg[p][0], agg[p][1]) for p in prices]

    def _overflow_code(self, symbol: int, side: int, price: int, was_level: bool) -> int:
        keys = self._keys[symbol][side]
        if len(keys) <= self.max_levels:
            return BOOK_OK
        rank = bisect.bisect_left(keys, self._key(side, price))  # levels better than price
        if rank >= self.max_levels or not was_level:
            return BOOK_LEVEL_OVERFLOW
        return BOOK_OK

    def _is_level(self, symbol: int, side: int, price: int) -> bool:
        return price in self._agg[symbol][side]

    def apply(
        self, symbol: int, action: int, side: int, order_id: int, price: int, size: int
    ) -> int:
        """Apply one ORDER event; return its event code (``BOOK_*``)."""
        book = self.orders[symbol]
        order = book.get(order_id)
        if action == ACTION_ADD:
            if order is not None:
                return BOOK_DUPLICATE_ID
            if self.live >= self.max_orders:
                return BOOK_TABLE_FULL
            if side not in (SIDE_BUY, SIDE_SELL):
                raise ValueError(f"ADD with side {side}")
            was_level = self._is_level(symbol, side, price)
            book[order_id] = [side, price, size]
            self._level_add(symbol, side, price, size)
            self.live += 1
            return self._overflow_code(symbol, side, price, was_level)
        if order is None:
            return BOOK_UNKNOWN_ORDER
        stored_side, old_price, remaining = order
        if action == ACTION_CANCEL:
            del book[order_id]
            self._level_remove(symbol, stored_side, old_price, remaining)
            self.live -= 1
            return BOOK_OK
        if action == ACTION_EXECUTE:
            if size >= remaining:
                del book[order_id]
                self._level_remove(symbol, stored_side, old_price, remaining)
                self.live -= 1
                return BOOK_OVERFILL if size > remaining else BOOK_OK
            order[2] = remaining - size
            self._agg[symbol][stored_side][old_price][0] -= size
            return BOOK_OK
        if action == ACTION_MODIFY:
            if price == old_price:
                order[2] = size
                self._agg[symbol][stored_side][old_price][0] += size - remaining
                return BOOK_OK
            del book[order_id]
            self._level_remove(symbol, stored_side, old_price, remaining)
            was_level = self._is_level(symbol, stored_side, price)
            book[order_id] = [stored_side, price, size]
            self._level_add(symbol, stored_side, price, size)
            return self._overflow_code(symbol, stored_side, price, was_level)
        raise ValueError(f"unknown action {action}")

    def snapshot(self, symbol: int) -> dict[str, object]:
        """The book fields of a RESULT_BOOK record for ``symbol``.

        Lists of ``TOP_N`` entries (0 where a level is empty), level counts
        capped at ``max_levels``, and ``depth_imbalance`` over the ``TOP_N``
        levels (NaN when both sides are empty).  A book configured with
        ``max_levels < TOP_N`` shows only its ``max_levels`` best levels.
        """
        snap: dict[str, object] = {}
        totals = {}
        for name, side in (("bid", SIDE_BUY), ("ask", SIDE_SELL)):
            top = self.levels(symbol, side, min(TOP_N, self.max_levels))
            top += [(0, 0, 0)] * (TOP_N - len(top))
            snap[f"{name}_price"] = [p for p, _, _ in top]
            snap[f"{name}_size"] = [s for _, s, _ in top]
            snap[f"{name}_orders"] = [n for _, _, n in top]
            snap[f"{name}_levels"] = min(len(self._keys[symbol][side]), self.max_levels)
            totals[name] = sum(s for _, s, _ in top)
        depth = totals["bid"] + totals["ask"]
        snap["depth_imbalance"] = (
            math.nan if depth == 0 else float(totals["bid"] - totals["ask"]) / float(depth)
        )
        return snap

    def best_bid_ask(self, symbol: int) -> tuple[int, int, int, int]:
        """``(bid_price, bid_size, ask_price, ask_size)``; 0 where a side is empty."""
        bids = self.levels(symbol, SIDE_BUY, 1)
        asks = self.levels(symbol, SIDE_SELL, 1)
        bid = bids[0][:2] if bids else (0, 0)
        ask = asks[0][:2] if asks else (0, 0)
        return (bid[0], bid[1], ask[0], ask[1])
