"""The GPU batch-size crossover N* of each kernel: measured, or read from a calibration file.

For a kernel and a GPU backend, the CPU and the GPU are timed on the same batches of a
few sizes (best of ``repeats``, host arrays in and out, so copies are included), a line
``t(n) = fixed + per_item * n`` is fitted to each, and

    N* = (fixed_gpu - fixed_cpu) / (per_item_cpu - per_item_gpu)

rounded up: the smallest batch the GPU runs faster. When the GPU's per-item cost is not
lower, there is no crossover (``n_star`` is None) and "auto" keeps that kernel on the CPU.

The sizes are in each kernel's work units: options (black_scholes, implied_vol),
contracts (chain), rows x N(N+1)/2 pairs (covariance), scenarios x assets
(portfolio_var); the jobs report their size in the same units.

``chain`` is calibrated as the job the router sends: a chain repricing with half of its
contracts quoted (`tickpath.engine.dispatch.chains.ChainJob.compute`), which the CPU runs on its
one-call fast path and a GPU as implied_vol then black_scholes, copies included. Its N*
is therefore not black_scholes' N*: the CPU's fast path and the implied vols move it.

Run ``python -m tickpath.engine.dispatch.calibration --out FILE`` on the serving machine to write
the file that ``[dispatch.calibration] file = FILE`` reads (``--backends cuda cupy``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tickpath.engine.dispatch.backends import Backend, BackendRegistry, default_registry

log = logging.getLogger("tickpath.dispatch")

CALIBRATED_KERNELS = ("chain", "black_scholes", "implied_vol", "covariance", "portfolio_var")
FILE_VERSION = 1


@dataclass
class Crossover:
    """N* of one kernel on one GPU backend, with the evidence."""

    kernel: str
    backend: str
    n_star: int | None  # None: the GPU is never faster (or not measured)
    source: str  # "measured", "file"
    sizes: list[int] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    gpu_s: list[float] = field(default_factory=list)
    cpu_fit: tuple[float, float] = (math.nan, math.nan)  # (fixed s, per-item s)
    gpu_fit: tuple[float, float] = (math.nan, math.nan)

    def describe(self) -> str:
        """``cuda N*=1,234 (measured)`` or ``cuda never faster (measured)``."""
        if self.source.startswith("failed"):
            return f"{self.backend} calibration {self.source}"
        if self.n_star is None:
            return f"{self.backend} never faster ({self.source})"
        return f"{self.backend} N*={self.n_star:,} ({self.source})"


def fit_line(sizes: Sequence[float], seconds: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``(fixed, per_item)`` of ``seconds ~ fixed + per_item * sizes``."""
    x = np.asarray(sizes, dtype=np.float64)
    y = np.asarray(seconds, dtype=np.float64)
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError("fit_line needs at least two different sizes")
    per_item, fixed = np.polyfit(x, y, 1)
    return float(fixed), float(per_item)


def crossover(cpu_fit: tuple[float, float], gpu_fit: tuple[float, float]) -> int | None:
    """The smallest batch the GPU line is below the CPU line; None if it never is."""
    cpu_fixed, cpu_per = cpu_fit
    gpu_fixed, gpu_per = gpu_fit
    if not all(math.isfinite(v) for v in (*cpu_fit, *gpu_fit)):
        return None
    if gpu_per >= cpu_per:
        return 1 if gpu_fixed < cpu_fixed and gpu_per == cpu_per else None
    n = (gpu_fixed - cpu_fixed) / (cpu_per - gpu_per)
    return max(1, math.ceil(n))


def _workload(kernel: str, n: int, rng: np.random.Generator) -> Callable[[Backend], object]:
    """A job of about `n` work units of `kernel`, as a call on a backend."""
    if kernel in ("black_scholes", "implied_vol"):
        S = rng.uniform(80, 120, n)
        K = rng.uniform(60, 140, n)
        T = rng.uniform(0.02, 2.0, n)
        sigma = rng.uniform(0.1, 0.6, n)
        call = rng.random(n) < 0.5
        if kernel == "black_scholes":
            return lambda b: b.black_scholes(S, K, T, 0.01, 0.0, sigma, call)
        from tickpath.kernels import batch

        price = np.asarray(batch.black_scholes_price(S, K, T, 0.01, 0.0, sigma, call))
        return lambda b: b.implied_vol(price, S, K, T, 0.01, 0.0, call)
    if kernel == "chain":
        return _chain_workload(n, rng)
    if kernel == "covariance":
        rows = 128
        n_sym = max(2, int((math.sqrt(1 + 8 * n / rows) - 1) / 2))
        window = rng.normal(size=(rows, n_sym)) * 1e-3
        return lambda b: b.covariance(window)
    if kernel == "portfolio_var":
        assets = 8
        spot = rng.uniform(10, 200, assets)
        position = rng.uniform(-100, 100, assets)
        vol = rng.uniform(0.1, 0.5, assets)
        corr = np.eye(assets)
        scenarios = max(64, n // assets)
        return lambda b: b.portfolio_var(
            spot=spot, position=position, vol=vol, correlation=corr, horizon=1 / 252,
            n_scenarios=scenarios, seed=1,
        )  # fmt: skip
    raise ValueError(f"no calibration workload for kernel {kernel!r}")


def _chain_workload(n: int, rng: np.random.Generator) -> Callable[[Backend], object]:
    """One repricing of an n-contract chain, half of it quoted, as the dispatcher runs it."""
    from tickpath.engine.dispatch.chains import ChainJob, ChainSpec, Provenance
    from tickpath.kernels import batch

    K = rng.uniform(60, 140, n)
    T = rng.uniform(0.02, 2.0, n)
    call = rng.random(n) < 0.5
    vol = rng.uniform(0.1, 0.6, n)
    spec = ChainSpec(0, K, T, call, vol, np.arange(n, dtype=np.uint32), 0.01, 0.0, False)
    mid = np.full(n, np.nan)
    quoted = rng.random(n) < 0.5
    mid[quoted] = np.asarray(batch.black_scholes_price(100.0, K, T, 0.01, 0.0, vol, call))[quoted]
    job = ChainJob(spec, 100.0, mid, Provenance(), lambda *_: None)
    return job.compute


def _best_time(
    call: Callable[[Backend], object], backend: Backend, repeats: int, clock: Callable[[], float]
) -> float:
    best = math.inf
    for _ in range(repeats):
        t0 = clock()
        call(backend)
        best = min(best, clock() - t0)
    return best


def measure(
    kernel: str,
    gpu: Backend,
    cpu: Backend,
    sizes: Sequence[int],
    repeats: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> Crossover:
    """Time `kernel` on `cpu` and `gpu` at `sizes` (after one warm-up call each); fit N*.

    `clock` (seconds) is the wall clock; tests pass a virtual one their backends advance.
    """
    rng = np.random.default_rng(20240611)
    cpu_s, gpu_s = [], []
    for n in sizes:
        call = _workload(kernel, int(n), rng)
        call(cpu)
        call(gpu)
        cpu_s.append(_best_time(call, cpu, repeats, clock))
        gpu_s.append(_best_time(call, gpu, repeats, clock))
    cpu_fit = fit_line(sizes, cpu_s)
    gpu_fit = fit_line(sizes, gpu_s)
    return Crossover(
        kernel, gpu.name, crossover(cpu_fit, gpu_fit), "measured", [int(n) for n in sizes],
        cpu_s, gpu_s, cpu_fit, gpu_fit,
    )  # fmt: skip


def calibrate(
    registry: BackendRegistry,
    gpu_names: Sequence[str],
    sizes: Sequence[int],
    repeats: int = 3,
    kernels: Sequence[str] = CALIBRATED_KERNELS,
) -> dict[tuple[str, str], Crossover]:
    """Measure every kernel on every usable backend of `gpu_names` against the cpu."""
    cpu = registry.get("cpu")
    results: dict[tuple[str, str], Crossover] = {}
    for name in gpu_names:
        backend = registry.get(name)
        if backend is None or not registry.usable(name):
            continue
        for kernel in kernels:
            if not backend.supports(kernel):
                continue
            try:
                results[(kernel, name)] = measure(kernel, backend, cpu, sizes, repeats)
            except Exception as exc:  # a GPU that fails here is one the router must avoid
                log.warning("calibration of %s on %s failed: %s", kernel, name, exc)
                results[(kernel, name)] = Crossover(kernel, name, None, f"failed: {exc}")
    return results


def save(path: str | Path, results: dict[tuple[str, str], Crossover], device: str = "") -> None:
    """Write `results` as the calibration JSON file."""
    kernels: dict[str, dict[str, dict]] = {}
    for (kernel, backend), c in sorted(results.items()):
        entry = asdict(c)
        entry.pop("kernel")
        entry.pop("backend")
        entry.pop("source")
        kernels.setdefault(kernel, {})[backend] = entry
    doc = {
        "version": FILE_VERSION,
        "written_ns": time.time_ns(),
        "host": platform.node(),
        "device": device,
        "kernels": kernels,
    }
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def load(path: str | Path) -> dict[tuple[str, str], Crossover]:
    """Read a calibration file; raises ValueError (one line) when it is not one."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read calibration file {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"calibration file {path} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("version") != FILE_VERSION:
        raise ValueError(f"calibration file {path}: expected version {FILE_VERSION}")
    results = {}
    kernels = doc.get("kernels")
    if not isinstance(kernels, dict):
        raise ValueError(f"calibration file {path}: 'kernels' must be an object")
    for kernel, per_backend in kernels.items():
        if not isinstance(per_backend, dict):
            raise ValueError(f"calibration file {path}: kernels.{kernel} must be an object")
        for backend, entry in per_backend.items():
            n_star = entry.get("n_star") if isinstance(entry, dict) else None
            if n_star is not None and (not isinstance(n_star, int) or n_star < 1):
                raise ValueError(
                    f"calibration file {path}: kernels.{kernel}.{backend}.n_star must be "
                    f"a positive integer or null"
                )
            results[(kernel, backend)] = Crossover(kernel, backend, n_star, "file")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Measure N* on this machine and write the calibration file."""
    parser = argparse.ArgumentParser(
        prog="python -m tickpath.engine.dispatch.calibration",
        description="Measure the GPU batch-size crossover of each batch kernel.",
    )
    parser.add_argument("--out", required=True, help="calibration JSON to write")
    parser.add_argument("--backends", nargs="+", default=["cuda", "cupy"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 4096, 65536, 1 << 20])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    registry = default_registry()
    status = registry.detect()
    for name in args.backends:
        if status.get(name, "not registered") is not None:
            print(f"{name}: unavailable: {status.get(name, 'not registered')}", file=sys.stderr)
    registry.get("cpu").warmup()
    for name in args.backends:
        if registry.usable(name):
            registry.get(name).warmup()
    results = calibrate(registry, args.backends, args.sizes, args.repeats)
    device = ""
    if registry.usable("cuda"):
        try:
            from numba import cuda

            device = cuda.get_current_device().name
            device = device.decode() if isinstance(device, bytes) else str(device)
        except Exception:  # the name is informational
            device = ""
    save(args.out, results, device)
    for c in results.values():
        print(f"{c.kernel:<14} {c.describe()}")
    if not results:
        print("no GPU backend usable: no crossover (everything stays on the cpu)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
