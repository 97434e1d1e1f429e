"""Hostile requests on the ROUTER endpoint: every message gets exactly one well-formed reply.

Direct share: mutated JSON and msgpack bodies through the request lane's own
decode-and-validate step (``RequestJob.prepare``, what a worker runs).  Socket
share: mutated bodies, and messages with no, empty or extra body frames, over a
real DEALER to a running engine with the request endpoint, whose ingest must
keep working.
"""

from __future__ import annotations

import collections
import threading
import time

import pytest
import zmq

from tests.factories import make_quotes
from tests.waiting import DEADLINE_S, wait_until
from tickpath.engine.config import load_config
from tickpath.engine.dispatch.cli import serve_extensions
from tickpath.engine.security import fuzz
from tickpath.engine.service.engine import Engine
from tickpath.engine.service.requests import decode_reply, encode_request
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s


def test_request_bodies_are_decoded_or_refused_with_a_code():
    fuzzer = fuzz.RequestFuzzer(20261129)
    codes: collections.Counter = collections.Counter()
    escaped: collections.Counter = collections.Counter()
    cases = 0
    for _ in range(25_000):
        _name, parts = fuzzer.next_case()
        if len(parts) != 1:
            continue
        cases += 1
        try:
            codes[fuzz.check_request(parts[0])] += 1
        except Exception as exc:  # anything but JobRejected is a validation hole
            escaped[type(exc).__name__] += 1
    assert cases > 20_000
    assert not escaped, escaped
    assert codes[None] > 1000 and codes["malformed"] > 1000 and codes["invalid"] > 50


@pytest.fixture
def engine_with_requests():
    config = load_config(
        None,
        {
            "ingest.endpoints": ["tcp://127.0.0.1:*"],
            "publish.endpoint": "tcp://127.0.0.1:*",
            "analytics.n_symbols": 16,
            "analytics.book_orders": 4096,
            "ingest.max_frame_bytes": 65536,
            "dispatch": {"requests": {"endpoint": "tcp://127.0.0.1:*", "max_items": 200_000}},
        },
    )
    context = zmq.Context()
    extensions = serve_extensions(config)
    engine = Engine(config, context, extensions=extensions)
    engine.start()
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    requests = next(ext for ext in extensions if ext.name == "requests")
    yield engine, requests, context
    engine.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
    engine.close()
    context.term()


def test_fuzzed_requests_over_the_socket_each_get_one_reply(engine_with_requests):
    engine, requests, context = engine_with_requests
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(requests.bound)
    fuzzer = fuzz.RequestFuzzer(7)
    sent = replies = 0
    outcomes: collections.Counter = collections.Counter()
    try:
        for _window in range(60):
            batch = [fuzzer.next_case()[1] for _ in range(25)]
            for parts in batch:
                dealer.send_multipart([b"", *parts])
            sent += len(batch)
            deadline = time.monotonic() + DEADLINE_S
            while replies < sent:
                assert time.monotonic() < deadline, f"{replies} replies to {sent} requests"
                if not dealer.poll(100):
                    continue
                frames = dealer.recv_multipart()
                assert frames[0] == b"" and len(frames) == 2
                reply = decode_reply(frames[1])
                assert isinstance(reply, dict) and reply["ok"] in (True, False)
                if reply["ok"]:
                    outcomes["ok"] += 1
                else:
                    assert reply["error"]["code"] in fuzz.REQUEST_ERROR_CODES, reply
                    outcomes[reply["error"]["code"]] += 1
                replies += 1
        stats = requests.stats()
        assert stats["received"] == sent == replies
        assert stats["replied_ok"] + stats["replied_error"] == sent
        assert outcomes["ok"] > 50 and outcomes["malformed"] > 300
        # the engine is unharmed: a valid request is answered, and its reply is the very
        # next message (replies come in order on the connection): not one reply more
        sentinel = {**fuzz.valid_requests()[0], "id": "sentinel-after-the-fuzz"}
        dealer.send_multipart([b"", encode_request(sentinel)])
        assert dealer.poll(int(DEADLINE_S * 1000))
        reply = decode_reply(dealer.recv_multipart()[-1])
        assert reply["id"] == "sentinel-after-the-fuzz" and reply["ok"] is True, reply
        pub = context.socket(zmq.XPUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.connect(engine.receiver.endpoints[0])
        assert pub.poll(int(DEADLINE_S * 1000))
        pub.recv()
        pub.send(codec.encode_frame(s.KIND_QUOTE, 1, 0, make_quotes(3, symbols=4)))
        wait_until(lambda: engine.stats()["processed"]["quote"] >= 3, what="3 quotes")
        pub.close()
    finally:
        dealer.close()
