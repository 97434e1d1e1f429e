"""Chains: contracts from the config, repricing values against the numpy reference,
implied vols from quotes, the RESULT_CHAIN records, and the CPU's fast path (one nogil
call per repricing) against the generic path (implied_vol + black_scholes calls) and the
numpy reference over random chains."""

from __future__ import annotations

import numpy as np
import pytest

from tests.dispatch.helpers import Rig, SleepJob
from tickpath.engine.dispatch.backends import BATCH_KERNELS, REPRICE_CHAIN, Backend, KernelBackend
from tickpath.engine.dispatch.chains import (
    ChainJob,
    ChainRecords,
    ChainSpec,
    ChainValues,
    FusedChainJob,
    Provenance,
    build_chain,
    check_chain_result,
    check_chain_values,
    generated_strikes,
)
from tickpath.engine.dispatch.config import ChainConfig, OptionConfig
from tickpath.engine.dispatch.jobs import JobRejected, Outcome
from tickpath.engine.wire import schema as s
from tickpath.kernels import batch

CPU = KernelBackend("cpu")
GREEKS = ("price", "delta", "gamma", "vega", "theta", "rho")
EPS = np.finfo(float).eps


class GenericCPU(Backend):
    """The CPU's batch kernels without `REPRICE_CHAIN`: chains take the generic path."""

    name = "cpu"
    capabilities = BATCH_KERNELS

    def implied_vol(self, *args):
        return CPU.implied_vol(*args)

    def black_scholes(self, *args):
        return CPU.black_scholes(*args)


GENERIC = GenericCPU()
NUMPY = KernelBackend("numpy")
PATHS = {"fast": CPU, "generic": GENERIC}


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


def _spec(**overrides) -> ChainSpec:
    fields = dict(underlying=4, strike=np.array([90.0, 110.0]), expiry=np.array([0.5, 0.0]),
                  is_call=np.array([True, False]), vol=np.array([0.2, 0.0]),
                  option_symbol=np.array([7, s.NO_SYMBOL], np.uint32), rate=0.01,
                  dividend=0.0, use_implied=False)  # fmt: skip
    return ChainSpec(**{**fields, **overrides})


@pytest.mark.parametrize("overrides, match", [
    ({"strike": np.array([90.0, 0.0])}, "strikes must be finite and > 0"),
    ({"strike": np.array([90.0, np.inf])}, "strikes must be finite and > 0"),
    ({"expiry": np.array([0.5, -0.01])}, "expiries must be finite and >= 0"),
    ({"vol": np.array([np.nan, 0.2])}, "vols must be finite and >= 0"),
    ({"vol": np.array([-0.1, 0.2])}, "vols must be finite and >= 0"),
    ({"rate": float("nan")}, "rate and dividend must be finite"),
    ({"dividend": float("inf")}, "rate and dividend must be finite"),
    ({"strike": np.array([90, 110])}, "strike must be a contiguous float64"),
    ({"is_call": np.array([1, 0])}, "is_call must be a contiguous bool"),
    ({"vol": np.array([0.2, 0.2, 0.2])}, r"vol must be a contiguous float64\[2\]"),
    ({"expiry": np.array([0.5, 0.5, 0.5, 0.5])[::2]}, "expiry must be a contiguous"),
    ({"option_symbol": np.array([7, 8], np.int64)}, "option_symbol must be a contiguous"),
])  # fmt: skip
def test_spec_is_validated_once_when_built(overrides, match):
    with pytest.raises(ValueError, match=match):
        _spec(**overrides)


def test_spec_template_holds_the_static_fields():
    spec = _spec()
    rec = spec.template
    assert rec.dtype == s.RESULT_CHAIN and not rec.flags.writeable
    assert rec["symbol"].tolist() == [4, 4] and rec["index"].tolist() == [0, 1]
    assert rec["option_symbol"].tolist() == [7, s.NO_SYMBOL]
    assert rec["is_call"].tolist() == [1, 0] and rec["strike"].tolist() == [90.0, 110.0]
    assert rec["expiry"].tolist() == [0.5, 0.0] and rec["sigma"].tolist() == [0.2, 0.0]
    assert rec["rate"].tolist() == [0.01, 0.01] and rec["dividend"].tolist() == [0.0, 0.0]


PROVENANCE = Provenance(11, 12, 13, 14, 15)


def _job(spec, S, mids, sink=None, provenance=PROVENANCE):
    return ChainJob(spec, S, mids, provenance, sink or (lambda *a: None))


def _records(job, backend, **outcome) -> np.ndarray:
    """The records `job` publishes when computed on `backend` (its check must pass)."""
    result = job.compute(backend)
    assert job.check(result) is None
    outcome = {"backend": "cpu", "done_ns": 99, **outcome}
    return job.records(result, Outcome(result=result, **outcome))


@pytest.mark.parametrize("path", PATHS)
def test_values_match_the_reference_and_quotes_give_implied_vols(path):
    backend = PATHS[path]
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
    rec = _records(_job(spec, S, mids), backend)
    np.testing.assert_allclose(rec["implied_vol"][::2], true_vol[::2], atol=1e-10)
    assert np.all(np.isnan(rec["implied_vol"][1::2]))
    np.testing.assert_array_equal(rec["sigma"], 0.25)  # greeks_vol = "model"
    ref = batch.black_scholes(S, spec.strike, spec.expiry, 0.03, 0.01, 0.25, spec.is_call,
                              backend="numpy")  # fmt: skip
    for name in GREEKS:
        np.testing.assert_allclose(rec[name], getattr(ref, name), rtol=1e-12, atol=1e-12)

    fields = {f: getattr(config, f) for f in config.__struct_fields__}
    implied = build_chain(ChainConfig(**{**fields, "greeks_vol": "implied"}))
    rec = _records(_job(implied, S, mids), backend)
    np.testing.assert_allclose(rec["sigma"][::2], true_vol[::2], atol=1e-10)
    np.testing.assert_array_equal(rec["sigma"][1::2], 0.25)
    np.testing.assert_allclose(rec["price"][::2], quotes[::2], rtol=1e-9)


def test_check_refuses_non_finite_prices_and_negative_vols():
    spec = build_chain(ChainConfig(underlying=0, strikes=(100.0,), expiries=(1.0,)))
    values = _job(spec, 100.0, np.full(2, np.nan)).compute(GENERIC)
    assert isinstance(values, ChainValues) and check_chain_values(values) is None
    values.price[0] = np.nan
    assert "non-finite" in check_chain_values(values)
    values = _job(spec, 100.0, np.full(2, np.nan)).compute(GENERIC)
    values.implied_vol[1] = -0.1
    assert "negative" in check_chain_values(values)
    # the fast path's counts give the same verdicts
    rec = spec.template.copy()
    assert check_chain_result(ChainRecords(rec, 0, 0)) is None
    assert check_chain_result(ChainRecords(rec, 3, 0)) == (
        "black_scholes: 3 non-finite value(s) for finite inputs"
    )
    assert check_chain_result(ChainRecords(rec, 0, 2)) == (
        "implied_vol: 2 infinite or negative value(s)"
    )


def test_fast_path_counts_what_the_check_refuses():
    """The kernel itself counts non-finite values: an invalid contract that got past the
    spec's validation gives six NaNs (price and greeks), which the check refuses."""
    from tickpath.kernels.cpu import chain

    spec = build_chain(ChainConfig(underlying=0, strikes=(90.0, 110.0), expiries=(1.0,)))
    template = spec.template.copy()
    template["strike"][1] = -5.0
    template.flags.writeable = False
    out = np.empty(4, s.RESULT_CHAIN)
    counts = CPU.reprice_chain(out, template, np.full(4, np.nan), 100.0, False, PROVENANCE)
    assert counts == (6, 0)
    assert np.isnan(out["price"][1]) and np.isfinite(out["price"][[0, 2, 3]]).all()
    assert "6 non-finite" in check_chain_result(ChainRecords(out, *counts))
    nan_spot = chain.reprice(out, template, np.full(4, np.nan), np.nan, False, PROVENANCE, 1)
    assert nan_spot == (24, 0)


def test_fast_path_writes_every_field():
    spec = _spec(use_implied=True)
    mids = np.array([12.0, np.nan])
    out = np.frombuffer(b"\xa5" * (2 * s.RESULT_CHAIN.itemsize), s.RESULT_CHAIN).copy()
    counts = CPU.reprice_chain(out, spec.template, mids, 101.0, True, PROVENANCE)
    assert counts == (0, 0)
    out["done_ns"] = 99
    assert_same_records(out, _records(_job(spec, 101.0, mids), GENERIC))


@pytest.mark.parametrize("path", PATHS)
def test_records_carry_provenance_inputs_and_flags(path):
    spec = build_chain(ChainConfig(underlying=7, strikes=(100.0,), expiries=(0.5,),
                                   option_symbol_base=20))  # fmt: skip
    sent = []
    mids = np.array([5.0, np.nan])
    job = _job(spec, 99.0, mids, lambda *a: sent.append(a))
    result = job.compute(PATHS[path])
    assert isinstance(result, ChainRecords if path == "fast" else ChainValues)
    job.finish(Outcome(result=result, backend="cpu", routed="cuda",
                       fallback_reason="cuda raised: x", late=True, done_ns=99))  # fmt: skip
    ((topic, kind, stream, rec),) = sent
    assert (topic, kind, stream) == (b"chain.7", s.KIND_RESULT_CHAIN, 7)
    assert rec.dtype == s.RESULT_CHAIN and len(rec) == 2
    assert rec["ts_ns"].tolist() == [11, 11] and rec["in_stream"].tolist() == [15, 15]
    assert rec["in_seq"].tolist() == [12, 12] and rec["in_send_ns"].tolist() == [13, 13]
    assert rec["recv_ns"].tolist() == [14, 14]
    assert rec["done_ns"].tolist() == [99, 99] and rec["symbol"].tolist() == [7, 7]
    assert rec["option_symbol"].tolist() == [20, 21] and rec["index"].tolist() == [0, 1]
    assert rec["backend"].tolist() == [s.BACKEND_CODES["cpu"]] * 2
    both = s.RESULT_FLAG_FALLBACK | s.RESULT_FLAG_LATE
    assert rec["flags"].tolist() == [both | s.RESULT_FLAG_QUOTED, both]
    assert rec["underlying"].tolist() == [99.0, 99.0]
    assert rec["_pad"].tolist() == [0, 0]
    assert rec["option_mid"][0] == 5.0 and np.isnan(rec["option_mid"][1])
    job.finish(Outcome(error="boom", error_code="failed"))
    assert len(sent) == 1  # a failed repricing publishes nothing
    assert not spec.template["flags"].any()  # the template is copied, never written


@pytest.mark.parametrize("path", PATHS)
def test_fused_job_splits_the_values_per_chain(path):
    backend = PATHS[path]
    sent = []
    jobs = []
    for u, S in ((1, 90.0), (2, 110.0)):
        spec = build_chain(ChainConfig(underlying=u, strikes=(95.0, 105.0), expiries=(0.3,)))
        jobs.append(_job(spec, S, np.array([np.nan, 2.0, np.nan, np.nan]),
                         lambda *a: sent.append(a)))  # fmt: skip
    fused = ChainJob.fuse(jobs)
    assert isinstance(fused, FusedChainJob) and fused.size == 8
    result = fused.compute(backend)
    assert fused.check(result) is None
    fused.finish(Outcome(result=result, backend="cpu", done_ns=5))
    for job, (topic, _, _, rec) in zip(jobs, sent):
        alone = _records(job, backend, done_ns=5)
        assert_same_records(rec, alone)
        assert topic == b"chain.%d" % job.spec.underlying


# --------------------------------------------------------------------------- fast path


def test_the_cpu_and_cuda_have_the_fast_path_and_warmup_loads_it():
    assert CPU.supports(REPRICE_CHAIN) and KernelBackend("cuda").supports(REPRICE_CHAIN)
    for name in ("numpy", "cupy"):
        other = KernelBackend(name)
        assert not other.supports(REPRICE_CHAIN)
        with pytest.raises(NotImplementedError):
            other.reprice_chain(np.empty(2, s.RESULT_CHAIN), _spec().template,
                                np.full(2, np.nan), 100.0, False, PROVENANCE)  # fmt: skip
    CPU.warmup()
    from tickpath.kernels.cpu import chain

    # compiled at start-up for its one signature; a call never compiles
    kernels = (chain.reprice_serial, chain.reprice_parallel)
    assert [len(kernel.overloads) for kernel in kernels] == [1, 1]
    rec = _records(_job(_spec(), 100.0, np.array([12.0, np.nan])), CPU)
    assert rec["backend"].tolist() == [s.BACKEND_CODES["cpu"]] * 2
    assert [len(kernel.overloads) for kernel in kernels] == [1, 1]
    with pytest.raises(TypeError):  # compilation is disabled: other types are refused
        chain.reprice_serial(rec, _spec().template, np.full(2, np.nan, np.float32), 100.0,
                             False, *PROVENANCE, 1)  # fmt: skip


def assert_same_records(a: np.ndarray, b: np.ndarray) -> None:
    """Field by field, bit for bit (NaN equal to NaN, -0.0 not equal to 0.0)."""
    assert a.dtype == b.dtype == s.RESULT_CHAIN and a.shape == b.shape
    for name in s.RESULT_CHAIN.names:
        x, y = a[name], b[name]
        if x.dtype.kind == "f":
            np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=name)
            keep = ~np.isnan(x)
            np.testing.assert_array_equal(x[keep].view(np.int64), y[keep].view(np.int64),
                                          err_msg=name)  # fmt: skip
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)


def random_spec(rng: np.random.Generator, underlying: int, use_implied: bool) -> ChainSpec:
    """A chain of random contracts around 100, some at expiry or with zero model vol."""
    n = int(rng.integers(1, 120))
    expiry = rng.choice([0.0, 1 / 365, 0.02, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0], n)
    vol = rng.uniform(0.05, 1.0, n)
    vol[rng.random(n) < 0.05] = 0.0
    symbols = np.where(rng.random(n) < 0.8, np.arange(n) + 1000, s.NO_SYMBOL).astype(np.uint32)
    return ChainSpec(
        underlying=underlying, strike=100.0 * np.exp(rng.uniform(-0.5, 0.5, n)), expiry=expiry,
        is_call=rng.random(n) < 0.5, vol=vol, option_symbol=symbols,
        rate=float(rng.uniform(-0.01, 0.08)), dividend=float(rng.uniform(0.0, 0.05)),
        use_implied=use_implied,
    )  # fmt: skip


def random_mids(rng: np.random.Generator, spec: ChainSpec, S: float) -> np.ndarray:
    """Fair prices at a random vol, unquoted (NaN), and mids outside the no-arbitrage
    bounds (below intrinsic, at or above the upper bound, inf, negative), mixed."""
    n, T = spec.size, spec.expiry
    fair = np.asarray(batch.black_scholes_price(
        S, spec.strike, T, spec.rate, spec.dividend, rng.uniform(0.05, 1.5, n), spec.is_call,
        backend="numpy"))  # fmt: skip
    spot_disc = S * np.exp(-spec.dividend * T)
    strike_disc = spec.strike * np.exp(-spec.rate * T)
    sign = np.where(spec.is_call, 1.0, -1.0)
    intrinsic = np.maximum(sign * (spot_disc - strike_disc), 0.0)
    upper = np.where(spec.is_call, spot_disc, strike_disc)
    kind = rng.choice(8, n, p=[0.45, 0.2, 0.08, 0.06, 0.06, 0.05, 0.05, 0.05])
    choices = [
        fair, np.full(n, np.nan), intrinsic - 0.5, upper * (1 + 1e-12), upper * 1.5,
        np.full(n, np.inf), np.full(n, -1.0), intrinsic,
    ]  # fmt: skip
    return np.choose(kind, choices).astype(np.float64)


@pytest.mark.parametrize("seed", range(6))
def test_fast_path_equals_generic_path_bit_for_bit_over_random_chains(seed):
    rng = np.random.default_rng(seed)
    jobs = []
    for u in range(int(rng.integers(2, 7))):
        spec = random_spec(rng, u, use_implied=bool(rng.integers(2)))
        S = float(100.0 * np.exp(rng.uniform(-0.3, 0.3)))
        provenance = Provenance(*(int(v) for v in rng.integers(0, 2**62, 4)), int(u + 3))
        jobs.append(_job(spec, S, random_mids(rng, spec, S), provenance=provenance))
    quoted = np.concatenate([np.isfinite(job.option_mid) for job in jobs])
    assert quoted.any() and not quoted.all()
    for job in jobs:
        fast = _records(job, CPU)
        assert_same_records(fast, _records(job, GENERIC))
        np.testing.assert_array_equal(fast["flags"] == s.RESULT_FLAG_QUOTED,
                                      np.isfinite(job.option_mid))  # fmt: skip
    # fused groups: one call for all chains, sliced per chain, equal to each alone
    for backend in (CPU, GENERIC):
        sent = []
        for job in jobs:
            job.sink = lambda *a, sent=sent: sent.append(a[3].copy())
        fused = ChainJob.fuse(jobs)
        result = fused.compute(backend)
        assert fused.check(result) is None
        fused.finish(Outcome(result=result, backend="cpu", done_ns=99))
        assert len(sent) == len(jobs)
        for job, rec in zip(jobs, sent):
            assert_same_records(rec, _records(job, CPU))


def identifiable(rec: np.ndarray) -> np.ndarray:
    """Contracts whose implied vol the rounding of its inputs moves by at most 1e-11
    (see tests/kernels/test_batch_implied_vol.py)."""
    T, S, K = rec["expiry"], rec["underlying"], rec["strike"]
    spot_disc, strike_disc = S * np.exp(-rec["dividend"] * T), K * np.exp(-rec["rate"] * T)
    itm = np.where(rec["is_call"] == 1, spot_disc > strike_disc, strike_disc > spot_disc)
    noise = np.where(itm, np.maximum(spot_disc, strike_disc), 0.0)
    vega = batch.black_scholes(S, K, T, rec["rate"], rec["dividend"],
                               np.nan_to_num(rec["implied_vol"]), rec["is_call"].astype(bool),
                               backend="numpy").vega  # fmt: skip
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = EPS * (rec["option_mid"] + noise) / vega
    return np.isfinite(rec["implied_vol"]) & (vega > 0) & (cond <= 1e-11)


@pytest.mark.parametrize("seed", range(4))
def test_fast_path_matches_the_numpy_reference(seed):
    rng = np.random.default_rng(100 + seed)
    compared = finite = 0
    for u in range(4):
        spec = random_spec(rng, u, use_implied=u % 2 == 1)
        S = float(100.0 * np.exp(rng.uniform(-0.3, 0.3)))
        job = _job(spec, S, random_mids(rng, spec, S))
        rec = _records(job, CPU)
        ref_rec = _records(job, NUMPY)  # the generic path on the numpy reference
        # implied vols: NaN exactly where the reference has none, 1e-10 where identifiable
        iv, ref_iv = rec["implied_vol"], ref_rec["implied_vol"]
        np.testing.assert_array_equal(np.isnan(iv), np.isnan(ref_iv))
        ok = identifiable(rec)
        np.testing.assert_allclose(iv[ok], ref_iv[ok], rtol=0, atol=1e-10)
        compared += int(ok.sum())
        finite += int(np.isfinite(iv).sum())
        # sigma: the model vol, or the implied vol where used and finite
        want = np.where(spec.use_implied & np.isfinite(iv), iv, spec.vol)
        np.testing.assert_array_equal(rec["sigma"], want)
        # prices and greeks at that sigma: the numpy reference within 1e-12
        ref = batch.black_scholes(S, spec.strike, spec.expiry, spec.rate, spec.dividend,
                                  rec["sigma"], spec.is_call, backend="numpy")  # fmt: skip
        for name in GREEKS:
            np.testing.assert_allclose(rec[name], getattr(ref, name), rtol=1e-12, atol=1e-12,
                                       err_msg=name)  # fmt: skip
    assert compared >= finite // 2  # most implied vols are well determined


def test_parallel_kernel_of_large_chains_equals_the_generic_path():
    from tickpath.kernels.cpu import chain

    rng = np.random.default_rng(11)
    jobs = []
    for u, n in enumerate((chain.PARALLEL_THRESHOLD + 77, 30)):
        spec = ChainSpec(
            underlying=u, strike=100.0 * np.exp(rng.uniform(-0.5, 0.5, n)),
            expiry=rng.choice([0.02, 0.25, 1.0, 3.0], n), is_call=rng.random(n) < 0.5,
            vol=rng.uniform(0.05, 1.0, n), option_symbol=np.arange(n, dtype=np.uint32),
            rate=0.02, dividend=0.01, use_implied=u == 0,
        )  # fmt: skip
        S = 100.0 + u
        jobs.append(_job(spec, S, random_mids(rng, spec, S), provenance=Provenance(u, u + 1)))
    for job in jobs:  # the parallel kernel, then the serial one
        assert_same_records(_records(job, CPU), _records(job, GENERIC))
    sent = []
    for job in jobs:
        job.sink = lambda *a: sent.append(a[3].copy())
    fused = ChainJob.fuse(jobs)
    result = fused.compute(CPU)
    assert fused.check(result) is None
    fused.finish(Outcome(result=result, backend="cpu", done_ns=99))
    for job, rec in zip(jobs, sent):
        assert_same_records(rec, _records(job, GENERIC))


@pytest.mark.parametrize("price", [float("nan"), 0.0, -3.0, float("inf")])
def test_invalid_underlying_price_is_rejected_before_any_backend(price):
    spec = _spec()
    job = _job(spec, price, np.full(2, np.nan))
    with pytest.raises(JobRejected) as info:
        job.prepare()
    assert info.value.code == "invalid" and "underlying price" in str(info.value)
    _job(spec, 101.0, np.full(2, np.nan)).prepare()  # a valid one passes
    with pytest.raises(JobRejected, match="option mids"):
        _job(spec, 101.0, np.full(3, np.nan)).prepare()


def test_dispatcher_counts_invalid_prices_and_fuses_the_rest_on_the_fast_path():
    lane = {"max_batch": 8, "max_wait_ms": 1, "deadline_ms": 60_000}
    rig = Rig(routes={"chain": "cpu"}, lanes={"stream": lane})
    try:
        results = []
        blocker = SleepJob(None, results, key="blocker")  # holds the worker until released
        rig.dispatcher.submit(blocker, "stream")
        assert blocker.started.wait(120)
        rng = np.random.default_rng(3)
        jobs = []
        for u in range(5):
            spec = random_spec(rng, u, use_implied=u % 2 == 0)
            S = float("nan") if u == 2 else 100.0 + u
            job = ChainJob(spec, S, random_mids(rng, spec, 100.0), Provenance(u), rig.sink)
            jobs.append(job)
            assert rig.dispatcher.submit(job, "stream")
        blocker.release.set()  # the five are queued: one batch
        published = rig.wait_published(4)
        # the worker lives on: a later job is computed too
        rig.dispatcher.submit(ChainJob(jobs[0].spec, 99.0, jobs[0].option_mid,
                                       Provenance(9), rig.sink), "stream")  # fmt: skip
        rig.wait_published(5)
        stats = rig.dispatcher.stats()["lanes"]["stream"]
        assert stats["rejected"] == 1 and stats["failed"] == 0 and stats["fused"] == 4
        by_topic = {topic: rec for topic, _, _, rec in published}
        assert sorted(by_topic) == [b"chain.%d" % u for u in (0, 1, 3, 4)]
        for u in (0, 1, 3, 4):
            rec = by_topic[b"chain.%d" % u]
            alone = _records(jobs[u], GENERIC, done_ns=1)
            rec["done_ns"] = 1  # stamped when the job finished
            assert_same_records(rec, alone)
    finally:
        rig.close()
