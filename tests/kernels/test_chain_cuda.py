"""The CUDA chain kernel against the CPU one: same records, field by field.

Both run the scalar source `tickpath.kernels.reference.chain_scalar`; the CUDA one in its
branch-free Black-Scholes layout, which gives the same bits in plain Python. Under the
simulator (a subprocess: the variable must be set before numba is imported) the values
agree to rounding (the CPU uses LLVM's libm, the simulator Python's); on a real GPU the
same comparison runs in-process (``gpu`` mark) with libdevice.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
PROVENANCE = (11, 22, 33, 44, 5)


def compare(seed: int = 3, n: int = 150) -> int:
    """Reprice random chains on both and compare; returns the contracts compared."""
    from tickpath.engine.dispatch.chains import ChainSpec
    from tickpath.engine.wire import schema as s
    from tickpath.kernels import batch
    from tickpath.kernels.cpu import chain as cpu_chain
    from tickpath.kernels.cuda import chain as cuda_chain

    rng = np.random.default_rng(seed)
    compared = 0
    for use_implied in (False, True):
        K, T = rng.uniform(60, 140, n), rng.uniform(0.0, 2.0, n)
        call, vol = rng.random(n) < 0.5, rng.uniform(0.0, 0.8, n)
        spec = ChainSpec(7, K, T, call, vol, np.arange(n, dtype=np.uint32), 0.02, 0.01,
                         use_implied)  # fmt: skip
        mid = np.full(n, np.nan)
        quoted = rng.random(n) < 0.6
        fair = np.asarray(batch.black_scholes_price(100.0, K, T, 0.02, 0.01, vol * 1.1, call))
        mid[quoted] = fair[quoted]
        mid[::17] = -1.0  # below the bounds: NaN implied vol
        mid[5] = np.inf
        want = np.empty(n, s.RESULT_CHAIN)
        got = np.empty(n, s.RESULT_CHAIN)
        counts_cpu = cpu_chain.reprice(want, spec.template, mid, 100.0, use_implied, PROVENANCE, 2)
        counts_gpu = cuda_chain.reprice(got, spec.template, mid, 100.0, use_implied, PROVENANCE, 2)
        assert counts_cpu == counts_gpu
        for field in s.RESULT_CHAIN.names:
            if want[field].dtype.kind == "f":
                np.testing.assert_allclose(got[field], want[field], rtol=1e-12, atol=1e-14,
                                           err_msg=field)  # fmt: skip
            else:
                np.testing.assert_array_equal(got[field], want[field], err_msg=field)
        compared += n
    return compared


def test_cuda_chain_kernel_matches_cpu_under_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, __file__], env=env, cwd=REPO, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    if proc.returncode == 3:
        pytest.skip(f"numba-cuda simulator unavailable: {proc.stdout.strip()}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "compared 300"


@pytest.mark.gpu
def test_real_gpu_chain_kernel_matches_cpu():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("NUMBA_ENABLE_CUDASIM=1: this process runs the simulator, not a GPU")
    from tickpath.kernels import batch

    reason = batch._cuda_status()
    if reason is not None:
        pytest.skip(f"no real CUDA GPU: {reason}")
    assert compare(seed=4, n=5000) == 10_000


if __name__ == "__main__":
    from tickpath.kernels import batch as _batch

    if "cuda" not in _batch.available_backends():
        print(_batch._cuda_status())
        sys.exit(3)
    print(f"compared {compare()}")
