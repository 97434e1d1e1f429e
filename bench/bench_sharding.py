"""ShardedPathThroughput: records/s through publisher -> replicas -> subscriber, one engine
against S shards x 2 replicas, in the same run.

Topology (every engine a real ``tickpath serve`` process on loopback)::

    baseline:  Publisher --> serve --> Subscriber
    sharded:   ShardingPublisher --shard 0--> serve, serve --\\
                (split by symbol % S)  ...                    +--> Subscriber(discovery),
                                     --shard S-1--> serve, serve --/     first copy wins

The same seeded records (``--symbols`` symbols, batches of ``--batch``) go through each
set-up.  The publisher keeps at most ``--window`` batches ahead of the results the
subscriber has (first copies): nothing is dropped at a high-water mark, so every run
delivers every result and the figure is the pipeline's sustained rate.  The time runs
from the first send to the last expected result.  Reported per set-up: records/s, result
messages/s at the subscriber, the seconds spent inside the publisher's ``send`` (the
sharding split included), and the ratio to the one-engine baseline.

Self-check: the subscriber of every set-up receives exactly the number of result messages
one in-process engine produces from the records (first copies only in the sharded runs).

On a machine with fewer cores than processes the replicas share the cores, so S shards
cannot run S times faster here; see docs/mesos.md for the per-shard model of real hosts.

    python bench/bench_sharding.py [--shards 2] [--records 200000] [--batch 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tickpath.client import Publisher, Subscriber
from tickpath.engine.config import load_config
from tickpath.engine.feed.sharding import ShardingPublisher
from tickpath.engine.feed.synthetic import SyntheticMarket
from tickpath.engine.service.engine import StreamProcessor
from tickpath.engine.wire import codec

_SOCKETS = re.compile(r"ingest (?P<ingest>\S+) \(rcvhwm \d+\), publish (?P<publish>\S+)")
TOPICS = ("quote.", "trade.", "bar.", "book.")


def _plan(symbols: int, records: int, batch: int) -> list[tuple[int, np.ndarray]]:
    market = SyntheticMarket(symbols, seed=17)
    return [market.next_batch(batch) for _ in range(max(1, records // batch))]


def _expected(plan: list, symbols: int) -> np.ndarray:
    """Cumulative result messages after each batch, from one in-process engine."""
    proc = StreamProcessor(load_config(None, {"analytics.n_symbols": symbols}))
    counts = []
    seq = 0
    for kind, records in plan:
        proc.feed(codec.encode_frame(kind, 1, seq, records), recv_ns=time.time_ns())
        seq += len(records)
        counts.append(len(proc.results()))
    return np.cumsum(counts)


class Serve:
    """One ``tickpath serve`` child on ports the OS picks."""

    def __init__(self, workdir: Path, name: str, symbols: int, shard: str | None) -> None:
        self.log_path = workdir / f"{name}.log"
        args = [
            sys.executable, "-m", "tickpath", "serve", "--ingest", "tcp://127.0.0.1:*",
            "--publish", "tcp://127.0.0.1:*", "--symbols", str(symbols), "--log-level", "INFO",
        ]  # fmt: skip
        if shard:
            args += ["--symbols-shard", shard]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.ingest = self.publish = ""

    def wait_bound(self, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            match = _SOCKETS.search(self.log_path.read_text(errors="replace"))
            if match:
                self.ingest, self.publish = match["ingest"], match["publish"]
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve did not start:\n{self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)  # polling a log file inside a deadline

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _run(plan, expected, shards: int, symbols: int, window: int, workdir: Path) -> dict:
    """One set-up: shards == 0 is the single engine; else shards x 2 replicas."""
    names = ["single"] if shards == 0 else [f"r{slot}" for slot in range(2 * shards)]
    engines = [
        Serve(workdir, name, symbols, None if shards == 0 else f"{slot % shards}/{shards}")
        for slot, name in enumerate(names)
    ]
    try:
        for engine in engines:
            engine.wait_bound()
        if shards == 0:
            sub = Subscriber(engines[0].publish, topics=("stats", *TOPICS), rcvhwm=0)
            pub = Publisher(engines[0].ingest, stream_id=1, join_timeout_s=120)
            send = pub.send
        else:
            discovery = workdir / f"endpoints-{shards}.json"
            discovery.write_text(
                json.dumps(
                    {
                        "shards": shards,
                        "endpoints": [
                            {"shard": slot % shards, "slot": slot, "ingest": e.ingest,
                             "publish": e.publish}
                            for slot, e in enumerate(engines)
                        ],
                    }
                )
            )  # fmt: skip
            sub = Subscriber(topics=("stats", *TOPICS), discovery=str(discovery), rcvhwm=0)
            pub = ShardingPublisher(str(discovery), stream_id=1)
            pub.wait_for_replicas(120, per_shard=2)
            send = pub.send
        # every engine's stats reached the subscriber: its subscriptions are in place
        seen: set[str] = set()
        deadline = time.monotonic() + 300
        while len(seen) < len(engines):
            if time.monotonic() > deadline:
                raise SystemExit(f"stats from {len(seen)} of {len(engines)} engines")
            result = sub.recv(timeout_s=1.0)
            if result is not None and result.topic == "stats":
                seen.add(sub.last_endpoint)
        if shards == 0:
            pub.wait_for_engine()
        total = int(expected[-1])
        received = 0
        in_send = 0.0
        t0 = time.perf_counter()
        for i, (kind, records) in enumerate(plan):
            while i >= window and received < expected[i - window]:
                result = sub.recv(timeout_s=60.0)
                if result is None:
                    raise SystemExit(f"results stalled at {received} of {total}")
                received += result.records is not None
            s0 = time.perf_counter()
            send(kind, records)
            in_send += time.perf_counter() - s0
        while received < total:
            result = sub.recv(timeout_s=60.0)
            if result is None:
                raise SystemExit(f"results stalled at {received} of {total}")
            received += result.records is not None
        elapsed = time.perf_counter() - t0
        # self-check: nothing more comes (no third copy, no stray result)
        extra = 0
        quiet_until = time.monotonic() + 1.5
        while time.monotonic() < quiet_until:
            result = sub.recv(timeout_s=0.2)
            extra += result is not None and result.records is not None
        if extra:
            raise SystemExit(f"self-check failed: {extra} results beyond the {total} expected")
        n_records = sum(len(r) for _, r in plan)
        out = {
            "setup": "1 engine" if shards == 0 else f"{shards} shards x 2 replicas",
            "shards": shards,
            "processes": len(engines),
            "records": n_records,
            "result_messages": total,
            "seconds": round(elapsed, 3),
            "records_per_s": round(n_records / elapsed),
            "results_per_s": round(total / elapsed),
            "publisher_send_s": round(in_send, 3),
            "duplicates_dropped": sub.duplicates,
        }
        pub.close()
        sub.close()
        return out
    finally:
        for engine in engines:
            engine.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the baseline and each sharded set-up; print a table (and ``--json``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", type=int, nargs="+", default=[2], help="shard counts to run")
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--symbols", type=int, default=64)
    p.add_argument("--window", type=int, default=64, help="batches ahead of the results")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    plan = _plan(args.symbols, args.records, args.batch)
    expected = _expected(plan, args.symbols)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-sharding-") as tmp:
        for shards in [0, *args.shards]:
            rows.append(_run(plan, expected, shards, args.symbols, args.window, Path(tmp)))
            row = rows[-1]
            row["vs_1_engine"] = round(row["records_per_s"] / rows[0]["records_per_s"], 3)
            print(
                f"{row['setup']:>24}: {row['records_per_s']:>9,} records/s "
                f"{row['results_per_s']:>9,} results/s  send {row['publisher_send_s']:.2f} s "
                f"of {row['seconds']:.2f} s  x{row['vs_1_engine']:.2f}  "
                f"({row['processes']} processes)",
                flush=True,
            )
    load = os.getloadavg()
    report = {
        "benchmark": "ShardedPathThroughput",
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in load],
        "batch": args.batch,
        "symbols": args.symbols,
        "window": args.window,
        "runs": rows,
    }
    print(f"cpus {report['cpus']}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
