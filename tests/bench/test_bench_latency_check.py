"""bench latency's plan and self-check, on runs simulated in-process (no sockets).

The engine's results come from a real StreamProcessor fed the plan's frames,
so a correct run must pass the check; then one result at a time is corrupted,
renamed or dropped, and the check (or the loss count) must notice.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine.bench import latency as lb
from engine.bench.roles import ECHO_STAMPS, FULL_ROW_BYTES, PREFIX_BYTES
from engine.config import load_config
from engine.service.engine import StreamProcessor
from engine.wire import schema as s


def simulate(opts: lb.LatencyOptions, plan: lb.Plan) -> lb.RunData:
    """What the subscriber would have saved had every frame gone through a perfect run."""
    config = load_config(None, {"analytics.n_symbols": opts.symbols})
    proc = StreamProcessor(config)
    proc.warm_up()
    t0 = time.time_ns() - 60 * 10**9  # in the past: the kernel's done_ns comes later
    rows: list[bytes] = []
    arrival: list[int] = []
    for i in range(len(plan.due_ns)):
        due = t0 + int(plan.due_ns[i])
        frame = bytearray(plan.flat[plan.offset[i] : plan.offset[i] + plan.length[i]].tobytes())
        frame[24:32] = np.int64(due).tobytes()  # the publisher's stamp: the intended time
        if plan.target[i] == lb.TARGET_ECHO:
            payload = bytearray(frame) + bytes(max(0, ECHO_STAMPS.stop - len(frame)))
            payload[ECHO_STAMPS] = np.array([due + 15_000, due + 16_000], np.int64).tobytes()
            rows.append(bytes(payload))
            arrival.append(due + 40_000)
            continue
        for _, result_frame in proc.feed(bytes(frame), recv_ns=due + 30_000):
            rows.append(result_frame.tobytes())  # header + result record, as published
            arrival.append(int(result_frame["done_ns"]) + 50_000)
    full = np.zeros((len(rows), FULL_ROW_BYTES), np.uint8)
    for j, row in enumerate(rows):
        full[j, : len(row)] = np.frombuffer(row, np.uint8)
    stats = proc.stats(0)
    return lb.RunData(
        t0_ns=t0,
        sent_ns=plan.due_ns + t0 + 5_000,
        prefix=full[:, :PREFIX_BYTES].copy(),
        arrival=np.array(arrival, np.int64),
        full=full,
        full_every=1,
        overflow=0,
        engine_stats=stats,
        engine_config=config,
    )


@pytest.fixture(scope="module", params=[1, 3], ids=["single-record", "batch-3"])
def run(request):
    opts = lb.LatencyOptions(rate=400.0, duration=1.0, warmup=0.25, batch=request.param,
                             symbols=4, slice_s=0.25)  # fmt: skip
    plan = lb.build_plan(opts)
    return opts, plan, simulate(opts, plan)


def test_plan_interleaves_the_topologies_in_slices(run):
    opts, plan, _ = run
    slice_ns = int(opts.slice_s * 1e9)
    own_slice = (plan.due_ns // slice_ns) % 2
    assert np.array_equal(own_slice, plan.target)  # engine in even slices, echo in odd
    assert np.all(np.diff(plan.due_ns) >= 0)
    for target in (lb.TARGET_ENGINE, lb.TARGET_ECHO):
        frames = plan.send_frame[plan.target == target]
        assert np.array_equal(frames, np.arange(len(plan.frames)))  # every frame, in order
    assert plan.measured.sum() == len(plan.frames) - np.ceil(opts.warmup * opts.rate / opts.batch)


def test_a_correct_run_passes(run):
    opts, plan, data = run
    result = lb.analyse(opts, plan, data)
    check = result["self_check"]
    assert check["ok"], check["errors"]
    assert check["checked"]["sampled quote results equal the reference"] > 0
    assert check["checked"]["sampled trade results equal the reference"] > 0
    assert not check["skipped"]
    micro = result["paths"]["micro"]["cpu"]
    assert result["loss"]["records_lost"] == 0
    assert micro["ticks_measured"] == result["loss"]["ticks_measured"]
    conflated = np.unique(plan.rec_last[plan.measured[plan.rec_frame]]).size
    assert micro["latency"]["count"] == micro["results_received"] == conflated
    assert result["baseline"]["latency"]["count"] == plan.measured.sum()
    baseline = result["baseline"]
    assert baseline["latency"]["p50"] == pytest.approx(40.0, rel=1e-3)
    assert baseline["stages"]["wire_in"]["p50"] == pytest.approx(15.0, rel=1e-3)
    assert baseline["stages"]["echo"]["max"] == 1.0
    assert baseline["stages"]["publish"]["p50"] == pytest.approx(24.0, rel=1e-3)
    assert list(result["paths"]) == ["micro"] and list(result["paths"]["micro"]) == ["cpu"]


def _rows_of(data, kind):
    return np.flatnonzero(data.full[:, 6:8].copy().view("<u2").ravel() == kind)


def _mutated(data, row, start, value):
    full = data.full.copy()
    full[row, start : start + len(value)] = np.frombuffer(value, np.uint8)
    return lb.RunData(**{**vars(data), "full": full, "prefix": full[:, :PREFIX_BYTES].copy()})


def test_a_wrong_quote_value_fails_the_check(run):
    opts, plan, data = run
    row = _rows_of(data, s.KIND_RESULT_QUOTE)[5]
    mid = s.HEADER_SIZE + s.RESULT_QUOTE.fields["mid"][1]
    value = np.frombuffer(data.full[row, mid : mid + 8].tobytes(), np.float64)[0]
    bad = _mutated(data, row, mid, np.float64(value * (1 + 1e-9)).tobytes())
    check = lb.analyse(opts, plan, bad)["self_check"]
    assert not check["ok"]
    assert check["failed"] == {"sampled quote results equal the reference": 1}


def test_a_wrong_ema_fails_the_check(run):
    opts, plan, data = run
    row = _rows_of(data, s.KIND_RESULT_TRADE)[-1]
    ema = s.HEADER_SIZE + s.RESULT_TRADE.fields["ema"][1]
    bad = _mutated(data, row, ema, np.float64(1.0).tobytes())
    check = lb.analyse(opts, plan, bad)["self_check"]
    assert check["failed"] == {"sampled trade results equal the reference": 1}


def test_a_result_naming_another_tick_fails_the_check(run):
    opts, plan, data = run
    row = _rows_of(data, s.KIND_RESULT_BOOK)[3]
    in_seq = s.HEADER_SIZE + s.RESULT_BOOK.fields["in_seq"][1]
    seq = int(np.frombuffer(data.full[row, in_seq : in_seq + 8].tobytes(), np.uint64)[0])
    other = int(np.flatnonzero(plan.rec_symbol != plan.rec_symbol[seq])[0])
    check = lb.analyse(opts, plan, _mutated(data, row, in_seq, np.uint64(other).tobytes()))[
        "self_check"
    ]
    assert not check["ok"]
    assert "result symbol/ts_ns/in_stream/kind match the tick" in check["failed"]


def test_a_dropped_result_is_counted_as_lost(run):
    opts, plan, data = run
    rows = _rows_of(data, s.KIND_RESULT_QUOTE)
    keep = np.ones(len(data.arrival), bool)
    keep[rows[len(rows) // 2]] = False  # a measured result, not the last of its topic
    dropped = lb.RunData(
        **{
            **vars(data),
            "full": data.full[keep],
            "prefix": data.prefix[keep],
            "arrival": data.arrival[keep],
        }
    )
    result = lb.analyse(opts, plan, dropped)
    lost = result["loss"]["records_lost"]
    assert lost >= 1  # with batches, the result stood for every quote of its symbol in the frame
    assert lost == result["paths"]["micro"]["cpu"]["records_lost"]
    assert result["loss"]["result_seq_gaps"] == 1


@pytest.mark.parametrize(
    "change, message",
    [
        ({"rate": 0.0}, "--rate"),
        ({"duration": -1.0}, "--duration"),
        ({"batch": 0}, "--batch"),
        ({"rate": 1.0, "duration": 0.5, "warmup": 0.0}, "frames per topology"),
    ],
)
def test_options_are_validated(change, message):
    with pytest.raises(ValueError, match=message):
        lb.LatencyOptions(**change).check()
