"""The test tiers stay what tests/conftest.py says they are."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import INTEGRATION_DIRS, INTEGRATION_FILES, TESTS


def test_every_listed_integration_folder_and_file_exists():
    """A renamed file must not silently leave the integration tier."""
    for folder in INTEGRATION_DIRS:
        assert (TESTS / folder).is_dir(), folder
    for name in INTEGRATION_FILES:
        assert (TESTS / name).is_file(), name


SAMPLE = [  # one file of each kind: listed, in a listed folder, mixed, unit, rtl
    "cli/test_commands.py",
    "integration/test_engine_sockets.py",
    "reliability/test_fuzz.py",
    "dispatch/test_queues.py",
    "fpga/test_tick_features_rtl.py",
]


def _collected(marks):
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", marks,
         *(str(TESTS / name) for name in SAMPLE)],
        capture_output=True, text=True, timeout=300, cwd=TESTS.parent,
    )  # fmt: skip
    assert out.returncode in (0, 5), out.stdout[-2000:] + out.stderr[-2000:]
    return [line for line in out.stdout.splitlines() if "::" in line]


def test_the_tiers_select_what_they_say():
    """-m integration takes the listed files and folders and the tests marked in mixed
    files; the unit tier (no marker) none of them; -m rtl the simulations only."""
    integration = _collected("integration")
    files = {line.split("::")[0] for line in integration}
    assert files == {
        "tests/cli/test_commands.py",
        "tests/integration/test_engine_sockets.py",
        "tests/reliability/test_fuzz.py",
    }
    fuzz = [line for line in integration if "test_fuzz.py" in line]
    assert fuzz == [
        "tests/reliability/test_fuzz.py::test_fuzz_over_a_real_socket_matches_direct_processing"
    ]
    unit = _collected("not integration and not rtl and not slow")
    assert {line.split("::")[0] for line in unit} == {
        "tests/reliability/test_fuzz.py",
        "tests/dispatch/test_queues.py",
        "tests/fpga/test_tick_features_rtl.py",  # its results-file reading tests
    }
    rtl = _collected("rtl")
    assert rtl and all("test_tick_features_rtl.py::test_tick_features_" in t for t in rtl)
