"""Rolling covariance and correlation across symbols, fed from the streaming state.

`ReturnSampler`: every ``sample_interval_s`` the engine thread reads the latest price of
each configured symbol from the streaming kernels' state (quote mid, or last trade;
``due`` and ``read``); wherever the milli path runs, once every symbol has a price,
``push`` adds one row of log returns since the previous sample to a ring of ``window``
rows. Sampling on a clock aligns
asynchronous ticks; a symbol that did not move contributes a zero return.

Every ``every_samples`` samples a `CorrJob` (coalesced under the key ``("corr",)``)
takes a copy of the window to the milli path, which computes the covariance with
``tickpath.kernels.covariance`` on the routed backend and the correlation from it, and publishes
one ``RESULT_CORR`` record per pair ``i <= j`` in one frame on topic ``corr``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tickpath.engine.dispatch.chains import Sink
from tickpath.engine.dispatch.config import CorrelationConfig
from tickpath.engine.dispatch.jobs import Job, Outcome, non_finite
from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu import streaming as k
from tickpath.kernels.cpu.streaming_view import SymbolView

CORR_TOPIC = b"corr"


class ReturnSampler:
    """Samples prices on a clock and keeps the last ``window`` rows of log returns."""

    def __init__(self, config: CorrelationConfig) -> None:
        self.config = config
        self.symbols = np.array(config.symbols, np.int64)
        n = self.symbols.size
        self.ring = np.zeros((config.window, n))
        self.head = 0
        self.rows = 0  # rows in the ring
        self.samples = 0  # rows ever pushed
        self.last = np.full(n, np.nan)
        self.interval_ns = int(config.sample_interval_s * 1e9)
        self.next_ns = 0
        self.since_job = 0
        self.newest_ts_ns = 0

    def prices(self, sym_i: np.ndarray) -> np.ndarray:
        """Current price of each symbol (NaN where it has none yet)."""
        view = SymbolView(sym_i)
        if self.config.source == "trade":
            return view.last_price(self.symbols)
        return view.mid(self.symbols)

    def newest_ts(self, sym_i: np.ndarray) -> int:
        """Exchange time of the newest input among the symbols (quote or trade)."""
        analytic = k.A_TRADE if self.config.source == "trade" else k.A_QUOTE
        return SymbolView(sym_i).newest_ts(self.symbols, analytic)

    def due(self, now_ns: int) -> bool:
        """Whether the sample interval has passed (then the clock moves to the next one)."""
        if now_ns < self.next_ns:
            return False
        self.next_ns = now_ns + self.interval_ns
        return True

    def read(self, sym_i: np.ndarray) -> tuple[np.ndarray, int]:
        """The symbols' prices now and the exchange time of their newest input."""
        return self.prices(sym_i), self.newest_ts(sym_i)

    def push(self, price: np.ndarray, newest_ts_ns: int) -> bool:
        """Add one sample of prices (a row of log returns once there is a previous one);
        True when a job is due. Nothing is kept until every symbol has a price."""
        if not np.all(np.isfinite(price)):
            return False
        if np.all(np.isfinite(self.last)):
            self.ring[self.head] = np.log(price / self.last)
            self.head = (self.head + 1) % self.ring.shape[0]
            self.rows = min(self.rows + 1, self.ring.shape[0])
            self.samples += 1
            self.since_job += 1
        self.last = price
        self.newest_ts_ns = newest_ts_ns
        if self.rows >= 3 and self.since_job >= self.config.every_samples:
            self.since_job = 0
            return True
        return False

    def maybe_sample(self, sym_i: np.ndarray, now_ns: int) -> bool:
        """Take a sample if the interval has passed; True when a job is due."""
        if not self.due(now_ns):
            return False
        return self.push(*self.read(sym_i))

    def window(self) -> np.ndarray:
        """A copy of the rows in the window (their order does not matter to a covariance)."""
        return self.ring[: self.rows].copy()


class CorrValues(dict):
    """``{"covariance": (N, N), "correlation": (N, N)}``."""


class CorrJob(Job):
    """Covariance and correlation of one window of returns."""

    analytic = "corr"
    key = ("corr",)

    def __init__(
        self,
        window: np.ndarray,
        symbols: np.ndarray,
        samples: int,
        newest_ts_ns: int,
        sink: Sink,
    ) -> None:
        self.window = window
        self.symbols = symbols
        rows, n = window.shape
        self.size = rows * n * (n + 1) // 2
        self.samples = samples
        self.newest_ts_ns = newest_ts_ns
        self.submitted_ns = time.time_ns()
        self.sink = sink
        self.deadline_ns = 0

    def compute(self, backend: Any) -> CorrValues:
        """Covariance on `backend`; correlation from it on the host."""
        from tickpath.kernels.reference.correlation import correlation_from_covariance

        cov = np.asarray(backend.covariance(self.window))
        return CorrValues(covariance=cov, correlation=correlation_from_covariance(cov))

    def check(self, result: CorrValues) -> str | None:
        """The covariance of finite returns must be finite (a correlation may be NaN)."""
        return non_finite("covariance", result["covariance"])

    def records(self, values: CorrValues, outcome: Outcome) -> np.ndarray:
        """One ``RESULT_CORR`` record per pair i <= j (row-major upper triangle)."""
        n = self.symbols.size
        ii, jj = np.triu_indices(n)
        rec = np.zeros(ii.size, s.RESULT_CORR)
        rec["ts_ns"] = self.newest_ts_ns
        rec["in_seq"] = self.samples
        rec["recv_ns"] = self.submitted_ns
        rec["done_ns"] = outcome.done_ns or time.time_ns()
        rec["symbol"] = self.symbols[ii]
        rec["symbol_b"] = self.symbols[jj]
        rec["n_rows"] = self.window.shape[0]
        rec["backend"] = s.BACKEND_CODES.get(outcome.backend, s.BACKEND_OTHER)
        flags = 0
        if outcome.fallback:
            flags |= s.RESULT_FLAG_FALLBACK
        if outcome.late:
            flags |= s.RESULT_FLAG_LATE
        rec["flags"] = flags
        rec["n_symbols"] = n
        rec["covariance"] = values["covariance"][ii, jj]
        rec["correlation"] = values["correlation"][ii, jj]
        return rec

    def finish(self, outcome: Outcome) -> None:
        """Publish the matrix on ``corr`` (nothing on failure: counted)."""
        if outcome.ok:
            self.sink(CORR_TOPIC, s.KIND_RESULT_CORR, 0, self.records(outcome.result, outcome))
