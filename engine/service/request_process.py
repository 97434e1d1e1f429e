"""The request endpoint in its own process: nothing a client sends can stall the tick thread.

Topology (docs/architecture.md)::

    engine process (tick thread)                  request process (python -m this module)
    ----------------------------                  ---------------------------------------
    SUB -> kernels -> PUB                         ROUTER (+ its own CURVE/ZAP handler)
    RequestProcess (extension):                     -> size checks before decoding
      start: spawn, send the config  --stdin-->     -> request lane workers (decode, validate,
      stats: read the stats slot     <--mmap---        compute, encode)
      on_tick: restart it if it died                -> replies out of the ROUTER
      close: close its stdin (EOF)   --stdin-->   exits on EOF (also when the engine dies)

The engine process neither receives, decodes, validates, computes, encodes nor sends
anything of a request, and does no CURVE handshake of the request socket: all of that
runs in the child, under its own GIL, at a lower scheduling priority (``nice``). The
engine thread's whole cost is reading a small msgpack stats snapshot when it publishes
``stats`` (a seqlock over a shared-memory file: the child never waits for the reader,
the reader never blocks).

Protocol with the child (`tickpath.engine.service.child_process`): one JSON line on its
stdin (config, endpoint, stats file, crossovers); one JSON line ``{"bound": ..., "pid":
...}`` on its stdout once the ROUTER is bound (or ``{"error": ...}``); then the stdin
stays open until the engine closes it. Logs go to the inherited stderr.
"""

from __future__ import annotations

import base64
import logging
import os
import pickle
import subprocess
import sys
import time
from typing import Any

import msgspec
import zmq

from tickpath.engine.service.child_process import (
    READY_TIMEOUT_S,
    ChildProcess,
    lower_priority,
    report,
    run_child,
)
from tickpath.engine.service.engine import EngineExtension
from tickpath.engine.service.stats_slot import StatsSlot

log = logging.getLogger("tickpath.requests")

STATS_INTERVAL_S = 0.25  # the child refreshes its snapshot at least this often


# --------------------------------------------------------------------------- engine side


class RequestProcess(EngineExtension):
    """Engine extension: runs the request endpoint in a child process and reports its stats.

    ``bound`` is the ROUTER's endpoint once started. If the child dies it is started again
    (on the endpoint it had bound) at the next stats tick; ``stats()["process"]`` says so.
    """

    name = "requests"

    def __init__(self, milli: Any, endpoint: str | None = None) -> None:
        self.milli = milli
        self.endpoint = endpoint or milli.config.requests.endpoint
        if self.endpoint is None:
            raise ValueError("RequestProcess needs an endpoint (dispatch.requests.endpoint)")
        milli.request_process = self
        self.bound = ""
        self.slot: StatsSlot | None = None
        self.child: ChildProcess | None = None
        self._start: dict = {}
        self._closing = False

    @property
    def pid(self) -> int:
        """The child's pid (0 before it started)."""
        return self.child.pid if self.child is not None else 0

    @property
    def restarts(self) -> int:
        """How many times the child was started again after it died."""
        return self.child.restarts if self.child is not None else 0

    @property
    def proc(self) -> subprocess.Popen | None:
        """The child's process."""
        return self.child.proc if self.child is not None else None

    # -- life cycle ----------------------------------------------------------------------

    def on_start(self, engine: Any) -> None:
        """Start the child and wait until its ROUTER is bound (kernels loaded first)."""
        routing = getattr(self.milli, "routing", None)
        crossovers = dict(routing.crossovers) if routing is not None else {}
        note = routing.calibration_note if routing is not None else ""
        self.slot = StatsSlot.create()
        self.child = ChildProcess(
            "tickpath.engine.service.request_process", "the request process", (self.slot.fd,)
        )
        self._start = {
            "config": msgspec.json.encode(engine.config).decode(),
            "stats_fd": self.slot.fd,
            "crossovers": base64.b64encode(pickle.dumps(crossovers)).decode(),
            "calibration_note": note,
        }
        self.child.spawn({**self._start, "endpoint": self.endpoint})
        self.bound = self.child.wait_ready(READY_TIMEOUT_S)["bound"]
        log.info("requests: process %d serves ROUTER %s", self.pid, self.bound)

    def on_tick(self, engine: Any, now_ns: int) -> None:
        """Restart the child if it died (without waiting: it reports ready later)."""
        if not self._closing and self.child is not None:
            self.child.keep_alive({**self._start, "endpoint": self.bound or self.endpoint})

    # -- stats ---------------------------------------------------------------------------

    def snapshot(self) -> dict:
        """The child's latest stats snapshot ({} before its first)."""
        return self.slot.read_dict() if self.slot is not None else {}

    def lane_stats(self) -> dict | None:
        """The request lane's counters (merged by the milli path into dispatch.lanes)."""
        return self.snapshot().get("lane")

    def stats(self) -> dict:
        """Requests received, replies by outcome, errors by code; the process."""
        snap = self.snapshot()
        out = dict(snap.get("requests") or {"received": 0, "replied_ok": 0,
                                            "replied_error": 0, "errors": {}})  # fmt: skip
        out["endpoint"] = self.bound
        alive = self.child is not None and self.child.alive
        ready = self.child.ready if alive else None
        out["process"] = {"pid": self.pid, "alive": alive, "restarts": self.restarts,
                          "ready": ready is not None,
                          "priority": (ready or {}).get("priority")}  # fmt: skip
        if "backends" in snap:
            out["backends"] = snap["backends"]
        return out

    # -- shutdown ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the child's stdin (it answers what is queued ``shutdown`` and exits)."""
        self._closing = True
        if self.child is not None and self.child.proc is not None:
            pid = self.child.proc.pid
            if not self.child.stop(15):
                log.warning("requests: process %d did not exit in 15 s: killed", pid)
        if self.slot is not None:
            self.slot.close()
            self.slot = None


# --------------------------------------------------------------------------- child side


class _Host:
    """What `RequestEndpoint` needs of the milli path, in the request process."""

    def __init__(self, context: zmq.Context, config: Any, crossovers: dict, note: str) -> None:
        from tickpath.engine.dispatch.backends import CPU, default_registry
        from tickpath.engine.dispatch.dispatcher import Dispatcher
        from tickpath.engine.dispatch.pipe import ResultPipe
        from tickpath.engine.dispatch.routing import HealthBook, RoutingTable, warm_up_routed

        self.config = config.dispatch
        self.registry = default_registry()
        self.registry.detect()
        self.health = HealthBook(self.config.health)
        self.routing = RoutingTable(
            self.config.routes, self.registry, self.health, crossovers,
            self.config.gpu_preference, note,
        )  # fmt: skip
        self.registry.get(CPU).warmup()
        warm_up_routed(self.config, self.registry)  # requests may ask for any kernel
        self.pipe = ResultPipe(context, self.config.result_hwm)
        self.routes: dict[bytes, Any] = {}
        self.dispatcher = Dispatcher(self.config, self.registry, self.routing, self.health)
        self.dispatcher.start()
        self.serve_requests = True

    def add_route(self, route: bytes, handler: Any) -> None:
        """Pipe messages of `route` go to ``handler(parts)`` on the main thread."""
        self.routes[route] = handler

    def submit(self, job: Any, lane: str = "requests") -> bool:
        """Queue a job (never blocks); False when refused."""
        return self.dispatcher.submit(job, lane)

    def send_to_engine(self, route: bytes, parts: list) -> bool:
        """From a worker: hand `parts` to the main thread (the ROUTER's owner)."""
        return self.pipe.send([route, *parts])


class _EngineView:
    """The two attributes of an engine `RequestEndpoint.on_start` reads."""

    def __init__(self, context: zmq.Context, config: Any) -> None:
        self.context = context
        self.config = config


def _serve(start: dict) -> int:
    from tickpath.engine.config import EngineConfig
    from tickpath.engine.service.requests import RequestEndpoint

    config = msgspec.json.decode(start["config"].encode(), type=EngineConfig)
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(name)s %(levelname)s [request process] %(message)s",
    )
    requests = config.dispatch.requests
    priority = lower_priority(requests.nice, requests.sched_idle, "the request process")
    context = zmq.Context()
    auth = None
    if config.security.curve:
        from tickpath.engine.security.curve import CurveAuthenticator

        auth = CurveAuthenticator(context, config.security)  # its handshakes: this process
    crossovers = pickle.loads(base64.b64decode(start["crossovers"]))
    host = _Host(context, config, crossovers, start.get("calibration_note", ""))
    endpoint = RequestEndpoint(host, start["endpoint"])
    endpoint.on_start(_EngineView(context, config))
    slot = StatsSlot(start["stats_fd"])

    def publish() -> None:
        lanes = host.dispatcher.stats()
        snap = {
            "requests": {k: v for k, v in endpoint.stats().items() if k != "endpoint"},
            "lane": lanes["lanes"]["requests"],
            "backends": lanes["backends"],
        }
        if auth is not None:  # the request socket's CURVE handshakes, all in this process
            snap["requests"]["curve"] = {
                "allowed": getattr(auth, "allowed", 0),
                "denied": getattr(auth, "denied", 0),
            }
        slot.write(msgspec.msgpack.encode(snap))

    endpoint.on_count = publish
    publish()
    report({"bound": endpoint.bound, "pid": os.getpid(), "priority": priority})
    poller = zmq.Poller()
    poller.register(endpoint.socket, zmq.POLLIN)
    poller.register(host.pipe.pull, zmq.POLLIN)
    poller.register(0, zmq.POLLIN)  # stdin: EOF when the engine closes it or dies
    next_stats = next_reload = time.monotonic()
    try:
        while True:
            ready = dict(poller.poll(int(STATS_INTERVAL_S * 1000)))
            if 0 in ready and not os.read(0, 4096):
                break
            if endpoint.socket in ready:
                endpoint._on_readable(None)
            if host.pipe.pull in ready:
                host.pipe.drain(host.routes)
            now = time.monotonic()
            if now >= next_stats:
                publish()
                next_stats = now + STATS_INTERVAL_S
            if auth is not None and now >= next_reload:
                try:
                    auth.reload()
                except Exception:  # a transient directory problem must not stop serving
                    log.exception("reloading the CURVE allow-list failed")
                next_reload = now + 1.0
    finally:
        host.dispatcher.close()  # queued jobs are answered "shutdown" through the pipe
        host.pipe.drain(host.routes, limit=1 << 20)
        publish()
        endpoint.close()
        host.pipe.close()
        if auth is not None:
            auth.stop()
        context.term()
        slot.close()
    return 0


def main() -> int:
    """Entry point of the request process (started by `RequestProcess`)."""
    return run_child(_serve, "the request process")


if __name__ == "__main__":
    sys.exit(main())
