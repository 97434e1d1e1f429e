"""tickpath.engine.bench.common.Latency: the batched HdrHistogram recording and the summaries."""

from __future__ import annotations

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from tickpath.engine.bench.common import HIGHEST_NS, PERCENTILES, Latency, ratios


def test_batched_recording_equals_one_record_value_per_value():
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [
            rng.integers(0, 2_000, 3_000),  # below the first bucket boundary
            rng.lognormal(11, 1.5, 20_000).astype(np.int64),  # ~60 us, long tail
            [1, 2047, 2048, 4095, 4096, 10**9, 59 * 10**9],  # bucket edges, seconds
        ]
    )
    one_by_one = HdrHistogram(1, HIGHEST_NS, 3)
    for v in values.tolist():
        one_by_one.record_value(v)
    batched = Latency(values)
    assert batched.count == len(values) == one_by_one.get_total_count()
    assert list(batched.hist.counts) == list(one_by_one.counts)
    pct = [p for _, p in PERCENTILES] + [0.1, 33.3, 99.999]
    assert batched.hist.get_percentile_to_value_dict(
        pct
    ) == one_by_one.get_percentile_to_value_dict(pct)
    assert batched.max_ns == values.max()


def test_summary_in_microseconds_with_exact_max_and_clipping():
    lat = Latency(np.array([1_000, 2_000, 3_000, 70 * 10**9, -5]))
    summary = lat.summary()
    assert summary["count"] == 5
    assert summary["p50"] == 2.0 and summary["p90"] >= 3.0
    assert summary["max"] == HIGHEST_NS / 1e3
    assert summary["clipped_above_60s"] == 1 and lat.negative == 1
    empty = Latency().summary()
    assert empty["count"] == 0 and empty["p50"] is None and empty["max"] is None


def test_ratios_and_distribution():
    fast = Latency(np.full(1000, 10_000)).summary()
    slow = Latency(np.full(1000, 25_000)).summary()
    r = ratios(slow, fast)
    assert r["p50"] == pytest.approx(2.5, rel=2e-3)  # 3 significant figures
    assert r["max"] == 2.5  # the max is exact
    assert ratios(slow, Latency().summary())["p50"] is None
    pct, us = Latency(np.arange(1, 100_001)).distribution()
    assert pct[0] == 0.0 and pct[-1] < 100.0 and np.all(np.diff(pct) > 0)
    assert np.all(np.diff(us) >= 0) and us[-1] == 100.0
