"""SingleSeriesEmaAndRollingStdThroughput: tickpath.analytics against TA-Lib, pandas, polars.

Topology (one thread, one call over the whole array, each library in the same run)::

    float64 prices (10 M, in memory) --ema(span)------------> float64[10 M]
                                     --rolling_std(window)--> float64[10 M]

Contenders, per analytic:

* EMA, ``alpha = 2 / (span + 1)``:
  ``tickpath.analytics.ema(x, span, out=out)`` (seeded with the first price) and
  ``seed="sma"`` (seeded with the mean of the first ``span`` prices, NaN before);
  TA-Lib ``talib.EMA(x, span)`` (SMA seed); pandas
  ``Series.ewm(span=span, adjust=False).mean()`` and polars
  ``Series.ewm_mean(span=span, adjust=False)`` (first-price seed).
* Rolling standard deviation over ``window`` values:
  ``tickpath.analytics.rolling_std(x, window, out=out)`` with ``ddof=1`` (pandas'
  ``rolling(window).std()``, polars' ``rolling_std(window)``) and ``ddof=0``
  (TA-Lib's ``STDDEV(x, window, 1)``).

tickpath writes into a preallocated ``out`` (no allocation per call); the peers
allocate their result, as their APIs do.  Every contender is called once untimed (numba's
compile is not timed), then once per round in ``--repeat`` interleaved rounds; the figures
are the best and the median process CPU time of its calls (a busy machine's waits for a core
left out) and its best wall time.

Self-checking: every tickpath result is compared with a numpy two-pass reference at
``--check`` random positions (and the EMA with a plain recurrence over the first 10 k
values); each peer's values are compared with tickpath's where the definitions agree
(first-price EMA with pandas/polars, SMA-seeded EMA with TA-Lib, ddof=1 std with
pandas/polars, ddof=0 std with TA-Lib) and the largest relative difference is
reported; the run fails when a difference exceeds its bound.

    python bench/bench_analytics.py [--n 10000000] [--span 20] [--window 20] [--json out.json]

Needs the ``bench`` extra (``pip install '.[bench]'``); a peer that is not installed
is reported as missing.  The numbers of a 2-core shared machine are noisy: report the
load average with them and compare figures of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import tickpath.analytics as ta

# Bounds of the value checks (relative differences; the reference is two-pass numpy).
EMA_RTOL = 1e-12  # the same recurrence in another order of operations
STD_RTOL = 1e-6  # tickpath vs numpy two-pass
PEER_STD_RTOL = 1e-3  # pandas differs by 5e-5 at 10 M (one-pass sums on a 100-unit offset)


class _Rounds:
    """Timed calls run in interleaved rounds, so that a change of load on a shared machine
    hits every contender alike: each of ``repeat`` rounds calls each contender once, after
    one untimed warm-up call of each.  Per call, the process CPU time (``process_time``: all
    threads, not counting time spent waiting for a core, the primary figure on a busy
    machine) and the wall time are kept; ``best_s`` is the best CPU time."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, dict]] = []

    def add(self, call) -> dict:  # noqa: ANN001
        figures: dict = {}
        self.calls.append((call, figures))
        return figures

    def run(self, repeat: int) -> None:
        for call, _ in self.calls:
            call()
        cpu: list[list[float]] = [[] for _ in self.calls]
        wall: list[list[float]] = [[] for _ in self.calls]
        for _ in range(repeat):
            for j, (call, _) in enumerate(self.calls):
                c0, w0 = time.process_time(), time.perf_counter()
                call()
                wall[j].append(time.perf_counter() - w0)
                cpu[j].append(time.process_time() - c0)
        for j, (_, figures) in enumerate(self.calls):
            figures["best_s"] = min(cpu[j])
            figures["median_s"] = statistics.median(cpu[j])
            figures["best_wall_s"] = min(wall[j])


def _max_rel(a: np.ndarray, b: np.ndarray, floor: float = 1e-300) -> float:
    both = ~(np.isnan(a) | np.isnan(b))
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("inf")  # NaN in different places
    if not both.any():
        return 0.0
    a, b = a[both], b[both]
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), floor)))


def _peers() -> dict:
    found = {}
    for name in ("talib", "pandas", "polars"):
        try:
            found[name] = __import__(name)
        except ImportError:
            found[name] = None
    return found


def run(n: int, span: int, window: int, repeat: int, check: int, seed: int) -> dict:
    """Time every contender and check every value; return the report."""
    rng = np.random.default_rng(seed)
    x = 100.0 + np.cumsum(rng.normal(0.0, 0.01, n))  # a 10 M-tick random walk near 100
    out = np.empty(n)
    peers = _peers()
    talib, pandas, polars = peers["talib"], peers["pandas"], peers["polars"]
    results: dict[str, dict] = {"ema": {}, "rolling_std": {}}
    timer = _Rounds()
    failures: list[str] = []

    # ---- EMA
    ema = results["ema"]
    ema["tickpath"] = timer.add(lambda: ta.ema(x, span, out=out))
    first = ta.ema(x, span).copy()
    ema["tickpath_sma_seed"] = timer.add(lambda: ta.ema(x, span, seed="sma", out=out))
    sma_seeded = ta.ema(x, span, seed="sma").copy()
    alpha = 2.0 / (span + 1.0)
    e, expect = x[0], np.empty(min(n, 10_000))
    for i in range(expect.shape[0]):
        e = e if i == 0 else e + alpha * (x[i] - e)
        expect[i] = e
    ema["tickpath"]["max_rel_vs_recurrence"] = _max_rel(first[: expect.shape[0]], expect)
    if ema["tickpath"]["max_rel_vs_recurrence"] > EMA_RTOL:
        failures.append("tickpath EMA differs from the plain recurrence")
    if talib is not None:
        ema["talib"] = timer.add(lambda: talib.EMA(x, span))
        ema["talib"]["max_rel_vs_tickpath_sma_seed"] = _max_rel(talib.EMA(x, span), sma_seeded)
        if ema["talib"]["max_rel_vs_tickpath_sma_seed"] > EMA_RTOL:
            failures.append("TA-Lib EMA differs from tickpath's seed='sma' EMA")
    if pandas is not None:
        series = pandas.Series(x)
        ema["pandas"] = timer.add(lambda: series.ewm(span=span, adjust=False).mean())
        got = series.ewm(span=span, adjust=False).mean().to_numpy()
        ema["pandas"]["max_rel_vs_tickpath"] = _max_rel(got, first)
        if ema["pandas"]["max_rel_vs_tickpath"] > EMA_RTOL:
            failures.append("pandas EMA differs from tickpath's")
    if polars is not None:
        pseries = polars.Series(x)
        ema["polars"] = timer.add(lambda: pseries.ewm_mean(span=span, adjust=False))
        got = pseries.ewm_mean(span=span, adjust=False).to_numpy()
        ema["polars"]["max_rel_vs_tickpath"] = _max_rel(got, first)
        if ema["polars"]["max_rel_vs_tickpath"] > EMA_RTOL:
            failures.append("polars EMA differs from tickpath's")

    # ---- rolling standard deviation
    std = results["rolling_std"]
    std["tickpath_ddof1"] = timer.add(lambda: ta.rolling_std(x, window, out=out))
    sample = ta.rolling_std(x, window).copy()
    std["tickpath_ddof0"] = timer.add(lambda: ta.rolling_std(x, window, ddof=0, out=out))
    population = ta.rolling_std(x, window, ddof=0).copy()
    at = rng.integers(window - 1, n, check)
    windows = np.lib.stride_tricks.sliding_window_view(x, window)[at - window + 1]
    for name, got, ddof in (("tickpath_ddof1", sample, 1), ("tickpath_ddof0", population, 0)):
        std[name]["max_rel_vs_numpy"] = _max_rel(got[at], windows.std(axis=1, ddof=ddof))
        if std[name]["max_rel_vs_numpy"] > STD_RTOL:
            failures.append(f"{name} rolling std differs from numpy")
    if not np.isnan(sample[: window - 1]).all():
        failures.append("rolling std before a full window is not NaN")
    if talib is not None:
        std["talib_ddof0"] = timer.add(lambda: talib.STDDEV(x, window, 1))
        std["talib_ddof0"]["max_rel_vs_tickpath"] = _max_rel(talib.STDDEV(x, window, 1), population)
        if std["talib_ddof0"]["max_rel_vs_tickpath"] > PEER_STD_RTOL:
            failures.append("TA-Lib STDDEV differs from tickpath's ddof=0 std")
    if pandas is not None:
        series = pandas.Series(x)
        std["pandas_ddof1"] = timer.add(lambda: series.rolling(window).std())
        got = series.rolling(window).std().to_numpy()
        std["pandas_ddof1"]["max_rel_vs_tickpath"] = _max_rel(got, sample)
        if std["pandas_ddof1"]["max_rel_vs_tickpath"] > PEER_STD_RTOL:
            failures.append("pandas rolling std differs from tickpath's")
    if polars is not None:
        pseries = polars.Series(x)
        std["polars_ddof1"] = timer.add(lambda: pseries.rolling_std(window))
        got = pseries.rolling_std(window).to_numpy()
        std["polars_ddof1"]["max_rel_vs_tickpath"] = _max_rel(got, sample)
        if std["polars_ddof1"]["max_rel_vs_tickpath"] > PEER_STD_RTOL:
            failures.append("polars rolling std differs from tickpath's")

    timer.run(repeat)
    for analytic in results.values():
        for figures in analytic.values():
            figures["ns_per_value"] = figures["best_s"] / n * 1e9
            figures["wall_ns_per_value"] = figures["best_wall_s"] / n * 1e9
    return {
        "n": n,
        "span": span,
        "window": window,
        "repeat": repeat,
        "results": results,
        "missing_peers": [name for name, module in peers.items() if module is None],
        "versions": {
            name: getattr(module, "__version__", "?")
            for name, module in peers.items()
            if module is not None
        },
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "loadavg_1m": os.getloadavg()[0],
        "failures": failures,
    }


def _print(report: dict) -> None:
    print(
        f"{report['n']:,} prices, EMA span {report['span']}, rolling std window "
        f"{report['window']}, best of {report['repeat']}, load average {report['loadavg_1m']:.2f}"
    )
    for analytic, rows in report["results"].items():
        base = rows.get("talib") or rows.get("talib_ddof0")
        print(
            f"\n{analytic}: contender, CPU ns/value (best), wall ns/value (best), "
            "median CPU ms, vs TA-Lib (CPU), max rel diff"
        )
        for name, f in rows.items():
            diffs = [f"{k}={v:.1e}" for k, v in f.items() if k.startswith("max_rel")]
            ratio = f" {f['best_s'] / base['best_s']:5.2f}x" if base else ""
            print(
                f"  {name:20s} {f['ns_per_value']:6.2f} {f['wall_ns_per_value']:6.2f} "
                f"{f['median_s'] * 1e3:8.1f}{ratio}  " + " ".join(diffs)
            )
    if report["missing_peers"]:
        print(f"\nnot installed: {', '.join(report['missing_peers'])} (pip install '.[bench]')")
    for failure in report["failures"]:
        print(f"FAILED: {failure}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when a value check fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="prices (default 10 M)")
    parser.add_argument("--span", type=int, default=20)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--check", type=int, default=10_000, help="positions checked vs numpy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args(argv)
    report = run(args.n, args.span, args.window, args.repeat, args.check, args.seed)
    _print(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
