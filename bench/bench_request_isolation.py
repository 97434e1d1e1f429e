"""TickRoundTripDuringBatchRequest: micro-path latency while big batch requests run.

Topology (three processes, so that no two of the parties share a GIL)::

    this:   PUB --quote.1 ticks (one per frame, ping-pong)--> [tickpath serve] --PUB--> SUB
    client: DEALER --N-option price_chain (msgpack)---------> [ROUTER] -> request lane worker

Two phases in one run: ``--ticks`` round trips with the engine idle (the baseline), then
round trips while the client sends ``--repeats`` price_chain requests of ``--options``
options one after the other (only the ticks sent inside a request's send..reply window
count). Reported: p50 / p90 / p99 / max of both, and the loaded/idle ratios (goal of the
design, docs/dispatch.md: the micro path does not wait for milli-path jobs; the old unit
test's bounds were p50 <= 3x + 1 ms and p90 <= 5x + 5 ms of the idle run).

The engine runs with ``dispatch.cpu_threads = 1`` and the jobs ask for the cpu backend,
so a job takes about as long on any machine. Self-check: every tick is answered, every
reply is ok with ``--options`` prices.

The unit test tests/dispatch/test_nonblocking.py checks the behaviour (no gap between
tick answers as long as a job's compute time); the figures are measured here.

    python bench/bench_request_isolation.py [--options 1000000] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from tickpath.engine.bench.ticker import Ticker

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
    reply = request(endpoint, body, timeout_s=600)
    replied = time.time()
    print(json.dumps({"ok": reply["ok"], "n": len(reply["result"]["price"]), "sent": sent,
                      "replied": replied, "compute_us": reply["compute_us"]}), flush=True)
"""
_SOCKETS = re.compile(r"ingest (\S+) \(rcvhwm \d+\), publish (\S+)")
_REQUESTS = re.compile(r"requests: ROUTER (\S+)")


def _summary(values: list[float]) -> dict:
    a = np.asarray(values) * 1e6
    return {
        "count": len(values),
        **{f"p{q}": round(float(np.percentile(a, q)), 1) for q in (50, 90, 99)},
        "max": round(float(a.max()), 1),
    }


def _serve(tmp: Path) -> tuple[subprocess.Popen, str, str, str]:
    config = tmp / "serve.toml"
    config.write_text("[dispatch]\ncpu_threads = 1\n")
    log_path = tmp / "serve.log"
    any_port = "tcp://127.0.0.1:*"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tickpath", "serve", "--ingest", any_port, "--publish",
             any_port, "--requests", any_port, "--symbols", "8", "--log-level", "INFO",
             "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 600
    while True:
        text = log_path.read_text()
        sockets, requests = _SOCKETS.search(text), _REQUESTS.search(text)
        if sockets and requests:
            return proc, sockets[1], sockets[2], requests[1]
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"tickpath serve did not start:\n{text[-3000:]}")
        time.sleep(0.1)  # polling the log for the bound endpoints


def main(argv: list[str] | None = None) -> int:
    """Run both phases; print the table (and write JSON); exit status 1 if a check fails."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--options", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ticks", type=int, default=300, help="idle round trips (baseline)")
    p.add_argument("--pace-ms", type=float, default=2.0, help="pause between ticks")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        proc, ingest, results, requests = _serve(Path(tmp))
        ticker = Ticker(zmq.Context.instance(), ingest, results)
        try:
            deadline = time.monotonic() + 600
            while ticker.tick(timeout_s=0.2) is None:  # both sockets joined
                if time.monotonic() > deadline:
                    raise SystemExit("no tick answered within 600 s")
            for _ in range(50):  # warm the path
                ticker.tick()
            idle = []
            for _ in range(args.ticks):
                latency = ticker.tick(timeout_s=60)
                if latency is None:
                    raise SystemExit("self-check failed: an idle tick got no result")
                idle.append(latency)
                time.sleep(args.pace_ms / 1e3)  # pacing
            client = subprocess.Popen(
                [sys.executable, "-c", CLIENT, requests, str(args.options), str(args.repeats)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            ticks = []
            while client.poll() is None:
                sent = time.time()
                latency = ticker.tick(timeout_s=60)
                if latency is None:
                    raise SystemExit("self-check failed: a tick got no result during a job")
                ticks.append((sent, latency))
                time.sleep(args.pace_ms / 1e3)  # pacing
            out, err = client.communicate()
        finally:
            ticker.close()
            proc.terminate()
            proc.wait(60)
    if client.returncode != 0:
        raise SystemExit(f"the batch client failed:\n{err[-3000:]}")
    windows = [json.loads(line) for line in out.splitlines()]
    if len(windows) != args.repeats or not all(w["ok"] and w["n"] == args.options for w in windows):
        print(f"self-check failed: replies {windows}", file=sys.stderr)
        return 1
    loaded = [lat for sent, lat in ticks if any(w["sent"] <= sent <= w["replied"] for w in windows)]
    base, during = _summary(idle), _summary(loaded)
    report = {
        "benchmark": "TickRoundTripDuringBatchRequest",
        "units": "us",
        "config": vars(args),
        "idle": base,
        "during_requests": during,
        "ratio": {k: round(during[k] / base[k], 2) for k in ("p50", "p90", "p99", "max")},
        "job_compute_ms": [round(w["compute_us"] / 1e3, 1) for w in windows],
        "self_check": {"ok": True},
    }
    print(f"tick round trip, us ({args.options:,}-option requests, cpu, 1 thread)")
    print(f"{'':>16} {'n':>6} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9}")
    for name, row in (("idle", base), ("during requests", during)):
        print(f"{name:>16} {row['count']:>6} {row['p50']:>9} {row['p90']:>9} {row['p99']:>9} "
              f"{row['max']:>9}")  # fmt: skip
    print(f"{'ratio':>16} {'':>6} " + " ".join(f"{report['ratio'][k]:>9}" for k in
                                                ("p50", "p90", "p99", "max")))  # fmt: skip
    print(f"job compute ms: {report['job_compute_ms']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
