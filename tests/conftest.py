"""Shared fixtures (small engine configs) and the suite's guards and tiers.

Tiers (markers, registered in pyproject.toml; README "Developer commands" runs each):

* unmarked: fast unit tests, in-process, no sockets to other processes;
* ``integration``: real sockets and processes. Applied here to every test under
  ``INTEGRATION_DIRS`` and to the files in ``INTEGRATION_FILES``; a test elsewhere that
  starts processes or sockets carries ``@pytest.mark.integration`` itself;
* ``rtl``: RTL simulations (iverilog + cocotb), marked in their files;
* ``slow``: soaks and long runs, marked in their files.

Guard: no module may leave the interpreter's GIL switch interval changed
(``sys.setswitchinterval``), since every later test would run with it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tickpath.engine.config import load_config
from tickpath.engine.service.engine import StreamProcessor

TESTS = Path(__file__).resolve().parent
# folders whose every test runs real sockets or processes
INTEGRATION_DIRS = ("integration", "cluster", "service")
# files elsewhere whose every test does (a file with only some such tests marks them itself)
INTEGRATION_FILES = (
    "bench/test_bench_cli.py",
    "cli/test_commands.py",
    "dispatch/test_milli_e2e.py",
    "dispatch/test_nonblocking.py",
    "feed/test_feed_publisher.py",
    "reliability/test_faults.py",
    "reliability/test_kill_recover.py",
    "reliability/test_request_fuzz.py",
    "reliability/test_security.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the integration tier by folder and file (see the module docstring)."""
    for item in items:
        try:
            rel = Path(item.fspath).resolve().relative_to(TESTS).as_posix()
        except ValueError:
            continue
        if rel.split("/", 1)[0] in INTEGRATION_DIRS or rel in INTEGRATION_FILES:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True, scope="module")
def _switch_interval_is_restored():
    """Fail the module that leaves the GIL switch interval changed (and restore it)."""
    before = sys.getswitchinterval()
    yield
    after = sys.getswitchinterval()
    if after != before:
        sys.setswitchinterval(before)
        pytest.fail(f"the GIL switch interval was left at {after} s (was {before} s)")


@pytest.fixture(scope="session")
def processor_factory():
    """Build a warmed-up StreamProcessor for a given set of overrides."""

    def make(**overrides):
        config = load_config(None, {f"analytics.{k}": v for k, v in overrides.items()})
        proc = StreamProcessor(config)
        proc.warm_up()
        return proc

    return make
