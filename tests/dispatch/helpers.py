"""Helpers for the dispatcher tests: an injectable failing backend, jobs, a dispatcher rig."""

from __future__ import annotations

import threading
import time

import msgspec
import numpy as np

from tickpath.engine.dispatch.backends import (
    BATCH_KERNELS,
    Backend,
    KernelBackend,
    default_registry,
)
from tickpath.engine.dispatch.chains import ChainJob, Provenance, build_chain
from tickpath.engine.dispatch.config import ChainConfig, DispatchConfig
from tickpath.engine.dispatch.dispatcher import Dispatcher
from tickpath.engine.dispatch.jobs import Job, Outcome
from tickpath.engine.dispatch.routing import HealthBook, RoutingTable


class FaultyBackend(Backend):
    """The CPU kernels behind a backend that fails on demand.

    ``mode``: "ok", "raise" (RuntimeError), "nan" (poisons the prices with NaN),
    "hang" (blocks until the test sets ``release``, or ``hang_s`` at most: longer than
    the lane's timeout).
    """

    kind = "gpu"
    capabilities = BATCH_KERNELS

    def __init__(self, name: str = "flaky", mode: str = "ok", hang_s: float = 1.0) -> None:
        self.name = name
        self.mode = mode
        self.hang_s = hang_s
        self.calls = 0
        self.release = threading.Event()
        self._cpu = KernelBackend("cpu")
        self._lock = threading.Lock()

    def _enter(self) -> None:
        with self._lock:
            self.calls += 1
        if self.mode == "raise":
            raise RuntimeError("injected failure (device lost)")
        if self.mode == "hang":
            self.release.wait(self.hang_s)

    def black_scholes(self, *args):
        self._enter()
        result = self._cpu.black_scholes(*args)
        if self.mode == "nan":
            result.price[::2] = np.nan
        return result

    def implied_vol(self, *args):
        self._enter()
        return self._cpu.implied_vol(*args)

    def covariance(self, window):
        self._enter()
        cov = self._cpu.covariance(window)
        if self.mode == "nan":
            cov = cov.copy()
            cov[0, 0] = np.nan
        return cov

    def portfolio_var(self, **kwargs):
        self._enter()
        return self._cpu.portfolio_var(**kwargs)


class ManualClock:
    """A monotonic clock in ns for the HealthBook that moves only when the test says so:
    retry pauses then expire at a point the test chooses, never by how slow a run is."""

    def __init__(self) -> None:
        self.now_ns = time.monotonic_ns()

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds`."""
        self.now_ns += int(seconds * 1e9)


def dispatch_config(**overrides) -> DispatchConfig:
    """A DispatchConfig from nested dict overrides (as TOML would give them)."""
    return msgspec.convert(overrides, DispatchConfig)


class Rig:
    """A started dispatcher with a FaultyBackend registered as the only GPU-like backend."""

    def __init__(self, routes=None, crossovers=None, **overrides) -> None:
        overrides.setdefault("health", {"retry_after_s": 0.3, "max_retry_after_s": 1.0})
        overrides.setdefault("routes", routes or {"chain": "flaky", "corr": "flaky"})
        overrides.setdefault("gpu_preference", ["flaky"])
        self.config = dispatch_config(**overrides)
        self.registry = default_registry()
        self.flaky = FaultyBackend()
        self.registry.register(self.flaky)
        self.registry.detect()
        self.clock = ManualClock()  # health retries: rig.clock.advance(s) expires a pause
        self.health = HealthBook(self.config.health, clock_ns=self.clock)
        self.routing = RoutingTable(
            self.config.routes, self.registry, self.health, crossovers or {},
            self.config.gpu_preference,
        )  # fmt: skip
        self.registry.get("cpu").warmup()
        self.dispatcher = Dispatcher(self.config, self.registry, self.routing, self.health)
        self.dispatcher.start()
        self.published: list[tuple[bytes, int, int, np.ndarray]] = []
        self.outcomes: list[Outcome] = []
        self._cond = threading.Condition()

    def sink(self, topic, kind, stream_id, records) -> None:
        with self._cond:
            self.published.append((topic, kind, stream_id, records.copy()))
            self._cond.notify_all()

    def wait_published(self, n: int, timeout: float = 120.0) -> list:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.published) < n:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.published)} of {n} results published"
                self._cond.wait(left)
            return list(self.published)

    def runners_idle(self) -> bool:
        """No backend runner is still inside a call (one that timed out keeps running;
        until it returns, the runner refuses calls). Reads the dispatcher's runners."""
        with self.dispatcher._runners_lock:
            return not any(r._busy for r in self.dispatcher._runners.values())

    def close(self) -> None:
        self.flaky.release.set()  # a hanging call ends with the rig
        self.dispatcher.close()


CHAIN = ChainConfig(underlying=3, strikes=(90.0, 100.0, 110.0), expiries=(0.25, 1.0), vol=0.3,
                    rate=0.02, dividend=0.01, option_symbol_base=40)  # fmt: skip


def chain_job(rig: Rig, S: float = 101.5, mids: np.ndarray | None = None, spec=None) -> ChainJob:
    """A repricing job of the test chain at `S` that publishes into `rig.sink`."""
    spec = spec or build_chain(CHAIN)
    if mids is None:
        mids = np.full(spec.size, np.nan)
    return ChainJob(spec, S, mids, Provenance(1, 2, 3, 4, 5), rig.sink)


def reference_greeks(records: np.ndarray):
    """kernels.black_scholes(backend="numpy") at what the records say they used."""
    from tickpath.kernels import batch

    return batch.black_scholes(
        records["underlying"], records["strike"], records["expiry"], records["rate"],
        records["dividend"], records["sigma"], records["is_call"].astype(bool), backend="numpy",
    )  # fmt: skip


class SleepJob(Job):
    """Occupies a worker (on whichever backend) until the test sets ``release`` (or for
    `seconds`, when given); records its outcome.

    ``started`` is set when a worker runs it: from then on the worker is known to be busy
    for as long as the test keeps ``release`` clear, however slow the machine is.
    """

    analytic = "chain"

    def __init__(self, seconds: float | None, results: list, key=None) -> None:
        self.seconds = seconds
        self.results = results
        self.key = key
        self.deadline_ns = 0
        self.started = threading.Event()
        self.release = threading.Event()

    def compute(self, backend):
        self.started.set()
        if self.seconds is None:
            assert self.release.wait(120), "the test never released the job"
        else:
            time.sleep(self.seconds)  # the job's own work, not a wait of the test
        return backend.name

    def finish(self, outcome: Outcome) -> None:
        self.results.append(outcome)


class EngineRig:
    """An engine with the milli path (and optionally the request endpoint) in a thread,
    a PUB on its ingest, a SUB on its results: everything over real loopback sockets."""

    def __init__(self, dispatch: dict | None = None, requests: bool = False, **overrides):
        import zmq

        from tickpath.engine.config import load_config
        from tickpath.engine.dispatch.cli import serve_extensions
        from tickpath.engine.service.engine import Engine

        settings = {
            "ingest.endpoints": ["tcp://127.0.0.1:*"],
            "publish.endpoint": "tcp://127.0.0.1:*",
            "publish.stats_interval_s": 0.2,
            "analytics.n_symbols": 64,
            "ingest.max_streams": 8,
            "ingest.max_frame_bytes": 65536,
            "dispatch": dispatch or {},
            **overrides,
        }
        if requests:
            settings["dispatch"] = {**settings["dispatch"]}
            settings["dispatch"].setdefault("requests", {})
            settings["dispatch"]["requests"] = {
                **settings["dispatch"]["requests"],
                "endpoint": "tcp://127.0.0.1:*",
            }
        self.config = load_config(None, settings)
        self.extensions = serve_extensions(self.config)
        self.milli = self.extensions[0]
        self.context = zmq.Context.instance()
        self.engine = Engine(self.config, self.context, extensions=self.extensions)
        self.engine.start()
        self.thread = threading.Thread(target=self.engine.run, daemon=True)
        self.thread.start()
        self.request_endpoint = self.extensions[1].bound if requests else None
        self.pub = self.context.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.connect(self.engine.receiver.endpoints[0])
        self.sub = self.context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, 1_000_000)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.connect(self.engine.publisher.endpoint)
        self.seq = 0
        self._connect()

    def _connect(self, timeout: float = 120.0) -> None:
        """Probe until a probe's result comes back (both sockets joined), then send a fence
        probe and read up to its result: no probe result is left in flight after it.

        Every message that is here is read each round: one probe yields several
        results, and reading one per probe sent would fall behind for good."""
        deadline = time.monotonic() + timeout
        while not self._probe_mids(poll_ms=50):
            assert time.monotonic() < deadline, "no result of the probe quotes: not joined"
            self.quote(63, 10.0, stream=7)
        fence = 42.0  # never a probe's mid: its result is the last one of the probes
        self.quote(63, fence, stream=7)
        while fence not in self._probe_mids(poll_ms=100):
            assert time.monotonic() < deadline, "the fence probe's result never came back"

    def _probe_mids(self, poll_ms: int) -> set[float]:
        """Read every message that is here (waiting up to `poll_ms` for the first one): the
        mids of the quote.63 results among them."""
        from tickpath.engine.wire import codec

        mids: set[float] = set()
        while self.sub.poll(poll_ms):
            poll_ms = 0
            topic, payload = self.sub.recv_multipart()
            if topic == b"quote.63":
                _header, records = codec.decode_frame(payload)
                mids.update(round(float(m), 6) for m in records["mid"])
        return mids

    def _send(self, kind: int, records: np.ndarray, stream: int = 1) -> int:
        from tickpath.engine.wire import codec

        seq = self.seq if stream == 1 else 0
        self.pub.send(codec.encode_frame(kind, stream, seq, records, time.time_ns()))
        if stream == 1:
            self.seq += len(records)
        return seq

    def quote(self, symbol: int, mid: float, half_spread: float = 0.01, stream: int = 1) -> int:
        """Send one QUOTE (bid/ask around `mid`); return its sequence number."""
        from tickpath.engine.wire import schema as s

        q = np.zeros(1, s.QUOTE)
        q["ts_ns"] = time.time_ns()
        q["symbol"] = symbol
        q["bid_price"] = round((mid - half_spread) * s.PRICE_SCALE)
        q["ask_price"] = round((mid + half_spread) * s.PRICE_SCALE)
        q["bid_size"] = q["ask_size"] = s.SIZE_SCALE
        return self._send(s.KIND_QUOTE, q, stream)

    def trade(self, symbol: int, price: float) -> int:
        """Send one TRADE; return its sequence number."""
        from tickpath.engine.wire import schema as s

        t = np.zeros(1, s.TRADE)
        t["ts_ns"] = time.time_ns()
        t["symbol"] = symbol
        t["side"] = 1
        t["price"] = round(price * s.PRICE_SCALE)
        t["size"] = s.SIZE_SCALE
        return self._send(s.KIND_TRADE, t)

    def results(self, prefix: bytes, count: int = 1, timeout: float = 120.0) -> list:
        """The next `count` result frames whose topic starts with `prefix`, decoded."""
        from tickpath.engine.wire import codec

        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"got {len(got)} of {count} {prefix!r} results"
            if self.sub.poll(int(min(left, 0.1) * 1000)):
                topic, payload = self.sub.recv_multipart()
                if topic.startswith(prefix):
                    header, records = codec.decode_frame(payload)
                    got.append((topic, header, records.copy()))
        return got

    def results_until(self, prefix: bytes, last, timeout: float = 120.0) -> list:
        """Every `prefix` result up to and including the first for which `last(records)`."""
        from tickpath.engine.wire import codec

        got = []
        deadline = time.monotonic() + timeout
        while not got or not last(got[-1][2]):
            left = deadline - time.monotonic()
            assert left > 0, f"got {len(got)} {prefix!r} results, not the last one"
            if self.sub.poll(int(min(left, 0.1) * 1000)):
                topic, payload = self.sub.recv_multipart()
                if topic.startswith(prefix):
                    header, records = codec.decode_frame(payload)
                    got.append((topic, header, records.copy()))
        return got

    def close(self) -> None:
        self.engine.stop()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()
        self.pub.close()
        self.sub.close()
        self.engine.close()
