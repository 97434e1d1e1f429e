"""The real Bitstamp sample: needs the ob-analytics wheel from PyPI (fetched, never committed)."""

import socket
import threading

import numpy as np
import pytest
import zmq

from tickpath.engine.feed.bitstamp import BitstampImportError, import_bitstamp
from tickpath.engine.feed.publisher import run_feed
from tickpath.engine.feed.recording import iter_frames, scan
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s

N_ORDER_ROWS = 314_057  # meta.json total_order_rows
N_TRADES = 284
SNAPSHOT_MS = 1_777_689_380_521  # meta.json snapshot_microtimestamp, in ms


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    out = tmp_path_factory.mktemp("bitstamp") / "btcusd.tkp"
    try:
        report = import_bitstamp(out)
    except BitstampImportError as exc:
        if not exc.download_failed:
            raise
        try:
            socket.create_connection(("pypi.org", 443), timeout=5).close()
        except OSError as net:
            pytest.skip(f"no network to PyPI to fetch ob-analytics 0.1.0 ({net}); {exc}")
        raise
    return out, report


def test_counts_add_up(imported):
    out, report = imported
    assert report.order_events_read == N_ORDER_ROWS
    assert report.trades_read == N_TRADES == report.trades
    assert report.adds + report.modifies + report.cancels + report.dropped_total == N_ORDER_ROWS
    assert report.records == report.adds + report.modifies + report.cancels + report.trades
    # the capture is clean: only a handful of events cannot be applied
    assert 0 < report.dropped_total < 200
    assert report.adds > 150_000 and report.modifies > 200
    assert report.resting_at_end == 0  # the capture ends deleting everything still resting
    summary = scan(out)
    assert summary.records_by_kind == {s.KIND_ORDER: report.records - N_TRADES, s.KIND_TRADE: 284}
    assert summary.frames == report.frames
    assert summary.first_ts_ns == SNAPSHOT_MS * 1_000_000 == report.first_ts_ns


def load(out):
    orders, trades, times = [], [], []
    for frame in iter_frames(out):
        recs = frame.records
        (trades if int(frame.header["kind"]) == s.KIND_TRADE else orders).append(recs)
        times.append(recs["ts_ns"])
    return np.concatenate(orders), np.concatenate(trades), np.concatenate(times)


def test_time_order_and_trades(imported):
    out, _ = imported
    orders, trades, times = load(out)
    assert np.all(np.diff(times) >= 0)
    assert set(np.unique(trades["side"]).tolist()) == {s.SIDE_BUY, s.SIDE_SELL}
    assert np.all(trades["price"] > 0) and np.all(trades["size"] > 0)
    assert np.all(orders["symbol"] == 0) and np.all(trades["symbol"] == 0)
    # BTC/USD in May 2026 per the capture: prices in tens of thousands of dollars
    mid = np.median(trades["price"]) / s.PRICE_SCALE
    assert 10_000 < mid < 1_000_000


def test_imported_flow_keeps_a_consistent_book(imported, l3_replay):
    out, report = imported
    orders, _, _ = load(out)
    # real data may be momentarily crossed; references, sizes and ids must hold
    live = l3_replay(orders, check_crossed=False)
    assert len(live) == report.resting_at_end == 0
    adds = orders[orders["action"] == s.ACTION_ADD]
    assert len(np.unique(adds["order_id"])) == len(adds) == report.adds
    assert set(np.unique(orders["side"]).tolist()) == {s.SIDE_BUY, s.SIDE_SELL}


def test_feed_replays_the_import(imported):
    out, _ = imported
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    port = sub.bind_to_random_port("tcp://127.0.0.1")
    result = {}
    # the SUB must be polled while the feed connects: a bound socket attaches a new
    # peer (and sends it its subscription) only when its own thread calls into it
    feed = threading.Thread(
        target=lambda: result.update(
            report=run_feed(
                f"tcp://127.0.0.1:{port}",
                replay=str(out),
                speed=0.0,
                max_records=20_000,
                stream_id=2,
            )
        ),
        daemon=True,
    )
    try:
        feed.start()
        expected = iter(iter_frames(out))
        seq = 0
        while seq < 19_000:
            assert sub.poll(10_000), f"frame missing after seq {seq}"
            header, got = codec.decode_frame(sub.recv())
            assert int(header["seq"]) == seq and int(header["stream_id"]) == 2
            assert got.tobytes() == next(expected).records.tobytes()
            seq += len(got)
        feed.join(20)
        report = result["report"]
        assert 19_000 < report.records <= 20_000 and report.next_seq == report.records
    finally:
        sub.close(linger=0)
        ctx.term()


def test_import_cli(imported, tmp_path, capsys):
    import argparse

    from tickpath.engine.feed.cli import add_import_arguments, import_main

    _, report = imported
    parser = argparse.ArgumentParser()
    add_import_arguments(parser)
    assert import_main(parser.parse_args(["--out", str(tmp_path / "x.tkp"), "--batch", "0"])) == 2
    assert "--batch" in capsys.readouterr().err
    out = tmp_path / "cli.tkp"
    assert import_main(parser.parse_args(["--out", str(out), "--batch", "256"])) == 0
    printed = capsys.readouterr().out
    assert f"imported {report.records} records" in printed
    assert sum(scan(out).records_by_kind.values()) == report.records


def test_stale_snapshot_asks_are_dropped_and_the_crossing_reported(imported):
    out, report = imported
    # trades print through the two stale asks of the starting snapshot over and over
    assert report.stale_policy == "drop"
    counts = sorted(report.stale_orders.values(), reverse=True)
    assert len(counts) >= 2 and counts[1] >= 100
    stale = {int(oid) for oid in report.stale_orders}
    orders, _, _ = load(out)
    assert not stale & set(np.unique(orders["order_id"]).tolist())  # none of their events
    assert report.dropped["stale: printed through by trades"] >= len(stale)
    # kept, they cross the book most of the time; dropped, far less often
    assert report.crossed_share_with_stale > 0.8
    assert report.crossed_share < report.crossed_share_with_stale / 2
    assert f"{len(stale)} stale orders (drop)" in report.summary()
