"""L3BookLevelsSweep: ns per ORDER event of the L3 book at several ``book_levels``.

Data:

* ``bitstamp``: the real Bitstamp BTC/USD L3 capture (313,977 order events,
  up to about 1,700 bid and 2,900 ask levels), converted by ``tickpath
  import-bitstamp``, which fetches the ``ob-analytics`` wheel with pip at use
  (``--recording FILE`` reuses a conversion; nothing fetched is kept here);
* ``synthetic``: the ORDER records of the engine's synthetic market
  (``SyntheticMarket(64, 1)``, ``--market-events`` events of all kinds).

For every ``book_levels`` of ``--levels``, in one process:

* ``apply``: ``book_apply_batch`` over all the events from an empty book (best
  of ``--repeat``), with the walks over a side's orders (``refills``) and the
  levels pushed out of the window (``evictions``) it took;
* ``frame``: ns per ORDER record inside the engine's frame kernel
  (``StreamProcessor.process`` over frames of 1024 records, validation,
  provenance and the per-frame book results included), at the engine's default
  settings but for ``analytics.book_levels``;
* ``baseline``: ``apply`` with a level window of exactly ``book_levels`` rows
  (``spare_levels = 0``), the policy before issue 15 (a walk of all of a
  side's orders for every tracked level that empties while levels are
  untracked), measured in the same run at ``--baseline-levels``.

Self-check: every event of both data sets goes through ``book_replay`` and the
reference book (:mod:`tickpath.kernels.reference.book`) at every
``book_levels``; the event code and the TOP_N snapshot (levels, sizes, order
counts, level counts, depth imbalance) after every event must be identical.
The goal of issue 15: at most 1 us per order event on the Bitstamp capture at
every ``book_levels`` from 8 to 4096.

    python bench/bench_book_levels.py [--recording FILE] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu import book as bk
from tickpath.kernels.reference.book import ReferenceBook

GOAL_NS = 1000.0  # per order event, Bitstamp, every book_levels from 8 to 4096
LEVELS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
BASELINE_LEVELS = (8, 64, 1024)
FRAME = 1024  # records per frame in the frame-kernel figure
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


def bitstamp_orders(recording: str | None) -> np.ndarray:
    """The ORDER records of the Bitstamp capture (imported into a temp dir if needed)."""
    from tickpath.engine.feed.recording import iter_frames

    with tempfile.TemporaryDirectory(prefix="tickpath-bench-book-") as tmp:
        if recording is None:
            recording = str(Path(tmp) / "bitstamp.rec")
            subprocess.run(
                [sys.executable, "-m", "tickpath", "import-bitstamp", "--out", recording],
                check=True,
            )
        return np.concatenate(
            [
                f.records.copy()
                for f in iter_frames(recording)
                if int(f.header["kind"]) == s.KIND_ORDER
            ]
        )


def synthetic_orders(n_market_events: int) -> np.ndarray:
    """The ORDER records of ``n_market_events`` events of the synthetic market."""
    from tickpath.engine.feed.synthetic import SyntheticMarket

    return SyntheticMarket(64, 1).generate(n_market_events)[2]


def reference_check(orders: np.ndarray, n_symbols: int, max_levels: int) -> int:
    """Replay through ``book_replay`` and the reference; raise at the first difference."""
    state = bk.new_book_state(n_symbols, max_levels)
    ref = ReferenceBook(n_symbols, max_levels)
    codes = np.zeros(orders.shape[0], np.int64)
    out = np.zeros(orders.shape[0], s.RESULT_BOOK)
    bk.book_replay(state, orders, codes, out)
    fields = {name: out[name].tolist() for name in SNAPSHOT_FIELDS}
    imbalance = out["depth_imbalance"].tolist()
    for k, (_, sym, action, side, _, oid, price, size) in enumerate(orders.tolist()):
        code = ref.apply(sym, action, side, oid, price, size)
        if code != codes[k]:
            raise AssertionError(f"levels {max_levels}, event {k}: code {codes[k]} != {code}")
        snap = ref.snapshot(sym)
        for name in SNAPSHOT_FIELDS:
            if fields[name][k] != snap[name]:
                raise AssertionError(
                    f"levels {max_levels}, event {k}: {name} {fields[name][k]} != {snap[name]}"
                )
        got, want = imbalance[k], snap["depth_imbalance"]
        if not ((math.isnan(got) and math.isnan(want)) or got == want):
            raise AssertionError(f"levels {max_levels}, event {k}: imbalance {got} != {want}")
    return orders.shape[0]


def apply_ns(
    orders: np.ndarray, n_symbols: int, max_levels: int, repeat: int, spare: int | None = None
) -> dict:
    """Best ns per event of ``book_apply_batch`` from an empty book, and its overflow work."""
    state = bk.new_book_state(n_symbols, max_levels, spare_levels=spare)
    codes = np.zeros(orders.shape[0], np.int64)
    best = math.inf
    for _ in range(repeat):
        bk.reset_book(state)
        t0 = time.perf_counter_ns()
        bk.book_apply_batch(state, orders, codes)
        best = min(best, time.perf_counter_ns() - t0)
    stats = bk.book_stats(state)
    return {
        "ns_per_event": best / orders.shape[0],
        "refills": stats["refills"],
        "evictions": stats["evictions"],
        "level_overflow_events": stats["events_level_overflow"],
    }


def frame_ns(orders: np.ndarray, n_symbols: int | None, max_levels: int, repeat: int) -> float:
    """Best ns per record of ``StreamProcessor.process`` over frames of ``FRAME`` records,
    default settings but ``book_levels`` (and ``n_symbols`` when given)."""
    from tickpath.engine.config import load_config
    from tickpath.engine.service.engine import StreamProcessor
    from tickpath.engine.wire import codec
    from tickpath.kernels.cpu import streaming
    from tickpath.kernels.cpu.streaming_view import CounterView

    overrides = {
        "analytics.book_levels": max_levels,
        "ingest.max_frame_bytes": s.HEADER_SIZE + s.ORDER_SIZE * FRAME,
    }
    if n_symbols is not None:
        overrides["analytics.n_symbols"] = n_symbols
    proc = StreamProcessor(load_config(None, overrides))
    proc.warm_up()
    frames = [
        np.frombuffer(codec.encode_frame(s.KIND_ORDER, 0, k, orders[k : k + FRAME]), np.uint8)
        for k in range(0, orders.shape[0], FRAME)
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
        if accepted != orders.shape[0]:
            raise AssertionError(f"frame kernel accepted {accepted} of {orders.shape[0]}")
        best = min(best, total / orders.shape[0])
    return best


def main() -> int:
    """Run the sweep, print the table, write ``--json``; exit 1 if a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recording", help="a tickpath import-bitstamp recording to reuse")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)))
    parser.add_argument("--baseline-levels", default=",".join(map(str, BASELINE_LEVELS)))
    parser.add_argument("--market-events", type=int, default=600_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-check", action="store_true", help="skip the reference replay")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    baseline_levels = {int(x) for x in args.baseline_levels.split(",") if x}

    started = time.perf_counter()
    bk.warm_up()
    data = {
        # (orders, book symbols, frame-kernel n_symbols: None = the engine's default)
        "bitstamp": (bitstamp_orders(args.recording), 1, None),
        "synthetic": (synthetic_orders(args.market_events), 64, 64),
    }
    rows = []
    failures = []
    print(f"{'data':10s} {'levels':>6s} {'apply ns':>9s} {'frame ns':>9s} {'baseline ns':>11s}"
          f" {'walks':>7s} {'base walks':>10s} {'evictions':>9s} {'checked':>9s}")  # fmt: skip
    for name, (orders, n_symbols, frame_symbols) in data.items():
        for max_levels in levels:
            checked = 0
            if not args.no_check:
                try:
                    checked = reference_check(orders, n_symbols, max_levels)
                except AssertionError as exc:
                    failures.append(f"{name}: {exc}")
            row = {"data": name, "events": int(orders.shape[0]), "book_levels": max_levels}
            row["apply"] = apply_ns(orders, n_symbols, max_levels, args.repeat)
            row["frame_ns_per_event"] = frame_ns(orders, frame_symbols, max_levels, args.repeat)
            if max_levels in baseline_levels:
                row["baseline"] = apply_ns(orders, n_symbols, max_levels, 1, spare=0)
            row["reference_checked_events"] = checked
            rows.append(row)
            base = row.get("baseline")
            print(
                f"{name:10s} {max_levels:6d} {row['apply']['ns_per_event']:9.1f}"
                f" {row['frame_ns_per_event']:9.1f}"
                f" {base['ns_per_event'] if base else math.nan:11.1f}"
                f" {row['apply']['refills']:7d} {base['refills'] if base else '-':>10}"
                f" {row['apply']['evictions']:9d} {checked:9d}",
                flush=True,
            )
    bitstamp = [r for r in rows if r["data"] == "bitstamp" and 8 <= r["book_levels"] <= 4096]
    worst = max(max(r["apply"]["ns_per_event"], r["frame_ns_per_event"]) for r in bitstamp)
    met = worst <= GOAL_NS
    print(f"goal: bitstamp <= {GOAL_NS:.0f} ns per order event at every book_levels 8..4096:"
          f" worst {worst:.1f} ns, {'met' if met else 'MISSED'}")  # fmt: skip
    for failure in failures:
        print("SELF-CHECK FAILED:", failure)
    if not failures and not args.no_check:
        print("ok: every event's code and snapshot equal the reference book's, at every level")
    summary = {
        "benchmark": "L3BookLevelsSweep",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average": os.getloadavg(),
        },
        "wall_s": round(time.perf_counter() - started, 1),
        "goal": {"max_ns_per_event": GOAL_NS, "worst_bitstamp_ns": worst, "met": met},
        "self_check_failures": failures,
        "results": rows,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
