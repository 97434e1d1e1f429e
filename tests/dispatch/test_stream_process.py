"""The milli path's stream jobs in their own process, over real sockets: chain results come
from it, the ticks never wait for it (frozen, it only costs dropped events, counted), and a
dead one is started again."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from tests.dispatch.helpers import EngineRig
from tests.dispatch.test_milli_e2e import CHAIN, assert_reference
from tests.waiting import all_threads_stopped, wait_until


@pytest.fixture
def rig():
    r = EngineRig(dispatch={"chains": [CHAIN], "event_hwm": 50})
    yield r
    r.close()


def _process(rig) -> dict:
    return rig.engine.stats()["dispatch"]["stream_process"]


def test_chain_jobs_run_in_the_stream_process(rig):
    info = _process(rig)
    assert info["alive"] and info["ready"] and info["pid"] not in (0, os.getpid())
    assert info["priority"] == "nice 5"  # below the engine, not SCHED_IDLE (a share kept)
    tids = [int(t) for t in os.listdir(f"/proc/{info['pid']}/task")]  # every thread
    niceness = {os.getpriority(os.PRIO_PROCESS, tid) for tid in tids}
    assert niceness == {os.getpriority(os.PRIO_PROCESS, 0) + 5}
    assert rig.milli.dispatcher is None  # no worker thread in the engine process
    rig.quote(0, 100.0)
    ((_, _, rec),) = rig.results(b"chain.")
    assert np.all(rec["underlying"] == 100.0)
    assert_reference(rec)
    # the engine process's GIL ran none of it: the jobs were counted over there
    wait_until(lambda: rig.engine.stats()["dispatch"]["lanes"]["stream"]["completed"] >= 1,
               what="the stream process's lane counters")  # fmt: skip
    assert "chain" in _process(rig)["kernels"]


def test_a_frozen_stream_process_does_not_stop_the_ticks(rig):
    rig.quote(0, 100.0)
    rig.results(b"chain.")
    pid = _process(rig)["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_until(lambda: all_threads_stopped(pid), what="the stream process to stop")
        n = 2000  # far beyond event_hwm (50 on each side of the ipc pipe)
        mids = 100.0 + np.arange(n) * 0.01
        got = []
        for chunk in np.split(mids, 10):  # in chunks: the rig's PUB holds 1000 frames
            for mid in chunk:
                rig.quote(0, float(mid))
            # every quote result comes while the stream process cannot run
            got += rig.results(b"quote.0", count=len(chunk))
        assert [round(float(r["mid"][0]), 6) for _, _, r in got] == [
            round(float(m), 6) for m in mids
        ]
        events = wait_until(
            lambda: (e := rig.engine.stats()["dispatch"]["events"])["dropped"] > 0 and e,
            what=lambda: f"dropped events counted: {rig.engine.stats()['dispatch']['events']}",
        )
        assert events["sent"] + events["dropped"] == n + 1
    finally:
        os.kill(pid, signal.SIGCONT)
    # running again, it takes every event that was queued before its queue filled up...
    wait_until(
        lambda: (
            _process(rig)["events_received"] == rig.engine.stats()["dispatch"]["events"]["sent"]
        ),
        what=lambda: f"the queued events taken: {_process(rig)}",
    )
    rig.quote(0, 123.0)  # ...and reprices at the next price
    frames = rig.results_until(b"chain.", lambda rec: rec["underlying"][0] == 123.0)
    assert_reference(frames[-1][2])


def test_a_dead_stream_process_is_started_again(rig):
    first = _process(rig)["pid"]
    os.kill(first, signal.SIGKILL)
    wait_until(
        lambda: (p := _process(rig))["restarts"] == 1 and p["ready"] and p["pid"] != first,
        what=lambda: f"a new stream process: {_process(rig)}",
    )
    rig.quote(0, 101.0)
    frames = rig.results_until(b"chain.", lambda rec: rec["underlying"][0] == 101.0)
    assert_reference(frames[-1][2])
