"""OneToOneBatchedIngestThroughput: records/s through decode + every streaming kernel.

The benchmark lives in the package (:mod:`tickpath.engine.bench.ingest`, ``tickpath bench
ingest``), so that the command works from a fresh install; this script runs it
from a checkout:

    python bench/bench_ingest.py [--records 2000000] [--batch 1024] [--json out.json]
"""

from __future__ import annotations

import sys

from tickpath.engine.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", "ingest", *sys.argv[1:]]))
