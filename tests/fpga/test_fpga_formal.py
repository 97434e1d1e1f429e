"""Bounded proof of the stream contract (fpga/tick_features/formal/prove.py).

The properties (no record lost, duplicated or reordered; TLAST kept; nothing
accepted while the state is cleared; the AXI4-Stream output rule; nothing stuck
with the sink ready) are written in ``tick_features_stream_formal.v``.

Opt-in (``TF_FORMAL=1``): on the shared development machine z3 did not finish
even the first steps within ten minutes, so the proof has not been seen to
pass yet and is not part of the default run.  ``TF_FORMAL_DEPTH`` sets the
depth (default 20 cycles: the watched record can be any of the first dozen).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "fpga" / "tick_features" / "formal" / "prove.py"

pytestmark = [
    pytest.mark.rtl,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("TF_FORMAL") != "1", reason="opt-in: set TF_FORMAL=1 (see docstring)"
    ),
    pytest.mark.skipif(
        shutil.which("yosys-smtbmc") is None or shutil.which("z3") is None,
        reason="yosys-smtbmc (Debian yosys) and z3 are needed",
    ),
]


@pytest.mark.timeout(3600)
def test_stream_contract_bounded_proof(tmp_path: Path) -> None:
    """Every assertion holds for every input sequence up to the stated depth."""
    depth = os.environ.get("TF_FORMAL_DEPTH", "20")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--depth", depth, "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "TF_FORMAL PASS" in proc.stdout
