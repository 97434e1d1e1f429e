"""Shared helpers for the feed tests: an independent dict-based L3 book checker."""

from __future__ import annotations

import numpy as np
import pytest

from tickpath.engine.wire import schema as s


class BookViolation(AssertionError):
    pass


def replay_l3(orders: np.ndarray, *, check_crossed: bool = True) -> dict[int, list[int]]:
    """Apply ORDER records to a plain dict book; raise BookViolation on any inconsistency.

    Returns the live orders left: ``{order_id: [symbol, side, price, size]}``.
    """
    live: dict[int, list[int]] = {}
    ever: set[int] = set()
    # (symbol, side) -> {price: total size}
    levels: dict[tuple[int, int], dict[int, int]] = {}

    def level_add(sym, side, price, size):
        lv = levels.setdefault((sym, side), {})
        lv[price] = lv.get(price, 0) + size
        if lv[price] == 0:
            del lv[price]

    for i, rec in enumerate(orders.tolist()):
        ts, sym, action, side, _pad, oid, price, size = rec
        where = f"record {i} (id {oid}, action {action})"
        if side not in (s.SIDE_BUY, s.SIDE_SELL):
            raise BookViolation(f"{where}: bad side {side}")
        if action == s.ACTION_ADD:
            if oid in ever:
                raise BookViolation(f"{where}: order id reused")
            if price <= 0 or size <= 0:
                raise BookViolation(f"{where}: ADD with price {price} size {size}")
            ever.add(oid)
            live[oid] = [sym, side, price, size]
            level_add(sym, side, price, size)
        elif action in (s.ACTION_MODIFY, s.ACTION_CANCEL, s.ACTION_EXECUTE):
            if oid not in live:
                raise BookViolation(f"{where}: refers to an order not live")
            osym, oside, oprice, osize = live[oid]
            if (osym, oside) != (sym, side):
                raise BookViolation(f"{where}: symbol/side {sym}/{side} != {osym}/{oside}")
            level_add(sym, side, oprice, -osize)
            if action == s.ACTION_MODIFY:
                if price <= 0 or size <= 0:
                    raise BookViolation(f"{where}: MODIFY to price {price} size {size}")
                live[oid] = [sym, side, price, size]
                level_add(sym, side, price, size)
            elif action == s.ACTION_CANCEL:
                del live[oid]
            else:
                if size <= 0 or size > osize:
                    raise BookViolation(f"{where}: EXECUTE {size} of remaining {osize}")
                if price != oprice:
                    raise BookViolation(f"{where}: EXECUTE at {price}, order rests at {oprice}")
                if size == osize:
                    del live[oid]
                else:
                    live[oid][3] = osize - size
                    level_add(sym, side, oprice, osize - size)
        else:
            raise BookViolation(f"{where}: unknown action")
        if check_crossed:
            bids = levels.get((sym, s.SIDE_BUY))
            asks = levels.get((sym, s.SIDE_SELL))
            if bids and asks and max(bids) >= min(asks):
                raise BookViolation(f"{where}: book crossed {max(bids)} >= {min(asks)}")
    for oid, (_, _, _, size) in live.items():
        if size <= 0:
            raise BookViolation(f"order {oid} left with size {size}")
    return live


@pytest.fixture
def l3_replay():
    return replay_l3
