"""The dispatcher: fallback to the CPU from a failing backend, health and retry,
deadlines, refusals, coalescing and fusion, all counted in stats."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests.dispatch.helpers import Rig, SleepJob, chain_job, reference_greeks
from tests.waiting import wait_until
from tickpath.engine.wire import schema as s

GREEKS = ("price", "delta", "gamma", "vega", "theta", "rho")


def assert_matches_reference(records: np.ndarray) -> None:
    ref = reference_greeks(records)
    for name in GREEKS:
        np.testing.assert_allclose(records[name], getattr(ref, name), rtol=1e-12, atol=1e-12)


def test_healthy_backend_computes_the_job(rig):
    rig.dispatcher.submit(chain_job(rig), "stream")
    (topic, kind, stream, rec), = rig.wait_published(1)  # fmt: skip
    assert (topic, kind, stream) == (b"chain.3", s.KIND_RESULT_CHAIN, 3)
    assert np.all(rec["backend"] == s.BACKEND_OTHER)  # "flaky" has no code of its own
    assert np.all(rec["flags"] & s.RESULT_FLAG_FALLBACK == 0)
    assert rig.flaky.calls == 1
    assert_matches_reference(rec)
    stats = rig.dispatcher.stats()
    assert stats["backends"]["flaky"]["jobs"] == 1
    assert stats["health"]["flaky"]["healthy"] is True


@pytest.mark.parametrize("mode, reason", [("raise", "raised"), ("nan", "non_finite"),
                                          ("hang", "timeout")])  # fmt: skip
def test_failing_backend_falls_back_to_cpu_then_is_retried(mode, reason):
    # the health clock is the rig's manual one: the retry pause ends when the test
    # advances it, so no step depends on how long the machine takes
    rig = Rig(lanes={"stream": {"timeout_s": 1.0}})
    try:
        rig.flaky.mode = mode
        rig.flaky.hang_s = 120.0  # "hang": until the test releases it
        rig.dispatcher.submit(chain_job(rig, S=99.0), "stream")
        rec = rig.wait_published(1)[0][3]
        # the job was not lost: computed on the cpu, flagged, correct
        assert np.all(rec["backend"] == s.BACKEND_CODES["cpu"])
        assert np.all(rec["flags"] & s.RESULT_FLAG_FALLBACK)
        assert np.all(rec["underlying"] == 99.0)
        assert_matches_reference(rec)
        stats = rig.dispatcher.stats()
        health = stats["health"]["flaky"]
        assert health["healthy"] is False
        assert health["failures_by_reason"] == {reason: 1}
        assert health["retry_in_s"] == 0.3  # retry_after_s, on the manual clock
        assert stats["lanes"]["stream"]["fallbacks"] == 1
        assert stats["backends"]["cpu"]["jobs"] == 1
        calls = rig.flaky.calls

        # while unhealthy: straight to the cpu, the backend is not called
        rig.dispatcher.submit(chain_job(rig, S=98.0), "stream")
        rec = rig.wait_published(2)[1][3]
        assert np.all(rec["backend"] == s.BACKEND_CODES["cpu"])
        assert np.all(rec["flags"] & s.RESULT_FLAG_FALLBACK == 0)  # routed to cpu, not failed
        assert rig.flaky.calls == calls

        # after retry_after_s: retried; it works again, so it is healthy again
        rig.flaky.mode = "ok"
        if mode == "hang":
            rig.flaky.release.set()  # the runner is still inside the timed-out call until then
            wait_until(rig.runners_idle, what="the timed-out call to return")
        rig.clock.advance(0.3)
        assert rig.dispatcher.stats()["health"]["flaky"]["retry_in_s"] == 0.0
        rig.dispatcher.submit(chain_job(rig, S=97.0), "stream")
        rec = rig.wait_published(3)[2][3]
        assert np.all(rec["backend"] == s.BACKEND_OTHER)
        assert rig.flaky.calls == calls + 1
        health = rig.dispatcher.stats()["health"]["flaky"]
        assert health["healthy"] is True
        assert health["retries"] == 1 and health["recoveries"] == 1
    finally:
        rig.close()


def test_backoff_doubles_while_the_backend_keeps_failing():
    rig = Rig(health={"retry_after_s": 0.2, "max_retry_after_s": 0.5})
    try:
        rig.flaky.mode = "raise"
        rig.dispatcher.submit(chain_job(rig), "stream")
        rig.wait_published(1)
        assert rig.dispatcher.stats()["health"]["flaky"]["retry_in_s"] == 0.2
        rig.clock.advance(0.2)  # the pause is over: the next job is a retry
        rig.dispatcher.submit(chain_job(rig), "stream")  # the retry fails again
        rig.wait_published(2)
        health = rig.dispatcher.stats()["health"]["flaky"]
        assert health["consecutive_failures"] == 2 and health["pause_s"] == 0.4  # doubled
        assert health["retry_in_s"] == 0.4
        assert rig.flaky.calls == 2
        rig.clock.advance(0.4)
        rig.dispatcher.submit(chain_job(rig), "stream")  # and again: capped at 0.5
        rig.wait_published(3)
        health = rig.dispatcher.stats()["health"]["flaky"]
        assert health["consecutive_failures"] == 3 and health["pause_s"] == 0.5
        assert rig.flaky.calls == 3
    finally:
        rig.close()


def test_cpu_failure_is_counted_and_reported_not_raised(rig):
    results = []

    class Broken(SleepJob):
        def compute(self, backend):
            raise ValueError("bad inputs")

    rig.dispatcher.submit(Broken(0, results), "stream")
    wait_until(lambda: results, what="the failed job's outcome")
    (outcome,) = results
    assert not outcome.ok and outcome.error_code == "failed"
    assert "bad inputs" in outcome.error and outcome.fallback
    stats = rig.dispatcher.stats()["lanes"]["stream"]
    assert stats["failed"] == 1 and stats["fallbacks"] == 1


def test_queue_bound_refuses_and_counts():
    rig = Rig(routes={"chain": "cpu"}, lanes={"stream": {"capacity": 3, "max_batch": 1}})
    try:
        results = []
        blocker = SleepJob(None, results)  # holds the one worker until released
        assert rig.dispatcher.submit(blocker, "stream")
        assert blocker.started.wait(120)
        accepted = [rig.dispatcher.submit(SleepJob(0, results), "stream") for _ in range(5)]
        assert accepted == [True, True, True, False, False]
        stats = rig.dispatcher.stats()["lanes"]["stream"]
        assert stats["refused"] == 2 and stats["depth"] == 3 and stats["high_water"] == 3
        blocker.release.set()
        wait_until(lambda: len(results) == 4, what=lambda: f"4 outcomes, got {len(results)}")
        assert all(o.ok for o in results)
    finally:
        rig.close()


def test_coalescing_keeps_the_newest_job_and_counts():
    rig = Rig(routes={"chain": "cpu"}, lanes={"stream": {"max_batch": 1}})
    try:
        results = []
        blocker = SleepJob(None, results)
        rig.dispatcher.submit(blocker, "stream")
        assert blocker.started.wait(120)
        for S in (100.0, 100.5, 101.0, 101.25):
            assert rig.dispatcher.submit(chain_job(rig, S=S), "stream")
        assert rig.dispatcher.stats()["lanes"]["stream"]["coalesced"] == 3
        blocker.release.set()
        published = rig.wait_published(1)
        wait_until(lambda: rig.dispatcher.stats()["lanes"]["stream"]["completed"] == 2,
                   what="the blocker and the one repricing to complete")  # fmt: skip
        assert len(rig.published) == 1  # four ticks, one repricing
        assert np.all(published[0][3]["underlying"] == 101.25)  # the newest price won
        stats = rig.dispatcher.stats()["lanes"]["stream"]
        assert stats["coalesced"] == 3 and stats["depth"] == 0
    finally:
        rig.close()


@pytest.mark.parametrize("policy", ["drop", "run"])
def test_deadlines_drop_policy_expires_and_run_policy_counts_late(policy):
    lane = {"max_batch": 1, "deadline_ms": 50, "expired": policy}
    rig = Rig(routes={"chain": "cpu"}, lanes={"stream": lane})
    try:
        results = []
        blocker = SleepJob(None, results)
        rig.dispatcher.submit(blocker, "stream")
        assert blocker.started.wait(120)
        waiting = SleepJob(0, results)
        rig.dispatcher.submit(waiting, "stream")
        # the blocker runs until the queued job's deadline has passed
        wait_until(lambda: time.monotonic_ns() > waiting.deadline_ns, what="the deadline")
        blocker.release.set()
        wait_until(lambda: len(results) == 2, what=lambda: f"2 outcomes, got {len(results)}")
        stats = rig.dispatcher.stats()["lanes"]["stream"]
        waited = results[1]
        if policy == "drop":
            assert not waited.ok and waited.error_code == "expired"
            assert stats["expired"] == 1 and stats["completed"] == 1
        else:
            assert waited.ok and waited.late
            assert stats["expired"] == 0 and stats["completed"] == 2
        assert results[0].late  # the blocker itself ran past its 50 ms
        assert stats["late"] == (1 if policy == "drop" else 2)
    finally:
        rig.close()


def test_micro_batch_fuses_chains_into_one_computation():
    # the worker waits (up to 1000 s) for the batch of 4 to fill: it fills at the 4th job
    rig = Rig(routes={"chain": "flaky"}, lanes={"stream": {"max_batch": 4, "max_wait_ms": 1000}})
    try:
        from tests.dispatch.helpers import CHAIN
        from tickpath.engine.dispatch.chains import build_chain

        specs = [build_chain(CHAIN.__class__(**{**_fields(CHAIN), "underlying": u,
                                                "option_symbol_base": None}))
                 for u in range(4)]  # fmt: skip
        # a blocker holds the worker while the four are queued, so they form one batch
        # whatever the time between the submissions
        blocker = SleepJob(None, [])
        rig.dispatcher.submit(blocker, "stream")
        assert blocker.started.wait(120)
        for u, spec in enumerate(specs):
            rig.dispatcher.submit(chain_job(rig, S=100.0 + u, spec=spec), "stream")
        blocker.release.set()
        published = rig.wait_published(4)
        assert rig.flaky.calls == 1  # one kernel call for four chains (no quotes: no IV call)
        by_topic = {topic: rec for topic, _, _, rec in published}
        for u in range(4):
            rec = by_topic[b"chain.%d" % u]
            assert np.all(rec["symbol"] == u) and np.all(rec["underlying"] == 100.0 + u)
            assert_matches_reference(rec)
        assert rig.dispatcher.stats()["lanes"]["stream"]["fused"] == 4
    finally:
        rig.close()


def _fields(struct) -> dict:
    return {f: getattr(struct, f) for f in struct.__struct_fields__}


def test_close_answers_queued_jobs_with_shutdown():
    rig = Rig(routes={"chain": "cpu"}, lanes={"stream": {"max_batch": 1}})
    results = []
    blocker = SleepJob(None, results)
    rig.dispatcher.submit(blocker, "stream")
    assert blocker.started.wait(120)
    rig.dispatcher.submit(SleepJob(0, results), "stream")

    def release_once_the_queued_job_is_answered():
        wait_until(lambda: results, what="the queued job's shutdown answer")
        blocker.release.set()

    releaser = threading.Thread(target=release_once_the_queued_job_is_answered)
    releaser.start()
    rig.dispatcher.close(timeout_s=120)  # answers the queued job, then waits for the worker
    releaser.join(120)
    assert [o.error_code for o in results] == ["shutdown", ""]  # queued one first
    assert not rig.dispatcher.submit(SleepJob(0, results), "stream")  # refused after close
