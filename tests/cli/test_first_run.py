"""The first run on a fresh install: a cold numba cache, said on screen, and a demo that waits."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import msgspec
import pytest
import zmq

from tests.serving import ANY_PORT, bound_endpoints

TICKPATH = [sys.executable, "-m", "tickpath"]
DEADLINE_S = 600.0  # a cold compile on a loaded 2-core machine took 201 s of wall time


def _cold_env(tmp_path) -> dict:
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    return {**os.environ, "NUMBA_CACHE_DIR": str(cache)}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_cold_serve_says_it_compiles_then_ready_in_log_and_stats(tmp_path):
    err_path = tmp_path / "serve.err"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"stats")
    sub.setsockopt(zmq.LINGER, 0)
    with open(err_path, "w") as err:
        serve = subprocess.Popen(
            TICKPATH + ["serve", "--ingest", ANY_PORT, "--publish", ANY_PORT, "--symbols", "2",
                        "--log-level", "INFO"],
            stderr=err, env=_cold_env(tmp_path),
        )  # fmt: skip
    try:
        sub.connect(bound_endpoints(err_path, serve)["publish"])  # the port it bound (port 0)
        stats = None
        deadline = time.monotonic() + DEADLINE_S
        while stats is None:
            assert serve.poll() is None, err_path.read_text()
            assert time.monotonic() < deadline, err_path.read_text()
            if sub.poll(200):
                stats = msgspec.json.decode(sub.recv_multipart()[1])
        assert stats["version"] == 2 and stats["state"] == "ready"  # nothing was sent to it
        log = err_path.read_text()
        assert "compiling kernels, first run only" in log
        assert "ready: receiving on tcp://127.0.0.1:" in log
        assert log.index("compiling kernels") < log.index("ready: receiving on")
    finally:
        sub.close()
        ctx.term()
        serve.terminate()
        serve.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_demo_shows_live_rows_on_a_cold_cache(tmp_path):
    result = subprocess.run(
        TICKPATH + ["demo", "--duration", "2", "--symbols", "3"],
        capture_output=True, text=True, timeout=1400, env=_cold_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "demo: starting the engine (compiling kernels, first run only)" in out
    assert "first result after" in out and "showing 2 s" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    live = [row for row in rows if row[0] in {"0", "1", "2"} and row[1] != "-"]
    assert live, out  # a symbol row with a live bid


def test_demo_says_what_is_wrong_when_a_child_fails_or_nothing_comes():
    from rich.console import Console

    from tickpath.engine.service.demo import _Children, _wait

    console = Console(width=150, file=open(os.devnull, "w"))  # noqa: SIM115
    children = _Children()
    try:
        failing = children.start(
            [sys.executable, "-c", "import sys; sys.stderr.write('port in use'); sys.exit(3)"]
        )
        problem = _wait(console, "starting the engine", lambda: False, failing, lambda: None, 600)
        assert problem == "starting the engine: it exited with status 3: port in use"
        # an engine that never produces anything: it blocks until it is stopped
        silent = children.start([sys.executable, "-c", "import signal; signal.pause()"])
        problem = _wait(console, "waiting for the first result", lambda: False, silent,
                        lambda: time.sleep(0.05), 0.5)  # fmt: skip
        assert problem == "waiting for the first result: nothing after 0.5 s"
    finally:
        console.file.close()
        children.stop()
