"""Batch-kernel throughput and accuracy per backend, next to peers: ``tickpath bench kernels``.

The benchmark lives in the package (:mod:`tickpath.engine.bench.kernels`), so that the
command works from a fresh install; this script runs it from a checkout:

    python bench/bench_kernels.py [--json FILE] [--plot FILE.png] [--n N] [--quick]
"""

from __future__ import annotations

import sys

from tickpath.engine.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["bench", "kernels", *sys.argv[1:]]))
