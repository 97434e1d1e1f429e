"""What the benchmarks share: HdrHistogram summaries, machine facts, child processes.

Latencies are recorded in nanoseconds into an HdrHistogram (3 significant
figures, 1 ns .. 60 s) and reported in microseconds under the keys of
:data:`PERCENTILES` plus ``max`` and ``count``.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import msgspec
import numpy as np
from hdrh.histogram import HdrHistogram

# (JSON key, percentile): the figures every latency summary reports, besides max and count.
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99_9", 99.9),
    ("p99_99", 99.99),
)
SUMMARY_KEYS: tuple[str, ...] = tuple(key for key, _ in PERCENTILES) + ("max",)
HIGHEST_NS = 60 * 10**9  # largest latency the histograms hold; above it is clipped and counted


class BenchError(RuntimeError):
    """A benchmark could not run (a child failed, a port was refused): one line for people."""


class Latency:
    """One latency distribution: an HdrHistogram of nanosecond values, plus the exact max."""

    def __init__(self, values_ns: np.ndarray | Sequence[int] = ()) -> None:
        self.hist = HdrHistogram(1, HIGHEST_NS, 3)
        self.max_ns = 0
        self.clipped = 0  # values above HIGHEST_NS (recorded as HIGHEST_NS)
        self.negative = 0  # values below 0 (clock steps; recorded as 0)
        self.record(np.asarray(values_ns, dtype=np.int64))

    @property
    def count(self) -> int:
        """Values recorded."""
        return int(self.hist.get_total_count())

    def record(self, values_ns: np.ndarray) -> None:
        """Record every value of ``values_ns`` (int64 ns), exactly as one ``record_value`` each.

        Values are grouped by the histogram's own bucket index first (numpy), so a
        million values cost one ``record_value`` call per distinct bucket, not per value.
        """
        v = np.asarray(values_ns, dtype=np.int64).ravel()
        if v.size == 0:
            return
        self.negative += int((v < 0).sum())
        self.clipped += int((v > HIGHEST_NS).sum())
        v = np.clip(v, 0, HIGHEST_NS)
        self.max_ns = max(self.max_ns, int(v.max()))
        h = self.hist
        # hdrh's _counts_index_for, vectorised: bucket from the bit length, then sub-bucket.
        _, bits = np.frexp((v | h.sub_bucket_mask).astype(np.float64))  # exact below 2**53
        bucket = bits.astype(np.int64) - h.unit_magnitude - (h.sub_bucket_half_count_magnitude + 1)
        sub_bucket = v >> (bucket + h.unit_magnitude)
        index = ((bucket + 1) << h.sub_bucket_half_count_magnitude) + sub_bucket
        _, first, counts = np.unique(index, return_index=True, return_counts=True)
        for j, n in zip(first.tolist(), counts.tolist()):
            h.record_value(int(v[j]), n)

    def summary(self) -> dict[str, float | int]:
        """``count``, the :data:`PERCENTILES` and ``max``, in microseconds (None when empty)."""
        out: dict[str, float | int | None] = {"count": self.count}
        if self.count == 0:
            out.update(dict.fromkeys(SUMMARY_KEYS))
            return out
        values = self.hist.get_percentile_to_value_dict([p for _, p in PERCENTILES])
        for key, p in PERCENTILES:  # a bucket's highest equivalent may pass the exact max
            out[key] = round(min(values[p], self.max_ns) / 1e3, 3)
        out["max"] = round(self.max_ns / 1e3, 3)
        if self.clipped:
            out["clipped_above_60s"] = self.clipped
        return out

    def distribution(self, points: int = 160) -> tuple[np.ndarray, np.ndarray]:
        """The percentile distribution for a plot: ``(percentile, latency in us)``.

        Percentiles run from 0 to the last one the count resolves, evenly spaced on
        the ``1 / (1 - p)`` axis; the max is the last point.
        """
        n = self.count
        if n == 0:
            return np.empty(0), np.empty(0)
        top = np.log10(max(n, 10))
        pct = 100.0 * (1.0 - 10.0 ** -np.linspace(0.0, top, points))
        pct = np.unique(np.round(pct[pct < 100.0], 10))
        values = self.hist.get_percentile_to_value_dict(pct.tolist())
        lat = np.array([values[p] for p in pct], dtype=np.float64) / 1e3
        tail = 100.0 * (1.0 - 1.0 / (2.0 * n))  # where the max sits on the 1/(1-p) axis
        top_us = self.max_ns / 1e3
        return np.append(pct, tail), np.append(np.minimum(lat, top_us), top_us)


def ratios(numerator: dict, denominator: dict) -> dict[str, float | None]:
    """``numerator[k] / denominator[k]`` for every percentile key and max (None if undefined)."""
    out: dict[str, float | None] = {}
    for key in SUMMARY_KEYS:
        a, b = numerator.get(key), denominator.get(key)
        out[key] = round(a / b, 3) if a is not None and b else None
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def write_json(path: str | os.PathLike[str], document: dict) -> None:
    """Write ``document`` as indented JSON (numpy scalars and arrays become plain values)."""
    encoded = msgspec.json.encode(document, enc_hook=_json_default)
    Path(path).write_text(msgspec.json.format(encoded, indent=2).decode() + "\n")


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or what the platform module says)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts() -> dict:
    """Cores, CPU model, OS, load average: the machine a figure was measured on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "cpu": cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "load_average_1_5_15m": load,
    }


def versions() -> dict:
    """Versions of Python, tickpath and the libraries whose speed the figures depend on."""
    import zmq

    out = {"python": platform.python_version(), "libzmq": zmq.zmq_version()}
    for dist in ("tickpath", "numpy", "numba", "pyzmq", "hdrhistogram", "msgspec"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    out["git_commit"] = out["git_dirty"] = None
    top = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=top,
                              capture_output=True, text=True, timeout=5)  # fmt: skip
        if head.returncode == 0:
            out["git_commit"] = head.stdout.strip()
            # uncommitted changes to the code being measured
            diff = subprocess.run(["git", "status", "--porcelain", "--", "engine", "kernels"],
                                  cwd=top, capture_output=True, text=True, timeout=5)  # fmt: skip
            out["git_dirty"] = bool(diff.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return out


class Children:
    """Child processes of one benchmark run, each in its own session, all stopped on exit.

    Each child's stdout and stderr go to ``<workdir>/<name>.log``.  Leaving the
    ``with`` block (normally, on an exception or on Ctrl-C) interrupts every child
    still running (SIGINT, then SIGTERM, then SIGKILL).  Own sessions keep a
    terminal's Ctrl-C away from the children: the parent alone decides when they stop;
    and each child gets SIGTERM if the parent dies outright (:mod:`tickpath.engine.bench.guard`).
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(self, name: str, argv: list[str], stdin: bool = False) -> subprocess.Popen:
        """Start ``argv`` as the child ``name``; ``stdin=True`` gives it a pipe to write to."""
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop_all
        self._logs.append(log)
        guarded = python_module("tickpath.engine.bench.guard", str(os.getpid()), *argv)
        proc = subprocess.Popen(
            guarded,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 3) -> str:
        """The last lines a child wrote, joined with `` | ``."""
        try:
            text = (self.workdir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    def check(self, expect_running: Sequence[str] = ()) -> None:
        """Raise :class:`BenchError` if a child failed, or one of ``expect_running`` exited."""
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is None:
                continue
            if code != 0 or name in expect_running:
                raise BenchError(
                    f"{name} exited with status {code}: {self.log_tail(name) or 'no output'}"
                )

    def wait_for_line(self, name: str, prefix: str, timeout_s: float) -> str:
        """Wait until child ``name`` writes a line starting with ``prefix``; return that line."""
        deadline = time.monotonic() + timeout_s
        path = self.workdir / f"{name}.log"
        while time.monotonic() < deadline:
            try:
                for line in path.read_text(errors="replace").splitlines():
                    if line.startswith(prefix):
                        return line
            except OSError:
                pass
            self.check(expect_running=[name])
            time.sleep(0.05)
        raise BenchError(f"{name} was not ready after {timeout_s:.0f} s: {self.log_tail(name)}")

    def stop_all(self, grace_s: float = 3.0) -> None:
        """Stop every child still running: SIGINT, then SIGTERM, then SIGKILL."""
        for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 1.0), (signal.SIGKILL, 1.0)):
            alive = [p for p in self.procs.values() if p.poll() is None]
            if not alive:
                break
            for proc in alive:
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            for proc in alive:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for proc in self.procs.values():
            if proc.stdin is not None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        for log in self._logs:
            log.close()
        self._logs.clear()


def python_module(module: str, *args: str) -> list[str]:
    """The argv that runs ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]
