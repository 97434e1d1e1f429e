"""tickpath.client against a real engine over loopback: nothing lost at the start,
a clear error when no engine listens, results decoded as numpy records and DataFrames."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from tests.factories import make_trades
from tickpath.client import EngineNotFound, Publisher, Subscriber, flatten, to_dataframe
from tickpath.engine.config import load_config
from tickpath.engine.service.engine import Engine
from tickpath.engine.wire import schema as s


@pytest.fixture
def engine():
    config = load_config(
        None,
        {
            "ingest.endpoints": ["tcp://127.0.0.1:*"],
            "publish.endpoint": "tcp://127.0.0.1:*",
            "publish.stats_interval_s": 0.2,
            "analytics.n_symbols": 16,
            "ingest.max_streams": 8,
        },
    )
    eng = Engine(config, zmq.Context.instance())
    eng.start()
    thread = threading.Thread(target=eng.run, daemon=True)
    thread.start()
    yield eng
    eng.stop()
    thread.join(timeout=60)
    assert not thread.is_alive()
    eng.close()


def _wait_for_stats(sub, timeout_s=120.0):
    """The engine's stats reached the subscriber: its subscriptions are in place."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = sub.recv(timeout_s=1.0)
        if result is not None and result.topic == "stats":
            return result.stats
    raise AssertionError("no stats message from the engine")


def test_publisher_loses_no_frame_sent_at_once(engine):
    with Subscriber(engine.publisher.endpoint, topics=("trade.", "stats")) as sub:
        assert "frames_received" in _wait_for_stats(sub)
        trades = make_trades(50, symbols=4, seed=3)
        # A fresh publisher sends at once: its first send waits for the engine to join.
        with Publisher(engine.receiver.endpoints[0], stream_id=2) as pub:
            for i in range(len(trades)):
                assert pub.send_trades(trades[i : i + 1]) == i
        got = sub.collect("trade", 50, timeout_s=120.0)
    assert sorted(got["in_seq"].tolist()) == list(range(50))
    assert (got["in_stream"] == 2).all()
    np.testing.assert_array_equal(np.sort(got["ts_ns"]), np.sort(trades["ts_ns"]))
    assert sub.lost == 0 and sub.malformed == 0


def test_a_long_topic_list_takes_effect_whole(engine):
    """5,000 topics and then ``stats``: a SUB socket at ZeroMQ's default SNDHWM (1,000)
    dropped the tail of such a list, ``stats`` with it, and no stats message came."""
    topics = [f"never.{i}." for i in range(5000)] + ["stats"]
    with Subscriber(engine.publisher.endpoint, topics=topics) as sub:
        assert "frames_received" in _wait_for_stats(sub)


def test_publisher_without_engine_raises_a_clear_error():
    with Publisher("tcp://127.0.0.1:*", bind=True, join_timeout_s=0.5) as pub:
        with pytest.raises(EngineNotFound, match=r"no engine subscribed at tcp://127\.0\.0\.1:\d+"):
            pub.send_trades(make_trades(1))
        assert pub.next_seq == 0  # nothing was sent
    with Publisher("tcp://127.0.0.1:*", bind=True) as pub:
        with pytest.raises(ValueError, match="an input"):
            pub.send(s.KIND_RESULT_TRADE, np.zeros(1, s.RESULT_TRADE))


def test_results_as_columns_and_dataframes():
    records = np.zeros(3, s.RESULT_TRADE)
    records["ema"] = np.arange(12.0).reshape(3, 4)
    records["symbol"] = [1, 2, 3]
    columns = flatten(records)
    assert "_pad" not in columns and "ema" not in columns
    np.testing.assert_array_equal(columns["ema_3"], [3.0, 7.0, 11.0])
    pandas = pytest.importorskip("pandas")
    frame = to_dataframe(records, "pandas")
    assert isinstance(frame, pandas.DataFrame) and frame["symbol"].tolist() == [1, 2, 3]
    polars = pytest.importorskip("polars")
    frame = to_dataframe(records, "polars")
    assert isinstance(frame, polars.DataFrame) and frame["ema_1"].to_list() == [1.0, 5.0, 9.0]
