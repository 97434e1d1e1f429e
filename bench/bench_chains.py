"""ChainRepricing: the milli path's chain repricing, generic path vs the CPU fast path.

Every underlying tick reprices its option chain on a worker thread. The worker's Python
holds the GIL, which the engine's ingest thread (the micro path) needs for every frame.
Two ways to reprice on the CPU (engine.dispatch.chains):

* generic: ``kernels.implied_vol`` + ``kernels.black_scholes`` through `kernels.batch`
  (validation and layout in Python), then the records built field by field - the only
  path before the fast path, and still the one of the GPU backends;
* fast: one nogil ``tickpath.kernels.cpu.chain`` call per repricing that writes the records.

Three measurements, in one run, both paths side by side:

1. Per repricing (a chain of n contracts, half of them quoted), on one thread: wall time
   of what the worker does per job (prepare, compute, check, records), and the time the
   GIL is held: wall time minus the time inside the nogil kernels (timed around each
   kernel call, so the kernels' argument unboxing counts as nogil: a lower bound).
2. GIL contention in-process: a worker thread reprices back to back while the main
   thread sleeps 200 us at a time, like an ingest thread waiting on its socket; the
   extra delay of its wake-ups is the time it waited for the GIL (plus the OS's timer
   slack, seen in the idle row).
3. Micro-path latency (``--engine``, the default): ``tickpath serve`` with one chain
   (200 contracts, all quoted) in its own process; a flood process sends single-record
   quotes at ``--rate`` per second; this process ping-pongs quotes of another symbol and
   measures their round trips: no flood, flood on a symbol without a chain (the ingest
   cost alone), flood on the chain's underlying (ingest + repricing). The engine runs
   ``--rounds`` times per variant, alternating: the fast path with its stream jobs in
   the stream process (the default) and on worker threads of the engine process (the
   isolation the stream process brings, in one run), and the generic path on threads
   (the CPU's fast-path capability removed at start-up, which only reaches the engine
   process). ``compute us`` is the dispatcher's CPU busy time per repricing (compute +
   check) from the engine's stats.

Self-checks: before timing, both paths' records of each chain are compared bit for bit;
the engine phases check that the chain was repriced (stats) and every ping answered.

    python bench/bench_chains.py [--sizes 50 200 1000] [--repeats 2000] [--no-engine]
                                 [--rate 20000] [--phase-s 4] [--rounds 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

REPO = Path(__file__).resolve().parents[1]

from tickpath.engine.bench.ticker import Ticker  # noqa: E402
from tickpath.engine.dispatch.backends import BATCH_KERNELS, Backend, KernelBackend  # noqa: E402
from tickpath.engine.dispatch.chains import ChainJob, Provenance, build_chain  # noqa: E402
from tickpath.engine.dispatch.config import ChainConfig  # noqa: E402
from tickpath.engine.dispatch.jobs import Outcome  # noqa: E402
from tickpath.engine.service.demo import free_port  # noqa: E402
from tickpath.engine.wire import schema as s  # noqa: E402
from tickpath.kernels import batch  # noqa: E402

S0 = 100.0
RATE, DIVIDEND, VOL = 0.03, 0.01, 0.25


class GenericCPU(Backend):
    """The CPU's batch kernels without the chain fast path: the generic path."""

    name = "cpu"
    capabilities = BATCH_KERNELS

    def __init__(self, cpu: KernelBackend) -> None:
        self.cpu = cpu

    def implied_vol(self, *args):
        return self.cpu.implied_vol(*args)

    def black_scholes(self, *args):
        return self.cpu.black_scholes(*args)


def chain_config(n: int, underlying: int = 0, symbol_base: int | None = None) -> ChainConfig:
    """A grid of about n contracts around S0: 5 expiries (1 when n is not a multiple of
    10) x strikes from 80 to 120 x call and put."""
    expiries = (0.1, 0.25, 0.5, 1.0, 2.0) if n % 10 == 0 else (0.5,)
    strikes = np.round(np.linspace(80.0, 120.0, max(1, n // (2 * len(expiries)))), 2)
    return ChainConfig(
        underlying=underlying, strikes=tuple(float(k) for k in strikes), expiries=expiries,
        vol=VOL, rate=RATE, dividend=DIVIDEND, option_symbol_base=symbol_base,
    )  # fmt: skip


def fair_mids(spec, S: float, vol: np.ndarray) -> np.ndarray:
    """The numpy reference's prices of the chain's contracts at `vol`."""
    return np.asarray(batch.black_scholes_price(
        S, spec.strike, spec.expiry, spec.rate, spec.dividend, vol, spec.is_call,
        backend="numpy"))  # fmt: skip


def make_job(n: int, rng: np.random.Generator) -> ChainJob:
    """A repricing of an n-contract chain with half its contracts quoted (fair mids)."""
    spec = build_chain(chain_config(n))
    mids = fair_mids(spec, S0, rng.uniform(0.15, 0.45, spec.size))
    mids[rng.random(spec.size) < 0.5] = np.nan
    return ChainJob(spec, S0 + 0.5, mids, Provenance(1, 2, 3, 4, 5), lambda *a: None)


def run_job(job: ChainJob, backend: Backend) -> np.ndarray:
    """What a worker does per job, less routing: prepare, compute, check, records."""
    job.prepare()
    result = job.compute(backend)
    problem = job.check(result)
    if problem is not None:
        raise AssertionError(problem)
    return job.records(result, Outcome(result=result, backend="cpu", done_ns=1))


class NogilClock:
    """Time spent inside the nogil numba kernels the two paths call (patched in place)."""

    def __init__(self) -> None:
        from tickpath.kernels.cpu import black_scholes as cpu_bs
        from tickpath.kernels.cpu import chain
        from tickpath.kernels.cpu import implied_vol as cpu_iv

        self.targets = [
            (cpu_iv, "implied_vol_serial"), (cpu_iv, "implied_vol_parallel"),
            (cpu_bs, "greeks_serial"), (cpu_bs, "greeks_parallel"),
            (chain, "reprice_serial"), (chain, "reprice_parallel"),
        ]  # fmt: skip
        self.ns = 0
        self.calls = 0
        self._saved: list = []

    def _wrap(self, kernel):
        def timed(*args):
            t0 = time.perf_counter_ns()
            result = kernel(*args)
            self.ns += time.perf_counter_ns() - t0
            self.calls += 1
            return result

        return timed

    def __enter__(self) -> NogilClock:
        for module, name in self.targets:
            kernel = getattr(module, name)
            self._saved.append((module, name, kernel))
            setattr(module, name, self._wrap(kernel))
        return self

    def __exit__(self, *exc: object) -> None:
        for module, name, kernel in self._saved:
            setattr(module, name, kernel)
        self._saved.clear()


def _pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def per_repricing(job: ChainJob, backend: Backend, repeats: int) -> dict:
    """Wall time and GIL-held time per repricing (us): medians and 90th percentiles."""
    for _ in range(50):
        run_job(job, backend)
    wall, held, calls = [], [], 0
    clock = NogilClock()
    with clock:
        for _ in range(repeats):
            before = clock.ns
            t0 = time.perf_counter_ns()
            run_job(job, backend)
            elapsed = time.perf_counter_ns() - t0
            wall.append(elapsed / 1e3)
            held.append((elapsed - (clock.ns - before)) / 1e3)
        calls = clock.calls
    return {
        "wall_us_p50": _pct(wall, 50), "wall_us_p90": _pct(wall, 90),
        "gil_us_p50": _pct(held, 50), "gil_us_p90": _pct(held, 90),
        "kernel_calls": calls / repeats,
    }  # fmt: skip


def probe(job: ChainJob | None, backend: Backend | None, seconds: float) -> dict:
    """Extra wake-up delay (us) of a thread sleeping 200 us at a time, while a worker
    thread reprices `job` back to back (or while nothing else runs: job None)."""
    period_ns = 200_000
    stop = threading.Event()
    done = [0]

    def work() -> None:
        while not stop.is_set():
            run_job(job, backend)
            done[0] += 1

    worker = threading.Thread(target=work, daemon=True) if job is not None else None
    if worker is not None:
        worker.start()
        time.sleep(0.05)
    delays = []
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter_ns()
        time.sleep(period_ns / 1e9)
        delays.append((time.perf_counter_ns() - t0 - period_ns) / 1e3)
    elapsed = time.perf_counter() - start
    stop.set()
    if worker is not None:
        worker.join()
    return {
        "p50_us": _pct(delays, 50), "p90_us": _pct(delays, 90), "p99_us": _pct(delays, 99),
        "max_us": float(max(delays)), "samples": len(delays),
        "repricings_per_s": done[0] / elapsed,
    }  # fmt: skip


# --------------------------------------------------------------------------- engine

ENGINE_BOOT = """
import sys
from tickpath.engine.dispatch import backends
if sys.argv[1] == "generic":  # the CPU without the chain fast path: the generic path
    _init = backends.KernelBackend.__init__
    def _generic(self, name):
        _init(self, name)
        self.capabilities = backends.BATCH_KERNELS
    backends.KernelBackend.__init__ = _generic
from tickpath.engine.cli import main
sys.exit(main(sys.argv[2:]))
"""

FLOOD = """
import sys, time
import numpy as np, zmq
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s
endpoint, symbol = sys.argv[1], int(sys.argv[2])
rate, seconds = float(sys.argv[3]), float(sys.argv[4])
ctx = zmq.Context()
pub = ctx.socket(zmq.PUB)
pub.setsockopt(zmq.LINGER, 0)
pub.setsockopt(zmq.SNDHWM, 1_000_000)
pub.connect(endpoint)
time.sleep(0.3)
q = np.zeros(1, s.QUOTE)
q["symbol"] = symbol
q["bid_size"] = q["ask_size"] = s.SIZE_SCALE
sent = 0
start = time.perf_counter()
while True:
    now = time.perf_counter() - start
    if now >= seconds:
        break
    due = int(now * rate)
    while sent < due:
        mid = 1_000_000 + (sent % 50) * 100
        q["ts_ns"] = time.time_ns()
        q["bid_price"], q["ask_price"] = mid - 100, mid + 100
        pub.send(codec.encode_frame(s.KIND_QUOTE, 2, sent, q, time.time_ns()))
        sent += 1
    time.sleep(0.0005)
print(sent, flush=True)
"""

PING_SYMBOL = 1
# (repricing path, where stream jobs run): the stream process (the default) against worker
# threads of the engine process, both on the fast path; the generic path on threads
ENGINE_VARIANTS = (("generic", "thread"), ("fast", "thread"), ("fast", "process"))
OTHER_SYMBOL = 2
OPTION_BASE = 10


def _chain_counters(stats: dict) -> tuple[int, int, int]:
    """(chain frames published, cpu jobs, cpu busy us) from an engine stats message."""
    dispatch = stats.get("dispatch", {})
    cpu = dispatch.get("backends", {}).get("cpu", {})
    published = dispatch.get("published", {}).get("chain_frames", 0)
    return published, cpu.get("jobs", 0), cpu.get("busy_us", 0)


def engine_run(path: str, isolation: str, args: argparse.Namespace, workdir: Path) -> dict:
    """Round trips of PING_SYMBOL quotes, per phase, with the engine on `path`, its stream
    jobs in the stream process or on worker threads of the engine (`isolation`)."""
    ports = [free_port() for _ in range(2)]
    ingest, results = (f"tcp://127.0.0.1:{p}" for p in ports)
    n = args.engine_contracts
    config = chain_config(n, underlying=0, symbol_base=OPTION_BASE)
    spec = build_chain(config)
    toml = workdir / f"serve-{path}-{isolation}.toml"
    toml.write_text(
        "[publish]\nstats_interval_s = 0.25\n[dispatch]\ncpu_threads = 1\n"
        f'stream_isolation = "{isolation}"\n'
        "[[dispatch.chains]]\nunderlying = 0\n"
        f"strikes = {list(config.strikes)}\nexpiries = {list(config.expiries)}\n"
        f"vol = {VOL}\nrate = {RATE}\ndividend = {DIVIDEND}\n"
        f"option_symbol_base = {OPTION_BASE}\nreprice_on_option_quote = false\n"
    )
    log = open(workdir / f"serve-{path}-{isolation}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-c", ENGINE_BOOT, path, "serve", "--ingest", ingest, "--publish",
         results, "--symbols", str(OPTION_BASE + spec.size + 1), "--log-level", "INFO",
         "--config", str(toml)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    ctx = zmq.Context.instance()
    ticker = Ticker(ctx, ingest, results, symbol=PING_SYMBOL)
    out: dict = {"path": path, "isolation": isolation, "contracts": spec.size}
    try:
        deadline = time.monotonic() + 60
        while ticker.tick(timeout_s=0.2) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((workdir / f"serve-{path}-{isolation}.log").read_text()[-3000:])
        mids = fair_mids(spec, S0, np.full(spec.size, 0.3))
        ticker.send_quotes(spec.option_symbol.astype(np.uint32), mids)
        for _ in range(200):
            ticker.tick()
        deadline = time.monotonic() + 30  # the stream process's counters come in snapshots
        while True:
            chains = ticker.stats().get("dispatch", {}).get("chains", {})
            quoted = chains.get("0", {}).get("quoted")
            if quoted == spec.size or time.monotonic() > deadline:
                break
            ticker.tick()
        if quoted != spec.size:
            raise RuntimeError(f"the engine holds {quoted} option quotes of {spec.size}")
        for phase, symbol in (("no flood", None), ("flood, other symbol", OTHER_SYMBOL),
                              ("flood, chain underlying", 0)):  # fmt: skip
            flood = None
            if symbol is not None:
                flood = subprocess.Popen(
                    [sys.executable, "-c", FLOOD, ingest, str(symbol), str(args.rate),
                     str(args.phase_s + 1.0)],
                    cwd=REPO, stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                time.sleep(0.8)  # connected and flowing
            before = _chain_counters(ticker.stats())
            latencies = []
            end = time.perf_counter() + args.phase_s - (0.8 if flood else 0.0)
            t_start = time.perf_counter()
            while time.perf_counter() < end:
                latency = ticker.tick()
                if latency is None:
                    raise RuntimeError(f"{path}, {phase}: a ping got no answer")
                latencies.append(latency * 1e6)
                time.sleep(0.001)
            elapsed = time.perf_counter() - t_start
            after = _chain_counters(ticker.stats())
            sent = None
            if flood is not None:
                sent = int(flood.communicate(timeout=30)[0].split()[-1])
            frames, jobs, busy = (a - b for a, b in zip(after, before))
            row = {
                "p50_us": _pct(latencies, 50), "p90_us": _pct(latencies, 90),
                "p99_us": _pct(latencies, 99), "pings": len(latencies),
                "flood_per_s": None if sent is None else sent / (args.phase_s + 1.0),
                "repricings_per_s": frames / elapsed,
                "compute_us_per_repricing": busy / jobs if jobs else None,
            }  # fmt: skip
            if symbol == 0 and frames == 0:
                raise RuntimeError(f"{path}: the chain was not repriced during the flood")
            out[phase] = row
    finally:
        ticker.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return out


# --------------------------------------------------------------------------- main


def _check_same(a: np.ndarray, b: np.ndarray) -> None:
    for name in s.RESULT_CHAIN.names:
        x, y = a[name], b[name]
        same = (x == y) | (np.isnan(x) & np.isnan(y)) if x.dtype.kind == "f" else x == y
        if not np.all(same):
            raise AssertionError(f"fast and generic paths differ in {name}")


def _engine_row(name: str, phase: str, row: dict) -> str:
    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    return (
        f"{name:>14} {phase:>24} {row['p50_us']:>7.0f} {row['p90_us']:>7.0f} "
        f"{row['p99_us']:>7.0f} {row['pings']:>6} {fmt(row['flood_per_s']):>8} "
        f"{row['repricings_per_s']:>12.0f} {fmt(row['compute_us_per_repricing']):>10}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--repeats", type=int, default=2000, help="repricings timed per cell")
    parser.add_argument("--probe-s", type=float, default=2.0, help="seconds per probe row")
    parser.add_argument("--no-engine", dest="engine", action="store_false")
    parser.add_argument("--engine-contracts", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20_000.0, help="flood ticks per second")
    parser.add_argument("--phase-s", type=float, default=4.0, help="seconds per engine phase")
    parser.add_argument("--rounds", type=int, default=2, help="engine runs per path")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()

    cpu = KernelBackend("cpu")
    cpu.warmup()
    paths = {"generic": GenericCPU(cpu), "fast": cpu}
    rng = np.random.default_rng(1)
    report: dict = {
        "load_average_start": os.getloadavg(), "cpus": os.cpu_count(),
        "per_repricing": {}, "probe": {},
    }  # fmt: skip
    print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs")
    print("\n1. per repricing (prepare + compute + check + records), one thread, us")
    print(f"{'contracts':>9} {'path':>8} {'wall p50':>9} {'wall p90':>9} {'GIL p50':>8} "
          f"{'GIL p90':>8} {'kernel calls':>12}")  # fmt: skip
    jobs = {}
    for n in args.sizes:
        job = jobs[n] = make_job(n, rng)
        _check_same(run_job(job, paths["fast"]), run_job(job, paths["generic"]))
        for name, backend in paths.items():
            row = per_repricing(job, backend, args.repeats)
            report["per_repricing"][f"{job.size}/{name}"] = row
            print(f"{job.size:>9} {name:>8} {row['wall_us_p50']:>9.1f} {row['wall_us_p90']:>9.1f} "
                  f"{row['gil_us_p50']:>8.1f} {row['gil_us_p90']:>8.1f} "
                  f"{row['kernel_calls']:>12.0f}")  # fmt: skip

    print("\n2. extra wake-up delay of a thread sleeping 200 us while a worker reprices back "
          "to back, us")  # fmt: skip
    print(f"{'contracts':>9} {'path':>8} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>8} "
          f"{'repricings/s':>12}")  # fmt: skip
    idle = probe(None, None, args.probe_s)
    report["probe"]["idle"] = idle
    print(f"{'-':>9} {'idle':>8} {idle['p50_us']:>7.1f} {idle['p90_us']:>7.1f} "
          f"{idle['p99_us']:>7.1f} {idle['max_us']:>8.1f} {0:>12}")  # fmt: skip
    for job in jobs.values():
        for name, backend in paths.items():
            row = probe(job, backend, args.probe_s)
            report["probe"][f"{job.size}/{name}"] = row
            print(f"{job.size:>9} {name:>8} {row['p50_us']:>7.1f} {row['p90_us']:>7.1f} "
                  f"{row['p99_us']:>7.1f} {row['max_us']:>8.1f} "
                  f"{row['repricings_per_s']:>12.0f}")  # fmt: skip

    if args.engine:
        print(
            f"\n3. quote round trips of another symbol, engine with a "
            f"{args.engine_contracts}-contract chain, flood {args.rate:,.0f} ticks/s, us"
        )
        print(f"{'path':>14} {'phase':>24} {'p50':>7} {'p90':>7} {'p99':>7} {'pings':>6} "
              f"{'flood/s':>8} {'repricings/s':>12} {'compute us':>10}")  # fmt: skip
        report["engine"] = []
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.rounds):  # alternating, so that all see the same machine
                # the generic path is patched into the engine process: thread isolation only
                for name, isolation in ENGINE_VARIANTS:
                    run = engine_run(name, isolation, args, Path(tmp))
                    report["engine"].append(run)
                    for phase, row in run.items():
                        if isinstance(row, dict):
                            print(_engine_row(f"{name}/{isolation}", phase, row))
    report["load_average_end"] = os.getloadavg()
    print(f"\nload average {os.getloadavg()}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
