"""Subscriptions queued for the publish socket: ``publish.subscription_backlog`` per
subscriber (ZMQ_RCVHWM), applied by the tick thread's sends and, while no frame comes, by
the engine loop's wait (at most once a millisecond).

libzmq applies a PUB socket's queued subscriptions only when the socket is used. With a
small backlog, a subscriber's long list of subscriptions would otherwise come into effect
a backlog's worth per ``stats`` message on an idle engine; the loop's wait applies them.
bench/bench_pressure.py's ``sub_flood`` phase measures what the bound does for a flood.
"""

from __future__ import annotations

import time

import pytest
import zmq

from tests.integration.test_engine_sockets import Harness
from tickpath.engine.config import load_config

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0  # generous: the engine applies 2,000 subscriptions in well under a second


def test_the_publish_socket_queues_the_configured_subscriptions():
    h = Harness(**{"publish.subscription_backlog": 7})
    try:
        assert h.engine.publisher.socket.getsockopt(zmq.RCVHWM) == 7
    finally:
        h.close()


def test_a_long_subscription_list_takes_effect_while_the_engine_is_idle():
    """2,000 subscriptions, then ``stats``, from a subscriber on an engine that receives
    no frame: a stats message arrives within the deadline. Applied a backlog (2, the
    default) per stats message (every 2 s) they would take 2,000 s."""
    h = Harness(**{"publish.stats_interval_s": 2.0})
    assert h.engine.config.publish.subscription_backlog == 2
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SNDHWM, 0)  # the subscriber keeps its own subscriptions (see doc)
    try:
        for i in range(2000):
            sub.setsockopt(zmq.SUBSCRIBE, b"never.%d" % i)  # topics the engine never sends
        sub.setsockopt(zmq.SUBSCRIBE, b"stats")
        sub.connect(h.engine.publisher.endpoint)
        deadline = time.monotonic() + DEADLINE_S
        while not sub.poll(200):
            assert time.monotonic() < deadline, "the subscription to stats never took effect"
        topic, _body = sub.recv_multipart()
        assert topic == b"stats"
        assert h.engine.stats()["frames_received"] == h.base["frames_received"]  # idle
    finally:
        sub.close()
        h.close()


@pytest.mark.parametrize("value", [1, 0, -1, (1 << 20) + 1])
def test_a_subscription_backlog_out_of_range_is_a_one_line_error(value):
    with pytest.raises(ValueError, match=r"publish\.subscription_backlog must be in 2\.\.1048576"):
        load_config(None, {"publish.subscription_backlog": value})
