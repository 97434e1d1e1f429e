"""The Black-Scholes roofline benchmark (engine.bench.gpu_roofline) checks what it times.

Its speeds mean something only on a GPU (bench/gpu_check.py runs it there); here the
simulator runs the whole measurement on a tiny size, and the pieces that judge results
(output checks, byte accounting, the bound) are tested directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tickpath.engine.bench import gpu_roofline as rf

REPO = Path(__file__).resolve().parents[2]


def test_simulator_run_checks_every_path(tmp_path):
    out = tmp_path / "roofline.json"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tickpath.engine.bench.gpu_roofline",
            "--n",
            "96",
            "--json",
            str(out),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    if report["status"] == "no-gpu":
        pytest.skip(f"numba-cuda simulator unavailable: {report['reason']}")
    assert report["simulated"] is True and report["status"] == "ok", report
    assert report["problems"] == []
    assert [r["implementation"] for r in report["rows"]][:3] == [
        "numba-cuda kernel",
        "numba-cuda kernel",
        "kernels.black_scholes cuda, GPU in/out",
    ]
    assert report["bytes_per_option"] == {"greeks": 81, "price": 41}
    assert report["goal"]["met"] is None  # a simulator never meets or misses a speed goal
    assert "SIMULATOR" in proc.stdout


def host_inputs(n: int = 500) -> dict[str, np.ndarray]:
    return rf.make_inputs(n, seed=4)


def cpu_outputs(host: dict) -> dict[str, np.ndarray]:
    from tickpath.kernels import batch as kb

    res = kb.black_scholes(
        host["S"], host["K"], host["T"], rf.R, rf.Q, host["sigma"], host["is_call"]
    )
    return {f: getattr(res, f).copy() for f in rf.GREEKS}


def test_output_check_accepts_the_oracle_and_catches_unwritten_and_wrong_values():
    host = host_inputs()
    good = cpu_outputs(host)
    assert rf.check_outputs(good, host, rf.GREEKS) is None
    unwritten = {**good, "vega": good["vega"].copy()}
    unwritten["vega"][17] = np.nan
    assert "vega: 1 of 500 outputs not finite" in rf.check_outputs(unwritten, host, rf.GREEKS)
    wrong = {**good, "theta": good["theta"] * (1 + 1e-9)}
    assert "theta: relative error" in rf.check_outputs(wrong, host, rf.GREEKS)


def test_bandwidth_accounting():
    r = rf.row("greeks", "x", 1_000_000, 1e-3, bound_bw=4.8e12, copy_bw=4.0e12)
    assert r["achieved_bytes_per_s"] == pytest.approx(81e9)
    assert r["fraction_of_bound"] == pytest.approx(81e9 / 4.8e12)
    assert r["fraction_of_copy"] == pytest.approx(81e9 / 4.0e12)
    assert r["options_per_s"] == pytest.approx(1e9)
    assert rf.datasheet_bandwidth("NVIDIA H200") == 4.8e12
    assert rf.datasheet_bandwidth("Some Future GPU") is None


def test_inputs_are_valid_and_never_zero():
    host = host_inputs()
    assert all(np.all(host[k] > 0) for k in ("S", "K", "T", "sigma"))
    assert 0 < host["is_call"].sum() < host["is_call"].size


def test_bad_flags_get_one_line_errors():
    proc = subprocess.run(
        [sys.executable, "-m", "tickpath.engine.bench.gpu_roofline", "--n", "0"],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--n must be >= 1, got 0" in proc.stderr
