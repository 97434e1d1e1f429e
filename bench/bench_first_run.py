"""First-run times: serve to ready and demo to its first live row, cold and warm.

Cold: numba's cache is an empty directory (NUMBA_CACHE_DIR), as on a fresh install;
warm: the same directory again, now filled by the cold run.

    .venv/bin/python bench/bench_first_run.py [--json FILE]

Prints one line per measurement with the load average at its start.  Goal (issue 13):
cold demo to first row within 20 s on 2 quiet cores, warm within 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import msgspec
import zmq

from tickpath.engine.service.demo import free_port

TICKPATH = [sys.executable, "-m", "tickpath"]


def serve_to_ready(env: dict) -> float:
    """Seconds from starting `tickpath serve` to its first stats message."""
    results = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"stats")
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(results)
    t0 = time.monotonic()
    serve = subprocess.Popen(
        TICKPATH + ["serve", "--ingest", f"tcp://127.0.0.1:{free_port()}", "--publish", results,
                    "--symbols", "8", "--log-level", "WARNING"],
        env=env, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while True:
            if serve.poll() is not None:
                raise RuntimeError(f"serve exited with {serve.returncode}")
            if sub.poll(100):
                msgspec.json.decode(sub.recv_multipart()[1])
                return time.monotonic() - t0
    finally:
        sub.close()
        ctx.term()
        serve.terminate()
        serve.wait(timeout=60)


def demo_to_first_row(env: dict) -> tuple[float, float]:
    """(engine ready, first result) in seconds from starting `tickpath demo`, as it reports."""
    out = subprocess.run(
        TICKPATH + ["demo", "--duration", "1"], env=env, capture_output=True, text=True,
        timeout=1800,
    ).stdout  # fmt: skip
    found = re.search(r"engine ready after ([\d.]+) s, first result after ([\d.]+) s", out)
    if found is None:
        raise RuntimeError(f"demo did not report its start: {out[-500:]}")
    return float(found.group(1)), float(found.group(2))


def main() -> int:
    """Measure and print; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as serve_cache, tempfile.TemporaryDirectory() as demo_cache:
        for label, cache, what in (
            ("cold", serve_cache, "serve"),
            ("warm", serve_cache, "serve"),
            ("cold", demo_cache, "demo"),
            ("warm", demo_cache, "demo"),
        ):
            env = {**os.environ, "NUMBA_CACHE_DIR": cache}
            load = os.getloadavg()[0]
            if what == "serve":
                row = {"what": "serve to ready", "cache": label, "s": serve_to_ready(env)}
            else:
                ready, first = demo_to_first_row(env)
                row = {"what": "demo to first row", "cache": label, "s": first, "ready_s": ready}
            row["load_avg_1min"] = load
            rows.append(row)
            print(
                f"{row['what']:<18} {label}: {row['s']:6.1f} s"
                + (f" (engine ready at {row['ready_s']:.1f} s)" if "ready_s" in row else "")
                + f"  load average {load:.2f}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
