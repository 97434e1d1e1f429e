"""Snapshots: how long the engine thread stops for one, fork against copy, in one run.

A background snapshot must freeze the state as it is between two frames. The two ways
(`journal.snapshot_method`, docs/reliability.md):

* ``copy``: one memcpy of every state array into a preallocated shadow, on the engine
  thread; a thread writes the shadow;
* ``fork``: ``os.fork()`` on the engine thread (page tables); a child writes the state as
  it was, copy-on-write: the engine thread then pays a page fault for each page it
  changes while the child writes.

For each method, alternating, ``--rounds`` times: a `StreamProcessor` with the default
configuration (``--symbols``) runs a seeded synthetic market; a snapshot is taken, and the
next ``--frames`` frames are timed while it is written. Reported per method: the engine
thread's pause (p50 / max of ``take``), the extra time of the frames after it against the
same frames with no snapshot in flight (the copy-on-write faults of ``fork``; the
writer thread's share of the CPU for ``copy``), and the write time. Self-check: each
snapshot is loaded back and compared with the state at take time, array by array.

    python bench/bench_snapshot.py [--symbols 1024] [--rounds 5] [--frames 2000] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tickpath.engine.config import load_config
from tickpath.engine.feed.synthetic import SyntheticMarket
from tickpath.engine.journal.snapshot import (
    Snapshotter,
    load_snapshot,
    snapshot_name,
    state_arrays,
)
from tickpath.engine.service.engine import StreamProcessor
from tickpath.engine.wire import codec


def frames_of(market: SyntheticMarket, n: int, seq: int) -> tuple[list[bytes], int]:
    """`n` encoded frames of the market, sequence numbers from `seq`."""
    out = []
    for i in range(n):
        kind, records = market.next_batch(8)
        out.append(codec.encode_frame(kind, 1, seq, records, 1_000 + seq + i))
        seq += len(records)
    return out, seq


def run_frames(proc: StreamProcessor, frames: list[bytes]) -> float:
    """Seconds to process `frames` as the engine loop does (no publishing)."""
    view = memoryview(proc.buffer)
    t0 = time.perf_counter()
    for frame in frames:
        n = len(frame)
        view[:n] = frame
        proc.process(n, 0)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=2000, help="frames timed after each take")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    config = load_config(None, {"analytics.n_symbols": args.symbols})
    proc = StreamProcessor(config)
    proc.warm_up()
    market = SyntheticMarket(args.symbols, 3)
    seq = 0
    warm, seq = frames_of(market, 20_000, seq)
    run_frames(proc, warm)  # books filled, every symbol touched
    state_mib = sum(a.nbytes for a in state_arrays(proc.state).values()) / (1 << 20)
    print(f"state {state_mib:.1f} MiB ({args.symbols} symbols), load average "
          f"{os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")  # fmt: skip
    rows: dict[str, dict[str, list[float]]] = {
        m: {"pause_ms": [], "extra_ms": [], "write_ms": []} for m in ("fork", "copy")
    }
    with tempfile.TemporaryDirectory() as tmp:
        snappers = {
            m: Snapshotter(Path(tmp) / m, proc.state, keep=2, method=m) for m in ("fork", "copy")
        }
        snappers["copy"].prepare()
        index = 0
        for _ in range(args.rounds):
            for method, snap in snappers.items():
                after, seq = frames_of(market, args.frames, seq)
                baseline_frames, seq = frames_of(market, args.frames, seq)
                base = run_frames(proc, baseline_frames)  # nothing in flight
                index += 1
                expected = {n: a.copy() for n, a in state_arrays(proc.state).items()}
                t0 = time.perf_counter()
                assert snap.take(index, None)
                rows[method]["pause_ms"].append((time.perf_counter() - t0) * 1e3)
                busy = run_frames(proc, after)  # while the snapshot is written
                snap.wait()
                rows[method]["extra_ms"].append((busy - base) * 1e3)
                rows[method]["write_ms"].append(snap.last_write_ms)
                if snap.stats()["failed"]:
                    raise RuntimeError(f"{method}: {snap.stats()['last_error']}")
                check = StreamProcessor(config)
                load_snapshot(snap.directory / snapshot_name(index), check.state)
                got = state_arrays(check.state)
                bad = [n for n in expected if not np.array_equal(got[n], expected[n])]
                if bad:
                    raise AssertionError(f"{method}: snapshot differs in {bad}")
        for snap in snappers.values():
            snap.close()
    print(f"\n{'method':>6} {'pause p50 ms':>12} {'pause max':>10} {'extra ms p50':>12} "
          f"{'write ms p50':>12}   ({args.rounds} rounds, {args.frames} frames after)")  # fmt: skip
    report = {"state_mib": state_mib, "symbols": args.symbols, "rounds": args.rounds,
              "load_average": os.getloadavg(), "methods": {}}  # fmt: skip
    for method, r in rows.items():
        summary = {
            "pause_ms_p50": float(np.median(r["pause_ms"])),
            "pause_ms_max": float(np.max(r["pause_ms"])),
            "extra_ms_p50": float(np.median(r["extra_ms"])),
            "write_ms_p50": float(np.median(r["write_ms"])),
        }
        report["methods"][method] = summary
        print(f"{method:>6} {summary['pause_ms_p50']:>12.2f} {summary['pause_ms_max']:>10.2f} "
              f"{summary['extra_ms_p50']:>12.2f} {summary['write_ms_p50']:>12.1f}")  # fmt: skip
    print(f"load average {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
