"""The milli-path dispatcher: bounded lanes of jobs, worker threads, routing, fallback.

Topology::

    engine thread                     worker threads (per lane)          backends
    -------------                     -------------------------          --------
    submit(job, lane) --put--> [CoalescingQueue] --take(batch)--> prepare, fuse, route
      (never blocks:                 bounded,                        |-> cpu: inline (nogil)
       refused when full)            coalescing                      |-> cuda/cupy/other:
                                                                     |   its runner thread,
                                                                     |   waited for with a
                                                                     |   timeout
                                                          job.finish(outcome) -> the job's sink

Two lanes: ``stream`` (chain repricing, correlation: coalesced per key) and ``requests``
(client jobs: never coalesced), each with its own queue and workers, so a large request
never delays the stream's jobs and no job ever runs on the engine thread.

A backend other than the CPU that raises, exceeds the lane's ``timeout_s`` or returns a
result its job's ``check`` refuses is marked unhealthy in the `HealthBook`; the job is then
computed on the CPU and delivered (``Outcome.fallback_reason`` says why). The CPU runs
on the worker thread itself, with no timeout: it is the last resort, and a slow CPU job
shows up as ``late`` (finished after its deadline).

The dispatcher knows backends and queues, not sockets: jobs deliver through their own
``finish`` (engine.dispatch.milli sends results to the engine thread through a pipe).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numba

from tickpath.engine.dispatch.backends import CPU, BackendRegistry
from tickpath.engine.dispatch.config import DispatchConfig, LaneConfig
from tickpath.engine.dispatch.jobs import Job, JobRejected, Outcome
from tickpath.engine.dispatch.queues import CoalescingQueue
from tickpath.engine.dispatch.routing import HealthBook, RoutingTable

log = logging.getLogger("tickpath.dispatch")

LANES = ("stream", "requests")


class BackendTimeout(Exception):
    """A backend call did not return within the lane's timeout."""


class BackendBusy(Exception):
    """A backend's runner is still inside a call that timed out earlier."""


class _BadResult(Exception):
    """A job's check refused a backend's result."""


class _Runner:
    """One thread running calls on one non-CPU backend, so a caller can stop waiting.

    A call that times out keeps running here (Python cannot interrupt it); until it ends,
    further calls fail at once with `BackendBusy` (the backend is unhealthy meanwhile).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: tuple[Callable[[], Any], dict] | None = None
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"tickpath-{name}", daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], Any], timeout_s: float) -> Any:
        """Run `fn` on the runner thread; its result, its exception, or `BackendTimeout`."""
        slot: dict[str, Any] = {"done": threading.Event()}
        with self._lock:
            if self._busy:
                raise BackendBusy(f"{self.name} is still running a call that timed out")
            self._busy = True
            self._pending = (fn, slot)
            self._wake.notify()
        if not slot["done"].wait(timeout_s):
            raise BackendTimeout(f"no result within {timeout_s:g} s")
        if "error" in slot:
            raise slot["error"]
        return slot["result"]

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._pending is None and not self._closed:
                    self._wake.wait()
                if self._closed and self._pending is None:
                    return
                fn, slot = self._pending
                self._pending = None
            try:
                slot["result"] = fn()
            except BaseException as exc:  # handed to the caller, who decides
                slot["error"] = exc
            with self._lock:
                self._busy = False
            slot["done"].set()

    def close(self) -> None:
        """Let the thread end after its current call (it is a daemon either way)."""
        with self._lock:
            self._closed = True
            self._wake.notify()


class _Counters:
    """Named integer counters updated from several threads."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(names, 0)

    def add(self, name: str, amount: int = 1) -> None:
        """Add `amount` to counter `name` (created at 0)."""
        with self._lock:
            self._values[name] = self._values.get(name, 0) + amount

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter."""
        with self._lock:
            return dict(self._values)


_LANE_COUNTERS = (
    "completed",  # delivered with a result
    "failed",  # no backend, the CPU included, produced an acceptable result
    "expired",  # taken after its deadline and dropped (lane policy "drop")
    "late",  # delivered after its deadline
    "rejected",  # refused by prepare() (malformed or invalid request)
    "fallbacks",  # recomputed on the CPU after the routed backend failed
    "batches",  # takes from the queue
    "fused",  # jobs computed together with others in one kernel call
    "finish_errors",  # a job's finish() raised (logged)
)


def worker_cpu_threads(config: DispatchConfig) -> int:
    """numba threads a worker's parallel CPU kernels use: ``cpu_threads``, or cores - 1."""
    threads = config.cpu_threads or max(1, numba.config.NUMBA_NUM_THREADS - 1)
    return min(threads, numba.config.NUMBA_NUM_THREADS)


class _Lane:
    def __init__(self, name: str, config: LaneConfig) -> None:
        self.name = name
        self.config = config
        self.queue = CoalescingQueue(config.capacity)
        self.counters = _Counters(_LANE_COUNTERS)
        self.threads: list[threading.Thread] = []


class Dispatcher:
    """Runs milli-path jobs on worker threads, on the backend the routing table chooses."""

    def __init__(
        self,
        config: DispatchConfig,
        registry: BackendRegistry,
        routing: RoutingTable,
        health: HealthBook,
    ) -> None:
        self.config = config
        self.registry = registry
        self.routing = routing
        self.health = health
        self.lanes = {
            "stream": _Lane("stream", config.lanes.stream),
            "requests": _Lane("requests", config.lanes.requests),
        }
        self._stop = threading.Event()
        self._runners: dict[tuple[str, str], _Runner] = {}
        self._runners_lock = threading.Lock()
        self._backend_counters = _Counters(())
        self._cpu_lock: threading.Lock | None = None
        self.cpu_threads = worker_cpu_threads(config)
        self.started = False
        self._saved_switch_interval: float | None = None  # restored by close()

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Start the workers (call after the CPU backend's warm-up)."""
        if self.started:
            return
        try:
            layer = numba.threading_layer()
        except ValueError:  # no parallel kernel has run yet
            layer = "not started"
        workers = sum(lane.config.workers for lane in self.lanes.values())
        if self.config.gil_switch_interval_us:
            self._saved_switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(self.config.gil_switch_interval_us / 1e6)
            log.info("GIL switch interval %g us", self.config.gil_switch_interval_us)
        if layer == "workqueue" and workers > 1:
            # numba's workqueue layer aborts on concurrent parallel regions: serialise
            self._cpu_lock = threading.Lock()
            log.warning("numba threading layer 'workqueue': CPU batch kernels run one at a time")
        for lane in self.lanes.values():
            for i in range(lane.config.workers):
                thread = threading.Thread(
                    target=self._work, args=(lane,), name=f"tickpath-{lane.name}-{i}", daemon=True
                )
                lane.threads.append(thread)
                thread.start()
        self.started = True

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop taking jobs, let the workers finish their current batch, stop the runners,
        and give the interpreter back the GIL switch interval it had before `start`."""
        self._stop.set()
        for lane in self.lanes.values():
            for job in lane.queue.close():
                self._deliver(lane, job, Outcome(error="the engine is shutting down",
                                                 error_code="shutdown"))  # fmt: skip
        deadline = time.monotonic() + timeout_s
        for lane in self.lanes.values():
            for thread in lane.threads:
                thread.join(max(0.0, deadline - time.monotonic()))
        with self._runners_lock:
            for runner in self._runners.values():
                runner.close()
        if self._saved_switch_interval is not None:
            sys.setswitchinterval(self._saved_switch_interval)
            self._saved_switch_interval = None

    # ------------------------------------------------------------------ submission

    def submit(self, job: Job, lane: str = "stream") -> bool:
        """Queue `job` (engine thread; never blocks). False: refused (counted), not queued."""
        target = self.lanes[lane]
        if not job.deadline_ns:
            job.deadline_ns = time.monotonic_ns() + int(target.config.deadline_ms * 1e6)
        return target.queue.put(job, job.key)

    # ------------------------------------------------------------------ workers

    def _work(self, lane: _Lane) -> None:
        numba.set_num_threads(self.cpu_threads)  # per thread: one core stays with ingest
        cfg = lane.config
        while not self._stop.is_set():
            batch = lane.queue.take(cfg.max_batch, cfg.max_wait_ms / 1e3, self._stop)
            if not batch:
                continue
            lane.counters.add("batches")
            now = time.monotonic_ns()
            ready: list[tuple[int, Job]] = []
            for queued_ns, job in batch:
                waited = now - queued_ns
                if cfg.expired == "drop" and now > job.deadline_ns:
                    lane.counters.add("expired")
                    over = (now - job.deadline_ns) / 1e6
                    self._deliver(lane, job, Outcome(
                        error=f"deadline passed {over:.1f} ms before the job could start",
                        error_code="expired", queued_ns=waited,
                    ))  # fmt: skip
                    continue
                try:
                    job.prepare()
                except JobRejected as exc:
                    lane.counters.add("rejected")
                    self._deliver(
                        lane, job, Outcome(error=str(exc), error_code=exc.code, queued_ns=waited)
                    )
                    continue
                except Exception as exc:
                    lane.counters.add("rejected")
                    self._deliver(lane, job, Outcome(
                        error=f"{type(exc).__name__}: {exc}", error_code="invalid",
                        queued_ns=waited,
                    ))  # fmt: skip
                    continue
                ready.append((waited, job))
            groups: dict[tuple[type, str], list[tuple[int, Job]]] = {}
            for waited, job in ready:
                groups.setdefault((type(job), job.analytic), []).append((waited, job))
            for (cls, _), members in groups.items():
                fused = cls.fuse([job for _, job in members]) if len(members) > 1 else None
                if fused is not None:
                    lane.counters.add("fused", len(members))
                    self._execute(lane, fused, max(w for w, _ in members))
                else:
                    for waited, job in members:
                        self._execute(lane, job, waited)

    def _runner(self, lane: _Lane, backend: str) -> _Runner:
        with self._runners_lock:
            runner = self._runners.get((lane.name, backend))
            if runner is None:
                runner = self._runners[(lane.name, backend)] = _Runner(f"{lane.name}-{backend}")
            return runner

    def _count_backend(self, name: str, job: Job, seconds: float) -> None:
        self._backend_counters.add(f"{name}.jobs")
        self._backend_counters.add(f"{name}.items", int(job.size))
        self._backend_counters.add(f"{name}.busy_us", int(seconds * 1e6))

    def _execute(self, lane: _Lane, job: Job, waited_ns: int) -> None:
        t0 = time.monotonic_ns()
        route = self.routing.choose(job.analytic, job.size, job.shape, job.backend)
        outcome = Outcome(routed=route.backend, queued_ns=waited_ns)
        result = None
        if route.backend != CPU:
            name = route.backend
            backend = self.registry.get(name)
            try:
                t1 = time.perf_counter()
                result = self._runner(lane, name).call(
                    lambda: job.compute(backend), lane.config.timeout_s
                )
                problem = job.check(result)
                if problem is not None:
                    raise _BadResult(problem)
                self._count_backend(name, job, time.perf_counter() - t1)
                outcome.backend = name
                if self.health.success(name):
                    log.warning("backend %s recovered: %s job computed there again", name,
                                job.analytic)  # fmt: skip
            except Exception as exc:
                reason = {
                    BackendTimeout: "timeout",
                    BackendBusy: "timeout",
                    _BadResult: "non_finite",
                }.get(type(exc), "raised")
                detail = str(exc) if reason != "raised" else f"{type(exc).__name__}: {exc}"
                pause = self.health.failure(name, reason, detail)
                outcome.fallback_reason = f"{name} {reason}: {detail}"[:300]
                lane.counters.add("fallbacks")
                log.warning(
                    "backend %s failed on a %s job (%s: %s): marked unhealthy, retry in %.1f s; "
                    "the job is recomputed on cpu",
                    name, job.analytic, reason, detail[:200], pause,
                )  # fmt: skip
                result = None
        if not outcome.backend:
            cpu = self.registry.get(CPU)
            t1 = time.perf_counter()
            try:
                if self._cpu_lock is not None:
                    with self._cpu_lock:
                        result = job.compute(cpu)
                else:
                    result = job.compute(cpu)
                problem = job.check(result)
                if problem is not None:
                    raise _BadResult(problem)
                outcome.backend = CPU
            except Exception as exc:
                lane.counters.add("failed")
                outcome.error = f"computation failed: {type(exc).__name__}: {exc}"[:500]
                outcome.error_code = "failed"
                outcome.backend = ""
                result = None
                log.warning("%s job failed on cpu: %s", job.analytic, outcome.error)
            self._count_backend(CPU, job, time.perf_counter() - t1)
        outcome.result = result
        end = time.monotonic_ns()
        outcome.compute_ns = end - t0
        outcome.done_ns = time.time_ns()
        if end > job.deadline_ns:
            outcome.late = True
            lane.counters.add("late")
        if outcome.ok:
            lane.counters.add("completed")
        self._deliver(lane, job, outcome)

    def _deliver(self, lane: _Lane, job: Job, outcome: Outcome) -> None:
        try:
            job.finish(outcome)
        except Exception:
            lane.counters.add("finish_errors")
            log.exception("delivering a %s job's result failed", job.analytic or "?")

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict:
        """Per lane (queue and job counters), per backend (jobs, items, busy time), health."""
        lanes = {}
        for name, lane in self.lanes.items():
            entry = lane.queue.stats()
            entry.update(lane.counters.snapshot())
            entry["workers"] = lane.config.workers
            lanes[name] = entry
        backends: dict[str, dict[str, int]] = {}
        for key, value in self._backend_counters.snapshot().items():
            name, counter = key.rsplit(".", 1)
            backends.setdefault(name, {})[counter] = value
        return {
            "lanes": lanes,
            "backends": backends,
            "health": self.health.stats(),
            "cpu_threads_per_worker": self.cpu_threads,
        }
