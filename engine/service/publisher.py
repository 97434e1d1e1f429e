"""Result publisher: a PUB socket, one topic per analytic and symbol, plus ``stats``.

Topics are ``b"<analytic>.<symbol id>"`` (``quote.7``, ``trade.7``, ``bar.7``,
``book.7``) and ``b"stats"``.  Each message has two parts: the topic and one
wire frame (header + one result record, ``count == 1``), whose ``stream_id``
is the symbol and whose ``seq`` counts the results of that topic, so a
subscriber detects its own losses.  ZeroMQ subscriptions match prefixes:
``trade.1`` also matches ``trade.12``; subscribe to ``trade.`` for every
symbol, and filter exact topics on the subscriber where that matters.
"""

from __future__ import annotations

import msgspec
import numpy as np
import zmq

from tickpath.engine.config import ConnectionsConfig, PublishConfig
from tickpath.engine.security.config import SecurityConfig
from tickpath.engine.security.curve import apply_curve_server
from tickpath.engine.security.guard import apply_connection_options, guard_socket
from tickpath.kernels.cpu import streaming as k

STATS_TOPIC = b"stats"


class ResultPublisher:
    """Sends the result frames the streaming kernels left in their output arrays."""

    def __init__(
        self,
        context: zmq.Context,
        config: PublishConfig,
        n_symbols: int,
        security: SecurityConfig | None = None,
        connections: ConnectionsConfig | None = None,
    ) -> None:
        self.socket = context.socket(zmq.PUB)
        # per-subscriber queue bounded in bytes (see PublishConfig.effective_sndhwm);
        # subscriptions longer than max_message_bytes disconnect their subscriber
        self.socket.setsockopt(zmq.SNDHWM, config.effective_sndhwm)
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

    def publish_results(self, state: k.StreamingState, total: int = 0) -> int:
        """Send every result frame of the last input frame; return how many were sent.

        ``total`` is what the kernel returned; 1 (a single-record frame) takes a
        shorter path with no per-frame slicing.
        """
        views = self._views
        if views is None or views[0] is not state:
            views = self._views = self._bind(state)
        _, outputs, touched, firsts = views
        counts = state.n_touched.tolist()
        send = self.socket.send
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

    @staticmethod
    def _bind(state: k.StreamingState) -> tuple:
        # memoryviews of the output arrays, made once per state, not per frame
        outputs = [
            (memoryview(out.view(np.uint8)), out.dtype.itemsize)
            for out in (state.out_quote, state.out_trade, state.out_bar, state.out_book)
        ]
        firsts = [raw[:size] for raw, size in outputs]  # the first result frame of each
        return state, outputs, state.touched_list, firsts

    def publish_frames(self, analytic: str, frames: np.ndarray, symbols: list[int]) -> int:
        """Send an extension's result frames: ``frames[j]`` under ``<analytic>.<symbols[j]>``.

        ``frames`` is an array whose elements are whole wire frames (header + one record).
        """
        topics = self._extra_topics.get(analytic)
        if topics is None:
            topics = self._extra_topics[analytic] = [
                f"{analytic}.{symbol}".encode() for symbol in range(len(self.topics[0]))
            ]
        size = frames.dtype.itemsize
        raw = memoryview(frames.view(np.uint8))
        send = self.socket.send
        for j, symbol in enumerate(symbols):
            send(topics[symbol], zmq.SNDMORE)
            send(raw[j * size : (j + 1) * size])
        return len(symbols)

    def publish_stats(self, stats: dict) -> None:
        """Send one JSON stats message under the ``stats`` topic."""
        self.socket.send_multipart([STATS_TOPIC, self._encoder.encode(stats)])

    def close(self) -> None:
        """Close the socket."""
        self.socket.close(linger=0)
