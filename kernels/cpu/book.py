"""Per-symbol L3 order book in numba: the streaming core's book.

State is a :class:`BookState`, a NamedTuple of preallocated numpy arrays, so
every function here is an ``@njit(cache=True, nogil=True)`` function of plain
arrays and the frame kernel can call :func:`book_apply` once per ORDER record
inside its own njit call.

Layout
------
Price levels, per symbol and side (side index 0 = bids, 1 = asks), are kept
sorted best first in ``level_key``/``level_size``/``level_orders`` with
``level_count`` levels in use.  The key is side-normalised so that one
ascending binary search serves both sides: ``key = -price`` for bids and
``key = price`` for asks.  A new level is inserted by binary search + shift.

Orders live in ``table``, an open-addressing hash map with linear probing
keyed by ``(symbol, order_id)``.  Its capacity is a power of two
``>= 2 * max_orders`` and at most ``max_orders`` orders are live, so the load
factor never exceeds 1/2.  Deletion is by backward shift (no tombstones): the
entries after a freed slot that may move closer to their home slot do, so the
table after any history of adds and cancels is exactly as if only its live
orders had been inserted, and probe lengths cannot degrade under churn.
Each row is one 64-byte cache line of eight int64: order id, symbol (-1 when
the slot is empty), side, price, remaining size, next and previous slot of
the order in its (symbol, side) list, and the home slot.

Level overflow policy
---------------------
The level arrays track the best ``max_levels`` levels of a side exactly; the
orders of worse levels stay in the order table ("untracked", counted in
``untracked``).  Invariant: the tracked levels are always exactly the best
``min(levels, max_levels)`` levels of the side.  A new level better than the
worst tracked one on a full side evicts the worst level (its orders become
untracked); when a tracked level empties while untracked orders exist, the
best untracked level is rebuilt from the side's order list (a walk over that
symbol-side's orders only, not over the table).  So the TOP_N snapshot is
exact at all times, overflow or not; ``bid_levels``/``ask_levels`` report
``min(levels, max_levels)``; only the cost changes in overflow (one walk of
the side's orders per tracked level that empties).  ``BOOK_LEVEL_OVERFLOW`` is
returned by an ADD or a price-changing MODIFY after which the order rests
beyond the tracked levels, or which evicted a tracked level.

Performance notes
-----------------
The kernels are compiled with numba's ``_nrt=False`` option (they allocate
nothing): without it every read of an array out of the NamedTuple, and every
call passing arrays, costs an atomic NRT incref/decref pair, which doubled the
cost of an event.  Helpers take the arrays as separate arguments.  Order
tables of 2 MiB or more are mmapped with ``MADV_HUGEPAGE`` (half the cost of
an event on a 2**20-order table came from TLB misses).
"""

from __future__ import annotations

import mmap
from typing import NamedTuple

import numba
import numpy as np

from engine.wire.schema import (
    ACTION_ADD,
    ACTION_CANCEL,
    ACTION_EXECUTE,
    ACTION_MODIFY,
    ORDER,
    RESULT_BOOK,
    SIDE_BUY,
    SIDE_SELL,
    TOP_N,
)
from kernels.reference.book import (
    BOOK_CODE_NAMES,
    BOOK_DUPLICATE_ID,
    BOOK_LEVEL_OVERFLOW,
    BOOK_OK,
    BOOK_OVERFILL,
    BOOK_TABLE_FULL,
    BOOK_UNKNOWN_ORDER,
    N_BOOK_CODES,
)

__all__ = [
    "BOOK_CODE_NAMES",
    "BOOK_DUPLICATE_ID",
    "BOOK_LEVEL_OVERFLOW",
    "BOOK_OK",
    "BOOK_OVERFILL",
    "BOOK_TABLE_FULL",
    "BOOK_UNKNOWN_ORDER",
    "N_BOOK_CODES",
    "BookState",
    "new_book_state",
    "reset_book",
    "book_apply",
    "book_apply_batch",
    "book_replay",
    "book_fill_top",
    "best_bid_ask",
    "book_stats",
    "warm_up",
]

# Columns of a row of ``BookState.table``.
T_ID = 0  # order id (u64 bits stored as i64)
T_SYMBOL = 1  # symbol, EMPTY when the slot is free
T_SIDE = 2  # SIDE_BUY or SIDE_SELL
T_PRICE = 3
T_SIZE = 4  # remaining lots
T_NEXT = 5  # next slot in the (symbol, side) order list, NIL at the end
T_PREV = 6  # previous slot, NIL at the head
T_HOME = 7  # home slot of the key (hash & mask)
T_WIDTH = 8  # 8 x int64 = one 64-byte cache line
EMPTY = -1
NIL = -1

# Indices of ``BookState.counters``.
C_LIVE = 0  # live orders, all symbols
C_MAX_ORDERS = 1  # configured max_orders (an ADD is refused beyond it)
C_LOOKUPS = 2  # hash lookups
C_PROBES = 3  # slots examined by those lookups (>= lookups)
C_MAX_PROBE = 4  # longest lookup, in slots examined
C_EVICTIONS = 5  # tracked levels pushed out by a better new level
C_REFILLS = 6  # levels rebuilt from the untracked orders
C_EVENTS = 7  # C_EVENTS + code: events returned with that code
N_COUNTERS = C_EVENTS + N_BOOK_CODES

_HASH_SYMBOL = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_INT64_MAX = np.iinfo(np.int64).max
_HUGE_PAGE = 2 << 20


class BookState(NamedTuple):
    """All state of the L3 books of ``n_symbols`` symbols: preallocated arrays only.

    Attributes:
        level_key: int64 ``[n_symbols, 2, max_levels]``, side-normalised price
            (``-price`` for bids, ``price`` for asks), ascending = best first.
        level_size: int64 ``[n_symbols, 2, max_levels]``, total remaining lots.
        level_orders: int64 ``[n_symbols, 2, max_levels]``, orders at the level.
        level_count: int64 ``[n_symbols, 2]``, tracked levels in use.
        untracked: int64 ``[n_symbols, 2]``, live orders beyond the tracked levels.
        side_head: int64 ``[n_symbols, 2]``, first table slot of the side's order list.
        table: int64 ``[capacity, 8]``, the order hash map (see the module doc).
        counters: int64 ``[N_COUNTERS]``, live orders, limits and statistics.
    """

    level_key: np.ndarray
    level_size: np.ndarray
    level_orders: np.ndarray
    level_count: np.ndarray
    untracked: np.ndarray
    side_head: np.ndarray
    table: np.ndarray
    counters: np.ndarray


def _table_capacity(max_orders: int) -> int:
    capacity = 1
    while capacity < 2 * max_orders:
        capacity *= 2
    return capacity


def _aligned_table(capacity: int) -> np.ndarray:
    """A C-contiguous ``[capacity, 8]`` int64 array whose rows start on 64-byte lines.

    Tables of 2 MiB or more are anonymous mmaps advised to use transparent huge
    pages: lookups are random over the whole table, and with 4 KiB pages
    nearly every one would also miss the TLB.
    """
    nbytes = capacity * T_WIDTH * 8
    if nbytes >= _HUGE_PAGE and hasattr(mmap, "MADV_HUGEPAGE"):
        memory = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        try:
            memory.madvise(mmap.MADV_HUGEPAGE)
        except OSError:
            pass  # THP disabled: ordinary pages, same layout
        return np.frombuffer(memory, dtype=np.int64).reshape(capacity, T_WIDTH)
    raw = np.empty(capacity * T_WIDTH + T_WIDTH, dtype=np.int64)
    skip = (-raw.ctypes.data % 64) // 8
    return raw[skip : skip + capacity * T_WIDTH].reshape(capacity, T_WIDTH)


def new_book_state(n_symbols: int, max_levels: int = 64, max_orders: int = 1 << 20) -> BookState:
    """Allocate empty books for ``n_symbols`` symbols.

    Args:
        n_symbols: symbols are ``0 .. n_symbols - 1``.
        max_levels: price levels tracked exactly per symbol and side (>= TOP_N
            recommended; fewer still works, the snapshot then shows fewer levels).
        max_orders: live orders, all symbols together; the order table has
            the next power of two >= ``2 * max_orders`` slots (64 B each).
    """
    if n_symbols < 1:
        raise ValueError("n_symbols must be >= 1")
    if max_levels < 1:
        raise ValueError("max_levels must be >= 1")
    if max_orders < 1:
        raise ValueError("max_orders must be >= 1")
    shape = (n_symbols, 2, max_levels)
    state = BookState(
        level_key=np.empty(shape, dtype=np.int64),
        level_size=np.empty(shape, dtype=np.int64),
        level_orders=np.empty(shape, dtype=np.int64),
        level_count=np.empty((n_symbols, 2), dtype=np.int64),
        untracked=np.empty((n_symbols, 2), dtype=np.int64),
        side_head=np.empty((n_symbols, 2), dtype=np.int64),
        table=_aligned_table(_table_capacity(max_orders)),
        counters=np.empty(N_COUNTERS, dtype=np.int64),
    )
    reset_book(state)
    state.counters[C_MAX_ORDERS] = max_orders
    return state


def reset_book(state: BookState) -> None:
    """Empty every book and zero the statistics (keeps the configured limits)."""
    state.level_key.fill(0)
    state.level_size.fill(0)
    state.level_orders.fill(0)
    state.level_count.fill(0)
    state.untracked.fill(0)
    state.side_head.fill(NIL)
    state.table.fill(0)
    state.table[:, T_SYMBOL] = EMPTY
    max_orders = state.counters[C_MAX_ORDERS]
    state.counters.fill(0)
    state.counters[C_MAX_ORDERS] = max_orders


def book_stats(state: BookState) -> dict[str, float]:
    """Statistics of the books: live orders, probe lengths, overflow work, event counts."""
    c = state.counters
    lookups = int(c[C_LOOKUPS])
    stats: dict[str, float] = {
        "live_orders": int(c[C_LIVE]),
        "max_orders": int(c[C_MAX_ORDERS]),
        "table_capacity": int(state.table.shape[0]),
        "lookups": lookups,
        "mean_probe": float(c[C_PROBES]) / lookups if lookups else 0.0,
        "max_probe": int(c[C_MAX_PROBE]),
        "evictions": int(c[C_EVICTIONS]),
        "refills": int(c[C_REFILLS]),
    }
    for code, name in enumerate(BOOK_CODE_NAMES):
        stats[f"events_{name}"] = int(c[C_EVENTS + code])
    return stats


# ---------------------------------------------------------------------------
# Hash table
#
# The hot helpers take the state's arrays as separate arguments and never bind
# them to new local names: numba then passes them as borrowed references, with
# no NRT reference counting (atomic increments) on the per-event path.
# ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _home_slot(symbol: np.int64, order_id: np.uint64, mask: np.uint64) -> np.int64:
    x = order_id ^ (np.uint64(symbol) * _HASH_SYMBOL)
    x = (x ^ (x >> _S30)) * _MIX1
    x = (x ^ (x >> _S27)) * _MIX2
    x = x ^ (x >> _S31)
    return np.int64(x & mask)


@numba.njit(cache=True, nogil=True, _nrt=False)
def _find_slot(table, counters, symbol, oid, home):  # noqa: ANN001, ANN202
    """Slot holding ``(symbol, oid)``, or the empty slot where it would go."""
    mask = table.shape[0] - 1
    slot = home
    probes = 1
    while True:
        s = table[slot, T_SYMBOL]
        if s == EMPTY or (s == symbol and table[slot, T_ID] == oid):
            break
        slot = (slot + 1) & mask
        probes += 1
    counters[C_LOOKUPS] += 1
    counters[C_PROBES] += probes
    if probes > counters[C_MAX_PROBE]:
        counters[C_MAX_PROBE] = probes
    return slot


@numba.njit(cache=True, nogil=True, inline="always")
def _side_index(side):  # noqa: ANN001, ANN202
    return 0 if side == SIDE_BUY else 1


@numba.njit(cache=True, nogil=True, inline="always")
def _key(side, price):  # noqa: ANN001, ANN202
    return -price if side == SIDE_BUY else price


@numba.njit(cache=True, nogil=True, _nrt=False)
def _link(table, side_head, slot, symbol, sidx):  # noqa: ANN001, ANN202
    head = side_head[symbol, sidx]
    table[slot, T_PREV] = NIL
    table[slot, T_NEXT] = head
    if head != NIL:
        table[head, T_PREV] = slot
    side_head[symbol, sidx] = slot


@numba.njit(cache=True, nogil=True, _nrt=False)
def _unlink(table, side_head, slot, symbol, sidx):  # noqa: ANN001, ANN202
    prev = table[slot, T_PREV]
    nxt = table[slot, T_NEXT]
    if prev == NIL:
        side_head[symbol, sidx] = nxt
    else:
        table[prev, T_NEXT] = nxt
    if nxt != NIL:
        table[nxt, T_PREV] = prev


@numba.njit(cache=True, nogil=True, _nrt=False)
def _delete_slot(table, side_head, slot):  # noqa: ANN001, ANN202
    """Free an (already unlinked) slot by backward-shift deletion: no tombstones."""
    mask = table.shape[0] - 1
    hole = slot
    table[hole, T_SYMBOL] = EMPTY
    j = hole
    while True:
        j = (j + 1) & mask
        if table[j, T_SYMBOL] == EMPTY:
            return
        home = table[j, T_HOME]
        # The entry at j may fill the hole unless its home lies cyclically in (hole, j].
        if hole <= j:
            movable = home <= hole or home > j
        else:
            movable = home <= hole and home > j
        if not movable:
            continue
        for f in range(T_WIDTH):
            table[hole, f] = table[j, f]
        table[j, T_SYMBOL] = EMPTY
        prev = table[hole, T_PREV]
        nxt = table[hole, T_NEXT]
        if prev == NIL:
            side_head[table[hole, T_SYMBOL], _side_index(table[hole, T_SIDE])] = hole
        else:
            table[prev, T_NEXT] = hole
        if nxt != NIL:
            table[nxt, T_PREV] = hole
        hole = j


# ---------------------------------------------------------------------------
# Price levels
# ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, _nrt=False)
def _lower_bound(level_key, symbol, sidx, n, key):  # noqa: ANN001, ANN202
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if level_key[symbol, sidx, mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True, _nrt=False)
def _level_add(
    level_key, level_size, level_orders, level_count, untracked, counters, symbol, sidx, key, size
):  # noqa: ANN001, ANN202
    """Add one order of ``size`` lots at ``key``; BOOK_LEVEL_OVERFLOW if it is untracked
    or pushed a tracked level out, else BOOK_OK."""
    n = level_count[symbol, sidx]
    pos = _lower_bound(level_key, symbol, sidx, n, key)
    if pos < n and level_key[symbol, sidx, pos] == key:
        level_size[symbol, sidx, pos] += size
        level_orders[symbol, sidx, pos] += 1
        return BOOK_OK
    code = BOOK_OK
    if n == level_key.shape[2]:
        if pos == n:  # worse than every tracked level of a full side
            untracked[symbol, sidx] += 1
            return BOOK_LEVEL_OVERFLOW
        # Evict the worst tracked level: its orders become untracked.
        untracked[symbol, sidx] += level_orders[symbol, sidx, n - 1]
        counters[C_EVICTIONS] += 1
        n -= 1
        code = BOOK_LEVEL_OVERFLOW
    for k in range(n, pos, -1):
        level_key[symbol, sidx, k] = level_key[symbol, sidx, k - 1]
        level_size[symbol, sidx, k] = level_size[symbol, sidx, k - 1]
        level_orders[symbol, sidx, k] = level_orders[symbol, sidx, k - 1]
    level_key[symbol, sidx, pos] = key
    level_size[symbol, sidx, pos] = size
    level_orders[symbol, sidx, pos] = 1
    level_count[symbol, sidx] = n + 1
    return code


@numba.njit(cache=True, nogil=True, _nrt=False)
def _refill(
    level_key, level_size, level_orders, level_count, untracked, side_head, table, counters,
    symbol, sidx,
):  # fmt: skip  # noqa: ANN001, ANN202
    """Append the best untracked level of a side, rebuilt from its order list."""
    n = level_count[symbol, sidx]
    worst = level_key[symbol, sidx, n - 1] if n > 0 else -_INT64_MAX - 1
    best = _INT64_MAX
    best_size = 0
    best_count = 0
    slot = side_head[symbol, sidx]
    while slot != NIL:
        k = _key(table[slot, T_SIDE], table[slot, T_PRICE])
        if k > worst:
            if k < best:
                best = k
                best_size = table[slot, T_SIZE]
                best_count = 1
            elif k == best:
                best_size += table[slot, T_SIZE]
                best_count += 1
        slot = table[slot, T_NEXT]
    if best_count > 0:
        level_key[symbol, sidx, n] = best
        level_size[symbol, sidx, n] = best_size
        level_orders[symbol, sidx, n] = best_count
        level_count[symbol, sidx] = n + 1
        untracked[symbol, sidx] -= best_count
        counters[C_REFILLS] += 1


@numba.njit(cache=True, nogil=True, _nrt=False)
def _level_remove(
    level_key, level_size, level_orders, level_count, untracked, side_head, table, counters,
    symbol, sidx, key, size,
):  # fmt: skip  # noqa: ANN001, ANN202
    """Remove one order of ``size`` lots at ``key`` (the order must be unlinked)."""
    n = level_count[symbol, sidx]
    pos = _lower_bound(level_key, symbol, sidx, n, key)
    if pos == n or level_key[symbol, sidx, pos] != key:
        untracked[symbol, sidx] -= 1
        return
    level_orders[symbol, sidx, pos] -= 1
    level_size[symbol, sidx, pos] -= size
    if level_orders[symbol, sidx, pos] > 0:
        return
    for k in range(pos, n - 1):
        level_key[symbol, sidx, k] = level_key[symbol, sidx, k + 1]
        level_size[symbol, sidx, k] = level_size[symbol, sidx, k + 1]
        level_orders[symbol, sidx, k] = level_orders[symbol, sidx, k + 1]
    level_count[symbol, sidx] = n - 1
    if untracked[symbol, sidx] > 0:
        _refill(
            level_key, level_size, level_orders, level_count, untracked, side_head, table,
            counters, symbol, sidx,
        )  # fmt: skip


@numba.njit(cache=True, nogil=True, _nrt=False)
def _level_resize(level_key, level_size, level_count, symbol, sidx, key, delta):  # noqa: ANN001, ANN202
    """Change the size at ``key`` by ``delta`` lots (nothing if the level is untracked)."""
    n = level_count[symbol, sidx]
    pos = _lower_bound(level_key, symbol, sidx, n, key)
    if pos < n and level_key[symbol, sidx, pos] == key:
        level_size[symbol, sidx, pos] += delta


# ---------------------------------------------------------------------------
# Public kernels
# ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, _nrt=False)
def _apply(
    level_key, level_size, level_orders, level_count, untracked, side_head, table, counters,
    symbol, action, side, order_id, price, size,
):  # fmt: skip  # noqa: ANN001, ANN202
    home = _home_slot(symbol, order_id, np.uint64(table.shape[0] - 1))
    oid = np.int64(order_id)
    slot = _find_slot(table, counters, symbol, oid, home)
    live = table[slot, T_SYMBOL] != EMPTY
    if action == ACTION_ADD:
        if live:
            return BOOK_DUPLICATE_ID
        if counters[C_LIVE] >= counters[C_MAX_ORDERS]:
            return BOOK_TABLE_FULL
        sidx = _side_index(side)
        table[slot, T_ID] = oid
        table[slot, T_SYMBOL] = symbol
        table[slot, T_SIDE] = SIDE_BUY if side == SIDE_BUY else SIDE_SELL
        table[slot, T_PRICE] = price
        table[slot, T_SIZE] = size
        table[slot, T_HOME] = home
        counters[C_LIVE] += 1
        _link(table, side_head, slot, symbol, sidx)
        return _level_add(
            level_key, level_size, level_orders, level_count, untracked, counters,
            symbol, sidx, _key(side, price), size,
        )  # fmt: skip
    if not live:
        return BOOK_UNKNOWN_ORDER
    stored_side = table[slot, T_SIDE]
    sidx = _side_index(stored_side)
    old_price = table[slot, T_PRICE]
    remaining = table[slot, T_SIZE]
    old_key = _key(stored_side, old_price)
    if action == ACTION_EXECUTE and size < remaining:
        table[slot, T_SIZE] = remaining - size
        _level_resize(level_key, level_size, level_count, symbol, sidx, old_key, -size)
        return BOOK_OK
    if action == ACTION_MODIFY:
        table[slot, T_SIZE] = size
        if price == old_price:
            _level_resize(
                level_key, level_size, level_count, symbol, sidx, old_key, size - remaining
            )
            return BOOK_OK
        # Out of the side's list while the levels change, so a refill cannot see it.
        _unlink(table, side_head, slot, symbol, sidx)
        _level_remove(
            level_key, level_size, level_orders, level_count, untracked, side_head, table,
            counters, symbol, sidx, old_key, remaining,
        )  # fmt: skip
        table[slot, T_PRICE] = price
        _link(table, side_head, slot, symbol, sidx)
        return _level_add(
            level_key, level_size, level_orders, level_count, untracked, counters,
            symbol, sidx, _key(stored_side, price), size,
        )  # fmt: skip
    # CANCEL, or EXECUTE of everything that remains (or more).
    _unlink(table, side_head, slot, symbol, sidx)
    _level_remove(
        level_key, level_size, level_orders, level_count, untracked, side_head, table,
        counters, symbol, sidx, old_key, remaining,
    )  # fmt: skip
    _delete_slot(table, side_head, slot)
    counters[C_LIVE] -= 1
    if action == ACTION_EXECUTE and size > remaining:
        return BOOK_OVERFILL
    return BOOK_OK


@numba.njit(cache=True, nogil=True, _nrt=False)
def _apply_counted(
    level_key, level_size, level_orders, level_count, untracked, side_head, table, counters,
    symbol, action, side, order_id, price, size,
):  # fmt: skip  # noqa: ANN001, ANN202
    code = _apply(
        level_key, level_size, level_orders, level_count, untracked, side_head, table, counters,
        np.int64(symbol), np.int64(action), np.int64(side), np.uint64(order_id),
        np.int64(price), np.int64(size),
    )  # fmt: skip
    counters[C_EVENTS + code] += 1
    return code


@numba.njit(cache=True, nogil=True, _nrt=False)
def book_apply(state, symbol, action, side, order_id, price, size):  # noqa: ANN001, ANN201
    """Apply one validated ORDER event to the book of ``symbol``.

    Args:
        state: a :class:`BookState`.
        symbol: ``0 <= symbol < n_symbols``.
        action: ``ACTION_ADD``/``MODIFY``/``CANCEL``/``EXECUTE``.
        side: ``SIDE_BUY`` or ``SIDE_SELL`` for ADD; not read otherwise (the
            order's stored side is used).
        order_id: u64 id, unique among the symbol's live orders.
        price: ticks (> 0 for ADD and MODIFY; not read by CANCEL/EXECUTE).
        size: lots (> 0 for ADD, MODIFY, EXECUTE; not read by CANCEL).

    Returns:
        ``BOOK_OK`` or an event code: ``BOOK_DUPLICATE_ID`` / ``BOOK_UNKNOWN_ORDER``
        (event ignored), ``BOOK_OVERFILL`` (order removed),
        ``BOOK_LEVEL_OVERFLOW`` (applied; see the module's overflow policy),
        ``BOOK_TABLE_FULL`` (ADD refused).
    """
    return _apply_counted(
        state.level_key, state.level_size, state.level_orders, state.level_count,
        state.untracked, state.side_head, state.table, state.counters,
        symbol, action, side, order_id, price, size,
    )  # fmt: skip


@numba.njit(cache=True, nogil=True, _nrt=False)
def book_apply_batch(state, orders, out_codes):  # noqa: ANN001, ANN201
    """Apply every record of an ORDER array in order; write each event code.

    Returns the number of events whose code is not ``BOOK_OK``.
    """
    return _apply_batch(
        state.level_key, state.level_size, state.level_orders, state.level_count,
        state.untracked, state.side_head, state.table, state.counters, orders, out_codes,
    )  # fmt: skip


@numba.njit(cache=True, nogil=True, _nrt=False)
def _apply_batch(
    level_key, level_size, level_orders, level_count, untracked, side_head, table, counters,
    orders, out_codes,
):  # fmt: skip  # noqa: ANN001, ANN202
    not_ok = 0
    for k in range(orders.shape[0]):
        r = orders[k]
        code = _apply(
            level_key, level_size, level_orders, level_count, untracked, side_head, table,
            counters, np.int64(r.symbol), np.int64(r.action), np.int64(r.side),
            np.uint64(r.order_id), np.int64(r.price), np.int64(r.size),
        )  # fmt: skip
        counters[C_EVENTS + code] += 1
        out_codes[k] = code
        if code != BOOK_OK:
            not_ok += 1
    return not_ok


@numba.njit(cache=True, nogil=True, _nrt=False)
def book_fill_top(state, symbol, out, i):  # noqa: ANN001, ANN201
    """Write the book fields of ``out[i]`` (a RESULT_BOOK array) for ``symbol``.

    Fills ``bid_/ask_price``, ``_size``, ``_orders`` for the best ``TOP_N`` levels
    (0 where empty), ``bid_levels``/``ask_levels`` (``min(levels, max_levels)``)
    and ``depth_imbalance`` over the ``TOP_N`` levels (NaN when both are empty).
    Other fields of ``out[i]`` are left as they are.
    """
    rec = out[i]
    bid_price = rec.bid_price
    bid_size = rec.bid_size
    bid_orders = rec.bid_orders
    ask_price = rec.ask_price
    ask_size = rec.ask_size
    ask_orders = rec.ask_orders
    keys = state.level_key[symbol]
    sizes = state.level_size[symbol]
    counts = state.level_orders[symbol]
    n_bid = state.level_count[symbol, 0]
    n_ask = state.level_count[symbol, 1]
    bid_total = 0
    ask_total = 0
    for j in range(TOP_N):
        if j < n_bid:
            bid_price[j] = -keys[0, j]
            bid_size[j] = sizes[0, j]
            bid_orders[j] = counts[0, j]
            bid_total += sizes[0, j]
        else:
            bid_price[j] = 0
            bid_size[j] = 0
            bid_orders[j] = 0
        if j < n_ask:
            ask_price[j] = keys[1, j]
            ask_size[j] = sizes[1, j]
            ask_orders[j] = counts[1, j]
            ask_total += sizes[1, j]
        else:
            ask_price[j] = 0
            ask_size[j] = 0
            ask_orders[j] = 0
    rec.bid_levels = n_bid
    rec.ask_levels = n_ask
    depth = bid_total + ask_total
    if depth == 0:
        rec.depth_imbalance = np.nan
    else:
        rec.depth_imbalance = np.float64(bid_total - ask_total) / np.float64(depth)


@numba.njit(cache=True, nogil=True, _nrt=False)
def book_replay(state, orders, out_codes, out):  # noqa: ANN001, ANN201
    """Like :func:`book_apply_batch`, and fill ``out[k]`` (RESULT_BOOK) after each event.

    ``out[k].symbol`` and ``out[k].ts_ns`` are copied from the record; the other
    provenance fields are left as they are.  Returns the number of non-OK events.
    """
    not_ok = 0
    for k in range(orders.shape[0]):
        r = orders[k]
        code = book_apply(state, r.symbol, r.action, r.side, r.order_id, r.price, r.size)
        out_codes[k] = code
        if code != BOOK_OK:
            not_ok += 1
        out[k].symbol = r.symbol
        out[k].ts_ns = r.ts_ns
        book_fill_top(state, np.int64(r.symbol), out, k)
    return not_ok


@numba.njit(cache=True, nogil=True, _nrt=False)
def best_bid_ask(state, symbol):  # noqa: ANN001, ANN201
    """``(bid_price, bid_size, ask_price, ask_size)`` of ``symbol``; 0 where a side is empty."""
    bid_px = 0
    bid_sz = 0
    ask_px = 0
    ask_sz = 0
    if state.level_count[symbol, 0] > 0:
        bid_px = -state.level_key[symbol, 0, 0]
        bid_sz = state.level_size[symbol, 0, 0]
    if state.level_count[symbol, 1] > 0:
        ask_px = state.level_key[symbol, 1, 0]
        ask_sz = state.level_size[symbol, 1, 0]
    return bid_px, bid_sz, ask_px, ask_sz


def warm_up() -> None:
    """Compile (or load from cache) every kernel on a tiny state.

    Call at start-up so that no tick waits for the JIT.  Arguments use the
    ORDER record's field types, as a frame kernel reading records passes them.
    """
    state = new_book_state(2, max_levels=2, max_orders=8)
    sym = np.uint32(0)
    book_apply(state, sym, np.uint8(ACTION_ADD), np.int8(SIDE_BUY), np.uint64(1), 100, 1)
    book_apply(state, np.int64(0), ACTION_MODIFY, SIDE_BUY, 1, 100, 2)
    orders = np.zeros(4, dtype=ORDER)
    orders["action"] = [ACTION_ADD, ACTION_EXECUTE, ACTION_ADD, ACTION_CANCEL]
    orders["side"] = [SIDE_SELL, 0, SIDE_BUY, 0]
    orders["order_id"] = [2, 2, 3, 3]
    orders["price"] = [101, 0, 99, 0]
    orders["size"] = [3, 1, 1, 0]
    codes = np.zeros(orders.shape[0], dtype=np.int64)
    book_apply_batch(state, orders, codes)
    out = np.zeros(orders.shape[0], dtype=RESULT_BOOK)
    book_replay(state, orders, codes, out)
    book_fill_top(state, 0, out, 0)
    book_fill_top(state, sym, out, np.int64(0))
    best_bid_ask(state, 0)
    best_bid_ask(state, sym)
    book_apply(state, sym, np.uint8(ACTION_CANCEL), np.int8(0), np.uint64(1), 0, 0)
    reset_book(state)
