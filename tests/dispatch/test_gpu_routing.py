"""GPU routing: CUDA under the numba-CUDA simulator (small), CuPy and real GPUs when present.

``NUMBA_ENABLE_CUDASIM=1`` must be set before numba is imported, so
`test_cuda_routing_under_the_simulator` runs this file as a script in a subprocess with
the variable set. The script loads a calibration file that puts the black_scholes
crossover on cuda at 8 options, reprices a 12-contract chain (routed to cuda, computed by
the simulator) and a 2-contract chain (below N*: cpu), and saves the records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _run_chains(backend_name: str, n_star: int, workdir: Path) -> dict[str, np.ndarray]:
    """Reprice a large and a small chain through a dispatcher routed by a calibration file."""
    from tests.dispatch.helpers import dispatch_config
    from tests.waiting import wait_until
    from tickpath.engine.dispatch import calibration
    from tickpath.engine.dispatch.backends import default_registry
    from tickpath.engine.dispatch.chains import ChainJob, Provenance, build_chain
    from tickpath.engine.dispatch.config import ChainConfig
    from tickpath.engine.dispatch.dispatcher import Dispatcher
    from tickpath.engine.dispatch.routing import HealthBook, RoutingTable
    from tickpath.kernels import batch

    cal = workdir / "calibration.json"
    calibration.save(cal, {
        ("chain", backend_name): calibration.Crossover(
            "chain", backend_name, n_star, "measured"),
    })  # fmt: skip
    config = dispatch_config(
        gpu_preference=[backend_name],
        calibration={"mode": "file", "file": str(cal)},
        lanes={"stream": {"max_batch": 1}},  # no fusion: each chain is routed on its own size
    )
    registry = default_registry()
    status = registry.detect()
    assert status[backend_name] is None, status
    crossovers = calibration.load(cal)
    health = HealthBook(config.health)
    routing = RoutingTable(
        config.routes, registry, health, crossovers, config.gpu_preference, "calibrated"
    )
    registry.get("cpu").warmup()
    dispatcher = Dispatcher(config, registry, routing, health)
    dispatcher.start()
    published = {}

    def sink(topic, kind, stream, records):
        published[int(stream)] = records.copy()

    big = build_chain(ChainConfig(underlying=1, strikes=(90.0, 100.0, 110.0),
                                  expiries=(0.25, 1.0), vol=0.3, rate=0.02))  # fmt: skip
    small = build_chain(ChainConfig(underlying=2, strikes=(100.0,), expiries=(0.5,)))
    mids = np.full(big.size, np.nan)
    quote = batch.black_scholes_price(101.0, big.strike[:2], big.expiry[:2], 0.02, 0.0, 0.35,
                                      big.is_call[:2], backend="numpy")  # fmt: skip
    mids[:2] = quote
    dispatcher.submit(ChainJob(big, 101.0, mids, Provenance(), sink), "stream")
    dispatcher.submit(ChainJob(small, 99.0, np.full(2, np.nan), Provenance(), sink), "stream")
    wait_until(lambda: len(published) == 2, 200, "both chains published")
    stats = dispatcher.stats()
    dispatcher.close()
    out = {f"big_{k}": published[1][k] for k in published[1].dtype.names if k != "_pad"}
    out.update({f"small_{k}": published[2][k] for k in ("backend", "price")})
    out["table"] = np.array(routing.describe())
    out["stats"] = np.array(json.dumps(stats))
    return out


def _check(out: dict, code: int) -> None:
    from tickpath.engine.wire import schema as s
    from tickpath.kernels import batch

    assert np.all(out["big_backend"] == code)  # 12 >= N*: the GPU backend
    assert np.all(out["small_backend"] == s.BACKEND_CODES["cpu"])  # 2 < N*: the cpu
    assert np.all(out["big_flags"] & s.RESULT_FLAG_FALLBACK == 0)
    call = out["big_is_call"].astype(bool)
    args = (out["big_underlying"], out["big_strike"], out["big_expiry"], out["big_rate"],
            out["big_dividend"], out["big_sigma"], call)  # fmt: skip
    cpu = batch.black_scholes(*args, backend="cpu")
    ref = batch.black_scholes(*args, backend="numpy")
    for name in ("price", "delta", "gamma", "vega", "theta", "rho"):
        np.testing.assert_allclose(out[f"big_{name}"], getattr(cpu, name), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(out[f"big_{name}"], getattr(ref, name), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out["big_implied_vol"][:2], 0.35, atol=1e-10)
    assert np.all(np.isnan(out["big_implied_vol"][2:]))


def test_cuda_routing_under_the_simulator(tmp_path):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, __file__, str(tmp_path)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    if proc.returncode == 3:
        pytest.skip(f"numba-cuda simulator unavailable: {proc.stdout.strip()}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = np.load(tmp_path / "routed.npz")
    out = {k: data[k] for k in data.files}
    from tickpath.engine.wire import schema as s

    _check(out, s.BACKEND_CODES["cuda"])
    table = "\n".join(out["table"].tolist())
    assert "chain      [chain] -> cuda if n >= 8, else cpu" in table
    assert "cuda N*=8 (file)" in table
    stats = json.loads(str(out["stats"]))
    assert stats["backends"]["cuda"]["jobs"] == 1 and stats["backends"]["cpu"]["jobs"] == 1


def _gpu_reason(backend: str) -> str | None:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "NUMBA_ENABLE_CUDASIM=1: this process runs the simulator, not a GPU"
    from tickpath.kernels import batch

    return {"cuda": batch._cuda_status, "cupy": batch._cupy_status}[backend]()


def test_cupy_routing(tmp_path):
    reason = _gpu_reason("cupy")
    if reason is not None:
        pytest.skip(f"CuPy routing needs a GPU: {reason}")
    from tickpath.engine.wire import schema as s

    _check(_run_chains("cupy", 8, tmp_path), s.BACKEND_CODES["cupy"])


@pytest.mark.gpu
def test_real_gpu_crossover_is_measured_at_start_up():
    reason = _gpu_reason("cuda")
    if reason is not None:
        pytest.skip(f"no real CUDA GPU: {reason}")
    from tickpath.engine.dispatch import calibration
    from tickpath.engine.dispatch.backends import default_registry

    registry = default_registry()
    registry.detect()
    registry.get("cpu").warmup()
    registry.get("cuda").warmup()
    found = calibration.calibrate(registry, ["cuda"], [1024, 16384, 262144], 3,
                                  ["black_scholes", "chain"])  # fmt: skip
    for kernel in ("black_scholes", "chain"):
        c = found[(kernel, "cuda")]
        assert c.source == "measured" and len(c.cpu_s) == 3
        print(kernel, c.describe(), c.cpu_fit, c.gpu_fit)
    c = found[("black_scholes", "cuda")]
    assert c.n_star is not None and c.n_star < 1_000_000  # the GPU wins somewhere


def _main(workdir: str) -> int:
    from tickpath.kernels import batch

    if "cuda" not in batch.available_backends():
        print(batch._cuda_status())
        return 3
    out = _run_chains("cuda", 8, Path(workdir))
    np.savez(Path(workdir) / "routed.npz", **out)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
