"""One-shot GPU check for the batch kernels: tests, benchmarks, a JSON summary.

Run on a machine with a CUDA GPU (it installs nothing; numba-cuda and cupy must already
be importable from this interpreter):

    python bench/gpu_check.py [--json FILE] [--n N] [--skip-bench]

It runs the ``gpu``-marked CUDA/CuPy tests (real GPU, no simulator) and the benchmark
(bench/bench_kernels.py, which measures the GPU crossover batch size N* when a GPU is
present), and writes a summary (default bench/out/gpu_check.json). Without a GPU it says
why, skips the GPU parts and still writes the summary (status "no-gpu", exit code 0);
on a GPU a failed test or benchmark bar exits 1.
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


def gpu_report() -> dict:
    """What the GPU stack looks like from this interpreter (never raises)."""
    report: dict = {"python": platform.python_version(), "platform": platform.platform()}
    env = os.environ.get("NUMBA_ENABLE_CUDASIM")
    if env == "1":
        report["problem"] = "NUMBA_ENABLE_CUDASIM=1 is set: unset it to test the real GPU"
        return report
    sys.path.insert(0, str(REPO))
    from kernels import batch as kb

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
        report["device"] = (
            device.name.decode() if isinstance(device.name, bytes) else str(device.name)
        )
        report["compute_capability"] = list(device.compute_capability)
    return report


def run(cmd: list[str], timeout: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO))
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=str(REPO / "bench" / "out" / "gpu_check.json"))
    parser.add_argument("--n", type=int, default=1_000_000, help="batch for the benchmark")
    parser.add_argument("--skip-bench", action="store_true")
    parser.add_argument("--timeout", type=int, default=420, help="seconds per step")
    args = parser.parse_args()
    summary: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "gpu": gpu_report()}
    has_gpu = summary["gpu"].get("cuda_status") == "ok"
    failed = False
    if not has_gpu:
        reason = summary["gpu"].get("problem") or summary["gpu"].get("cuda_status")
        print(f"gpu_check: no usable CUDA GPU ({reason}); GPU tests and benchmarks skipped.")
        summary["status"] = "no-gpu"
    else:
        print(
            f"gpu_check: {summary['gpu'].get('device')} {summary['gpu'].get('compute_capability')}"
        )
        tests = run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-m",
                "gpu",
                "-rs",
                "tests/kernels/test_batch_cuda.py",
                "tests/dispatch/test_gpu_routing.py",
            ],
            args.timeout,
        )
        counts = re.findall(r"(\d+) (passed|failed|skipped|error)", tests["tail"])
        tests["counts"] = {kind: int(n) for n, kind in counts}
        summary["tests"] = tests
        failed |= tests["rc"] != 0 or tests["counts"].get("passed", 0) == 0
        print(f"gpu tests: rc={tests['rc']} {tests['counts']}")
        calibration_file = Path(args.json).with_name("calibration.json")
        calibration = run(
            [sys.executable, "-m", "engine.dispatch.calibration", "--out", str(calibration_file)],
            args.timeout,
        )
        summary["calibration"] = {k: calibration[k] for k in ("cmd", "rc", "seconds")}
        if calibration_file.exists():
            summary["calibration"]["crossover"] = json.loads(calibration_file.read_text())
        else:
            summary["calibration"]["tail"] = calibration["tail"]
        failed |= calibration["rc"] != 0
        print(f"calibration: rc={calibration['rc']}")
        if not args.skip_bench:
            bench_json = Path(args.json).with_name("bench_kernels_gpu.json")
            bench = run(
                [
                    sys.executable,
                    "bench/bench_kernels.py",
                    "--n",
                    str(args.n),
                    "--json",
                    str(bench_json),
                ],
                args.timeout,
            )
            summary["bench"] = {k: bench[k] for k in ("cmd", "rc", "seconds")}
            if bench_json.exists():
                data = json.loads(bench_json.read_text())
                summary["bench"]["rows"] = [
                    r
                    for r in data["rows"]
                    if "cuda" in r["implementation"] or "cupy" in r["implementation"]
                ]
                summary["bench"]["gpu_crossover"] = data.get("gpu_crossover")
            else:
                summary["bench"]["tail"] = bench["tail"]
            failed |= bench["rc"] != 0
            print(f"bench: rc={bench['rc']} crossover={summary['bench'].get('gpu_crossover')}")
        summary["status"] = "failed" if failed else "ok"
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(summary, indent=2, default=str))
    print(f"wrote {args.json} (status {summary['status']})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
