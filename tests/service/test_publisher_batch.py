"""The bytes of a batched result message (``publish.mode = "batch"``), over a real socket.

A batched message is the first result frame's header, with ``stream_id =
BATCH_STREAM_ID``, ``count`` and the topic's record ``seq``, followed by the
records of every result frame in order.  Frames whose size is a whole number of
8-byte words (every kernel result) are packed by one numba call; any other
(an extension's) by numpy: both must give exactly those bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import zmq

from tests.waiting import wait_until
from tickpath.engine.config import PublishConfig
from tickpath.engine.service.publisher import BATCH_STREAM_ID, ResultPublisher
from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu import streaming as k


def _expected(frames: np.ndarray, n: int, seq: int) -> bytes:
    header = frames[:1].view(np.uint8)[: s.HEADER_SIZE].view(s.HEADER).copy()
    header["stream_id"] = BATCH_STREAM_ID
    header["count"] = n
    header["seq"] = seq
    rows = frames.view(np.uint8).reshape(len(frames), frames.dtype.itemsize)
    return header.tobytes() + rows[:n, s.HEADER_SIZE :].tobytes()


@contextmanager
def _batched(**options: object) -> Iterator[tuple[ResultPublisher, zmq.Socket]]:
    """A batched publisher and a subscriber of ``batch.`` it has seen subscribe."""
    ctx = zmq.Context()
    config = PublishConfig(endpoint="tcp://127.0.0.1:*", mode="batch", sndhwm=0, **options)
    publisher = ResultPublisher(ctx, config, 8, see_subscribers=True)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"batch.")
    sub.setsockopt(zmq.RCVTIMEO, 120_000)
    sub.connect(publisher.endpoint)
    try:
        assert publisher.wait_for_subscriber(120.0), "no subscription reached the publisher"
        yield publisher, sub
    finally:
        sub.close(linger=0)
        publisher.close()
        ctx.term()


@pytest.mark.parametrize(
    "dtype",
    [
        k.FRAME_BOOK,  # whole 8-byte words: the numba packer
        k.FRAME_QUOTE,
        np.dtype(s.HEADER.descr + [("payload", "u1", (13,))]),  # 45 bytes: numpy
    ],
    ids=["book", "quote", "odd-size"],
)
def test_batched_message_is_first_header_then_every_record(dtype: np.dtype) -> None:
    with _batched() as (publisher, sub):
        frames = np.zeros(12, dtype)
        rng = np.random.default_rng(7)
        frames.view(np.uint8)[:] = rng.integers(0, 256, frames.nbytes, dtype=np.uint8)
        sent = []
        seq = 0
        for n in (7, 1, 12):
            assert publisher.publish_frames("ext", frames, list(range(n))) == n
            sent.append(_expected(frames, n, seq))
            seq += n
            frames.view(np.uint8)[:] = rng.integers(0, 256, frames.nbytes, dtype=np.uint8)
        got = [sub.recv_multipart() for _ in sent]
        assert [topic for topic, _ in got] == [b"batch.ext"] * len(sent)
        assert [payload for _, payload in got] == sent
        assert wait_until(lambda: publisher.batch_sequences()["ext"] == seq - 1)


@pytest.mark.parametrize(
    "dtype",
    [k.FRAME_BAR, np.dtype(s.HEADER.descr + [("payload", "u1", (13,))])],
    ids=["bar", "odd-size"],
)
def test_a_batch_beyond_batch_max_records_is_split_into_chained_messages(dtype) -> None:
    with _batched(batch_max_records=5) as (publisher, sub):
        frames = np.zeros(12, dtype)
        rng = np.random.default_rng(3)
        frames.view(np.uint8)[:] = rng.integers(0, 256, frames.nbytes, dtype=np.uint8)
        rows = frames.view(np.uint8).reshape(len(frames), frames.dtype.itemsize)
        assert publisher.publish_frames("ext", frames, list(range(12))) == 12
        got = [sub.recv_multipart()[1] for _ in range(3)]
        headers = [np.frombuffer(m, s.HEADER, 1)[0] for m in got]
        assert [int(h["count"]) for h in headers] == [5, 5, 2]
        assert [int(h["seq"]) for h in headers] == [0, 5, 10]  # seq + count chains them
        assert {int(h["stream_id"]) for h in headers} == {BATCH_STREAM_ID}
        records = b"".join(m[s.HEADER_SIZE :] for m in got)
        assert records == rows[:, s.HEADER_SIZE :].tobytes()
        assert publisher.batch_sequences()["ext"] == 11


def test_pack_batch_writes_header_and_records_as_words() -> None:
    frames = np.zeros(5, k.FRAME_TRADE)
    frames.view(np.uint8)[:] = np.arange(frames.nbytes, dtype=np.uint64).astype(np.uint8)
    out = np.zeros((s.HEADER_SIZE + 5 * (k.FRAME_TRADE.itemsize - s.HEADER_SIZE)) // 8, np.uint64)
    words = frames.view(np.uint64).reshape(5, -1)
    nbytes = k.pack_batch(words, 3, out, 1 << 40, BATCH_STREAM_ID)
    assert nbytes == s.HEADER_SIZE + 3 * (k.FRAME_TRADE.itemsize - s.HEADER_SIZE)
    assert out.view(np.uint8)[:nbytes].tobytes() == _expected(frames, 3, 1 << 40)
