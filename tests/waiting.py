"""Waiting in tests: poll a condition until it holds, with a generous deadline.

A test never sleeps a fixed time and then asserts: on a busy machine any fixed
time is too short. It waits for the condition it needs (a counter reached, a
file written, a result received) and fails with a message naming what never
happened. The deadline only bounds a test that is going to fail anyway, so it
is generous: a loaded 2-core machine compiling numba kernels is slow, not broken.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEADLINE_S = 120.0  # the default: far beyond any condition a passing test waits for


def wait_until(
    predicate: Callable[[], T],
    timeout: float = DEADLINE_S,
    what: str | Callable[[], str] = "the condition",
    interval: float = 0.01,
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    Raises AssertionError after ``timeout`` seconds, naming ``what`` (a string, or a
    callable that describes the state at that moment, e.g. the counters seen).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g} s waiting for {detail}")
        time.sleep(interval)  # a poll interval inside a deadline loop, not a fixed wait


def all_threads_stopped(pid: int) -> bool:
    """Every thread of ``pid`` is in the stopped state (Linux /proc): a SIGSTOP completes
    asynchronously, so a test that freezes a process waits for this before relying on it."""
    import os

    states = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as status:
            states += [line.split()[1] for line in status if line.startswith("State:")]
    return bool(states) and all(state == "T" for state in states)
