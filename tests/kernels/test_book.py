"""The numba L3 book (kernels.cpu.book) against the reference (kernels.reference.book).

Every property test replays a random ORDER stream through both books and
compares the event code and the TOP_N snapshot after every event, then checks
the numba book's internal invariants (hash-index reachability and load, pool
free list, level aggregates, overflow bookkeeping, per-side order lists)
against a recount.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from tickpath.kernels.cpu import book as nb
from tickpath.kernels.reference.book import ReferenceBook

BOOK_FIELDS = (
    "bid_price",
    "bid_size",
    "bid_orders",
    "ask_price",
    "ask_size",
    "ask_orders",
    "bid_levels",
    "ask_levels",
)


@pytest.fixture(scope="module", autouse=True)
def _compiled():
    nb.warm_up()


def make_orders(events) -> np.ndarray:
    """ORDER records from ``(symbol, action, side, order_id, price, size)`` tuples."""
    orders = np.zeros(len(events), dtype=ORDER)
    for k, (symbol, action, side, order_id, price, size) in enumerate(events):
        orders[k] = (k, symbol, action, side, 0, order_id, price, size)
    return orders


def record_snapshot(rec) -> dict:
    snap = {name: rec[name].tolist() for name in BOOK_FIELDS}
    snap["depth_imbalance"] = float(rec["depth_imbalance"])
    return snap


def assert_same_snapshot(got: dict, want: dict, where: str) -> None:
    for name in BOOK_FIELDS:
        assert got[name] == want[name], f"{where}: {name} {got[name]} != {want[name]}"
    g, w = got["depth_imbalance"], want["depth_imbalance"]
    assert (math.isnan(g) and math.isnan(w)) or g == w, f"{where}: depth_imbalance {g} != {w}"


def live_rows(state: nb.BookState) -> np.ndarray:
    """Pool rows holding a live order (below the high-water mark, not free)."""
    used = int(state.counters[nb.C_HIGH_WATER])
    return np.flatnonzero(state.pool[:used, nb.P_META] != nb.FREE)


def check_invariants(state: nb.BookState, ref: ReferenceBook) -> None:
    """Recount everything the numba book keeps incrementally, from its pool and index."""
    pool, links, index, counters = state.pool, state.links, state.index, state.counters
    used = int(counters[nb.C_HIGH_WATER])
    rows = live_rows(state)
    assert len(rows) == counters[nb.C_LIVE] == ref.live
    # Free list: exactly the free rows below the high-water mark, each once.
    free, row = set(), int(counters[nb.C_FREE_HEAD])
    while row != nb.NIL:
        assert 0 <= row < used and pool[row, nb.P_META] == nb.FREE and row not in free
        free.add(row)
        row = int(links[row, nb.L_NEXT])
    assert len(free) + len(rows) == used
    # Index: load <= 1/2, nothing beyond the prefix in use, one entry per live row whose
    # tag is the row's key's tag, and linear probing without tombstones: no empty slot
    # between a key's home and its slot.
    bits = int(counters[nb.C_INDEX_BITS])
    capacity = 1 << bits
    assert capacity <= index.shape[0] and 2 * len(rows) <= capacity
    assert not index[capacity:].any()
    slots = np.flatnonzero(index[:capacity] != nb.EMPTY)
    entries = index[slots].view(np.uint64)
    entry_rows = (entries & np.uint64(0xFFFFFFFF)).astype(np.int64) - 1
    assert sorted(entry_rows.tolist()) == sorted(rows.tolist())
    for slot, entry, row in zip(slots, entries, entry_rows, strict=True):
        meta = int(pool[row, nb.P_META])
        tag = int(nb._hash_tag(meta >> 1, np.uint64(pool[row, nb.P_ID].view(np.uint64))))
        assert int(entry) >> 32 == tag
        home = tag >> (32 - bits)
        j = home
        while j != slot:
            assert index[j] != nb.EMPTY, f"slot {slot} unreachable from {home}"
            j = (j + 1) % capacity
    orders_by_side: dict[tuple[int, int], dict[int, tuple[int, int]]] = {}
    for row in rows:
        meta = int(pool[row, nb.P_META])
        sym, side = meta >> 1, (SIDE_BUY, SIDE_SELL)[meta & 1]
        oid = int(np.int64(pool[row, nb.P_ID]).view(np.uint64))
        price, size = int(pool[row, nb.P_PRICE]), int(pool[row, nb.P_SIZE])
        orders_by_side.setdefault((sym, side), {})[oid] = (price, size)
        assert ref.orders[sym][oid] == [side, price, size]
    max_levels = int(state.counters[nb.C_MAX_LEVELS])
    window = state.levels.shape[2]
    for sym in range(state.sides.shape[0]):
        for sidx, side in ((0, SIDE_BUY), (1, SIDE_SELL)):
            orders = orders_by_side.get((sym, side), {})
            # The side's order list holds exactly its orders, doubly linked.
            seen = set()
            prev, row = nb.NIL, int(state.sides[sym, sidx, nb.S_HEAD])
            while row != nb.NIL:
                assert links[row, nb.L_PREV] == prev and row not in seen
                assert pool[row, nb.P_META] == 2 * sym + sidx
                seen.add(row)
                prev, row = row, int(links[row, nb.L_NEXT])
            assert len(seen) == len(orders)
            levels = ref.levels(sym, side)
            # the reference's incremental levels are those of its orders
            assert levels == ref.levels_recomputed(sym, side)
            n = state.sides[sym, sidx, nb.S_COUNT]
            # the tracked window holds the best n levels: at least max_levels of them when
            # the side has that many (what is reported), at most the window's rows
            assert min(len(levels), max_levels) <= n <= min(len(levels), window)
            # Level rows are stored worst first: row n - 1 is the best level.
            sign = -1 if side == SIDE_BUY else 1
            for j in range(n):
                got = (
                    sign * int(state.levels[sym, sidx, n - 1 - j, nb.V_KEY]),
                    int(state.levels[sym, sidx, n - 1 - j, nb.V_SIZE]),
                    int(state.levels[sym, sidx, n - 1 - j, nb.V_ORDERS]),
                )
                assert got == levels[j]
            assert nb.tracked_levels(state, sym, side) == levels[:n]
            assert state.sides[sym, sidx, nb.S_UNTRACKED] == sum(c for _, _, c in levels[n:])


def replay_and_compare(
    events,
    n_symbols: int,
    max_levels: int,
    max_orders: int,
    reserve_orders: int | None = None,
    spare_levels: int | None = None,
) -> nb.BookState:
    """Replay through book_replay (one njit call) and the reference; compare every event."""
    state = nb.new_book_state(n_symbols, max_levels, max_orders, reserve_orders, spare_levels)
    ref = ReferenceBook(n_symbols, max_levels=max_levels, max_orders=max_orders)
    orders = make_orders(events)
    codes = np.full(len(events), -1, dtype=np.int64)
    out = np.zeros(len(events), dtype=RESULT_BOOK)
    not_ok = nb.book_replay(state, orders, codes, out)
    for k, (symbol, action, side, order_id, price, size) in enumerate(events):
        want_code = ref.apply(symbol, action, side, order_id, price, size)
        assert codes[k] == want_code, f"event {k} {events[k]}: code {codes[k]} != {want_code}"
        assert out[k]["symbol"] == symbol
        assert_same_snapshot(record_snapshot(out[k]), ref.snapshot(symbol), f"event {k}")
    assert not_ok == int(np.count_nonzero(codes != nb.BOOK_OK))
    check_invariants(state, ref)
    for symbol in range(n_symbols):
        assert nb.best_bid_ask(state, symbol) == ref.best_bid_ask(symbol)
    return state


ACTIONS = st.sampled_from([ACTION_ADD] * 4 + [ACTION_MODIFY] * 2 + [ACTION_CANCEL, ACTION_EXECUTE])


@st.composite
def event_streams(draw, n_symbols: int, n_ids: int, n_prices: int, max_events: int = 300):
    """Random L3 streams over few ids and prices: duplicates, unknown ids, equal prices,
    size-only and price-moving modifies, partial, exact and over-fills all occur."""
    base_price = draw(st.integers(1, 10**12))
    id_base = draw(st.sampled_from([0, 2**40, 2**64 - n_ids]))
    n_events = draw(st.integers(1, max_events))
    events = draw(
        st.lists(
            st.tuples(
                st.integers(0, n_symbols - 1),
                ACTIONS,
                st.sampled_from([SIDE_BUY, SIDE_SELL]),
                st.integers(0, n_ids - 1),
                st.integers(0, n_prices - 1),
                st.integers(1, 12),
                st.booleans(),
                st.integers(0, 9),
            ),
            min_size=n_events,
            max_size=n_events,
        )
    )
    stream = []
    prices: dict[tuple[int, int], int] = {}  # last price of an id, for size-only modifies
    added: list[tuple[int, int]] = []  # (symbol, id) of every ADD so far
    for symbol, action, side, oid, price_step, size, keep_price, pick in events:
        price = base_price + price_step
        order_id = id_base + oid
        if action != ACTION_ADD and added and pick < 8:
            # Mostly target ids that were added (live or gone), sometimes random ones.
            symbol, order_id = added[(oid * 7 + pick) % len(added)]
        if action == ACTION_ADD:
            added.append((symbol, order_id))
        if action == ACTION_MODIFY and keep_price and (symbol, order_id) in prices:
            price = prices[(symbol, order_id)]
        if action in (ACTION_ADD, ACTION_MODIFY):
            prices[(symbol, order_id)] = price
        record_side = side if action == ACTION_ADD else draw(st.sampled_from([0, side]))
        if action == ACTION_CANCEL:
            price, size = 0, 0
        if action == ACTION_EXECUTE:
            price = 0
        stream.append((symbol, action, record_side, order_id, price, size))
    return stream


PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(events=event_streams(n_symbols=1, n_ids=24, n_prices=12))
def test_one_symbol_matches_reference(events):
    replay_and_compare(events, n_symbols=1, max_levels=64, max_orders=1 << 10)


@PROPERTY
@given(
    events=event_streams(n_symbols=1, n_ids=40, n_prices=16, max_events=400),
    max_levels=st.integers(1, 8),
)
def test_level_overflow_matches_reference(events, max_levels):
    replay_and_compare(events, n_symbols=1, max_levels=max_levels, max_orders=1 << 10)


@PROPERTY
@given(
    events=event_streams(n_symbols=2, n_ids=60, n_prices=24, max_events=400),
    max_levels=st.integers(1, 8),
    spare_levels=st.integers(0, 4),
)
def test_levels_leaving_a_small_window_match_reference(events, max_levels, spare_levels):
    """A window of few spare rows (none: one walk per emptied level): levels leave it
    (evictions) and come back (refills of several levels in one walk) all the time;
    every event still matches the reference."""
    replay_and_compare(events, 2, max_levels, max_orders=1 << 10, spare_levels=spare_levels)


@PROPERTY
@given(
    events=event_streams(n_symbols=6, n_ids=16, n_prices=8),
    max_levels=st.sampled_from([2, 3, TOP_N, 16]),
    max_orders=st.integers(1, 40),
)
def test_many_symbols_small_table_matches_reference(events, max_levels, max_orders):
    replay_and_compare(events, n_symbols=6, max_levels=max_levels, max_orders=max_orders)


@PROPERTY
@given(
    events=event_streams(n_symbols=4, n_ids=60, n_prices=10, max_events=400),
    max_levels=st.sampled_from([2, TOP_N, 64]),
)
def test_growing_index_matches_reference(events, max_levels):
    """An index sized for one order doubles as orders arrive, in the middle of random
    streams; every event and the rebuilt index still match the reference."""
    state = replay_and_compare(events, 4, max_levels, max_orders=1 << 10, reserve_orders=1)
    stats = nb.book_stats(state)
    peak = stats["pool_high_water"]  # rows are reused first: the most orders live at once
    assert stats["index_slots_in_use"] == max(2, 1 << (2 * peak - 1).bit_length())
    assert stats["index_grows"] == stats["index_slots_in_use"].bit_length() - 2


@settings(max_examples=60, deadline=None)
@given(events=event_streams(n_symbols=3, n_ids=12, n_prices=6, max_events=80))
def test_per_event_calls_match_batch(events):
    """book_apply + book_fill_top called one event at a time agree with book_replay."""
    state = nb.new_book_state(3, max_levels=4, max_orders=16)
    batch_state = nb.new_book_state(3, max_levels=4, max_orders=16)
    orders = make_orders(events)
    codes = np.zeros(len(events), dtype=np.int64)
    nb.book_apply_batch(batch_state, orders, codes)
    out = np.zeros(1, dtype=RESULT_BOOK)
    for k, r in enumerate(orders):
        code = nb.book_apply(state, r["symbol"], r["action"], r["side"], r["order_id"],
                             r["price"], r["size"])  # fmt: skip
        assert code == codes[k]
        nb.book_fill_top(state, r["symbol"], out, 0)
    for sym in range(3):
        nb.book_fill_top(state, sym, out, 0)
        a = record_snapshot(out[0])
        nb.book_fill_top(batch_state, sym, out, 0)
        assert_same_snapshot(a, record_snapshot(out[0]), f"symbol {sym}")
    for name in nb.BookState._fields:  # every array, the pool and index included
        assert np.array_equal(getattr(state, name), getattr(batch_state, name)), name


def test_thousands_of_symbols_small_max_levels():
    """3000 symbols, 3 tracked levels each, a seeded stream that overflows many of them."""
    rng = np.random.default_rng(7)
    n_symbols, n_events = 3000, 20_000
    events = []
    live: dict[int, list[int]] = {}
    next_id = 1
    for _ in range(n_events):
        sym = int(rng.integers(n_symbols))
        ids = live.setdefault(sym, [])
        u = rng.random()
        if u < 0.55 or not ids:
            side = SIDE_BUY if rng.random() < 0.5 else SIDE_SELL
            price = 1000 + int(rng.integers(-6, 7)) * side * -1
            events.append((sym, ACTION_ADD, side, next_id, price, int(rng.integers(1, 9))))
            ids.append(next_id)
            next_id += 1
        else:
            oid = ids[int(rng.integers(len(ids)))]
            if u < 0.7:
                events.append((sym, ACTION_MODIFY, 0, oid, 990 + int(rng.integers(21)), 3))
            elif u < 0.85:
                events.append((sym, ACTION_EXECUTE, 0, oid, 0, int(rng.integers(1, 9))))
            else:
                events.append((sym, ACTION_CANCEL, 0, oid, 0, 0))
    replay_and_compare(events, n_symbols=n_symbols, max_levels=3, max_orders=1 << 14)


def test_first_events_and_empty_book():
    state = nb.new_book_state(2, max_levels=4, max_orders=8)
    out = np.zeros(1, dtype=RESULT_BOOK)
    nb.book_fill_top(state, 1, out, 0)
    snap = record_snapshot(out[0])
    assert math.isnan(snap["depth_imbalance"])
    assert snap["bid_price"] == [0] * TOP_N and snap["ask_levels"] == 0
    assert nb.best_bid_ask(state, 0) == (0, 0, 0, 0)
    for action in (ACTION_MODIFY, ACTION_CANCEL, ACTION_EXECUTE):
        assert nb.book_apply(state, 0, action, 0, 5, 100, 1) == nb.BOOK_UNKNOWN_ORDER
    assert nb.book_apply(state, 0, ACTION_ADD, SIDE_SELL, 5, 100, 1) == nb.BOOK_OK
    nb.book_fill_top(state, 0, out, 0)
    assert record_snapshot(out[0])["depth_imbalance"] == -1.0
    assert nb.best_bid_ask(state, 0) == (0, 0, 100, 1)
    # The same id on another symbol is another order.
    assert nb.book_apply(state, 1, ACTION_ADD, SIDE_BUY, 5, 99, 2) == nb.BOOK_OK
    assert nb.best_bid_ask(state, 1) == (99, 2, 0, 0)


def test_modify_cancel_execute_semantics():
    state = nb.new_book_state(1, max_levels=8, max_orders=16)

    def top():
        return nb.best_bid_ask(state, 0)

    assert nb.book_apply(state, 0, ACTION_ADD, SIDE_BUY, 1, 100, 10) == nb.BOOK_OK
    assert nb.book_apply(state, 0, ACTION_ADD, SIDE_BUY, 2, 100, 5) == nb.BOOK_OK
    assert nb.book_apply(state, 0, ACTION_ADD, SIDE_BUY, 1, 101, 7) == nb.BOOK_DUPLICATE_ID
    assert top() == (100, 15, 0, 0)
    # Size-only modify (record side 0): stays at its level.
    assert nb.book_apply(state, 0, ACTION_MODIFY, 0, 1, 100, 4) == nb.BOOK_OK
    assert top() == (100, 9, 0, 0) and nb.tracked_levels(state, 0, SIDE_BUY) == [(100, 9, 2)]
    # Price-moving modify: leaves 100, makes 102 (and the record's side is not read).
    assert nb.book_apply(state, 0, ACTION_MODIFY, SIDE_SELL, 1, 102, 6) == nb.BOOK_OK
    assert top() == (102, 6, 0, 0) and state.sides[0, 0, nb.S_COUNT] == 2
    assert nb.book_apply(state, 0, ACTION_EXECUTE, 0, 1, 0, 2) == nb.BOOK_OK
    assert top() == (102, 4, 0, 0)
    assert nb.book_apply(state, 0, ACTION_EXECUTE, 0, 1, 0, 4) == nb.BOOK_OK  # exact fill
    assert top() == (100, 5, 0, 0)
    assert nb.book_apply(state, 0, ACTION_EXECUTE, 0, 1, 0, 1) == nb.BOOK_UNKNOWN_ORDER
    assert nb.book_apply(state, 0, ACTION_EXECUTE, 0, 2, 0, 9) == nb.BOOK_OVERFILL
    assert top() == (0, 0, 0, 0) and state.counters[nb.C_LIVE] == 0
    assert nb.book_apply(state, 0, ACTION_ADD, SIDE_SELL, 2, 105, 3) == nb.BOOK_OK
    assert nb.book_apply(state, 0, ACTION_CANCEL, 0, 2, 999, 999) == nb.BOOK_OK
    assert nb.book_apply(state, 0, ACTION_CANCEL, 0, 2, 0, 0) == nb.BOOK_UNKNOWN_ORDER
    assert top() == (0, 0, 0, 0)
    stats = nb.book_stats(state)
    assert stats["events_overfill"] == 1 and stats["events_unknown_order"] == 2


def test_level_overflow_policy():
    """Beyond max_levels: a window of max_levels + spare rows tracks the best levels, worse
    orders stay untracked, a better level on a full window evicts the worst, and when
    fewer than max_levels stay tracked one walk refills the window from the untracked
    orders; what is reported (top levels, level counts, codes) is the reference's."""
    state = nb.new_book_state(1, max_levels=3, max_orders=64, spare_levels=1)
    ref = ReferenceBook(1, max_levels=3, max_orders=64)
    out = np.zeros(1, dtype=RESULT_BOOK)
    assert state.levels.shape[2] == 4

    def step(action, order_id, price=0, size=0, side=SIDE_BUY):
        code = nb.book_apply(state, 0, action, side, order_id, price, size)
        assert code == ref.apply(0, action, side, order_id, price, size)
        nb.book_fill_top(state, 0, out, 0)
        assert_same_snapshot(record_snapshot(out[0]), ref.snapshot(0), f"order {order_id}")
        return code

    def counts():
        return int(state.sides[0, 0, nb.S_COUNT]), int(state.sides[0, 0, nb.S_UNTRACKED])

    for oid, price in enumerate((100, 99, 98), start=1):
        assert step(ACTION_ADD, oid, price, 10) == nb.BOOK_OK
    assert step(ACTION_ADD, 4, 97, 1) == nb.BOOK_LEVEL_OVERFLOW  # 4th level: the spare row
    assert step(ACTION_ADD, 5, 97, 2) == nb.BOOK_LEVEL_OVERFLOW  # joins 97, rank 3 >= 3
    assert step(ACTION_ADD, 6, 99, 5) == nb.BOOK_OK  # a reported level, even in overflow
    assert counts() == (4, 0) and out[0]["bid_levels"] == 3
    assert step(ACTION_ADD, 9, 96, 1) == nb.BOOK_LEVEL_OVERFLOW  # full window: untracked
    assert counts() == (4, 1)
    assert step(ACTION_ADD, 7, 101, 1) == nb.BOOK_LEVEL_OVERFLOW  # evicts 97 (2 orders)
    assert state.counters[nb.C_EVICTIONS] == 1 and counts() == (4, 3)
    assert list(out[0]["bid_price"]) == [101, 100, 99, 0, 0]
    assert step(ACTION_CANCEL, 7) == nb.BOOK_OK  # 3 tracked levels left: no walk yet
    assert counts() == (3, 3) and state.counters[nb.C_REFILLS] == 0
    assert list(out[0]["bid_price"]) == [100, 99, 98, 0, 0]
    assert step(ACTION_MODIFY, 3, 95, 4) == nb.BOOK_LEVEL_OVERFLOW  # 98 -> 95, untracked
    # 98 emptied, 2 tracked < 3: one walk brought back 97 and 96 (the room was 2 levels)
    assert state.counters[nb.C_REFILLS] == 1 and counts() == (4, 1)
    assert list(out[0]["bid_price"]) == [100, 99, 97, 0, 0]
    assert list(out[0]["bid_size"]) == [10, 15, 3, 0, 0]
    assert step(ACTION_CANCEL, 1) == nb.BOOK_OK
    assert step(ACTION_EXECUTE, 2, size=10) == nb.BOOK_OK
    assert list(out[0]["bid_price"]) == [99, 97, 96, 0, 0]
    assert counts() == (3, 1) and state.counters[nb.C_REFILLS] == 1
    assert step(ACTION_CANCEL, 6) == nb.BOOK_OK  # 99 empties: 2 tracked, walk for 95
    assert counts() == (3, 0) and state.counters[nb.C_REFILLS] == 2
    assert list(out[0]["bid_price"]) == [97, 96, 95, 0, 0]
    assert step(ACTION_ADD, 8, 94, 1) == nb.BOOK_LEVEL_OVERFLOW  # into the spare row
    assert step(ACTION_CANCEL, 8) == nb.BOOK_OK
    assert step(ACTION_ADD, 8, 98, 1) == nb.BOOK_LEVEL_OVERFLOW  # new level, 4 levels
    check_invariants(state, ref)


def test_table_full_refuses_add():
    state = nb.new_book_state(2, max_levels=4, max_orders=5)
    assert state.index.shape[0] == 16  # next power of two >= 2 * max_orders
    for oid in range(5):
        assert nb.book_apply(state, oid % 2, ACTION_ADD, SIDE_SELL, oid, 100 + oid, 1) == 0
    assert nb.book_apply(state, 0, ACTION_ADD, SIDE_BUY, 99, 50, 1) == nb.BOOK_TABLE_FULL
    assert nb.book_apply(state, 0, ACTION_ADD, SIDE_BUY, 0, 50, 1) == nb.BOOK_DUPLICATE_ID
    assert nb.best_bid_ask(state, 0) == (0, 0, 100, 1)
    assert nb.book_apply(state, 1, ACTION_CANCEL, 0, 3, 0, 0) == nb.BOOK_OK
    assert nb.book_apply(state, 0, ACTION_ADD, SIDE_BUY, 99, 50, 1) == nb.BOOK_OK
    assert nb.best_bid_ask(state, 0) == (50, 1, 100, 1)
    assert nb.book_stats(state)["events_table_full"] == 1


def test_reset_book_empties_everything():
    state = nb.new_book_state(2, max_levels=2, max_orders=8)
    orders = make_orders([(0, ACTION_ADD, SIDE_BUY, i, 100 - i, 1) for i in range(6)])
    codes = np.zeros(len(orders), dtype=np.int64)
    nb.book_apply_batch(state, orders, codes)
    assert nb.book_stats(state)["live_orders"] == 6
    nb.reset_book(state)
    assert nb.book_stats(state)["live_orders"] == 0 and state.counters[nb.C_MAX_ORDERS] == 8
    assert nb.best_bid_ask(state, 0) == (0, 0, 0, 0)
    fresh = nb.new_book_state(2, max_levels=2, max_orders=8)
    for name, array in zip(nb.BookState._fields, state, strict=True):
        assert np.array_equal(array, getattr(fresh, name)), name
    assert nb.book_apply_batch(state, orders, codes) == 4  # 2 tracked levels, 4 overflow
    assert list(codes) == [0, 0, 4, 4, 4, 4]


def test_index_growth_reset_and_reserve():
    """The index prefix doubles with the live orders up to the full capacity, never
    shrinks while orders come and go, and returns to its reserve on reset; a reserve of
    max_orders never rehashes.  Pool rows are reused, so the pool stays dense."""
    max_orders = 3000
    adds = []
    for k in range(max_orders):
        side = SIDE_BUY if k % 2 else SIDE_SELL
        adds.append((k % 5, ACTION_ADD, side, k, 1000 - side * (k % 40), 1 + k % 7))
    cancels = [(k % 5, ACTION_CANCEL, 0, k, 0, 0) for k in range(0, max_orders, 2)]
    orders = make_orders(adds + cancels + adds[::2])
    codes = np.zeros(len(orders), dtype=np.int64)
    state = nb.new_book_state(5, max_levels=8, max_orders=max_orders, reserve_orders=3)
    ref = ReferenceBook(5, max_levels=8, max_orders=max_orders)
    assert nb.book_stats(state)["index_slots_in_use"] == 8
    nb.book_apply_batch(state, orders[:max_orders], codes)
    assert codes[:max_orders].tolist() == [ref.apply(*event) for event in adds]
    check_invariants(state, ref)
    stats = nb.book_stats(state)
    assert stats["table_capacity"] == 8192 and stats["index_slots_in_use"] == 8192
    assert stats["index_grows"] == 10 and stats["pool_high_water"] == max_orders
    # Cancel half, add them back: no growth, no new pool rows.
    nb.book_apply_batch(state, orders[max_orders:], codes[max_orders:])
    assert codes[max_orders:].tolist() == [ref.apply(*event) for event in cancels + adds[::2]]
    check_invariants(state, ref)
    stats = nb.book_stats(state)
    assert stats["index_grows"] == 10 and stats["pool_high_water"] == max_orders
    assert stats["live_orders"] == max_orders
    assert nb.book_apply(state, 0, ACTION_ADD, SIDE_BUY, 10**6, 50, 1) == nb.BOOK_TABLE_FULL
    nb.reset_book(state)
    fresh = nb.new_book_state(5, max_levels=8, max_orders=max_orders, reserve_orders=3)
    for name, array in zip(nb.BookState._fields, state, strict=True):
        assert np.array_equal(array, getattr(fresh, name)), name
    # Reserved for max_orders: the whole index from the start, never rebuilt.
    state = nb.new_book_state(5, max_levels=8, max_orders=max_orders, reserve_orders=max_orders)
    assert nb.book_stats(state)["index_slots_in_use"] == 8192
    nb.book_apply_batch(state, orders, codes)
    assert nb.book_stats(state)["index_grows"] == 0
    check_invariants(state, ref)
    with pytest.raises(ValueError):
        nb.new_book_state(1, max_orders=10, reserve_orders=11)
    with pytest.raises(ValueError):
        nb.new_book_state(1, max_orders=nb.MAX_ORDERS + 1)


def churn_orders(n_cycles: int, n_resting: int, first_id: int) -> np.ndarray:
    """ADD id ``first_id + n_resting + c`` then CANCEL id ``first_id + c``, for each cycle c:
    a FIFO window of ``n_resting`` live orders sliding over ever-new ids."""
    orders = np.zeros(2 * n_cycles, dtype=ORDER)
    c = np.arange(n_cycles, dtype=np.uint64)
    orders["action"][0::2] = ACTION_ADD
    orders["side"][0::2] = np.where(c % 2 == 0, SIDE_BUY, SIDE_SELL)
    orders["order_id"][0::2] = first_id + n_resting + c
    orders["price"][0::2] = np.where(c % 2 == 0, 100 - (c % 7).astype(np.int64), 200)
    orders["size"][0::2] = 1
    orders["action"][1::2] = ACTION_CANCEL
    orders["order_id"][1::2] = first_id + c
    return orders


@pytest.mark.slow
def test_churn_does_not_degrade_probes():
    """2 M add/cancel events on a 2048-slot table kept 44% full: with tombstones the
    table would fill up within a few thousand cycles; with backward-shift deletion the
    mean and max probe lengths of the last million events equal those of the first."""
    max_orders, n_resting, n_cycles = 1024, 900, 1_000_000
    state = nb.new_book_state(1, max_levels=8, max_orders=max_orders)
    prefill = np.zeros(n_resting, dtype=ORDER)
    prefill["action"] = ACTION_ADD
    prefill["side"] = SIDE_SELL
    prefill["order_id"] = np.arange(n_resting)
    prefill["price"] = 200
    prefill["size"] = 1
    codes = np.zeros(2 * n_cycles, dtype=np.int64)
    assert nb.book_apply_batch(state, prefill, codes[:n_resting]) == 0
    orders = churn_orders(n_cycles, n_resting, first_id=0)
    windows = []
    for chunk in np.array_split(np.arange(orders.shape[0]), 4):
        before = state.counters.copy()
        state.counters[nb.C_MAX_PROBE] = 0
        assert nb.book_apply_batch(state, orders[chunk], codes[chunk]) == 0
        lookups = state.counters[nb.C_LOOKUPS] - before[nb.C_LOOKUPS]
        probes = state.counters[nb.C_PROBES] - before[nb.C_PROBES]
        windows.append((probes / lookups, int(state.counters[nb.C_MAX_PROBE])))
    first, last = windows[0], windows[-1]
    assert first[0] < 3.0, windows  # load 0.44: expected ~1.4 slots per hit, ~3 per miss
    assert last[0] < first[0] * 1.2, windows
    assert last[1] <= max(2 * first[1], 32), windows
    assert state.counters[nb.C_LIVE] == n_resting
    assert np.count_nonzero(state.index != nb.EMPTY) == len(live_rows(state)) == n_resting
    # Misses stay short too: cancels of long-gone ids probe only the live cluster.
    gone = churn_orders(2000, 0, first_id=0)[1::2]
    before = state.counters.copy()
    assert nb.book_apply_batch(state, gone, codes[: gone.shape[0]]) == gone.shape[0]
    miss_probe = (state.counters[nb.C_PROBES] - before[nb.C_PROBES]) / gone.shape[0]
    assert miss_probe < 4.0
    # Cancel the survivors: the index is empty again, every slot EMPTY, every row free.
    rest = np.zeros(n_resting, dtype=ORDER)
    rest["action"] = ACTION_CANCEL
    rest["order_id"] = np.arange(n_cycles, n_cycles + n_resting, dtype=np.uint64)
    assert nb.book_apply_batch(state, rest, codes[:n_resting]) == 0
    assert np.all(state.index == nb.EMPTY) and len(live_rows(state)) == 0
    assert np.all(state.sides[:, :, nb.S_COUNT] == 0) and np.all(
        state.sides[:, :, nb.S_HEAD] == nb.NIL
    )
