"""The milli path warms only the kernels its configuration can run (a cold start compiles less),
in the process that runs them: stream jobs in the stream process, requests in the request
process; the engine process itself loads none of the batch kernels."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import sys
from tickpath.engine.config import load_config
from tickpath.engine.dispatch import cli as dispatch_cli
from tickpath.engine.service.engine import Engine
config = load_config(sys.argv[1], {"analytics.n_symbols": 4,
    "ingest.endpoints": ["tcp://127.0.0.1:*"], "publish.endpoint": "tcp://127.0.0.1:*"})
engine = Engine(config, extensions=dispatch_cli.serve_extensions(config))
engine.start()
child = engine.stats()["dispatch"].get("stream_process", {}).get("kernels", [])
engine.close()
print(" ".join(sorted(m.rsplit(".", 1)[1] for m in sys.modules
                      if m.startswith("tickpath.kernels.cpu."))))
print(" ".join(child))
"""
CHAINS = "[[dispatch.chains]]\nunderlying = 0\nexpiries = [0.1]\nstrike_count = 3\n"
CORR = "[dispatch.correlation]\nsymbols = [0, 1]\n"
REQUESTS = '[dispatch.requests]\nendpoint = "tcp://127.0.0.1:*"\n'


@pytest.mark.parametrize(
    "config, loaded, not_loaded",
    [
        (CHAINS, {"chain", "black_scholes"}, {"correlation", "montecarlo", "implied_vol"}),
        (CHAINS + CORR, {"chain", "correlation"}, {"montecarlo", "implied_vol"}),
        # requests are served by the request process (docs/architecture.md)
        (REQUESTS, set(), {"chain", "correlation", "montecarlo", "implied_vol"}),
    ],
)
def test_start_up_loads_only_the_kernels_the_config_uses(tmp_path, config, loaded, not_loaded):
    path = tmp_path / "engine.toml"
    path.write_text(config)
    result = subprocess.run(
        [sys.executable, "-c", CHECK, str(path)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    engine_line, child_line = result.stdout.split("\n")[:2]
    batch = {"chain", "black_scholes", "correlation", "montecarlo", "implied_vol"}
    assert not (batch & set(engine_line.split())), engine_line
    modules = set(child_line.split())
    assert loaded <= modules and not (not_loaded & modules), modules
