"""GPU inputs to the element-wise batch kernels are laid out without a host copy.

The layout logic runs on every machine with a stand-in GPU array (an object with only
``__cuda_array_interface__``, ``reshape`` and an ``__array__`` that fails): the GPU
backends must pass it through untouched, and the checks must reject what the kernels
cannot index. The real-GPU tests (tests/kernels/test_batch_cuda.py, bench/gpu_check.py)
run the same calls on numba and CuPy device arrays.
"""

from __future__ import annotations

import numpy as np
import pytest

from tickpath.kernels import batch as kb


class StandInGpuArray:
    """A GPU array as the batch API sees it: an interface, no host memory."""

    def __init__(self, shape: tuple[int, ...], typestr: str = "<f8", strides=None) -> None:
        self.shape = shape
        self.__cuda_array_interface__ = {
            "shape": shape,
            "typestr": typestr,
            "strides": strides,
            "data": (0, False),
            "version": 3,
        }
        self.reshaped_to: int | None = None

    def reshape(self, size: int) -> StandInGpuArray:
        flat = StandInGpuArray((size,), self.__cuda_array_interface__["typestr"])
        flat.reshaped_to = size
        return flat

    def __array__(self, *args, **kwargs):
        raise AssertionError("a GPU input was copied to the host")


NAMES = ("S", "K", "T", "r", "q", "sigma")


def test_gpu_inputs_stay_on_the_gpu_and_broadcast_with_host_scalars():
    n = 64
    values = (StandInGpuArray((n,)), StandInGpuArray((n,)), 0.5, 0.01, 0.0, StandInGpuArray((1,)))
    flags = StandInGpuArray((n,), "|b1")
    laid, flag, shape, size = kb._elementwise("black_scholes", NAMES, values, flags, True)
    assert shape == (n,) and size == n
    assert isinstance(laid[0], StandInGpuArray) and laid[0].reshaped_to == n
    assert isinstance(laid[5], StandInGpuArray) and laid[5].reshaped_to == 1
    assert isinstance(flag, StandInGpuArray) and flag.reshaped_to == n
    assert isinstance(laid[2], np.ndarray) and laid[2].shape == (1,)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (StandInGpuArray((8,), "<f4"), "S on the GPU must be float64, got dtype float32"),
        (StandInGpuArray((8,), "<i8"), "S on the GPU must be float64, got dtype int64"),
        (StandInGpuArray((4, 2), "<f8", strides=(8, 32)), "S on the GPU must be C-contiguous"),
    ],
)
def test_unusable_gpu_inputs_get_one_line_errors(value, message):
    values = (value, np.ones(value.shape), 1.0, 0.0, 0.0, 0.2)
    with pytest.raises((TypeError, ValueError), match=message) as info:
        kb._elementwise("black_scholes", NAMES, values, True, True)
    assert "\n" not in str(info.value)


def test_gpu_inputs_are_not_broadcast_on_the_gpu():
    """A GPU input of neither size 1 nor the broadcast size would need a device copy."""
    values = (StandInGpuArray((2, 8)), np.ones((3, 2, 8)), 1.0, 0.0, 0.0, 0.2)
    with pytest.raises(ValueError, match=r"S on the GPU must have the broadcast size 48 or size 1"):
        kb._elementwise("black_scholes", NAMES, values, True, True)


def test_gpu_flags_must_be_bool():
    with pytest.raises(TypeError, match="is_call on the GPU must be bool, got dtype int8"):
        kb._elementwise(
            "black_scholes",
            NAMES,
            (1.0, 1.0, 1.0, 0.0, 0.0, 0.2),
            StandInGpuArray((1,), "|i1"),
            True,
        )


def test_host_backends_still_copy_gpu_like_inputs_through_numpy():
    """numpy/cpu backends read a GPU array through the host (np.asarray), as documented."""
    values = (np.full(3, 100.0), 100.0, 1.0, 0.0, 0.0, 0.2)
    laid, flag, shape, n = kb._elementwise("black_scholes", NAMES, values, True, False)
    assert n == 3 and all(isinstance(a, np.ndarray) for a in laid)
    with pytest.raises(AssertionError, match="copied to the host"):
        kb._elementwise("black_scholes", NAMES, (StandInGpuArray((3,)), *values[1:]), True, False)


def test_gpu_out_arrays_are_checked_without_a_copy():
    kb._check_out("out", StandInGpuArray((5,)), (5,), True)
    with pytest.raises(ValueError, match=r"out has shape \(4,\), expected \(5,\)"):
        kb._check_out("out", StandInGpuArray((4,)), (5,), True)
    with pytest.raises(TypeError, match="out on the GPU must be float64, got dtype float32"):
        kb._check_out("out", StandInGpuArray((5,), "<f4"), (5,), True)
    with pytest.raises(TypeError, match="out must be a numpy array"):
        kb._check_out("out", StandInGpuArray((5,)), (5,), False)
