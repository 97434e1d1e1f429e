"""Importing the public API starts nothing and compiles nothing."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys, threading
import tickpath
assert "tickpath.analytics" not in sys.modules and "numba" not in sys.modules, "eager"
import tickpath.analytics, tickpath.book, tickpath.client, tickpath.options, tickpath.wire
assert tickpath.analytics is sys.modules["tickpath.analytics"]
from numba.core.registry import CPUDispatcher
compiled = [
    f"{name}.{attr}"
    for name, module in list(sys.modules.items())
    if name.startswith("tickpath")
    for attr, value in vars(module).items()
    if isinstance(value, CPUDispatcher) and value.signatures
]
assert not compiled, compiled
assert threading.active_count() == 1, threading.enumerate()
for module in (tickpath.analytics, tickpath.book, tickpath.client, tickpath.options, tickpath.wire):
    for name in module.__all__:
        assert getattr(module, name).__doc__, f"{module.__name__}.{name} has no docstring"
print("ok")
"""


def test_importing_the_api_starts_and_compiles_nothing(tmp_path):
    out = subprocess.run(
        [sys.executable, "-P", "-c", CHECK],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
