"""Launch helpers shared by the CUDA host wrappers."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

THREADS_PER_BLOCK = 256


def blocks_for(n: int, threads: int = THREADS_PER_BLOCK) -> int:
    """Blocks of `threads` threads covering n items (at least one)."""
    return max(1, (n + threads - 1) // threads)


def is_device(array: Any) -> bool:
    """A GPU array: CUDA array interface (CuPy, numba) or a numba (simulator) device array."""
    return hasattr(array, "__cuda_array_interface__") or hasattr(array, "copy_to_host")


def on_device(array: Any) -> Any:
    """A device view of `array`: copied if on the host, used in place if on the device."""
    if hasattr(array, "__cuda_array_interface__"):
        return cuda.as_cuda_array(array)
    if is_device(array):
        return array  # a numba simulator array: already what the kernels take
    return cuda.to_device(np.ascontiguousarray(array))


def device_output(out: Any, n: int) -> Any:
    """A flat length-n float64 device array: `out` itself when it is a device array."""
    if out is not None and is_device(out):
        return on_device(out).reshape(n)
    return cuda.device_array(n, dtype=np.float64)


def deliver(device: Any, out: Any, n: int) -> Any:
    """Copy a device result to `out` (host) or to a new host array; device outs stay."""
    if out is None:
        return device.copy_to_host()
    if is_device(out):
        return out
    device.copy_to_host(out.reshape(n))
    return out
