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
from tickpath.engine.dispatch import calibration
from tickpath.engine.dispatch.backends import (
    CHAIN_JOB,
    CPU,
    BackendRegistry,
    FpgaTickBackend,
    default_registry,
)
from tickpath.engine.dispatch.chains import ChainJob, ChainSpec, Provenance, build_chain
from tickpath.engine.dispatch.config import (
    KERNEL_OF_ANALYTIC,
    MILLI_ANALYTICS,
    ChainConfig,
    check_against_engine,
)
from tickpath.engine.dispatch.correlation import CorrJob, ReturnSampler
from tickpath.engine.dispatch.dispatcher import Dispatcher, worker_cpu_threads
from tickpath.engine.dispatch.jobs import Job
from tickpath.engine.dispatch.pipe import ResultPipe
from tickpath.engine.dispatch.routing import HealthBook, RoutingTable
from tickpath.engine.service.engine import EngineExtension
from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu import streaming as k
from tickpath.kernels.cpu.streaming_view import SymbolView, Tick

log = logging.getLogger("tickpath.dispatch")

ROUTE_PUBLISH = b"P"
_META = struct.Struct("<HI")  # kind, stream_id
_HEADER = struct.Struct("<IHHIIQq")  # schema.HEADER

_ROLE_UNDERLYING = 1
_ROLE_OPTION = 2


class _ChainState:
    """Engine-thread state of one chain: its contracts, option quotes, last price."""

    def __init__(self, config: ChainConfig) -> None:
        self.config = config
        self.spec: ChainSpec | None = build_chain(config)
        self.option_mid = np.full(self.spec.size, np.nan) if self.spec else None
        self.pending_mid: dict[int, float] = {}  # quotes before the chain is built
        self.last_price = float("nan")
        self.submitted = 0
        self.refused = 0
        self.published = 0
        self.index: dict[int, int] = self.spec.index_of_symbol() if self.spec else {}

    def build(self, price: float) -> None:
        """Build generated strikes around `price`; apply quotes that came before."""
        self.spec = build_chain(self.config, price)
        self.option_mid = np.full(self.spec.size, np.nan)
        self.index = self.spec.index_of_symbol()
        for symbol, mid in self.pending_mid.items():
            i = self.index.get(symbol)
            if i is not None:
                self.option_mid[i] = mid
        self.pending_mid.clear()
        log.info(
            "chain %d: %d contracts, strikes %.4g..%.4g, expiries %s",
            self.config.underlying, self.spec.size, self.spec.strike.min(),
            self.spec.strike.max(), sorted(set(self.spec.expiry.tolist())),
        )  # fmt: skip


class MilliPath(EngineExtension):
    """Engine extension: chains, correlation and (with `RequestEndpoint`) client jobs.

    Hooks: ``on_start``, ``sockets`` (the pipe's PULL), ``stats``, ``close``; and, bound
    in ``on_start`` only when chains or correlation are configured, ``on_results`` and
    ``on_tick``.
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
        self._engine: Any = None
        self._route_handlers: dict[bytes, Any] = {}
        self._seq: dict[bytes, int] = {}
        self._published: dict[str, int] = {"chain_frames": 0, "chain_records": 0,
                                           "corr_frames": 0, "corr_records": 0}  # fmt: skip
        n_symbols = config.analytics.n_symbols
        self._role = np.zeros(n_symbols, np.int8)
        self._chains: dict[int, _ChainState] = {}
        self._option_of: dict[int, _ChainState] = {}
        for chain in self.config.chains:
            state = _ChainState(chain)
            self._chains[chain.underlying] = state
            self._role[chain.underlying] |= _ROLE_UNDERLYING
        from tickpath.engine.dispatch.config import chain_option_symbols

        for chain in self.config.chains:
            for symbol in chain_option_symbols(chain):
                self._role[symbol] |= _ROLE_OPTION
                self._option_of[symbol] = self._chains[chain.underlying]
        self._role_list = self._role.tolist()
        self._sampler = (
            ReturnSampler(self.config.correlation) if self.config.correlation.symbols else None
        )
        self._corr_submitted = 0
        self._corr_refused = 0
        self._watch = bool(self._chains)

    @property
    def active(self) -> bool:
        """Whether anything feeds the milli path (chains, correlation or requests)."""
        return bool(self._chains) or self._sampler is not None or self.serve_requests

    # ------------------------------------------------------------------ start-up

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
        t0 = time.perf_counter()
        # Only what the configuration can run: a cold cache compiles each kernel module
        # for seconds to tens of seconds (requests may ask for anything: all of them).
        needed: set[str] | None = None
        if not self.serve_requests:
            needed = {CHAIN_JOB, "black_scholes"} if self._chains else set()
            if self._sampler is not None:
                needed.add("covariance")
        self.registry.get(CPU).warmup(needed)
        for name in self._routed_backends():
            try:
                self.registry.get(name).warmup(needed)
            except Exception as exc:  # it fails again on its first job and falls back
                log.warning("warm-up of backend %s failed: %s", name, exc)
        log.info("milli-path kernels ready in %.2f s", time.perf_counter() - t0)
        self.pipe = ResultPipe(engine.context, self.config.result_hwm)
        self._route_handlers[ROUTE_PUBLISH] = self._on_publish
        self.dispatcher = Dispatcher(self.config, self.registry, self.routing, self.health)
        self.dispatcher.start()
        state = engine.processor.state
        self._n_touched = state.n_touched
        self._touched_list = state.touched_list
        self._symbols = SymbolView(state.sym_i)
        self._outputs = {k.A_QUOTE: state.out_quote, k.A_TRADE: state.out_trade}
        if self._watch or self._sampler is not None:
            self.on_results = self._after_frame
        if self._sampler is not None:
            self.on_tick = self._every_tick

    def _routed_backends(self) -> list[str]:
        names = set()
        for analytic in MILLI_ANALYTICS:
            route = self.config.routes.route(analytic)
            candidates = self.config.gpu_preference if route == "auto" else (route,)
            for name in candidates:
                if name != CPU and self.registry.usable(name):
                    names.add(name)
        return sorted(names)

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

    # The two hooks below are bound in on_start, and only when the milli path has work:
    # an idle milli path costs the engine loop nothing per frame.

    def _after_frame(self, engine: Any, n: int) -> None:
        """on_results: queue repricings, record option quotes, sample returns."""
        if self._watch:
            counts = self._n_touched.tolist()  # reset per frame: tells the frame's kind
            if counts[k.A_QUOTE]:
                self._on_ticks(k.A_QUOTE, counts[k.A_QUOTE])
            elif counts[k.A_TRADE]:
                self._on_ticks(k.A_TRADE, counts[k.A_TRADE])
        if self._sampler is not None:
            now = time.monotonic_ns()
            if now >= self._sampler.next_ns:
                self._sample(engine, now)

    def _every_tick(self, engine: Any, now_ns: int) -> None:
        """on_tick: sample returns when no frame came during the interval."""
        now = time.monotonic_ns()
        if now >= self._sampler.next_ns:
            self._sample(engine, now)

    def _on_ticks(self, analytic: int, m: int) -> None:
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
        for j, symbol in hits:
            tick = view.tick(symbol, analytic)
            price = tick.price
            role = self._role_list[symbol]
            provenance = None
            if role & _ROLE_UNDERLYING and price > 0:  # a one-sided quote has no mid
                chain = self._chains[symbol]
                chain.last_price = price
                if chain.spec is None:
                    chain.build(price)
                provenance = self._provenance(tick, analytic, j)
                self._reprice(chain, provenance)
            if role & _ROLE_OPTION and analytic == k.A_QUOTE:
                chain = self._option_of[symbol]
                mid = price if price > 0 else float("nan")
                if chain.spec is None:
                    chain.pending_mid[symbol] = mid
                    continue
                i = chain.index.get(symbol)
                if i is None:
                    continue  # reserved symbol of a generated chain with fewer strikes
                chain.option_mid[i] = mid
                if chain.config.reprice_on_option_quote and chain.last_price > 0:
                    self._reprice(chain, provenance or self._provenance(tick, analytic, j))

    def _provenance(self, tick: Tick, analytic: int, j: int) -> Provenance:
        recv_ns = int(self._outputs[analytic]["recv_ns"][j])
        return Provenance(tick.ts_ns, tick.seq, tick.send_ns, recv_ns, tick.stream)

    def _reprice(self, chain: _ChainState, provenance: Provenance) -> None:
        job = ChainJob(
            chain.spec, chain.last_price, chain.option_mid.copy(), provenance, self._sink
        )
        if self.dispatcher.submit(job, "stream"):
            chain.submitted += 1
        else:
            chain.refused += 1

    def _sample(self, engine: Any, now: int) -> None:
        sampler = self._sampler
        if sampler.maybe_sample(engine.processor.state.sym_i, now):
            job = CorrJob(
                sampler.window(), sampler.symbols, sampler.samples, sampler.newest_ts_ns,
                self._sink,
            )  # fmt: skip
            if self.dispatcher.submit(job, "stream"):
                self._corr_submitted += 1
            else:
                self._corr_refused += 1

    # ------------------------------------------------------------------ results

    def _sink(self, topic: bytes, kind: int, stream_id: int, records: np.ndarray) -> None:
        """Worker thread: send finished records to the engine thread."""
        self.pipe.send([ROUTE_PUBLISH, topic, _META.pack(kind, stream_id), records.view(np.uint8)])

    def _on_pipe(self, engine: Any) -> None:
        """Engine thread: the pipe is readable."""
        self.pipe.drain(self._route_handlers)

    def _on_publish(self, parts: list[zmq.Frame]) -> None:
        """Engine thread: add the header and publish one result frame on the PUB socket."""
        topic = parts[0].bytes
        kind, stream_id = _META.unpack(parts[1].bytes)
        body = parts[2].buffer
        count = len(body) // s.RECORD_DTYPES[kind].itemsize
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + count  # sequence numbers count records
        header = _HEADER.pack(s.MAGIC, s.VERSION, kind, stream_id, count, seq, time.time_ns())
        self._engine.publisher.socket.send_multipart([topic, b"".join((header, body))])
        name = s.ANALYTIC_OF_KIND[kind]
        self._published[f"{name}_frames"] += 1
        self._published[f"{name}_records"] += count
        if kind == s.KIND_RESULT_CHAIN and stream_id in self._chains:
            self._chains[stream_id].published += 1

    # ------------------------------------------------------------------ stats, close

    def stats(self) -> dict:
        """Routing, lanes, backends, health, pipe and what was published."""
        out: dict[str, Any] = {}
        if self.routing is not None:
            out["routing"] = self.routing.as_dict()
        if self.dispatcher is not None:
            out.update(self.dispatcher.stats())
        if self.pipe is not None:
            out["pipe"] = self.pipe.stats()
        if self.request_process is not None:  # the request lane lives in that process
            lane = self.request_process.lane_stats()
            if lane is not None:
                out.setdefault("lanes", {})["requests"] = lane
        out["published"] = dict(self._published)
        out["chains"] = {
            str(u): {
                "contracts": c.spec.size if c.spec is not None else 0,
                "last_price": c.last_price if c.last_price == c.last_price else None,
                "submitted": c.submitted,
                "refused": c.refused,
                "published": c.published,
                "quoted": int(np.count_nonzero(np.isfinite(c.option_mid)))
                if c.option_mid is not None
                else 0,
            }
            for u, c in self._chains.items()
        }
        if self._sampler is not None:
            out["correlation"] = {
                "symbols": len(self._sampler.symbols),
                "samples": self._sampler.samples,
                "rows": self._sampler.rows,
                "submitted": self._corr_submitted,
                "refused": self._corr_refused,
            }
        return out

    def close(self) -> None:
        """Stop the workers, then close the pipe."""
        if self.dispatcher is not None:
            self.dispatcher.close()
        if self.pipe is not None:
            self.pipe.close()
            self.pipe = None
