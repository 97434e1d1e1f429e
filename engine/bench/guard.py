"""``python -m engine.bench.guard PARENT_PID PROGRAM ARGS...``: exec PROGRAM, tied to its parent.

A benchmark's child processes run in sessions of their own (a terminal's Ctrl-C
reaches the benchmark alone, which then stops them in order).  So that they also
end when the benchmark itself is killed outright (SIGKILL, an OOM kill, a CI
timeout), each is started through this guard: on Linux it asks the kernel for
SIGTERM when the parent dies (``PR_SET_PDEATHSIG``, kept across ``exec``), checks
that the parent is still there, and replaces itself with the program.  It imports
nothing heavy, so it adds only an interpreter start.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    """Exec ``argv[1:]`` with a parent-death signal, if the parent ``argv[0]`` is alive."""
    if len(argv) < 2:
        print(
            "usage: python -m tickpath.engine.bench.guard PARENT_PID PROGRAM [ARGS...]",
            file=sys.stderr,
        )
        return 2
    parent = int(argv[0])
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the signal was armed
        return 1
    os.execv(argv[1], argv[1:])
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
