"""PNG figures of the benchmarks (matplotlib, imported only when a plot is asked for)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tickpath.engine.bench.common import BenchError, Latency


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise BenchError(
            "--plot needs matplotlib: pip install 'tickpath[bench]' (or matplotlib)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def percentile_plot(path: str, title: str, series: Sequence[tuple[str, Latency, str]]) -> None:
    """HdrHistogram-style percentile distribution: latency against ``1 / (1 - p)`` (log).

    ``series`` is ``(label, latency, line style)``; each curve ends at its max.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.2), dpi=100)
    top = 10.0
    for label, latency, style in series:
        pct, us = latency.distribution()
        if not len(pct):
            continue
        x = 1.0 / (1.0 - pct / 100.0)
        top = max(top, float(x[-1]))
        ax.plot(x, us, style, label=f"{label} (n={latency.count:,})", linewidth=1.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [10.0**e for e in range(0, int(np.ceil(np.log10(top))) + 1)]
    names = {1: "0%", 10: "90%", 100: "99%", 1000: "99.9%", 10**4: "99.99%", 10**5: "99.999%"}
    ax.set_xticks(ticks)
    ax.set_xticklabels([names.get(int(t), f"{100 * (1 - 1 / t):.6g}%") for t in ticks])
    ax.set_xlim(1.0, top * 1.2)
    ax.set_xlabel("percentile (axis: 1 / (1 - p))")
    ax.set_ylabel("latency (us)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def bar_plot(
    path: str, title: str, labels: Sequence[str], values: Sequence[float], unit: str
) -> None:
    """Horizontal bars, one per label, log-scaled when the values span decades."""
    plt = _pyplot()
    height = max(2.5, 0.32 * len(labels) + 1.2)
    fig, ax = plt.subplots(figsize=(9, height), dpi=100)
    y = np.arange(len(labels))
    vals = np.asarray(values, np.float64)
    ax.barh(y, vals, color="#4c72b0")
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    positive = vals[vals > 0]
    if positive.size and positive.max() / positive.min() > 100:
        ax.set_xscale("log")
    ax.set_xlabel(unit)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
