"""``scheduling.realtime_priority``: the micro path's threads under ``SCHED_FIFO``.

The engine runs over real sockets (the harness of test_engine_sockets); the threads'
policies are read back from the kernel.  Where this process may not use ``SCHED_FIFO``
(root in a container without ``CAP_SYS_NICE``), the engine must say so in its log and its
stats and serve at normal priority.
"""

from __future__ import annotations

import logging
import os
import threading

import pytest

from tests.integration.test_engine_sockets import Harness
from tests.waiting import wait_until
from tickpath.engine.config import load_config
from tickpath.engine.service.engine import Engine

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not hasattr(os, "SCHED_FIFO"), reason="Linux scheduling policies"),
]


def _fifo_allowed() -> bool:
    """Whether a thread of this process may run under SCHED_FIFO (tried on a throwaway one)."""
    allowed = []

    def attempt() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        except OSError:
            allowed.append(False)
        else:
            allowed.append(True)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join()
    return allowed[0]


class OwnContextHarness(Harness):
    """The harness with an engine that makes its own context (as ``tickpath serve`` does),
    whose tick thread reports its policy after ``run`` returns."""

    policy_after_run: int | None = None

    def _make_engine(self, config):
        engine = Engine(config)
        run = engine.run

        def run_then_report() -> None:
            run()
            self.policy_after_run = os.sched_getscheduler(0)

        engine.run = run_then_report
        return engine


def test_realtime_priority_puts_the_tick_and_private_io_threads_under_fifo(caplog):
    caplog.set_level(logging.WARNING, logger="tickpath.engine")
    allowed = _fifo_allowed()
    h = OwnContextHarness(**{"scheduling.realtime_priority": 3})
    try:  # joined: probes went in and their results came out at this priority
        engine = h.engine
        tick, io = engine.tick_thread_id, engine.io_threads[0]
        assert tick and io and tick != io
        scheduled = engine.stats()["scheduling"]
        if allowed:
            expected = {"realtime_priority": 3, "tick_thread": "fifo 3", "io_thread": "fifo 3"}
            assert scheduled == expected
            for tid in (tick, io):
                assert os.sched_getscheduler(tid) == os.SCHED_FIFO, tid
                assert os.sched_getparam(tid).sched_priority == 3, tid
        else:
            assert scheduled["tick_thread"] == scheduled["io_thread"] == "normal"
            assert "cannot run under SCHED_FIFO 3" in caplog.text
            assert os.sched_getscheduler(tick) == os.SCHED_OTHER
    finally:
        h.close()
    wait_until(lambda: h.policy_after_run is not None, 30, "run() did not return")
    assert h.policy_after_run == os.SCHED_OTHER  # the thread is handed back as it came


def test_by_default_nothing_runs_under_a_realtime_policy():
    h = OwnContextHarness()
    try:
        assert "scheduling" not in h.engine.stats()
        assert h.engine.tick_thread_id == 0
        for tid in os.listdir("/proc/self/task"):
            assert os.sched_getscheduler(int(tid)) != os.SCHED_FIFO, tid
    finally:
        h.close()


@pytest.mark.parametrize("value", [-1, 100, 1000])
def test_a_realtime_priority_out_of_range_is_a_one_line_error(value):
    with pytest.raises(ValueError, match=r"scheduling\.realtime_priority must be in 0\.\.99"):
        load_config(None, {"scheduling.realtime_priority": value})
