"""The routing table (which backend runs each analytic) and the backends' health.

Routes, per analytic (`RoutesConfig`):

* ``"auto"``: the first GPU backend of ``gpu_preference`` that is usable, healthy, can
  run the job, and whose measured crossover N* the job's size reaches; else ``cpu``.
* a backend name: that backend when usable, healthy and able to run the job; else ``cpu``.

The CPU is the fallback of every route and is never marked unhealthy (nothing is left to
fall back to). The micro path's tick features are reported as ``tick``: ``fpga`` when an
overlay is attached, else ``cpu``; they run inline on the ingest thread, not through here.

Health: a backend that raises, times out or returns non-finite results for finite inputs
is marked unhealthy for ``retry_after_s`` (doubling per consecutive failure up to
``max_retry_after_s``); the job that failed is recomputed on the CPU. Once the pause is
over the next job routed to it is a retry: success makes it healthy again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from tickpath.engine.dispatch.backends import CPU, TICK_FEATURES, BackendRegistry
from tickpath.engine.dispatch.calibration import Crossover
from tickpath.engine.dispatch.config import (
    KERNEL_OF_ANALYTIC,
    MILLI_ANALYTICS,
    DispatchConfig,
    HealthConfig,
    RoutesConfig,
)

log = logging.getLogger("tickpath.dispatch")


@dataclass
class _Health:
    healthy: bool = True
    failures: int = 0  # all failures ever
    consecutive: int = 0
    retry_at_ns: int = 0  # monotonic
    pause_s: float = 0.0
    last_error: str = ""
    recoveries: int = 0
    retries: int = 0  # jobs sent to it while unhealthy, to find out whether it recovered
    by_reason: dict | None = None


class HealthBook:
    """Healthy/unhealthy state per backend (thread-safe)."""

    def __init__(self, config: HealthConfig, clock_ns: object = time.monotonic_ns) -> None:
        self.config = config
        self._clock = clock_ns
        self._lock = threading.Lock()
        self._state: dict[str, _Health] = {}

    def _get(self, name: str) -> _Health:
        state = self._state.get(name)
        if state is None:
            state = self._state[name] = _Health(by_reason={})
        return state

    def available(self, name: str) -> tuple[bool, bool]:
        """``(may_use, is_retry)``: healthy, or unhealthy with its pause over (a retry)."""
        with self._lock:
            state = self._get(name)
            if state.healthy:
                return True, False
            if self._clock() >= state.retry_at_ns:
                state.retries += 1
                # one retry at a time: the next one waits for this one's verdict
                state.retry_at_ns = self._clock() + int(state.pause_s * 1e9)
                return True, True
            return False, False

    def success(self, name: str) -> bool:
        """Record a good result; return True when this made the backend healthy again."""
        with self._lock:
            state = self._get(name)
            recovered = not state.healthy
            state.healthy = True
            state.consecutive = 0
            state.pause_s = 0.0
            if recovered:
                state.recoveries += 1
            return recovered

    def failure(self, name: str, reason: str, detail: str) -> float:
        """Mark `name` unhealthy after a failure of kind `reason`; return the pause in s."""
        if name == CPU:
            raise ValueError("the cpu is the fallback of every route: it is never unhealthy")
        with self._lock:
            state = self._get(name)
            state.healthy = False
            state.failures += 1
            state.consecutive += 1
            state.by_reason[reason] = state.by_reason.get(reason, 0) + 1
            state.last_error = f"{reason}: {detail}"[:300]
            pause = min(
                self.config.retry_after_s * 2 ** (state.consecutive - 1),
                self.config.max_retry_after_s,
            )
            state.pause_s = pause
            state.retry_at_ns = self._clock() + int(pause * 1e9)
            return pause

    def is_healthy(self, name: str) -> bool:
        """Whether `name` is currently healthy."""
        with self._lock:
            return self._get(name).healthy

    def stats(self) -> dict:
        """Per backend that was ever used or failed: health and failure counts."""
        now = self._clock()
        with self._lock:
            return {
                name: {
                    "healthy": st.healthy,
                    "failures": st.failures,
                    "failures_by_reason": dict(st.by_reason),
                    "consecutive_failures": st.consecutive,
                    "retry_in_s": 0.0
                    if st.healthy
                    else round(max(0, st.retry_at_ns - now) / 1e9, 3),
                    "pause_s": st.pause_s,
                    "retries": st.retries,
                    "recoveries": st.recoveries,
                    "last_error": st.last_error,
                }
                for name, st in self._state.items()
            }


@dataclass(frozen=True)
class Route:
    """Where one job goes: the backend, whether it is a health retry, and why."""

    backend: str
    why: str
    retry: bool = False


class RoutingTable:
    """Chooses a backend per job from the configured routes, crossovers and health."""

    def __init__(
        self,
        routes: RoutesConfig,
        registry: BackendRegistry,
        health: HealthBook,
        crossovers: dict[tuple[str, str], Crossover],
        gpu_preference: tuple[str, ...] = ("cuda", "cupy"),
        calibration_note: str = "",
    ) -> None:
        self.routes = routes
        self.registry = registry
        self.health = health
        self.crossovers = dict(crossovers)
        self.gpu_preference = tuple(gpu_preference)
        self.calibration_note = calibration_note
        for analytic in MILLI_ANALYTICS:
            name = routes.route(analytic)
            if name != "auto" and registry.get(name) is None:
                raise ValueError(
                    f"dispatch.routes.{analytic} = {name!r}: no such backend "
                    f"(registered: {', '.join(registry.names())})"
                )

    def _candidate_ok(self, name: str, kernel: str, shape: dict | None) -> str | None:
        """None when `name` may run it, else the reason it may not."""
        backend = self.registry.get(name)
        if backend is None:
            return "not registered"
        reason = self.registry.status(name)
        if reason is not None:
            return f"unavailable: {reason}"
        if not backend.supports(kernel, shape):
            return f"cannot run {kernel} for this job"
        return None

    def choose(
        self, analytic: str, size: int, shape: dict | None = None, prefer: str | None = None
    ) -> Route:
        """The backend for a job of `analytic` with `size` work units (see calibration).

        `prefer` (a backend name a client asked for) replaces the configured route.
        """
        kernel = KERNEL_OF_ANALYTIC[analytic]
        configured = prefer or self.routes.route(analytic)
        if configured == CPU:
            return Route(CPU, "configured")
        if configured != "auto":
            problem = self._candidate_ok(configured, kernel, shape)
            if problem is not None:
                return Route(CPU, f"{configured} {problem}")
            ok, retry = self.health.available(configured)
            if not ok:
                return Route(CPU, f"{configured} unhealthy")
            return Route(configured, "configured", retry)
        skipped = []
        for name in self.gpu_preference:
            if self._candidate_ok(name, kernel, shape) is not None:
                continue
            c = self.crossovers.get((kernel, name))
            if c is None or c.n_star is None or size < c.n_star:
                continue
            ok, retry = self.health.available(name)
            if not ok:
                skipped.append(f"{name} unhealthy")
                continue
            return Route(name, f"size {size:,} >= N* {c.n_star:,}", retry)
        return Route(CPU, "; ".join(skipped) or "below crossover or no GPU")

    def micro_route(self) -> Route:
        """Where the micro path's tick features run (informational: inline on ingest)."""
        for name in self.registry.with_capability(TICK_FEATURES):
            if self.registry.usable(name):
                return Route(name, self.registry.get(name).describe())
        reasons = [
            f"{n}: {self.registry.status(n)}" for n in self.registry.with_capability(TICK_FEATURES)
        ]
        return Route(CPU, "; ".join(reasons) or "no FPGA backend registered")

    def static_route(self, analytic: str) -> tuple[str, str]:
        """``(route, why)`` as the table shows it, independent of a job's size."""
        kernel = KERNEL_OF_ANALYTIC[analytic]
        configured = self.routes.route(analytic)
        if configured == CPU:
            return CPU, "configured"
        if configured != "auto":
            problem = self._candidate_ok(configured, kernel, None)
            if problem is not None:
                return CPU, f"configured {configured}, which is {problem}"
            return configured, "configured (cpu on failure)"
        parts, gpu_ok = [], False
        for name in self.gpu_preference:
            problem = self._candidate_ok(name, kernel, None)
            if problem is not None:
                parts.append(f"{name} {problem}")
                continue
            c = self.crossovers.get((kernel, name))
            if c is None:
                parts.append(f"{name}: no crossover ({self.calibration_note or 'not measured'})")
            else:
                parts.append(c.describe())
                gpu_ok = gpu_ok or c.n_star is not None
        if gpu_ok:
            gpus = [
                f"{name} if n >= {self.crossovers[(kernel, name)].n_star:,}"
                for name in self.gpu_preference
                if (kernel, name) in self.crossovers
                and self.crossovers[(kernel, name)].n_star is not None
                and self._candidate_ok(name, kernel, None) is None
            ]
            return ", ".join(gpus) + ", else cpu", "; ".join(parts)
        return CPU, "no GPU crossover: " + "; ".join(parts)

    def describe(self) -> list[str]:
        """The routing table, one line per path/analytic, for the start-up log."""
        lines = []
        status = {n: self.registry.status(n) for n in self.registry.names()}
        lines.append(
            "backends: "
            + "; ".join(
                f"{n} {'usable' if reason is None else 'unavailable (' + reason + ')'}"
                for n, reason in status.items()
            )
        )
        micro = self.micro_route()
        where = micro.backend if micro.backend == CPU else f"{micro.backend} + cpu"
        lines.append(
            f"  micro  tick (quote, trade, bar, book) -> {where}, inline on the ingest "
            f"thread ({micro.why})"
        )
        for analytic in MILLI_ANALYTICS:
            route, why = self.static_route(analytic)
            kernel = KERNEL_OF_ANALYTIC[analytic]
            lines.append(f"  milli  {analytic:<10} [{kernel}] -> {route}  ({why})")
        return lines

    def as_dict(self) -> dict:
        """The table for the stats message."""
        micro = self.micro_route()
        table = {"tick": {"route": micro.backend, "why": micro.why}}
        for analytic in MILLI_ANALYTICS:
            route, why = self.static_route(analytic)
            table[analytic] = {"route": route, "why": why}
        return table


def routed_backends(config: DispatchConfig, registry: BackendRegistry) -> list[str]:
    """The usable backends other than the CPU that a milli-path route can send a job to
    (the ones worth warming up at start)."""
    names = set()
    for analytic in MILLI_ANALYTICS:
        route = config.routes.route(analytic)
        candidates = config.gpu_preference if route == "auto" else (route,)
        for name in candidates:
            if name != CPU and registry.usable(name):
                names.add(name)
    return sorted(names)


def warm_up_routed(
    config: DispatchConfig, registry: BackendRegistry, needed: set[str] | None = None
) -> None:
    """Load the kernels in `needed` (None: all) on every backend other than the CPU a
    route can use; one that fails is logged (it fails again on its first job, which then
    falls back to the CPU)."""
    for name in routed_backends(config, registry):
        try:
            registry.get(name).warmup(needed)
        except Exception as exc:
            log.warning("warm-up of backend %s failed: %s", name, exc)
