"""``python -m engine.bench latency|ingest|kernels``: ``tickpath bench`` without the wiring."""

import sys

from engine.bench.cli import main

sys.exit(main())
