"""Pressure: the micro path's latency, idle and while clients attack everything around it.

One run of ``tickpath serve`` (CURVE on every endpoint, the request endpoint in its own
process, 8 symbols) and, in this process, a ping-pong probe (engine.bench.ticker): one
single-record quote in, its ``quote.1`` result back, about ``--rate`` pings a second. Each
phase measures the probe for ``--phase-s`` seconds while one pressure runs in a separate
process (so the attacker's Python never shares this process's GIL):

==================  =======================================================================
idle                nothing else
json_chain          a legal JSON ``price_chain`` of 2,000,000 contracts (about 8 MiB), sent
                    back to back to the request endpoint (refused ``too_large`` unread now)
json_190mib         a 190 MiB JSON body (under ``max_message_bytes``), back to back
var_3000            a 3,000-asset VaR (msgpack ``bin`` arrays, 2,000 scenarios), back to back
handshakes_req      3,000 CURVE handshakes with a key not in the allow-list, on the request
                    endpoint (50 at a time)
handshakes_ingest   the same on the ingest endpoint
stalled_subs        20 subscribers (allowed keys) that subscribe to everything and never read,
                    while a feed sends 200 frames/s of 64 quotes on another stream
backlog_1mib        a publisher sending legal 1 MiB quote frames as fast as the socket takes them
chain_flood         5,000 single-record quotes/s of symbol 0, the underlying of a 1,000-contract
                    option chain: every one is a repricing (coalesced) on the milli path
idle_end            nothing again (is the engine back to its idle figures?)
sub_flood           one subscriber (an allowed key) subscribing to 20,000 distinct 40-byte
                    topics, unsubscribing them, and again, as fast as it can: libzmq applies
                    subscriptions in the thread that publishes (docs/reliability.md,
                    "Subscriptions"; not one of issue 11's pressures, a known limit)
==================  =======================================================================

Per phase: pings answered and lost (no answer in 5 s), p50/p99/max of the round trip, the
engine's and the request process's largest RSS sampled during the phase, the load
average, and where the slowest 1 % of the pings spent their time (the median of each stage
by the engine's stamps on the result: ingest = send to the tick thread's receive, kernels =
receive to done, publish = done to the probe's receive). Goal (docs/reliability.md): p99
under pressure <= 2x the same run's idle p99 and max < 100 ms. Self-checks: each pressure
must be seen by the engine (its stats: requests refused or answered, handshakes denied,
frames received), else the phase is marked ``not applied``.

    python bench/bench_pressure.py [--phase-s 8] [--rate 1000] [--phases idle json_chain ...]
                                   [--json PATH] [--attackers normal|idle] [--realtime N]

``--attackers idle`` runs the pressure processes under ``SCHED_IDLE``, standing in for
attackers on other machines (on a 2-core VM their own CPU use would otherwise compete
with the tick thread); ``normal`` (the default) leaves them at the engine's priority.

``--attacker-sndbuf`` (default 64 KiB; 0: the kernel's autotuning, up to
``net.ipv4.tcp_wmem``'s maximum) is ``SO_SNDBUF`` of every attacker socket. A sender
on this machine does its kernel's whole share of a loopback transfer inside its
``send()`` calls, and libzmq hands a 1 MiB message to one call: under Linux's
non-preemptive kernel (``PREEMPT_NONE``) that call holds its CPU until it returns,
whatever the sender's ``SCHED_IDLE``, and the probe's and the engine's wake-ups wait
for it. An attacker on another machine costs this one no such calls, so the bound
keeps a local attacker's calls short, as a remote one's packets arrive. Measured on
this project's 2-core VM with a normal-priority busy thread beside a ``SCHED_IDLE``
sender of 1 MiB ``sendall`` calls over loopback: a sleeping process's wake-up p99 went
from 0.11-0.19 ms to 0.56-0.64 ms with the autotuned buffer, and stayed at 0.10-0.12 ms
with ``SO_SNDBUF`` 64 KiB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from tickpath.engine.bench.ticker import Ticker
from tickpath.engine.security.curve import apply_curve_client
from tickpath.engine.service.child_process import lower_priority
from tickpath.engine.service.demo import free_port
from tickpath.engine.service.requests import encode_request
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s

PHASES = ("idle", "json_chain", "json_190mib", "var_3000", "handshakes_req",
          "handshakes_ingest", "stalled_subs", "backlog_1mib", "chain_flood",
          "idle_end", "sub_flood")  # fmt: skip
SUB_FLOOD_TOPICS = 20_000
ATTACKER_SNDBUF = 64 << 10  # SO_SNDBUF of the attackers' sockets (module doc)
CHAIN_UNDERLYING = 0  # no other pressure sends symbol 0; the probe's is 1
READY_TIMEOUT_S = 600.0  # a cold numba cache on a loaded VM
PING_TIMEOUT_S = 5.0
# `tickpath serve`, with the engine's ZeroMQ context made first with argv[1] I/O threads
# (an experiment knob: the engine's default context has one); argv[2] "before" puts the
# request endpoint and the CURVE allow-list check back into the engine's process, as they
# were before the request and ZAP processes (for an A/B comparison in one sitting)
ENGINE_BOOT = """
import sys
import zmq
zmq.Context.instance(io_threads=int(sys.argv[1]))
if sys.argv[2] == "before":
    from tickpath.engine.dispatch import cli as dispatch_cli
    from tickpath.engine.security import extension
    from tickpath.engine.security.curve import CurveAuthenticator
    from tickpath.engine.service.requests import RequestEndpoint
    serve_extensions = dispatch_cli.serve_extensions
    def in_process(config):
        found = serve_extensions(config)
        if len(found) == 2:
            found[0].request_process = None
            found[1] = RequestEndpoint(found[0])
        return found
    dispatch_cli.serve_extensions = in_process
    extension.ZapProcess = CurveAuthenticator
from tickpath.engine.cli import main
sys.exit(main(sys.argv[3:]))
"""


# --------------------------------------------------------------------------- pressures
# Each runs in its own process: `python bench/bench_pressure.py --role NAME --spec JSON`;
# it prints "started" once the pressure is on, then keeps it on until terminated.


def _started() -> None:
    print("started", flush=True)


def _chain_json(n: int) -> bytes:
    strikes = b",".join([b"100"] * n)
    return (b'{"type":"price_chain","spot":100,"rate":0.01,"strike":[' + strikes
            + b'],"expiry":0.5,"vol":0.2,"call":true}')  # fmt: skip


def _requests_forever(spec: dict, body: bytes) -> None:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    apply_curve_client(sock, spec["server_key"].encode(), spec["client_key"])
    sock.connect(spec["requests"])
    first = True
    while True:
        sock.send_multipart([b"", body], copy=False)
        if first:
            _started()
            first = False
        while not sock.poll(1000):
            pass
        sock.recv_multipart()


def role_json_chain(spec: dict) -> None:
    """A 2,000,000-contract JSON price_chain, back to back."""
    _requests_forever(spec, _chain_json(2_000_000))


def role_json_190mib(spec: dict) -> None:
    """A 190 MiB JSON body (a price_chain with a long strike list), back to back."""
    _requests_forever(spec, _chain_json(190 * (1 << 20) // 4))


def role_var_3000(spec: dict) -> None:
    """A 3,000-asset VaR request (msgpack bin arrays), back to back."""
    n = 3000
    rng = np.random.default_rng(3)
    job = {"type": "var", "spot": rng.uniform(10, 100, n), "position": rng.uniform(-5, 5, n),
           "vol": rng.uniform(0.1, 0.5, n), "correlation": np.eye(n) * 0.5 + 0.5 / n,
           "horizon": 0.004, "n_scenarios": 2000, "backend": "cpu"}  # fmt: skip
    corr = job["correlation"]
    np.fill_diagonal(corr, 1.0)
    _requests_forever(spec, encode_request(job, use_msgpack=True))


def role_handshakes(spec: dict) -> None:
    """3,000 CURVE handshakes with an unknown client key, 100 at a time; each batch waits
    (up to 5 s) until libzmq reports every handshake's end; prints ``done N`` (refused)."""
    ctx = zmq.Context.instance()
    public, secret = zmq.curve_keypair()
    server = spec["server_key"].encode()
    events = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    events |= zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_SUCCEEDED
    _started()
    refused = attempts = 0
    while attempts < 3000:
        socks, monitors = [], []
        for _ in range(100):
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RECONNECT_IVL, -1)  # one handshake per socket
            sock.curve_serverkey = server
            sock.curve_publickey = public
            sock.curve_secretkey = secret
            monitors.append(sock.get_monitor_socket(events))
            sock.connect(spec["target"])
            socks.append(sock)
        deadline = time.monotonic() + 5.0
        for mon in monitors:
            left = deadline - time.monotonic()
            if left > 0 and mon.poll(int(left * 1000)):
                event = recv_monitor_message(mon)["event"]
                refused += event != zmq.EVENT_HANDSHAKE_SUCCEEDED
        for sock, mon in zip(socks, monitors):
            sock.disable_monitor()
            mon.close(linger=0)
            sock.close(linger=0)
        attempts += len(socks)
    print(f"done {refused}", flush=True)
    while True:
        time.sleep(1)


def _curve_pub(spec: dict, endpoint: str | None = None) -> zmq.Socket:
    """A CURVE PUB (an allowed key) connected to the engine's ingest (or ``endpoint``),
    given a second to join."""
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    apply_curve_client(pub, spec["server_key"].encode(), spec["client_key"])
    pub.connect(endpoint or spec["ingest"])
    time.sleep(1.0)  # a pressure role's own ramp-up, not a wait of a test
    return pub


def role_stalled_subs(spec: dict) -> None:
    """20 subscribers that never read, and a feed of 200 frames/s x 64 quotes."""
    ctx = zmq.Context.instance()
    subs = []
    for _ in range(20):
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVBUF, 4096)
        sub.setsockopt(zmq.RCVHWM, 1)
        apply_curve_client(sub, spec["server_key"].encode(), spec["client_key"])
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(spec["results"])
        subs.append(sub)
    pub = _curve_pub(spec)
    q = np.zeros(64, s.QUOTE)
    q["symbol"] = np.arange(64) % 6 + 2  # not the probe's symbol
    q["bid_size"] = q["ask_size"] = s.SIZE_SCALE
    seq = 0
    _started()
    next_t = time.monotonic()
    while True:
        q["ts_ns"] = time.time_ns()
        q["bid_price"] = 1_000_000 + (seq % 100) * 10
        q["ask_price"] = q["bid_price"] + 200
        pub.send(codec.encode_frame(s.KIND_QUOTE, 5, seq, q, time.time_ns()))
        seq += len(q)
        next_t += 0.005
        time.sleep(max(0.0, next_t - time.monotonic()))


def role_chain_flood(spec: dict) -> None:
    """5,000 quotes/s of the chain's underlying, its mid moving every time."""
    pub = _curve_pub(spec)
    q = np.zeros(1, s.QUOTE)
    q["symbol"] = CHAIN_UNDERLYING
    q["bid_size"] = q["ask_size"] = s.SIZE_SCALE
    seq = 0
    _started()
    next_t = time.monotonic()
    while True:
        for _ in range(10):
            q["ts_ns"] = time.time_ns()
            q["bid_price"] = 1_000_000 + (seq % 100) * 100
            q["ask_price"] = q["bid_price"] + 200
            pub.send(codec.encode_frame(s.KIND_QUOTE, 7, seq, q, time.time_ns()))
            seq += 1
        next_t += 0.002
        time.sleep(max(0.0, next_t - time.monotonic()))


def role_backlog_1mib(spec: dict) -> None:
    """Legal 1 MiB quote frames, as fast as the socket takes them (on the public ingest
    endpoint with --public-ingest)."""
    pub = _curve_pub(spec, spec["target"])
    n = ((1 << 20) - s.HEADER_SIZE) // s.QUOTE_SIZE
    q = np.zeros(n, s.QUOTE)
    q["symbol"] = np.arange(n) % 6 + 2
    q["bid_size"] = q["ask_size"] = s.SIZE_SCALE
    q["bid_price"] = 1_000_000
    q["ask_price"] = 1_000_200
    seq = 0
    _started()
    while True:
        q["ts_ns"] = time.time_ns()
        pub.send(codec.encode_frame(s.KIND_QUOTE, 6, seq, q, time.time_ns()))
        seq += n


def role_sub_flood(spec: dict) -> None:
    """Distinct subscriptions as fast as the socket takes them, in rounds of
    SUB_FLOOD_TOPICS subscribed then unsubscribed (the engine's memory stays bounded; its
    publishing thread's work does not stop)."""
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SNDHWM, 0)
    apply_curve_client(sub, spec["server_key"].encode(), spec["client_key"])
    sub.connect(spec["results"])
    topics = [(b"flood.%d." % i).ljust(40, b"x") for i in range(SUB_FLOOD_TOPICS)]
    _started()
    while True:
        for topic in topics:
            sub.setsockopt(zmq.SUBSCRIBE, topic)
        for topic in topics:
            sub.setsockopt(zmq.UNSUBSCRIBE, topic)


ROLES = {
    "json_chain": role_json_chain,
    "json_190mib": role_json_190mib,
    "var_3000": role_var_3000,
    "handshakes_req": role_handshakes,
    "handshakes_ingest": role_handshakes,
    "stalled_subs": role_stalled_subs,
    "backlog_1mib": role_backlog_1mib,
    "chain_flood": role_chain_flood,
    "sub_flood": role_sub_flood,
}


# --------------------------------------------------------------------------- measurement


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` so far (threads included)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def _keys(workdir: Path) -> dict:
    keys = workdir / "keys"
    allow = workdir / "allow"
    keys.mkdir()
    allow.mkdir()
    server_public, server_secret = zmq.auth.create_certificates(keys, "engine")
    client_public, client_secret = zmq.auth.create_certificates(keys, "client")
    (allow / "client.key").write_bytes(Path(client_public).read_bytes())
    return {"server_public": server_public, "server_secret": server_secret,
            "client_secret": client_secret, "allow": str(allow)}  # fmt: skip


def _pressure_counters(stats: dict) -> dict:
    req = stats.get("requests", {})
    return {
        "requests_received": req.get("received", 0),
        "request_handshakes_denied": req.get("curve", {}).get("denied", 0),
        "ingest_handshakes_denied": stats.get("security", {}).get("clients_denied", 0),
        "frames_received": stats.get("frames_received", 0),
        "bytes_received": stats.get("bytes_received", 0),
        "chain_frames": stats.get("dispatch", {}).get("published", {}).get("chain_frames", 0),
        "gaps": stats.get("gaps", 0),
        # ingest.slice_records: large frames sliced, and the frames taken between slices
        **{f"slicing_{k}": v for k, v in stats.get("slicing", {}).items() if k != "slice_records"},
    }


def _applied(phase: str, before: dict, after: dict) -> bool:
    delta = {k: after[k] - before[k] for k in before}
    if phase.startswith(("json", "var")):
        return delta["requests_received"] > 0
    if phase == "handshakes_req":  # counted by the request process, or ("before") the engine
        return delta["request_handshakes_denied"] + delta["ingest_handshakes_denied"] > 0
    if phase == "handshakes_ingest":
        return delta["ingest_handshakes_denied"] > 0
    if phase == "stalled_subs":
        return delta["frames_received"] > 100
    if phase == "backlog_1mib":
        return delta["bytes_received"] > 100 << 20
    if phase == "chain_flood":
        return delta["chain_frames"] > 0
    return True


def _measure(
    ticker: Ticker, seconds: float, rate: float, pids: list[int], until: Any = None
) -> dict:
    """Ping for `seconds`, and on until ``until()`` is true (at most 120 s more)."""
    rtts = []
    stages = []
    lost = 0
    rss = [0.0] * len(pids)
    interval = 1.0 / rate
    start = time.monotonic()
    end = start + seconds
    cpu0 = [_cpu_s(p) for p in pids]
    next_t = start
    next_rss = 0.0
    while True:
        now = time.monotonic()
        if now >= end and (until is None or until() or now > end + 120):
            break
        rtt = ticker.tick(PING_TIMEOUT_S)
        if rtt is None:
            lost += 1
        else:
            rtts.append(rtt)
            stages.append(ticker.stages_ns)
        now = time.monotonic()
        if now >= next_rss:
            rss = [max(r, _rss_mib(p)) for r, p in zip(rss, pids)]
            next_rss = now + 0.1
        next_t += interval
        delay = next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_t = time.monotonic()
    ms = np.asarray(rtts) * 1e3
    # where the slowest 1 % of the pings spent their time: the median of each stage
    slow = None
    if len(ms):
        stage_ms = np.asarray(stages, np.float64).reshape(-1, 3) / 1e6
        slow = [round(float(x), 3) for x in np.median(stage_ms[ms >= np.percentile(ms, 99)], 0)]
    return {
        "pings": len(rtts),
        "lost": lost,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        "max_ms": float(ms.max()) if len(ms) else None,
        "slowest_1pct_stages_ms": slow,  # ingest, kernels, publish (engine/bench/ticker.py)
        "engine_cpu_ms": round((_cpu_s(pids[0]) - cpu0[0]) * 1e3),
        "request_process_cpu_ms": round((_cpu_s(pids[1]) - cpu0[1]) * 1e3)
        if len(pids) > 1
        else None,
        "engine_rss_mib": round(rss[0], 1),
        "request_process_rss_mib": round(rss[1], 1) if len(rss) > 1 else None,
        "load_average": round(os.getloadavg()[0], 2),
    }


def _probe_realtime(priority: int) -> int:
    """Put the probe (this thread and this process's ZeroMQ I/O threads) under SCHED_FIFO
    at ``priority``; processes and threads started afterwards (the attackers) start under
    the default policy (SCHED_RESET_ON_FORK). Returns the number of threads set."""
    os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(priority))
    count = 1
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/comm") as f:
            if f.read().startswith("ZMQbg/IO"):
                os.sched_setscheduler(int(tid), os.SCHED_FIFO, os.sched_param(priority))
                count += 1
    if count < 2:
        raise RuntimeError("the probe's ZeroMQ I/O thread was not found")
    return count


def run(args: argparse.Namespace) -> dict:
    """Start the engine, run every phase, return the report."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-pressure-"))
    keys = _keys(workdir)
    ingest, results, requests = (f"tcp://127.0.0.1:{free_port()}" for _ in range(3))
    config = workdir / "serve.toml"
    engine_set = list(args.engine_set)
    public = None  # --public-ingest: the ingest handshakes go to a public endpoint
    if args.public_ingest:
        public = f"tcp://127.0.0.1:{free_port()}"
        engine_set.append(f'ingest.public_endpoints=["{public}"]')
    if args.realtime:
        engine_set.append(f"scheduling.realtime_priority={args.realtime}")
    if args.design == "before":  # no JSON cap then: bodies were decoded whatever their size
        engine_set.append("dispatch.requests.max_json_bytes=268435456")
        engine_set.append("dispatch.stream_isolation=thread")  # stream jobs on engine threads
    config.write_text(
        f'[security]\ncurve = true\nsecret_key = "{keys["server_secret"]}"\n'
        f'allow = "{keys["allow"]}"\nzap = "{"thread" if args.design == "before" else args.zap}"\n'
        "[publish]\nstats_interval_s = 0.25\n"
        "[dispatch]\ncpu_threads = 1\n"
        # the chain of the chain_flood phase: 125 strikes x 4 expiries x (call, put)
        f"[[dispatch.chains]]\nunderlying = {CHAIN_UNDERLYING}\n"
        "expiries = [0.1, 0.25, 0.5, 1.0]\nstrike_count = 125\nstrike_step = 0.005\n"
    )
    log = open(workdir / "serve.log", "w")
    engine = subprocess.Popen(
        [sys.executable, "-c", ENGINE_BOOT, str(args.io_threads), args.design, "serve",
         "--ingest", ingest,
         "--publish", results,
         "--requests", requests, "--symbols", "8", "--config", str(config),
         *[a for kv in engine_set for a in ("--set", kv)]],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    server_key = zmq.auth.load_certificate(keys["server_public"])[0]
    spec = {"ingest": ingest, "results": results, "requests": requests,
            "server_key": server_key.decode(), "client_key": keys["client_secret"]}  # fmt: skip
    ctx = zmq.Context.instance()
    ticker = Ticker(ctx, ingest, results, curve=(server_key, keys["client_secret"]))
    report: dict = {"phases": {}, "log": str(workdir / "serve.log"), "attackers": args.attackers,
                    "attacker_sndbuf": args.attacker_sndbuf,
                    "public_ingest": args.public_ingest, "realtime": args.realtime}  # fmt: skip
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if engine.poll() is not None:
                raise RuntimeError((workdir / "serve.log").read_text()[-3000:])
            stats = ticker.stats(timeout_s=1.0)
            requests_stats = stats.get("requests", {})
            if requests_stats.get("process", {}).get("ready") or (
                args.design == "before" and "received" in requests_stats
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the engine never became ready")
        child = stats["requests"].get("process", {}).get("pid", 0)  # 0: none ("before")
        while ticker.tick(PING_TIMEOUT_S) is None:  # the probe's subscription is up
            if time.monotonic() > deadline:
                raise RuntimeError("no answer to the probe")
        if args.realtime:  # now that the probe's I/O thread has started (and named itself)
            report["probe_threads_fifo"] = _probe_realtime(args.realtime)
        _measure(ticker, 1.0, args.rate, [engine.pid, child])  # warm-up, not reported
        for phase in args.phases:
            role = phase if phase in ROLES else None
            proc = None
            before = _pressure_counters(ticker.stats())
            if role is not None:
                target = requests if phase == "handshakes_req" else public or ingest
                pspec = dict(spec, target=target)
                pspec["sched_idle"] = args.attackers == "idle"
                pspec["sndbuf"] = args.attacker_sndbuf
                proc = subprocess.Popen(
                    [sys.executable, __file__, "--role", role, "--spec", json.dumps(pspec)],
                    stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                line = proc.stdout.readline()
                if line.strip() != "started":
                    raise RuntimeError(f"pressure {phase} did not start")
            t0 = time.monotonic()
            done: list[str] = []

            def finished(proc=proc, done=done) -> bool:
                if not done and select.select([proc.stdout], [], [], 0)[0]:
                    done.append(proc.stdout.readline().strip())
                return bool(done)

            until = finished if phase.startswith("handshakes") else None
            try:
                row = _measure(ticker, args.phase_s, args.rate, [engine.pid, child], until)
                row["seconds"] = round(time.monotonic() - t0, 1)
                if done:
                    row["pressure_says"] = done[0]
            finally:
                if proc is not None:
                    proc.terminate()
                    proc.wait(30)
            after = _pressure_counters(ticker.stats())
            row["applied"] = _applied(phase, before, after)
            if phase == "sub_flood" and "idle" in report["phases"]:
                # not in the engine's counters: seen as its subscription trie's memory
                idle_rss = report["phases"]["idle"]["engine_rss_mib"]
                row["applied"] = row["engine_rss_mib"] > idle_rss + 10
            row["counters"] = {k: after[k] - before[k] for k in before}
            report["phases"][phase] = row
            print(_row_text(phase, row, report["phases"].get("idle")), flush=True)
            time.sleep(args.settle_s)
        final = ticker.stats()
        report["engine_stats_requests"] = final.get("requests")
        report["engine_vm_hwm_mib"] = _vm_hwm(engine.pid)
    finally:
        ticker.close()
        engine.terminate()
        try:
            engine.wait(30)
        except subprocess.TimeoutExpired:
            engine.kill()
        log.close()
    return report


def _vm_hwm(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _row_text(phase: str, row: dict, idle: dict | None) -> str:
    def f(x):
        return "-" if x is None else f"{x:.3f}"

    ratio = ""
    goal = ""
    if idle and idle.get("p99_ms") and row.get("p99_ms") and phase != "idle":
        r = row["p99_ms"] / idle["p99_ms"]
        ratio = f"{r:.2f}"
        goal = "met" if r <= 2.0 and row["max_ms"] < 100 and not row["lost"] else "NOT met"
    applied = "" if row.get("applied", True) else " (not applied)"
    if row.get("pressure_says"):
        applied += f" ({row['pressure_says'].replace('done', 'refused')}, {row['seconds']} s)"
    stages = " / ".join(map(str, row["slowest_1pct_stages_ms"] or []))
    return (f"| {phase}{applied} | {row['pings']} | {row['lost']} | {f(row['p50_ms'])} | "
            f"{f(row['p99_ms'])} | {f(row['max_ms'])} | {ratio} | {goal} | "
            f"{row['engine_cpu_ms']} | {row['request_process_cpu_ms']} | "
            f"{row['engine_rss_mib']} | {row['request_process_rss_mib']} | "
            f"{row['load_average']} | {stages} |")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with --role, one pressure process)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phase-s", type=float, default=8.0)
    p.add_argument("--settle-s", type=float, default=1.0)
    p.add_argument("--rate", type=float, default=1000.0, help="pings per second (at most)")
    p.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    p.add_argument("--json", metavar="PATH")
    p.add_argument(
        "--design",
        choices=["after", "before"],
        default="after",
        help="before: the request endpoint and the ZAP handler in the engine's process, as "
        "before the request and ZAP processes (an A/B comparison)",
    )
    p.add_argument(
        "--zap",
        choices=["process", "thread"],
        default="process",
        help="with --design after: security.zap, where the engine checks handshakes",
    )
    p.add_argument(
        "--io-threads",
        type=int,
        default=1,
        metavar="N",
        help="libzmq I/O threads of the engine's context (default 1, as serve)",
    )
    p.add_argument(
        "--engine-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config setting for the engine (serve --set), repeatable",
    )
    p.add_argument(
        "--attackers",
        choices=["normal", "idle"],
        default="normal",
        help="idle: the pressure processes run at SCHED_IDLE, standing in for attackers on "
        "other machines (they then take only CPU time the engine and the probe leave); "
        "normal: they compete for this machine's cores at the engine's priority",
    )
    p.add_argument(
        "--attacker-sndbuf",
        type=int,
        default=ATTACKER_SNDBUF,
        metavar="BYTES",
        help="SO_SNDBUF of every attacker socket (default 65536; 0: the kernel's "
        "autotuning): bounds the kernel work of one send() on this machine (module doc)",
    )
    p.add_argument(
        "--public-ingest",
        action="store_true",
        help="the engine also binds a public ingest endpoint (ingest.public_endpoints), and "
        "the attackers on ingest (handshakes_ingest, backlog_1mib) go there, while the probe "
        "and the legitimate feeds keep the private one",
    )
    p.add_argument(
        "--realtime",
        type=int,
        default=0,
        metavar="PRIORITY",
        help="1..99: the engine's scheduling.realtime_priority, and the probe's threads "
        "under SCHED_FIFO at the same priority, standing in for a client on a host of its "
        "own (as --attackers idle stands in for attackers on other machines); 0 (default): "
        "every process at the default policy",
    )
    p.add_argument("--role", choices=sorted(ROLES), help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role:
        role_spec = json.loads(args.spec)
        # 100 sockets and their monitors at a time, closed by a reaper thread that may
        # run late (SCHED_IDLE): room for several batches' descriptors
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if role_spec.get("sched_idle"):
            lower_priority(0, True, "the pressure process")
        if role_spec.get("sndbuf"):  # every socket the role makes from the shared context
            zmq.Context.instance().setsockopt(zmq.SNDBUF, role_spec["sndbuf"])
        try:
            ROLES[args.role](role_spec)
        except KeyboardInterrupt:
            pass
        return 0
    print("| phase | pings | lost | p50 ms | p99 ms | max ms | p99 / idle | goal | "
          "engine CPU ms | request process CPU ms | engine RSS MiB | request process RSS MiB | "
          "load | slowest 1 %: ingest / kernels / publish ms |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: "
          "| ---: | --- |")  # fmt: skip
    report = run(args)
    print(f"engine VmHWM {report['engine_vm_hwm_mib']} MiB; log {report['log']}")
    if args.json:
        Path(args.json).write_text(msgspec.json.encode(report).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
