"""What a milli-path job is: the protocol the dispatcher runs, and what it hands back.

A job is created on the engine thread (cheap: it only holds references and scalars) and
run on a worker thread:

1. ``prepare()``: decode and validate (request jobs); raising `JobRejected` answers the
   job with an error and never touches a backend;
2. the dispatcher routes it by ``analytic`` and ``size`` (and ``shape``) and calls
   ``compute(backend)``, then ``check(result)``; a failure there on a non-CPU backend
   marks that backend unhealthy and ``compute`` runs again on the CPU;
3. ``finish(outcome)`` delivers the result or the error (publishes, replies).

Jobs of one class may be fused into one computation by ``fuse`` (micro-batching: one
kernel call for several chains amortises a GPU launch).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class JobRejected(Exception):
    """A job that cannot be run as given; ``code`` is the error code of the reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Outcome:
    """How a job ended: its result (or error), where it ran, and when."""

    result: Any = None
    backend: str = ""  # where the result was computed ("" if nowhere)
    routed: str = ""  # where the router sent it first
    fallback_reason: str = ""  # why the routed backend's result was not used
    error: str = ""  # non-empty: no result
    error_code: str = ""  # "expired", "rejected" code, "failed"
    late: bool = False  # finished after its deadline
    queued_ns: int = 0  # waiting in the queue
    compute_ns: int = 0  # prepare + compute (+ fallback)
    done_ns: int = 0  # wall clock when finished
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """A result is present."""
        return not self.error

    @property
    def fallback(self) -> bool:
        """The routed backend failed and the CPU computed the result."""
        return bool(self.fallback_reason)


class Job:
    """Base class of milli-path jobs (see the module docstring for the life cycle)."""

    analytic: str = ""  # routing key: "chain", "corr", "iv_surface", "var"
    key: Hashable | None = None  # coalescing key: a queued job with the same key is replaced
    size: int = 1  # work units (see engine.dispatch.calibration), for the crossover
    shape: dict[str, int] | None = None  # sizes a backend may be limited by ("assets")
    deadline_ns: int = 0  # monotonic; 0: the lane's default from submission
    backend: str | None = None  # a backend asked for by name (replaces the route)

    def prepare(self) -> None:
        """Decode and validate on the worker thread; raise `JobRejected` to refuse."""

    def compute(self, backend: Any) -> Any:
        """Run on `backend` (an `tickpath.engine.dispatch.backends.Backend`); return the result."""
        raise NotImplementedError

    def check(self, result: Any) -> str | None:
        """None if `result` is acceptable, else what is wrong (non-finite values...)."""
        return None

    def finish(self, outcome: Outcome) -> None:
        """Deliver the outcome (called once, on the worker thread)."""

    @classmethod
    def fuse(cls, jobs: list[Job]) -> Job | None:
        """One job computing all of `jobs` (same class and analytic), or None: run apart."""
        return None


def non_finite(name: str, *arrays: Any) -> str | None:
    """``"<name>: k non-finite value(s)"`` when any array holds NaN or inf, else None."""
    bad = sum(int(np.count_nonzero(~np.isfinite(np.asarray(a)))) for a in arrays)
    return f"{name}: {bad} non-finite value(s) for finite inputs" if bad else None
