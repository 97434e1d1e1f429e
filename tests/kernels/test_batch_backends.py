"""Backend detection: lazy, importable without a GPU, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tickpath.kernels import batch as kb

REPO = Path(__file__).resolve().parents[2]


def test_import_loads_no_gpu_library_and_no_kernel():
    code = (
        "import sys, tickpath.kernels.batch as kb; "
        "names = ('cupy', 'numba.cuda', 'tickpath.kernels.cpu.black_scholes', "
        "'tickpath.kernels.cuda.black_scholes'); "
        "print([m for m in names if m in sys.modules])"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_available_backends_always_has_numpy_and_cpu():
    names = kb.available_backends()
    assert names[:2] == ["numpy", "cpu"]
    assert set(names) <= set(kb.BACKENDS)


@pytest.mark.parametrize("backend", ["cuda", "cupy"])
def test_unavailable_gpu_backend_raises_clear_error(backend):
    if backend in kb.available_backends():
        pytest.skip(f"{backend} is available here")
    with pytest.raises(kb.BackendUnavailableError, match=backend):
        kb.black_scholes(100.0, 100.0, 1.0, 0.0, 0.0, 0.2, True, backend=backend)


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="backend must be one of"):
        kb.implied_vol(10.0, 100.0, 100.0, 1.0, 0.0, 0.0, True, backend="fpga")


def test_warmup_cpu_compiles_everything():
    kb.warmup(("cpu",))
    import tickpath.kernels.cpu.black_scholes as cpu_bs

    # eager signatures: a call with another layout is refused rather than compiled late
    assert cpu_bs.price_parallel.signatures
