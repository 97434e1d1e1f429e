"""CoalescingQueue: bound, coalescing in place, refusal, micro-batching, close."""

from __future__ import annotations

import threading
import time

import pytest

from tickpath.engine.dispatch.queues import CoalescingQueue


def test_coalescing_replaces_in_place_and_keeps_the_wait():
    q = CoalescingQueue(8)
    assert q.put("a1", key="a") and q.put("b1", key="b") and q.put("a2", key="a")
    batch = q.take(8, 0.0)
    assert [job for _, job in batch] == ["a2", "b1"]  # a kept its place, newest payload
    assert batch[0][0] <= batch[1][0]  # and the time it was first queued
    assert q.stats()["coalesced"] == 1 and q.stats()["submitted"] == 3


def test_capacity_is_enforced_by_refusal_without_blocking():
    q = CoalescingQueue(2)
    t0 = time.perf_counter()
    results = [q.put(i) for i in range(5)]  # keyless: never coalesced
    assert time.perf_counter() - t0 < 0.05
    assert results == [True, True, False, False, False]
    assert len(q) == 2 and q.stats()["refused"] == 3
    assert q.put("x", key=0) is False  # a new key on a full queue: refused too
    q.take(1, 0.0)
    assert q.put("y", key="k") and q.put("z", key="k")  # room for one key; then coalesced
    assert q.stats()["refused"] == 4 and q.stats()["coalesced"] == 1


def test_take_returns_at_most_max_batch_oldest_first():
    q = CoalescingQueue(16)
    for i in range(10):
        q.put(i)
    assert [j for _, j in q.take(4, 0.0)] == [0, 1, 2, 3]
    assert [j for _, j in q.take(100, 0.0)] == [4, 5, 6, 7, 8, 9]


def test_take_waits_up_to_max_wait_for_the_batch_to_fill():
    q = CoalescingQueue(16)
    q.put("first")
    t0 = time.perf_counter()
    batch = q.take(4, 0.15)
    waited = time.perf_counter() - t0
    assert [j for _, j in batch] == ["first"]
    assert 0.1 <= waited < 1.0  # waited for company, then gave up at max_wait

    def later():
        time.sleep(0.05)
        for i in range(3):
            q.put(i)

    q.put("head")
    threading.Thread(target=later).start()
    t0 = time.perf_counter()
    batch = q.take(4, 5.0)
    assert [j for _, j in batch] == ["head", 0, 1, 2]  # full batch: no need to wait 5 s
    assert time.perf_counter() - t0 < 2.0


def test_take_blocks_until_a_job_or_stop():
    q = CoalescingQueue(4)
    stop = threading.Event()
    threading.Timer(0.15, stop.set).start()
    t0 = time.perf_counter()
    assert q.take(4, 0.0, stop) == []
    assert time.perf_counter() - t0 >= 0.1


def test_close_refuses_and_returns_what_was_queued():
    q = CoalescingQueue(4)
    q.put("a")
    q.put("b", key="k")
    assert sorted(q.close()) == ["a", "b"]
    assert q.put("c") is False
    assert q.take(4, 0.0) == []


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        CoalescingQueue(0)
