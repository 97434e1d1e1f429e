import argparse
import threading
import time

import numpy as np
import pytest
import zmq

from tickpath.engine.feed.cli import add_feed_arguments, feed_main
from tickpath.engine.feed.publisher import feed_market, run_feed
from tickpath.engine.feed.recording import iter_frames, scan
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s


@pytest.fixture
def sub():
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"tcp://127.0.0.1:{port}"
    sock.close()
    ctx.term()


def feed_in_thread(**kwargs):
    result = {}

    def target():
        result["report"] = run_feed(**kwargs)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def receive(sock, n_records, timeout_s=20.0):
    frames = []
    got = 0
    deadline = time.monotonic() + timeout_s
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    while got < n_records and time.monotonic() < deadline:
        if poller.poll(200):
            frame = sock.recv()
            header, records = codec.decode_frame(frame, inputs_only=True)
            frames.append((header, records))
            got += len(records)
    return frames


def test_feed_over_a_real_socket_is_contiguous_and_matches_the_generator(sub):
    sock, endpoint = sub
    n = 20_000
    t_start = time.time_ns()
    thread, result = feed_in_thread(
        endpoint=endpoint,
        symbols=5,
        rate=400_000,
        batch=64,
        duration=None,
        seed=7,
        stream_id=9,
        max_records=n,
        first_seq=1000,
    )
    frames = receive(sock, n)
    thread.join(20)
    report = result["report"]
    assert report.records == n and report.next_seq == 1000 + n
    assert sum(len(r) for _, r in frames) == n
    seq = 1000
    last_send = 0
    market = feed_market(5, 7, 400_000)
    for header, records in frames:
        assert int(header["stream_id"]) == 9
        assert int(header["seq"]) == seq
        send_ns = int(header["send_ns"])
        assert t_start <= send_ns <= time.time_ns() and send_ns >= last_send
        last_send = send_ns
        kind, expected = market.next_batch(min(64, 1000 + n - seq))
        assert int(header["kind"]) == kind
        assert records.tobytes() == expected.tobytes()
        seq += len(records)
    kinds = [int(h["kind"]) for h, _ in frames]
    assert report.trades == sum(len(r) for h, r in frames if int(h["kind"]) == s.KIND_TRADE)
    assert report.orders == sum(len(r) for h, r in frames if int(h["kind"]) == s.KIND_ORDER)
    assert report.frames == len(frames) and set(kinds) == {1, 2, 3}


def test_rate_schedule_is_honoured_per_report():
    # No subscriber: the PUB drops, the schedule is still kept.
    report = run_feed(
        "tcp://127.0.0.1:1",
        rate=20_000,
        batch=100,
        duration=0.5,
        seed=2,
        join_timeout=0,
        linger_ms=0,
    )
    assert report.records == 10_000  # exactly rate x duration: the schedule decides
    assert report.frames == 100
    assert report.records == report.trades + report.quotes + report.orders
    # open loop: never faster than the schedule, never silently catching up
    assert report.achieved_rate <= 20_000 * 1.0001
    assert report.elapsed_s >= 0.5 - 1e-6
    assert report.mean_lag_s <= report.max_lag_s
    assert report.final_lag_s <= report.max_lag_s
    assert report.target_rate == 20_000


def test_falling_behind_is_reported():
    report = run_feed(
        "tcp://127.0.0.1:1",
        rate=1e9,
        batch=1,
        duration=None,
        max_records=3_000,
        join_timeout=0,
        linger_ms=0,
    )
    assert report.records == 3_000
    assert report.achieved_rate < 1e9
    assert report.final_lag_s > 0 and report.max_lag_s >= report.final_lag_s
    assert report.late_frames > 0


def test_record_then_replay_restamps_sequences(tmp_path, sub):
    sock, endpoint = sub
    path = tmp_path / "feed.tkp"
    made = run_feed(None, symbols=3, rate=50_000, batch=50, duration=0.2, seed=5, record=str(path))
    assert made.records == 10_000 and made.endpoint is None
    summary = scan(path)
    assert sum(summary.records_by_kind.values()) == 10_000
    original = [(int(f.header["kind"]), f.records.copy()) for f in iter_frames(path)]
    # the recording is what the generator makes
    market = feed_market(3, 5, 50_000)
    for kind, records in original:
        expected_kind, expected = market.next_batch(50)
        assert kind == expected_kind and records.tobytes() == expected.tobytes()

    thread, result = feed_in_thread(
        endpoint=endpoint, replay=str(path), speed=0.0, stream_id=4, first_seq=7
    )
    frames = receive(sock, 10_000)
    thread.join(20)
    assert result["report"].records == 10_000
    assert len(frames) == len(original)
    seq = 7
    for (header, records), (kind, expected) in zip(frames, original):
        assert int(header["seq"]) == seq and int(header["stream_id"]) == 4
        assert int(header["kind"]) == kind and records.tobytes() == expected.tobytes()
        seq += len(records)


def test_replay_follows_recorded_pacing_scaled_by_speed(tmp_path):
    path = tmp_path / "feed.tkp"
    run_feed(None, symbols=2, rate=40_000, batch=40, duration=0.2, seed=1, record=str(path))
    last = max(int(f.records["ts_ns"][-1]) for f in iter_frames(path))
    first = int(next(iter(iter_frames(path))).records["ts_ns"][-1])
    span_s = (last - first) / 1e9
    assert 0.1 < span_s < 0.3  # market time runs at the feed rate
    report = run_feed("tcp://127.0.0.1:1", replay=str(path), speed=2.0, join_timeout=0, linger_ms=0)
    assert report.records == 8_000
    assert report.elapsed_s >= span_s / 2 - 1e-6
    assert report.target_rate is None


def parse(argv):
    parser = argparse.ArgumentParser()
    add_feed_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--endpoint", "tcp://127.0.0.1:5555", "--rate", "0"], "--rate"),
        (["--endpoint", "tcp://127.0.0.1:5555", "--batch", "0"], "--batch"),
        (["--endpoint", "tcp://127.0.0.1:5555", "--batch", "65537"], "--batch"),
        (["--endpoint", "tcp://127.0.0.1:5555", "--symbols", "0"], "--symbols"),
        (["--endpoint", "tcp://127.0.0.1:5555", "--duration", "-1"], "--duration"),
        (["--endpoint", "tcp://127.0.0.1:5555", "--speed", "2"], "--speed"),
        (["--endpoint", "127.0.0.1:5555"], "--endpoint"),
        ([], "--endpoint"),
        (["--record-only"], "--record"),
    ],
)
def test_cli_rejects_bad_values_with_one_line(capsys, argv, message):
    assert feed_main(parse(argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("tickpath feed: error:")


def test_cli_record_only(tmp_path, capsys):
    path = tmp_path / "r.tkp"
    args = parse(
        [
            "--record-only",
            "--record",
            str(path),
            "--rate",
            "1000",
            "--duration",
            "2",
            "--batch",
            "10",
            "--symbols",
            "3",
            "--json",
        ]
    )
    assert feed_main(args) == 0
    assert '"records":2000' in capsys.readouterr().out
    summary = scan(path)
    assert sum(summary.records_by_kind.values()) == 2000
    assert np.all(np.array(list(summary.records_by_kind)) < 16)
