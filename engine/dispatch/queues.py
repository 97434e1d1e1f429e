"""A bounded, coalescing job queue with micro-batching: the only queue between the engine
thread and the milli-path workers.

Overflow policy (never blocks the producer, which is the engine thread):

* a job whose ``key`` is already queued **replaces** the queued job in its place in line
  (the newest underlying price wins; counted ``coalesced``);
* a job with a new key when ``capacity`` jobs are queued is **refused**: ``put`` returns
  False at once and counts it ``refused`` (the producer decides: the stream path lets the
  next tick try again, the request endpoint answers ``busy``);
* a job without a key (``None``) is never coalesced.

Consumers call `take`, which waits for a first job, then up to ``max_wait_s`` after that
job was queued for the batch to fill to ``max_batch`` jobs, and returns them oldest first.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Hashable
from typing import Any


class CoalescingQueue:
    """Bounded FIFO of jobs keyed for coalescing; thread-safe; `put` never blocks."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._items: dict[Hashable, tuple[int, Any]] = {}  # key -> (queued_ns, job)
        self._cond = threading.Condition(threading.Lock())
        self._unique = itertools.count()
        self._closed = False
        self.submitted = 0
        self.coalesced = 0
        self.refused = 0
        self.taken = 0
        self.high_water = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, job: Any, key: Hashable | None = None) -> bool:
        """Queue `job` under `key`; False (refused, counted) when full or closed."""
        now = time.monotonic_ns()
        with self._cond:
            self.submitted += 1
            if self._closed:
                self.refused += 1
                return False
            if key is not None and key in self._items:
                queued_ns, _ = self._items[key]
                self._items[key] = (queued_ns, job)  # keeps its place and its wait so far
                self.coalesced += 1
                return True
            if len(self._items) >= self.capacity:
                self.refused += 1
                return False
            if key is None:
                key = ("_unique", next(self._unique))
            self._items[key] = (now, job)
            self.high_water = max(self.high_water, len(self._items))
            self._cond.notify()
            return True

    def take(
        self, max_batch: int, max_wait_s: float, stop: threading.Event | None = None
    ) -> list[tuple[int, Any]]:
        """Up to `max_batch` ``(queued_ns, job)``, oldest first; [] when closed or stopped.

        Blocks until a job is queued (waking every 0.1 s to look at `stop`), then waits
        until the batch is full or the oldest job has waited `max_wait_s`.
        """
        with self._cond:
            while not self._items:
                if self._closed or (stop is not None and stop.is_set()):
                    return []
                self._cond.wait(0.1)
            if max_batch > 1 and max_wait_s > 0:
                oldest_ns = next(iter(self._items.values()))[0]
                deadline = oldest_ns + int(max_wait_s * 1e9)
                while len(self._items) < max_batch and not self._closed:
                    remaining = (deadline - time.monotonic_ns()) / 1e9
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            batch = []
            for key in itertools.islice(list(self._items), max_batch):
                batch.append(self._items.pop(key))
            self.taken += len(batch)
            return batch

    def close(self) -> list[Any]:
        """Refuse further jobs, wake every consumer; return the jobs still queued."""
        with self._cond:
            self._closed = True
            left = [job for _, job in self._items.values()]
            self._items.clear()
            self._cond.notify_all()
            return left

    def stats(self) -> dict:
        """Counters and the current depth."""
        with self._cond:
            return {
                "capacity": self.capacity,
                "depth": len(self._items),
                "high_water": self.high_water,
                "submitted": self.submitted,
                "coalesced": self.coalesced,
                "refused": self.refused,
                "taken": self.taken,
            }
