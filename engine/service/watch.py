"""``tickpath watch``: subscribe to results and print them, counting what went missing."""

from __future__ import annotations

import sys
import time

import msgspec
import zmq

from tickpath.engine.service.dedup import ResultDeduplicator
from tickpath.engine.service.fan_in import FanIn
from tickpath.engine.wire import codec
from tickpath.engine.wire.human import result_to_dict, summarize

BATCH_TOPIC_PREFIX = b"batch."  # topics of batched result frames (engine/service/publisher.py)


class TopicSequences:
    """Per-topic result sequence accounting: gaps, results lost, publisher restarts.

    ``observe(topic, seq, count)`` for every result message received.  A jump
    forward is a gap of ``seq - expected`` lost results; a step backwards (a
    publisher delivers in order, so only a restarted engine, with fresh result
    sequences, goes back) is a reset, never counted as loss; what was lost
    around a restart cannot be known from the numbers.  Loss after the last
    message of a topic shows up only when a later message of that topic arrives.
    """

    def __init__(self) -> None:
        self.expected: dict[bytes, int] = {}
        self.first: dict[bytes, int] = {}  # first sequence number seen per topic
        self.received: dict[bytes, int] = {}
        self.gaps = 0
        self.lost = 0
        self.resets = 0

    def observe(self, topic: bytes, seq: int, count: int = 1) -> int:
        """Account one message; return the results lost just before it (0 if none)."""
        want = self.expected.get(topic)
        lost = 0
        if want is not None and seq > want:
            lost = seq - want
            self.gaps += 1
            self.lost += lost
        elif want is not None and seq < want:
            self.resets += 1  # backwards on one connection: the engine restarted its sequences
        self.expected[topic] = seq + count
        self.first.setdefault(topic, seq)
        self.received[topic] = self.received.get(topic, 0) + count
        return lost


def watch(
    endpoints: list[str],
    topics: list[str],
    count: int | None = None,
    as_json: bool = False,
    timeout_s: float | None = None,
    curve: tuple[str, str | None] | None = None,
    first_copy_only: bool = False,
    discovery: str | None = None,
) -> int:
    """Print result (and stats) messages until ``count`` or ``timeout_s``; return exit status.

    One SUB socket per endpoint, so each publisher's per-topic result sequence
    numbers are checked on their own (:class:`TopicSequences`); gaps and resets
    are reported on stderr at exit.  ``first_copy_only`` (``watch --discovery``:
    redundant replicas publish every result twice) prints the first copy of each
    result and drops the other (:class:`~tickpath.engine.service.dedup.ResultDeduplicator`).
    Malformed messages are counted and reported, never fatal.  ``curve``:
    ``(server public key file, client secret key file or None)`` to connect with CURVE.
    ``discovery``: re-read it every second and subscribe to replicas it lists later too
    (a relaunched replica).
    """
    context = zmq.Context.instance()
    socks = []
    fan_in = FanIn()  # one busy replica cannot starve the others
    per_source: dict[zmq.Socket, TopicSequences] = {}
    follower = None
    if discovery is not None:
        from tickpath.engine.cluster.discovery import EndpointFollower

        follower = EndpointFollower(discovery)
        follower.known = list(endpoints)

    def join(endpoint: str) -> None:
        sub = context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            from tickpath.engine.security.curve import apply_curve_client

            apply_curve_client(sub, curve[0], curve[1])
        sub.setsockopt(zmq.RCVHWM, 100_000)
        sub.setsockopt(zmq.SNDHWM, 0)  # subscriptions are never dropped (see tickpath.client)
        sub.connect(endpoint)
        for topic in topics:
            sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
        fan_in.register(sub)
        socks.append(sub)
        per_source[sub] = TopicSequences()

    for endpoint in endpoints:
        join(endpoint)
    encoder = msgspec.json.Encoder()
    out = sys.stdout
    dedup = ResultDeduplicator() if first_copy_only else None
    malformed = received = 0
    last = time.monotonic()
    try:
        while count is None or received < count:
            if follower is not None:
                for endpoint in follower.poll():
                    join(endpoint)
            message = fan_in.recv(100)
            if message is None:
                if timeout_s is not None and time.monotonic() - last > timeout_s:
                    break
                continue
            sub, parts = message
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
            per_source[sub].observe(topic, seq, int(header["count"]))
            if dedup is not None and not dedup.first_copy(topic, payload, sub):
                received -= 1  # the other replica's copy of a result already shown
                continue
            name = topic.decode(errors="replace")
            # a batched frame (publish.mode batch): one record per symbol, numbered from seq
            batched = topic.startswith(BATCH_TOPIC_PREFIX)
            for i, record in enumerate(records):
                if as_json:
                    line = result_to_dict(name, header, record)
                    if batched:
                        line["seq"] = seq + i
                    out.write(encoder.encode(line).decode() + "\n")
                elif batched:
                    label = f"{name}[{int(record['symbol'])}]"
                    out.write(summarize(label, header, record) + "\n")
                else:
                    out.write(summarize(name, header, record) + "\n")
            out.flush()
    except KeyboardInterrupt:
        pass
    finally:
        out.flush()
        for sub in socks:
            sub.close(linger=0)
    gaps = sum(seqs.gaps for seqs in per_source.values())
    lost = sum(seqs.lost for seqs in per_source.values())
    resets = sum(seqs.resets for seqs in per_source.values())
    duplicates = dedup.duplicates if dedup is not None else 0
    if gaps or resets or malformed or duplicates:
        print(
            f"watch: {received} messages, {gaps} gaps ({lost} results lost), "
            f"{resets} sequence resets, {malformed} malformed"
            + (f", {duplicates} second copies dropped" if dedup is not None else ""),
            file=sys.stderr,
        )
    return 0
