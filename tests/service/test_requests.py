"""The ROUTER request endpoint over real sockets: valid jobs answered with the kernels'
results, malformed and invalid ones with clear error replies, the service unharmed."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import msgspec
import numpy as np
import pytest
import zmq

from tests.dispatch.helpers import EngineRig
from tickpath.engine.service.requests import decode_reply, encode_request, request
from tickpath.kernels import batch

REPO = Path(__file__).resolve().parents[2]
GREEKS = ("price", "delta", "gamma", "vega", "theta", "rho")
CHAIN_JOB = {
    "type": "price_chain",
    "id": "job-1",
    "spot": 100.0,
    "strike": [80.0, 95.0, 100.0, 105.0, 130.0],
    "expiry": [0.1, 0.25, 0.5, 1.0, 2.0],
    "vol": 0.25,
    "call": [True, False, True, False, True],
    "rate": 0.02,
    "dividend": 0.01,
}


@pytest.fixture(scope="module")
def rig():
    r = EngineRig(dispatch={"requests": {"max_items": 5_000_000}}, requests=True)
    yield r
    r.close()


def ask(rig, job, **kwargs):
    return request(rig.request_endpoint, job, timeout_s=30, **kwargs)


def reference_chain(job):
    return batch.black_scholes(
        job["spot"], np.asarray(job["strike"]), np.asarray(job["expiry"]), job["rate"],
        job["dividend"], job["vol"], np.asarray(job["call"]), backend="numpy",
    )  # fmt: skip


@pytest.mark.parametrize("use_msgpack", [False, True])
def test_price_chain(rig, use_msgpack):
    reply = ask(rig, CHAIN_JOB, use_msgpack=use_msgpack)
    assert reply["ok"] is True and reply["id"] == "job-1" and reply["type"] == "price_chain"
    assert reply["backend"] == "cpu" and reply["fallback"] is None
    ref = reference_chain(CHAIN_JOB)
    for name in GREEKS:
        got = np.asarray(reply["result"][name], np.float64)
        np.testing.assert_allclose(got, getattr(ref, name), rtol=1e-12, atol=1e-12)


def test_price_chain_with_binary_arrays(rig):
    rng = np.random.default_rng(1)
    n = 10_000
    job = {
        "type": "price_chain", "spot": 100.0, "strike": rng.uniform(50, 150, n),
        "expiry": rng.uniform(0.01, 3, n), "vol": rng.uniform(0.05, 0.9, n),
        "call": rng.random(n) < 0.5, "rate": 0.01,
    }  # fmt: skip
    body = encode_request(job, use_msgpack=True)
    assert len(body) < n * 30  # raw float64 bytes, not a list of numbers
    reply = ask(rig, body)
    assert reply["ok"], reply
    ref = batch.black_scholes(100.0, job["strike"], job["expiry"], 0.01, 0.0, job["vol"],
                              job["call"], backend="numpy")  # fmt: skip
    assert isinstance(reply["result"]["price"], np.ndarray)
    np.testing.assert_allclose(reply["result"]["price"], ref.price, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(reply["result"]["delta"], ref.delta, rtol=1e-11, atol=1e-11)


def test_iv_surface(rig):
    strikes = np.array([80.0, 100.0, 120.0])
    expiries = np.array([0.25, 1.0])
    true = np.array([[0.30, 0.25, 0.28], [0.22, 0.2, 0.21]])
    K, T = np.meshgrid(strikes, expiries)
    prices = np.asarray(batch.black_scholes_price(100.0, K, T, 0.01, 0.0, true, True,
                                                  backend="numpy"))  # fmt: skip
    prices[1, 2] = 1000.0  # above the upper bound: no vol (NaN, null in JSON)
    job = {
        "type": "iv_surface", "id": 7, "spot": 100.0, "strikes": strikes.tolist(),
        "expiries": expiries.tolist(), "prices": prices.ravel().tolist(), "rate": 0.01,
    }  # fmt: skip
    for use_msgpack in (False, True):
        reply = ask(rig, job, use_msgpack=use_msgpack)
        assert reply["ok"], reply
        result = reply["result"]
        sigma = np.array(result["sigma"], dtype=np.float64)  # JSON null -> nan
        assert sigma.shape == (2, 3) and result["shape"] == [2, 3] and result["n_nan"] == 1
        assert np.isnan(sigma[1, 2])
        np.testing.assert_allclose(np.delete(sigma.ravel(), 5), np.delete(true.ravel(), 5),
                                   atol=1e-10)  # fmt: skip


def test_var_matches_the_kernel(rig):
    corr = [[1.0, 0.3, -0.2], [0.3, 1.0, 0.1], [-0.2, 0.1, 1.0]]
    job = {
        "type": "var", "id": "v", "spot": [100.0, 40.0, 10.0], "position": [5.0, -10.0, 20.0],
        "vol": [0.2, 0.4, 0.3], "correlation": corr, "horizon": 0.02, "confidence": 0.975,
        "n_scenarios": 20_000, "seed": 11,
    }  # fmt: skip
    reply = ask(rig, job)
    assert reply["ok"], reply
    want = batch.portfolio_var(
        job["spot"], job["position"], job["vol"], corr, horizon=0.02, confidence=0.975,
        n_scenarios=20_000, seed=11, backend="cpu",
    )  # fmt: skip
    assert reply["result"]["var"] == want.var
    assert reply["result"]["expected_shortfall"] == want.expected_shortfall
    assert reply["result"]["n_scenarios"] == 20_000


BAD = [
    (b"this is not json {", "malformed", "read as msgpack) request: Expected `object`"),
    (b'{"type": "price_chain", "spot": 1', "malformed", "not a valid json"),
    (b"\x93\x01\x02\x03", "malformed", "Expected `object`"),
    (b'{"type": "teleport", "spot": 1}', "malformed", "Invalid value 'teleport'"),
    (b'{"type": "var", "spot": [1.0]}', "malformed", "missing required field `position`"),
    (b'{"type": "price_chain", "spot": "100", "strike": 1, "expiry": 1, "vol": 1, "call": true}',
     "malformed", "Expected `float`, got `str`"),
    (b'{"type": "price_chain", "spot": 100, "strike": 1, "expiry": 1, "vol": 1, "call": true,'
     b' "colour": "red"}', "malformed", "unknown field `colour`"),
    (b'{"type": "price_chain", "spot": 100, "strike": [-5, 5], "expiry": 1, "vol": 1,'
     b' "call": true}', "invalid", "strike must be > 0"),
    (b'{"type": "price_chain", "spot": 100, "strike": [1, 2, 3], "expiry": [1, 2], "vol": 1,'
     b' "call": true}', "invalid", "lengths do not broadcast"),
    (b'{"type": "price_chain", "spot": 100, "strike": 1, "expiry": 1, "vol": 1, "call": true,'
     b' "backend": "abacus"}', "invalid", "no backend named 'abacus'"),
    (b'{"type": "iv_surface", "spot": 100, "strikes": [1, 2], "expiries": [1], "prices": [1]}',
     "invalid", "prices has 1 values"),
    (b'{"type": "var", "spot": [1, 1], "position": [1, 1], "vol": [0.1, 0.1], "horizon": 1,'
     b' "correlation": [[1, 2], [2, 1]]}', "invalid", "not positive definite"),
    (b'{"type": "var", "spot": [1], "position": [1], "vol": [0.1], "horizon": 1,'
     b' "correlation": [[1]], "n_scenarios": 6000000}', "too_large", "max_items"),
    (b'{"type": "price_chain", "spot": 100, "strike": 1, "expiry": 1, "vol": 1, "call": true,'
     b' "deadline_ms": 0.000001}', "expired", "deadline passed"),
    # 150,000 nested objects, under the 1 MiB JSON cap (before: the decoder's
    # RecursionError was answered `invalid`)
    (b'{"a":' * 150_000 + b"1" + b"}" * 150_000, "malformed", "nested too deeply"),
]  # fmt: skip


@pytest.mark.parametrize("body, code, message", BAD)
def test_bad_requests_get_clear_error_replies(rig, body, code, message):
    before = rig.engine.stats()["requests"]
    reply = ask(rig, body)
    assert reply["ok"] is False, reply
    assert reply["error"]["code"] == code
    assert message in reply["error"]["message"]
    assert ask(rig, CHAIN_JOB)["ok"]  # the service is unharmed
    after = rig.engine.stats()["requests"]
    assert after["errors"].get(code, 0) == before["errors"].get(code, 0) + 1
    assert after["replied_ok"] == before["replied_ok"] + 1


def test_more_than_one_body_frame_is_refused(rig):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(rig.request_endpoint)
    try:
        sock.send_multipart([b"", b"{}", b"{}"])
        assert sock.poll(10_000)
        reply = decode_reply(sock.recv_multipart()[-1])
        assert (
            reply["error"]["code"] == "malformed" and "one body frame" in reply["error"]["message"]
        )
        sock.send_multipart([b"", msgspec.json.encode(CHAIN_JOB)])  # REQ-style envelope
        assert sock.poll(10_000)
        parts = sock.recv_multipart()
        assert parts[0] == b"" and decode_reply(parts[1])["ok"]
    finally:
        sock.close()


def test_a_full_request_queue_answers_busy():
    rig = EngineRig(dispatch={"lanes": {"requests": {"capacity": 1}},
                              "requests": {"max_items": 50_000_000}}, requests=True)  # fmt: skip
    try:
        n = 3_000_000
        job = {"type": "price_chain", "spot": 100.0, "strike": np.full(n, 100.0), "expiry": 1.0,
               "vol": 0.2, "call": True, "greeks": False}  # fmt: skip
        slow = encode_request(job, use_msgpack=True)
        replies = [None] * 4

        def send(i):
            replies[i] = request(rig.request_endpoint, slow, timeout_s=60)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        codes = sorted("ok" if r["ok"] else r["error"]["code"] for r in replies)
        assert codes.count("busy") >= 1 and codes.count("ok") >= 1, codes
        busy = next(r for r in replies if not r["ok"])
        assert "request queue full (1 queued)" in busy["error"]["message"]
        stats = rig.engine.stats()
        assert stats["requests"]["errors"]["busy"] == codes.count("busy")
        assert stats["dispatch"]["lanes"]["requests"]["refused"] == codes.count("busy")
    finally:
        rig.close()


def test_request_cli(rig, tmp_path):
    good = tmp_path / "job.json"
    good.write_text(msgspec.json.encode(CHAIN_JOB).decode())
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "price_chain"}')
    for path, status, ok in ((good, 0, True), (bad, 1, False)):
        proc = subprocess.run(
            [sys.executable, "-m", "tickpath", "request", "--endpoint", rig.request_endpoint,
             "--file", str(path), "--msgpack"],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == status, proc.stderr
        reply = msgspec.json.decode(proc.stdout)
        assert reply["ok"] is ok
        if ok:
            np.testing.assert_allclose(reply["result"]["price"], reference_chain(CHAIN_JOB).price,
                                       rtol=1e-12)  # fmt: skip
        else:
            assert "missing required field" in reply["error"]["message"]


def test_price_only(rig):
    reply = ask(rig, {**CHAIN_JOB, "greeks": False}, use_msgpack=True)
    assert reply["ok"] and set(reply["result"]) == {"price"}
    np.testing.assert_allclose(reply["result"]["price"], reference_chain(CHAIN_JOB).price,
                               rtol=1e-12)  # fmt: skip
