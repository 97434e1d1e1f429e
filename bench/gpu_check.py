"""One-shot GPU check for the batch kernels: tests, benchmarks, a JSON summary.

Run on a machine with a CUDA GPU (it installs nothing; numba-cuda and cupy must already
be importable; bench/gpu_device.sh is the command for a lent GPU machine):

    python bench/gpu_check.py [--json FILE] [--n N] [--skip-bench] [--budget S]

Steps, in order of importance, each inside what is left of ``--budget`` seconds:

1. the ``gpu``-marked CUDA/CuPy tests (real GPU, no simulator): every kernel against the
   CPU kernels, device-resident inputs and outputs, the dispatcher routing to the GPU;
2. the Black-Scholes roofline (engine.bench.gpu_roofline): achieved bandwidth against
   the measured copy bandwidth and the datasheet, the goal "at least half the bound";
2b. ``tickpath bench latency --chains 8`` with the chains routed to cuda: tick -> chain
   result latency through a real engine on the GPU, next to the micro path;
3. the crossover calibration (engine.dispatch.calibration: N* per kernel, the file the
   dispatcher loads);
4. bench/bench_kernels.py: items/s per kernel and backend, GPU crossover.

The summary (default bench/out/gpu_check.json; the other steps' JSON files beside it) is
written after every step, so a run cut short keeps what it measured. Without a GPU it
says why, skips the GPU parts and still writes the summary (status "no-gpu", exit 0); on
a GPU a failed test, check or goal exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def gpu_report(simulator: bool = False) -> dict:
    """What the GPU stack looks like from this interpreter (never raises)."""
    report: dict = {"python": platform.python_version(), "platform": platform.platform()}
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" and not simulator:
        report["problem"] = "NUMBA_ENABLE_CUDASIM=1 is set: unset it to test the real GPU"
        return report
    from tickpath.kernels import batch as kb

    for name in ("numba", "numba_cuda", "cupy"):
        try:
            module = __import__(name)
            report[f"{name}_version"] = getattr(module, "__version__", "?")
        except ImportError:
            report[f"{name}_version"] = None
    report["cuda_status"] = kb._cuda_status() or "ok"
    report["cupy_status"] = kb._cupy_status() or "ok"
    if report["cuda_status"] == "ok":
        from numba import cuda

        device = cuda.get_current_device()
        name = getattr(device, "name", "numba-cuda simulator")
        report["device"] = name.decode() if isinstance(name, bytes) else str(name)
        report["compute_capability"] = list(device.compute_capability)
    return report


def run(cmd: list[str], timeout: int, simulator: bool = False) -> dict:
    """Run one step in a subprocess (the simulator variable only in a rehearsal)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path)
    if not simulator:
        env.pop("NUMBA_ENABLE_CUDASIM", None)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        return {"cmd": cmd, "rc": None, "seconds": timeout, "tail": f"timed out: {exc}"}
    return {
        "cmd": cmd,
        "rc": proc.returncode,
        "seconds": round(time.perf_counter() - start, 2),
        "tail": (proc.stdout + proc.stderr)[-4000:],
    }


def save(summary: dict, path: str) -> None:
    """Write the summary so far (after every step: a run cut short keeps what it measured)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(summary, indent=2, default=str))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(REPO / "bench" / "out" / "gpu_check.json"))
    parser.add_argument("--n", type=int, default=1_000_000, help="batch for bench_kernels")
    parser.add_argument("--skip-bench", action="store_true", help="tests only")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per step at most")
    parser.add_argument("--budget", type=int, default=540, help="seconds for all steps")
    parser.add_argument(
        "--simulator",
        action="store_true",
        help="rehearse every step under NUMBA_ENABLE_CUDASIM=1 (checks this script, no speeds)",
    )
    args = parser.parse_args()
    deadline = time.monotonic() + args.budget
    if args.simulator:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    summary: dict = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "gpu": gpu_report(args.simulator),
    }
    summary["simulator"] = args.simulator
    if summary["gpu"].get("cuda_status") != "ok":
        reason = summary["gpu"].get("problem") or summary["gpu"].get("cuda_status")
        print(f"gpu_check: no usable CUDA GPU ({reason}); GPU tests and benchmarks skipped.")
        summary["status"] = "no-gpu"
        save(summary, args.json)
        return 0
    print(f"gpu_check: {summary['gpu'].get('device')} {summary['gpu'].get('compute_capability')}")
    out = Path(args.json)
    py = sys.executable
    roofline, calibration = out.with_name("gpu_roofline.json"), out.with_name("calibration.json")
    bench = out.with_name("bench_kernels_gpu.json")
    latency = out.with_name("latency_gpu.json")
    chain_size = "8" if args.simulator else "1024"
    # a rehearsal only checks the plumbing: the simulator runs ~0.1 ms per GPU thread
    quick = ["--quick"] if args.simulator else []
    small = ["--sizes", "64", "256", "--repeats", "1"] if args.simulator else []
    steps = [
        ("tests", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "-rs",
                   "tests/kernels/test_batch_cuda.py", "tests/kernels/test_chain_cuda.py",
                   "tests/dispatch/test_gpu_routing.py"],
         None),
        ("roofline", [py, "-m", "tickpath.engine.bench.gpu_roofline", "--json", str(roofline)],
         roofline),
        # tick -> chain result with the chains routed to the GPU (a real engine process)
        ("latency", [py, "-m", "tickpath", "bench", "latency", "--rate", "2000", "--duration",
                     "5", "--chains", "8", "--chain-size", chain_size, "--engine-set",
                     "dispatch.routes.chain=cuda", "--engine-set", "dispatch.calibration.mode=off",
                     "--json", str(latency)], latency),
        ("calibration", [py, "-m", "tickpath.engine.dispatch.calibration", "--out",
                         str(calibration), *small], calibration),
        ("bench", [py, "bench/bench_kernels.py", "--n", str(args.n), "--json", str(bench),
                   *quick], bench),
    ]  # fmt: skip
    if args.skip_bench:
        steps = steps[:1]
    failed = False
    for name, cmd, report_file in steps:
        left = int(deadline - time.monotonic())
        if left < 20:
            summary[name] = {"skipped": f"budget spent ({args.budget} s)"}
            failed = True
            continue
        # a rehearsal runs the kernel benchmark on the CPU only (its plumbing and summary):
        # its GPU sizes would take the simulator hours
        step = run(cmd, min(args.timeout, left), args.simulator and name != "bench")
        if report_file is not None and report_file.exists():
            step["report"] = summarise(name, json.loads(report_file.read_text()))
        if name == "tests":
            counts = re.findall(r"(\d+) (passed|failed|skipped|error)", step["tail"])
            step["counts"] = {kind: int(n) for n, kind in counts}
            failed |= step["counts"].get("passed", 0) == 0 and not args.simulator
        failed |= step["rc"] != 0
        summary[name] = step
        save(summary, args.json)
        print(f"{name}: rc={step['rc']} {step['seconds']} s")
        print(step["tail"][-1500:])
    summary["status"] = "failed" if failed else "ok"
    save(summary, args.json)
    print(f"wrote {args.json} (status {summary['status']})")
    return 1 if failed else 0


def summarise(step: str, report: dict) -> dict:
    """The part of a step's own JSON that belongs in the summary (GPU rows for bench)."""
    if step == "latency":
        return {"paths": report.get("paths"), "baseline": report.get("baseline"),
                "self_check_ok": report.get("self_check", {}).get("ok")}  # fmt: skip
    if step != "bench":
        return report
    return {
        "rows": [
            r
            for r in report.get("rows", [])
            if "cuda" in r["implementation"] or "cupy" in r["implementation"]
        ],
        "gpu_crossover": report.get("gpu_crossover"),
    }


if __name__ == "__main__":
    sys.exit(main())
