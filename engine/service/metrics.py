"""``serve --metrics HOST:PORT``: the engine's figures for Prometheus, off the tick path.

Nothing here runs per tick on the engine thread.  Once per stats interval the
engine thread hands over what it would publish anyway (the ``stats`` dict and a
copy of the per-topic sequence numbers, a few kilobytes); prometheus_client's
HTTP server thread turns the latest copy into metric families when it is
scraped.  The tick-to-result latency histograms are filled by a third thread
that subscribes to the engine's own results like any client: it wakes every
:data:`SAMPLE_PERIOD_S`, takes at most :data:`SAMPLE_BUDGET` messages and lets
ZeroMQ drop the rest (its RCVHWM is small), so at high rates the histograms are
a sample and the engine thread never waits for it.

Metric names (all prefixed ``tickpath_``) are listed in docs/metrics.md.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import zmq

from tickpath.engine.wire import schema as s

log = logging.getLogger("tickpath.metrics")

SAMPLE_PERIOD_S = 0.05  # the latency sampler's wake-up period
SAMPLE_BUDGET = 500  # results it decodes per wake-up, at most (10,000/s)
SAMPLE_HWM = 1_000  # messages queued for it before ZeroMQ drops
# Latency buckets in seconds: 10 us .. 1 s
LATENCY_BUCKETS = (
    1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1.0,
)  # fmt: skip

_COUNTERS = {
    "frames_received": "frames received, rejected or not",
    "frames_accepted": "frames that passed the checks",
    "records_received": "records received, rejected or not",
    "records_accepted": "records that reached the analytics",
    "bytes_received": "bytes received",
    "frames_rejected": "frames rejected (every frame-level reason)",
    "records_rejected": "records rejected (every record-level reason)",
    "gaps": "forward sequence jumps, all streams",
    "records_lost": "records skipped by those jumps",
    "sequence_resets": "publisher restarts (seq 0 after a start)",
    "results_published": "result messages sent",
    "vwap_window_truncated": "trades pushed out of the VWAP window by a full ring",
}
_COMMON = np.dtype(s.RESULT_QUOTE.descr[:7])  # the 48-byte common block


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> ``(host, port)``; ``ValueError`` with a one-line reason."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--metrics wants HOST:PORT (e.g. 127.0.0.1:9108), got {text!r}")
    return host.strip("[]"), int(port)


def _metric_name(parts: list[str]) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", "_".join(["tickpath", *parts]))


def _flatten(value: Any, path: list[str], keys: list[str]) -> Iterator[tuple[list, list, float]]:
    """Numeric leaves of nested dicts: (name parts, label values, value); digit keys are labels."""
    if isinstance(value, dict):
        for k, v in value.items():
            k = str(k)
            if k.isdigit():
                yield from _flatten(v, path, keys + [k])
            else:
                yield from _flatten(v, path + [k], keys)
    elif isinstance(value, (bool, int, float)) and not isinstance(value, str):
        yield path, keys, float(value)


class _Collector:
    """Builds the metric families from the latest snapshot, at scrape time."""

    def __init__(self, owner: MetricsExtension) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        stats, out_seq = self.owner.snapshot
        if not stats:
            return
        up = GaugeMetricFamily("tickpath_up", "1 once the engine has published its stats")
        up.add_metric([], 1.0)
        yield up
        state = GaugeMetricFamily(
            "tickpath_state", "1 for the engine's current state", labels=["state"]
        )
        for name in ("ready", "running", "stopped"):
            state.add_metric([name], 1.0 if stats.get("state") == name else 0.0)
        yield state
        uptime = GaugeMetricFamily("tickpath_uptime_seconds", "seconds since the sockets opened")
        uptime.add_metric([], float(stats.get("uptime_s", 0.0)))
        yield uptime
        for key, help_text in _COUNTERS.items():
            if key in stats:
                family = CounterMetricFamily(f"tickpath_{key}", help_text)
                family.add_metric([], float(stats[key]))
                yield family
        for key, label, help_text in (
            ("rejected", "reason", "rejects by reason"),
            ("processed", "analytic", "records processed per analytic"),
            ("book", "event", "book edge cases (README: Book edge cases)"),
        ):
            family = CounterMetricFamily(f"tickpath_{key}", help_text, labels=[label])
            for name, value in stats.get(key, {}).items():
                family.add_metric([name], float(value))
            yield family
        per_stream = {
            "frames": CounterMetricFamily(
                "tickpath_stream_frames", "frames per stream", labels=["stream"]
            ),
            "gaps": CounterMetricFamily(
                "tickpath_stream_gaps", "gaps per stream", labels=["stream"]
            ),
            "records_lost": CounterMetricFamily(
                "tickpath_stream_records_lost", "records lost per stream", labels=["stream"]
            ),
            "next_seq": GaugeMetricFamily(
                "tickpath_stream_next_seq", "sequence expected next per stream", labels=["stream"]
            ),
        }
        for stream, figures in stats.get("streams", {}).items():
            for key, family in per_stream.items():
                if key in figures:
                    family.add_metric([stream], float(figures[key]))
        yield from per_stream.values()
        topic = GaugeMetricFamily(
            "tickpath_topic_seq",
            "results published per topic (the next result's seq)",
            labels=["analytic", "symbol"],
        )
        if out_seq is not None:
            for a, sym in zip(*np.nonzero(out_seq)):
                topic.add_metric([self.owner.analytics[a], str(int(sym))], float(out_seq[a, sym]))
        yield topic
        # every extension's figures (journal, dispatch lanes, security, ...), generically
        families: dict[str, Any] = {}
        for ext in self.owner.extension_names:
            for parts, keys, value in _flatten(stats.get(ext), [ext], []):
                name = _metric_name(parts)
                labels = [f"key{i}" if i else "key" for i in range(len(keys))]
                family = families.get(name)
                if family is None:
                    family = families[name] = GaugeMetricFamily(
                        name, f"stats.{'.'.join(parts)}", labels=labels
                    )
                if len(labels) == len(family._labelnames):
                    family.add_metric(keys, value)
        yield from families.values()


class MetricsExtension:
    """Engine extension: a Prometheus endpoint on ``host:port``."""

    name = "metrics"

    def __init__(self, host: str, port: int) -> None:
        from prometheus_client import CollectorRegistry, Histogram

        self.host, self.port = host, port
        self.registry = CollectorRegistry()
        self.snapshot: tuple[dict, np.ndarray | None] = ({}, None)
        self.extension_names: list[str] = []
        self.analytics: list[str] = []
        self.registry.register(_Collector(self))
        self.latency = {
            stage: Histogram(
                f"tickpath_{stage}_seconds",
                help_text,
                ["analytic"],
                buckets=LATENCY_BUCKETS,
                registry=self.registry,
            )
            for stage, help_text in (
                ("engine", "engine time per result: frame received to kernels done (sampled)"),
                (
                    "tick_to_result",
                    "input frame sent to result received by a subscriber "
                    "on the engine's host (sampled)",
                ),  # fmt: skip
            )
        }
        self.sampled = 0
        self._server = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sub: zmq.Socket | None = None

    def on_start(self, engine: Any) -> None:
        """Start the HTTP server (before the engine's sockets open: scrapes see it start)."""
        from prometheus_client import start_http_server

        from tickpath.engine.service.engine import StatsHook
        from tickpath.kernels.cpu import streaming as k

        self.analytics = list(k.ANALYTIC_NAMES)
        self.extension_names = [
            getattr(ext, "name", "") for ext in engine.extensions
            if isinstance(ext, StatsHook) and ext is not self
        ]  # fmt: skip
        self._server, _ = start_http_server(self.port, addr=self.host, registry=self.registry)
        self.port = self._server.server_address[1]
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    def _start_sampler(self, engine: Any) -> None:
        self._sub = engine.context.socket(zmq.SUB)
        self._sub.setsockopt(zmq.RCVHWM, SAMPLE_HWM)
        self._sub.setsockopt(zmq.LINGER, 0)
        for analytic in s.ANALYTIC_OF_KIND.values():
            self._sub.setsockopt(zmq.SUBSCRIBE, analytic.encode())
        self._sub.connect(_connectable(engine.publisher.endpoint))
        self._thread = threading.Thread(target=self._sample, name="metrics-sampler", daemon=True)
        self._thread.start()

    def on_tick(self, engine: Any, now_ns: int) -> None:
        """Once per stats interval, on the engine thread: hand over a copy of the figures."""
        if self._thread is None:
            self._start_sampler(engine)
        self.snapshot = (engine.stats(), engine.processor.state.out_seq.copy())

    def _sample(self) -> None:
        sub = self._sub
        engine_h = {a: self.latency["engine"].labels(a) for a in s.ANALYTIC_OF_KIND.values()}
        wire_h = {a: self.latency["tick_to_result"].labels(a) for a in s.ANALYTIC_OF_KIND.values()}
        while not self._stop.wait(SAMPLE_PERIOD_S):
            for _ in range(SAMPLE_BUDGET):
                try:
                    parts = sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                except zmq.ZMQError:
                    return
                now = time_ns()
                frame = parts[-1]
                if len(frame) < s.HEADER_SIZE + _COMMON.itemsize:
                    continue
                kind = int.from_bytes(frame[6:8], "little")
                analytic = s.ANALYTIC_OF_KIND.get(kind)
                if analytic is None:
                    continue
                common = np.frombuffer(frame, _COMMON, 1, s.HEADER_SIZE)[0]
                engine_h[analytic].observe(max(0, common["done_ns"] - common["recv_ns"]) / 1e9)
                if common["in_send_ns"] > 0:
                    wire_h[analytic].observe(max(0, now - common["in_send_ns"]) / 1e9)
                self.sampled += 1

    def close(self) -> None:
        """Stop the sampler and the HTTP server."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sub is not None:
            self._sub.close(linger=0)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def time_ns() -> int:
    """Wall clock in ns (the clock ``send_ns`` and ``done_ns`` use)."""
    import time

    return time.time_ns()


def _connectable(endpoint: str) -> str:
    """A bound endpoint as a client connects to it (``*`` / ``0.0.0.0`` -> loopback)."""
    return endpoint.replace("://*:", "://127.0.0.1:").replace("://0.0.0.0:", "://127.0.0.1:")
