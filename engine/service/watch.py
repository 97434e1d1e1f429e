"""``tickpath watch``: subscribe to results and print them, counting what went missing."""

from __future__ import annotations

import sys
import time

import msgspec
import zmq

from engine.wire import codec
from engine.wire.human import result_to_dict, summarize


def watch(
    endpoints: list[str],
    topics: list[str],
    count: int | None = None,
    as_json: bool = False,
    timeout_s: float | None = None,
) -> int:
    """Print result (and stats) messages until ``count`` or ``timeout_s``; return exit status.

    Per-topic result sequence numbers are checked; gaps are reported on stderr
    at exit.  Malformed messages are counted and reported, never fatal.
    """
    context = zmq.Context.instance()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 100_000)
    for endpoint in endpoints:
        sub.connect(endpoint)
    for topic in topics:
        sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
    encoder = msgspec.json.Encoder()
    out = sys.stdout
    expected: dict[bytes, int] = {}
    gaps = lost = malformed = received = 0
    last = time.monotonic()
    try:
        while count is None or received < count:
            if not sub.poll(100):
                if timeout_s is not None and time.monotonic() - last > timeout_s:
                    break
                continue
            parts = sub.recv_multipart()
            last = time.monotonic()
            if len(parts) != 2:
                malformed += 1
                continue
            topic, payload = parts
            received += 1
            if topic == b"stats":
                if as_json:
                    stats = msgspec.json.decode(payload)
                    line = encoder.encode({"topic": "stats", **stats}).decode()
                else:
                    line = "stats " + payload.decode(errors="replace")
                out.write(line + "\n")
                continue
            try:
                header, records = codec.decode_frame(payload)
            except codec.FrameError as exc:
                malformed += 1
                print(f"watch: malformed message on {topic!r}: {exc}", file=sys.stderr)
                continue
            seq = int(header["seq"])
            want = expected.get(topic)
            if want is not None and seq > want:
                gaps += 1
                lost += seq - want
            expected[topic] = seq + int(header["count"])
            name = topic.decode(errors="replace")
            for record in records:
                if as_json:
                    out.write(encoder.encode(result_to_dict(name, header, record)).decode() + "\n")
                else:
                    out.write(summarize(name, header, record) + "\n")
            out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        out.flush()
        sub.close(linger=0)
    if gaps or malformed:
        print(
            f"watch: {received} messages, {gaps} gaps ({lost} results lost), {malformed} malformed",
            file=sys.stderr,
        )
    return 0
