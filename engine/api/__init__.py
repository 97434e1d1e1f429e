"""tickpath: low-latency trading analytics.

Market data in over ZeroMQ, per-tick streaming features and batch analytics out,
on the CPU (numba), a GPU (numba-CUDA, CuPy) or an FPGA (PYNQ).

The installed package is one namespace; in the repository its parts keep their
folders (``pyproject.toml`` maps them):

* ``tickpath.engine`` (``engine/``): the service: wire format, ingest, dispatch,
  journal, security, cluster, benchmarks, the ``tickpath`` command;
* ``tickpath.kernels`` (``kernels/``): the math, backend by backend;
* ``tickpath`` itself (``engine/api/``): this package, the public library API.

Importing :mod:`tickpath` starts nothing and compiles nothing.
"""

from __future__ import annotations

import importlib.metadata

try:
    __version__ = importlib.metadata.version("tickpath")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
