"""The request endpoint runs in its own process: the tick path never shares a GIL, a CPU
priority or a ZAP handler with request work (docs/architecture.md). Over real sockets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest
import zmq

from tests.dispatch.helpers import EngineRig
from tests.serving import ANY_PORT, bound_endpoints
from tickpath.engine.bench.ticker import Ticker
from tickpath.engine.service.requests import decode_reply, encode_request, request
from tickpath.engine.service.stats_slot import StatsSlot

REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 120.0
CHAIN_JOB = {"type": "price_chain", "id": "c", "spot": 100.0, "strike": [90.0, 110.0],
             "expiry": 0.5, "vol": 0.2, "call": True}  # fmt: skip


def wait_for(condition, what: str, timeout_s: float = DEADLINE_S):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def rig():
    r = EngineRig(dispatch={"requests": {"max_json_bytes": 4096}}, requests=True)
    yield r
    r.close()


def test_requests_are_served_by_another_process(rig):
    reply = request(rig.request_endpoint, CHAIN_JOB, timeout_s=60)
    assert reply["ok"], reply
    proc = rig.engine.stats()["requests"]["process"]
    assert proc["alive"] and proc["ready"] and proc["pid"] not in (0, os.getpid())
    # nothing of the request path runs in the engine's process: no request-lane worker,
    # no milli-path worker at all (no chains or correlation configured)
    names = [t.name for t in threading.enumerate()]
    assert not [n for n in names if n.startswith("tickpath-requests")], names
    assert rig.milli.dispatcher is None
    lane = rig.engine.stats()["dispatch"]["lanes"]["requests"]
    assert lane["completed"] >= 1  # the child's lane counters, merged into dispatch


def test_every_thread_of_the_request_process_runs_below_the_engine(rig):
    """The request process and every thread it started (the OpenBLAS pool numpy started
    at import, libzmq's I/O threads, the lane worker) run at the engine's niceness + 10;
    the engine's threads stay as they were."""
    proc = rig.engine.stats()["requests"]["process"]
    assert proc["priority"] == "nice 10"
    tids = [int(t) for t in os.listdir(f"/proc/{proc['pid']}/task")]
    assert len(tids) >= 3  # main, libzmq I/O and reaper, lane worker
    engine_nice = os.getpriority(os.PRIO_PROCESS, 0)
    # (19 at most: a test run under nice(1) starts the engine at 10)
    assert {os.getpriority(os.PRIO_PROCESS, tid) for tid in tids} == {min(engine_nice + 10, 19)}
    assert {os.sched_getscheduler(tid) for tid in tids} == {os.SCHED_OTHER}


def test_sched_idle_reaches_every_thread_a_process_has():
    """``dispatch.requests.sched_idle``: lower_priority puts the threads already running
    (numpy's OpenBLAS pool) and the ones started afterwards under SCHED_IDLE."""
    # The child observes its threads under SCHED_IDLE, then puts them back under the
    # default policy before it prints and exits: on a busy machine (.ci/loaded) a
    # SCHED_IDLE process gets almost no CPU, and its exit (joining OpenBLAS's threads)
    # once took more than a minute after every observation was made.
    code = (
        "import os, threading, numpy\n"
        "from tickpath.engine.service.child_process import lower_priority\n"
        "applied = lower_priority(10, True, 'a test process')\n"
        "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
        "seen = []\n"
        "later = threading.Thread(target=lambda: seen.append(os.sched_getscheduler(0)))\n"
        "later.start(); later.join()\n"
        "tids = [int(t) for t in os.listdir('/proc/self/task')]\n"
        "policies = sorted({os.sched_getscheduler(t) for t in tids})\n"
        "for t in tids:\n"
        "    os.sched_setscheduler(t, os.SCHED_OTHER, os.sched_param(0))\n"
        "print(applied)\n"
        "print(seen[0])\n"
        "print(len(tids), policies)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=DEADLINE_S,
    ).stdout.split("\n")
    assert out[0] == "idle"
    assert int(out[1]) == os.SCHED_IDLE  # a thread started afterwards inherits it
    threads, policies = out[2].split(" ", 1)
    assert policies == f"[{os.SCHED_IDLE}]", out


def test_a_frozen_request_process_does_not_stop_the_ticks(rig):
    pid = rig.engine.stats()["requests"]["process"]["pid"]
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(rig.request_endpoint)
    os.kill(pid, signal.SIGSTOP)
    try:
        dealer.send_multipart([b"", encode_request(CHAIN_JOB)])
        for i in range(20):  # ticks in, results out, while the request process is frozen
            seq = rig.quote(5, 100.0 + i)
            (_, header, records) = rig.results(b"quote.5", timeout=DEADLINE_S)[0]
            assert int(records[0]["in_seq"]) == seq
        assert rig.engine.stats()["processed"]["quote"] >= 20
        assert not dealer.poll(200)  # the frozen process has not answered
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        assert dealer.poll(int(DEADLINE_S * 1000))
        assert decode_reply(dealer.recv_multipart()[-1])["ok"]
    finally:
        dealer.close()


def test_a_json_body_over_the_cap_is_refused_before_decoding(rig):
    before = rig.engine.stats()["requests"]["errors"].get("too_large", 0)
    # not even JSON after its first byte: refused on its length alone, so never decoded
    reply = request(rig.request_endpoint, b"{" + b" " * 50_000, timeout_s=60)
    assert not reply["ok"] and reply["error"]["code"] == "too_large"
    assert "max_json_bytes 4,096" in reply["error"]["message"]
    assert "msgpack bin" in reply["error"]["message"]
    # a legal JSON price_chain whose arrays make it too long: too_large, as msgpack bin: ok
    n = 2_000
    job = {"type": "price_chain", "spot": 100.0, "strike": np.linspace(50, 150, n),
           "expiry": 0.5, "vol": 0.2, "call": True, "greeks": False}  # fmt: skip
    reply = request(rig.request_endpoint, job, timeout_s=60)
    assert reply["error"]["code"] == "too_large"
    reply = request(rig.request_endpoint, job, timeout_s=60, use_msgpack=True)
    assert reply["ok"] and reply["result"]["price"].shape == (n,)
    after = rig.engine.stats()["requests"]["errors"]["too_large"]
    assert after == before + 2


def test_long_lists_are_refused_while_decoding_bin_is_the_way(rig):
    n = 200_000  # over MAX_LIST_ITEMS: refused from the msgpack array's length
    job = {"type": "price_chain", "spot": 100.0, "strike": [100.0] * n, "expiry": 0.5,
           "vol": 0.2, "call": True, "greeks": False}  # fmt: skip
    body = msgspec.msgpack.encode(job)
    reply = request(rig.request_endpoint, body, timeout_s=60)
    assert not reply["ok"] and reply["error"]["code"] == "malformed"
    assert "length <= 100000" in reply["error"]["message"]
    assert "msgpack bin" in reply["error"]["message"]
    job["strike"] = np.full(n, 100.0)  # the same as bin
    reply = request(rig.request_endpoint, job, timeout_s=60, use_msgpack=True)
    assert reply["ok"] and reply["result"]["price"].shape == (n,)


def test_the_request_process_is_restarted_after_it_dies(rig):
    first = rig.engine.stats()["requests"]["process"]
    os.kill(first["pid"], signal.SIGKILL)

    def restarted():
        proc = rig.engine.stats()["requests"]["process"]
        return proc if proc["restarts"] == first["restarts"] + 1 and proc["ready"] else None

    proc = wait_for(restarted, "the request process to be started again")
    assert proc["pid"] != first["pid"] and proc["alive"]
    reply = request(rig.request_endpoint, CHAIN_JOB, timeout_s=60)  # the same endpoint
    assert reply["ok"], reply


def test_the_request_process_ends_with_the_engine(tmp_path):
    log = open(tmp_path / "serve.log", "w")
    engine = subprocess.Popen(
        [sys.executable, "-m", "tickpath", "serve", "--ingest", ANY_PORT, "--publish", ANY_PORT,
         "--requests", ANY_PORT, "--symbols", "8", "--set", "publish.stats_interval_s=0.2"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    ticker = None
    try:
        bound = bound_endpoints(tmp_path / "serve.log", engine, requests=True, timeout=600)
        ticker = Ticker(zmq.Context.instance(), bound["ingest"][0], bound["publish"])

        def ready_stats():
            stats = ticker.stats(timeout_s=1.0)
            return stats if stats.get("requests", {}).get("process", {}).get("ready") else None

        stats = wait_for(ready_stats, "stats with a ready request process", timeout_s=600)
        child = stats["requests"]["process"]["pid"]
        assert process_alive(child)
        engine.kill()  # SIGKILL: no clean-up code of the engine runs
        engine.wait(30)
        wait_for(lambda: not process_alive(child), "the orphaned request process to exit")
    finally:
        if ticker is not None:
            ticker.close()
        if engine.poll() is None:
            engine.kill()
            engine.wait(30)
        log.close()


def test_stats_slot_readers_see_whole_snapshots():
    slot = StatsSlot.create()
    child_view = StatsSlot(os.dup(slot.fd))  # a second mapping, as the request process has
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            i += 1
            child_view.write(msgspec.msgpack.encode({"n": i, "fill": [i] * (i % 500)}))

    thread = threading.Thread(target=writer)
    assert slot.read() is None  # nothing written yet
    thread.start()
    try:
        seen = 0
        deadline = time.monotonic() + DEADLINE_S
        while seen < 2_000 and time.monotonic() < deadline:
            data = slot.read()
            if data is None:
                continue
            snap = msgspec.msgpack.decode(data)
            assert snap["fill"] == [snap["n"]] * (snap["n"] % 500)
            seen += 1
        assert seen == 2_000
    finally:
        stop.set()
        thread.join()
        child_view.close()
        slot.close()
