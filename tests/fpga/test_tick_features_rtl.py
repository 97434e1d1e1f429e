"""Run the cocotb testbench of the tick-features core on Icarus Verilog.

Two builds: the default ``N_SYMBOLS = 4096`` (directed tests, latency/II and a
random scoreboard), and ``N_SYMBOLS = 16`` for the 100,000-record random
scoreboard, where a small table makes symbol collisions and read-modify-write
hazards frequent.  Build folders go under ``fpga/tick_features/tb/sim_build/``
(gitignored).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCK = ROOT / "fpga" / "tick_features"
RTL = BLOCK / "rtl"
TB = BLOCK / "tb"
SOURCES = [RTL / "tick_features.v", RTL / "tick_features_core.v", RTL / "tick_features_axil.v"]

pytestmark = [
    pytest.mark.rtl,
    pytest.mark.skipif(
        shutil.which("iverilog") is None, reason="iverilog (Icarus Verilog) is not on PATH"
    ),
]

DIRECTED = [
    "test_latency_and_initiation_interval",
    "test_registers",
    "test_rejects_and_counters",
    "test_soft_reset_clears_state",
    "test_backpressure_holds_records",
    "test_mmio_single_record_path",
    "test_driver_register_protocol",
    "test_soft_reset_mid_stream",
    "test_alpha_change_in_flight",
]


def run_cocotb(name: str, parameters: dict[str, int], testcases: list[str], env: dict) -> None:
    """Build the design with ``parameters`` and run ``testcases``; fail on any failure."""
    from cocotb_tools.runner import get_runner

    for path in (str(TB), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    build_dir = TB / "sim_build" / name
    runner = get_runner("icarus")
    runner.build(
        sources=SOURCES,
        includes=[RTL],
        hdl_toplevel="tick_features",
        parameters=parameters,
        build_dir=build_dir,
        timescale=("1ns", "1ps"),
    )
    runner.test(
        test_module="test_tick_features",
        hdl_toplevel="tick_features",
        testcase=testcases,
        build_dir=build_dir,
        extra_env=env,
    )


def test_tick_features_default_geometry() -> None:
    """N_SYMBOLS = 4096: registers, rejects, resets, back-pressure, MMIO, latency, scoreboard."""
    records = os.environ.get("TF_RECORDS_DEFAULT", "20000")
    run_cocotb(
        "n4096",
        {"N_SYMBOLS": 4096},
        [*DIRECTED, "test_scoreboard_random"],
        {"TF_RECORDS": records, "TF_SEED": "1"},
    )


def test_tick_features_scoreboard_100k_small_table() -> None:
    """N_SYMBOLS = 16: 100,000 random records bit-exact with the golden model."""
    records = os.environ.get("TF_RECORDS_100K", "100000")
    run_cocotb(
        "n16",
        {"N_SYMBOLS": 16, "MUL_STAGES": 3},
        ["test_scoreboard_random"],
        {"TF_RECORDS": records, "TF_SEED": "2"},
    )
