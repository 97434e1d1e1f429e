"""bench/gpu_check.py, the one command a lent GPU machine runs, rehearsed under the simulator.

Device time is short and a plumbing error there wastes it: every step (GPU tests, the
roofline, the latency run with chains routed to cuda, the calibration, the kernel
benchmark) must run and report here first. Speeds under the simulator mean nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_rehearsal_runs_every_step(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--simulator", "--budget", "240", "--json",
         str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    summary = json.loads(out.read_text())
    if summary["status"] == "no-gpu":
        pytest.skip(f"numba-cuda simulator unavailable: {summary['gpu'].get('cuda_status')}")
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert summary["status"] == "ok" and summary["simulator"] is True
    steps = ("tests", "roofline", "latency", "calibration", "bench")
    assert {name: summary[name]["rc"] for name in steps} == dict.fromkeys(steps, 0)
    assert summary["roofline"]["report"]["status"] == "ok"
    assert summary["latency"]["report"]["self_check_ok"] is True
    assert list(summary["latency"]["report"]["paths"]["milli"]) == ["cuda"]
    kernels = json.loads((tmp_path / "calibration.json").read_text())["kernels"]
    assert {"chain", "black_scholes", "implied_vol"} <= set(kernels)
    assert (tmp_path / "bench_kernels_gpu.json").exists()
