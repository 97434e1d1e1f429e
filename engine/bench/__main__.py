"""``python -m engine.bench latency|ingest|kernels``: ``tickpath bench`` without the wiring."""

import sys

from tickpath.engine.bench.cli import main

sys.exit(main())
