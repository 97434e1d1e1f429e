"""The milli path's stream jobs (chains, correlation) in their own process.

Topology (docs/architecture.md)::

    engine process (tick thread)                   stream process (python -m this module)
    ----------------------------                   --------------------------------------
    frame -> kernels -> publish micro results
      MilliPath.on_results: packs the frame's
      chain-relevant inputs as tick events,
      and samples prices on the correlation clock
        PUSH (never blocks) --ipc events-------->  PULL -> StreamJobs: option quotes, chain
                                                          builds, return windows -> jobs
                                                          -> Dispatcher (stream lane workers)
        PULL <-------------------ipc results----  PUSH per worker: finished records
      header + seq, publish on the PUB
      stats: read the stats slot  <---mmap-----   snapshot of lanes, backends, chains

The engine thread's share is a few hundred nanoseconds per relevant input (one packed
event) and one non-blocking send per frame; everything that runs Python per job (chain
state, job objects, queues, fusing, kernels, encoding the records) holds the stream
process's GIL, not the engine's. Both ipc endpoints live in a private directory
(mode 0700).

Start-up overlaps the engine's: the process is started before the engine compiles its
streaming kernels (``on_prepare``) and loads the batch kernels meanwhile; the engine then
sends the routing crossovers it found (a second line) and waits until it is ready.
Overflow: events beyond ``dispatch.event_hwm`` queued for the process are dropped and
counted (``events.dropped``); results beyond ``result_hwm`` as in the in-process pipe.
If the process dies, the engine starts it again at its next stats tick; the chains'
option quotes it held are lost with it (they fill again from the next quotes).
"""

from __future__ import annotations

import base64
import logging
import os
import pickle
import shutil
import sys
import tempfile
import time
from typing import Any

import msgspec
import zmq

from tickpath.engine.service.child_process import (
    ChildProcess,
    lower_priority,
    read_next_line,
    report,
    run_child,
)
from tickpath.engine.service.stats_slot import StatsSlot

log = logging.getLogger("tickpath.dispatch")

EVENTS = b"T"  # packed tick events (stream_jobs.pack_event)
SAMPLE = b"S"  # one correlation sample (stream_jobs.pack_sample)
STATS_INTERVAL_S = 0.25


# --------------------------------------------------------------------------- engine side


class StreamProcess:
    """Engine side: the child, the events PUSH, and the results endpoint it sends to."""

    def __init__(self, context: zmq.Context, config: Any) -> None:
        self.context = context
        self.config = config
        self._dir = tempfile.mkdtemp(prefix="tickpath-milli-")  # mode 0700: only us
        self.events_endpoint = f"ipc://{self._dir}/events"
        self.results_endpoint = f"ipc://{self._dir}/results"
        self.slot = StatsSlot.create()
        self.child = ChildProcess(
            "tickpath.engine.dispatch.stream_process", "the stream process", (self.slot.fd,)
        )
        self.push: zmq.Socket | None = None
        self.sent = 0
        self.dropped = 0
        self._configure: dict | None = None
        self._closing = False

    def start(self) -> None:
        """Start the child (it binds the events endpoint and loads its kernels)."""
        self.child.spawn(self._start_line())
        if self.push is None:
            self.push = self.context.socket(zmq.PUSH)
            self.push.setsockopt(zmq.SNDHWM, self.config.dispatch.event_hwm)
            self.push.setsockopt(zmq.LINGER, 0)
            self.push.connect(self.events_endpoint)  # queued until the child binds

    def _start_line(self) -> dict:
        return {
            "config": msgspec.json.encode(self.config).decode(),
            "stats_fd": self.slot.fd,
            "events": self.events_endpoint,
            "results": self.results_endpoint,
        }

    def configure(self, crossovers: dict, note: str) -> None:
        """Hand the child the routing crossovers the engine found (its second line)."""
        self._configure = {
            "crossovers": base64.b64encode(pickle.dumps(crossovers)).decode(),
            "calibration_note": note,
        }
        self.child.send_line(self._configure)

    def wait_ready(self) -> dict:
        """Block until the child is ready (start-up only)."""
        ready = self.child.wait_ready()
        log.info("milli path: stream process %d ready", self.child.pid)
        return ready

    def send(self, kind: bytes, body: bytes) -> bool:
        """Queue one message for the child without waiting; False (counted) when full."""
        try:
            self.push.send_multipart((kind, body), flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def check(self) -> None:
        """Once per stats interval: note the child's ready line; restart it if it died."""
        if not self._closing:
            self.child.keep_alive(self._start_line(), [self._configure] if self._configure else [])

    def snapshot(self) -> dict:
        """The child's latest stats snapshot ({} before its first)."""
        return self.slot.read_dict()

    def process_stats(self) -> dict:
        """pid, alive, ready, restarts, priority (what the child applied: "idle", "nice N")."""
        ready = self.child.ready if self.child.alive else None
        return {
            "pid": self.child.pid,
            "alive": self.child.alive,
            "ready": ready is not None,
            "restarts": self.child.restarts,
            "priority": (ready or {}).get("priority"),
        }

    def close(self) -> None:
        """Stop the child (it finishes its current jobs), close the socket, clean up."""
        self._closing = True
        if not self.child.stop():
            log.warning("milli path: the stream process did not exit in time: killed")
        if self.push is not None:
            self.push.close(linger=0)
            self.push = None
        self.slot.close()
        shutil.rmtree(self._dir, ignore_errors=True)


# --------------------------------------------------------------------------- child side


def _serve(start: dict) -> int:
    import numpy as np

    from tickpath.engine.config import EngineConfig
    from tickpath.engine.dispatch.backends import CHAIN_JOB, CPU, default_registry
    from tickpath.engine.dispatch.dispatcher import Dispatcher
    from tickpath.engine.dispatch.pipe import PUBLISH_META, PUBLISH_ROUTE, ResultPipe
    from tickpath.engine.dispatch.routing import HealthBook, RoutingTable, warm_up_routed
    from tickpath.engine.dispatch.stream_jobs import StreamJobs, unpack_sample

    config = msgspec.json.decode(start["config"].encode(), type=EngineConfig)
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(name)s %(levelname)s [stream process] %(message)s",
    )
    dispatch = config.dispatch
    what = "the stream process"
    priority = lower_priority(dispatch.stream_nice, dispatch.stream_sched_idle, what)
    context = zmq.Context()
    events = context.socket(zmq.PULL)
    events.setsockopt(zmq.RCVHWM, dispatch.event_hwm)
    events.setsockopt(zmq.LINGER, 0)
    events.bind(start["events"])
    slot = StatsSlot(start["stats_fd"])
    registry = default_registry()
    registry.detect()
    needed = {CHAIN_JOB, "black_scholes"} if dispatch.chains else set()
    if dispatch.correlation.symbols:
        needed.add("covariance")
    t0 = time.perf_counter()
    registry.get(CPU).warmup(needed)  # meanwhile the engine compiles its own kernels
    second = read_next_line()
    if second is None:  # the engine went away during start-up
        return 0
    crossovers = pickle.loads(base64.b64decode(second["crossovers"]))
    health = HealthBook(dispatch.health)
    routing = RoutingTable(
        dispatch.routes, registry, health, crossovers, dispatch.gpu_preference,
        second.get("calibration_note", ""),
    )  # fmt: skip
    warm_up_routed(dispatch, registry, needed)
    log.info("stream kernels ready in %.2f s", time.perf_counter() - t0)
    pipe = ResultPipe(context, dispatch.result_hwm, start["results"], pull=False)
    dispatcher = Dispatcher(dispatch, registry, routing, health)
    dispatcher.start()

    def sink(topic: bytes, kind: int, stream_id: int, records: np.ndarray) -> None:
        pipe.send(
            [PUBLISH_ROUTE, topic, PUBLISH_META.pack(kind, stream_id), records.view(np.uint8)]
        )

    jobs = StreamJobs(
        dispatch, config.analytics.n_symbols, lambda job: dispatcher.submit(job, "stream"), sink
    )
    received = {"messages": 0, "unknown": 0}
    kernels = sorted(  # loaded once, at start: what this configuration compiled
        m.rsplit(".", 1)[1] for m in sys.modules if m.startswith("tickpath.kernels.cpu.")
    )

    def publish() -> None:
        snap = dispatcher.stats()
        snap.update(jobs.stats())
        snap["pipe"] = pipe.stats()
        snap["received"] = dict(received)
        snap["kernels"] = kernels
        slot.write(msgspec.msgpack.encode(snap))

    publish()
    report({"ready": True, "pid": os.getpid(), "priority": priority})
    poller = zmq.Poller()
    poller.register(events, zmq.POLLIN)
    poller.register(0, zmq.POLLIN)  # stdin: EOF when the engine closes it or dies
    next_stats = time.monotonic()
    try:
        while True:
            ready = dict(poller.poll(int(STATS_INTERVAL_S * 1000)))
            if 0 in ready and not os.read(0, 4096):
                break
            if events in ready:
                for _ in range(1024):  # then stats and stdin get a look
                    try:
                        kind, body = events.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    except ValueError:  # not two parts: cannot come from the engine
                        received["unknown"] += 1
                        continue
                    received["messages"] += 1
                    if kind.bytes == EVENTS:
                        jobs.on_events(body.buffer)
                    elif kind.bytes == SAMPLE:
                        jobs.on_sample(*unpack_sample(body.buffer))
                    else:
                        received["unknown"] += 1
            now = time.monotonic()
            if now >= next_stats:
                publish()
                next_stats = now + STATS_INTERVAL_S
    finally:
        dispatcher.close()
        publish()
        pipe.close()
        events.close(linger=0)
        context.term()
        slot.close()
    return 0


def main() -> int:
    """Entry point of the stream process (started by `StreamProcess`)."""
    return run_child(_serve, "the stream process")


if __name__ == "__main__":
    sys.exit(main())
