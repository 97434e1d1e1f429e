"""``tickpath bench``: topology-named, self-checking benchmarks that ship with the package.

* :mod:`tickpath.engine.bench.latency` - ``bench latency``: publisher -> ``tickpath serve`` ->
  subscriber, open loop, tick-to-result latency next to a raw pyzmq echo baseline
* :mod:`tickpath.engine.bench.ingest` - ``bench ingest``: records/s through decode and the
  streaming kernels on batched frames, next to a raw pyzmq receiver
* :mod:`tickpath.engine.bench.kernels` - ``bench kernels``: batch-kernel throughput and accuracy
  per backend, next to peers
* :mod:`tickpath.engine.bench.roles` - the child processes of ``bench latency`` (publisher,
  echo, subscriber)
* :mod:`tickpath.engine.bench.common` - HdrHistogram helpers, machine facts, child processes
* :mod:`tickpath.engine.bench.plot` - the PNG figures
* :mod:`tickpath.engine.bench.cli` - :func:`~tickpath.engine.bench.cli.add_bench_parser`

Every benchmark checks its own result and fails (exit status 1) when the check fails,
so a benchmark run is also a correctness test.
"""
