"""SyntheticMarketGenerationThroughput: records/s out of the synthetic market generator.

Topology (one thread, one njit call per batch)::

    SyntheticMarket.next_batch(batch) --> TRADE / QUOTE / ORDER records (fresh arrays)

Baseline, measured in the same run: numpy filling arrays of the same dtypes and sizes
with random integers (what any generator must at least do: write the bytes). The
ratio generator / baseline is the figure to compare across machines; the absolute
records/s of a shared 2-core machine are noisy (take the best of ``--repeat``).

This is where the speed of ``tickpath feed``'s generator is measured; the unit test
(tests/feed/test_feed_synthetic.py) only checks that no Python runs per record.

Self-check: two generators with the same seed give identical records, and every batch
has the size asked for.

    python bench/bench_feed.py [--records 2000000] [--batch 256] [--repeat 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from tickpath.engine.feed.synthetic import SyntheticMarket
from tickpath.engine.wire import schema as s


def _generate(records: int, batch: int, seed: int) -> tuple[float, list[np.ndarray]]:
    market = SyntheticMarket(8, seed=seed)
    market.next_batch(64)  # compile or load numba's cache before timing
    out = []
    n = 0
    t0 = time.perf_counter()
    while n < records:
        _kind, recs = market.next_batch(batch)
        if len(recs) != batch:
            raise SystemExit(f"self-check failed: a batch of {len(recs)} records, not {batch}")
        out.append(recs)
        n += len(recs)
    return time.perf_counter() - t0, out


def _baseline(records: int, batch: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    dtypes = [s.TRADE, s.QUOTE, s.ORDER]
    n = 0
    t0 = time.perf_counter()
    while n < records:
        dtype = dtypes[(n // batch) % 3]
        raw = rng.integers(0, 1 << 62, batch * dtype.itemsize // 8, dtype=np.int64)
        raw.view(dtype)  # the same records, as bytes of the right layout
        n += batch
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table (and write JSON); exit status 1 if a check fails."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--records", type=int, default=2_000_000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)

    _, a = _generate(10_000, args.batch, seed=3)
    _, b = _generate(10_000, args.batch, seed=3)
    if any(x.tobytes() != y.tobytes() for x, y in zip(a, b)):
        print("self-check failed: the same seed gave different records", file=sys.stderr)
        return 1
    gen = min(_generate(args.records, args.batch, seed=1)[0] for _ in range(args.repeat))
    base = min(_baseline(args.records, args.batch, seed=1) for _ in range(args.repeat))
    report = {
        "benchmark": "SyntheticMarketGenerationThroughput",
        "config": vars(args),
        "generator_records_per_s": round(args.records / gen),
        "numpy_fill_records_per_s": round(args.records / base),
        "ratio_generator_to_numpy_fill": round(base / gen, 3),
        "self_check": {"ok": True},
    }
    print(
        f"synthetic market, batches of {args.batch}: {report['generator_records_per_s']:,} "
        f"records/s; numpy fill (baseline, same run) {report['numpy_fill_records_per_s']:,} "
        f"records/s; ratio {report['ratio_generator_to_numpy_fill']}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
