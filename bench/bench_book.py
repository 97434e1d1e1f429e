"""SingleThreadL3BookApplyThroughput: ORDER events/s through the numba L3 book.

Topology (one thread, one njit call per batch)::

    ORDER array (pre-generated, in memory) --book_apply_batch--> BookState
                                           --book_replay-------> BookState + RESULT_BOOK per event
    ORDER frames of 1024 records ---------StreamProcessor.process--> engine state + book results

Scenarios:

* ``one_symbol``: one busy symbol, a few thousand resting orders, 64 levels.
* ``many_symbols``: Zipf-like activity over many symbols (about 250 k resting
  orders) on the default ``max_orders = 2**20``.
* ``churn``: add/cancel only on a 2048-slot index kept 44 % full, ever-new
  ids: the tombstone-degradation case (probe lengths must stay flat).
* ``synthetic_16k`` / ``synthetic_1m``: the ORDER records of the engine's
  synthetic market (``SyntheticMarket(64, 1)``, ``--market-events`` events:
  about 5 k resting orders, 20 levels per side), with ``max_orders`` of
  2**14 and 2**20: the flow of ``bench/bench_ingest.py``.

Each scenario reports events/s and ns/event for ``book_apply_batch`` (best and
median of ``--repeat`` runs from an empty book), for ``book_replay`` (apply +
a TOP_N snapshot per event), the mean and max hash probe length, the index
slots in use and their doublings, overflow work (evictions, refills) and the
event-code mix.  The ``synthetic`` scenarios also report ns per ORDER record
inside the engine's frame kernel: frames of 1024 records copied into a
``StreamProcessor`` buffer, ``process()`` timed (best of ``--repeat`` passes;
validation, provenance and the per-frame book results included).

Self-checking: before timing, the first ``--check`` events of every scenario
are replayed through the plain-Python reference book; every event code and
the snapshot of the event's symbol after every event must be identical.

    python bench/bench_book.py [--events 4000000] [--symbols 2000] [--json out.json]

The numbers of a 2-core shared machine are noisy: compare best-of figures of
runs made back to back.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import numba
import numpy as np

from tickpath.engine.wire.schema import (
    ACTION_ADD,
    ACTION_CANCEL,
    ACTION_EXECUTE,
    ACTION_MODIFY,
    ORDER,
    RESULT_BOOK,
    SIDE_BUY,
    SIDE_SELL,
)
from tickpath.kernels.cpu import book as bk
from tickpath.kernels.reference.book import BOOK_CODE_NAMES, ReferenceBook

SNAPSHOT_FIELDS = (
    "bid_price",
    "bid_size",
    "bid_orders",
    "ask_price",
    "ask_size",
    "ask_orders",
    "bid_levels",
    "ask_levels",
)


@numba.njit(cache=True)
def _generate(orders, n_symbols, pool_cap, target, seed):
    """Fill ``orders`` with L3 flow: ~45 % ADD, CANCEL, EXECUTE (some full, a few
    over-fills), MODIFY (size-only or a tick move), plus rare unknown ids and
    duplicate ADDs.  Prices sit 1 + geometric ticks behind a drifting mid."""
    np.random.seed(seed)
    mid = np.full(n_symbols, 1_000_000, dtype=np.int64)
    pool_id = np.zeros((n_symbols, pool_cap), dtype=np.uint64)
    pool_side = np.zeros((n_symbols, pool_cap), dtype=np.int64)
    pool_px = np.zeros((n_symbols, pool_cap), dtype=np.int64)
    pool_sz = np.zeros((n_symbols, pool_cap), dtype=np.int64)
    pool_n = np.zeros(n_symbols, dtype=np.int64)
    next_id = np.uint64(1)
    for k in range(orders.shape[0]):
        sym = int(n_symbols * np.random.random() ** 3)
        r = orders[k]
        r.ts_ns = k
        r.symbol = sym
        if np.random.random() < 0.01:
            mid[sym] += 1 if np.random.random() < 0.5 else -1
        n = pool_n[sym]
        u = np.random.random()
        if u < 0.003:  # unknown id
            r.action = ACTION_CANCEL
            r.order_id = next_id + np.uint64(1_000_000_000)
            continue
        if u < 0.005 and n > 0:  # duplicate ADD of a live id
            j = np.random.randint(0, n)
            r.action = ACTION_ADD
            r.side = pool_side[sym, j]
            r.order_id = pool_id[sym, j]
            r.price = pool_px[sym, j]
            r.size = 1
            continue
        if n < pool_cap and (n < target or u < 0.45):
            side = SIDE_BUY if np.random.random() < 0.5 else SIDE_SELL
            px = mid[sym] - side * np.random.geometric(0.15)
            sz = np.random.randint(1, 100)
            r.action = ACTION_ADD
            r.side = side
            r.order_id = next_id
            r.price = px
            r.size = sz
            pool_id[sym, n] = next_id
            pool_side[sym, n] = side
            pool_px[sym, n] = px
            pool_sz[sym, n] = sz
            pool_n[sym] = n + 1
            next_id += np.uint64(1)
            continue
        if n == 0:
            r.action = ACTION_EXECUTE  # of an id never seen: unknown
            r.order_id = next_id + np.uint64(2_000_000_000)
            r.size = 1
            continue
        j = np.random.randint(0, n)
        r.order_id = pool_id[sym, j]
        v = np.random.random()
        removed = False
        if v < 0.70:
            r.action = ACTION_CANCEL
            removed = True
        elif v < 0.90:
            r.action = ACTION_EXECUTE
            w = np.random.random()
            if w < 0.02:
                r.size = pool_sz[sym, j] + 1  # over-fill
                removed = True
            elif w < 0.5:
                r.size = pool_sz[sym, j]
                removed = True
            else:
                r.size = 1 + np.random.randint(0, pool_sz[sym, j])
                if r.size >= pool_sz[sym, j]:
                    removed = True
                else:
                    pool_sz[sym, j] -= r.size
        else:
            r.action = ACTION_MODIFY
            sz = np.random.randint(1, 100)
            px = pool_px[sym, j]
            if np.random.random() < 0.5:
                px -= pool_side[sym, j]  # one tick further from the touch
            r.price = px
            r.size = sz
            pool_px[sym, j] = px
            pool_sz[sym, j] = sz
        if removed:
            pool_n[sym] = n - 1
            pool_id[sym, j] = pool_id[sym, n - 1]
            pool_side[sym, j] = pool_side[sym, n - 1]
            pool_px[sym, j] = pool_px[sym, n - 1]
            pool_sz[sym, j] = pool_sz[sym, n - 1]


def generate(n_events: int, n_symbols: int, resting_per_symbol: int, seed: int) -> np.ndarray:
    """A seeded L3 ORDER stream (see ``_generate``)."""
    orders = np.zeros(n_events, dtype=ORDER)
    _generate(orders, n_symbols, 4 * resting_per_symbol, resting_per_symbol, seed)
    return orders


def churn_stream(n_cycles: int, n_resting: int) -> np.ndarray:
    """Prefill ``n_resting`` asks, then ADD a new id / CANCEL the oldest, ``n_cycles`` times."""
    orders = np.zeros(n_resting + 2 * n_cycles, dtype=ORDER)
    orders["action"][:n_resting] = ACTION_ADD
    orders["side"][:n_resting] = SIDE_SELL
    orders["order_id"][:n_resting] = np.arange(n_resting)
    orders["price"][:n_resting] = 200
    orders["size"][:n_resting] = 1
    c = np.arange(n_cycles, dtype=np.uint64)
    body = orders[n_resting:]
    body["action"][0::2] = ACTION_ADD
    body["side"][0::2] = np.where(c % 2 == 0, SIDE_BUY, SIDE_SELL)
    body["order_id"][0::2] = n_resting + c
    body["price"][0::2] = np.where(c % 2 == 0, 100 - (c % 7).astype(np.int64), 200)
    body["size"][0::2] = 1
    body["action"][1::2] = ACTION_CANCEL
    body["order_id"][1::2] = c
    return orders


def self_check(orders: np.ndarray, n_symbols: int, max_levels: int, max_orders: int) -> int:
    """Replay ``orders`` through numba and the reference; raise on the first difference."""
    state = bk.new_book_state(n_symbols, max_levels, max_orders)
    ref = ReferenceBook(n_symbols, max_levels, max_orders)
    codes = np.zeros(orders.shape[0], dtype=np.int64)
    out = np.zeros(orders.shape[0], dtype=RESULT_BOOK)
    bk.book_replay(state, orders, codes, out)
    for k, r in enumerate(orders):
        sym = int(r["symbol"])
        args = (int(r["action"]), int(r["side"]), int(r["order_id"]))
        code = ref.apply(sym, *args, int(r["price"]), int(r["size"]))
        if code != codes[k]:
            raise AssertionError(f"event {k}: numba code {codes[k]}, reference {code}")
        snap = ref.snapshot(sym)
        for name in SNAPSHOT_FIELDS:
            if out[k][name].tolist() != snap[name]:
                raise AssertionError(f"event {k}: {name} {out[k][name]} != {snap[name]}")
        got, want = float(out[k]["depth_imbalance"]), snap["depth_imbalance"]
        if not ((math.isnan(got) and math.isnan(want)) or got == want):
            raise AssertionError(f"event {k}: depth_imbalance {got} != {want}")
    return orders.shape[0]


def synthetic_orders(n_market_events: int, n_symbols: int = 64, seed: int = 1) -> np.ndarray:
    """The ORDER records of ``n_market_events`` events of the engine's synthetic market."""
    from tickpath.engine.feed.synthetic import SyntheticMarket

    return SyntheticMarket(n_symbols, seed).generate(n_market_events)[2]


def frame_kernel_ns(
    orders: np.ndarray, n_symbols: int, max_levels: int, max_orders: int, repeat: int
) -> float:
    """Best ns per record of ``StreamProcessor.process`` over frames of 1024 ORDER records."""
    from tickpath.engine.config import load_config
    from tickpath.engine.service.engine import StreamProcessor
    from tickpath.engine.wire import codec
    from tickpath.engine.wire import schema as s
    from tickpath.kernels.cpu import streaming
    from tickpath.kernels.cpu.streaming_view import CounterView

    batch = 1024
    config = load_config(
        None,
        {
            "analytics.n_symbols": n_symbols,
            "analytics.book_levels": max_levels,
            "analytics.book_orders": max_orders,
            "ingest.max_frame_bytes": s.HEADER_SIZE + s.ORDER_SIZE * batch,
        },
    )
    proc = StreamProcessor(config)
    proc.warm_up()
    n_frames = orders.shape[0] // batch
    frames = [
        np.frombuffer(
            codec.encode_frame(s.KIND_ORDER, 0, k * batch, orders[k * batch : (k + 1) * batch]),
            np.uint8,
        )
        for k in range(n_frames)
    ]
    buffer = proc.buffer
    best = math.inf
    for _ in range(repeat):
        streaming.reset_state(proc.state)
        total = 0
        for frame in frames:
            n = frame.shape[0]
            buffer[:n] = frame
            t0 = time.perf_counter_ns()
            proc.process(n, 0)
            total += time.perf_counter_ns() - t0
        accepted = CounterView(proc.state.counters).read().records_accepted
        if accepted != n_frames * batch:
            raise AssertionError(f"frame kernel accepted {accepted} of {n_frames * batch} records")
        best = min(best, total / (n_frames * batch))
    return best


def run_scenario(
    name: str,
    orders: np.ndarray,
    n_symbols: int,
    max_levels: int,
    max_orders: int,
    repeat: int,
    check: int,
    frame_kernel: bool = False,
) -> dict:
    checked = self_check(orders[:check], n_symbols, max_levels, max_orders)
    state = bk.new_book_state(n_symbols, max_levels, max_orders)
    codes = np.zeros(orders.shape[0], dtype=np.int64)
    times = []
    for _ in range(repeat):
        bk.reset_book(state)
        t0 = time.perf_counter_ns()
        bk.book_apply_batch(state, orders, codes)
        times.append(time.perf_counter_ns() - t0)
    stats = bk.book_stats(state)
    n_replay = min(orders.shape[0], 200_000)
    out = np.zeros(n_replay, dtype=RESULT_BOOK)
    replay_times = []
    for _ in range(2):  # the first pass also faults in the pages of ``out``
        bk.reset_book(state)
        t0 = time.perf_counter_ns()
        bk.book_replay(state, orders[:n_replay], codes[:n_replay], out)
        replay_times.append(time.perf_counter_ns() - t0)
    replay_ns = replay_times[-1]
    n = orders.shape[0]
    best, median = min(times), float(np.median(times))
    result = {
        "scenario": name,
        "events": n,
        "symbols": n_symbols,
        "max_levels": max_levels,
        "max_orders": max_orders,
        "self_checked_events": checked,
        "apply_events_per_s_best": n / best * 1e9,
        "apply_events_per_s_median": n / median * 1e9,
        "apply_ns_per_event_best": best / n,
        "replay_events_per_s": n_replay / replay_ns * 1e9,
        "replay_ns_per_event": replay_ns / n_replay,
        "live_orders_at_end": stats["live_orders"],
        "mean_probe": stats["mean_probe"],
        "max_probe": stats["max_probe"],
        "index_slots_in_use": stats["index_slots_in_use"],
        "index_grows": stats["index_grows"],
        "evictions": stats["evictions"],
        "refills": stats["refills"],
        "codes": {name: stats[f"events_{name}"] for name in BOOK_CODE_NAMES},
    }
    if frame_kernel:
        result["frame_kernel_ns_per_record"] = frame_kernel_ns(
            orders, n_symbols, max_levels, max_orders, repeat
        )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4_000_000)
    parser.add_argument("--symbols", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--check", type=int, default=30_000, help="events checked vs reference")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--market-events", type=int, default=600_000, help="synthetic market events (all kinds)"
    )
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()

    t0 = time.perf_counter()
    bk.warm_up()
    warm_s = time.perf_counter() - t0
    scenarios = [
        ("one_symbol", generate(args.events, 1, 3000, args.seed), 1, 64, 1 << 14),
        (
            "many_symbols",
            generate(args.events, args.symbols, 100, args.seed + 1),
            args.symbols,
            64,
            1 << 20,
        ),
        ("churn", churn_stream(args.events // 2, 900), 1, 8, 1024),
    ]
    market = synthetic_orders(args.market_events)
    scenarios += [
        ("synthetic_16k", market, 64, 64, 1 << 14),
        ("synthetic_1m", market, 64, 64, 1 << 20),
    ]
    results = []
    for name, orders, n_symbols, max_levels, max_orders in scenarios:
        r = run_scenario(
            name, orders, n_symbols, max_levels, max_orders, args.repeat, args.check,
            frame_kernel=name.startswith("synthetic"),
        )  # fmt: skip
        results.append(r)
        print(
            f"{name:13s} {r['events']:>9,d} ev  apply {r['apply_events_per_s_best'] / 1e6:6.2f} M/s"
            f" ({r['apply_ns_per_event_best']:5.1f} ns)  replay+snapshot"
            f" {r['replay_events_per_s'] / 1e6:6.2f} M/s  probe mean {r['mean_probe']:.3f}"
            f" max {r['max_probe']}  live {r['live_orders_at_end']:,d}"
            f"  evict {r['evictions']} refill {r['refills']}  checked {r['self_checked_events']:,d}"
        )
        print(
            f"{'':13s} index slots in use {r['index_slots_in_use']:,d}"
            f" ({r['index_grows']} doublings)"
            + (
                f"  frame kernel {r['frame_kernel_ns_per_record']:5.1f} ns/record"
                if "frame_kernel_ns_per_record" in r
                else ""
            )
        )
        print(f"{'':13s} codes {r['codes']}")
    summary = {
        "benchmark": "SingleThreadL3BookApplyThroughput",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "numba": numba.__version__,
        "warm_up_s": warm_s,
        "results": results,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
