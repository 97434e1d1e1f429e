"""bench latency's plan and self-check, on runs simulated in-process (no sockets).

The engine's results come from a real StreamProcessor fed the plan's frames,
so a correct run must pass the check; then one result at a time is corrupted,
renamed or dropped, and the check (or the loss count) must notice.  Chain
results (milli path) are priced by the numba kernels for the contracts the
engine reads from the config the benchmark writes, one per triggering tick
except every third (as if coalesced).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tickpath.engine.bench import latency as lb
from tickpath.engine.bench.roles import ECHO_STAMPS, FULL_ROW_BYTES, PREFIX_BYTES
from tickpath.engine.config import load_config
from tickpath.engine.service.engine import StreamProcessor
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s


def simulate(opts: lb.LatencyOptions, plan: lb.Plan, config_dir=None) -> lb.RunData:
    """What the subscriber would have saved had every frame gone through a perfect run."""
    if opts.chains:  # the engine's config as the benchmark writes it
        path = config_dir / "engine.toml"
        path.write_text(
            lb._engine_config_toml(opts, plan, "tcp://127.0.0.1:1", "tcp://127.0.0.1:2")
        )
        config = load_config(path)
    else:
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
    stats = proc.stats(0)
    chain_rows = simulate_chains(opts, plan, config, t0, rows, arrival, stats)
    full = np.zeros((len(rows), FULL_ROW_BYTES), np.uint8)
    prefix = np.zeros((len(rows), PREFIX_BYTES), np.uint8)
    for j, row in enumerate(rows):
        full[j, : min(len(row), FULL_ROW_BYTES)] = np.frombuffer(row, np.uint8)[:FULL_ROW_BYTES]
        prefix[j, : min(len(row), PREFIX_BYTES)] = np.frombuffer(row, np.uint8)[:PREFIX_BYTES]
    chain_full = np.zeros((len(chain_rows), lb.chain_frame_bytes(opts)), np.uint8)
    for j, i in enumerate(chain_rows):
        chain_full[j] = np.frombuffer(rows[i], np.uint8)
    return lb.RunData(
        t0_ns=t0,
        sent_ns=plan.due_ns + t0 + 5_000,
        prefix=prefix,
        arrival=np.array(arrival, np.int64),
        full=full,
        full_every=1,
        overflow=0,
        engine_stats=stats,
        engine_config=config,
        length=np.array([len(row) for row in rows], np.int64),
        stats_at=len(rows),
        chain_full=chain_full,
        chain_at=np.array(chain_rows, np.int64),
    )


def simulate_chains(opts, plan, config, t0, rows, arrival, stats) -> list[int]:
    """Append the chain frames of the run to ``rows``; return their row indices."""
    from tickpath.kernels import black_scholes

    if not opts.chains:
        return []
    due = plan.engine_due() + t0
    triggers = np.flatnonzero(lb.chain_triggers(opts, plan))
    kept = np.delete(triggers, np.arange(2, len(triggers), 3))  # every third: coalesced
    seq = dict.fromkeys(range(opts.chains), 0)
    chain_rows = []
    for tick in kept.tolist():
        u = int(plan.rec_symbol[tick])
        chain = config.dispatch.chains[u]
        assert chain.underlying == u
        n = len(chain.options)
        rec = np.zeros(n, s.RESULT_CHAIN)
        send = int(due[plan.rec_frame[tick]])
        rec["ts_ns"], rec["in_seq"], rec["in_send_ns"] = plan.rec_ts[tick], tick, send
        rec["recv_ns"], rec["done_ns"] = send + 30_000, send + 1_200_000
        rec["in_stream"], rec["symbol"] = lb.ENGINE_STREAM, u
        rec["option_symbol"], rec["index"] = s.NO_SYMBOL, np.arange(n)
        rec["strike"] = [o.strike for o in chain.options]
        rec["expiry"] = [o.expiry for o in chain.options]
        rec["is_call"] = [o.call for o in chain.options]
        rec["backend"] = s.BACKEND_CODES["cpu"]
        rec["underlying"] = lb.tick_prices(plan, np.array([tick]))[0]
        rec["rate"], rec["dividend"], rec["sigma"] = chain.rate, chain.dividend, chain.vol
        rec["option_mid"] = rec["implied_vol"] = np.nan
        bs = black_scholes(rec["underlying"], rec["strike"], rec["expiry"], rec["rate"],
                           rec["dividend"], rec["sigma"], rec["is_call"].astype(bool),
                           backend="cpu")  # fmt: skip
        for greek in lb.CHAIN_GREEKS:
            rec[greek] = getattr(bs, greek)
        chain_rows.append(len(rows))
        rows.append(codec.encode_frame(s.KIND_RESULT_CHAIN, u, seq[u], rec))
        arrival.append(send + 1_400_000)
        seq[u] += n
    published = {str(u): {"published": seq[u] // opts.chain_size} for u in seq}
    lane = {"submitted": len(triggers), "coalesced": len(triggers) - len(kept), "refused": 0,
            "late": 0, "fused": 0, "failed": 0}  # fmt: skip
    backends = {"cpu": {"jobs": len(kept), "items": len(kept) * opts.chain_size,
                        "busy_us": 50 * len(kept)}}  # fmt: skip
    stats["dispatch"] = {"chains": published, "lanes": {"stream": lane}, "backends": backends}
    return chain_rows


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
        ({"chains": 9}, "--chains must be in 0..8"),
        ({"chains": -1}, "--chains"),
        ({"chains": 2, "chain_size": 0}, "--chain-size"),
        ({"chains": 2, "chain_size": 100_001}, "--chain-size"),
    ],
)
def test_options_are_validated(change, message):
    with pytest.raises(ValueError, match=message):
        lb.LatencyOptions(**change).check()


# ---------------------------------------------------------------------------
# The milli route: chain results
# ---------------------------------------------------------------------------

CHAIN_CHECKS = (
    "chain results arrive for measured ticks",
    "no chain repricing failed (engine stats)",
    "chain result in_seq names a tick that was sent",
    "chain result names a trade or quote of its underlying",
    "chain result in_send_ns is the frame's intended time",
    "chain result names a tick that triggers a repricing",
    "at most one chain result per tick",
    "chain frame holds --chain-size records",
    "every chain frame published arrived",
    "sampled chain contracts are the configured ones",
    "sampled chain underlying is the triggering tick's price",
    "sampled chain prices and greeks equal the numpy reference",
)


@pytest.fixture(scope="module", params=[1, 3], ids=["single-record", "batch-3"])
def chain_run(request, tmp_path_factory):
    opts = lb.LatencyOptions(rate=400.0, duration=1.0, warmup=0.25, batch=request.param,
                             symbols=4, slice_s=0.25, chains=2, chain_size=12)  # fmt: skip
    plan = lb.build_plan(opts)
    return opts, plan, simulate(opts, plan, tmp_path_factory.mktemp("chains"))


def test_chain_contracts_cover_the_expiries_calls_puts_and_strikes():
    c = lb.chain_contracts(200.0, 100)
    assert len(c) == 100
    assert set(c["expiry"].tolist()) == set(lb.CHAIN_EXPIRIES)
    assert c["is_call"].sum() == 52  # 13 strikes, the last one with 4 calls only
    assert c["strike"].min() == 160.0 and c["strike"].max() == 240.0
    assert len(np.unique(c["strike"])) == 13
    assert len(np.unique(c[["strike", "expiry", "is_call"]])) == 100  # no contract twice
    assert lb.chain_contracts(50.0, 1)["strike"].tolist() == [50.0]


def test_a_correct_chain_run_passes(chain_run):
    opts, plan, data = chain_run
    result = lb.analyse(opts, plan, data)
    check = result["self_check"]
    assert check["ok"], check["errors"]
    for name in CHAIN_CHECKS:
        assert check["checked"][name] > 0, name
    n_frames = len(data.chain_at)
    assert check["checked"]["sampled chain prices and greeks equal the numpy reference"] == (
        n_frames * opts.chain_size
    )
    assert list(result["paths"]) == ["micro", "milli"]
    assert list(result["paths"]["milli"]) == ["cpu"]
    milli = result["paths"]["milli"]["cpu"]
    rec = data.chain_full[:, s.HEADER_SIZE :].copy().view(s.RESULT_CHAIN)[:, 0]
    measured = plan.measured[plan.rec_frame[rec["in_seq"].astype(np.int64)]]
    assert 0 < milli["results_received"] == milli["latency"]["count"] == measured.sum()
    assert milli["latency"]["p50"] == pytest.approx(1400.0, rel=1e-3)  # arrival - in_send_ns
    assert milli["stages"]["wire_in"]["p50"] == pytest.approx(30.0, rel=1e-3)
    assert milli["stages"]["queue_compute"]["p50"] == pytest.approx(1170.0, rel=1e-3)
    assert milli["stages"]["publish"]["p50"] == pytest.approx(200.0, rel=1e-3)
    triggers = lb.chain_triggers(opts, plan) & plan.measured[plan.rec_frame]
    assert milli["ticks_measured"] == triggers.sum() > milli["results_received"]
    assert milli["repricings"]["published"] == n_frames
    assert milli["repricings"]["coalesced"] > 0
    assert milli["contracts_per_result"] == 12 and milli["underlyings"] == 2
    assert milli["ratio_to_baseline"]["p50"] > 1
    assert result["loss"]["result_seq_gaps"] == 0  # seq counts records: steps of 12


def _chain_mutated(data, k, record, field, value):
    """``data`` with one field of record ``record`` of kept chain frame ``k`` replaced."""
    chain_full = data.chain_full.copy()
    start = s.HEADER_SIZE + record * s.RESULT_CHAIN_SIZE + s.RESULT_CHAIN.fields[field][1]
    raw = np.asarray(value, s.RESULT_CHAIN.fields[field][0]).tobytes()
    chain_full[k, start : start + len(raw)] = np.frombuffer(raw, np.uint8)
    prefix = data.prefix.copy()
    prefix[data.chain_at[k]] = chain_full[k, :PREFIX_BYTES]  # as the subscriber saves it
    return lb.RunData(**{**vars(data), "chain_full": chain_full, "prefix": prefix})


def _chain_record(data, k, record):
    return data.chain_full[k, s.HEADER_SIZE :].copy().view(s.RESULT_CHAIN)[record]


def test_a_wrong_chain_greek_fails_the_check(chain_run):
    opts, plan, data = chain_run
    gamma = float(_chain_record(data, 3, 5)["gamma"])
    bad = _chain_mutated(data, 3, 5, "gamma", gamma * (1 + 1e-8))
    check = lb.analyse(opts, plan, bad)["self_check"]
    assert check["failed"] == {"sampled chain prices and greeks equal the numpy reference": 1}


def test_a_chain_priced_at_another_price_fails_the_check(chain_run):
    opts, plan, data = chain_run
    k = len(data.chain_at) // 2
    chain_full = data.chain_full.copy()
    rec = chain_full[k, s.HEADER_SIZE :].view(s.RESULT_CHAIN)
    from tickpath.kernels import black_scholes

    rec["underlying"] += 0.01  # consistent greeks, at a price the tick did not have
    bs = black_scholes(rec["underlying"], rec["strike"], rec["expiry"], rec["rate"],
                       rec["dividend"], rec["sigma"], rec["is_call"].astype(bool))  # fmt: skip
    for greek in lb.CHAIN_GREEKS:
        rec[greek] = getattr(bs, greek)
    bad = lb.RunData(**{**vars(data), "chain_full": chain_full})
    check = lb.analyse(opts, plan, bad)["self_check"]
    assert check["failed"] == {
        "sampled chain underlying is the triggering tick's price": opts.chain_size
    }


def test_a_wrong_chain_contract_fails_the_check(chain_run):
    opts, plan, data = chain_run
    bad = _chain_mutated(data, 0, 7, "is_call", not _chain_record(data, 0, 7)["is_call"])
    check = lb.analyse(opts, plan, bad)["self_check"]
    assert check["failed"]["sampled chain contracts are the configured ones"] == 1


def test_a_chain_result_naming_another_tick_fails_the_check(chain_run):
    opts, plan, data = chain_run
    seq = int(_chain_record(data, 2, 0)["in_seq"])
    other = int(np.flatnonzero(plan.rec_symbol != plan.rec_symbol[seq])[0])
    check = lb.analyse(opts, plan, _chain_mutated(data, 2, 0, "in_seq", other))["self_check"]
    assert not check["ok"]
    assert check["failed"]["chain result names a trade or quote of its underlying"] == 1
    assert check["failed"]["sampled chain records share their frame's tick, in contract order"]


def test_a_lost_chain_frame_is_noticed(chain_run):
    opts, plan, data = chain_run
    keep = np.ones(len(data.arrival), bool)
    lost = data.chain_at[len(data.chain_at) // 2]
    keep[lost] = False
    remaining = np.cumsum(keep) - 1
    dropped = lb.RunData(
        **{
            **vars(data),
            "prefix": data.prefix[keep],
            "full": data.full[keep],
            "arrival": data.arrival[keep],
            "length": data.length[keep],
            "stats_at": int(keep.sum()),
            "chain_full": np.delete(data.chain_full, len(data.chain_at) // 2, axis=0),
            "chain_at": remaining[np.delete(data.chain_at, len(data.chain_at) // 2)],
        }
    )
    result = lb.analyse(opts, plan, dropped)
    assert result["self_check"]["failed"] == {"every chain frame published arrived": 1}
    assert result["loss"]["result_seq_gaps"] == 1 and result["loss"]["results_lost_by_seq"] == 1


def test_chain_results_without_chains_fail_the_check(chain_run):
    opts, plan, data = chain_run
    check = lb.analyse(lb.LatencyOptions(**{**vars(opts), "chains": 0}), plan, data)["self_check"]
    assert check["failed"]["no chain result without --chains"] == len(data.chain_at)


def test_failed_repricings_or_no_chain_result_fail_the_check(chain_run):
    opts, plan, data = chain_run
    stats = {**data.engine_stats, "dispatch": {**data.engine_stats["dispatch"]}}
    stats["dispatch"]["lanes"] = {"stream": {**stats["dispatch"]["lanes"]["stream"], "failed": 3}}
    check = lb.analyse(opts, plan, lb.RunData(**{**vars(data), "engine_stats": stats}))
    assert check["self_check"]["failed"] == {"no chain repricing failed (engine stats)": 3}
    micro = np.ones(len(data.arrival), bool)
    micro[data.chain_at] = False  # every chain frame lost, the engine's stats say none
    none = lb.RunData(
        **{
            **vars(data),
            "prefix": data.prefix[micro],
            "full": data.full[micro],
            "arrival": data.arrival[micro],
            "length": data.length[micro],
            "stats_at": int(micro.sum()),
            "chain_full": data.chain_full[:0],
            "chain_at": data.chain_at[:0],
            "engine_stats": {**data.engine_stats, "dispatch": {}},
        }
    )
    result = lb.analyse(opts, plan, none)
    assert result["self_check"]["failed"] == {"chain results arrive for measured ticks": 1}
    assert list(result["paths"]) == ["micro"]
