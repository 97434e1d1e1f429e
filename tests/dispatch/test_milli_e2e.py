"""The milli path end to end over real sockets: underlying ticks in, ``chain.<sym>`` and
``corr`` frames out, equal to the numpy reference for the prices they say they used."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.dispatch.helpers import EngineRig, SleepJob, reference_greeks
from tests.waiting import wait_until
from tickpath.engine.wire import schema as s
from tickpath.kernels import batch

GREEKS = ("price", "delta", "gamma", "vega", "theta", "rho")
CHAIN = {
    "underlying": 0,
    "strikes": [90.0, 100.0, 110.0],
    "expiries": [0.25, 0.5],
    "vol": 0.3,
    "rate": 0.02,
    "dividend": 0.01,
    "option_symbol_base": 10,  # 12 contracts quoted on symbols 10..21
}


@pytest.fixture(scope="module")
def rig():
    r = EngineRig(
        dispatch={
            "chains": [CHAIN],
            "correlation": {"symbols": [0, 1, 2], "sample_interval_s": 0.02, "every_samples": 3},
        }
    )
    yield r
    r.close()


def assert_reference(records: np.ndarray) -> None:
    ref = reference_greeks(records)
    for name in GREEKS:
        np.testing.assert_allclose(records[name], getattr(ref, name), rtol=1e-12, atol=1e-12)


def test_underlying_ticks_reprice_the_chain(rig):
    seq_quote = rig.quote(0, 100.0)
    ((topic, header, rec),) = rig.results(b"chain.")
    assert topic == b"chain.0"
    assert int(header["kind"]) == s.KIND_RESULT_CHAIN and int(header["stream_id"]) == 0
    assert int(header["count"]) == 12 and len(rec) == 12
    assert rec.dtype == s.RESULT_CHAIN
    assert np.all(rec["underlying"] == 100.0) and np.all(rec["symbol"] == 0)
    assert np.all(rec["in_seq"] == seq_quote) and np.all(rec["in_stream"] == 1)
    assert np.all(rec["recv_ns"] <= rec["done_ns"])
    assert rec["option_symbol"].tolist() == list(range(10, 22))
    assert np.all(rec["backend"] == s.BACKEND_CODES["cpu"])  # no GPU here
    assert np.all(rec["sigma"] == 0.3) and np.all(np.isnan(rec["implied_vol"]))
    assert_reference(rec)
    first_seq = int(header["seq"])

    rig.trade(0, 100.7)  # a trade of the underlying reprices too
    ((_, header, rec),) = rig.results(b"chain.")
    assert np.all(rec["underlying"] == 100.7)
    assert int(header["seq"]) == first_seq + 12  # sequence numbers count records
    assert_reference(rec)


def test_option_quotes_give_implied_vols(rig):
    rig.quote(0, 100.0)
    rig.results(b"chain.")
    index = 3  # expiry 0.25, strike 100, put
    strike, expiry, call = 100.0, 0.25, False
    price = float(batch.black_scholes_price(100.0, strike, expiry, 0.02, 0.01, 0.42, call,
                                            backend="numpy"))  # fmt: skip
    rig.quote(10 + index, price)  # the option's quote: mid = price, rounded to ticks
    ((_, _, rec),) = rig.results(b"chain.")
    quoted = rec[index]
    assert quoted["flags"] & s.RESULT_FLAG_QUOTED
    assert quoted["option_mid"] == pytest.approx(price, abs=5e-5)
    want = batch.implied_vol(quoted["option_mid"], 100.0, strike, expiry, 0.02, 0.01, call,
                             backend="numpy").sigma  # fmt: skip
    assert quoted["implied_vol"] == pytest.approx(float(want), abs=1e-10)
    assert quoted["implied_vol"] == pytest.approx(0.42, abs=1e-3)
    others = np.delete(rec, index)
    assert np.all(np.isnan(others["implied_vol"]))
    assert_reference(rec)


def test_a_burst_of_ticks_is_coalesced_to_the_newest_price():
    # the test holds the in-process stream lane busy: worker threads in this process
    rig = EngineRig(dispatch={"chains": [CHAIN], "stream_isolation": "thread"})
    try:
        stats = rig.milli.stats
        before = stats()["lanes"]["stream"]
        submitted = stats()["chains"]["0"]["submitted"]
        # the stream lane's one worker is held busy while the burst arrives, so every
        # repricing of the burst waits in the queue, where the newest replaces the others
        blocker = SleepJob(None, [])
        assert rig.milli.dispatcher.submit(blocker, "stream")
        assert blocker.started.wait(120)
        mids = 100.0 + np.arange(200) * 0.01
        for mid in mids:
            rig.quote(0, float(mid))
        wait_until(lambda: stats()["chains"]["0"]["submitted"] - submitted == 200,
                   what=lambda: f"200 repricings submitted: {stats()['chains']['0']}")  # fmt: skip
        blocker.release.set()
        frames = rig.results_until(b"chain.", lambda rec: rec["underlying"][0] == mids[-1])
        assert len(frames) == 1  # 200 ticks, one repricing, at the newest price
        assert np.all(frames[0][2]["underlying"] == pytest.approx(mids[-1]))
        assert_reference(frames[0][2])
        lane = wait_until(
            lambda: (
                (lane := stats()["lanes"]["stream"])["completed"] - before["completed"] == 2
                and lane
            ),
            what="the blocker and the one repricing completed",
        )
        assert lane["coalesced"] - before["coalesced"] == 199 and lane["depth"] == 0
        # the counter moves on the engine thread, after the frame left: wait for it
        wait_until(lambda: stats()["chains"]["0"]["published"] >= 1, what="the publish counted")
        assert stats()["chains"]["0"]["published"] == 1
    finally:
        rig.close()


def test_correlation_topic(rig):
    rng = np.random.default_rng(5)
    prices = np.array([100.0, 50.0, 20.0])
    deadline = time.monotonic() + 120
    got = []
    while not got:
        assert time.monotonic() < deadline, "no corr frame within 120 s"
        prices *= np.exp(rng.normal(0, 0.002, 3))
        for symbol, price in enumerate(prices):
            rig.quote(symbol, float(price))
        while rig.sub.poll(10):  # a 10 ms poll paces the ticks
            topic, payload = rig.sub.recv_multipart()
            if topic == b"corr":
                got.append(payload)
    from tickpath.engine.wire import codec

    header, rec = codec.decode_frame(got[0])
    assert int(header["kind"]) == s.KIND_RESULT_CORR and int(header["count"]) == 6
    assert list(zip(rec["symbol"].tolist(), rec["symbol_b"].tolist())) == [
        (0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]  # fmt: skip
    assert np.all(rec["n_rows"] >= 3) and np.all(rec["n_symbols"] == 3)
    assert np.all(rec["covariance"][[0, 3, 5]] > 0)
    np.testing.assert_allclose(rec["correlation"][[0, 3, 5]], 1.0)
    assert np.all(np.abs(rec["correlation"]) <= 1.0)
    # the stream process's counters reach the engine's stats in its next snapshot
    wait_until(
        lambda: rig.engine.stats()["dispatch"].get("correlation", {}).get("samples", 0) >= 3,
        what=lambda: f"3 samples counted: {rig.engine.stats()['dispatch'].get('correlation')}",
    )
    assert rig.engine.stats()["dispatch"]["published"]["corr_frames"] >= 1


def test_stats_show_routing_lanes_and_chains(rig):
    stats = rig.engine.stats()["dispatch"]
    assert stats["routing"]["chain"]["route"] == "cpu"
    assert stats["routing"]["tick"]["route"] == "cpu"
    assert stats["lanes"]["stream"]["completed"] >= 1
    assert stats["chains"]["0"]["contracts"] == 12
    assert stats["pipe"]["dropped"] == 0
