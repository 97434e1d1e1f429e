"""tickpath: low-latency trading analytics.

Market data in over ZeroMQ, per-tick streaming features and batch analytics out,
on the CPU (numba), a GPU (numba-CUDA, CuPy) or an FPGA (PYNQ).

The installed package is one namespace; in the repository its parts keep their
folders (``pyproject.toml`` maps them):

* ``tickpath.engine`` (``engine/``): the service: wire format, ingest, dispatch,
  journal, security, cluster, benchmarks, the ``tickpath`` command;
* ``tickpath.kernels`` (``kernels/``): the math, backend by backend;
* ``tickpath`` itself (``engine/api/``): this package, the public library API.

The library API (each module is imported on first use, and importing one starts
nothing and compiles nothing; numba kernels compile on their first call):

* :mod:`tickpath.analytics`: EMA, VWAP, rolling statistics, realised volatility,
  trade-flow imbalance, OHLCV bars, microprice on your own numpy arrays;
* :mod:`tickpath.book`: replay L3 order events into per-symbol books;
* :mod:`tickpath.options`: Black-Scholes and greeks, implied vol, Monte Carlo, VaR/ES,
  correlation;
* :mod:`tickpath.wire`: the record and result dtypes, ``encode_frame`` / ``decode_frame``;
* :mod:`tickpath.client`: send market data to a running engine and receive its results.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

try:
    __version__ = importlib.metadata.version("tickpath")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - not installed
    __version__ = "0+unknown"

_SUBMODULES = ("analytics", "book", "client", "options", "wire")

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    """Import a submodule of the API on first access (``tickpath.analytics`` ...)."""
    if name in _SUBMODULES:
        return importlib.import_module(f"tickpath.{name}")
    raise AttributeError(f"module 'tickpath' has no attribute {name!r}")
