"""Return sampling from the streaming state, and the covariance job against numpy."""

from __future__ import annotations

import numpy as np

from tickpath.engine.dispatch.backends import KernelBackend
from tickpath.engine.dispatch.config import CorrelationConfig
from tickpath.engine.dispatch.correlation import CorrJob, ReturnSampler
from tickpath.engine.dispatch.jobs import Outcome
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s


class _Market:
    """The streaming kernels' state (``sym_i``), moved by real quote and trade frames."""

    def __init__(self, processor_factory, n_symbols=8):
        self.proc = processor_factory(n_symbols=n_symbols)
        self.seq = {s.KIND_QUOTE: 0, s.KIND_TRADE: 0}
        self.ts_ns = 1_000_000_000

    @property
    def sym_i(self):
        return self.proc.state.sym_i

    def _send(self, kind, record):
        self.ts_ns += 1
        record["ts_ns"] = self.ts_ns
        stream = 1 if kind == s.KIND_QUOTE else 2
        self.proc.feed(codec.encode_frame(kind, stream, self.seq[kind], record))
        self.seq[kind] += 1
        stats = self.proc.stats(0)
        assert stats["frames_rejected"] == stats["records_rejected"] == 0

    def set_mid(self, symbol, mid):
        ticks = int(round(mid * s.PRICE_SCALE))
        q = np.zeros(1, s.QUOTE)
        q["symbol"] = symbol
        q["bid_price"], q["ask_price"] = ticks - 100, ticks + 100
        q["bid_size"] = q["ask_size"] = s.SIZE_SCALE
        self._send(s.KIND_QUOTE, q)

    def trade(self, symbol, price_ticks):
        t = np.zeros(1, s.TRADE)
        t["symbol"], t["side"], t["price"], t["size"] = (
            symbol,
            s.SIDE_BUY,
            price_ticks,
            s.SIZE_SCALE,
        )
        self._send(s.KIND_TRADE, t)


def test_sampler_waits_for_prices_then_pushes_log_returns(processor_factory):
    sampler = ReturnSampler(CorrelationConfig(symbols=(2, 5), window=4, sample_interval_s=1.0,
                                              every_samples=2))  # fmt: skip
    market = _Market(processor_factory)
    market.set_mid(2, 100.0)
    assert not sampler.maybe_sample(market.sym_i, 0)  # symbol 5 has no price yet
    assert not sampler.maybe_sample(market.sym_i, 10)  # interval not over: not even looked at
    market.set_mid(5, 50.0)
    t = 1_000_000_000
    prices = [(100.0, 50.0), (101.0, 50.0), (100.0, 51.0), (102.0, 52.0), (103.0, 51.0),
              (103.0, 51.5)]  # fmt: skip
    due = []
    for i, (a, b) in enumerate(prices):
        market.set_mid(2, a)
        market.set_mid(5, b)
        due.append(sampler.maybe_sample(market.sym_i, t * (i + 1)))
    assert sampler.samples == 5 and sampler.rows == 4  # window of 4
    assert due == [False, False, False, True, False, True]  # >= 3 rows, every 2 samples
    expected = np.log(np.array(prices[2:]) / np.array(prices[1:-1]))
    np.testing.assert_allclose(np.sort(sampler.window(), axis=0), np.sort(expected, axis=0))


def test_trade_source_uses_last_trade_prices(processor_factory):
    sampler = ReturnSampler(CorrelationConfig(symbols=(0, 1), source="trade"))
    market = _Market(processor_factory)
    market.trade(0, 1_000_000)
    assert np.isnan(sampler.prices(market.sym_i)[1])
    market.trade(1, 2_500_000)
    np.testing.assert_array_equal(sampler.prices(market.sym_i), [100.0, 250.0])


def test_corr_job_matches_numpy_and_publishes_the_upper_triangle():
    rng = np.random.default_rng(3)
    window = rng.normal(size=(50, 3)) @ np.array([[1, 0.5, 0], [0, 1, 0.2], [0, 0, 1]]) * 1e-3
    symbols = np.array([4, 9, 1])
    sent = []
    job = CorrJob(window, symbols, 77, 123, lambda *a: sent.append(a))
    values = job.compute(KernelBackend("cpu"))
    assert job.check(values) is None
    np.testing.assert_allclose(values["covariance"], np.cov(window, rowvar=False), rtol=1e-12)
    np.testing.assert_allclose(values["correlation"], np.corrcoef(window, rowvar=False),
                               rtol=1e-12)  # fmt: skip
    job.finish(Outcome(result=values, backend="cpu"))
    ((topic, kind, stream, rec),) = sent
    assert (topic, kind, stream) == (b"corr", s.KIND_RESULT_CORR, 0)
    assert len(rec) == 6 and rec.dtype == s.RESULT_CORR
    assert list(zip(rec["symbol"].tolist(), rec["symbol_b"].tolist())) == [
        (4, 4), (4, 9), (4, 1), (9, 9), (9, 1), (1, 1)]  # fmt: skip
    assert rec["in_seq"][0] == 77 and rec["ts_ns"][0] == 123 and rec["n_rows"][0] == 50
    np.testing.assert_allclose(rec["correlation"][[0, 3, 5]], 1.0)
    assert rec["covariance"][1] == values["covariance"][0, 1]


def test_corr_check_refuses_a_non_finite_covariance():
    job = CorrJob(np.ones((4, 2)), np.array([0, 1]), 1, 1, lambda *a: None)
    values = job.compute(KernelBackend("cpu"))
    assert job.check(values) is None  # zero variance: NaN correlation is legitimate
    assert np.isnan(values["correlation"][0, 1])
    values["covariance"][0, 1] = np.inf
    assert "non-finite" in job.check(values)
