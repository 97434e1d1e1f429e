"""The dispatcher: fallback to the CPU from a failing backend, health and retry,
deadlines, refusals, coalescing and fusion, all counted in stats."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.dispatch.helpers import Rig, SleepJob, chain_job, reference_greeks
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
    rig = Rig(lanes={"stream": {"timeout_s": 0.2}})
    try:
        rig.flaky.mode = mode
        rig.flaky.hang_s = 0.6
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
            time.sleep(0.6)  # the runner is still inside the timed-out call until then
        time.sleep(0.35)
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
        assert rig.dispatcher.stats()["health"]["flaky"]["retry_in_s"] <= 0.2
        time.sleep(0.25)
        rig.dispatcher.submit(chain_job(rig), "stream")  # the retry fails again
        rig.wait_published(2)
        health = rig.dispatcher.stats()["health"]["flaky"]
        assert health["consecutive_failures"] == 2 and health["pause_s"] == 0.4  # doubled
        assert rig.flaky.calls == 2
    finally:
        rig.close()


def test_cpu_failure_is_counted_and_reported_not_raised(rig):
    results = []

    class Broken(SleepJob):
        def compute(self, backend):
            raise ValueError("bad inputs")

    rig.dispatcher.submit(Broken(0, results), "stream")
    deadline = time.monotonic() + 5
    while not results and time.monotonic() < deadline:
        time.sleep(0.01)
    (outcome,) = results
    assert not outcome.ok and outcome.error_code == "failed"
    assert "bad inputs" in outcome.error and outcome.fallback
    stats = rig.dispatcher.stats()["lanes"]["stream"]
    assert stats["failed"] == 1 and stats["fallbacks"] == 1


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_queue_bound_refuses_and_counts():
    rig = Rig(routes={"chain": "cpu"}, lanes={"stream": {"capacity": 3, "max_batch": 1}})
    try:
        results = []
        blocker = SleepJob(0.4, results)
        assert rig.dispatcher.submit(blocker, "stream")
        blocker.started.wait(5)
        accepted = [rig.dispatcher.submit(SleepJob(0, results), "stream") for _ in range(5)]
        assert accepted == [True, True, True, False, False]
        stats = rig.dispatcher.stats()["lanes"]["stream"]
        assert stats["refused"] == 2 and stats["depth"] == 3 and stats["high_water"] == 3
        _wait(lambda: len(results) == 4)
        assert all(o.ok for o in results)
    finally:
        rig.close()


def test_coalescing_keeps_the_newest_job_and_counts():
    rig = Rig(routes={"chain": "cpu"}, lanes={"stream": {"max_batch": 1}})
    try:
        results = []
        blocker = SleepJob(0.3, results)
        rig.dispatcher.submit(blocker, "stream")
        blocker.started.wait(5)
        for S in (100.0, 100.5, 101.0, 101.25):
            assert rig.dispatcher.submit(chain_job(rig, S=S), "stream")
        published = rig.wait_published(1)
        time.sleep(0.1)
        assert len(rig.published) == 1  # four ticks, one repricing
        assert np.all(published[0][3]["underlying"] == 101.25)  # the newest price won
        stats = rig.dispatcher.stats()["lanes"]["stream"]
        assert stats["coalesced"] == 3
    finally:
        rig.close()


@pytest.mark.parametrize("policy", ["drop", "run"])
def test_deadlines_drop_policy_expires_and_run_policy_counts_late(policy):
    lane = {"max_batch": 1, "deadline_ms": 50, "expired": policy}
    rig = Rig(routes={"chain": "cpu"}, lanes={"stream": lane})
    try:
        results = []
        blocker = SleepJob(0.2, results)
        rig.dispatcher.submit(blocker, "stream")
        blocker.started.wait(5)
        rig.dispatcher.submit(SleepJob(0, results), "stream")
        _wait(lambda: len(results) == 2)
        stats = rig.dispatcher.stats()["lanes"]["stream"]
        waiting = results[1]
        if policy == "drop":
            assert not waiting.ok and waiting.error_code == "expired"
            assert stats["expired"] == 1 and stats["completed"] == 1
        else:
            assert waiting.ok and waiting.late
            assert stats["expired"] == 0 and stats["completed"] == 2
        assert results[0].late  # the blocker itself ran past its 50 ms
        assert stats["late"] == (1 if policy == "drop" else 2)
    finally:
        rig.close()


def test_micro_batch_fuses_chains_into_one_computation():
    rig = Rig(routes={"chain": "flaky"}, lanes={"stream": {"max_batch": 4, "max_wait_ms": 1000}})
    try:
        from tests.dispatch.helpers import CHAIN
        from tickpath.engine.dispatch.chains import build_chain

        specs = [build_chain(CHAIN.__class__(**{**_fields(CHAIN), "underlying": u,
                                                "option_symbol_base": None}))
                 for u in range(4)]  # fmt: skip
        for u, spec in enumerate(specs):
            rig.dispatcher.submit(chain_job(rig, S=100.0 + u, spec=spec), "stream")
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
    blocker = SleepJob(0.2, results)
    rig.dispatcher.submit(blocker, "stream")
    blocker.started.wait(5)
    rig.dispatcher.submit(SleepJob(0, results), "stream")
    rig.close()
    codes = sorted(o.error_code for o in results)
    assert codes == ["", "shutdown"]
    assert not rig.dispatcher.submit(SleepJob(0, results), "stream")  # refused after close
