"""ingest.slice_records: a large in-order frame is processed in slices, and other streams'
frames are taken in between, over real sockets. The per-symbol state and the counters
(frames, bytes, records, per stream) equal those of the whole frames, no stream's order
changes, and the journal, which holds the slices, replays to the identical state."""

from __future__ import annotations

import threading
import time
from typing import Any

import msgspec
import numpy as np
import zmq

from tests.factories import make_quotes
from tests.reliability.helpers import SMALL, accounting_holds, processor
from tests.waiting import DEADLINE_S, wait_until
from tickpath.engine.config import load_config
from tickpath.engine.ingest.receiver import FrameReceiver
from tickpath.engine.ingest.slicer import LOOKAHEAD, FrameSlicer
from tickpath.engine.journal.config import JournalConfig
from tickpath.engine.journal.extension import JournalExtension
from tickpath.engine.journal.recovery import replay
from tickpath.engine.journal.snapshot import differing_arrays
from tickpath.engine.service.engine import Engine
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu.streaming_view import StreamTable

SLICE = 64
BIG = 20_000  # quotes per large frame (960 KB): 313 slices, milliseconds of work
BURST = 2  # large frames sent back to back before each small one
BIG_STREAM, SMALL_STREAM = 1, 2


def _big_frame(i: int) -> bytes:
    """Stream 1, frame ``i``: large quote frames of symbols 0..7, contiguous sequences."""
    q = make_quotes(BIG, symbols=8, seed=i)
    return codec.encode_frame(s.KIND_QUOTE, BIG_STREAM, i * BIG, q, 1_000 + i)


def _small_frame(seq: int) -> bytes:
    """Stream 2: one quote of a symbol in 8..15."""
    q = make_quotes(1, seed=10_000 + seq)
    q["symbol"] = 8 + seq % 8
    return codec.encode_frame(s.KIND_QUOTE, SMALL_STREAM, seq - 1, q, 2_000 + seq)


def test_large_frames_are_sliced_and_other_streams_go_in_between(tmp_path):
    values = dict(SMALL)
    values.update({
        "ingest.endpoints": ["tcp://127.0.0.1:*"],
        "publish.endpoint": "tcp://127.0.0.1:*",
        "ingest.slice_records": SLICE,
        "ingest.max_frame_bytes": 1 << 20,
    })  # fmt: skip
    config = load_config(None, values)
    config = msgspec.structs.replace(
        config, journal=JournalConfig(dir=str(tmp_path), snapshot_background=False, sync="os")
    )
    context = zmq.Context()
    engine = Engine(config, context, extensions=[JournalExtension(config.journal)])
    engine.start()
    thread = threading.Thread(target=engine.run, daemon=True)
    thread.start()
    big_pub, small_pub = context.socket(zmq.XPUB), context.socket(zmq.XPUB)
    # the per-symbol state of the same frames processed whole (the streams' symbols are
    # disjoint, so the order between the streams does not matter), fed as they are sent
    whole = processor(load_config(None, {**SMALL, "ingest.max_frame_bytes": 1 << 20}))
    sent = {"frames": 0, "big": 0, "records": 0, "oversize_bytes": 0}

    def send(pub: zmq.Socket, frame: bytes) -> None:
        pub.send(frame)
        whole.buffer[: len(frame)] = np.frombuffer(frame, np.uint8)
        whole.process(len(frame), 0)
        sent["frames"] += 1
        sent["big"] += pub is big_pub
        sent["records"] += int(np.frombuffer(frame, s.HEADER, 1)[0]["count"])

    try:
        for pub in (big_pub, small_pub):
            pub.setsockopt(zmq.SNDHWM, 0)
            pub.connect(engine.receiver.endpoints[0])
            assert pub.poll(DEADLINE_S * 1000)  # the engine's subscription
            pub.recv()
        # the stream's first frame (whole), then an in-order frame over max_frame_bytes:
        # refused from its length (libzmq delivers it truncated), never sliced
        send(big_pub, _big_frame(0))
        wait_until(lambda: engine.stats()["frames_received"] == 1, what="the first frame")
        over = make_quotes((1 << 20) // s.QUOTE_SIZE + 1, symbols=8)
        oversize = codec.encode_frame(s.KIND_QUOTE, BIG_STREAM, BIG, over, 1_000)
        big_pub.send(oversize)
        sent["oversize_bytes"] = len(oversize)
        wait_until(lambda: engine.stats()["rejected"]["oversize"] == 1, what="the oversize one")
        # The next large frames continue the stream (sliced). Bursts of them, each
        # followed by a one-quote frame of another stream, until some of those went
        # between two slices: fair queueing hands the engine the other connection's
        # frame next, while the large ones wait their turn
        deadline = time.monotonic() + DEADLINE_S
        big_seq = small_seq = 1
        while engine.stats()["slicing"]["interleaved"] < 3:
            assert time.monotonic() < deadline, engine.stats()["slicing"]
            for _ in range(BURST):
                send(big_pub, _big_frame(big_seq))
                big_seq += 1
            send(small_pub, _small_frame(small_seq))
            small_seq += 1
            wait_until(
                lambda n=sent["records"]: engine.stats()["records_received"] >= n,
                what="the burst",
            )
        wait_until(
            lambda: engine.stats()["records_accepted"] == sent["records"],
            what=lambda: f"{sent} sent: {engine.stats()['records_accepted']} records",
        )
    finally:
        engine.stop()
        thread.join(timeout=DEADLINE_S)
        big_pub.close(linger=0)
        small_pub.close(linger=0)
        engine.close()
        context.term()

    stats = engine.stats()
    slicing = stats["slicing"]
    assert slicing["frames_sliced"] == sent["big"] - 1  # all but the stream's first
    assert slicing["deferred"] >= 1  # the large frames queued behind a sliced one waited
    assert slicing["slices"] == slicing["frames_sliced"] * -(-BIG // SLICE)
    assert stats["gaps"] == 0 and stats["records_lost"] == 0
    assert stats["frames_rejected"] == stats["rejected"]["oversize"] == 1
    assert accounting_holds(stats)
    # a slice after the first counts as records of its frame: frames, bytes and each
    # stream's frames are those of the messages, as for the whole frames
    reference = whole.stats(0)
    assert stats["frames_received"] == sent["frames"] + 1  # and the oversize one
    assert stats["frames_accepted"] == reference["frames_accepted"] == sent["frames"]
    assert stats["records_accepted"] == reference["records_accepted"] == sent["records"]
    assert stats["bytes_received"] == reference["bytes_received"] + sent["oversize_bytes"]
    for stream in (BIG_STREAM, SMALL_STREAM):
        row, ref = stats["streams"][str(stream)], reference["streams"][str(stream)]
        assert (row["frames"], row["next_seq"]) == (ref["frames"], ref["next_seq"])
    live = engine.processor.state
    assert "sym_i" not in differing_arrays(whole.state, live)
    # the journal holds the slices and the frames between them, in the order they ran
    replayed = processor(config)
    replay(replayed, tmp_path)
    assert differing_arrays(replayed.state, live) == []


def _slice_in_order(name: str, frames: list[bytes]) -> tuple[list, FrameSlicer, Any, Any]:
    """Start stream 1 with a large frame (processed whole), then send ``frames`` on one
    connection and let the engine receive the first of them: it is sliced, and the others
    are taken between its slices. Return the frames and slices that ran, as (stream, first
    seq, part), the slicer, the slicing processor and one that processed every frame whole.

    Over a real inproc socket, driven step by step: a message sent on inproc is in the
    receiving socket's queue when ``send`` returns, so the order of takes is fixed."""
    config = load_config(
        None,
        {
            **SMALL,
            "ingest.endpoints": [f"inproc://slicing-{name}"],
            "ingest.slice_records": SLICE,
            "ingest.max_frame_bytes": 1 << 20,
        },
    )
    context = zmq.Context()
    proc = processor(config)
    whole = processor(config)
    receiver = FrameReceiver(context, config.ingest, proc.buffer)
    slicer = FrameSlicer(receiver, StreamTable(proc.state.streams), SLICE)
    pub = context.socket(zmq.XPUB)
    ran: list[tuple[int, int, int]] = []  # (stream, first seq, part) of each frame or slice

    def handle(nbytes: int, recv_ns: int, part: int = 0) -> None:
        header = np.frombuffer(proc.buffer, s.HEADER, 1)[0]
        ran.append((int(header["stream_id"]), int(header["seq"]), part))
        proc.process(nbytes, recv_ns, part)

    def send(frame: bytes) -> None:
        pub.send(frame)
        whole.buffer[: len(frame)] = np.frombuffer(frame, np.uint8)
        whole.process(len(frame), 0)

    def receive_and_process() -> None:
        deadline = time.monotonic() + DEADLINE_S
        while (nbytes := receiver.receive()) == -1:
            assert time.monotonic() < deadline, "no frame"
        slicer.process(nbytes, 0, handle, lambda: 0)

    try:
        pub.connect(f"inproc://slicing-{name}")

        def subscribed() -> bool:
            # the receiving socket attaches the connection (and sends its subscription)
            # when it processes its commands, which reading its events does
            receiver.socket.getsockopt(zmq.EVENTS)
            return bool(pub.poll(10))

        wait_until(subscribed, what="the subscription")
        pub.recv()
        send(_big_frame(0))  # starts stream 1: processed whole
        receive_and_process()
        for frame in frames:
            send(frame)
        receive_and_process()
    finally:
        pub.close(linger=0)
        receiver.close()
        context.term()
    return ran, slicer, proc, whole


def _same_as_whole(proc: Any, whole: Any) -> None:
    """The analytics and the streams are those of the frames processed whole; per-frame
    scratch, result sequence numbers and result counts differ (results come per slice)."""
    scratch = {"counters", "touched", "touched_list", "n_touched", "out_seq", "out_quote"}
    assert set(differing_arrays(whole.state, proc.state)) <= scratch
    got, reference = proc.stats(0), whole.stats(0)
    for key in ("frames_received", "frames_accepted", "records_accepted", "bytes_received"):
        assert got[key] == reference[key], key
    for stream in (str(BIG_STREAM), str(SMALL_STREAM)):
        assert got["streams"][stream] == reference["streams"][stream]


def test_a_frame_of_another_stream_goes_between_slices_while_another_waits():
    """One connection sends, in this order: a large frame B1 of stream 1 (sliced), the
    next one B2 of stream 1, and a one-quote frame S of stream 2. Between B1's slices the
    engine takes B2, which must wait for B1, and then S, which must not wait for either:
    S runs right after B1's second slice, B2 after all of B1, and the state equals that of
    the frames processed whole. (With one waiting frame at most, S waited for B1 and B2.)"""
    ran, slicer, proc, whole = _slice_in_order(
        "order", [_big_frame(1), _big_frame(2), _small_frame(1)]
    )
    small = ran.index((SMALL_STREAM, 0, 0))
    assert ran[small - 1] == (BIG_STREAM, BIG + SLICE, 1), ran[: small + 1]
    assert small < ran.index((BIG_STREAM, 2 * BIG, 0))
    big = [seq for stream, seq, _part in ran if stream == BIG_STREAM]
    assert big == sorted(big) and len(big) == 1 + 2 * -(-BIG // SLICE)
    stats = slicer.stats()
    assert (stats["interleaved"], stats["deferred"], stats["waiting_max"]) == (1, 1, 1)
    assert stats["intake_paused"] == 0
    _same_as_whole(proc, whole)


def test_intake_pauses_while_every_lookahead_buffer_holds_a_waiting_frame():
    """B1, B2, B3 of stream 1, then S of stream 2: B2 and B3 are taken between B1's first
    slices and wait in the two lookahead buffers; with both taken nothing more is received
    for the rest of B1 (each of those slice boundaries counts as ``intake_paused``), so S
    runs only after B1, right after B2's first slice, when a buffer is free again."""
    ran, slicer, proc, whole = _slice_in_order(
        "paused", [_big_frame(1), _big_frame(2), _big_frame(3), _small_frame(1)]
    )
    small = ran.index((SMALL_STREAM, 0, 0))
    assert ran[small - 1] == (BIG_STREAM, 2 * BIG, 0), ran[small - 3 : small + 1]
    slices = -(-BIG // SLICE)
    stats = slicer.stats()
    assert (stats["interleaved"], stats["deferred"], stats["waiting_max"]) == (1, 2, LOOKAHEAD)
    # B1's slice boundaries (one fewer than its slices), less the two that took B2 and B3
    assert stats["intake_paused"] == slices - 1 - LOOKAHEAD
    _same_as_whole(proc, whole)
