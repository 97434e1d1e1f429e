"""A milli-path job never blocks the micro path.

Topology (the engine and the batch client are separate processes, so that
no two of the three parties compete for one GIL)::

    test:   PUB --quote.1 ticks (one per frame, ping-pong)--> [engine] --PUB--> SUB
    client: DEALER --1M-option price_chain (msgpack)--------> [ROUTER] -> request lane worker

While each 1,000,000-option Black-Scholes request runs on the request lane, the test
keeps ticking. What it asserts is an ordering, not a speed: between the request's
send and its reply, no two consecutive tick results are as far apart as the job's own
compute time. If the job ran on the engine thread, the engine could receive no tick
while it computed, so the tick in flight (or the next one sent) would be answered only
after the job, and two consecutive answers would be at least the compute time apart.

The latency figures (ticks idle and during the batch, against the same run's idle
baseline) are measured by bench/bench_request_isolation.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from tests.serving import ANY_PORT, bound_endpoints
from tests.waiting import DEADLINE_S, wait_until
from tickpath.engine.bench.ticker import Ticker

REPO = Path(__file__).resolve().parents[2]
N_OPTIONS = 1_000_000

# The batch client runs in its own process, so that receiving and decoding its 48 MB
# replies does not hold the GIL of the process that measures the ticks.
CLIENT = """
import json, sys, time
import numpy as np
from tickpath.engine.service.requests import encode_request, request
endpoint, n, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
strike = np.random.default_rng(7).uniform(50, 150, n)
job = {"type": "price_chain", "spot": 100.0, "strike": strike, "expiry": 0.5, "vol": 0.3,
       "call": True, "backend": "cpu"}
body = encode_request(job, use_msgpack=True)
for _ in range(repeats):
    sent = time.time()
    reply = request(endpoint, body, timeout_s=120)
    replied = time.time()
    print(json.dumps({"ok": reply["ok"], "n": len(reply["result"]["price"]), "sent": sent,
                      "replied": replied, "compute_us": reply["compute_us"]}), flush=True)
"""


@pytest.fixture
def engine_process(tmp_path):
    log_path = tmp_path / "serve.log"
    config = tmp_path / "serve.toml"
    # one CPU thread per worker and "backend": "cpu" in the jobs: the same batch takes
    # about as long on any machine (a GPU or many cores would make it too short to matter)
    config.write_text("[dispatch]\ncpu_threads = 1\n")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tickpath", "serve", "--ingest", ANY_PORT, "--publish",
             ANY_PORT, "--requests", ANY_PORT, "--symbols", "8", "--log-level", "INFO",
             "--config", str(config)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        bound = bound_endpoints(log_path, proc, requests=True)
        yield bound["ingest"][0], bound["publish"], bound["requests"], log_path
    finally:
        proc.terminate()
        try:
            proc.wait(DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(DEADLINE_S)


@pytest.mark.slow
def test_ticks_are_answered_while_a_million_options_are_priced(engine_process):
    ingest, results, requests, log_path = engine_process
    ctx = zmq.Context.instance()
    ticker = Ticker(ctx, ingest, results)
    try:
        # the engine's subscription and ours have joined once a tick comes back
        wait_until(
            lambda: ticker.tick(timeout_s=0.2) is not None,
            what=lambda: "a first tick result; log:\n" + log_path.read_text()[-3000:],
        )
        client = subprocess.Popen(
            [sys.executable, "-c", CLIENT, requests, str(N_OPTIONS), "3"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        answered = []  # wall-clock time each tick's result arrived
        deadline = time.monotonic() + 600
        while client.poll() is None:
            assert time.monotonic() < deadline, "the batch client did not finish"
            latency = ticker.tick(timeout_s=DEADLINE_S)
            assert latency is not None, "a tick got no result while the batch ran"
            answered.append(time.time())
            time.sleep(0.002)  # pacing of the ping loop, not a wait for anything
        out, err = client.communicate(timeout=DEADLINE_S)
        assert client.returncode == 0, err[-3000:]
        windows = [json.loads(line) for line in out.splitlines()]
        assert len(windows) == 3
        for w in windows:
            assert w["ok"] and w["n"] == N_OPTIONS, w
            compute_s = w["compute_us"] / 1e6
            # tick answers inside the window, with the window's ends as bounds
            inside = [t for t in answered if w["sent"] < t < w["replied"]]
            marks = [w["sent"], *inside, w["replied"]]
            longest = max(b - a for a, b in zip(marks, marks[1:]))
            report = (
                f"{len(inside)} ticks answered in {w['replied'] - w['sent']:.3f} s; "
                f"longest gap {longest * 1e3:.1f} ms; job compute {compute_s * 1e3:.1f} ms"
            )
            print(report)
            assert inside, report
            # a job on the engine thread would leave a gap at least its compute time long
            assert longest < compute_s, report
    finally:
        ticker.close()
