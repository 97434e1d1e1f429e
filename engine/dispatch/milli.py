"""`MilliPath`: the engine extension that feeds the milli path and publishes its results.

Topology::

    ingest thread (engine loop)                         worker threads
    ---------------------------                         --------------
    frame -> kernels -> publish micro results
          -> on_results: underlying tick?  --submit-->  [stream lane] chain repricing
                         option quote?     (coalesced)                 correlation
                         sample returns?                                    |
    PULL <------------------- inproc PUSH (one per worker) <----------------+
      -> publish chain.<sym> / corr on the engine's PUB socket (engine thread only)

Nothing on the ingest thread waits for a batch job: ``on_results`` reads a few fields of
the frame's results, makes a job (a few references and a copy of the chain's option
mids) and queues it without blocking. The workers hand finished records back through an
inproc pipe; the engine thread adds the frame header (with the topic's sequence number)
and publishes.

Start-up (``on_start``): probe the backends, load or measure the GPU crossovers, log the
routing table, compile the CPU kernels, start the workers.
"""

from __future__ import annotations

import logging
import struct
import time
from typing import Any

import numba
import numpy as np
import zmq

from tickpath.engine.config import ConfigError, EngineConfig
from tickpath.engine.dispatch import calibration, stream_process
from tickpath.engine.dispatch.backends import (
    CHAIN_JOB,
    CPU,
    BackendRegistry,
    FpgaTickBackend,
    default_registry,
)
from tickpath.engine.dispatch.config import (
    KERNEL_OF_ANALYTIC,
    check_against_engine,
)
from tickpath.engine.dispatch.correlation import ReturnSampler
from tickpath.engine.dispatch.dispatcher import Dispatcher, worker_cpu_threads
from tickpath.engine.dispatch.jobs import Job
from tickpath.engine.dispatch.pipe import PUBLISH_META, PUBLISH_ROUTE, ResultPipe
from tickpath.engine.dispatch.routing import HealthBook, RoutingTable, warm_up_routed
from tickpath.engine.dispatch.stream_jobs import StreamJobs, pack_event, pack_sample, symbol_roles
from tickpath.engine.dispatch.stream_process import StreamProcess
from tickpath.engine.service.engine import EngineExtension
from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu import streaming as k
from tickpath.kernels.cpu.streaming_view import SymbolView

log = logging.getLogger("tickpath.dispatch")

ROUTE_PUBLISH = PUBLISH_ROUTE
_HEADER = struct.Struct("<IHHIIQq")  # schema.HEADER


class MilliPath(EngineExtension):
    """Engine extension: chains, correlation and (with `RequestEndpoint`) client jobs.

    Hooks: ``on_prepare`` (starts the stream process early), ``on_start``, ``sockets``
    (the results pipe's PULL), ``stats``, ``close``; and, bound in ``on_start`` only
    when chains or correlation are configured, ``on_results`` and ``on_tick``.

    Stream jobs run in the stream process (``dispatch.stream_isolation = "process"``,
    `tickpath.engine.dispatch.stream_process`) or on worker threads here (``"thread"``);
    ``dispatcher`` is the in-process one (thread isolation, or the in-process request
    endpoint of tests and tools), None otherwise.
    """

    name = "dispatch"

    def __init__(
        self,
        config: EngineConfig,
        registry: BackendRegistry | None = None,
        *,
        serve_requests: bool = False,
    ) -> None:
        self.config = config.dispatch
        self.engine_config = config
        try:
            check_against_engine(self.config, config.analytics.n_symbols)
        except ValueError as exc:
            raise ConfigError(f"config: {exc}") from None
        self.registry = registry or default_registry()
        self.health = HealthBook(self.config.health)
        # True only for the in-process `RequestEndpoint` (tests, tools): `tickpath serve`
        # runs the request endpoint in its own process (`RequestProcess`), which sets
        # `request_process` instead and starts no worker here.
        self.serve_requests = serve_requests
        self.request_process: Any = None
        self.routing: RoutingTable | None = None
        self.dispatcher: Dispatcher | None = None
        self.pipe: ResultPipe | None = None
        self.stream_process: StreamProcess | None = None
        self.stream_jobs: StreamJobs | None = None  # thread isolation only
        self._engine: Any = None
        self._route_handlers: dict[bytes, Any] = {}
        self._seq: dict[bytes, int] = {}
        self._published: dict[str, int] = {"chain_frames": 0, "chain_records": 0,
                                           "corr_frames": 0, "corr_records": 0}  # fmt: skip
        self._chain_published = {c.underlying: 0 for c in self.config.chains}
        self._role = symbol_roles(self.config, config.analytics.n_symbols)
        self._role_list = self._role.tolist()
        self._watch = bool(self.config.chains)
        self._sampler = (
            ReturnSampler(self.config.correlation) if self.config.correlation.symbols else None
        )
        self._events = {"sent": 0, "dropped": 0}

    @property
    def active(self) -> bool:
        """Whether anything feeds the milli path (chains, correlation or requests)."""
        return self.has_stream_jobs or self.serve_requests

    @property
    def has_stream_jobs(self) -> bool:
        """Chains or correlation are configured."""
        return self._watch or self._sampler is not None

    @property
    def isolated(self) -> bool:
        """Stream jobs run in the stream process."""
        return self.has_stream_jobs and self.config.stream_isolation == "process"

    # ------------------------------------------------------------------ start-up

    def on_prepare(self, engine: Any) -> None:
        """Start the stream process, so it loads its kernels while the engine compiles."""
        if self.isolated and self.stream_process is None:
            self.stream_process = StreamProcess(engine.context, self.engine_config)
            self.stream_process.start()

    def on_start(self, engine: Any) -> None:
        """Probe backends, find crossovers, log the routing table, start the workers."""
        self._engine = engine
        for ext in getattr(engine, "extensions", []):
            if getattr(ext, "name", "") == "fpga":
                self.registry.register(
                    FpgaTickBackend(getattr(ext, "description", "overlay")), replace=True
                )
        status = self.registry.detect()
        crossovers, note = self._crossovers(status)
        try:
            self.routing = RoutingTable(
                self.config.routes, self.registry, self.health, crossovers,
                self.config.gpu_preference, note,
            )  # fmt: skip
        except ValueError as exc:
            raise ConfigError(f"config: {exc}") from None
        log.info("routing table:")
        for line in self.routing.describe():
            log.info("  %s", line)
        if not self.active:
            log.info("milli path idle: no chains, no correlation, no request endpoint")
            return
        self.on_prepare(engine)  # when the engine did not call it (tools)
        endpoint = self.stream_process.results_endpoint if self.isolated else None
        self.pipe = ResultPipe(engine.context, self.config.result_hwm, endpoint)
        self._route_handlers[ROUTE_PUBLISH] = self._on_publish
        if self.serve_requests or (self.has_stream_jobs and not self.isolated):
            self._start_dispatcher()
        if self.isolated:
            self.stream_process.configure(crossovers, note)
            self.stream_process.wait_ready()
        elif self.has_stream_jobs:
            self.stream_jobs = StreamJobs(
                self.config, self.engine_config.analytics.n_symbols,
                lambda job: self.dispatcher.submit(job, "stream"), self._sink,
            )  # fmt: skip
        state = engine.processor.state
        self._n_touched = state.n_touched
        self._touched_list = state.touched_list
        self._symbols = SymbolView(state.sym_i)
        self._outputs = {k.A_QUOTE: state.out_quote, k.A_TRADE: state.out_trade}
        if self.has_stream_jobs:
            self.on_results = self._after_frame
            self.on_tick = self._every_tick

    def _start_dispatcher(self) -> None:
        """Load the kernels the in-process jobs can run; start the worker threads."""
        t0 = time.perf_counter()
        # Only what the configuration can run: a cold cache compiles each kernel module
        # for seconds to tens of seconds (requests may ask for anything: all of them).
        needed: set[str] | None = None
        if not self.serve_requests:
            needed = {CHAIN_JOB, "black_scholes"} if self._watch else set()
            if self._sampler is not None:
                needed.add("covariance")
        self.registry.get(CPU).warmup(needed)
        warm_up_routed(self.config, self.registry, needed)
        log.info("milli-path kernels ready in %.2f s", time.perf_counter() - t0)
        self.dispatcher = Dispatcher(self.config, self.registry, self.routing, self.health)
        self.dispatcher.start()

    def _crossovers(self, status: dict[str, str | None]) -> tuple[dict, str]:
        """Crossovers from the file and/or measured now; and a note for the table."""
        cal = self.config.calibration
        gpus = [
            n for n in self.config.gpu_preference
            if self.registry.get(n) is not None and status.get(n) is None
        ]  # fmt: skip
        if cal.mode == "off":
            return {}, "calibration off"
        found: dict = {}
        if cal.file is not None:
            try:
                found = {key: c for key, c in calibration.load(cal.file).items() if key[1] in gpus}
            except ValueError as exc:
                if cal.mode == "file":
                    raise ConfigError(str(exc)) from None
                log.warning("%s; measuring instead", exc)
        if not gpus:
            unusable = ", ".join(
                f"{n}: {status.get(n, 'not registered')}" for n in self.config.gpu_preference
            )
            return found, f"no GPU backend usable ({unusable})" if unusable else "no GPU"
        if cal.mode == "startup":
            kernels = sorted(set(KERNEL_OF_ANALYTIC.values()))
            todo = [n for n in gpus if any((kname, n) not in found for kname in kernels)]
            if todo:
                self.registry.get(CPU).warmup()
                for name in todo:
                    self.registry.get(name).warmup()
                t0 = time.perf_counter()
                threads = numba.get_num_threads()
                numba.set_num_threads(worker_cpu_threads(self.config))  # the CPU jobs will get
                try:
                    measured = calibration.calibrate(
                        self.registry, todo, cal.sizes, cal.repeats,
                        [kname for kname in kernels if any((kname, n) not in found for n in todo)],
                    )  # fmt: skip
                finally:
                    numba.set_num_threads(threads)
                for key, c in measured.items():
                    found.setdefault(key, c)
                log.info("GPU crossovers measured in %.1f s", time.perf_counter() - t0)
        return found, "calibrated" if found else "no crossover measured"

    def sockets(self) -> list[tuple[zmq.Socket, Any]]:
        """The pipe's PULL socket, when the milli path is active."""
        if self.pipe is None:
            return []
        return [(self.pipe.pull, self._on_pipe)]

    # ------------------------------------------------------------------ hooks

    def add_route(self, route: bytes, handler: Any) -> None:
        """Have the engine thread call ``handler(parts)`` for pipe messages of `route`."""
        self._route_handlers[route] = handler

    def submit(self, job: Job, lane: str = "stream") -> bool:
        """Queue a job on a lane (engine thread); False when refused or not started."""
        if self.dispatcher is None:
            return False
        return self.dispatcher.submit(job, lane)

    def send_to_engine(self, route: bytes, parts: list) -> bool:
        """From a worker thread: hand ``parts`` to the engine thread's handler of `route`."""
        return self.pipe is not None and self.pipe.send([route, *parts])

    # The two hooks below are bound in on_start, and only when the milli path has stream
    # jobs: an idle milli path costs the engine loop nothing per frame.

    def _after_frame(self, engine: Any, n: int) -> None:
        """on_results: hand the frame's chain inputs on; sample returns when due."""
        if self._watch:
            counts = self._n_touched.tolist()  # reset per frame: tells the frame's kind
            if counts[k.A_QUOTE]:
                self._on_ticks(k.A_QUOTE, counts[k.A_QUOTE])
            elif counts[k.A_TRADE]:
                self._on_ticks(k.A_TRADE, counts[k.A_TRADE])
        if self._sampler is not None and self._sampler.due(time.monotonic_ns()):
            self._sample()

    def _every_tick(self, engine: Any, now_ns: int) -> None:
        """on_tick: sample returns when no frame came during the interval; restart the
        stream process if it died."""
        if self._sampler is not None and self._sampler.due(time.monotonic_ns()):
            self._sample()
        if self.stream_process is not None:
            self.stream_process.check()

    def _on_ticks(self, analytic: int, m: int) -> None:
        """Pack one event per touched symbol a chain cares about; send them as one."""
        touched = self._touched_list
        if m == 1:  # single-record frames: the common case, kept to a few hundred ns
            symbol = int(touched[analytic, 0])
            if not self._role_list[symbol]:
                return
            hits: Any = ((0, symbol),)
        else:
            symbols = touched[analytic, :m]
            index = np.flatnonzero(self._role[symbols])
            if index.size == 0:
                return
            hits = zip(index.tolist(), symbols[index].tolist())
        view = self._symbols
        recv = self._outputs[analytic]["recv_ns"]
        events = []
        for j, symbol in hits:
            tick = view.tick(symbol, analytic)
            events.append(pack_event(
                symbol, analytic, tick.price, tick.ts_ns, tick.seq, tick.send_ns,
                int(recv[j]), tick.stream,
            ))  # fmt: skip
        data = events[0] if len(events) == 1 else b"".join(events)
        if self.stream_process is not None:
            ok = self.stream_process.send(stream_process.EVENTS, data)
            self._events["sent" if ok else "dropped"] += len(events)
        else:
            self.stream_jobs.on_events(data)
            self._events["sent"] += len(events)

    def _sample(self) -> None:
        prices, newest = self._sampler.read(self._engine.processor.state.sym_i)
        if self.stream_process is not None:
            self.stream_process.send(stream_process.SAMPLE, pack_sample(prices, newest))
        else:
            self.stream_jobs.on_sample(prices, newest)

    # ------------------------------------------------------------------ results

    def _sink(self, topic: bytes, kind: int, stream_id: int, records: np.ndarray) -> None:
        """Worker thread: send finished records to the engine thread."""
        self.pipe.send([ROUTE_PUBLISH, topic, PUBLISH_META.pack(kind, stream_id),
                        records.view(np.uint8)])  # fmt: skip

    def _on_pipe(self, engine: Any) -> None:
        """Engine thread: the pipe is readable."""
        self.pipe.drain(self._route_handlers)

    def _on_publish(self, parts: list[zmq.Frame]) -> None:
        """Engine thread: add the header and publish one result frame on the PUB socket."""
        if len(parts) != 3:
            self.pipe.unrouted += 1
            return
        topic = parts[0].bytes
        kind, stream_id = PUBLISH_META.unpack(parts[1].bytes)
        body = parts[2].buffer
        dtype = s.RECORD_DTYPES.get(kind)
        if dtype is None or kind not in s.ANALYTIC_OF_KIND or len(body) % dtype.itemsize:
            self.pipe.unrouted += 1
            return
        count = len(body) // dtype.itemsize
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + count  # sequence numbers count records
        header = _HEADER.pack(s.MAGIC, s.VERSION, kind, stream_id, count, seq, time.time_ns())
        self._engine.publisher.socket.send_multipart([topic, b"".join((header, body))])
        name = s.ANALYTIC_OF_KIND[kind]
        self._published[f"{name}_frames"] += 1
        self._published[f"{name}_records"] += count
        if kind == s.KIND_RESULT_CHAIN and stream_id in self._chain_published:
            self._chain_published[stream_id] += 1

    # ------------------------------------------------------------------ stats, close

    def stats(self) -> dict:
        """Routing, lanes, backends, health, pipe, chains, correlation, what was published,
        and the stream process."""
        out: dict[str, Any] = {}
        if self.routing is not None:
            out["routing"] = self.routing.as_dict()
        if self.dispatcher is not None:
            out.update(self.dispatcher.stats())
        if self.stream_jobs is not None:
            out.update(self.stream_jobs.stats())
        snap = self.stream_process.snapshot() if self.stream_process is not None else {}
        if self.stream_process is not None:
            # the stream lane is the child's (an in-process dispatcher's is idle then)
            if "stream" in snap.get("lanes", {}):
                out.setdefault("lanes", {})["stream"] = snap["lanes"]["stream"]
            for key in ("backends", "health", "cpu_threads_per_worker", "chains", "correlation"):
                if key in snap:
                    out[key] = snap[key]
            out["stream_process"] = {
                **self.stream_process.process_stats(),
                "events_received": snap.get("events", 0),
                "messages_received": snap.get("received", {}).get("messages", 0),
                "kernels": snap.get("kernels", []),
            }
        if self.pipe is not None:
            pipe = self.pipe.stats()
            child = snap.get("pipe", {})  # the workers' side, in the stream process
            pipe["sent"] += child.get("sent", 0)
            pipe["dropped"] += child.get("dropped", 0)
            out["pipe"] = pipe
        if self.request_process is not None:  # the request lane lives in that process
            lane = self.request_process.lane_stats()
            if lane is not None:
                out.setdefault("lanes", {})["requests"] = lane
        out["published"] = dict(self._published)
        if self.has_stream_jobs:
            out["events"] = dict(self._events)
            for u, entry in out.get("chains", {}).items():
                entry["published"] = self._chain_published.get(int(u), 0)
        return out

    def close(self) -> None:
        """Stop the workers and the stream process, then close the pipe."""
        if self.dispatcher is not None:
            self.dispatcher.close()
        if self.stream_process is not None:
            self.stream_process.close()
            self.stream_process = None
        if self.pipe is not None:
            self.pipe.close()
            self.pipe = None
