"""OneToOneJournaledIngestThroughput: records/s with the journal under each sync policy, vs none.

Topology (one thread, no sockets: the journal's cost, not the network's)::

    frames in memory -> [journal append (writev) -> StreamProcessor.process]
                         sync policy:               one numba call per frame
                         none | os | interval | frame

Every policy processes the same pre-encoded frames of a seeded synthetic
market, from a fresh state, in the same run, for at most ``--seconds`` (or
until the frames run out); the figures are the best of ``--rounds`` rounds.
Self-check: after each journaled run the state is rebuilt from the journal
alone (no snapshot) and must be identical to the live one, or the benchmark
fails.

    python bench/bench_journal.py [--batch 64] [--seconds 3] [--rounds 2] [--dir DIR]
                                  [--json out.json]

Put ``--dir`` on the disk you mean to measure (``frame`` and ``interval`` cost
what its fdatasync costs; on tmpfs they cost nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tickpath.engine.config import load_config  # noqa: E402
from tickpath.engine.feed.synthetic import SyntheticMarket  # noqa: E402
from tickpath.engine.journal.config import JournalConfig  # noqa: E402
from tickpath.engine.journal.extension import JournalExtension  # noqa: E402
from tickpath.engine.journal.snapshot import differing_arrays  # noqa: E402
from tickpath.engine.service.engine import StreamProcessor  # noqa: E402
from tickpath.engine.wire import codec  # noqa: E402

POLICIES = ("none", "os", "interval", "frame")


def make_frames(n_records: int, batch: int, symbols: int, seed: int) -> list[bytes]:
    """Frames of ``batch`` records of a seeded market, contiguous sequence numbers."""
    market = SyntheticMarket(symbols, seed)
    frames = []
    seq = 0
    while seq < n_records:
        kind, records = market.next_batch(batch)
        frames.append(codec.encode_frame(kind, 1, seq, records, seq))
        seq += len(records)
    return frames


def run_policy(
    config: object, frames: list[bytes], policy: str, directory: Path, seconds: float
) -> dict:
    """Process ``frames`` (or what ``seconds`` allow) journaled under ``policy``; measure."""
    proc = StreamProcessor(config)
    proc.warm_up()
    ext = None
    if policy != "none":
        if directory.exists():
            shutil.rmtree(directory)
        ext = JournalExtension(
            JournalConfig(
                dir=str(directory),
                sync=policy,
                sync_interval_ms=config.journal.sync_interval_ms,
                snapshot_interval_s=0,
                snapshot_on_close=False,
            )
        )
        ext.open(config, proc)
    buffer = proc.buffer
    view = memoryview(buffer)
    process = proc.process
    append = ext.on_frame if ext is not None else None
    arrays = [np.frombuffer(f, np.uint8) for f in frames]
    done = 0
    clock = time.perf_counter
    deadline = clock() + seconds
    t0 = clock()
    for array in arrays:
        n = len(array)
        buffer[:n] = array
        if append is not None:
            append(view[:n])
        process(n, 0)
        done += 1
        if (done & 63) == 0 and clock() > deadline:
            break
    elapsed = clock() - t0
    records = int(proc.stats(0)["records_received"])
    result = {
        "policy": policy,
        "frames": done,
        "records": records,
        "seconds": round(elapsed, 4),
        "records_per_s": round(records / elapsed, 1),
        "frames_per_s": round(done / elapsed, 1),
        "us_per_frame": round(elapsed / done * 1e6, 3),
    }
    if ext is not None:
        writer_stats = ext.writer.stats()
        result["syncs"] = writer_stats["syncs"]
        result["journal_bytes"] = writer_stats["bytes"]
        result["journal_mb_per_s"] = round(writer_stats["bytes"] / elapsed / 1e6, 2)
        ext.close()
        # self-check: the journal alone rebuilds the identical state
        rebuilt = StreamProcessor(config)
        rebuilt.warm_up()
        check = JournalExtension(JournalConfig(dir=str(directory), snapshot_on_close=False))
        report = check.open(config, rebuilt)
        check.close()
        if report.replayed_frames != done or differing_arrays(rebuilt.state, proc.state):
            raise SystemExit(f"self-check failed: the {policy} journal does not rebuild the state")
        result["replay_frames_per_s"] = round(done / report.seconds, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table (and write JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="records per frame (64)")
    parser.add_argument("--records", type=int, default=2_000_000, help="records generated")
    parser.add_argument("--seconds", type=float, default=3.0, help="time limit per run (3)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; the best counts (2)")
    parser.add_argument("--symbols", type=int, default=64)
    parser.add_argument("--sync-interval-ms", type=float, default=50.0)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--dir", help="where the journals go (default: a temp dir in bench/out)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    config = load_config(
        None,
        {
            "analytics.n_symbols": args.symbols,
            "journal.sync_interval_ms": args.sync_interval_ms,
        },
    )
    policies = [p for p in args.policies.split(",") if p]
    for p in policies:
        if p not in POLICIES:
            parser.error(f"unknown policy {p}")
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="journal-", dir=out))
    frames = make_frames(args.records, args.batch, args.symbols, seed=7)
    best: dict[str, dict] = {}
    try:
        for _ in range(args.rounds):
            for policy in policies:
                result = run_policy(config, frames, policy, base / policy, args.seconds)
                if policy not in best or result["records_per_s"] > best[policy]["records_per_s"]:
                    best[policy] = result
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    none = best.get("none")
    print(
        f"journal benchmark: batch {args.batch} records/frame, {len(frames)} frames available, "
        f"best of {args.rounds} x {args.seconds:.0f} s, {os.cpu_count()} cores, dir {base}"
    )
    print(f"{'policy':9} {'records/s':>12} {'frames/s':>10} {'us/frame':>9} {'vs none':>8} "
          f"{'syncs':>7} {'MB/s':>7} {'replay fr/s':>12}")  # fmt: skip
    for policy in policies:
        r = best[policy]
        ratio = r["records_per_s"] / none["records_per_s"] if none else float("nan")
        r["vs_none"] = round(ratio, 4)
        print(
            f"{policy:9} {r['records_per_s']:12,.0f} {r['frames_per_s']:10,.0f} "
            f"{r['us_per_frame']:9.2f} {ratio:8.3f} {r.get('syncs', 0):7d} "
            f"{r.get('journal_mb_per_s', 0):7.1f} {r.get('replay_frames_per_s', 0):12,.0f}"
        )
    if args.json:
        document = {
            "benchmark": "OneToOneJournaledIngestThroughput",
            "batch": args.batch,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "sync_interval_ms": args.sync_interval_ms,
            "machine": {
                "cores": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
            "results": best,
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
