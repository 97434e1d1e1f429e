"""Result publisher: a PUB socket, per-symbol and batched result topics, plus ``stats``.

``publish.mode`` chooses the result topics (``symbol``, ``batch`` or ``both``):

* per symbol (``symbol``): ``b"<analytic>.<symbol id>"`` (``quote.7``,
  ``trade.7``, ``bar.7``, ``book.7``).  Each message has two parts: the topic
  and one wire frame (header + one result record, ``count == 1``), whose
  ``stream_id`` is the symbol and whose ``seq`` counts the results of that topic.
* batched (``batch``): ``b"batch.<analytic>"`` (``batch.quote`` ...).  Each
  input frame yields one message per analytic it produced results for: the
  topic and one wire frame in the same format whose ``count`` records are the
  results of every symbol the frame touched (each record names its ``symbol``),
  in the order the per-symbol topics would have carried them; ``stream_id`` is
  ``BATCH_STREAM_ID`` and ``seq`` counts the results (records) of that topic, so
  ``seq`` of the next message is ``seq + count``.  A frame's batch of more than
  ``publish.batch_max_records`` records (only bars, or more symbols than that)
  goes out as several consecutive messages of at most that many.

Byte budget: the socket's SNDHWM counts messages, so it is derived from the
largest message the mode can send (``PublishConfig.effective_sndhwm``): with
batched topics, a whole batch (``engine/config.py``, ``batch_message_cost``).

Both kinds of ``seq`` let a subscriber detect its own losses.  ZeroMQ
subscriptions match prefixes: ``trade.1`` also matches ``trade.12``; subscribe
to ``trade.`` for every symbol, to ``batch.`` for every batched analytic, and
filter exact topics on the subscriber where that matters.
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec
import numpy as np
import zmq

from tickpath.engine.config import ConnectionsConfig, PublishConfig
from tickpath.engine.security.config import SecurityConfig
from tickpath.engine.security.curve import apply_curve_server
from tickpath.engine.security.guard import apply_connection_options, guard_socket
from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu import streaming as k
from tickpath.kernels.cpu.calls import compiled_for

STATS_TOPIC = b"stats"
BATCH_PREFIX = "batch."
BATCH_STREAM_ID = 0xFFFFFFFF  # stream_id of a batched result frame: all symbols
_COUNT_AT = s.HEADER.fields["count"][1]  # byte offsets in the header
_STREAM_AT = s.HEADER.fields["stream_id"][1]
_SEQ_AT = s.HEADER.fields["seq"][1]


class ResultPublisher:
    """Sends the result frames the streaming kernels left in their output arrays."""

    def __init__(
        self,
        context: zmq.Context,
        config: PublishConfig,
        n_symbols: int,
        security: SecurityConfig | None = None,
        connections: ConnectionsConfig | None = None,
        see_subscribers: bool = False,
    ) -> None:
        # XPUB (see_subscribers): the same sending side, and the subscriptions can be read,
        # so a tool can wait for its first subscriber (wait_for_subscriber) instead of sleeping
        self.socket = context.socket(zmq.XPUB if see_subscribers else zmq.PUB)
        # per-subscriber queue bounded in bytes (see PublishConfig.effective_sndhwm);
        # subscriptions longer than max_message_bytes disconnect their subscriber
        self.sndhwm = config.effective_sndhwm(n_symbols)
        self.socket.setsockopt(zmq.SNDHWM, self.sndhwm)
        # subscriptions queued per subscriber (PublishConfig.subscription_backlog)
        self.socket.setsockopt(zmq.RCVHWM, config.subscription_backlog)
        self.socket.setsockopt(zmq.MAXMSGSIZE, config.max_message_bytes)
        self.socket.setsockopt(zmq.LINGER, 0)
        if security is not None:
            apply_curve_server(self.socket, security)  # results and stats: CURVE when on
        apply_connection_options(self.socket, connections or ConnectionsConfig())
        guard_socket(self.socket, "publish", config.max_subscribers)  # subscriber cap, counts
        if config.bind:
            self.socket.bind(config.endpoint)
            self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        else:
            self.socket.connect(config.endpoint)
            self.endpoint = config.endpoint
        # Topic bytes made once: no formatting on the hot path.
        self.topics = [
            [f"{name}.{symbol}".encode() for symbol in range(n_symbols)]
            for name in k.ANALYTIC_NAMES
        ]
        self._extra_topics: dict[str, list[bytes]] = {}
        self._views: tuple | None = None
        self._encoder = msgspec.json.Encoder()
        self.per_symbol = config.mode in ("symbol", "both")
        self.batched = config.mode in ("batch", "both")
        self.batch_topics = [f"{BATCH_PREFIX}{name}".encode() for name in k.ANALYTIC_NAMES]
        self.batch_max_records = config.batch_max_records
        self._batches: dict[str, _Batch] = {}  # per analytic: frame buffer and result seq
        if self.batched:  # compiled (or loaded from numba's cache) now, not on the first frame
            words = s.HEADER_SIZE // 8 + 1
            k.pack_batch(np.zeros((1, words), np.uint64), 1, np.zeros(words, np.uint64), 0, 0)

    def publish_results(self, state: k.StreamingState, total: int = 0) -> int:
        """Send every result frame of the last input frame; return how many were sent.

        ``total`` is what the kernel returned; 1 (a single-record frame) takes a
        shorter path with no per-frame slicing.
        """
        views = self._views
        if views is None or views[0] is not state:
            views = self._views = self._bind(state)
        _, outputs, touched, firsts, batches = views
        counts = state.n_touched.tolist()
        send = self.socket.send
        if self.batched:
            for analytic in range(k.N_ANALYTICS):
                if counts[analytic]:
                    batches[analytic].send(send, counts[analytic])
            if not self.per_symbol:
                return sum(counts)
        if total == 1 and k.A_BAR != (analytic := counts.index(1)):
            send(self.topics[analytic][int(touched[analytic, 0])], zmq.SNDMORE)
            send(firsts[analytic])
            return 1
        sent = 0
        for analytic in range(k.N_ANALYTICS):
            n = counts[analytic]
            if n == 0:
                continue
            raw, size = outputs[analytic]
            topics = self.topics[analytic]
            if analytic == k.A_BAR:
                symbols = state.out_bar["symbol"][:n].tolist()
            else:
                symbols = touched[analytic, :n].tolist()
            offset = 0
            for symbol in symbols:
                send(topics[symbol], zmq.SNDMORE)
                send(raw[offset : offset + size])
                offset += size
            sent += n
        return sent

    def _bind(self, state: k.StreamingState) -> tuple:
        # memoryviews of the output arrays, made once per state, not per frame
        arrays = (state.out_quote, state.out_trade, state.out_bar, state.out_book)
        outputs = [(memoryview(out.view(np.uint8)), out.dtype.itemsize) for out in arrays]
        firsts = [raw[:size] for raw, size in outputs]  # the first result frame of each
        batches = [
            self._batch(name, out) for name, out in zip(k.ANALYTIC_NAMES, arrays, strict=True)
        ]
        return state, outputs, state.touched_list, firsts, batches

    def _batch(self, analytic: str, frames: np.ndarray) -> _Batch:
        """The batch of ``analytic`` over the output array ``frames`` (its seq carries over
        when the array changes, e.g. a new state of the same engine)."""
        batch = self._batches.get(analytic)
        seq = batch.seq if batch is not None else 0
        batch = self._batches[analytic] = _Batch(
            f"{BATCH_PREFIX}{analytic}".encode(), frames, self.batch_max_records
        )
        batch.seq = seq
        return batch

    def publish_frames(self, analytic: str, frames: np.ndarray, symbols: list[int]) -> int:
        """Send an extension's result frames: ``frames[j]`` under ``<analytic>.<symbols[j]>``
        (per-symbol mode), the first ``len(symbols)`` of them as one ``batch.<analytic>``
        message (batch mode), or both.

        ``frames`` is an array whose elements are whole wire frames (header + one record).
        """
        topics = self._extra_topics.get(analytic)
        if topics is None:
            topics = self._extra_topics[analytic] = [
                f"{analytic}.{symbol}".encode() for symbol in range(len(self.topics[0]))
            ]
        send = self.socket.send
        if self.batched and symbols:
            batch = self._batches.get(analytic)
            if batch is None or batch.source is not frames:
                batch = self._batch(analytic, frames)
            batch.send(send, len(symbols))
            if not self.per_symbol:
                return len(symbols)
        size = frames.dtype.itemsize
        raw = memoryview(frames.view(np.uint8))
        for j, symbol in enumerate(symbols):
            send(topics[symbol], zmq.SNDMORE)
            send(raw[j * size : (j + 1) * size])
        return len(symbols)

    def batch_sequences(self) -> dict[str, int]:
        """``{"<analytic>": seq of the last record sent on batch.<analytic>}`` (-1: none yet),
        every batched topic of the micro path, sent or not."""
        out = {name: -1 for name in k.ANALYTIC_NAMES}
        for name, batch in self._batches.items():
            out[name] = batch.seq - 1
        return out

    def publish_stats(self, stats: dict) -> None:
        """Send one JSON stats message under the ``stats`` topic."""
        self.socket.send_multipart([STATS_TOPIC, self._encoder.encode(stats)])

    def wait_for_subscriber(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a subscription (made with ``see_subscribers``);
        True once one arrived."""
        if self.socket.type != zmq.XPUB:
            raise ValueError("wait_for_subscriber needs a publisher made with see_subscribers")
        if not self.socket.poll(int(max(0.0, timeout_s) * 1000)):
            return False
        while self.socket.poll(0):  # subscription messages: read, not needed further
            self.socket.recv()
        return True

    def close(self, flush_s: float = 0.0) -> None:
        """Close the socket; ``flush_s > 0`` lets queued messages leave for up to that long
        (when the context is terminated), instead of dropping them."""
        self.socket.close(linger=int(flush_s * 1000))


class _Batch:
    """One analytic's batched result frame: a buffer for a header and every record of an
    input frame's results, packed by one numba call (:func:`streaming.pack_batch`) out of
    the kernel's output array, or by numpy where its frames are not whole 8-byte words."""

    def __init__(self, topic: bytes, frames: np.ndarray, max_records: int) -> None:
        self.topic = topic
        self.source = frames
        self.max_records = max_records  # per message: a larger batch is split
        self.seq = 0  # results (records) sent under this topic
        size = frames.dtype.itemsize
        header = s.HEADER_SIZE
        self.record_size = record = size - header
        # every element of ``frames`` is a whole wire frame: header + one record
        self.rows = frames.view(np.uint8).reshape(len(frames), size)
        most = min(len(frames), max_records)  # records in one message
        self.buffer = np.zeros(header + most * record, np.uint8)
        self.raw = memoryview(self.buffer)
        self.words = None
        if size % 8 == 0 and frames.flags.c_contiguous and sys.byteorder == "little":
            # the fast path: header and records as 8-byte words, packed in one call
            self.frame_words = frames.view(np.uint64).reshape(len(frames), size // 8)
            self.words = self.buffer.view(np.uint64)
            # every call passes these arrays (or a C-contiguous tail of frame_words) and ints
            self._pack = compiled_for(k.pack_batch, (self.frame_words, 1, self.words, 0, 0))
            return
        self.header = self.buffer[:header]
        self.records = self.buffer[header:].reshape(most, record)
        self.stream_id = self.buffer[_STREAM_AT : _STREAM_AT + 4].view("<u4")
        self.count = self.buffer[_COUNT_AT : _COUNT_AT + 4].view("<u4")
        self.seq_field = self.buffer[_SEQ_AT : _SEQ_AT + 8].view("<u8")

    def send(self, send: Any, n: int) -> None:
        """Send the first ``n`` result frames of the source array as one frame (as
        several of at most ``max_records`` records when ``n`` is larger)."""
        if n > self.max_records:  # rare: only bars, or more symbols than max_records
            for start in range(0, n, self.max_records):
                self._send(send, start, min(self.max_records, n - start))
        else:
            self._send(send, 0, n)

    def _send(self, send: Any, start: int, n: int) -> None:
        seq = self.seq
        self.seq = seq + n
        if self.words is not None:
            frames = self.frame_words if start == 0 else self.frame_words[start:]
            nbytes = self._pack(frames, n, self.words, seq, BATCH_STREAM_ID)
            send(self.topic, zmq.SNDMORE)
            send(self.raw[:nbytes])
            return
        rows = self.rows if start == 0 else self.rows[start:]
        np.copyto(self.records[:n], rows[:n, s.HEADER_SIZE :])
        self.header[:] = rows[0, : s.HEADER_SIZE]  # magic, version, kind, send_ns
        self.stream_id[0] = BATCH_STREAM_ID
        self.count[0] = n
        self.seq_field[0] = seq
        send(self.topic, zmq.SNDMORE)
        send(self.raw[: s.HEADER_SIZE + n * self.record_size])
