"""PublisherEngineSubscriberLatency: tick-to-result latency next to a raw pyzmq echo.

The benchmark lives in the package (:mod:`tickpath.engine.bench.latency`, ``tickpath bench
latency``), so that the command works from a fresh install; this script runs it
from a checkout:

    python bench/bench_latency.py [--rate 5000] [--duration 10] [--json FILE] [--plot FILE.png]
                                  [--chains N --chain-size M]   # also the milli path's chains
"""

from __future__ import annotations

import sys

from tickpath.engine.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", "latency", *sys.argv[1:]]))
