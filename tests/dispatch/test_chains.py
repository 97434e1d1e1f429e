"""Chains: contracts from the config, repricing values against the numpy reference,
implied vols from quotes, and the RESULT_CHAIN records."""

from __future__ import annotations

import numpy as np

from engine.dispatch.backends import KernelBackend
from engine.dispatch.chains import (
    ChainJob,
    FusedChainJob,
    Provenance,
    build_chain,
    check_chain_values,
    generated_strikes,
)
from engine.dispatch.config import ChainConfig, OptionConfig
from engine.dispatch.jobs import Outcome
from engine.wire import schema as s
from kernels import batch

CPU = KernelBackend("cpu")


def test_grid_layout_and_quote_symbols():
    spec = build_chain(ChainConfig(underlying=2, strikes=(90.0, 110.0), expiries=(0.1, 0.2),
                                   option_symbol_base=30))  # fmt: skip
    assert spec.size == 8
    assert spec.expiry.tolist() == [0.1] * 4 + [0.2] * 4
    assert spec.strike.tolist() == [90.0, 90.0, 110.0, 110.0] * 2
    assert spec.is_call.tolist() == [True, False] * 4
    assert spec.option_symbol.tolist() == list(range(30, 38))
    assert spec.index_of_symbol()[33] == 3


def test_generated_strikes_wait_for_a_price_and_centre_on_it():
    config = ChainConfig(underlying=0, strike_count=5, strike_step=0.1, strike_tick=0.5,
                         puts=False)  # fmt: skip
    assert build_chain(config) is None
    assert generated_strikes(config, 100.2) == [80.0, 90.0, 100.0, 110.0, 120.0]
    spec = build_chain(config, 100.2)
    assert spec.size == 5 * 3 and bool(spec.is_call.all())
    assert np.all(spec.option_symbol == s.NO_SYMBOL)


def test_explicit_options():
    spec = build_chain(ChainConfig(underlying=0, vol=0.2, options=(
        OptionConfig(strike=95.0, expiry=0.5, call=False, symbol=9, vol=0.35),
        OptionConfig(strike=105.0, expiry=1.0, call=True),
    )))  # fmt: skip
    assert spec.vol.tolist() == [0.35, 0.2]
    assert spec.option_symbol.tolist() == [9, s.NO_SYMBOL]


def _job(spec, S, mids, sink=None):
    return ChainJob(spec, S, mids, Provenance(11, 12, 13, 14, 15), sink or (lambda *a: None))


def test_values_match_the_reference_and_quotes_give_implied_vols():
    config = ChainConfig(underlying=0, strikes=(80.0, 100.0, 125.0), expiries=(0.1, 2.0),
                         vol=0.25, rate=0.03, dividend=0.01)  # fmt: skip
    spec = build_chain(config)
    S = 101.0
    true_vol = np.linspace(0.15, 0.6, spec.size)
    quotes = np.asarray(
        batch.black_scholes_price(
            S, spec.strike, spec.expiry, 0.03, 0.01, true_vol, spec.is_call, backend="numpy"
        )
    )
    mids = np.full(spec.size, np.nan)
    mids[::2] = quotes[::2]
    values = _job(spec, S, mids).compute(CPU)
    assert check_chain_values(values) is None
    np.testing.assert_allclose(values.implied_vol[::2], true_vol[::2], atol=1e-10)
    assert np.all(np.isnan(values.implied_vol[1::2]))
    np.testing.assert_array_equal(values.sigma, 0.25)  # greeks_vol = "model"
    ref = batch.black_scholes(S, spec.strike, spec.expiry, 0.03, 0.01, 0.25, spec.is_call,
                              backend="numpy")  # fmt: skip
    np.testing.assert_allclose(values.price, ref.price, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(values.vega, ref.vega, rtol=1e-12, atol=1e-12)

    fields = {f: getattr(config, f) for f in config.__struct_fields__}
    implied = build_chain(ChainConfig(**{**fields, "greeks_vol": "implied"}))
    values = _job(implied, S, mids).compute(CPU)
    np.testing.assert_allclose(values.sigma[::2], true_vol[::2], atol=1e-10)
    np.testing.assert_array_equal(values.sigma[1::2], 0.25)
    np.testing.assert_allclose(values.price[::2], quotes[::2], rtol=1e-9)


def test_check_refuses_non_finite_prices_and_negative_vols():
    spec = build_chain(ChainConfig(underlying=0, strikes=(100.0,), expiries=(1.0,)))
    values = _job(spec, 100.0, np.full(2, np.nan)).compute(CPU)
    values.price[0] = np.nan
    assert "non-finite" in check_chain_values(values)
    values = _job(spec, 100.0, np.full(2, np.nan)).compute(CPU)
    values.implied_vol[1] = -0.1
    assert "negative" in check_chain_values(values)


def test_records_carry_provenance_inputs_and_flags():
    spec = build_chain(ChainConfig(underlying=7, strikes=(100.0,), expiries=(0.5,),
                                   option_symbol_base=20))  # fmt: skip
    sent = []
    mids = np.array([5.0, np.nan])
    job = _job(spec, 99.0, mids, lambda *a: sent.append(a))
    values = job.compute(CPU)
    job.finish(Outcome(result=values, backend="cpu", routed="cuda",
                       fallback_reason="cuda raised: x", late=True, done_ns=99))  # fmt: skip
    ((topic, kind, stream, rec),) = sent
    assert (topic, kind, stream) == (b"chain.7", s.KIND_RESULT_CHAIN, 7)
    assert rec.dtype == s.RESULT_CHAIN and len(rec) == 2
    assert rec["ts_ns"].tolist() == [11, 11] and rec["in_stream"].tolist() == [15, 15]
    assert rec["done_ns"].tolist() == [99, 99] and rec["symbol"].tolist() == [7, 7]
    assert rec["option_symbol"].tolist() == [20, 21] and rec["index"].tolist() == [0, 1]
    assert rec["backend"].tolist() == [s.BACKEND_CODES["cpu"]] * 2
    both = s.RESULT_FLAG_FALLBACK | s.RESULT_FLAG_LATE
    assert rec["flags"].tolist() == [both | s.RESULT_FLAG_QUOTED, both]
    assert rec["underlying"].tolist() == [99.0, 99.0]
    np.testing.assert_array_equal(rec["price"], values.price)
    assert rec["option_mid"][0] == 5.0 and np.isnan(rec["option_mid"][1])
    job.finish(Outcome(error="boom", error_code="failed"))
    assert len(sent) == 1  # a failed repricing publishes nothing


def test_fused_job_splits_the_values_per_chain():
    sent = []
    jobs = []
    for u, S in ((1, 90.0), (2, 110.0)):
        spec = build_chain(ChainConfig(underlying=u, strikes=(95.0, 105.0), expiries=(0.3,)))
        jobs.append(_job(spec, S, np.array([np.nan, 2.0, np.nan, np.nan]),
                         lambda *a: sent.append(a)))  # fmt: skip
    fused = ChainJob.fuse(jobs)
    assert isinstance(fused, FusedChainJob) and fused.size == 8
    values = fused.compute(CPU)
    fused.finish(Outcome(result=values, backend="cpu"))
    for job, (topic, _, _, rec) in zip(jobs, sent):
        alone = job.compute(CPU)
        np.testing.assert_array_equal(rec["price"], alone.price)
        np.testing.assert_array_equal(rec["implied_vol"], alone.implied_vol)
        assert topic == b"chain.%d" % job.spec.underlying
