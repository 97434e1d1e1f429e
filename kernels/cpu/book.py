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
ascending search serves both sides: ``key = -price`` for bids and
``key = price`` for asks.  A new level is inserted by search + shift.

Orders live in ``pool``, a dense array of 32-byte rows (order id, price,
remaining size, ``2 * symbol + side index``); a freed row goes on a free list
(linked through ``links``) and is the next one reused, so the rows in use stay
packed at the front of the pool whatever the history.  ``links`` holds the
int32 next/previous row of each order in its (symbol, side) list, whose head
is ``side_head``.

``index`` maps ``(symbol, order_id)`` to a pool row: an open-addressing hash
table with linear probing of 8-byte entries, ``(tag << 32) | (row + 1)``
where ``tag`` is the high 32 bits of a 64-bit mix of the key, and 0 marks an
empty slot.  Of the index's ``capacity`` slots only a power-of-two prefix of
``2**bits`` is in use (``C_INDEX_BITS``); a key's home slot is the top
``bits`` bits of its tag, so it is recomputed from the entry itself, never
stored, and a probe compares tags before it reads a pool row.  The prefix is
kept at least twice the live orders: when an ADD would fill more than half of
it, it doubles and is rebuilt from the pool (``C_INDEX_GROWS``).  So the load
factor never exceeds 1/2, and a book holding few orders probes a small,
cache-resident index whatever ``max_orders`` is.  Deletion is by backward
shift (no tombstones): the entries after a freed slot that may move closer to
their home slot do, so the index after any history of adds and cancels is
exactly as if only its live orders had been inserted, and probe lengths cannot
degrade under churn.  Pool rows never move; an index entry does.

Memory: ``capacity`` is the next power of two >= ``2 * max_orders``; the
index takes ``8 * capacity`` bytes, the pool ``32 * max_orders`` and the links
``8 * max_orders`` (56 MiB for ``max_orders = 2**20``).  Arrays of 2 MiB or
more are anonymous mmaps that use transparent huge pages where allowed; their
pages become resident only when first written, i.e. as the live orders reach
them (the index prefix in use, the pool rows up to the most orders ever live
at once), so the resident size follows the book, not ``max_orders``.  The
index starts sized for ``reserve_orders`` orders; each doubling rehashes every
live order once (a pause of about 20 ns per live order, once per doubling;
pass ``reserve_orders = max_orders`` to never rehash).  The prefix never
shrinks, except by :func:`reset_book`.

Level overflow policy
---------------------
The level arrays track the best ``max_levels`` levels of a side exactly; the
orders of worse levels stay in the pool ("untracked", counted in
``untracked``).  Invariant: the tracked levels are always exactly the best
``min(levels, max_levels)`` levels of the side.  A new level better than the
worst tracked one on a full side evicts the worst level (its orders become
untracked); when a tracked level empties while untracked orders exist, the
best untracked level is rebuilt from the side's order list (a walk over that
symbol-side's orders only, not over the pool).  So the TOP_N snapshot is
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
cost of an event.  Helpers take the arrays as separate arguments.
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
    "tracked_levels",
    "warm_up",
]

# Columns of a row of ``BookState.pool``.
P_ID = 0  # order id (u64 bits stored as i64)
P_PRICE = 1
P_SIZE = 2  # remaining lots
P_META = 3  # 2 * symbol + side index (0 bid, 1 ask); FREE when the row is free
P_WIDTH = 4  # 4 x int64 = 32 bytes, two rows per cache line
FREE = -1

# Columns of a row of ``BookState.links`` (int32).
L_NEXT = 0  # next row in the (symbol, side) list, or in the free list; NIL at the end
L_PREV = 1  # previous row in the (symbol, side) list, NIL at the head
NIL = -1

# ``BookState.index`` entries: (tag << 32) | (row + 1); EMPTY is a free slot.
EMPTY = 0
MAX_ORDERS = (1 << 31) - 1  # rows and tags must fit 32 bits

# Indices of ``BookState.counters``.
C_LIVE = 0  # live orders, all symbols
C_MAX_ORDERS = 1  # configured max_orders (an ADD is refused beyond it)
C_LOOKUPS = 2  # hash lookups
C_PROBES = 3  # slots examined by those lookups (>= lookups)
C_MAX_PROBE = 4  # longest lookup, in slots examined
C_EVICTIONS = 5  # tracked levels pushed out by a better new level
C_REFILLS = 6  # levels rebuilt from the untracked orders
C_INDEX_BITS = 7  # the index prefix in use has 2**bits slots
C_RESERVE_BITS = 8  # ... and 2**reserve_bits after reset_book
C_INDEX_GROWS = 9  # doublings of the index prefix since the last reset
C_FREE_HEAD = 10  # first free pool row below the high-water mark, NIL if none
C_HIGH_WATER = 11  # pool rows ever handed out since the last reset
C_EVENTS = 12  # C_EVENTS + code: events returned with that code
N_COUNTERS = C_EVENTS + N_BOOK_CODES

_HASH_SYMBOL = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_LO32 = np.int64(0xFFFFFFFF)
_HI32 = np.int64(-(1 << 32))  # 0xFFFFFFFF00000000
_INT64_MAX = np.iinfo(np.int64).max
_HUGE_PAGE = 2 << 20
_DEFAULT_RESERVE = 4096


class BookState(NamedTuple):
    """All state of the L3 books of ``n_symbols`` symbols: preallocated arrays only.

    Attributes:
        level_key: int64 ``[n_symbols, 2, max_levels]``, side-normalised price
            (``-price`` for bids, ``price`` for asks), ascending = best first.
        level_size: int64 ``[n_symbols, 2, max_levels]``, total remaining lots.
        level_orders: int64 ``[n_symbols, 2, max_levels]``, orders at the level.
        level_count: int64 ``[n_symbols, 2]``, tracked levels in use.
        untracked: int64 ``[n_symbols, 2]``, live orders beyond the tracked levels.
        side_head: int64 ``[n_symbols, 2]``, first pool row of the side's order list.
        index: int64 ``[capacity]``, the hash index (see the module doc).
        pool: int64 ``[max_orders, 4]``, the order rows.
        links: int32 ``[max_orders, 2]``, list links of the order rows.
        counters: int64 ``[N_COUNTERS]``, live orders, limits, allocator and statistics.
    """

    level_key: np.ndarray
    level_size: np.ndarray
    level_orders: np.ndarray
    level_count: np.ndarray
    untracked: np.ndarray
    side_head: np.ndarray
    index: np.ndarray
    pool: np.ndarray
    links: np.ndarray
    counters: np.ndarray


def _capacity_bits(n_orders: int) -> int:
    """``bits`` of the smallest power of two ``>= 2 * n_orders``."""
    return max(0, (2 * n_orders - 1).bit_length())


def _zeroed(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A zeroed C-contiguous array starting on a 64-byte line.

    Arrays of 2 MiB or more are anonymous mmaps advised to use transparent huge
    pages: accesses are random over them, and with 4 KiB pages nearly every one
    would also miss the TLB.  Their pages are only made resident when written.
    """
    itemsize = np.dtype(dtype).itemsize
    count = int(np.prod(shape))
    nbytes = count * itemsize
    if nbytes >= _HUGE_PAGE and hasattr(mmap, "MADV_HUGEPAGE"):
        memory = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        try:
            memory.madvise(mmap.MADV_HUGEPAGE)
        except OSError:
            pass  # THP disabled: ordinary pages, same layout
        return np.frombuffer(memory, dtype=dtype).reshape(shape)
    pad = 64 // itemsize
    raw = np.zeros(count + pad, dtype=dtype)
    skip = (-raw.ctypes.data % 64) // itemsize
    return raw[skip : skip + count].reshape(shape)


def new_book_state(
    n_symbols: int,
    max_levels: int = 64,
    max_orders: int = 1 << 20,
    reserve_orders: int | None = None,
) -> BookState:
    """Allocate empty books for ``n_symbols`` symbols.

    Args:
        n_symbols: symbols are ``0 .. n_symbols - 1``.
        max_levels: price levels tracked exactly per symbol and side (>= TOP_N
            recommended; fewer still works, the snapshot then shows fewer levels).
        max_orders: live orders, all symbols together (at most ``2**31 - 1``);
            40 bytes of pool and links per order, and 8 bytes per index slot
            (the next power of two >= ``2 * max_orders`` slots).
        reserve_orders: orders the index is sized for before it first grows
            (default ``min(max_orders, 4096)``); ``max_orders`` never rehashes.
    """
    if n_symbols < 1:
        raise ValueError("n_symbols must be >= 1")
    if max_levels < 1:
        raise ValueError("max_levels must be >= 1")
    if not 1 <= max_orders <= MAX_ORDERS:
        raise ValueError(f"max_orders must be in 1..{MAX_ORDERS}")
    if reserve_orders is None:
        reserve_orders = min(max_orders, _DEFAULT_RESERVE)
    if not 1 <= reserve_orders <= max_orders:
        raise ValueError("reserve_orders must be in 1..max_orders")
    shape = (n_symbols, 2, max_levels)
    capacity_bits = _capacity_bits(max_orders)
    state = BookState(
        level_key=np.zeros(shape, dtype=np.int64),
        level_size=np.zeros(shape, dtype=np.int64),
        level_orders=np.zeros(shape, dtype=np.int64),
        level_count=np.zeros((n_symbols, 2), dtype=np.int64),
        untracked=np.zeros((n_symbols, 2), dtype=np.int64),
        side_head=np.full((n_symbols, 2), NIL, dtype=np.int64),
        index=_zeroed((1 << capacity_bits,), np.int64),
        pool=_zeroed((max_orders, P_WIDTH), np.int64),
        links=_zeroed((max_orders, 2), np.int32),
        counters=np.zeros(N_COUNTERS, dtype=np.int64),
    )
    c = state.counters
    c[C_MAX_ORDERS] = max_orders
    c[C_RESERVE_BITS] = c[C_INDEX_BITS] = _capacity_bits(reserve_orders)
    c[C_FREE_HEAD] = NIL
    return state


def reset_book(state: BookState) -> None:
    """Empty every book and zero the statistics (keeps the configured limits).

    Afterwards every array equals that of a new state with the same arguments.
    Only what was used is cleared: the index prefix in use and the pool rows
    below the high-water mark.
    """
    c = state.counters
    state.level_key.fill(0)
    state.level_size.fill(0)
    state.level_orders.fill(0)
    state.level_count.fill(0)
    state.untracked.fill(0)
    state.side_head.fill(NIL)
    state.index[: 1 << int(c[C_INDEX_BITS])] = EMPTY
    used = int(c[C_HIGH_WATER])
    state.pool[:used] = 0
    state.links[:used] = 0
    max_orders, reserve_bits = int(c[C_MAX_ORDERS]), int(c[C_RESERVE_BITS])
    c.fill(0)
    c[C_MAX_ORDERS] = max_orders
    c[C_RESERVE_BITS] = c[C_INDEX_BITS] = reserve_bits
    c[C_FREE_HEAD] = NIL


def book_stats(state: BookState) -> dict[str, float]:
    """Statistics of the books: live orders, index and pool use, probe lengths,
    overflow work, event counts."""
    c = state.counters
    lookups = int(c[C_LOOKUPS])
    stats: dict[str, float] = {
        "live_orders": int(c[C_LIVE]),
        "max_orders": int(c[C_MAX_ORDERS]),
        "table_capacity": int(state.index.shape[0]),
        "index_slots_in_use": 1 << int(c[C_INDEX_BITS]),
        "index_grows": int(c[C_INDEX_GROWS]),
        "pool_high_water": int(c[C_HIGH_WATER]),
        "lookups": lookups,
        "mean_probe": float(c[C_PROBES]) / lookups if lookups else 0.0,
        "max_probe": int(c[C_MAX_PROBE]),
        "evictions": int(c[C_EVICTIONS]),
        "refills": int(c[C_REFILLS]),
    }
    for code, name in enumerate(BOOK_CODE_NAMES):
        stats[f"events_{name}"] = int(c[C_EVENTS + code])
    return stats


def tracked_levels(state: BookState, symbol: int, side: int) -> list[tuple[int, int, int]]:
    """The tracked levels of one side as ``(price, total size, order count)``, best first.

    ``side`` is ``SIDE_BUY`` or ``SIDE_SELL`` (a Python helper for tests and tools).
    """
    sidx = 0 if side == SIDE_BUY else 1
    sign = -1 if sidx == 0 else 1
    n = int(state.level_count[symbol, sidx])
    return [
        (
            sign * int(state.level_key[symbol, sidx, j]),
            int(state.level_size[symbol, sidx, j]),
            int(state.level_orders[symbol, sidx, j]),
        )
        for j in range(n - 1, -1, -1)
    ]


# ---------------------------------------------------------------------------
# Hash index and order pool
#
# The hot helpers take the state's arrays as separate arguments and never bind
# them to new local names: numba then passes them as borrowed references, with
# no NRT reference counting (atomic increments) on the per-event path.
# ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _hash_tag(symbol, order_id):  # noqa: ANN001, ANN202
    """High 32 bits of a 64-bit mix of ``(symbol, order_id)``, in ``[0, 2**32)``."""
    x = np.uint64(order_id) ^ (np.uint64(symbol) * _HASH_SYMBOL)
    x = (x ^ (x >> _S30)) * _MIX1
    x = (x ^ (x >> _S27)) * _MIX2
    x = x ^ (x >> _S31)
    return np.int64(x >> _S32)


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _find(index, pool, counters, symbol, oid, tag):  # noqa: ANN001, ANN202
    """``(slot, row)`` of ``(symbol, oid)``, or ``(empty slot where it would go, -1)``."""
    bits = counters[C_INDEX_BITS]
    mask = (np.int64(1) << bits) - 1
    slot = tag >> (32 - bits)
    want = tag << 32
    row = -1
    probes = 1
    while True:
        e = index[slot]
        if e == EMPTY:
            break
        if (e & _HI32) == want:
            r = (e & _LO32) - 1
            if pool[r, P_ID] == oid and (pool[r, P_META] >> 1) == symbol:
                row = r
                break
        slot = (slot + 1) & mask
        probes += 1
    counters[C_LOOKUPS] += 1
    counters[C_PROBES] += probes
    if probes > counters[C_MAX_PROBE]:
        counters[C_MAX_PROBE] = probes
    return slot, row


@numba.njit(cache=True, nogil=True, _nrt=False)
def _place(index, bits, tag, row):  # noqa: ANN001, ANN202
    """Insert a key known to be absent: the first empty slot from its home."""
    mask = (np.int64(1) << bits) - 1
    slot = tag >> (32 - bits)
    while index[slot] != EMPTY:
        slot = (slot + 1) & mask
    index[slot] = (tag << 32) | (row + 1)


@numba.njit(cache=True, nogil=True, _nrt=False)
def _grow(index, pool, counters):  # noqa: ANN001, ANN202
    """Double the index prefix in use and rebuild it from the live pool rows."""
    bits = counters[C_INDEX_BITS]
    for slot in range(np.int64(1) << bits):
        index[slot] = EMPTY
    bits += 1
    counters[C_INDEX_BITS] = bits
    counters[C_INDEX_GROWS] += 1
    for row in range(counters[C_HIGH_WATER]):
        meta = pool[row, P_META]
        if meta != FREE:
            _place(index, bits, _hash_tag(meta >> 1, pool[row, P_ID]), row)


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _delete_slot(index, counters, slot):  # noqa: ANN001, ANN202
    """Free an index slot by backward-shift deletion: no tombstones."""
    bits = counters[C_INDEX_BITS]
    mask = (np.int64(1) << bits) - 1
    shift = 32 - bits
    hole = slot
    index[hole] = EMPTY
    j = hole
    while True:
        j = (j + 1) & mask
        e = index[j]
        if e == EMPTY:
            return
        home = ((e >> 32) & _LO32) >> shift
        # The entry at j may fill the hole unless its home lies cyclically in (hole, j].
        if hole <= j:
            movable = home <= hole or home > j
        else:
            movable = home <= hole and home > j
        if movable:
            index[hole] = e
            index[j] = EMPTY
            hole = j


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _alloc_row(links, counters):  # noqa: ANN001, ANN202
    row = counters[C_FREE_HEAD]
    if row != NIL:
        counters[C_FREE_HEAD] = links[row, L_NEXT]
        return row
    row = counters[C_HIGH_WATER]
    counters[C_HIGH_WATER] = row + 1
    return row


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _free_row(pool, links, counters, row):  # noqa: ANN001, ANN202
    pool[row, P_META] = FREE
    links[row, L_NEXT] = counters[C_FREE_HEAD]
    links[row, L_PREV] = NIL
    counters[C_FREE_HEAD] = row


@numba.njit(cache=True, nogil=True, inline="always")
def _side_index(side):  # noqa: ANN001, ANN202
    return 0 if side == SIDE_BUY else 1


@numba.njit(cache=True, nogil=True, inline="always")
def _key(side, price):  # noqa: ANN001, ANN202
    return -price if side == SIDE_BUY else price


@numba.njit(cache=True, nogil=True, inline="always")
def _side_key(sidx, price):  # noqa: ANN001, ANN202
    return -price if sidx == 0 else price


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _link(links, side_head, row, symbol, sidx):  # noqa: ANN001, ANN202
    head = side_head[symbol, sidx]
    links[row, L_PREV] = NIL
    links[row, L_NEXT] = head
    if head != NIL:
        links[head, L_PREV] = row
    side_head[symbol, sidx] = row


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _unlink(links, side_head, row, symbol, sidx):  # noqa: ANN001, ANN202
    prev = links[row, L_PREV]
    nxt = links[row, L_NEXT]
    if prev == NIL:
        side_head[symbol, sidx] = nxt
    else:
        links[prev, L_NEXT] = nxt
    if nxt != NIL:
        links[nxt, L_PREV] = prev


# ---------------------------------------------------------------------------
# Price levels
# ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _level_find(level_key, symbol, sidx, n, key):  # noqa: ANN001, ANN202
    """Index of the best tracked level whose key is ``>= key``, -1 if none.

    The levels are stored worst first, so this walks from the best level
    towards the worst: most events touch levels near the best.
    """
    j = n - 1
    while j >= 0 and level_key[symbol, sidx, j] < key:
        j -= 1
    return j


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _level_add(
    level_key, level_size, level_orders, level_count, untracked, counters, symbol, sidx, key, size
):  # noqa: ANN001, ANN202
    """Add one order of ``size`` lots at ``key``; BOOK_LEVEL_OVERFLOW if it is untracked
    or pushed a tracked level out, else BOOK_OK."""
    n = level_count[symbol, sidx]
    j = _level_find(level_key, symbol, sidx, n, key)
    if j >= 0 and level_key[symbol, sidx, j] == key:
        level_size[symbol, sidx, j] += size
        level_orders[symbol, sidx, j] += 1
        return BOOK_OK
    # A new level, between j (worse) and j + 1 (better).
    if n == level_key.shape[2]:
        if j < 0:  # worse than every tracked level of a full side
            untracked[symbol, sidx] += 1
            return BOOK_LEVEL_OVERFLOW
        # Evict the worst tracked level (index 0): its orders become untracked.
        untracked[symbol, sidx] += level_orders[symbol, sidx, 0]
        counters[C_EVICTIONS] += 1
        for k in range(j):
            level_key[symbol, sidx, k] = level_key[symbol, sidx, k + 1]
            level_size[symbol, sidx, k] = level_size[symbol, sidx, k + 1]
            level_orders[symbol, sidx, k] = level_orders[symbol, sidx, k + 1]
        level_key[symbol, sidx, j] = key
        level_size[symbol, sidx, j] = size
        level_orders[symbol, sidx, j] = 1
        return BOOK_LEVEL_OVERFLOW
    for k in range(n, j + 1, -1):
        level_key[symbol, sidx, k] = level_key[symbol, sidx, k - 1]
        level_size[symbol, sidx, k] = level_size[symbol, sidx, k - 1]
        level_orders[symbol, sidx, k] = level_orders[symbol, sidx, k - 1]
    level_key[symbol, sidx, j + 1] = key
    level_size[symbol, sidx, j + 1] = size
    level_orders[symbol, sidx, j + 1] = 1
    level_count[symbol, sidx] = n + 1
    return BOOK_OK


@numba.njit(cache=True, nogil=True, _nrt=False)
def _refill(
    level_key, level_size, level_orders, level_count, untracked, side_head, pool, links,
    counters, symbol, sidx,
):  # fmt: skip  # noqa: ANN001, ANN202
    """Insert the best untracked level of a side as its new worst tracked level,
    rebuilt from the side's order list."""
    n = level_count[symbol, sidx]
    worst = level_key[symbol, sidx, 0] if n > 0 else -_INT64_MAX - 1
    best = _INT64_MAX
    best_size = 0
    best_count = 0
    row = side_head[symbol, sidx]
    while row != NIL:
        k = _side_key(sidx, pool[row, P_PRICE])
        if k > worst:
            if k < best:
                best = k
                best_size = pool[row, P_SIZE]
                best_count = 1
            elif k == best:
                best_size += pool[row, P_SIZE]
                best_count += 1
        row = links[row, L_NEXT]
    if best_count > 0:
        for k in range(n, 0, -1):
            level_key[symbol, sidx, k] = level_key[symbol, sidx, k - 1]
            level_size[symbol, sidx, k] = level_size[symbol, sidx, k - 1]
            level_orders[symbol, sidx, k] = level_orders[symbol, sidx, k - 1]
        level_key[symbol, sidx, 0] = best
        level_size[symbol, sidx, 0] = best_size
        level_orders[symbol, sidx, 0] = best_count
        level_count[symbol, sidx] = n + 1
        untracked[symbol, sidx] -= best_count
        counters[C_REFILLS] += 1


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _level_remove(
    level_key, level_size, level_orders, level_count, untracked, side_head, pool, links,
    counters, symbol, sidx, key, size,
):  # fmt: skip  # noqa: ANN001, ANN202
    """Remove one order of ``size`` lots at ``key`` (the order must be unlinked)."""
    n = level_count[symbol, sidx]
    if n == 0 or key > level_key[symbol, sidx, 0]:  # beyond the worst tracked level
        untracked[symbol, sidx] -= 1
        return
    j = _level_find(level_key, symbol, sidx, n, key)
    level_orders[symbol, sidx, j] -= 1
    level_size[symbol, sidx, j] -= size
    if level_orders[symbol, sidx, j] > 0:
        return
    for k in range(j, n - 1):
        level_key[symbol, sidx, k] = level_key[symbol, sidx, k + 1]
        level_size[symbol, sidx, k] = level_size[symbol, sidx, k + 1]
        level_orders[symbol, sidx, k] = level_orders[symbol, sidx, k + 1]
    level_count[symbol, sidx] = n - 1
    if untracked[symbol, sidx] > 0:
        _refill(
            level_key, level_size, level_orders, level_count, untracked, side_head, pool, links,
            counters, symbol, sidx,
        )  # fmt: skip


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _level_resize(level_key, level_size, level_count, symbol, sidx, key, delta):  # noqa: ANN001, ANN202
    """Change the size at ``key`` by ``delta`` lots (nothing if the level is untracked)."""
    n = level_count[symbol, sidx]
    if n > 0 and key <= level_key[symbol, sidx, 0]:
        level_size[symbol, sidx, _level_find(level_key, symbol, sidx, n, key)] += delta


# ---------------------------------------------------------------------------
# Public kernels
# ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _apply(
    level_key, level_size, level_orders, level_count, untracked, side_head, index, pool, links,
    counters, symbol, action, side, order_id, price, size,
):  # fmt: skip  # noqa: ANN001, ANN202
    tag = _hash_tag(symbol, order_id)
    oid = np.int64(order_id)
    slot, row = _find(index, pool, counters, symbol, oid, tag)
    if action == ACTION_ADD:
        if row >= 0:
            return BOOK_DUPLICATE_ID
        live = counters[C_LIVE]
        if live >= counters[C_MAX_ORDERS]:
            return BOOK_TABLE_FULL
        if 2 * (live + 1) > (np.int64(1) << counters[C_INDEX_BITS]):
            _grow(index, pool, counters)
            slot, row = _find(index, pool, counters, symbol, oid, tag)
        sidx = _side_index(side)
        row = _alloc_row(links, counters)
        pool[row, P_ID] = oid
        pool[row, P_PRICE] = price
        pool[row, P_SIZE] = size
        pool[row, P_META] = 2 * symbol + sidx
        index[slot] = (tag << 32) | (row + 1)
        counters[C_LIVE] = live + 1
        _link(links, side_head, row, symbol, sidx)
        return _level_add(
            level_key, level_size, level_orders, level_count, untracked, counters,
            symbol, sidx, _key(side, price), size,
        )  # fmt: skip
    if row < 0:
        return BOOK_UNKNOWN_ORDER
    sidx = pool[row, P_META] & 1
    old_price = pool[row, P_PRICE]
    remaining = pool[row, P_SIZE]
    old_key = _side_key(sidx, old_price)
    if action == ACTION_EXECUTE and size < remaining:
        pool[row, P_SIZE] = remaining - size
        _level_resize(level_key, level_size, level_count, symbol, sidx, old_key, -size)
        return BOOK_OK
    if action == ACTION_MODIFY:
        pool[row, P_SIZE] = size
        if price == old_price:
            _level_resize(
                level_key, level_size, level_count, symbol, sidx, old_key, size - remaining
            )
            return BOOK_OK
        # Out of the side's list while the levels change, so a refill cannot see it.
        _unlink(links, side_head, row, symbol, sidx)
        _level_remove(
            level_key, level_size, level_orders, level_count, untracked, side_head, pool,
            links, counters, symbol, sidx, old_key, remaining,
        )  # fmt: skip
        pool[row, P_PRICE] = price
        _link(links, side_head, row, symbol, sidx)
        return _level_add(
            level_key, level_size, level_orders, level_count, untracked, counters,
            symbol, sidx, _side_key(sidx, price), size,
        )  # fmt: skip
    # CANCEL, or EXECUTE of everything that remains (or more).
    _unlink(links, side_head, row, symbol, sidx)
    _level_remove(
        level_key, level_size, level_orders, level_count, untracked, side_head, pool, links,
        counters, symbol, sidx, old_key, remaining,
    )  # fmt: skip
    _delete_slot(index, counters, slot)
    _free_row(pool, links, counters, row)
    counters[C_LIVE] -= 1
    if action == ACTION_EXECUTE and size > remaining:
        return BOOK_OVERFILL
    return BOOK_OK


@numba.njit(cache=True, nogil=True, _nrt=False)
def _apply_counted(
    level_key, level_size, level_orders, level_count, untracked, side_head, index, pool, links,
    counters, symbol, action, side, order_id, price, size,
):  # fmt: skip  # noqa: ANN001, ANN202
    code = _apply(
        level_key, level_size, level_orders, level_count, untracked, side_head, index, pool,
        links, counters, np.int64(symbol), np.int64(action), np.int64(side),
        np.uint64(order_id), np.int64(price), np.int64(size),
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
        state.untracked, state.side_head, state.index, state.pool, state.links, state.counters,
        symbol, action, side, order_id, price, size,
    )  # fmt: skip


@numba.njit(cache=True, nogil=True, _nrt=False)
def book_apply_batch(state, orders, out_codes):  # noqa: ANN001, ANN201
    """Apply every record of an ORDER array in order; write each event code.

    Returns the number of events whose code is not ``BOOK_OK``.
    """
    return _apply_batch(
        state.level_key, state.level_size, state.level_orders, state.level_count,
        state.untracked, state.side_head, state.index, state.pool, state.links, state.counters,
        orders, out_codes,
    )  # fmt: skip


@numba.njit(cache=True, nogil=True, _nrt=False)
def _apply_batch(
    level_key, level_size, level_orders, level_count, untracked, side_head, index, pool, links,
    counters, orders, out_codes,
):  # fmt: skip  # noqa: ANN001, ANN202
    not_ok = 0
    for k in range(orders.shape[0]):
        r = orders[k]
        code = _apply(
            level_key, level_size, level_orders, level_count, untracked, side_head, index, pool,
            links, counters, np.int64(r.symbol), np.int64(r.action), np.int64(r.side),
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
        b = n_bid - 1 - j  # levels are stored worst first
        if b >= 0:
            bid_price[j] = -keys[0, b]
            bid_size[j] = sizes[0, b]
            bid_orders[j] = counts[0, b]
            bid_total += sizes[0, b]
        else:
            bid_price[j] = 0
            bid_size[j] = 0
            bid_orders[j] = 0
        a = n_ask - 1 - j
        if a >= 0:
            ask_price[j] = keys[1, a]
            ask_size[j] = sizes[1, a]
            ask_orders[j] = counts[1, a]
            ask_total += sizes[1, a]
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
    b = state.level_count[symbol, 0] - 1  # the best level is the last one
    if b >= 0:
        bid_px = -state.level_key[symbol, 0, b]
        bid_sz = state.level_size[symbol, 0, b]
    a = state.level_count[symbol, 1] - 1
    if a >= 0:
        ask_px = state.level_key[symbol, 1, a]
        ask_sz = state.level_size[symbol, 1, a]
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
