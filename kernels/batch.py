"""Batch (millisecond-path) kernels: one public API, four backends.

Backends, chosen per call with ``backend=``:

* ``"numpy"``: the vectorised numpy/scipy reference (`tickpath.kernels.reference`): the meaning.
* ``"cpu"``: numba kernels (`tickpath.kernels.cpu`), parallel above a batch-size threshold,
  compiled with explicit signatures and ``cache=True`` (call `warmup` at start-up).
* ``"cuda"``: numba-CUDA kernels (`tickpath.kernels.cuda`) compiled from the same scalar source
  as the CPU kernels.
* ``"cupy"``: the array-level code of `tickpath.kernels.reference` run on CuPy arrays.

On the two GPU backends the element-wise kernels (`black_scholes`,
`black_scholes_price`, `implied_vol`) take host arrays or GPU arrays (numba device
arrays, CuPy arrays: anything with ``__cuda_array_interface__``). GPU inputs are used in
place, never copied through the host; they must be float64 (is_call: bool),
C-contiguous, and of the broadcast size or size 1. Outputs are host numpy arrays unless
``out=`` gives GPU arrays, which are then written in place.

Importing this module needs neither a GPU nor numba-cuda nor cupy: backends are
detected lazily, and asking for one that is missing raises `BackendUnavailableError`.
Invalid arguments raise ``TypeError`` (dtype, type) or ``ValueError`` (shape, negative
time or volatility, non-positive spot or strike) with a one-line message.

Public names: `available_backends`, `warmup`, `BackendUnavailableError`,
`BlackScholesResult`, `black_scholes`, `black_scholes_price`, `ImpliedVolResult`,
`implied_vol`, `MonteCarloResult`, `monte_carlo_european`, `monte_carlo_asian`,
`VaRResult`, `portfolio_var`, `covariance`, `correlation`, `rolling_covariance`,
`RollingCovariance`.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

BACKENDS = ("numpy", "cpu", "cuda", "cupy")
_GPU = ("cuda", "cupy")  # backends that take GPU arrays in place


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (no GPU, numba-cuda or cupy missing)."""


# --------------------------------------------------------------------------- backends


@functools.cache
def _cuda_status() -> str | None:
    """None when numba-CUDA kernels can run (a GPU, or the simulator), else the reason."""
    try:
        from numba import cuda
    except ImportError as exc:  # pragma: no cover - numba is a hard dependency
        return f"numba.cuda cannot be imported: {exc}"
    try:
        if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
            return None
        if not cuda.is_available():
            return "no CUDA GPU or driver found (numba.cuda.is_available() is False)"
        import importlib.util

        if importlib.util.find_spec("numba_cuda") is None:
            return "numba-cuda is not installed (pip install numba-cuda)"
    except Exception as exc:  # the driver probe can raise CudaSupportError and others
        return f"CUDA is unavailable: {exc}"
    return None


@functools.cache
def _cupy_status() -> str | None:
    """None when cupy can allocate on a GPU, else the reason."""
    try:
        import cupy
    except ImportError:
        return "cupy is not installed (pip install cupy-cuda12x)"
    try:
        if not cupy.cuda.is_available():
            return "cupy is installed but no CUDA GPU is available"
    except Exception as exc:
        return f"cupy cannot reach a GPU: {exc}"
    return None


def available_backends() -> list[str]:
    """The backends that can run in this process, in preference order of the name list."""
    names = ["numpy", "cpu"]
    if _cuda_status() is None:
        names.append("cuda")
    if _cupy_status() is None:
        names.append("cupy")
    return names


def _require(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    status = {"cuda": _cuda_status, "cupy": _cupy_status}.get(backend)
    if status is not None:
        reason = status()
        if reason is not None:
            raise BackendUnavailableError(f"backend {backend!r} is unavailable: {reason}")


# CPU kernel name -> the module that compiles it on import (warmup's ``kernels``)
_CPU_MODULES = {
    "black_scholes": "black_scholes",
    "implied_vol": "implied_vol",
    "covariance": "correlation",
    "monte_carlo": "montecarlo",
    "portfolio_var": "montecarlo",
}


def warmup(backends: tuple[str, ...] = ("cpu",), kernels: Collection[str] | None = None) -> None:
    """Compile (or load from cache) the kernels of the given backends now.

    Call it at start-up so that no request pays for the JIT. The CPU kernels have
    explicit signatures and compile on import; the CUDA kernels compile on first launch,
    so they are launched once on a tiny batch. ``kernels`` (CPU only; names of
    ``_CPU_MODULES``) limits the CPU warm-up to what a configuration uses: on a cold
    numba cache each module costs seconds to tens of seconds of compilation.
    """
    for backend in backends:
        _require(backend)
        if backend == "cpu":
            names = _CPU_MODULES if kernels is None else kernels
            for module in sorted({_CPU_MODULES[name] for name in names}):
                importlib.import_module(f"tickpath.kernels.cpu.{module}")
        elif backend in ("cuda", "cupy"):
            black_scholes(100.0, 100.0, 1.0, 0.0, 0.0, 0.2, True, backend=backend)
            implied_vol(10.0, 100.0, 100.0, 1.0, 0.0, 0.0, True, backend=backend)
            monte_carlo_european(
                100.0, 100.0, 1.0, 0.0, 0.0, 0.2, True, n_paths=64, backend=backend
            )
            monte_carlo_asian(
                100.0, 100.0, 1.0, 0.0, 0.0, 0.2, True, n_steps=2, n_paths=64, backend=backend
            )
            covariance(np.ones((3, 2)), backend=backend)


# --------------------------------------------------------------------------- validation


def _gpu_interface(value: Any) -> dict | None:
    """The CUDA array interface of a GPU array (numba, CuPy, ...), else None.

    numba's simulator arrays (``NUMBA_ENABLE_CUDASIM=1``) have no interface but are device
    arrays to its kernels: they are described from their numpy attributes.
    """
    if isinstance(value, np.ndarray):
        return None
    interface = getattr(value, "__cuda_array_interface__", None)
    if interface is None and hasattr(value, "copy_to_host"):
        interface = {"shape": value.shape, "typestr": value.dtype.str, "strides": value.strides}
    return interface


def _is_device(value: Any) -> bool:
    """A GPU array: numba device arrays, CuPy arrays, anything with the CUDA interface."""
    return _gpu_interface(value) is not None


def _device_layout(name: str, value: Any, dtype: np.dtype) -> tuple[int, ...]:
    """Shape of a device input after checking its dtype and layout (nothing is copied)."""
    interface = _gpu_interface(value)
    assert interface is not None
    got = np.dtype(interface["typestr"])
    shape = tuple(interface["shape"])
    strides = interface.get("strides")
    if got != dtype:
        raise TypeError(f"{name} on the GPU must be {dtype}, got dtype {got}")
    if strides is not None and tuple(strides) != _c_strides(shape, got.itemsize):
        raise ValueError(f"{name} on the GPU must be C-contiguous")
    return shape


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for extent in reversed(shape):
        strides.append(step)
        step *= extent
    return tuple(reversed(strides))


def _real_array(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be real numbers (float or int), got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def _flag_array(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind == "b":
        return array
    if array.dtype.kind in "iu" and np.all((array == 0) | (array == 1)):
        return array.astype(np.bool_)
    raise TypeError(f"{name} must be booleans (True for a call), got dtype {array.dtype}")


def _elementwise(
    func: str, names: tuple[str, ...], values: tuple, flag: Any, device_ok: bool = False
) -> tuple:
    """Validate and lay out broadcast inputs for the element-wise kernels.

    Returns (flat float64 arrays of length n or 1, flat bool array, shape, n): length-1
    arrays broadcast inside the kernels, other shapes are materialised. With `device_ok`
    (the GPU backends), GPU arrays stay on the GPU: they must be float64 (bool for
    is_call), C-contiguous, and of the broadcast size or size 1.
    """
    shapes: list[tuple[int, ...]] = []
    arrays: list[Any] = []
    for name, value in zip((*names, "is_call"), (*values, flag)):
        if device_ok and _is_device(value):
            want = np.dtype(np.bool_ if name == "is_call" else np.float64)
            shapes.append(_device_layout(name, value, want))
            arrays.append(value)
        else:
            array = _flag_array(name, value) if name == "is_call" else _real_array(name, value)
            arrays.append(array)
            shapes.append(array.shape)
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        listed = ", ".join(f"{n}{sh}" for n, sh in zip((*names, "is_call"), shapes))
        raise ValueError(f"{func}: inputs do not broadcast: {listed}") from None
    n = int(np.prod(shape))

    def flat(name: str, a: Any, a_shape: tuple[int, ...]) -> Any:
        size = int(np.prod(a_shape))
        if _is_device(a):
            if size not in (1, n):
                raise ValueError(
                    f"{func}: {name} on the GPU must have the broadcast size {n} or size 1,"
                    f" got shape {a_shape}"
                )
            return a.reshape(size)
        if size == 1:
            return np.ascontiguousarray(a.reshape(1))
        if size == n:
            return np.ascontiguousarray(a.reshape(n))
        return np.ascontiguousarray(np.broadcast_to(a, shape).reshape(n))

    laid = [flat(nm, a, sh) for nm, a, sh in zip((*names, "is_call"), arrays, shapes)]
    return tuple(laid[:-1]), laid[-1], shape, n


def _check_out(name: str, out: Any, shape: tuple, allow_device: bool) -> None:
    if allow_device and _is_device(out):
        got = _device_layout(name, out, np.dtype(np.float64))
        if got != tuple(shape):
            raise ValueError(f"{name} has shape {got}, expected {shape}")
        return
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(out).__name__}")
    if out.dtype != np.float64:
        raise TypeError(f"{name} must be float64, got {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}, expected {shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writeable")


def _raise_invalid(func: str, count: int, what: str) -> None:
    if count:
        raise ValueError(f"{func}: {count} contract(s) have {what}")


_BS_INVALID = "S <= 0, K <= 0, T < 0 or sigma < 0"
_IV_INVALID = "S <= 0, K <= 0 or T < 0"


# --------------------------------------------------------------------------- Black-Scholes


@dataclass(frozen=True, slots=True)
class BlackScholesResult:
    """Black-Scholes-Merton values, one array per quantity, all of the broadcast shape."""

    price: Any
    delta: Any
    gamma: Any
    vega: Any
    theta: Any
    rho: Any

    @classmethod
    def empty(cls, shape: int | tuple[int, ...]) -> BlackScholesResult:
        """Preallocated host arrays to pass as ``out=`` (allocate once, reuse per batch)."""
        return cls(*(np.empty(shape, dtype=np.float64) for _ in range(6)))


_BS_NAMES = ("S", "K", "T", "r", "q", "sigma")


def black_scholes(
    S: Any,
    K: Any,
    T: Any,
    r: Any,
    q: Any,
    sigma: Any,
    is_call: Any,
    *,
    backend: str = "cpu",
    out: BlackScholesResult | None = None,
) -> BlackScholesResult:
    """Black-Scholes-Merton prices and greeks of European options.

    Args:
        S: spot price (> 0). K: strike (> 0). T: time to expiry in years (>= 0).
        r: continuously compounded risk-free rate. q: continuous dividend yield.
        sigma: volatility per sqrt(year) (>= 0). is_call: True for a call, False for a put.
        All broadcast against each other like numpy arrays.
        backend: "numpy", "cpu", "cuda" or "cupy".
        out: a `BlackScholesResult` of preallocated float64 arrays of the broadcast shape.

    Returns:
        `BlackScholesResult` with, per option (V the value, F = S e^{(r-q)T}):
        ``price`` V; ``delta`` dV/dS; ``gamma`` d2V/dS2; ``vega`` dV/dsigma per 1.00 of
        volatility (divide by 100 for per vol point); ``theta`` dV/dt = -dV/dT, the value
        change per year of calendar time with everything else fixed (negative for a long
        at-the-money call without dividends; divide by 365 for per day); ``rho`` dV/dr per
        1.00 of rate, q held fixed. When sigma*sqrt(T) == 0 the values are the limits of
        the discounted intrinsic value max(±(S e^{-qT} - K e^{-rT}), 0); exactly at the
        forward the delta is ±e^{-qT}/2 and theta omits its divergent diffusion term.

    Raises:
        TypeError: non-real inputs, non-boolean is_call, wrong out type or dtype.
        ValueError: shapes that do not broadcast, S <= 0, K <= 0, T < 0 or sigma < 0.
    """
    _require(backend)
    values, flags, shape, n = _elementwise(
        "black_scholes", _BS_NAMES, (S, K, T, r, q, sigma), is_call, backend in _GPU
    )
    if out is not None:
        if not isinstance(out, BlackScholesResult):
            raise TypeError(f"out must be a BlackScholesResult, got {type(out).__name__}")
        for field in BlackScholesResult.__slots__:
            _check_out(f"out.{field}", getattr(out, field), shape, backend in _GPU)
    if backend == "numpy":
        S_, K_, T_, r_, q_, v_ = values
        _raise_invalid(
            "black_scholes", int(np.sum((S_ <= 0) | (K_ <= 0) | (T_ < 0) | (v_ < 0))), _BS_INVALID
        )
        from tickpath.kernels.reference.black_scholes import black_scholes_greeks

        with np.errstate(all="ignore"):
            results = black_scholes_greeks(*(np.broadcast_to(a, (n,)) for a in values), flags)
        if out is None:
            return BlackScholesResult(*(np.asarray(a).reshape(shape) for a in results))
        for field, value in zip(BlackScholesResult.__slots__, results):
            getattr(out, field).reshape(n)[...] = value
        return out
    if backend == "cpu":
        from tickpath.kernels.cpu import black_scholes as cpu_bs

        result = out if out is not None else BlackScholesResult.empty(shape)
        kernel = cpu_bs.greeks_parallel if n >= cpu_bs.PARALLEL_THRESHOLD else cpu_bs.greeks_serial
        outs = [getattr(result, f).reshape(n) for f in BlackScholesResult.__slots__]
        _raise_invalid("black_scholes", kernel(*values, flags, *outs), _BS_INVALID)
        return result
    if backend == "cuda":
        from tickpath.kernels.cuda import black_scholes as cuda_bs

        arrays, count = cuda_bs.greeks(values, flags, n, out)
        _raise_invalid("black_scholes", count, _BS_INVALID)
        if out is not None:
            return out
        return BlackScholesResult(*(a.reshape(shape) for a in arrays))
    from tickpath.kernels.cupy import black_scholes as cupy_bs

    arrays, count = cupy_bs.greeks(values, flags, n)
    _raise_invalid("black_scholes", count, _BS_INVALID)
    if out is not None:
        for field, value in zip(BlackScholesResult.__slots__, arrays):
            dest = getattr(out, field)
            dest[...] = (
                value.reshape(shape)
                if hasattr(dest, "__cuda_array_interface__")
                else value.get().reshape(shape)
            )
        return out
    return BlackScholesResult(*(a.get().reshape(shape) for a in arrays))


def black_scholes_price(
    S: Any,
    K: Any,
    T: Any,
    r: Any,
    q: Any,
    sigma: Any,
    is_call: Any,
    *,
    backend: str = "cpu",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Black-Scholes-Merton prices only (about twice as fast as `black_scholes`).

    Same arguments, conventions and errors as `black_scholes`; ``out`` is one float64
    array of the broadcast shape.
    """
    _require(backend)
    values, flags, shape, n = _elementwise(
        "black_scholes_price", _BS_NAMES, (S, K, T, r, q, sigma), is_call, backend in _GPU
    )
    if out is not None:
        _check_out("out", out, shape, backend in _GPU)
    if backend == "numpy":
        S_, K_, T_, r_, q_, v_ = values
        _raise_invalid(
            "black_scholes_price",
            int(np.sum((S_ <= 0) | (K_ <= 0) | (T_ < 0) | (v_ < 0))),
            _BS_INVALID,
        )
        from tickpath.kernels.reference.black_scholes import black_scholes_price as ref_price

        with np.errstate(all="ignore"):
            price = ref_price(*(np.broadcast_to(a, (n,)) for a in values), flags)
        if out is None:
            return np.asarray(price).reshape(shape)
        out.reshape(n)[...] = price
        return out
    if backend == "cpu":
        from tickpath.kernels.cpu import black_scholes as cpu_bs

        result = out if out is not None else np.empty(shape)
        kernel = cpu_bs.price_parallel if n >= cpu_bs.PARALLEL_THRESHOLD else cpu_bs.price_serial
        _raise_invalid(
            "black_scholes_price", kernel(*values, flags, result.reshape(n)), _BS_INVALID
        )
        return result
    if backend == "cuda":
        from tickpath.kernels.cuda import black_scholes as cuda_bs

        price, count = cuda_bs.price(values, flags, n, out)
        _raise_invalid("black_scholes_price", count, _BS_INVALID)
        return out if out is not None else price.reshape(shape)
    from tickpath.kernels.cupy import black_scholes as cupy_bs

    price, count = cupy_bs.price(values, flags, n)
    _raise_invalid("black_scholes_price", count, _BS_INVALID)
    if out is not None:
        out[...] = (
            price.reshape(shape)
            if hasattr(out, "__cuda_array_interface__")
            else price.get().reshape(shape)
        )
        return out
    return price.get().reshape(shape)


# --------------------------------------------------------------------------- implied vol


class ImpliedVolResult(NamedTuple):
    """Implied volatilities and the number of NaN outputs (prices outside the bounds)."""

    sigma: Any
    n_nan: int


def implied_vol(
    price: Any,
    S: Any,
    K: Any,
    T: Any,
    r: Any,
    q: Any,
    is_call: Any,
    *,
    backend: str = "cpu",
    out: np.ndarray | None = None,
) -> ImpliedVolResult:
    """Black-Scholes-Merton implied volatility to machine precision.

    Args: as `black_scholes`, with the option ``price`` in place of sigma; ``out`` is one
    float64 array of the broadcast shape.

    Returns:
        ``ImpliedVolResult(sigma, n_nan)``. The rules, per option, with the time value
        ``tv = price - max(±(S e^{-qT} - K e^{-rT}), 0)``:

        * ``tv == 0`` gives 0.0 (the price is its lower bound, so the volatility is zero;
          this includes deep out-of-the-money prices that underflowed to 0). In the
          money, ``|tv| <= 4 eps max(S e^{-qT}, K e^{-rT})`` counts as zero: the
          intrinsic value is itself only known to that rounding noise.
        * ``tv < 0``, ``tv >= min(S e^{-qT}, K e^{-rT})`` (at or above the upper bound),
          ``T == 0`` with ``tv > 0``, or any NaN/inf input give NaN, counted in ``n_nan``.
          The batch never raises for a price.
        * Otherwise the volatility whose price is the given one. Accuracy: the absolute
          error is below 1e-10 wherever the inputs determine the volatility, that is
          where their rounding moves sigma by at most 1e-11:
          ``eps * (price + itm * max(S e^{-qT}, K e^{-rT})) / vega <= 1e-11`` (in the
          money the intrinsic value carries the rounding of the discounted spot and
          strike) and tv is a normal double (> 1e-300). Elsewhere (vega underflowing,
          tv lost to rounding) the returned sigma reprices the input to within that
          precision. Both rules are tested in tests/kernels/test_batch_implied_vol.py.

    Raises:
        TypeError / ValueError as `black_scholes` (S <= 0, K <= 0 or T < 0 are errors).
    """
    _require(backend)
    names = ("price", "S", "K", "T", "r", "q")
    values, flags, shape, n = _elementwise(
        "implied_vol", names, (price, S, K, T, r, q), is_call, backend in _GPU
    )
    if out is not None:
        _check_out("out", out, shape, backend in _GPU)
    if backend == "numpy":
        from tickpath.kernels.reference.implied_vol import implied_vol as ref_iv

        sigma, n_nan, n_invalid = ref_iv(*values, flags)
        _raise_invalid("implied_vol", n_invalid, _IV_INVALID)
        if out is None:
            return ImpliedVolResult(np.asarray(sigma).reshape(shape), n_nan)
        out.reshape(n)[...] = sigma
        return ImpliedVolResult(out, n_nan)
    if backend == "cpu":
        from tickpath.kernels.cpu import implied_vol as cpu_iv

        result = out if out is not None else np.empty(shape)
        kernel = (
            cpu_iv.implied_vol_parallel
            if n >= cpu_iv.PARALLEL_THRESHOLD
            else cpu_iv.implied_vol_serial
        )
        n_nan, n_invalid = kernel(*values, flags, result.reshape(n))
        _raise_invalid("implied_vol", n_invalid, _IV_INVALID)
        return ImpliedVolResult(result, int(n_nan))
    if backend == "cuda":
        from tickpath.kernels.cuda import implied_vol as cuda_iv

        sigma, n_nan, n_invalid = cuda_iv.implied_vol(values, flags, n, out)
        _raise_invalid("implied_vol", n_invalid, _IV_INVALID)
        return ImpliedVolResult(out if out is not None else sigma.reshape(shape), n_nan)
    from tickpath.kernels.cupy import implied_vol as cupy_iv

    sigma, n_nan, n_invalid = cupy_iv.implied_vol(values, flags)
    _raise_invalid("implied_vol", n_invalid, _IV_INVALID)
    if out is not None:
        out[...] = (
            sigma.reshape(shape)
            if hasattr(out, "__cuda_array_interface__")
            else sigma.get().reshape(shape)
        )
        return ImpliedVolResult(out, n_nan)
    return ImpliedVolResult(sigma.get().reshape(shape), n_nan)


# --------------------------------------------------------------------------- Monte Carlo


class MonteCarloResult(NamedTuple):
    """A Monte Carlo price, its standard error (same units) and the number of paths."""

    price: float
    std_error: float
    n_paths: int


def _scalar_contract(
    func: str, S: Any, K: Any, T: Any, r: Any, q: Any, sigma: Any, is_call: Any
) -> tuple:
    values = []
    for name, value in zip(_BS_NAMES, (S, K, T, r, q, sigma)):
        array = _real_array(name, value)
        if array.ndim != 0:
            raise ValueError(f"{func}: {name} must be a scalar, got shape {array.shape}")
        values.append(float(array))
    S, K, T, r, q, sigma = values
    if not all(np.isfinite(values)):
        raise ValueError(f"{func}: contract parameters must be finite, got {values}")
    if S <= 0 or K <= 0 or T < 0 or sigma < 0:
        raise ValueError(
            f"{func}: needs S > 0, K > 0, T >= 0, sigma >= 0; "
            f"got S={S}, K={K}, T={T}, sigma={sigma}"
        )
    flag = _flag_array("is_call", is_call)
    if flag.ndim != 0:
        raise ValueError(f"{func}: is_call must be a scalar, got shape {flag.shape}")
    return S, K, T, r, q, sigma, bool(flag)


def _count(func: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{func}: {name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{func}: {name} must be >= {minimum}, got {value}")
    return int(value)


def monte_carlo_european(
    S: float,
    K: float,
    T: float,
    r: float,
    q: float,
    sigma: float,
    is_call: bool,
    *,
    n_paths: int,
    seed: int = 0,
    backend: str = "cpu",
) -> MonteCarloResult:
    """European option price by Monte Carlo under GBM (exact one-step terminal draw).

    S_T = S exp((r - q - sigma^2/2) T + sigma sqrt(T) Z), price = e^{-rT} mean(payoff),
    standard error = e^{-rT} std(payoff) / sqrt(n_paths). Z comes from Philox4x32-10 keyed
    by `seed` (kernels.philox), so every backend draws the same paths for the same seed.
    Scalar contract parameters; raises ValueError/TypeError on invalid ones.
    """
    _require(backend)
    S, K, T, r, q, sigma, is_call = _scalar_contract(
        "monte_carlo_european", S, K, T, r, q, sigma, is_call
    )
    n_paths = _count("monte_carlo_european", "n_paths", n_paths, 2)
    from tickpath.kernels import philox

    k0, k1 = philox.seed_key(seed)
    if backend in ("numpy", "cupy"):
        from tickpath.kernels.reference import montecarlo as ref

        xp = np if backend == "numpy" else _cupy()
        price, se = ref.european(S, K, T, r, q, sigma, is_call, n_paths, seed, xp)
        return MonteCarloResult(price, se, n_paths)
    from tickpath.kernels.reference.montecarlo_scalar import PATHS_PER_LANE, combine_lanes

    n_lanes = -(-n_paths // PATHS_PER_LANE)
    log_drift = (r - q - 0.5 * sigma * sigma) * T
    vol_sqrt_t = sigma * float(np.sqrt(T))
    args = (n_paths, S, K, log_drift, vol_sqrt_t, is_call, np.uint64(k0), np.uint64(k1))
    if backend == "cpu":
        from tickpath.kernels.cpu import montecarlo as cpu_mc

        lanes = (np.empty(n_lanes, np.int64), np.empty(n_lanes), np.empty(n_lanes))
        cpu_mc.european_lanes(*args, *lanes)
    else:
        from tickpath.kernels.cuda import montecarlo as cuda_mc

        lanes = cuda_mc.european_lanes(n_lanes, *args)
    mean, variance, n = combine_lanes(*lanes)
    discount = float(np.exp(-r * T))
    return MonteCarloResult(discount * mean, discount * float(np.sqrt(variance / n)), n)


def monte_carlo_asian(
    S: float,
    K: float,
    T: float,
    r: float,
    q: float,
    sigma: float,
    is_call: bool,
    *,
    n_steps: int,
    n_paths: int,
    seed: int = 0,
    backend: str = "cpu",
) -> MonteCarloResult:
    """Arithmetic-average Asian option price by Monte Carlo under GBM.

    The average is over the n_steps equally spaced fixings T/n_steps, ..., T (the spot
    at 0 excluded); the payoff is max(A - K, 0) for a call, max(K - A, 0) for a put,
    discounted at r. Exact log-normal steps, Philox normals as in `monte_carlo_european`.
    """
    _require(backend)
    S, K, T, r, q, sigma, is_call = _scalar_contract(
        "monte_carlo_asian", S, K, T, r, q, sigma, is_call
    )
    n_paths = _count("monte_carlo_asian", "n_paths", n_paths, 2)
    n_steps = _count("monte_carlo_asian", "n_steps", n_steps, 1)
    from tickpath.kernels import philox

    k0, k1 = philox.seed_key(seed)
    if backend in ("numpy", "cupy"):
        from tickpath.kernels.reference import montecarlo as ref

        xp = np if backend == "numpy" else _cupy()
        price, se = ref.asian(S, K, T, r, q, sigma, is_call, n_steps, n_paths, seed, xp)
        return MonteCarloResult(price, se, n_paths)
    from tickpath.kernels.reference.montecarlo_scalar import PATHS_PER_LANE, combine_lanes

    n_lanes = -(-n_paths // PATHS_PER_LANE)
    dt = T / n_steps
    step_drift = (r - q - 0.5 * sigma * sigma) * dt
    step_vol = sigma * float(np.sqrt(dt))
    args = (n_paths, n_steps, S, K, step_drift, step_vol, is_call, np.uint64(k0), np.uint64(k1))
    if backend == "cpu":
        from tickpath.kernels.cpu import montecarlo as cpu_mc

        lanes = (np.empty(n_lanes, np.int64), np.empty(n_lanes), np.empty(n_lanes))
        cpu_mc.asian_lanes(*args, *lanes)
    else:
        from tickpath.kernels.cuda import montecarlo as cuda_mc

        lanes = cuda_mc.asian_lanes(n_lanes, *args)
    mean, variance, n = combine_lanes(*lanes)
    discount = float(np.exp(-r * T))
    return MonteCarloResult(discount * mean, discount * float(np.sqrt(variance / n)), n)


class VaRResult(NamedTuple):
    """Value at risk and expected shortfall, as positive losses in currency units."""

    var: float
    expected_shortfall: float
    confidence: float
    n_scenarios: int


def _cupy() -> Any:
    import cupy

    return cupy


def portfolio_var(
    spot: Any,
    position: Any,
    vol: Any,
    correlation: Any,
    *,
    horizon: float,
    confidence: float = 0.99,
    drift: Any = 0.0,
    n_scenarios: int,
    seed: int = 0,
    backend: str = "cpu",
    pnl_out: np.ndarray | None = None,
) -> VaRResult:
    """Monte Carlo value at risk and expected shortfall of a portfolio of N assets.

    Each asset follows GBM over `horizon` years: S_i e^{(mu_i - vol_i^2/2) h + vol_i sqrt(h)
    X_i} with X ~ N(0, correlation) (Cholesky), and the portfolio P&L is
    sum_i position_i S_i (e^{...} - 1). With k = ceil((1 - confidence) n_scenarios), VaR is
    the k-th largest loss and ES the mean of the k largest losses (both >= 0 for a loss).

    Args:
        spot, position, vol, drift: length-N arrays (drift may be a scalar; default 0).
        correlation: (N, N) symmetric positive-definite correlation matrix.
        horizon: years (> 0). confidence: in (0, 1). pnl_out: optional float64 array of
        length n_scenarios that receives the scenario P&L (host arrays; numpy/cpu backends).
    The "cuda" backend supports N <= 128.
    """
    _require(backend)
    func = "portfolio_var"
    spot = np.ascontiguousarray(_real_array("spot", spot))
    position = np.ascontiguousarray(_real_array("position", position))
    vol = np.ascontiguousarray(_real_array("vol", vol))
    corr = np.ascontiguousarray(_real_array("correlation", correlation))
    if spot.ndim != 1 or position.shape != spot.shape or vol.shape != spot.shape:
        raise ValueError(
            f"{func}: spot, position and vol must be 1-D of one length, "
            f"got {spot.shape}, {position.shape}, {vol.shape}"
        )
    n_assets = spot.shape[0]
    drift = np.ascontiguousarray(np.broadcast_to(_real_array("drift", drift), (n_assets,)))
    if corr.shape != (n_assets, n_assets):
        raise ValueError(f"{func}: correlation must be ({n_assets}, {n_assets}), got {corr.shape}")
    if np.any(spot <= 0) or np.any(vol < 0):
        raise ValueError(f"{func}: spot must be > 0 and vol >= 0")
    horizon = float(_real_array("horizon", horizon))
    confidence = float(_real_array("confidence", confidence))
    if not horizon > 0:
        raise ValueError(f"{func}: horizon must be > 0, got {horizon}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"{func}: confidence must be in (0, 1), got {confidence}")
    n_scenarios = _count(func, "n_scenarios", n_scenarios, 1)
    if not np.allclose(corr, corr.T) or not np.allclose(np.diag(corr), 1.0):
        raise ValueError(f"{func}: correlation must be symmetric with a unit diagonal")
    try:
        chol = np.ascontiguousarray(np.linalg.cholesky(corr))
    except np.linalg.LinAlgError:
        raise ValueError(f"{func}: correlation is not positive definite") from None
    if pnl_out is not None:
        _check_out("pnl_out", pnl_out, (n_scenarios,), False)
    value = position * spot
    drift_h = (drift - 0.5 * vol * vol) * horizon
    vol_h = vol * float(np.sqrt(horizon))
    from tickpath.kernels import philox
    from tickpath.kernels.reference import montecarlo as ref

    k0, k1 = philox.seed_key(seed)
    if backend == "numpy":
        pnl = ref.portfolio_pnl(value, drift_h, vol_h, chol, n_scenarios, seed)
        if pnl_out is not None:
            pnl_out[...] = pnl
    elif backend == "cpu":
        from tickpath.kernels.cpu import montecarlo as cpu_mc

        pnl = pnl_out if pnl_out is not None else np.empty(n_scenarios)
        cpu_mc.portfolio_pnl(value, drift_h, vol_h, chol, np.uint64(k0), np.uint64(k1), pnl)
    elif backend == "cuda":
        from tickpath.kernels.cuda import montecarlo as cuda_mc
        from tickpath.kernels.reference.montecarlo_scalar import MAX_CUDA_ASSETS

        if n_assets > MAX_CUDA_ASSETS:
            raise ValueError(
                f"{func}: the cuda backend supports at most {MAX_CUDA_ASSETS} assets, "
                f"got {n_assets}"
            )
        pnl = cuda_mc.portfolio_pnl(value, drift_h, vol_h, chol, k0, k1, n_scenarios)
        if pnl_out is not None:
            pnl_out[...] = pnl
    else:
        cp = _cupy()
        pnl_device = ref.portfolio_pnl(
            cp.asarray(value),
            cp.asarray(drift_h),
            cp.asarray(vol_h),
            cp.asarray(chol),
            n_scenarios,
            seed,
            cp,
        )
        var, es = ref.var_es(pnl_device, confidence, cp)
        if pnl_out is not None:
            pnl_out[...] = pnl_device.get()
        return VaRResult(var, es, confidence, n_scenarios)
    var, es = ref.var_es(np.array(pnl, copy=True), confidence)
    return VaRResult(var, es, confidence, n_scenarios)


# --------------------------------------------------------------------------- covariance


def _returns_matrix(func: str, name: str, value: Any, min_rows: int) -> np.ndarray:
    array = _real_array(name, value)
    if array.ndim != 2:
        raise ValueError(
            f"{func}: {name} must be 2-D (rows = time, columns = symbols), got shape {array.shape}"
        )
    if array.shape[0] < min_rows:
        raise ValueError(f"{func}: {name} needs at least {min_rows} rows, got {array.shape[0]}")
    return np.ascontiguousarray(array)


def _ddof(func: str, ddof: Any, n_rows: int) -> int:
    ddof = _count(func, "ddof", ddof, 0)
    if ddof >= n_rows:
        raise ValueError(f"{func}: ddof={ddof} needs more than {ddof} rows, got {n_rows}")
    return ddof


def covariance(
    window: Any, *, ddof: int = 1, backend: str = "cpu", out: np.ndarray | None = None
) -> np.ndarray:
    """(N, N) covariance of a (rows x N) window of returns, like np.cov(window, rowvar=False).

    Row order does not matter, so a ring buffer can be passed whatever its head.
    Two-pass (centre, then multiply): stable for returns with a large common offset.
    """
    _require(backend)
    window = _returns_matrix("covariance", "window", window, 2)
    ddof = _ddof("covariance", ddof, window.shape[0])
    n = window.shape[1]
    if out is not None:
        _check_out("out", out, (n, n), backend == "cuda")
    if backend == "numpy":
        from tickpath.kernels.reference.correlation import covariance as ref_cov

        result = ref_cov(window, ddof)
    elif backend == "cpu":
        from tickpath.kernels.cpu import correlation as cpu_corr

        result = out if out is not None else np.empty((n, n))
        cpu_corr.covariance_window(window, ddof, result)
        return result
    elif backend == "cuda":
        from tickpath.kernels.cuda import correlation as cuda_corr

        result = cuda_corr.covariance(window, ddof, out)
        return result
    else:
        from tickpath.kernels.reference.correlation import covariance as ref_cov

        cp = _cupy()
        result = ref_cov(cp.asarray(window), ddof, cp).get()
    if out is not None:
        out[...] = result
        return out
    return result


def correlation(window: Any, *, backend: str = "cpu", out: np.ndarray | None = None) -> np.ndarray:
    """(N, N) correlation of a (rows x N) window, like np.corrcoef(window, rowvar=False).

    Entries are clipped to [-1, 1]; rows and columns of a zero-variance symbol are NaN
    (its diagonal too).
    """
    from tickpath.kernels.reference.correlation import correlation_from_covariance

    cov = covariance(window, ddof=1, backend=backend, out=out)
    result = correlation_from_covariance(np.asarray(cov))
    if out is not None:
        out[...] = result
        return out
    return result


def rolling_covariance(
    returns: Any, window: int, *, ddof: int = 1, backend: str = "cpu", out: np.ndarray | None = None
) -> np.ndarray:
    """Covariance of every window of `window` consecutive rows of a (T x N) return block.

    Returns ``out[t] = np.cov(returns[t:t + window], rowvar=False, ddof=ddof)`` for
    t = 0 .. T - window, shape (T - window + 1, N, N). Sliding Welford co-moment updates
    with an exact two-pass recompute every `window` steps (kernels.reference.correlation_scalar).
    """
    _require(backend)
    func = "rolling_covariance"
    window = _count(func, "window", window, 2)
    returns = _returns_matrix(func, "returns", returns, window)
    ddof = _ddof(func, ddof, window)
    n = returns.shape[1]
    shape = (returns.shape[0] - window + 1, n, n)
    if out is not None:
        _check_out("out", out, shape, backend == "cuda")
    if backend in ("numpy", "cupy"):
        from tickpath.kernels.reference.correlation import rolling_covariance as ref_rolling

        if backend == "numpy":
            result = ref_rolling(returns, window, ddof)
        else:
            cp = _cupy()
            result = ref_rolling(cp.asarray(returns), window, ddof, cp).get()
        if out is not None:
            out[...] = result
            return out
        return result
    pair_i, pair_j = (np.ascontiguousarray(a, dtype=np.int64) for a in np.triu_indices(n))
    if backend == "cpu":
        from tickpath.kernels.cpu import correlation as cpu_corr

        result = out if out is not None else np.empty(shape)
        cpu_corr.rolling_pairs(returns, window, ddof, pair_i, pair_j, result)
        return result
    from tickpath.kernels.cuda import correlation as cuda_corr

    return cuda_corr.rolling(returns, window, ddof, pair_i, pair_j, out)


class RollingCovariance:
    """Streaming covariance and correlation of N return series over the last `window` rows.

    Push return vectors with `update` (one row or a (k x N) block per call: call once per
    received frame, not once per tick); read with `covariance` / `correlation`. O(N^2)
    per row: remove-then-add Welford co-moment updates on a ring buffer, with an exact
    two-pass recompute every `recompute_every` rows (default: `window`) that bounds the
    rounding drift. Backends "cpu" (numba) and "numpy" (the same algorithm in numpy, slow).

    Example::

        rc = RollingCovariance(n_symbols=3, window=500)
        rc.update(returns_block)          # (k, 3)
        cov = rc.covariance()             # == np.cov(last 500 rows, rowvar=False)
    """

    def __init__(
        self,
        n_symbols: int,
        window: int,
        *,
        ddof: int = 1,
        recompute_every: int | None = None,
        backend: str = "cpu",
    ) -> None:
        func = "RollingCovariance"
        self.n_symbols = _count(func, "n_symbols", n_symbols, 1)
        self.window = _count(func, "window", window, 2)
        self.ddof = _ddof(func, ddof, self.window)
        self.recompute_every = _count(
            func, "recompute_every", self.window if recompute_every is None else recompute_every, 1
        )
        if backend not in ("cpu", "numpy"):
            raise ValueError(f"{func}: backend must be 'cpu' or 'numpy', got {backend!r}")
        self.backend = backend
        self._ring = np.zeros((self.window, self.n_symbols))
        self._state = np.zeros(3, dtype=np.int64)  # head, count, updates since recompute
        self._mean = np.zeros(self.n_symbols)
        self._comoment = np.zeros((self.n_symbols, self.n_symbols))
        self._before = np.empty(self.n_symbols)
        self._after = np.empty(self.n_symbols)

    @property
    def count(self) -> int:
        """Rows currently in the window (at most `window`)."""
        return int(self._state[1])

    def reset(self) -> None:
        """Forget every row."""
        self._state[:] = 0
        self._mean[:] = 0.0
        self._comoment[:] = 0.0

    def update(self, returns: Any) -> None:
        """Push one return vector (N,) or a block of rows (k, N), oldest first."""
        rows = _real_array("returns", returns)
        if rows.ndim == 1:
            rows = rows[None, :]
        if rows.ndim != 2 or rows.shape[1] != self.n_symbols:
            raise ValueError(
                "RollingCovariance.update: expected (k, "
                f"{self.n_symbols}) returns, got {rows.shape}"
            )
        if not np.all(np.isfinite(rows)):
            raise ValueError("RollingCovariance.update: returns must be finite")
        rows = np.ascontiguousarray(rows)
        if self.backend == "cpu":
            from tickpath.kernels.cpu import correlation as cpu_corr

            cpu_corr.stream_update(
                self._ring,
                self._state,
                self._mean,
                self._comoment,
                rows,
                self.recompute_every,
                self._before,
                self._after,
            )
        else:
            for x in rows:
                self._update_numpy(x)

    def _update_numpy(self, x: np.ndarray) -> None:
        head, count, _ = (int(v) for v in self._state)
        upper = np.triu(np.ones((self.n_symbols, self.n_symbols), dtype=bool))
        if count == self.window:
            old = self._ring[head].copy()
            less = self._mean - (old - self._mean) / (count - 1)
            self._comoment -= np.where(upper, np.outer(old - less, old - self._mean), 0.0)
            self._mean = less
            count -= 1
        count += 1
        before = x - self._mean
        self._mean = self._mean + before / count
        self._comoment += np.where(upper, np.outer(before, x - self._mean), 0.0)
        self._ring[head] = x
        self._state[:] = ((head + 1) % self.window, count, self._state[2] + 1)
        if self._state[2] >= self.recompute_every and count == self.window:
            self._mean = self._ring.mean(axis=0)
            centred = self._ring - self._mean
            self._comoment = np.where(upper, centred.T @ centred, 0.0)
            self._state[2] = 0

    def covariance(self, out: np.ndarray | None = None) -> np.ndarray:
        """(N, N) covariance of the rows in the window (NaN until count > ddof)."""
        n = self.n_symbols
        if out is not None:
            _check_out("out", out, (n, n), False)
        result = out if out is not None else np.empty((n, n))
        count = self.count
        if count <= self.ddof:
            result[...] = np.nan
            return result
        upper = np.triu(self._comoment)
        np.add(upper, np.triu(upper, 1).T, out=result)
        result /= count - self.ddof
        return result

    def correlation(self, out: np.ndarray | None = None) -> np.ndarray:
        """(N, N) correlation of the rows in the window (see `correlation`)."""
        from tickpath.kernels.reference.correlation import correlation_from_covariance

        result = correlation_from_covariance(self.covariance())
        if out is not None:
            _check_out("out", out, result.shape, False)
            out[...] = result
            return out
        return result
