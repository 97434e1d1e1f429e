"""The backend registry: where work can run, what each place can run, and whether it can now.

A `Backend` has a ``name`` (the registry key and the name used in routes), a ``kind``
(``"cpu"``, ``"gpu"``, ``"fpga"``, ``"reference"``), ``capabilities`` (the kernels it
runs: `BATCH_KERNELS` for the milli path, `TICK_FEATURES` for the micro path) and a
``probe()`` that says why it cannot run here, or ``None`` when it can.

`default_registry()` holds ``numpy`` (the reference: never chosen by "auto"), ``cpu``
(numba: always usable, the fallback of every route), ``cuda`` (numba-CUDA) and ``cupy``,
and an ``fpga`` entry for the micro path's tick features that is usable only once an
overlay is attached (`FpgaTickBackend`, which the engine's FPGA extension provides).
Another backend is added with `BackendRegistry.register`: it must implement the batch
methods of its capabilities with the signatures of `KernelBackend`.

`REPRICE_CHAIN` is a capability beyond the batch kernels: a backend that lists it reprices
a whole option chain in one call that writes its result records (`Backend.reprice_chain`,
used by `tickpath.engine.dispatch.chains`); the CPU and numba-CUDA have it. CuPy is given chains as
implied-vol and Black-Scholes calls.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import Any

import numpy as np

from tickpath.engine.wire import schema as s

BATCH_KERNELS = frozenset({"black_scholes", "implied_vol", "covariance", "portfolio_var"})
TICK_FEATURES = "tick_features"
REPRICE_CHAIN = "reprice_chain"
# A whole option-chain repricing, routed and calibrated as one job: a backend runs it with
# its REPRICE_CHAIN kernel, or as implied_vol then black_scholes.
CHAIN_JOB = "chain"
_CHAIN_KERNELS = frozenset({"implied_vol", "black_scholes"})
CPU = "cpu"


class Backend:
    """A place where kernels run. Subclasses implement the methods of their capabilities.

    The batch methods take host numpy arrays and return host numpy arrays; they raise on
    invalid inputs like `tickpath.kernels.batch` (callers validate first, so a raise from a
    backend other than the CPU counts as a backend failure).
    """

    name: str = "backend"
    kind: str = "cpu"
    capabilities: frozenset[str] = frozenset()

    def probe(self) -> str | None:
        """Why this backend cannot run in this process, or None when it can."""
        return None

    def supports(self, kernel: str, shape: dict[str, int] | None = None) -> bool:
        """Whether this backend runs `kernel` for a job of this `shape` (sizes by name).

        A chain job (`CHAIN_JOB`) needs `REPRICE_CHAIN`, or implied_vol and black_scholes.
        """
        if kernel == CHAIN_JOB:
            return REPRICE_CHAIN in self.capabilities or _CHAIN_KERNELS <= self.capabilities
        return kernel in self.capabilities

    def warmup(self, kernels: Collection[str] | None = None) -> None:
        """Compile or load what the first job would otherwise wait for.

        ``kernels``: only these batch kernels (and ``"chain"``), None: all.
        """

    def black_scholes(
        self, S: Any, K: Any, T: Any, r: Any, q: Any, sigma: Any, is_call: Any
    ) -> Any:
        """Prices and greeks, as `tickpath.kernels.batch.black_scholes` (a `BlackScholesResult`)."""
        raise NotImplementedError(f"{self.name} does not run black_scholes")

    def black_scholes_price(
        self, S: Any, K: Any, T: Any, r: Any, q: Any, sigma: Any, is_call: Any
    ) -> np.ndarray:
        """Prices only; by default the price field of `black_scholes`."""
        return np.asarray(self.black_scholes(S, K, T, r, q, sigma, is_call).price)

    def implied_vol(
        self, price: Any, S: Any, K: Any, T: Any, r: Any, q: Any, is_call: Any
    ) -> np.ndarray:
        """Implied volatilities (NaN where the price is outside its bounds)."""
        raise NotImplementedError(f"{self.name} does not run implied_vol")

    def covariance(self, window: np.ndarray) -> np.ndarray:
        """(N, N) sample covariance of a (rows x N) window."""
        raise NotImplementedError(f"{self.name} does not run covariance")

    def reprice_chain(
        self,
        out: np.ndarray,
        template: np.ndarray,
        option_mid: np.ndarray,
        S: float,
        use_implied: bool,
        provenance: tuple[int, int, int, int, int],
    ) -> tuple[int, int]:
        """Fill one chain's ``RESULT_CHAIN`` records in `out` (`REPRICE_CHAIN`).

        Arguments and result as `tickpath.kernels.cpu.chain.reprice` (less the backend code, which
        the backend writes itself): ``(n_non_finite, n_bad_implied)``.
        """
        raise NotImplementedError(f"{self.name} does not run reprice_chain")

    def portfolio_var(self, **kwargs: Any) -> Any:
        """Monte Carlo VaR/ES, keyword arguments of `tickpath.kernels.batch.portfolio_var`."""
        raise NotImplementedError(f"{self.name} does not run portfolio_var")

    def describe(self) -> str:
        """One line for the routing table."""
        return f"{self.name} ({self.kind})"


class KernelBackend(Backend):
    """One of `kernels.batch`'s backends: ``"numpy"``, ``"cpu"``, ``"cuda"`` or ``"cupy"``."""

    _KINDS = {"numpy": "reference", "cpu": "cpu", "cuda": "gpu", "cupy": "gpu"}

    def __init__(self, name: str) -> None:
        if name not in self._KINDS:
            raise ValueError(f"no kernels.batch backend named {name!r}")
        self.name = name
        self.kind = self._KINDS[name]
        # the one-call chain kernel exists for the CPU and for numba-CUDA
        fast_chain = name in (CPU, "cuda")
        self.capabilities = (BATCH_KERNELS | {REPRICE_CHAIN}) if fast_chain else BATCH_KERNELS

    def probe(self) -> str | None:
        """None where `tickpath.kernels.batch.available_backends()` lists it, else the reason."""
        from tickpath.kernels import batch

        if self.name in batch.available_backends():
            return None
        status = {"cuda": batch._cuda_status, "cupy": batch._cupy_status}.get(self.name)
        return status() if status is not None else "not available"

    def supports(self, kernel: str, shape: dict[str, int] | None = None) -> bool:
        """The cuda VaR kernel holds at most 128 assets; everything else runs everywhere."""
        if kernel == CHAIN_JOB or kernel not in self.capabilities:
            return super().supports(kernel, shape)
        if self.name == "cuda" and kernel == "portfolio_var" and shape:
            from tickpath.kernels.reference.montecarlo_scalar import MAX_CUDA_ASSETS

            return shape.get("assets", 0) <= MAX_CUDA_ASSETS
        return True

    def warmup(self, kernels: Collection[str] | None = None) -> None:
        """`kernels.batch.warmup` for this backend (the CPU also starts its thread pool).

        On the CPU, ``kernels`` limits it to those batch kernels (``"chain"``: the chain
        job); None warms everything.
        """
        from tickpath.kernels import batch

        if self.name == "numpy":
            return
        if self.name != "cpu":
            kernels = None
        # black_scholes always: the CPU's warm-up call below starts numba's thread pool with it
        batch_kernels = None
        if kernels is not None:
            batch_kernels = (set(kernels) - {CHAIN_JOB}) | {"black_scholes"}
        batch.warmup((self.name,), batch_kernels)
        if self.name == "cpu":
            from tickpath.kernels.cpu import black_scholes as cpu_bs

            if kernels is None or CHAIN_JOB in kernels:
                from tickpath.kernels.cpu import chain  # noqa: F401  (compiled or loaded on import)

            n = cpu_bs.PARALLEL_THRESHOLD  # one parallel call starts numba's threading layer
            batch.black_scholes_price(
                np.full(n, 100.0), 100.0, 1.0, 0.0, 0.0, 0.2, True, backend="cpu"
            )
        elif self.name == "cuda":
            from tickpath.kernels.cuda import chain

            chain.warmup()  # CUDA kernels compile on their first launch

    def black_scholes(
        self, S: Any, K: Any, T: Any, r: Any, q: Any, sigma: Any, is_call: Any
    ) -> Any:
        """`tickpath.kernels.batch.black_scholes` on this backend."""
        from tickpath.kernels import batch

        return batch.black_scholes(S, K, T, r, q, sigma, is_call, backend=self.name)

    def black_scholes_price(
        self, S: Any, K: Any, T: Any, r: Any, q: Any, sigma: Any, is_call: Any
    ) -> np.ndarray:
        """`tickpath.kernels.batch.black_scholes_price` on this backend."""
        from tickpath.kernels import batch

        return np.asarray(
            batch.black_scholes_price(S, K, T, r, q, sigma, is_call, backend=self.name)
        )

    def implied_vol(
        self, price: Any, S: Any, K: Any, T: Any, r: Any, q: Any, is_call: Any
    ) -> np.ndarray:
        """`tickpath.kernels.batch.implied_vol(...).sigma` on this backend."""
        from tickpath.kernels import batch

        return np.asarray(batch.implied_vol(price, S, K, T, r, q, is_call, backend=self.name).sigma)

    def reprice_chain(
        self,
        out: np.ndarray,
        template: np.ndarray,
        option_mid: np.ndarray,
        S: float,
        use_implied: bool,
        provenance: tuple[int, int, int, int, int],
    ) -> tuple[int, int]:
        """`kernels.cpu.chain.reprice` or `kernels.cuda.chain.reprice` (`REPRICE_CHAIN`)."""
        if REPRICE_CHAIN not in self.capabilities:
            return super().reprice_chain(out, template, option_mid, S, use_implied, provenance)
        if self.name == "cuda":
            from tickpath.kernels.cuda import chain
        else:
            from tickpath.kernels.cpu import chain

        code = s.BACKEND_CODES[self.name]
        return chain.reprice(out, template, option_mid, S, use_implied, provenance, code)

    def covariance(self, window: np.ndarray) -> np.ndarray:
        """`tickpath.kernels.batch.covariance` on this backend."""
        from tickpath.kernels import batch

        return np.asarray(batch.covariance(window, backend=self.name))

    def portfolio_var(self, **kwargs: Any) -> Any:
        """`tickpath.kernels.batch.portfolio_var` on this backend."""
        from tickpath.kernels import batch

        return batch.portfolio_var(backend=self.name, **kwargs)

    def describe(self) -> str:
        """Name and what runs it."""
        what = {
            "numpy": "numpy reference",
            "cpu": "numba",
            "cuda": "numba-CUDA",
            "cupy": "CuPy",
        }[self.name]
        return f"{self.name} ({what})"


class FpgaTickBackend(Backend):
    """The micro path's tick features on the FPGA overlay (or its golden-model emulation).

    It runs inline on the ingest thread through the engine's ``fpga`` extension, never
    through a queue; the registry holds it so the routing table can say where ticks go.
    """

    kind = "fpga"
    capabilities = frozenset({TICK_FEATURES})

    def __init__(self, description: str | None = None) -> None:
        self.name = "fpga"
        self.description = description

    def probe(self) -> str | None:
        """None once an overlay is attached (``serve --fpga-overlay`` / ``--fpga-emulate``)."""
        if self.description is None:
            return "no overlay loaded (serve --fpga-overlay PATH or --fpga-emulate)"
        return None

    def describe(self) -> str:
        """Name and the overlay."""
        return f"fpga ({self.description or 'no overlay'})"


class BackendRegistry:
    """Backends by name, with the result of their probes (thread-safe)."""

    def __init__(self) -> None:
        self._backends: dict[str, Backend] = {}
        self._status: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def register(self, backend: Backend, *, replace: bool = False) -> None:
        """Add `backend` under its name (``replace=True`` to swap an existing one)."""
        if not backend.name or not backend.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"backend name {backend.name!r} must be alphanumeric")
        with self._lock:
            if backend.name in self._backends and not replace:
                raise ValueError(f"backend {backend.name!r} is already registered")
            self._backends[backend.name] = backend
            self._status.pop(backend.name, None)

    def get(self, name: str) -> Backend | None:
        """The backend called `name`, or None."""
        return self._backends.get(name)

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._backends)

    def detect(self) -> dict[str, str | None]:
        """Probe every backend now; return ``{name: None if usable else the reason}``."""
        status = {}
        for name, backend in list(self._backends.items()):
            try:
                status[name] = backend.probe()
            except Exception as exc:  # a probe must never stop the engine from starting
                status[name] = f"probe failed: {type(exc).__name__}: {exc}"
        with self._lock:
            self._status = status
        return dict(status)

    def status(self, name: str) -> str | None:
        """The last probe's reason `name` is unusable (None: usable); probes if never done."""
        if name not in self._backends:
            return "not registered"
        if name not in self._status:
            self.detect()
        return self._status.get(name, "not registered")

    def usable(self, name: str) -> bool:
        """Registered and its last probe found it usable."""
        return self.status(name) is None

    def with_capability(self, capability: str) -> list[str]:
        """Names of the backends that list `capability`, in registration order."""
        return [n for n, b in self._backends.items() if capability in b.capabilities]


def default_registry() -> BackendRegistry:
    """numpy, cpu, cuda, cupy (the batch kernels) and the fpga tick-features entry."""
    registry = BackendRegistry()
    for name in ("numpy", "cpu", "cuda", "cupy"):
        registry.register(KernelBackend(name))
    registry.register(FpgaTickBackend())
    return registry
