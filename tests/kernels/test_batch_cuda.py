"""CUDA and CuPy backends against the CPU kernels.

* The CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) must be set before numba is imported,
  so `test_cuda_simulator_matches_cpu` runs this file as a script in a subprocess with
  the variable set; the script computes every kernel on "cpu" and "cuda" (small grids:
  the simulator costs ~0.1 ms per thread) and saves the arrays, which the test compares.
* ``gpu``-marked tests run the same comparison in-process on a real GPU, and skip with
  the reason elsewhere.
* `test_cuda_kernels_compile_to_ptx` compiles every CUDA kernel for sm_90 without a GPU
  with NVVM and NVRTC: the pip wheels of the dev extra (so in CI), or a CUDA toolkit
  named by TICKPATH_CUDA_HOME or CUDA_HOME; it skips otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FIELDS = ("price", "delta", "gamma", "vega", "theta", "rho")


def compute(backend: str) -> dict[str, np.ndarray]:
    """Every batch kernel on small inputs with `backend`, as named arrays."""
    from tickpath.kernels import batch as kb

    rng = np.random.default_rng(12)
    n = 96
    S = rng.uniform(50, 150, n)
    K = rng.uniform(50, 150, n)
    T = np.concatenate([[0.0], rng.uniform(0.01, 3.0, n - 1)])
    sigma = np.concatenate([[0.0], rng.uniform(0.02, 1.5, n - 1)])
    call = rng.random(n) < 0.5
    out: dict[str, np.ndarray] = {}
    res = kb.black_scholes(S, K, T, 0.02, 0.01, sigma, call, backend=backend)
    for field in FIELDS:
        out[f"bs_{field}"] = np.asarray(getattr(res, field))
    out["bs_price_only"] = kb.black_scholes_price(S, K, T, 0.02, 0.01, sigma, call, backend=backend)
    prices = out["bs_price"].copy()
    prices[::9] = -1.0  # out of bounds: NaN, counted
    iv = kb.implied_vol(prices, S, K, T, 0.02, 0.01, call, backend=backend)
    out["iv_sigma"] = np.asarray(iv.sigma)
    out["iv_n_nan"] = np.array([iv.n_nan])
    # Edges where the solver meets log(0) and log1p(-1): time values so small that beta
    # underflows to 0, and prices a rounding below the upper bound. A GPU gives IEEE -inf
    # there; the code spells it out, since the simulator's Python math would raise.
    k_edge, t_edge = np.linspace(101.0, 190.0, 24), np.linspace(0.05, 2.0, 24)
    upper = np.nextafter(100.0 * np.exp(-0.01 * t_edge[12:]), 0.0)
    edge_prices = np.concatenate([np.full(12, 1e-322), upper])
    edge = kb.implied_vol(edge_prices, 100.0, k_edge, t_edge, 0.02, 0.01, True, backend=backend)
    out["iv_edges"] = np.asarray(edge.sigma)
    out["iv_edges_n_nan"] = np.array([edge.n_nan])
    eu = kb.monte_carlo_european(
        100.0, 95.0, 1.0, 0.03, 0.0, 0.3, True, n_paths=2_000, seed=77, backend=backend
    )
    out["mc_european"] = np.array([eu.price, eu.std_error])
    asian = kb.monte_carlo_asian(
        100.0, 100.0, 0.5, 0.03, 0.0, 0.3, False, n_steps=6, n_paths=300, seed=78, backend=backend
    )
    out["mc_asian"] = np.array([asian.price, asian.std_error])
    corr = np.array([[1.0, 0.3, 0.1], [0.3, 1.0, -0.4], [0.1, -0.4, 1.0]])
    pnl = np.empty(400)
    var = kb.portfolio_var(
        [100.0, 40.0, 10.0],
        [5.0, -10.0, 20.0],
        [0.2, 0.4, 0.3],
        corr,
        horizon=0.02,
        n_scenarios=400,
        seed=79,
        backend=backend,
        pnl_out=pnl,
    )
    out["var"] = np.array([var.var, var.expected_shortfall])
    out["var_pnl"] = pnl
    returns = rng.normal(size=(40, 5)) * 0.01
    out["cov"] = np.asarray(kb.covariance(returns, backend=backend))
    out["corr"] = np.asarray(kb.correlation(returns, backend=backend))
    out["rolling"] = np.asarray(kb.rolling_covariance(returns, 12, backend=backend))
    return out


def assert_match(cpu: dict, gpu: dict, exact_random: bool) -> None:
    for key, want in cpu.items():
        got = gpu[key]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=key)
        if key.startswith(("mc_", "var")) and exact_random:
            # same Philox stream, same lane order, same libm under the simulator
            np.testing.assert_array_equal(got, want, err_msg=key)
        elif key == "iv_sigma":
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=key)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14, err_msg=key)


def test_cuda_simulator_matches_cpu(tmp_path):
    target = tmp_path / "cuda_sim.npz"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, __file__, str(target)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    if proc.returncode == 3:
        pytest.skip(f"numba-cuda simulator unavailable: {proc.stdout.strip()}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = np.load(target)
    cpu = {k[4:]: data[k] for k in data.files if k.startswith("cpu_")}
    sim = {k[5:]: data[k] for k in data.files if k.startswith("cuda_")}
    assert set(cpu) == set(sim) and len(cpu) > 10
    assert int(cpu["iv_n_nan"][0]) == len(range(0, 96, 9))
    assert_match(cpu, sim, exact_random=True)


def _real_gpu() -> str | None:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "NUMBA_ENABLE_CUDASIM=1: this process runs the simulator, not a GPU"
    from tickpath.kernels import batch as kb

    return kb._cuda_status()


@pytest.mark.gpu
def test_real_gpu_cuda_backend_matches_cpu():
    reason = _real_gpu()
    if reason is not None:
        pytest.skip(f"no real CUDA GPU: {reason}")
    # libdevice and glibc differ by an ulp in exp/log/erfc: agreement to rounding
    assert_match(compute("cpu"), compute("cuda"), exact_random=False)


@pytest.mark.gpu
def test_real_gpu_cupy_backend_matches_cpu():
    from tickpath.kernels import batch as kb

    reason = kb._cupy_status()
    if reason is not None:
        pytest.skip(f"no CuPy GPU: {reason}")
    assert_match(compute("cpu"), compute("cupy"), exact_random=False)


def _device_resident(backend: str, to_device, n: int = 4096) -> dict[str, np.ndarray]:
    """Black-Scholes and implied vol with GPU inputs and GPU outs, read back at the end."""
    from tickpath.kernels import batch as kb

    rng = np.random.default_rng(31)
    S, K = rng.uniform(50, 150, n), rng.uniform(50, 150, n)
    T, sigma = rng.uniform(0.01, 3.0, n), rng.uniform(0.02, 1.5, n)
    call = rng.random(n) < 0.5
    dev = [to_device(a) for a in (S, K, T, sigma, call)]
    out = kb.BlackScholesResult(*(to_device(np.full(n, np.nan)) for _ in FIELDS))
    got = kb.black_scholes(dev[0], dev[1], dev[2], 0.02, 0.01, dev[3], dev[4],
                           backend=backend, out=out)  # fmt: skip
    assert got is out
    host = {f"bs_{f}": _to_host(getattr(out, f)) for f in FIELDS}
    iv_out = to_device(np.full(n, np.nan))
    iv = kb.implied_vol(out.price, dev[0], dev[1], dev[2], 0.02, 0.01, dev[4],
                        backend=backend, out=iv_out)  # fmt: skip
    host["iv_sigma"] = _to_host(iv.sigma)
    want = kb.black_scholes(S, K, T, 0.02, 0.01, sigma, call, backend="cpu")
    for f in FIELDS:
        np.testing.assert_allclose(host[f"bs_{f}"], getattr(want, f), rtol=1e-12, atol=1e-14)
    iv_cpu = kb.implied_vol(host["bs_price"], S, K, T, 0.02, 0.01, call, backend="cpu")
    np.testing.assert_allclose(host["iv_sigma"], iv_cpu.sigma, rtol=0, atol=1e-12)
    return host


def _to_host(array):
    return array.get() if hasattr(array, "get") else array.copy_to_host()


@pytest.mark.gpu
def test_real_gpu_device_resident_inputs_and_outputs():
    """numba device arrays (cuda) and CuPy arrays (cupy) in and out, no host round trip."""
    reason = _real_gpu()
    if reason is not None:
        pytest.skip(f"no real CUDA GPU: {reason}")
    from numba import cuda

    _device_resident("cuda", cuda.to_device)
    from tickpath.kernels import batch as kb

    if kb._cupy_status() is None:
        import cupy

        _device_resident("cupy", cupy.asarray)
        _device_resident("cuda", cupy.asarray)  # CuPy arrays into the numba kernels


def _ptx_toolchain() -> tuple[dict[str, str], str | None]:
    """Environment for NVVM + NVRTC: a CUDA toolkit, or the pip wheels (dev extra)."""
    for var in ("TICKPATH_CUDA_HOME", "CUDA_HOME"):
        home = os.environ.get(var)
        if home and any(Path(home).glob("nvvm/lib64/libnvvm.so*")):
            return {"CUDA_HOME": home}, None
    import importlib.util

    missing = [
        wheel
        for wheel, module in (
            ("nvidia-cuda-nvcc-cu12", "nvidia.cuda_nvcc"),
            ("nvidia-cuda-nvrtc-cu12", "nvidia.cuda_nvrtc"),
        )
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        return {}, (
            f"NVVM/NVRTC not found: install {' '.join(missing)} (the dev extra does) or set"
            " TICKPATH_CUDA_HOME to a CUDA toolkit"
        )
    return {}, None


PTX_SCRIPT = r"""
import types
import numba.cuda.dispatcher as dispatcher
dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
from numba import cuda, types as nt
import tickpath.kernels.cuda.black_scholes as bs, tickpath.kernels.cuda.implied_vol as iv
import tickpath.kernels.cuda.montecarlo as mc, tickpath.kernels.cuda.correlation as co
import tickpath.kernels.cuda.chain as ch
from tickpath.engine.wire import schema
from numba import from_dtype
rec = nt.Array(from_dtype(schema.RESULT_CHAIN), 1, "C")
f8, b1, i8 = nt.float64[::1], nt.boolean[::1], nt.int64[::1]
f2, f3 = nt.float64[:, ::1], nt.float64[:, :, ::1]
lanes = (i8, f8, f8)
s = (nt.float64, nt.boolean, nt.uint64, nt.uint64)
kernels = [
    (bs.price_kernel, (f8,) * 6 + (b1, f8, i8)),
    (bs.greeks_kernel, (f8,) * 6 + (b1,) + (f8,) * 6 + (i8,)),
    (iv.implied_vol_kernel, (f8,) * 6 + (b1, f8, i8)),
    (mc.european_kernel, (nt.int64,) + (nt.float64,) * 4 + s[1:] + lanes),
    (mc.asian_kernel, (nt.int64, nt.int64) + (nt.float64,) * 4 + s[1:] + lanes),
    (mc.pnl_kernel, (f8, f8, f8, f2, nt.uint64, nt.uint64, f8)),
    (co.covariance_kernel, (f2, nt.int64, i8, i8, f2)),
    (co.rolling_kernel, (f2, nt.int64, nt.int64, i8, i8, f3)),
    (ch.reprice_kernel, (rec, rec, f8, nt.float64, nt.boolean) + (nt.int64,) * 6 + (i8,)),
]
for kernel, signature in kernels:
    ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))
    assert ".entry" in ptx
print("compiled", len(kernels))
"""


def test_cuda_kernels_compile_to_ptx():
    toolchain, reason = _ptx_toolchain()
    if reason is not None:
        pytest.skip(reason)
    env = dict(os.environ, **toolchain, PYTHONPATH=str(REPO))
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    proc = subprocess.run(
        [sys.executable, "-c", PTX_SCRIPT],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "compiled 9" in proc.stdout


def _main(target: str) -> int:
    from tickpath.kernels import batch as kb

    if "cuda" not in kb.available_backends():
        print(kb._cuda_status())
        return 3
    results = {f"cpu_{k}": v for k, v in compute("cpu").items()}
    results.update({f"cuda_{k}": v for k, v in compute("cuda").items()})
    from numba import cuda

    _device_resident("cuda", cuda.to_device, n=128)  # simulator arrays in and out
    np.savez(target, **results)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
