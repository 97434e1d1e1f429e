"""tickpath: a low-latency trading analytics engine."""
