"""A helper process of the engine, and the protocol both sides speak.

The engine keeps work that could stall its tick thread (request handling, milli-path
stream jobs) in child processes, each ``python -m <module>``, started the same way:

* the engine writes one JSON line on the child's stdin (its start parameters), and may
  write more lines later (the child reads them when it needs them);
* the child writes one JSON line on its stdout when it is ready (``{"error": ...}`` if
  it cannot start), then nothing more there; its logs go to the inherited stderr;
* the child runs until its stdin reaches EOF: when the engine closes it, or when the
  engine dies (the kernel closes it), so no child outlives its engine.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

_log = logging.getLogger("tickpath.engine")

READY_TIMEOUT_S = 600.0  # a cold numba cache on a loaded machine compiles for minutes


class ChildProcess:
    """Engine side: start, wait for ready (without blocking the loop), restart, stop."""

    def __init__(self, module: str, what: str, pass_fds: tuple[int, ...] = ()) -> None:
        self.module = module
        self.what = what  # "the request process": for messages
        self.pass_fds = pass_fds
        self.proc: subprocess.Popen | None = None
        self.ready: dict | None = None  # the child's ready line, once it came
        self.restarts = 0
        self._buffer = b""

    @property
    def pid(self) -> int:
        """The child's pid (0 before it started)."""
        return self.proc.pid if self.proc is not None else 0

    @property
    def alive(self) -> bool:
        """The child is running."""
        return self.proc is not None and self.proc.poll() is None

    def spawn(self, start: dict) -> None:
        """Start the child and hand it its start line (does not wait)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=self.pass_fds,
        )  # fmt: skip
        self.ready = None
        self._buffer = b""
        self.send_line(start)

    def send_line(self, message: dict) -> bool:
        """Write one more JSON line to the child's stdin; False if it is gone."""
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):
            return False
        return True

    def poll_ready(self, timeout_s: float = 0.0) -> dict | None:
        """The child's ready line if it has come (waits at most `timeout_s`).

        Raises RuntimeError when the child reported an error or exited before it was ready.
        """
        if self.ready is not None:
            return self.ready
        fd = self.proc.stdout.fileno()
        readable, _, _ = select.select([fd], [], [], timeout_s)
        if readable:
            chunk = os.read(fd, 65536)
            if not chunk and not self._buffer:
                self.proc.wait(10)
                raise RuntimeError(
                    f"{self.what} exited with status {self.proc.returncode} before it was ready"
                )
            self._buffer += chunk or b"\n"
        if b"\n" not in self._buffer:
            return None
        line = json.loads(self._buffer.split(b"\n", 1)[0])
        if "error" in line:
            raise RuntimeError(f"{self.what}: {line['error']}")
        self.ready = line
        return line

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> dict:
        """Block until the child is ready; RuntimeError (and the child killed) if it is
        not within `timeout_s` or fails."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                ready = self.poll_ready(0.2)
            except RuntimeError:
                self.kill()
                raise
            if ready is not None:
                return ready
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.what} was not ready within {timeout_s:g} s")

    def keep_alive(self, start: dict, lines: Sequence[dict] = ()) -> None:
        """Once per stats tick (never waits): note the ready line of a child started again;
        start the child again with `start` (then `lines`) if it died."""
        if self.proc is None:
            return
        if self.alive:
            if self.ready is None:
                try:
                    if self.poll_ready(0.0) is not None:
                        _log.warning("%s (pid %d) is ready again", self.what, self.pid)
                except RuntimeError as exc:
                    _log.error("%s", exc)
            return
        self.restarts += 1
        _log.error(
            "%s exited with status %s; starting it again (%d)",
            self.what, self.proc.returncode, self.restarts,
        )  # fmt: skip
        self.close_pipes()
        self.spawn(start)
        for line in lines:
            self.send_line(line)

    def close_pipes(self) -> None:
        """Close our ends of its stdin (the child sees EOF and exits) and stdout."""
        if self.proc is None:
            return
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        if self.alive:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Close its stdin and wait for it to exit; kill it after `timeout_s`.
        False when it had to be killed."""
        if self.proc is None:
            return True
        self.close_pipes()
        try:
            self.proc.wait(timeout_s)
            return True
        except subprocess.TimeoutExpired:
            self.kill()
            return False
        finally:
            self.proc = None


# --------------------------------------------------------------------------- child side


def read_start_line() -> dict | None:
    """The child's start parameters (None: the engine closed stdin before sending them)."""
    line = sys.stdin.buffer.readline()
    return json.loads(line) if line else None


def read_next_line() -> dict | None:
    """A further line of the engine (blocks; None at EOF)."""
    line = sys.stdin.buffer.readline()
    return json.loads(line) if line else None


def report(message: dict[str, Any]) -> None:
    """Write the ready (or error) line to the engine."""
    try:
        os.write(1, json.dumps(message).encode() + b"\n")
    except OSError:  # the engine is gone
        pass


def lower_priority(nice: int, idle: bool, what: str) -> str:
    """Lower the CPU priority of this process's threads below the engine's.

    ``idle``: Linux's ``SCHED_IDLE`` policy for every thread, which the threads started
    afterwards (libzmq's I/O threads, lane workers) inherit.  The scheduler then preempts them as
    soon as a normal thread, the engine's tick thread, wakes up on their CPU, and gives
    them a tiny share while normal threads are runnable (they may wait long on a
    saturated machine: that is the point).  Otherwise ``nice`` is added to the niceness.
    Returns what was applied (``"idle"``, ``"nice N"`` or ``"normal"``); a refusal is
    logged and the process runs at the engine's priority.
    """
    # Linux schedules threads: the policy and the niceness are per thread, so the threads
    # already running (OpenBLAS's pool, started when numpy was imported) are set one by one.
    try:
        tids = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    try:
        if idle and hasattr(os, "SCHED_IDLE"):
            for tid in tids:
                os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
            return "idle"
        if nice:
            for tid in tids:
                level = os.getpriority(os.PRIO_PROCESS, tid) + nice
                os.setpriority(os.PRIO_PROCESS, tid, min(19, level))
            return f"nice {nice}"
    except OSError as exc:
        _log.warning("cannot lower %s's priority: %s", what, exc)
    return "normal"


def run_child(serve: Callable[[dict], int], what: str) -> int:
    """A child's ``main``: read the start line, run ``serve(start)``, return its status;
    an exception is logged and reported to the engine (which then refuses to start)."""
    start = read_start_line()
    if start is None:
        return 0
    try:
        return serve(start)
    except Exception as exc:
        logging.getLogger("tickpath").exception("%s failed", what)
        report({"error": f"{type(exc).__name__}: {exc}"})
        return 1
