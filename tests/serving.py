"""`tickpath serve` as a child process, on ports the operating system picks.

The test passes ``tcp://127.0.0.1:*`` endpoints; the engine binds them (port 0: no
other process can take the port between a check and the bind) and logs, at INFO
level, what it bound. `bound_endpoints` waits for those lines in the process's log
file, which is also the sign that the kernels are compiled and the sockets open.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.waiting import DEADLINE_S, wait_until

ANY_PORT = "tcp://127.0.0.1:*"
# engine/service/engine.py, Engine.start: "ingest EP[, EP] (rcvhwm N), publish EP (sndhwm N)"
_SOCKETS = re.compile(r"ingest (?P<ingest>\S+(?:, \S+)*) \(rcvhwm \d+\), publish (?P<publish>\S+)")
# engine/service/requests.py: "requests: ROUTER EP (...)"
_REQUESTS = re.compile(r"requests: ROUTER (?P<requests>\S+)")


def bound_endpoints(
    log_path: Path,
    proc: subprocess.Popen,
    requests: bool = False,
    timeout: float = DEADLINE_S,
    after: int = 0,
) -> dict:
    """``{"ingest": [...], "publish": ..., ["requests": ...]}`` as the engine bound them.

    Reads ``log_path`` (the child's output, at INFO level) from byte ``after`` on, until
    the lines are there; fails with the log's tail if the process exits first or none come.
    """

    def found() -> dict | None:
        text = log_path.read_text(errors="replace")[after:]
        if proc.poll() is not None:
            raise AssertionError(f"tickpath serve exited ({proc.returncode}):\n{text[-3000:]}")
        sockets = _SOCKETS.search(text)
        if sockets is None:
            return None
        out = {"ingest": sockets["ingest"].split(", "), "publish": sockets["publish"]}
        if requests:
            match = _REQUESTS.search(text)
            if match is None:
                return None
            out["requests"] = match["requests"]
        return out

    return wait_until(
        found,
        timeout,
        lambda: "the bound endpoints in the log:\n" + log_path.read_text(errors="replace")[-3000:],
        interval=0.05,
    )
