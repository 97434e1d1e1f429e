"""CoalescingQueue: bound, coalescing in place, refusal, micro-batching, close."""

from __future__ import annotations

import threading

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
    # no consumer exists: a put that waited for room would never return
    results = [q.put(i) for i in range(5)]  # keyless: never coalesced
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


def _take_in_thread(q, *args):
    out = {}
    thread = threading.Thread(target=lambda: out.update(batch=q.take(*args)))
    thread.start()
    return thread, out


def test_take_gives_up_waiting_for_company_at_max_wait():
    q = CoalescingQueue(16)
    q.put("first")
    thread, out = _take_in_thread(q, 4, 0.15)
    thread.join(120)  # nobody else puts: it returns the partial batch once max_wait is over
    assert not thread.is_alive()
    assert [j for _, j in out["batch"]] == ["first"]
    assert q.stats()["taken"] == 1 and len(q) == 0


def test_take_waits_for_the_batch_to_fill_and_returns_once_full():
    q = CoalescingQueue(16)
    q.put("head")
    # max_wait far beyond the test: the batch can only come back because it is full
    thread, out = _take_in_thread(q, 4, 600.0)
    for i in range(3):
        q.put(i)
    thread.join(120)
    assert not thread.is_alive()
    assert [j for _, j in out["batch"]] == ["head", 0, 1, 2]


def test_take_blocks_until_a_job_or_stop():
    q = CoalescingQueue(4)
    stop = threading.Event()
    thread, out = _take_in_thread(q, 4, 0.0, stop)
    q.put("job")  # an empty queue's take returns with the first job
    thread.join(120)
    assert not thread.is_alive() and [j for _, j in out["batch"]] == ["job"]
    thread, out = _take_in_thread(q, 4, 0.0, stop)
    stop.set()  # or with nothing once stopped
    thread.join(120)
    assert not thread.is_alive() and out["batch"] == []


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
