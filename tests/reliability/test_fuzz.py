"""Hostile input: over 100,000 fuzz cases, every one rejected or accepted exactly as the rules say.

Most cases go straight to ``StreamProcessor.process`` (the code the socket
path runs); a smaller share goes over a real ZeroMQ socket to a running
engine, with real multipart and oversize messages.  After every direct case
each counter is compared with an independent model of the README's rules
(:mod:`tickpath.engine.security.fuzz`); no case may crash or hang (pytest-timeout).
How long the slowest case takes is a figure for bench/fuzz_long.py (``max_case_ms``).

Each test checks the number of cases it ran itself; ``CASES`` is the plan, and
the last test checks that the plan adds up to 100,000 cases (no test depends on
which others ran, or in which order).

Requests to the ROUTER endpoint are fuzzed in test_request_fuzz.py.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.helpers import accounting_holds, drive, processor, small_config
from tests.waiting import DEADLINE_S, wait_until
from tickpath.engine.journal.snapshot import differing_arrays
from tickpath.engine.security import fuzz
from tickpath.engine.service.engine import Engine
from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu import streaming as k
from tickpath.kernels.cpu.streaming_view import CounterView

CONFIG = small_config()
MIXES = 20  # hypothesis examples of test_fuzz_mixes_chosen_by_hypothesis
CRAFTED = 400  # and of test_hypothesis_crafted_frames_match_the_model (1..5 frames each)
# the least number of cases each test runs (each test checks its own)
CASES = {"bulk": 60_000, "mixes": MIXES * 2_000, "crafted": CRAFTED, "socket": 6_000}


@pytest.fixture(scope="module")
def proc():
    return processor(CONFIG)


def _check(report, cases):
    assert report.cases == cases
    assert report.mismatches == 0, report.first_mismatches
    assert accounting_holds(report.stats)
    return report


def test_bulk_seeded_fuzz(proc):
    k.reset_state(proc.state)
    report = _check(fuzz.run(proc, CASES["bulk"], seed=20261129), CASES["bulk"])
    stats = report.stats
    assert stats["frames_accepted"] > 20_000 and stats["records_accepted"] > 50_000
    for reason in s.REJECT_NAMES:  # every reject reason was exercised ...
        if reason != "foreign_shard":  # ... but this one needs a sharded engine (below)
            assert stats["rejected"][reason] > 0, reason
    assert stats["rejected"]["foreign_shard"] == 0
    assert stats["gaps"] > 0 and stats["sequence_resets"] > 0
    assert stats["session_takeovers"] > 0  # the simulated clock's quiet jumps allow failovers
    assert set(report.by_strategy) == set(fuzz.STRATEGIES)


def test_sharded_engine_fuzz_counts_foreign_shard_records_exactly():
    """A replica serving shard 1 of 3: the model predicts every foreign_shard refusal."""
    sharded = processor(small_config(ingest__shard="1/3"))
    report = _check(fuzz.run(sharded, 4_000, seed=20261204), 4_000)
    assert report.stats["rejected"]["foreign_shard"] > 0
    assert report.stats["records_accepted"] > 0


@settings(
    max_examples=MIXES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    weights=st.dictionaries(st.sampled_from(fuzz.STRATEGIES), st.floats(0.0, 5.0), max_size=6),
)
def test_fuzz_mixes_chosen_by_hypothesis(proc, seed, weights):
    if not any(weights.get(name, 1.0) > 0 for name in fuzz.STRATEGIES):
        weights = {}
    k.reset_state(proc.state)
    _check(fuzz.run(proc, 2_000, seed=seed, weights=weights), 2_000)


U64 = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**63, 2**64 - 1]))


@st.composite
def crafted_frames(draw):
    """A header with hypothesis-chosen fields (mostly plausible), records of raw bytes with
    some fields set to edge values."""
    kind = draw(st.sampled_from([1, 2, 3, 1, 2, 3, 0, 4, 17, 0xFFFF]))
    dtype = {1: s.TRADE, 2: s.QUOTE, 3: s.ORDER}.get(kind, s.TRADE)
    n = draw(st.integers(0, 6))
    raw = draw(st.binary(min_size=n * dtype.itemsize, max_size=n * dtype.itemsize))
    records = np.frombuffer(raw, dtype).copy()
    if n:
        edits = draw(
            st.lists(
                st.tuples(
                    st.integers(0, n - 1),
                    st.sampled_from(dtype.names),
                    st.sampled_from([0, 1, -1, 2, 3, 4, 5, 15, 16, 17, -(2**63), 2**63 - 1]),
                ),
                max_size=6,
            )
        )
        for row, name, value in edits:
            info = np.iinfo(dtype[name])
            records[row][name] = min(max(value, int(info.min)), int(info.max))
    header = np.zeros(1, s.HEADER)
    header["magic"] = draw(st.sampled_from([s.MAGIC] * 8 + [0, 0x54504B55]))
    header["version"] = draw(st.sampled_from([s.VERSION] * 8 + [0, 2]))
    header["kind"] = kind
    header["stream_id"] = draw(st.integers(0, 10))
    header["count"] = draw(st.sampled_from([n] * 6 + [0, n + 1, 2**32 - 1]))
    header["seq"] = draw(U64)
    header["send_ns"] = draw(st.integers(-(2**63), 2**63 - 1))
    frame = header.tobytes() + records.tobytes()
    cut = draw(st.sampled_from([None] * 8 + [0, 1, 31, 33]))
    return frame if cut is None else frame[:cut]


@pytest.fixture(scope="module")
def crafted_target():
    target = processor(CONFIG)
    model = fuzz.AccountingModel(
        CONFIG.analytics.n_symbols, CONFIG.ingest.max_streams, CONFIG.ingest.max_frame_bytes
    )
    return target, model


@settings(
    max_examples=CRAFTED,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=st.lists(crafted_frames(), min_size=1, max_size=5))
def test_hypothesis_crafted_frames_match_the_model(crafted_target, frames):
    target, model = crafted_target
    read_tracked = CounterView(target.state.counters).reader(fuzz.TRACKED)
    for frame in frames:
        want = model.expect(frame)
        before = read_tracked()
        drive(target, [frame])
        got = read_tracked() - before
        assert np.array_equal(got, want), (frame[:32].hex(), got, want)
    assert accounting_holds(target.stats(0))


def test_the_oracle_catches_a_miscounting_engine(proc):
    """The harness itself: an engine that skips one message in 500 is caught."""
    k.reset_state(proc.state)
    real = proc.process
    calls = {"n": 0}

    def flaky(nbytes, recv_ns):
        calls["n"] += 1
        return 0 if calls["n"] % 500 == 0 else real(nbytes, recv_ns)

    proc.process = flaky
    try:
        report = fuzz.run(proc, 3_000, seed=3)
    finally:
        del proc.process
    assert report.mismatches >= 5 and "frames" in report.first_mismatches[0]


@pytest.mark.integration
def test_fuzz_over_a_real_socket_matches_direct_processing():
    """Fuzz cases, real multipart and oversize messages, through a running engine."""
    config = small_config(
        **{
            "ingest.endpoints": ["tcp://127.0.0.1:*"],
            "publish.endpoint": "tcp://127.0.0.1:*",
            "publish.stats_interval_s": 0.2,
            # the direct replay below runs with recv_ns 0: the rules that read the clock
            # (record skew, session failover) must decide alike without it
            "ingest.max_clock_skew_s": 0,
            "ingest.failover_s": 86_400,
        }
    )
    context = zmq.Context()
    engine = Engine(config, context)
    engine.start()
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    pub = context.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.setsockopt(zmq.LINGER, 0)
    try:
        pub.connect(engine.receiver.endpoints[0])
        assert pub.poll(int(DEADLINE_S * 1000)), "the engine never subscribed"
        pub.recv()  # its subscription: from here on nothing is dropped for want of one
        fuzzer = fuzz.FrameFuzzer(
            77,
            n_symbols=config.analytics.n_symbols,
            max_streams=config.ingest.max_streams,
            max_frame_bytes=config.ingest.max_frame_bytes,
        )
        sent: list[bytes | int] = []
        oversize = b"\x00" * (config.ingest.max_frame_bytes + 100)
        for _ in range(CASES["socket"]):
            _name, case = fuzzer.next_case()
            if case == fuzz.MULTIPART:
                pub.send_multipart([b"part one", b"part two"])
            elif isinstance(case, int):
                pub.send(oversize)
                case = len(oversize)
            else:
                pub.send(case)
            sent.append(case)
        wait_until(
            lambda: engine.stats()["frames_received"] >= len(sent),
            what=lambda: f"{len(sent)} frames, {engine.stats()['frames_received']} received",
        )
        stats = engine.stats()
    finally:
        engine.stop()
        thread.join(timeout=10)
        pub.close()
        engine.close()
        context.term()
    assert not thread.is_alive()
    assert stats["frames_received"] == len(sent)
    assert accounting_holds(stats)
    assert stats["rejected"]["multipart"] > 0 and stats["rejected"]["oversize"] > 0
    direct = processor(config)
    drive(direct, sent)
    assert differing_arrays(direct.state, engine.processor.state) == []


def test_at_least_100000_cases_are_planned():
    """The module's tests run at least these many cases each (each checks its own)."""
    assert sum(CASES.values()) >= 100_000, CASES
