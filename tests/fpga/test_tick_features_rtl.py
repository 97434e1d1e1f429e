"""Run the cocotb testbench of the tick-features core on Icarus Verilog.

Two builds: the default ``N_SYMBOLS = 4096`` (directed tests, latency/II and a
random scoreboard), and ``N_SYMBOLS = 16`` for the 100,000-record random
scoreboard, where a small table makes symbol collisions and read-modify-write
hazards frequent (built with other EMA k sets than the default, extremes
included).  Build folders go under ``fpga/tick_features/tb/sim_build/``
(gitignored).

cocotb's runner writes an xUnit results file per run; `run_cocotb` reads it and fails
with the name and message of every cocotb test that failed, errored or never ran
(the runner alone would end with a bare ``SystemExit``). The tests at the end check
that reading on results files written here.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tickpath.kernels.fixedpoint import layout as L

ROOT = Path(__file__).resolve().parents[2]
BLOCK = ROOT / "fpga" / "tick_features"
RTL = BLOCK / "rtl"
TB = BLOCK / "tb"
SOURCES = [RTL / "tick_features.v", RTL / "tick_features_core.v", RTL / "tick_features_axil.v"]
# Our own behavioural model of the DSP48E2 subset the UltraScale+ build
# instantiates (not Xilinx's): only for the TF_XILINX_DSP48E2 build below.
DSP48E2_MODEL = BLOCK / "sim" / "dsp48e2_model.v"

needs_iverilog = pytest.mark.skipif(
    shutil.which("iverilog") is None, reason="iverilog (Icarus Verilog) is not on PATH"
)

# The small-table build supports other k than the default one (extremes included).
K0_SET_SMALL = L.k_register_value(0, (0, 4, 17, 31)) >> L.K_BITS
K1_SET_SMALL = L.k_register_value(0, (1, 8, 13, 23)) >> L.K_BITS

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


def cocotb_outcomes(results_xml: Path) -> dict[str, str]:
    """``{cocotb test name: "passed" | "skipped" | "failed: message"}`` from a results file.

    Raises AssertionError if the file is missing (the simulation ended abnormally).
    """
    if not results_xml.is_file():
        raise AssertionError(f"no cocotb results file {results_xml}: the simulation ended early")
    outcomes = {}
    for case in ElementTree.parse(results_xml).getroot().iter("testcase"):
        name = case.get("name", "?")
        problems = case.findall("failure") + case.findall("error")
        if problems:
            text = "; ".join(
                " ".join(filter(None, (p.get("message"), (p.text or "").strip()))) or p.tag
                for p in problems
            )
            outcomes[name] = f"failed: {text}"
        elif case.find("skipped") is not None:
            outcomes[name] = "skipped"
        else:
            outcomes[name] = "passed"
    return outcomes


def check_cocotb_results(results_xml: Path, testcases: list[str], exit_code: object = 0) -> None:
    """Fail (AssertionError) naming every one of `testcases` that did not pass."""
    outcomes = cocotb_outcomes(results_xml)
    bad = [
        f"{name}: {outcomes.get(name, 'did not run')}"
        for name in testcases
        if outcomes.get(name) != "passed"
    ]
    if bad:
        raise AssertionError("cocotb tests failed:\n  " + "\n  ".join(bad))
    if exit_code not in (0, None):
        raise AssertionError(f"the simulator exited with {exit_code} although every test passed")


def run_cocotb(
    name: str,
    parameters: dict[str, int],
    testcases: list[str],
    env: dict,
    defines: dict[str, object] | None = None,
    extra_sources: list[Path] | None = None,
) -> None:
    """Build the design with ``parameters`` (and Verilog ``defines``, ``extra_sources``)
    and run ``testcases``; fail naming the failures."""
    from cocotb_tools.runner import get_runner

    for path in (str(TB), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    build_dir = TB / "sim_build" / name
    runner = get_runner("icarus")
    runner.build(
        sources=[*SOURCES, *(extra_sources or [])],
        includes=[RTL],
        defines=defines or {},
        hdl_toplevel="tick_features",
        parameters=parameters,
        build_dir=build_dir,
        timescale=("1ns", "1ps"),
    )
    results_xml = build_dir / "results.xml"
    exit_code: object = 0
    try:
        runner.test(
            test_module="test_tick_features",
            hdl_toplevel="tick_features",
            testcase=testcases,
            build_dir=build_dir,
            extra_env=env,
            results_xml=str(results_xml),  # absolute: where we read it back
        )
    except SystemExit as exc:  # the runner's way of saying "failed": the file says what
        exit_code = exc.code
    check_cocotb_results(results_xml, testcases, exit_code)


@pytest.mark.rtl
@needs_iverilog
def test_tick_features_default_geometry() -> None:
    """N_SYMBOLS = 4096: registers, rejects, resets, back-pressure, MMIO, latency, scoreboard."""
    records = os.environ.get("TF_RECORDS_DEFAULT", "20000")
    run_cocotb(
        "n4096",
        {"N_SYMBOLS": 4096},
        [*DIRECTED, "test_scoreboard_random"],
        {"TF_RECORDS": records, "TF_SEED": "1"},
    )


@pytest.mark.rtl
@needs_iverilog
def test_tick_features_scoreboard_100k_small_table() -> None:
    """N_SYMBOLS = 16: 100,000 random records bit-exact with the golden model."""
    records = os.environ.get("TF_RECORDS_100K", "100000")
    run_cocotb(
        "n16",
        {"N_SYMBOLS": 16, "MUL_STAGES": 3, "K0_SET": K0_SET_SMALL, "K1_SET": K1_SET_SMALL},
        ["test_scoreboard_random"],
        {"TF_RECORDS": records, "TF_SEED": "2"},
    )


@pytest.mark.rtl
@needs_iverilog
def test_tick_features_dsp48e2_instances() -> None:
    """The UltraScale+ build's DSP48E2 instances (TF_XILINX_DSP48E2), on our model of the
    primitive: latency 7 cycles (MUL_STAGES 4 + 3), II 1, random records bit-exact (1 % of
    them with arbitrary 64-bit operands: every partial product, both signs)."""
    records = os.environ.get("TF_RECORDS_DSP", "20000")
    run_cocotb(
        "n4096_dsp48e2",
        {"N_SYMBOLS": 4096, "MUL_STAGES": 4},
        ["test_latency_and_initiation_interval", "test_scoreboard_random"],
        {"TF_RECORDS": records, "TF_SEED": "3"},
        defines={"TF_XILINX_DSP48E2": 1},
        extra_sources=[DSP48E2_MODEL],
    )


RESULTS = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="results">
  <testsuite name="all" package="all" tests="3" failures="1" errors="0">
    <testcase name="test_registers" classname="test_tick_features" file="t.py" lineno="1"/>
    <testcase name="test_soft_reset_clears_state" classname="test_tick_features" file="t.py"
              lineno="2">
      <failure message="Test failed with RANDOM_SEED=1">AssertionError: ema0 1 != 2</failure>
    </testcase>
    <testcase name="test_backpressure_holds_records" classname="test_tick_features">
      <skipped/>
    </testcase>
  </testsuite>
</testsuites>
"""


def test_results_file_failures_are_named(tmp_path):
    path = tmp_path / "results.xml"
    path.write_text(RESULTS)
    outcomes = cocotb_outcomes(path)
    assert outcomes["test_registers"] == "passed"
    assert outcomes["test_backpressure_holds_records"] == "skipped"
    assert outcomes["test_soft_reset_clears_state"].startswith("failed: Test failed")
    assert "ema0 1 != 2" in outcomes["test_soft_reset_clears_state"]
    check_cocotb_results(path, ["test_registers"])  # what was asked for passed
    with pytest.raises(AssertionError) as info:
        check_cocotb_results(path, ["test_registers", "test_soft_reset_clears_state"])
    assert "test_soft_reset_clears_state: failed" in str(info.value)
    assert "test_registers" not in str(info.value)


def test_results_file_skipped_missing_or_absent_tests_fail(tmp_path):
    path = tmp_path / "results.xml"
    path.write_text(RESULTS)
    with pytest.raises(AssertionError, match="test_backpressure_holds_records: skipped"):
        check_cocotb_results(path, ["test_backpressure_holds_records"])
    with pytest.raises(AssertionError, match="test_latency_and_initiation_interval: did not run"):
        check_cocotb_results(path, ["test_latency_and_initiation_interval"])
    with pytest.raises(AssertionError, match="exited with 1"):
        check_cocotb_results(path, ["test_registers"], exit_code=1)
    with pytest.raises(AssertionError, match="no cocotb results file"):
        check_cocotb_results(tmp_path / "missing.xml", ["test_registers"])
