"""Batch-kernel throughput and accuracy, per backend, next to peers measured in the same run.

Topology: one process, one batch per call, inputs and outputs in preallocated host
arrays; items/s = batch size / best-of-repeats wall time. Peers that would change the
shared environment (py_vollib_vectorized pins numba, NautilusTrader, QuantLib) run in
their own interpreter (``--peer-python``, default $TICKPATH_PEER_PYTHON) on the same
arrays, passed through an .npz file; missing peers (and scipy, mpmath) are reported as
such, never required.

Self-checking: every figure comes with its accuracy on a separate sample priced by mpmath
at 40 digits (Black-Scholes: max |price - exact| / S; implied vol: max |sigma - sigma_true|
on the identifiable points, see kernels.batch.implied_vol); Monte Carlo: |price - BS| in
standard errors; covariance: max difference to np.cov. The run fails if a tickpath
kernel misses its bar (:data:`ACCURACY_BARS`).

    tickpath bench kernels [--json FILE] [--plot FILE.png] [--n N] [--quick]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tickpath.engine.bench.common import machine_facts, versions, write_json
from tickpath.kernels import batch as kb

BENCHMARK = "BatchKernelThroughput"
EPS = np.finfo(float).eps
R, Q = 0.03, 0.01


def best_time(func: Callable[[], Any], repeats: int = 5) -> float:
    """Best wall time of `repeats` calls, after one warm-up call."""
    func()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def make_options(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Options over a wide grid: moneyness e^[-1, 1], T 1 day..30 years, vol 1%..500%."""
    rng = np.random.default_rng(seed)
    S = np.full(n, 100.0)
    K = 100.0 * np.exp(rng.uniform(-1.0, 1.0, n))
    T = np.exp(rng.uniform(np.log(1 / 365), np.log(30.0), n))
    sigma = np.exp(rng.uniform(np.log(0.01), np.log(5.0), n))
    call = rng.random(n) < 0.5
    price = kb.black_scholes_price(S, K, T, R, Q, sigma, call)
    return {"S": S, "K": K, "T": T, "sigma": sigma, "call": call, "price": price}


def make_accuracy_sample(n: int, seed: int = 2) -> dict[str, np.ndarray] | None:
    """Options of the same grid priced by mpmath at 40 digits (None without mpmath), with
    the identifiable mask of kernels.batch.implied_vol."""
    try:
        import mpmath as mp
    except ImportError:
        return None
    mp.mp.dps = 40
    opts = make_options(n, seed)
    price, vega = np.empty(n), np.empty(n)
    r, q = mp.mpf(R), mp.mpf(Q)
    for i in range(n):
        s, k, t, v = (mp.mpf(float(opts[name][i])) for name in ("S", "K", "T", "sigma"))
        total = v * mp.sqrt(t)
        d1 = (mp.log(s / k) + (r - q) * t) / total + total / 2
        d2 = d1 - total
        spot_disc, strike_disc = s * mp.exp(-q * t), k * mp.exp(-r * t)
        if opts["call"][i]:
            value = spot_disc * mp.ncdf(d1) - strike_disc * mp.ncdf(d2)
        else:
            value = strike_disc * mp.ncdf(-d2) - spot_disc * mp.ncdf(-d1)
        price[i], vega[i] = float(value), float(spot_disc * mp.npdf(d1) * mp.sqrt(t))
    opts["price"] = price
    spot_disc, strike_disc = opts["S"] * np.exp(-Q * opts["T"]), opts["K"] * np.exp(-R * opts["T"])
    intrinsic = np.maximum(
        np.where(opts["call"], spot_disc - strike_disc, strike_disc - spot_disc), 0
    )
    noise = np.where(intrinsic > 0, np.maximum(spot_disc, strike_disc), 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        opts["identifiable"] = (
            (vega > 0) & (EPS * (price + noise) / vega <= 1e-11) & (price - intrinsic > 1e-300)
        )
    return opts


def row(
    kernel: str, impl: str, n: int, seconds: float | None, accuracy: float | None, note: str = ""
) -> dict:
    """One line of the result table (``items_per_s`` = n / seconds)."""
    return {
        "kernel": kernel,
        "implementation": impl,
        "n": n,
        "seconds": seconds,
        "items_per_s": None if seconds is None else n / seconds,
        "accuracy": accuracy,
        "note": note,
    }


def numpy_scipy_black_scholes(
    S: np.ndarray, K: np.ndarray, T: np.ndarray, r: float, q: float, sigma: Any, call: np.ndarray
) -> np.ndarray:
    """The textbook numpy + scipy.special.ndtr formula a user would write (the peer)."""
    from scipy.special import ndtr

    sqrt_t = np.sqrt(T)
    d1 = (np.log(S / K) + (r - q + 0.5 * sigma * sigma) * T) / (sigma * sqrt_t)
    d2 = d1 - sigma * sqrt_t
    c = S * np.exp(-q * T) * ndtr(d1) - K * np.exp(-r * T) * ndtr(d2)
    p = K * np.exp(-r * T) * ndtr(-d2) - S * np.exp(-q * T) * ndtr(-d1)
    return np.where(call, c, p)


def numpy_scipy_implied_vol(
    price: np.ndarray, S: np.ndarray, K: np.ndarray, T: np.ndarray, r: float, q: float,
    call: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Vectorised scipy.optimize.newton on the price (the peer a numpy user would write)."""
    from scipy.optimize import newton

    def f(sig: np.ndarray) -> np.ndarray:
        return numpy_scipy_black_scholes(S, K, T, r, q, sig, call) - price

    def fprime(sig: np.ndarray) -> np.ndarray:
        d1 = (np.log(S / K) + (r - q + 0.5 * sig * sig) * T) / (sig * np.sqrt(T))
        return S * np.exp(-q * T) * np.exp(-0.5 * d1 * d1) / np.sqrt(2 * np.pi) * np.sqrt(T)

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "some derivatives were zero"
        return newton(f, np.full_like(price, 0.5), fprime=fprime, maxiter=100, tol=1e-14)


NO_SCIPY = "not run: scipy not installed (pip install 'tickpath[bench]')"


def _has_scipy() -> bool:
    try:
        import scipy.optimize  # noqa: F401
        import scipy.special  # noqa: F401
    except ImportError:
        return False
    return True


def bs_error(got: np.ndarray, acc: dict | None) -> float | None:
    """Max |price - mpmath price| / S on the accuracy sample."""
    if acc is None:
        return None
    return float(np.nanmax(np.abs(got - acc["price"]) / acc["S"]))


def bench_black_scholes(opts: dict, acc: dict | None, repeats: int) -> list[dict]:
    """Black-Scholes price and greeks per backend, and the numpy+scipy peer."""
    n = opts["S"].size
    args = (opts["S"], opts["K"], opts["T"], R, Q, opts["sigma"], opts["call"])
    acc_args = (
        None if acc is None else (acc["S"], acc["K"], acc["T"], R, Q, acc["sigma"], acc["call"])
    )
    rows = []
    out = np.empty(n)
    greeks = kb.BlackScholesResult.empty(n)
    for backend in kb.available_backends():
        seconds = best_time(
            lambda b=backend: kb.black_scholes_price(
                *args, backend=b, out=out if b == "cpu" else None
            ),
            repeats,
        )
        err = (
            None
            if acc is None
            else bs_error(kb.black_scholes_price(*acc_args, backend=backend), acc)
        )
        rows.append(
            row(
                "black_scholes_price",
                f"tickpath[{backend}]",
                n,
                seconds,
                err,
                "accuracy = max |p - p_mpmath| / S",
            )
        )
        seconds = best_time(
            lambda b=backend: kb.black_scholes(
                *args, backend=b, out=greeks if b == "cpu" else None
            ),
            repeats,
        )
        rows.append(
            row(
                "black_scholes_greeks", f"tickpath[{backend}]", n, seconds, None, "price + 5 greeks"
            )
        )
    peer = "peer: numpy+scipy.special.ndtr"
    if not _has_scipy():
        rows.append(row("black_scholes_price", peer, n, None, None, NO_SCIPY))
        return rows
    with np.errstate(all="ignore"):
        seconds = best_time(lambda: numpy_scipy_black_scholes(*args), repeats)
        err = None if acc is None else bs_error(numpy_scipy_black_scholes(*acc_args), acc)
    rows.append(row("black_scholes_price", peer, n, seconds, err))
    return rows


def iv_error(sigma: np.ndarray, acc: dict | None) -> tuple[float | None, str]:
    """Max |sigma - sigma_true| on the identifiable mpmath-priced points, and failures."""
    if acc is None:
        return None, "no mpmath: accuracy not measured"
    errs = np.abs(sigma - acc["sigma"])[acc["identifiable"]]
    bad = int((~np.isfinite(errs)).sum())
    worst = float(np.max(errs[np.isfinite(errs)])) if np.isfinite(errs).any() else None
    return worst, f"{bad} non-finite of {errs.size} identifiable mpmath points"


def bench_implied_vol(opts: dict, acc: dict | None, repeats: int, n_reference: int) -> list[dict]:
    """Implied volatility per backend (numpy on ``n_reference`` options), and scipy's newton."""
    n = opts["S"].size
    args = (opts["price"], opts["S"], opts["K"], opts["T"], R, Q, opts["call"])
    acc_args = (
        None if acc is None else (acc["price"], acc["S"], acc["K"], acc["T"], R, Q, acc["call"])
    )
    rows = []
    out = np.empty(n)
    for backend in kb.available_backends():
        m = n if backend != "numpy" else n_reference
        sub = tuple(a[:m] if isinstance(a, np.ndarray) else a for a in args)
        seconds = best_time(
            lambda b=backend, s=sub, m=m: kb.implied_vol(
                *s, backend=b, out=out[:m] if b == "cpu" else None
            ),
            1 if backend == "numpy" else repeats,
        )
        err, note = (
            iv_error(kb.implied_vol(*acc_args, backend=backend).sigma, acc) if acc else (None, "")
        )
        rows.append(row("implied_vol", f"tickpath[{backend}]", m, seconds, err, note))
    m = min(n, n_reference)
    peer = "peer: scipy.optimize.newton (vectorised)"
    if not _has_scipy():
        rows.append(row("implied_vol", peer, m, None, None, NO_SCIPY))
        return rows
    sub = tuple(a[:m] if isinstance(a, np.ndarray) else a for a in args)
    seconds = best_time(lambda: numpy_scipy_implied_vol(*sub), 1)
    err, note = iv_error(numpy_scipy_implied_vol(*acc_args), acc) if acc else (None, "")
    rows.append(row("implied_vol", peer, m, seconds, err, note))
    return rows


PEER_SCRIPT = r"""
import json, sys, time
import numpy as np
data = np.load(sys.argv[1]); which = sys.argv[2]; out_path = sys.argv[3]
def load(prefix):
    return tuple(data[prefix + k] for k in ("S", "K", "T", "sigma", "call", "price"))
S, K, T, sig, call, price = load("")
r, q = float(data["r"]), float(data["q"])
res = {}
def best(f, repeats):
    f(); b = 1e30
    for _ in range(repeats):
        t = time.perf_counter(); f(); b = min(b, time.perf_counter() - t)
    return b
if which == "py_vollib_vectorized":
    import py_vollib_vectorized as pv
    def bs(S, K, T, sig, call, price):
        flag = np.where(call, "c", "p")
        return pv.vectorized_black_scholes_merton(flag, S, K, T, r, sig, q, return_as="numpy")
    def iv(S, K, T, sig, call, price):
        flag = np.where(call, "c", "p")
        return pv.vectorized_implied_volatility(
            price, S, K, T, r, flag, q=q, model="black_scholes_merton",
            return_as="numpy", on_error="ignore")
    res["bs_seconds"] = best(lambda: bs(*load("")), 3)
    res["iv_seconds"] = best(lambda: iv(*load("")), 1)
    res["bs_price"] = bs(*load("acc_")); res["iv_sigma"] = iv(*load("acc_"))
elif which == "QuantLib":
    import QuantLib as ql
    def bs(S, K, T, sig, call, price, n):
        outv = np.empty(n)
        for i in range(n):
            df = np.exp(-r * T[i]); fwd = S[i] * np.exp((r - q) * T[i])
            kind = ql.Option.Call if call[i] else ql.Option.Put
            outv[i] = ql.blackFormula(kind, K[i], fwd, sig[i] * np.sqrt(T[i]), df)
        return outv
    def iv(S, K, T, sig, call, price, n):
        outv = np.full(n, np.nan)
        for i in range(n):
            df = np.exp(-r * T[i]); fwd = S[i] * np.exp((r - q) * T[i])
            try:
                kind = ql.Option.Call if call[i] else ql.Option.Put
                std = ql.blackFormulaImpliedStdDev(
                    kind, K[i], fwd, price[i], df, 0.0, 0.3, 1e-14, 1000)
                outv[i] = std / np.sqrt(T[i])
            except RuntimeError:
                pass
        return outv
elif which == "nautilus_trader":
    from nautilus_trader.core import nautilus_pyo3 as n3
    b = r - q
    def bs(S, K, T, sig, call, price, n):
        outv = np.empty(n)
        for i in range(n):
            try:  # a Rust panic surfaces as PanicException, a BaseException
                greeks = n3.black_scholes_greeks(S[i], r, b, sig[i], bool(call[i]), K[i], T[i], 1.0)
                outv[i] = greeks.price
            except BaseException:
                outv[i] = np.nan
        return outv
    def iv(S, K, T, sig, call, price, n):
        outv = np.empty(n)
        for i in range(n):
            if price[i] < 1e-200:  # imply_vol aborts the process (Rust panic) on these
                outv[i] = np.nan
                continue
            try:
                outv[i] = n3.imply_vol(S[i], r, b, bool(call[i]), K[i], T[i], price[i])
            except BaseException:
                outv[i] = np.nan
        return outv
if which in ("QuantLib", "nautilus_trader"):
    n = min(S.size, int(data["n_loop"]))
    res["bs_seconds"] = best(lambda: bs(*load(""), n), 1) * S.size / n
    res["iv_seconds"] = best(lambda: iv(*load(""), n), 1) * S.size / n
    acc = load("acc_")
    res["bs_price"] = bs(*acc, acc[0].size); res["iv_sigma"] = iv(*acc, acc[0].size)
np.savez(out_path, **res)
"""


def bench_peers(opts: dict, acc: dict | None, peer_python: str | None, n_loop: int) -> list[dict]:
    """The peers that live in their own interpreter, timed and checked on the same options."""
    rows = []
    n = opts["S"].size
    if not peer_python or not Path(peer_python).exists():
        why = "no --peer-python or $TICKPATH_PEER_PYTHON" if not peer_python else peer_python
        return [
            row(
                "peers",
                "py_vollib_vectorized/QuantLib/NautilusTrader",
                n,
                None,
                None,
                f"not run: peer interpreter not found ({why})",
            )
        ]
    if acc is None:
        acc = {k: opts[k][:1000] for k in ("S", "K", "T", "sigma", "call", "price")}
    names = ("S", "K", "T", "sigma", "call", "price")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.npz"
        np.savez(
            data,
            **{k: opts[k] for k in names},
            **{"acc_" + k: acc[k] for k in names},
            r=R,
            q=Q,
            n_loop=n_loop,
        )
        for peer in ("py_vollib_vectorized", "QuantLib", "nautilus_trader"):
            target = Path(tmp) / f"{peer}.npz"
            proc = subprocess.run(
                [peer_python, "-c", PEER_SCRIPT, str(data), peer, str(target)],
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                rows.append(row("peers", peer, n, None, None, f"not run: {last[:160]}"))
                continue
            res = np.load(target)
            loop = (
                ""
                if peer == "py_vollib_vectorized"
                else f"timed on {min(n, n_loop)} options (Python loop), scaled"
            )
            rows.append(
                row(
                    "black_scholes_price",
                    f"peer: {peer}",
                    n,
                    float(res["bs_seconds"]),
                    bs_error(res["bs_price"], acc if "identifiable" in acc else None),
                    loop,
                )
            )
            err, note = iv_error(res["iv_sigma"], acc) if "identifiable" in acc else (None, "")
            rows.append(
                row(
                    "implied_vol",
                    f"peer: {peer}",
                    n,
                    float(res["iv_seconds"]),
                    err,
                    "; ".join(x for x in (note, loop) if x),
                )
            )
    return rows


def bench_montecarlo(repeats: int, quick: bool) -> list[dict]:
    """Monte Carlo European and Asian options and portfolio VaR, per backend."""
    rows = []
    contract = (100.0, 100.0, 1.0, R, Q, 0.2, True)
    exact = float(kb.black_scholes_price(*contract))
    n_eu = 200_000 if quick else 2_000_000
    for backend in kb.available_backends():
        m = n_eu if backend != "numpy" else min(n_eu, 500_000)
        seconds = best_time(
            lambda b=backend, m=m: kb.monte_carlo_european(*contract, n_paths=m, seed=1, backend=b),
            repeats,
        )
        res = kb.monte_carlo_european(*contract, n_paths=m, seed=1, backend=backend)
        rows.append(
            row(
                "mc_european",
                f"tickpath[{backend}]",
                m,
                seconds,
                abs(res.price - exact) / res.std_error,
                "paths/s; accuracy = |MC - BS| in standard errors",
            )
        )
        steps = 64
        m = (20_000 if quick else 200_000) if backend != "numpy" else 20_000
        seconds = best_time(
            lambda b=backend, m=m, steps=steps: kb.monte_carlo_asian(
                *contract, n_steps=steps, n_paths=m, seed=1, backend=b
            ),
            max(1, repeats // 2),
        )
        rows.append(
            row(
                "mc_asian",
                f"tickpath[{backend}]",
                m * steps,
                seconds,
                None,
                f"path-steps/s ({steps} fixings)",
            )
        )
        n_assets = 20
        corr = 0.3 * np.ones((n_assets, n_assets)) + 0.7 * np.eye(n_assets)
        rng = np.random.default_rng(0)
        spot, pos, vol = (
            rng.uniform(10, 200, n_assets),
            rng.uniform(-100, 100, n_assets),
            rng.uniform(0.1, 0.5, n_assets),
        )
        m = 20_000 if quick else 200_000
        seconds = best_time(
            lambda b=backend, m=m, book=(spot, pos, vol, corr): kb.portfolio_var(
                *book, horizon=1 / 252, n_scenarios=m, seed=1, backend=b
            ),
            max(1, repeats // 2),
        )
        rows.append(
            row(
                "portfolio_var",
                f"tickpath[{backend}]",
                m,
                seconds,
                None,
                f"scenarios/s, {n_assets} assets",
            )
        )
    return rows


def bench_correlation(repeats: int, quick: bool) -> list[dict]:
    """Covariance, rolling covariance and the streaming RollingCovariance, per backend."""
    rows = []
    rng = np.random.default_rng(2)
    n_sym, window, length = 50, 250, (1000 if quick else 5000)
    returns = rng.normal(size=(length, n_sym)) * 0.01
    for backend in kb.available_backends():
        m = length if backend != "numpy" else min(length, 1000)
        block = returns[:m]
        seconds = best_time(
            lambda b=backend, x=block: kb.rolling_covariance(x, window, backend=b),
            1 if backend == "numpy" else repeats,
        )
        got = kb.rolling_covariance(block, window, backend=backend)
        err = float(np.max(np.abs(got[-1] - np.cov(block[-window:], rowvar=False))))
        rows.append(
            row(
                "rolling_covariance",
                f"tickpath[{backend}]",
                m - window + 1,
                seconds,
                err,
                f"windows/s, N={n_sym}, window={window}; accuracy = max abs diff to np.cov",
            )
        )
        seconds = best_time(lambda b=backend: kb.covariance(returns[:window], backend=b), repeats)
        rows.append(
            row(
                "covariance",
                f"tickpath[{backend}]",
                1,
                seconds,
                None,
                f"matrices/s, {window}x{n_sym} window",
            )
        )
    for backend in ("cpu", "numpy"):
        rc = kb.RollingCovariance(n_sym, window, backend=backend)
        m = length if backend == "cpu" else 500
        seconds = best_time(lambda rc=rc, m=m: rc.update(returns[:m]), 1)
        rows.append(
            row(
                "RollingCovariance.update",
                f"tickpath[{backend}]",
                m,
                seconds,
                None,
                f"rows/s, N={n_sym}, one block per call",
            )
        )
    start = time.perf_counter()
    for t in range(window, window + 200):
        np.cov(returns[t - window : t], rowvar=False)
    rows.append(
        row(
            "RollingCovariance.update",
            "peer: np.cov per window",
            200,
            time.perf_counter() - start,
            None,
            "rows/s",
        )
    )
    return rows


def gpu_crossover(repeats: int) -> dict:
    """Smallest batch where the CUDA backend beats the CPU one (copies included)."""
    if "cuda" not in kb.available_backends() or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return {"measured": False, "reason": kb._cuda_status() or "simulator, not a GPU"}
    result = {"measured": True, "sizes": [], "cpu_s": [], "cuda_s": []}
    for kernel in ("black_scholes_price", "implied_vol"):
        crossover = None
        for n in (64, 256, 1024, 4096, 16384, 65536, 262144, 1048576):
            opts = make_options(n, seed=3)
            if kernel == "black_scholes_price":
                args = (opts["S"], opts["K"], opts["T"], R, Q, opts["sigma"], opts["call"])
                func = kb.black_scholes_price
            else:
                args = (opts["price"], opts["S"], opts["K"], opts["T"], R, Q, opts["call"])
                func = kb.implied_vol
            cpu = best_time(lambda f=func, a=args: f(*a, backend="cpu"), repeats)
            gpu = best_time(lambda f=func, a=args: f(*a, backend="cuda"), repeats)
            result["sizes"].append([kernel, n])
            result["cpu_s"].append(cpu)
            result["cuda_s"].append(gpu)
            if crossover is None and gpu < cpu:
                crossover = n
        result[f"{kernel}_crossover_n"] = crossover
    return result


# The bars a tickpath kernel must meet (a peer's figure is reported, never judged).
ACCURACY_BARS = {
    "implied_vol": 1e-10,  # max |sigma - sigma_true| on identifiable points
    "black_scholes_price": 1e-13,  # max |price - mpmath price| / S
    "mc_european": 5.0,  # |MC - BS| in standard errors
}


def failures(rows: list[dict]) -> list[dict]:
    """The tickpath rows whose accuracy misses :data:`ACCURACY_BARS`."""
    return [
        r
        for r in rows
        if r["implementation"].startswith("tickpath")
        and r["kernel"] in ACCURACY_BARS
        and r["accuracy"] is not None
        and not r["accuracy"] <= ACCURACY_BARS[r["kernel"]]
    ]


@dataclass(frozen=True)
class KernelOptions:
    """What ``tickpath bench kernels`` runs; ``quick`` replaces the sizes by small ones."""

    n: int = 1_000_000  # options per Black-Scholes / implied-vol batch
    n_reference: int = 100_000  # batch of the slow numpy implied-vol reference
    n_loop: int = 20_000  # options for the peers that loop in Python
    n_accuracy: int = 2000  # options priced by mpmath for the accuracy figures
    repeats: int = 5
    quick: bool = False
    peer_python: str | None = None  # default: $TICKPATH_PEER_PYTHON

    def resolved(self) -> KernelOptions:
        """The sizes actually run (``quick`` applied) and the peer interpreter."""
        peer = self.peer_python or os.environ.get("TICKPATH_PEER_PYTHON")
        if self.quick:
            return KernelOptions(20_000, 5_000, 2_000, 500, 2, True, peer)
        return KernelOptions(
            self.n, self.n_reference, self.n_loop, self.n_accuracy, self.repeats, False, peer
        )

    def check(self) -> None:
        """Raise ``ValueError`` with a one-line message for the first invalid option."""
        for name in ("n", "n_reference", "n_loop", "n_accuracy", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if self.peer_python and not Path(self.peer_python).exists():
            raise ValueError(f"--peer-python {self.peer_python} does not exist")


def print_kernels(report: dict, console: Any) -> None:
    """The rich table of one run."""
    from rich.markup import escape
    from rich.table import Table

    machine = report["machine"]
    table = Table(
        title=f"batch kernels: items/s per backend and peer; backends {report['backends']}; "
        f"{machine['cores']} cores, {machine['cpu']}",
        title_justify="left",
    )
    for col in ("kernel", "implementation", "n", "items/s", "accuracy", "note"):
        table.add_column(col, justify="right" if col in ("n", "items/s", "accuracy") else "left")
    bad = {id(r) for r in report["failures"]}
    for r in report["rows"]:
        ips = "-" if r["items_per_s"] is None else f"{r['items_per_s']:.3e}"
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.1e}"
        style = "red" if id(r) in bad else ""
        cells = (r["kernel"], r["implementation"], str(r["n"]), ips, acc, r["note"])
        table.add_row(*(escape(c) for c in cells), style=style)
    console.print(table)
    console.print(f"GPU crossover: {report['gpu_crossover']}", markup=False)
    if report["failures"]:
        console.print("[bold red]SELF-CHECK FAILED[/]: accuracy bars missed")
        for r in report["failures"]:
            console.print(f"  {r['kernel']} {r['implementation']}: {r['accuracy']}", markup=False)
    else:
        console.print(f"self-check passed: every tickpath kernel within {ACCURACY_BARS}")


def run_kernels(
    opts: KernelOptions,
    json_path: str | None = None,
    plot_path: str | None = None,
    console: Any = None,
) -> tuple[dict, bool]:
    """Run ``bench kernels``; return the report and whether every accuracy bar was met."""
    from rich.console import Console

    opts = opts.resolved()
    opts.check()
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    started = time.perf_counter()
    machine = machine_facts()
    kb.warmup(("cpu",))
    console.print(
        f"warm-up (compile or load the CPU kernels): {time.perf_counter() - started:.2f} s"
    )
    options = make_options(opts.n)
    acc = make_accuracy_sample(opts.n_accuracy)
    rows = bench_black_scholes(options, acc, opts.repeats)
    rows += bench_implied_vol(options, acc, opts.repeats, opts.n_reference)
    rows += bench_peers(options, acc, opts.peer_python, opts.n_loop)
    rows += bench_montecarlo(opts.repeats, opts.quick)
    rows += bench_correlation(opts.repeats, opts.quick)
    crossover = gpu_crossover(opts.repeats)
    import numba

    report = {
        "benchmark": BENCHMARK,
        "config": asdict(opts),
        "machine": {**machine, "numba_threads": numba.get_num_threads()},
        "versions": versions(),
        "accuracy_sample": "mpmath, 40 digits" if acc is not None else "none (mpmath missing)",
        "backends": kb.available_backends(),
        "rows": rows,
        "gpu_crossover": crossover,
        "failures": failures(rows),
        "accuracy_bars": ACCURACY_BARS,
        "wall_s": round(time.perf_counter() - started, 2),
    }
    print_kernels(report, console)
    if json_path:
        write_json(json_path, report)
    if plot_path:
        from tickpath.engine.bench.plot import bar_plot

        timed = [r for r in rows if r["items_per_s"]]
        bar_plot(
            plot_path,
            f"batch kernels, items/s ({machine['cores']} cores, {machine['cpu']})",
            [f"{r['kernel']}  {r['implementation']}" for r in timed],
            [r["items_per_s"] for r in timed],
            "items per second",
        )
    return report, not report["failures"]
