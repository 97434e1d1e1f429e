"""Black-Scholes on the GPU against the memory-bandwidth bound.

Black-Scholes with greeks reads S, K, T, sigma (float64) and is_call (bool) per option
and writes price, delta, gamma, vega, theta and rho (float64): 81 bytes per option, with
r and q broadcast from size-1 arrays (the layout of a chain). Prices only: 41 bytes. No
implementation can beat those bytes over the device's memory bandwidth; this measures
how close ours come, in one run:

* the ceiling: a large device-to-device copy (bytes read + bytes written, timed with CUDA
  events, median of repeats), next to the datasheet figure where the device is known;
* the numba-CUDA greeks and price kernels on device-resident inputs (kernel alone,
  events), then the same through ``tickpath.kernels.black_scholes(..., backend="cuda")`` with GPU
  inputs and GPU ``out=`` arrays (its per-call overhead included), then the CuPy backend;
* rotating between two input sets of several times the L2 cache, outputs poisoned with NaN
  before the first call, every output checked finite and a sample checked against the
  CPU kernel (the oracle) to 1e-12.

The goal (issue: Black-Scholes at least half the bound) is judged for the numba-CUDA
greeks kernel against the larger of the measured copy bandwidth and the datasheet figure.
Under ``NUMBA_ENABLE_CUDASIM=1`` everything runs on a tiny size to check the code and the
numbers are marked simulated (meaningless as speeds).

    python -m tickpath.engine.bench.gpu_roofline [--n N] [--repeats R] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tickpath.kernels import batch as kb

GREEKS = ("price", "delta", "gamma", "vega", "theta", "rho")
# Bytes per option through device memory: S, K, T, sigma (8 each) and is_call (1) in;
# 8 per output. r and q are size-1 arrays and stay in cache.
BYTES_IN = 4 * 8 + 1
BYTES_PER_OPTION = {"greeks": BYTES_IN + 6 * 8, "price": BYTES_IN + 8}
# Datasheet memory bandwidth by device name (bytes/s); a lead, the copy is measured.
DATASHEET_BANDWIDTH = {"H200": 4.8e12, "H100 80GB HBM3": 3.35e12, "A100-SXM4-80GB": 2.04e12}
GOAL_FRACTION = 0.5
R, Q = 0.02, 0.01


def simulated() -> bool:
    """True when numba-CUDA runs its simulator (speeds are meaningless)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def datasheet_bandwidth(device_name: str) -> float | None:
    """The vendor's figure for a known device name, else None."""
    for key, value in DATASHEET_BANDWIDTH.items():
        if key in device_name:
            return value
    return None


class EventTimer:
    """Seconds between CUDA events around `func` (host clock after a sync in the simulator)."""

    def __init__(self) -> None:
        from numba import cuda

        self.cuda = cuda

    def __call__(self, func: Callable[[], Any]) -> float:
        cuda = self.cuda
        if simulated():
            start = time.perf_counter()
            func()
            cuda.synchronize()
            return time.perf_counter() - start
        begin, end = cuda.event(timing=True), cuda.event(timing=True)
        begin.record()
        func()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end) / 1e3


def median_seconds(timer: EventTimer, calls: list[Callable[[], Any]], repeats: int) -> float:
    """Median over `repeats` timed calls, cycling through `calls` (rotating input sets)."""
    return statistics.median(timer(calls[i % len(calls)]) for i in range(repeats))


def copy_bandwidth(n_bytes: int, repeats: int, timer: EventTimer) -> float:
    """Device-to-device copy bandwidth in bytes/s (bytes read + bytes written)."""
    cuda = timer.cuda
    count = n_bytes // 8
    src = cuda.to_device(np.random.default_rng(5).random(count))
    dst = cuda.device_array(count, dtype=np.float64)
    dst.copy_to_device(src)  # warm-up
    cuda.synchronize()
    seconds = median_seconds(timer, [lambda: dst.copy_to_device(src)], repeats)
    return 2 * count * 8 / seconds


def make_inputs(n: int, seed: int) -> dict[str, np.ndarray]:
    """Random valid contracts (host arrays); never zeros, which can time faster."""
    rng = np.random.default_rng(seed)
    return {
        "S": rng.uniform(50.0, 150.0, n),
        "K": rng.uniform(50.0, 150.0, n),
        "T": rng.uniform(0.01, 3.0, n),
        "sigma": rng.uniform(0.05, 1.0, n),
        "is_call": rng.random(n) < 0.5,
    }


def check_outputs(
    outputs: dict[str, np.ndarray], host: dict[str, np.ndarray], fields: tuple[str, ...]
) -> str | None:
    """None when every output is finite and a sample equals the CPU kernel, else why not."""
    n = host["S"].size
    for field in fields:
        finite = np.isfinite(outputs[field])
        if not finite.all():
            return f"{field}: {int((~finite).sum())} of {n} outputs not finite (unwritten?)"
    idx = np.random.default_rng(9).choice(n, size=min(n, 10_000), replace=False)
    want = kb.black_scholes(
        host["S"][idx], host["K"][idx], host["T"][idx], R, Q, host["sigma"][idx],
        host["is_call"][idx], backend="cpu",
    )  # fmt: skip
    for field in fields:
        got, ref = outputs[field][idx], getattr(want, field)
        scale = np.maximum(np.abs(ref), host["S"][idx] * 1e-3)
        err = float(np.max(np.abs(got - ref) / scale))
        if not err <= 1e-12:
            return f"{field}: relative error {err:.3g} against the CPU kernel"
    return None


def row(
    kernel: str, implementation: str, n: int, seconds: float, bound_bw: float, copy_bw: float
) -> dict[str, Any]:
    """One measurement with its achieved bandwidth and fractions of the bounds."""
    moved = n * BYTES_PER_OPTION[kernel]
    achieved = moved / seconds
    return {
        "kernel": f"black_scholes {kernel}",
        "implementation": implementation,
        "n": n,
        "seconds": seconds,
        "options_per_s": n / seconds,
        "bytes_per_option": BYTES_PER_OPTION[kernel],
        "achieved_bytes_per_s": achieved,
        "fraction_of_copy": achieved / copy_bw,
        "fraction_of_bound": achieved / bound_bw,
    }


def numba_rows(
    sets: list[dict], host: dict, n: int, repeats: int, timer: EventTimer, bw: tuple
) -> tuple[list[dict], list[str]]:
    """numba-CUDA kernels alone, then through the public API with GPU in and out."""
    from tickpath.kernels.cuda import black_scholes as cuda_bs
    from tickpath.kernels.cuda._launch import THREADS_PER_BLOCK, blocks_for

    cuda = timer.cuda
    r, q = cuda.to_device(np.array([R])), cuda.to_device(np.array([Q]))
    invalid = cuda.to_device(np.zeros(1, dtype=np.int64))
    outs = {f: cuda.to_device(np.full(n, np.nan)) for f in GREEKS}
    grid = (blocks_for(n), THREADS_PER_BLOCK)
    problems: list[str] = []
    rows: list[dict] = []

    def greeks(d: dict) -> Callable[[], None]:
        return lambda: cuda_bs.greeks_kernel[grid](
            d["S"], d["K"], d["T"], r, q, d["sigma"], d["is_call"],
            *(outs[f] for f in GREEKS), invalid,
        )  # fmt: skip

    def price(d: dict) -> Callable[[], None]:
        return lambda: cuda_bs.price_kernel[grid](
            d["S"], d["K"], d["T"], r, q, d["sigma"], d["is_call"], outs["price"], invalid
        )

    greeks(sets[0])()  # compiles, and writes set 0's outputs for the check
    cuda.synchronize()
    problem = check_outputs({f: outs[f].copy_to_host() for f in GREEKS}, host, GREEKS)
    if problem:
        problems.append(f"cuda greeks kernel: {problem}")
    if int(invalid.copy_to_host()[0]) != 0:
        problems.append("cuda greeks kernel counted invalid contracts in valid inputs")
    seconds = median_seconds(timer, [greeks(d) for d in sets], repeats)
    rows.append(row("greeks", "numba-cuda kernel", n, seconds, *bw))
    price(sets[0])()
    seconds = median_seconds(timer, [price(d) for d in sets], repeats)
    rows.append(row("price", "numba-cuda kernel", n, seconds, *bw))

    result = kb.BlackScholesResult(*(outs[f] for f in GREEKS))

    def api(d: dict) -> Callable[[], None]:
        return lambda: kb.black_scholes(
            d["S"], d["K"], d["T"], R, Q, d["sigma"], d["is_call"], backend="cuda", out=result
        )

    for f in GREEKS:
        outs[f].copy_to_device(np.full(n, np.nan))
    api(sets[0])()
    problem = check_outputs({f: outs[f].copy_to_host() for f in GREEKS}, host, GREEKS)
    if problem:
        problems.append(f"kernels.black_scholes(backend='cuda'): {problem}")
    seconds = median_seconds(timer, [api(d) for d in sets], repeats)
    rows.append(row("greeks", "kernels.black_scholes cuda, GPU in/out", n, seconds, *bw))
    return rows, problems


def cupy_rows(
    host_sets: list[dict], host: dict, n: int, repeats: int, timer: EventTimer, bw: tuple
) -> tuple[list[dict], list[str]]:
    """The CuPy backend with CuPy arrays in and out (its own allocations included)."""
    import cupy

    sets = [{k: cupy.asarray(v) for k, v in d.items()} for d in host_sets]
    result = kb.BlackScholesResult(*(cupy.full(n, cupy.nan) for _ in GREEKS))

    def api(d: dict) -> Callable[[], None]:
        return lambda: kb.black_scholes(
            d["S"], d["K"], d["T"], R, Q, d["sigma"], d["is_call"], backend="cupy", out=result
        )

    api(sets[0])()
    problems = []
    problem = check_outputs({f: getattr(result, f).get() for f in GREEKS}, host, GREEKS)
    if problem:
        problems.append(f"kernels.black_scholes(backend='cupy'): {problem}")
    seconds = median_seconds(timer, [api(d) for d in sets], repeats)
    return [row("greeks", "kernels.black_scholes cupy, GPU in/out", n, seconds, *bw)], problems


def run_roofline(n: int, repeats: int, copy_bytes: int) -> dict[str, Any]:
    """Measure everything above; a report dict (``status`` ok / failed / no-gpu)."""
    report: dict[str, Any] = {"benchmark": "BlackScholesRoofline", "simulated": simulated()}
    reason = kb._cuda_status()
    if reason is not None:
        return {**report, "status": "no-gpu", "reason": reason}
    from numba import cuda

    timer = EventTimer()
    name = getattr(cuda.get_current_device(), "name", "numba-cuda simulator")
    name = name.decode() if isinstance(name, bytes) else str(name)
    copy_bw = copy_bandwidth(copy_bytes, repeats, timer)
    sheet = datasheet_bandwidth(name)
    bound_bw = max(copy_bw, sheet or 0.0)
    report.update(
        device=name,
        n=n,
        repeats=repeats,
        bytes_per_option=BYTES_PER_OPTION,
        copy_bytes=copy_bytes,
        copy_bandwidth_bytes_per_s=copy_bw,
        datasheet_bandwidth_bytes_per_s=sheet,
        bound_bandwidth_bytes_per_s=bound_bw,
    )
    host_sets = [make_inputs(n, seed) for seed in (1, 2)]
    device_sets = [{k: cuda.to_device(v) for k, v in d.items()} for d in host_sets]
    rows, problems = numba_rows(device_sets, host_sets[0], n, repeats, timer,
                                (bound_bw, copy_bw))  # fmt: skip
    if kb._cupy_status() is None:
        more, more_problems = cupy_rows(host_sets, host_sets[0], n, repeats, timer,
                                        (bound_bw, copy_bw))  # fmt: skip
        rows += more
        problems += more_problems
    else:
        report["cupy"] = kb._cupy_status()
    kernel_row = rows[0]
    report["rows"] = rows
    report["problems"] = problems
    report["goal"] = {
        "what": "numba-cuda Black-Scholes greeks >= half the memory-bandwidth bound",
        "target_fraction": GOAL_FRACTION,
        "fraction": kernel_row["fraction_of_bound"],
        "met": None if report["simulated"] else kernel_row["fraction_of_bound"] >= GOAL_FRACTION,
    }
    report["status"] = "failed" if problems else "ok"
    return report


def format_report(report: dict[str, Any]) -> str:
    """A short table of the report."""
    if report["status"] == "no-gpu":
        return f"gpu roofline: no usable CUDA GPU ({report['reason']})"
    gb = 1e9
    lines = [
        f"device {report['device']}"
        + (" (SIMULATOR: speeds meaningless)" if report["simulated"] else "")
        + f", n={report['n']:,}, median of {report['repeats']}",
        f"copy bandwidth {report['copy_bandwidth_bytes_per_s'] / gb:,.0f} GB/s measured"
        + (
            f", datasheet {report['datasheet_bandwidth_bytes_per_s'] / gb:,.0f} GB/s"
            if report["datasheet_bandwidth_bytes_per_s"]
            else ""
        ),
        f"{'kernel':24s} {'implementation':42s} {'Mopt/s':>9s} {'GB/s':>8s} {'of bound':>8s}",
    ]
    for r in report["rows"]:
        lines.append(
            f"{r['kernel']:24s} {r['implementation']:42s} {r['options_per_s'] / 1e6:9.1f}"
            f" {r['achieved_bytes_per_s'] / gb:8.0f} {r['fraction_of_bound']:8.2f}"
        )
    goal = report["goal"]
    lines.append(f"goal {goal['what']}: {goal['fraction']:.2f} of the bound, met={goal['met']}")
    lines += [f"PROBLEM {p}" for p in report["problems"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: measure, print the table, write JSON; exit 1 on a wrong result or a missed goal."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="options per batch")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--copy-mib", type=int, default=None, help="copy buffer for the ceiling")
    parser.add_argument("--json", default=None, help="write the report here")
    args = parser.parse_args(argv)
    sim = simulated()
    n = args.n if args.n is not None else (256 if sim else 1 << 25)
    repeats = args.repeats if args.repeats is not None else (1 if sim else 20)
    copy_mib = args.copy_mib if args.copy_mib is not None else (1 if sim else 2048)
    for flag, value in (("--n", n), ("--repeats", repeats), ("--copy-mib", copy_mib)):
        if value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    report = run_roofline(n, repeats, copy_mib << 20)
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    if report["status"] == "failed" or report.get("goal", {}).get("met") is False:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
