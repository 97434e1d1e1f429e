"""SoakOneToOneSteadyRate: the service for a set time at a set rate; latency and memory over time.

Topology (three processes on this machine, loopback TCP)::

    feeder (open loop) -PUB-> [tickpath serve (--journal optional)] -PUB-> this process (SUB)
      send_ns = the frame's INTENDED send time          results carry it as in_send_ns

Latency of a result (quote, trade, book; a bar is stamped with its last
trade, not the one that closed it, so bars are counted but not timed) is its
arrival here minus the intended send time of the input frame that produced
it: measured against the schedule, not the actual send, so a feeder or an
engine falling behind shows up instead of hiding (no coordinated omission).

Every ``--interval`` seconds the window's latency percentiles (HdrHistogram),
throughput (the engine's own record counter), results lost at the subscriber
(per-topic sequence gaps) and the engine's resident memory
(``/proc/PID/status`` VmRSS) are printed.  At the end: the whole run's
percentiles and the memory slope (least squares over the samples after
``--warmup`` seconds); the run fails if that slope would grow memory by more
than ``--max-growth-mib`` over the run.

    python bench/soak.py [--duration 60] [--rate 20000] [--batch 16] [--symbols 64]
                         [--journal] [--sync interval] [--interval 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np
import zmq
from hdrh.histogram import HdrHistogram

ROOT = Path(__file__).resolve().parents[1]

from tickpath.engine.service.watch import TopicSequences  # noqa: E402

PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


def _histogram() -> HdrHistogram:
    return HdrHistogram(1, 60 * 10**9, 3)


def _summary(h: HdrHistogram) -> dict:
    if h.get_total_count() == 0:
        return {"count": 0}
    out = {f"p{p:g}_us".replace(".", "_"): h.get_value_at_percentile(p) / 1e3 for p in PERCENTILES}
    out["max_us"] = h.get_max_value() / 1e3
    out["count"] = h.get_total_count()
    return out


# ---------------------------------------------------------------------------
# feeder role (a child process)
# ---------------------------------------------------------------------------


def feeder(endpoint: str, rate: float, batch: int, symbols: int, duration: float) -> int:
    """Send frames on an open-loop schedule; stamp each with its intended send time."""
    from tickpath.engine.feed.synthetic import SyntheticMarket
    from tickpath.engine.wire import codec

    market = SyntheticMarket(symbols, 1, mean_gap_ns=1e9 / rate)
    market.next_batch(1)  # compile/load the generator before the schedule starts
    context = zmq.Context()
    pub = context.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(endpoint)
    if not pub.poll(30_000):
        print(json.dumps({"error": "engine never subscribed"}))
        return 1
    pub.recv()
    t0 = time.perf_counter()
    wall0 = time.time_ns()
    seq = sent = frames = 0
    max_lag = 0.0
    late = 0
    while True:
        offset = (sent + batch) / rate
        if offset > duration:
            break
        now = time.perf_counter() - t0
        if now < offset:
            time.sleep(offset - now)
        else:
            max_lag = max(max_lag, now - offset)
            late += now - offset > 0.001
        kind, records = market.next_batch(batch)
        pub.send(codec.encode_frame(kind, 1, seq, records, wall0 + int(offset * 1e9)))
        seq += len(records)
        sent += len(records)
        frames += 1
    time.sleep(0.5)
    pub.close()
    context.term()
    print(json.dumps({"records": sent, "frames": frames, "max_lag_s": max_lag, "late": late}))
    return 0


# ---------------------------------------------------------------------------
# the soak
# ---------------------------------------------------------------------------


def _config(
    path: Path, ingest: str, publish: str, symbols: int, journal: Path | None, sync: str
) -> None:
    lines = [
        "[ingest]",
        f'endpoints = ["{ingest}"]',
        "[analytics]",
        f"n_symbols = {symbols}",
        "book_orders = 262144",
        "[publish]",
        f'endpoint = "{publish}"',
        "stats_interval_s = 0.5",
    ]
    if journal is not None:
        lines += ["[journal]", f'dir = "{journal}"', f'sync = "{sync}"', "snapshot_interval_s = 30"]
    path.write_text("\n".join(lines) + "\n")


def soak(args: argparse.Namespace) -> dict:
    """Run the soak; return the report."""
    work = Path(tempfile.mkdtemp(prefix="soak-", dir=ROOT / "bench" / "out"))
    ingest = f"tcp://127.0.0.1:{_free_port()}"
    publish = f"tcp://127.0.0.1:{_free_port()}"
    journal = work / "journal" if args.journal else None
    config = work / "engine.toml"
    _config(config, ingest, publish, args.symbols, journal, args.sync)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = open(work / "serve.log", "wb")  # noqa: SIM115 - closed below
    serve = subprocess.Popen(
        [sys.executable, "-m", "tickpath", "serve", "--config", str(config)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(publish)
    feed = None
    try:
        deadline = time.monotonic() + 60
        while not sub.poll(200):  # the first stats message: the engine is up
            if time.monotonic() > deadline or serve.poll() is not None:
                raise RuntimeError("the engine did not start; see " + str(work / "serve.log"))
        feed = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--role",
                "feeder",
                "--endpoint",
                ingest,
                "--rate",
                str(args.rate),
                "--batch",
                str(args.batch),
                "--symbols",
                str(args.symbols),
                "--duration",
                str(args.duration),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            env=env,
        )
        total = _histogram()
        window = _histogram()
        sequences = TopicSequences()
        samples = []
        start = time.monotonic()
        next_report = start + args.interval
        last_stats: dict = {}
        last_records = 0
        last_t = start
        results = 0
        header_rows = True
        end = start + args.duration + 5
        while time.monotonic() < end:
            if sub.poll(50):
                topic, payload = sub.recv_multipart()
                now = time.time_ns()
                if topic == b"stats":
                    last_stats = msgspec.json.decode(payload)
                else:
                    sequences.observe(topic, int.from_bytes(payload[16:24], "little"))
                    results += 1
                    if topic.startswith(b"bar."):
                        continue  # a bar's provenance is its last trade, not the closing one
                    intended = int.from_bytes(payload[48:56], "little", signed=True)
                    latency = min(max(1, now - intended), 60 * 10**9)
                    window.record_value(latency)
                    total.record_value(latency)
            t = time.monotonic()
            if t >= next_report:
                records = int(last_stats.get("records_received", 0))
                rate = (records - last_records) / (t - last_t)
                rss = _rss_mib(serve.pid)
                row = {
                    "t_s": round(t - start, 2),
                    "records_per_s": round(rate, 1),
                    "results": results,
                    "results_lost": sequences.lost,
                    "rss_mib": round(rss, 2),
                    **_summary(window),
                }
                samples.append(row)
                if header_rows:
                    print(
                        f"{'t_s':>6} {'records/s':>10} {'p50_us':>8} {'p99_us':>8} "
                        f"{'p99.9_us':>9} {'max_us':>9} {'lost':>6} {'rss_MiB':>8}"
                    )
                    header_rows = False
                print(
                    f"{row['t_s']:6.1f} {rate:10,.0f} {row.get('p50_us', 0):8.0f} "
                    f"{row.get('p99_us', 0):8.0f} {row.get('p99_9_us', 0):9.0f} "
                    f"{row.get('max_us', 0):9.0f} {sequences.lost:6d} {rss:8.1f}",
                    flush=True,
                )
                window.reset()
                last_records, last_t = records, t
                next_report += args.interval
            if feed.poll() is not None and t > start + args.duration + 1:
                break
        feed_report = json.loads(feed.communicate(timeout=30)[0] or b"{}")
    finally:
        if feed is not None and feed.poll() is None:
            feed.kill()
            feed.wait()
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
        log.close()
        sub.close()
        context.term()
    steady = [r for r in samples if r["t_s"] >= args.warmup]
    slope = float("nan")
    if len(steady) >= 3:
        t = np.array([r["t_s"] for r in steady])
        m = np.array([r["rss_mib"] for r in steady])
        slope = float(np.polyfit(t, m, 1)[0]) * 60.0  # MiB per minute
    growth = slope * args.duration / 60.0
    report = {
        "benchmark": "SoakOneToOneSteadyRate",
        "duration_s": args.duration,
        "target_rate": args.rate,
        "batch": args.batch,
        "symbols": args.symbols,
        "journal": args.journal,
        "sync": args.sync if args.journal else None,
        "feeder": feed_report,
        "engine_final_stats": {
            key: last_stats.get(key)
            for key in (
                "records_received",
                "records_accepted",
                "gaps",
                "records_lost",
                "frames_rejected",
                "results_published",
            )
        },
        "results_received": results,
        "results_lost_at_subscriber": sequences.lost,
        "latency_total": _summary(total),
        "rss_slope_mib_per_min": round(slope, 4),
        "rss_growth_over_run_mib": round(growth, 3),
        "rss_flat": bool(abs(growth) <= args.max_growth_mib),
        "samples": samples,
    }
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the soak (or, with --role feeder, the feeder child)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["soak", "feeder"], default="soak")
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (60)")
    parser.add_argument("--rate", type=float, default=20_000.0, help="records/s (20000)")
    parser.add_argument("--batch", type=int, default=16, help="records per frame (16)")
    parser.add_argument("--symbols", type=int, default=64)
    parser.add_argument("--journal", action="store_true", help="serve with --journal")
    parser.add_argument("--sync", default="interval", choices=["frame", "interval", "os"])
    parser.add_argument("--interval", type=float, default=5.0, help="report every S s (5)")
    parser.add_argument("--warmup", type=float, default=10.0, help="excluded from the slope")
    parser.add_argument(
        "--max-growth-mib",
        type=float,
        default=8.0,
        help="fail if memory would grow more than this over the run (8)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args(argv)
    if args.role == "feeder":
        return feeder(args.endpoint, args.rate, args.batch, args.symbols, args.duration)
    (ROOT / "bench" / "out").mkdir(exist_ok=True)
    report = soak(args)
    lat = report["latency_total"]
    print(
        f"soak {args.duration:.0f} s at {args.rate:,.0f} records/s (batch {args.batch}, "
        f"journal {'on, ' + args.sync if args.journal else 'off'}): "
        f"{report['engine_final_stats']['records_received']} records, "
        f"{report['results_received']} results, {report['results_lost_at_subscriber']} lost at "
        f"the subscriber; latency p50 {lat.get('p50_us', 0):.0f} us, p99 "
        f"{lat.get('p99_us', 0):.0f} us, p99.9 {lat.get('p99_9_us', 0):.0f} us, max "
        f"{lat.get('max_us', 0):.0f} us; RSS slope {report['rss_slope_mib_per_min']:+.3f} MiB/min "
        f"({'flat' if report['rss_flat'] else 'GROWING'})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["rss_flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
