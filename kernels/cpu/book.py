"""Per-symbol L3 order book in numba: the streaming core's book.

State is a :class:`BookState`, a NamedTuple of preallocated numpy arrays, so
every function here is an ``@njit(cache=True, nogil=True)`` function of plain
arrays and the frame kernel can call :func:`book_apply` once per ORDER record
inside its own njit call.

Layout
------
Price levels, per symbol and side (side index 0 = bids, 1 = asks), are rows
``(key, total size, order count)`` of ``levels``, the side's
``sides[symbol, side, S_COUNT]`` tracked levels kept sorted *worst first*: the
best level is the last one in use.  The key is side-normalised so that one
comparison serves both sides: ``key = -price`` for bids and ``key = price``
for asks (smaller is better).  A level is found by a walk from the best level
towards the worst, and a new or emptied level shifts only the levels better
than it; most L3 activity is near the touch, so both are short (on the
synthetic 64-symbol flow: 3.5 levels walked per event, 2.8 levels shifted per
level created or emptied, against 16 with best-first storage).  A row of
``sides`` (32 bytes) also holds the untracked-order count and the head of the
side's order list, so the level bookkeeping of an event touches one line of
``sides`` and the lines of its levels.

Orders live in ``pool``, a dense array of 32-byte rows (order id, price,
remaining size, ``2 * symbol + side index``); a freed row goes on a free list
(linked through ``links``) and is the next one reused, so the rows in use stay
packed at the front of the pool whatever the history.  ``links`` holds the
int32 next/previous row of each order in its (symbol, side) list.

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
``8 * max_orders`` (56 MiB for ``max_orders = 2**20``); ``levels`` takes
``48 * (max_levels + spare_levels)`` bytes per symbol.  Arrays of 2 MiB or more are anonymous
mmaps that use transparent huge pages where allowed; their pages become
resident only when first written, i.e. as the live orders reach them (the
index prefix in use, the pool rows up to the most orders ever live at once),
so the resident size follows the book, not ``max_orders``.  The index starts
sized for ``reserve_orders`` orders; each doubling rehashes every live order
once, a pause of about 20 ns per live order (measured: 0.06 ms at 4 k live
orders, 10 ms at 512 k, 40 ms when that doubling first faults its 8 MiB of
new index pages in); pass ``reserve_orders = max_orders`` to never rehash and
make every page resident up front.  The prefix never shrinks, except by
:func:`reset_book`.

Level overflow policy
---------------------
``max_levels`` is what a book *reports*: ``bid_levels``/``ask_levels`` are
``min(levels, max_levels)``, the TOP_N snapshot shows at most ``max_levels``
levels, and ``BOOK_LEVEL_OVERFLOW`` is returned by an ADD or a price-changing
MODIFY after which the side has more than ``max_levels`` levels and the order
rests beyond the best ``max_levels`` of them or opened a new level (exactly the
reference's rule).  The level rows of a side are a window of ``max_levels +
spare_levels`` rows that holds the side's best ``n`` levels exactly, with
``n >= min(levels, max_levels)`` at all times; the orders of worse levels stay
in the pool ("untracked", counted in ``sides[..., S_UNTRACKED]``).  A new level
better than the worst tracked one on a full window evicts the worst (its orders
become untracked); a level worse than every tracked one joins the untracked
orders when some exist or the window is full.  Only when fewer than
``max_levels`` levels stay tracked while untracked orders exist does one walk
over that symbol-side's order list (not the pool) rebuild the best untracked
levels, as many as the window has free rows (at least ``spare_levels + 1``).
So between two walks of a side at least ``spare_levels + 1`` of its tracked
levels have emptied: the walk's cost is spread over them, whatever
``max_levels`` is.  (With a window of exactly ``max_levels`` rows, as before,
every emptied level of a side in overflow cost a walk of all its orders: on the
real Bitstamp capture 5-9 us per order event at 8 to 1024 levels.)  The TOP_N
snapshot is exact at all times, overflow or not.

Performance notes
-----------------
The kernels are compiled with numba's ``_nrt=False`` option (they allocate
nothing): without it every read of an array out of the NamedTuple, and every
call passing arrays, costs an atomic NRT incref/decref pair.  The per-event
path (:func:`book_apply`, ``_apply`` and the helpers that touch the index and
the levels) is ``inline="always"``: numba pastes it into the caller's loop,
the frame kernel's included, so no event pays a call that passes the state's
arrays (about a hundred words of shape, stride and data pointers) on the
stack.  Numba copies an inlined body once per call site, so each of those
helpers has one call site in ``_apply``, and the tiny ones (hash, links, one
level row) are plain functions that LLVM inlines by itself; this keeps a cold
compile of a caller to a few seconds.  Only the rare paths (index growth,
level eviction and refill) are calls.  Numba's cache alone would not see
that a caller in another file (``kernels/cpu/streaming.py``) inlined this
code; that module stamps its cache entries with a hash of this file's source
(``kernels/cpu/cache.py``), and this module does the same for the reference
codes and the schema it freezes.
"""

from __future__ import annotations

import mmap
from typing import NamedTuple

import numba
import numpy as np

from tickpath.engine.wire import schema as _schema
from tickpath.engine.wire.schema import (
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
from tickpath.kernels.cpu.cache import stamp_dependencies
from tickpath.kernels.reference import book as _reference
from tickpath.kernels.reference.book import (
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

# Columns of a row of ``BookState.levels``.
V_KEY = 0  # -price for bids, price for asks: smaller is better
V_SIZE = 1  # total remaining lots
V_ORDERS = 2  # orders at the level
V_WIDTH = 3

# Columns of a row of ``BookState.sides``.
S_COUNT = 0  # tracked levels in use
S_UNTRACKED = 1  # live orders beyond the tracked levels
S_HEAD = 2  # first pool row of the side's order list, NIL if none
S_WIDTH = 4  # 32 bytes (column 3 is padding): both sides of a symbol share a line

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
C_MAX_LEVELS = 12  # configured max_levels: the levels reported and the overflow codes' bound
C_EVENTS = 13  # C_EVENTS + code: events returned with that code
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
        levels: int64 ``[n_symbols, 2, max_levels + spare_levels, 3]``, tracked
            levels ``(key, size, orders)`` worst first (see the module doc).
        sides: int64 ``[n_symbols, 2, 4]``, per side: tracked levels in use,
            untracked orders, first pool row of the side's order list.
        index: int64 ``[capacity]``, the hash index (see the module doc).
        pool: int64 ``[max_orders, 4]``, the order rows.
        links: int32 ``[max_orders, 2]``, list links of the order rows.
        scratch: int64 ``[max_levels + spare_levels, 3]``, the refill's candidate levels.
        counters: int64 ``[N_COUNTERS]``, live orders, limits, allocator and statistics.
    """

    levels: np.ndarray
    sides: np.ndarray
    index: np.ndarray
    pool: np.ndarray
    links: np.ndarray
    scratch: np.ndarray
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
    spare_levels: int | None = None,
) -> BookState:
    """Allocate empty books for ``n_symbols`` symbols.

    Args:
        n_symbols: symbols are ``0 .. n_symbols - 1``.
        max_levels: price levels tracked exactly per symbol and side (>= TOP_N
            recommended; fewer still works, the snapshot then shows fewer levels).
        max_orders: live orders, all symbols together (at most ``2**31 - 1``);
            40 bytes of pool and links per order, and 8 bytes per index slot
            (the next power of two >= ``2 * max_orders`` slots).
        reserve_orders: orders the book is ready for without a pause: the
            index starts sized for them and their pool rows are made resident
            (default ``min(max_orders, 4096)``).  Beyond them the index doubles
            as needed; ``max_orders`` never rehashes and faults every page in now.
        spare_levels: level rows per side beyond ``max_levels`` (default
            ``max(64, min(max_levels, 1024))``): one walk of a side's orders
            refills them all, so walks happen at most once per ``spare_levels + 1``
            emptied levels (see the module's overflow policy); 0 is the policy
            before: one walk per emptied level while levels are untracked.
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
    if spare_levels is None:
        spare_levels = default_spare_levels(max_levels)
    if spare_levels < 0:
        raise ValueError("spare_levels must be >= 0")
    window = max_levels + spare_levels
    state = BookState(
        levels=_zeroed((n_symbols, 2, window, V_WIDTH), np.int64),
        sides=_zeroed((n_symbols, 2, S_WIDTH), np.int64),
        index=_zeroed((1 << _capacity_bits(max_orders),), np.int64),
        pool=_zeroed((max_orders, P_WIDTH), np.int64),
        links=_zeroed((max_orders, 2), np.int32),
        counters=np.zeros(N_COUNTERS, dtype=np.int64),
        scratch=np.zeros((window, V_WIDTH), dtype=np.int64),
    )
    state.sides[:, :, S_HEAD] = NIL
    c = state.counters
    c[C_MAX_ORDERS] = max_orders
    c[C_MAX_LEVELS] = max_levels
    c[C_RESERVE_BITS] = c[C_INDEX_BITS] = _capacity_bits(reserve_orders)
    c[C_FREE_HEAD] = NIL
    _make_resident(state)
    return state


def default_spare_levels(max_levels: int) -> int:
    """The level rows per side kept beyond ``max_levels`` by default."""
    return max(64, min(max_levels, 1024))


def _make_resident(state: BookState) -> None:
    """Write (zero) the index prefix in use and the reserved pool rows: their pages are
    faulted in now rather than by the first events that reach them."""
    c = state.counters
    state.index[: 1 << int(c[C_INDEX_BITS])] = EMPTY
    reserve = min(state.pool.shape[0], 1 << max(0, int(c[C_RESERVE_BITS]) - 1))
    state.pool[:reserve] = 0
    state.links[:reserve] = 0


def reset_book(state: BookState) -> None:
    """Empty every book and zero the statistics (keeps the configured limits).

    Afterwards every array equals that of a new state with the same arguments.
    Only what was used is cleared: the index prefix in use and the pool rows
    below the high-water mark.
    """
    c = state.counters
    state.levels.fill(0)
    state.sides.fill(0)
    state.sides[:, :, S_HEAD] = NIL
    state.index[: 1 << int(c[C_INDEX_BITS])] = EMPTY
    used = int(c[C_HIGH_WATER])
    state.pool[:used] = 0
    state.links[:used] = 0
    max_orders, reserve_bits = int(c[C_MAX_ORDERS]), int(c[C_RESERVE_BITS])
    max_levels = int(c[C_MAX_LEVELS])
    c.fill(0)
    state.scratch.fill(0)
    c[C_MAX_ORDERS] = max_orders
    c[C_MAX_LEVELS] = max_levels
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
    rows = state.levels[symbol, sidx, : int(state.sides[symbol, sidx, S_COUNT])]
    return [(sign * int(k), int(s), int(n)) for k, s, n in rows[::-1].tolist()]


# ---------------------------------------------------------------------------
# Hash index and order pool
# ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, _nrt=False)
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
def _empty_slot(index, bits, tag):  # noqa: ANN001, ANN202
    """The first empty slot from the home of ``tag`` (where an absent key goes)."""
    mask = (np.int64(1) << bits) - 1
    slot = tag >> (32 - bits)
    while index[slot] != EMPTY:
        slot = (slot + 1) & mask
    return slot


@numba.njit(cache=True, nogil=True, _nrt=False)
def _grow(index, pool, counters, tag):  # noqa: ANN001, ANN202
    """Double the index prefix in use, rebuild it from the live pool rows and return
    the empty slot where the absent key of ``tag`` now goes."""
    bits = counters[C_INDEX_BITS]
    for slot in range(np.int64(1) << bits):
        index[slot] = EMPTY
    bits += 1
    counters[C_INDEX_BITS] = bits
    counters[C_INDEX_GROWS] += 1
    for row in range(counters[C_HIGH_WATER]):
        meta = pool[row, P_META]
        if meta != FREE:
            key_tag = _hash_tag(meta >> 1, pool[row, P_ID])
            index[_empty_slot(index, bits, key_tag)] = (key_tag << 32) | (row + 1)
    return _empty_slot(index, bits, tag)


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


@numba.njit(cache=True, nogil=True, _nrt=False)
def _alloc_row(links, counters):  # noqa: ANN001, ANN202
    row = counters[C_FREE_HEAD]
    if row != NIL:
        counters[C_FREE_HEAD] = links[row, L_NEXT]
        return row
    row = counters[C_HIGH_WATER]
    counters[C_HIGH_WATER] = row + 1
    return row


@numba.njit(cache=True, nogil=True, _nrt=False)
def _free_row(pool, links, counters, row):  # noqa: ANN001, ANN202
    pool[row, P_META] = FREE
    links[row, L_NEXT] = counters[C_FREE_HEAD]
    links[row, L_PREV] = NIL
    counters[C_FREE_HEAD] = row


@numba.njit(cache=True, nogil=True, _nrt=False)
def _link(links, sides, row, symbol, sidx):  # noqa: ANN001, ANN202
    head = sides[symbol, sidx, S_HEAD]
    links[row, L_PREV] = NIL
    links[row, L_NEXT] = head
    if head != NIL:
        links[head, L_PREV] = row
    sides[symbol, sidx, S_HEAD] = row


@numba.njit(cache=True, nogil=True, _nrt=False)
def _unlink(links, sides, row, symbol, sidx):  # noqa: ANN001, ANN202
    prev = links[row, L_PREV]
    nxt = links[row, L_NEXT]
    if prev == NIL:
        sides[symbol, sidx, S_HEAD] = nxt
    else:
        links[prev, L_NEXT] = nxt
    if nxt != NIL:
        links[nxt, L_PREV] = prev


@numba.njit(cache=True, nogil=True, _nrt=False)
def _side_index(side):  # noqa: ANN001, ANN202
    return 0 if side == SIDE_BUY else 1


@numba.njit(cache=True, nogil=True, _nrt=False)
def _side_key(sidx, price):  # noqa: ANN001, ANN202
    return -price if sidx == 0 else price


# ---------------------------------------------------------------------------
# Price levels (rows of ``levels``, worst first)
# ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, _nrt=False)
def _level_find(levels, symbol, sidx, n, key):  # noqa: ANN001, ANN202
    """Index of the best tracked level whose key is ``>= key``, -1 if none
    (a walk from the best level, the last, towards the worst)."""
    j = n - 1
    while j >= 0 and levels[symbol, sidx, j, V_KEY] < key:
        j -= 1
    return j


@numba.njit(cache=True, nogil=True, _nrt=False)
def _level_copy(levels, symbol, sidx, dst, src):  # noqa: ANN001, ANN202
    levels[symbol, sidx, dst, V_KEY] = levels[symbol, sidx, src, V_KEY]
    levels[symbol, sidx, dst, V_SIZE] = levels[symbol, sidx, src, V_SIZE]
    levels[symbol, sidx, dst, V_ORDERS] = levels[symbol, sidx, src, V_ORDERS]


@numba.njit(cache=True, nogil=True, _nrt=False)
def _level_set(levels, symbol, sidx, j, key, size, orders):  # noqa: ANN001, ANN202
    levels[symbol, sidx, j, V_KEY] = key
    levels[symbol, sidx, j, V_SIZE] = size
    levels[symbol, sidx, j, V_ORDERS] = orders


@numba.njit(cache=True, nogil=True, _nrt=False)
def _evict_insert(levels, sides, counters, symbol, sidx, j, key, size):  # noqa: ANN001, ANN202
    """On a full side, evict the worst level (row 0; its orders become untracked)
    and insert a new level of one order just above row ``j``."""
    sides[symbol, sidx, S_UNTRACKED] += levels[symbol, sidx, 0, V_ORDERS]
    counters[C_EVICTIONS] += 1
    for k in range(j):
        _level_copy(levels, symbol, sidx, k, k + 1)
    _level_set(levels, symbol, sidx, j, key, size, 1)


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _level_add(levels, sides, counters, symbol, sidx, key, size):  # noqa: ANN001, ANN202
    """Add one order of ``size`` lots at ``key``; BOOK_LEVEL_OVERFLOW if, afterwards, the
    side has more than ``max_levels`` levels and the order rests beyond the best
    ``max_levels`` of them or opened a new level, else BOOK_OK."""
    n = sides[symbol, sidx, S_COUNT]
    max_levels = counters[C_MAX_LEVELS]
    j = _level_find(levels, symbol, sidx, n, key)
    if j >= 0 and levels[symbol, sidx, j, V_KEY] == key:
        levels[symbol, sidx, j, V_SIZE] += size
        levels[symbol, sidx, j, V_ORDERS] += 1
        # rank n - 1 - j from the best; a rank >= max_levels implies n > max_levels
        return BOOK_LEVEL_OVERFLOW if n - 1 - j >= max_levels else BOOK_OK
    # A new level, between row j (worse) and row j + 1 (better).
    untracked = sides[symbol, sidx, S_UNTRACKED]
    if j < 0 and (untracked > 0 or n == levels.shape[2]):
        # Worse than every tracked level while untracked orders exist (so n >= max_levels)
        # or the window is full: it joins the untracked orders.
        sides[symbol, sidx, S_UNTRACKED] = untracked + 1
        return BOOK_LEVEL_OVERFLOW
    if n == levels.shape[2]:  # a full window (n > max_levels): the worst level leaves it
        _evict_insert(levels, sides, counters, symbol, sidx, j, key, size)
        return BOOK_LEVEL_OVERFLOW
    for k in range(n, j + 1, -1):
        _level_copy(levels, symbol, sidx, k, k - 1)
    _level_set(levels, symbol, sidx, j + 1, key, size, 1)
    sides[symbol, sidx, S_COUNT] = n + 1
    # untracked orders exist only while n >= max_levels: the side now has > max_levels levels
    return BOOK_LEVEL_OVERFLOW if n + 1 > max_levels or untracked > 0 else BOOK_OK


@numba.njit(cache=True, nogil=True, _nrt=False)
def _refill(levels, sides, pool, links, counters, scratch, symbol, sidx):  # noqa: ANN001, ANN202
    """Fill the window's free rows with the best untracked levels of a side, rebuilt in
    one walk of the side's order list; they become its worst tracked levels."""
    n = sides[symbol, sidx, S_COUNT]
    room = levels.shape[2] - n
    worst = levels[symbol, sidx, 0, V_KEY] if n > 0 else -_INT64_MAX - 1
    # scratch[:c]: the best c distinct untracked keys seen so far, best first
    c = 0
    row = sides[symbol, sidx, S_HEAD]
    while row != NIL:
        k = _side_key(sidx, pool[row, P_PRICE])
        row_size = pool[row, P_SIZE]
        row = links[row, L_NEXT]
        if k <= worst or (c == room and k > scratch[c - 1, V_KEY]):
            continue  # tracked, or worse than the room holds
        lo = 0
        hi = c
        while lo < hi:
            mid = (lo + hi) >> 1
            if scratch[mid, V_KEY] < k:
                lo = mid + 1
            else:
                hi = mid
        if lo < c and scratch[lo, V_KEY] == k:
            scratch[lo, V_SIZE] += row_size
            scratch[lo, V_ORDERS] += 1
            continue
        if c < room:
            c += 1
        for t in range(c - 1, lo, -1):  # the worst falls off when the room was full
            scratch[t, V_KEY] = scratch[t - 1, V_KEY]
            scratch[t, V_SIZE] = scratch[t - 1, V_SIZE]
            scratch[t, V_ORDERS] = scratch[t - 1, V_ORDERS]
        scratch[lo, V_KEY] = k
        scratch[lo, V_SIZE] = row_size
        scratch[lo, V_ORDERS] = 1
    if c == 0:
        return
    for k in range(n - 1, -1, -1):
        _level_copy(levels, symbol, sidx, k + c, k)
    taken = 0
    for i in range(c):
        _level_set(
            levels, symbol, sidx, c - 1 - i, scratch[i, V_KEY], scratch[i, V_SIZE],
            scratch[i, V_ORDERS],
        )  # fmt: skip
        taken += scratch[i, V_ORDERS]
    sides[symbol, sidx, S_COUNT] = n + c
    sides[symbol, sidx, S_UNTRACKED] -= taken
    counters[C_REFILLS] += 1


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _level_remove(levels, sides, pool, links, counters, scratch, symbol, sidx, key, size):  # noqa: ANN001, ANN202
    """Remove one order of ``size`` lots at ``key`` (the order must be unlinked)."""
    n = sides[symbol, sidx, S_COUNT]
    if n == 0 or key > levels[symbol, sidx, 0, V_KEY]:  # beyond the worst tracked level
        sides[symbol, sidx, S_UNTRACKED] -= 1
        return
    j = _level_find(levels, symbol, sidx, n, key)  # tracked, so levels[j] is its level
    levels[symbol, sidx, j, V_ORDERS] -= 1
    levels[symbol, sidx, j, V_SIZE] -= size
    if levels[symbol, sidx, j, V_ORDERS] > 0:
        return
    for k in range(j, n - 1):
        _level_copy(levels, symbol, sidx, k, k + 1)
    sides[symbol, sidx, S_COUNT] = n - 1
    if n - 1 < counters[C_MAX_LEVELS] and sides[symbol, sidx, S_UNTRACKED] > 0:
        _refill(levels, sides, pool, links, counters, scratch, symbol, sidx)


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _level_resize(levels, sides, symbol, sidx, key, delta):  # noqa: ANN001, ANN202
    """Change the size at ``key`` by ``delta`` lots (nothing if the level is untracked)."""
    n = sides[symbol, sidx, S_COUNT]
    if n > 0 and key <= levels[symbol, sidx, 0, V_KEY]:
        levels[symbol, sidx, _level_find(levels, symbol, sidx, n, key), V_SIZE] += delta


# ---------------------------------------------------------------------------
# Public kernels
# ---------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def _apply(
    levels,
    sides,
    index,
    pool,
    links,
    counters,
    scratch,
    symbol,
    action,
    side,
    order_id,
    price,
    size,
):  # noqa: ANN001, ANN202
    # Each helper has a single call site here: numba copies an inlined body per site.
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
            slot = _grow(index, pool, counters, tag)
        sidx = _side_index(side)
        row = _alloc_row(links, counters)
        pool[row, P_ID] = oid
        pool[row, P_META] = 2 * symbol + sidx
        index[slot] = (tag << 32) | (row + 1)
        counters[C_LIVE] = live + 1
    else:
        if row < 0:
            return BOOK_UNKNOWN_ORDER
        sidx = pool[row, P_META] & 1
        old_price = pool[row, P_PRICE]
        remaining = pool[row, P_SIZE]
        old_key = _side_key(sidx, old_price)
        execute = action == ACTION_EXECUTE
        if (execute and size < remaining) or (action == ACTION_MODIFY and price == old_price):
            new_size = remaining - size if execute else size
            pool[row, P_SIZE] = new_size
            _level_resize(levels, sides, symbol, sidx, old_key, new_size - remaining)
            return BOOK_OK
        # Out of the side's list while the levels change, so a refill cannot see it.
        _unlink(links, sides, row, symbol, sidx)
        _level_remove(
            levels, sides, pool, links, counters, scratch, symbol, sidx, old_key, remaining
        )
        if action != ACTION_MODIFY:  # CANCEL, or EXECUTE of all that remains (or more)
            _delete_slot(index, counters, slot)
            _free_row(pool, links, counters, row)
            counters[C_LIVE] -= 1
            if execute and size > remaining:
                return BOOK_OVERFILL
            return BOOK_OK
    # ADD, or MODIFY to a new price: the order now rests at ``price`` with ``size`` lots.
    pool[row, P_PRICE] = price
    pool[row, P_SIZE] = size
    _link(links, sides, row, symbol, sidx)
    return _level_add(levels, sides, counters, symbol, sidx, _side_key(sidx, price), size)


@numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
def book_apply(state, symbol, action, side, order_id, price, size):  # noqa: ANN001, ANN201
    """Apply one validated ORDER event to the book of ``symbol``.

    Inlined into the calling njit function (see the module's performance notes).

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
    counters = state.counters
    code = _apply(
        state.levels, state.sides, state.index, state.pool, state.links, counters, state.scratch,
        np.int64(symbol), np.int64(action), np.int64(side), np.uint64(order_id),
        np.int64(price), np.int64(size),
    )  # fmt: skip
    counters[C_EVENTS + code] += 1
    return code


@numba.njit(cache=True, nogil=True, _nrt=False)
def book_apply_batch(state, orders, out_codes):  # noqa: ANN001, ANN201
    """Apply every record of an ORDER array in order; write each event code.

    Returns the number of events whose code is not ``BOOK_OK``.
    """
    not_ok = 0
    for k in range(orders.shape[0]):
        r = orders[k]
        code = book_apply(state, r.symbol, r.action, r.side, r.order_id, r.price, r.size)
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
    levels = state.levels
    max_levels = state.counters[C_MAX_LEVELS]
    n_bid = min(state.sides[symbol, 0, S_COUNT], max_levels)  # the levels reported
    n_ask = min(state.sides[symbol, 1, S_COUNT], max_levels)
    top_bid = state.sides[symbol, 0, S_COUNT] - 1  # levels are stored worst first
    top_ask = state.sides[symbol, 1, S_COUNT] - 1
    bid_total = 0
    ask_total = 0
    for j in range(TOP_N):
        b = top_bid - j if j < n_bid else -1
        if b >= 0:
            bid_price[j] = -levels[symbol, 0, b, V_KEY]
            bid_size[j] = levels[symbol, 0, b, V_SIZE]
            bid_orders[j] = levels[symbol, 0, b, V_ORDERS]
            bid_total += levels[symbol, 0, b, V_SIZE]
        else:
            bid_price[j] = 0
            bid_size[j] = 0
            bid_orders[j] = 0
        a = top_ask - j if j < n_ask else -1
        if a >= 0:
            ask_price[j] = levels[symbol, 1, a, V_KEY]
            ask_size[j] = levels[symbol, 1, a, V_SIZE]
            ask_orders[j] = levels[symbol, 1, a, V_ORDERS]
            ask_total += levels[symbol, 1, a, V_SIZE]
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
    b = state.sides[symbol, 0, S_COUNT] - 1  # the best level is the last one
    if b >= 0:
        bid_px = -state.levels[symbol, 0, b, V_KEY]
        bid_sz = state.levels[symbol, 0, b, V_SIZE]
    a = state.sides[symbol, 1, S_COUNT] - 1
    if a >= 0:
        ask_px = state.levels[symbol, 1, a, V_KEY]
        ask_sz = state.levels[symbol, 1, a, V_SIZE]
    return bid_px, bid_sz, ask_px, ask_sz


def warm_up() -> None:
    """Compile (or load from cache) every kernel on a tiny state.

    Call at start-up so that no tick waits for the JIT.  Arguments use the
    ORDER record's field types, as a frame kernel reading records passes them.
    """
    state = new_book_state(2, max_levels=2, max_orders=8, reserve_orders=1)
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


stamp_dependencies(globals(), [_schema, _reference])
