"""Market-data ingest: SUB socket(s) receiving frames into one preallocated buffer.

Every frame is received with ``recv_into`` into the same buffer, and the
numba kernels read it through typed views made once at start-up, so a frame
costs no allocation and no copy beyond libzmq's own.  ``RCVHWM`` is set
explicitly: when the engine falls behind, libzmq drops whole frames at that
mark and the per-stream sequence accounting counts them as gaps.

Byte budget: ``RCVHWM`` is ``IngestConfig.effective_rcvhwm`` (``backlog_bytes`` over
the largest message), and ``ZMQ_MAXMSGSIZE`` is ``IngestConfig.message_limit``: a
publisher that sends a larger message is disconnected by libzmq before the
message is buffered (counted as a ``disconnected`` ingest connection in
``stats.security.connections``).  Under a connection guard the socket also gets a
connection cap (``max_connections``); heartbeats and the handshake deadline come
from ``[connections]``.
"""

from __future__ import annotations

import numpy as np
import zmq

from tickpath.engine.config import ConnectionsConfig, IngestConfig
from tickpath.engine.ingest.io_threads import PRIVATE, PUBLIC, has_public_thread
from tickpath.engine.security.config import SecurityConfig
from tickpath.engine.security.curve import apply_curve_server
from tickpath.engine.security.guard import apply_connection_options, guard_socket


class FrameReceiver:
    """Receives tickpath frames from one SUB socket bound or connected to every endpoint
    (``ingest.endpoints``, and ``ingest.public_endpoints`` bound on their own I/O thread)."""

    def __init__(
        self,
        context: zmq.Context,
        config: IngestConfig,
        buffer: np.ndarray,
        timeout_ms: int = 100,
        security: SecurityConfig | None = None,
        connections: ConnectionsConfig | None = None,
    ) -> None:
        self.config = config
        self.buffer = buffer
        self.socket = context.socket(zmq.SUB)
        if security is not None:
            apply_curve_server(self.socket, security)  # CURVE server when security.curve is on
        apply_connection_options(self.socket, connections or ConnectionsConfig())
        guard_socket(self.socket, "ingest", config.max_connections)  # cap, counts (if guarded)
        self.socket.setsockopt(zmq.MAXMSGSIZE, config.message_limit)
        self.socket.setsockopt(zmq.RCVHWM, config.effective_rcvhwm)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVTIMEO, timeout_ms)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.endpoints: list[str] = []
        for endpoint in config.endpoints:
            if config.bind:
                self.socket.bind(endpoint)
                self.endpoints.append(self.socket.getsockopt_string(zmq.LAST_ENDPOINT))
            else:
                self.socket.connect(endpoint)
                self.endpoints.append(endpoint)
        # Public endpoints: their connections on the context's second (SCHED_IDLE) I/O
        # thread, the others keep the first (io_threads.py).  The affinity a listener
        # takes is the socket's at bind time.
        self.public_endpoints: list[str] = []
        if config.public_endpoints:
            if not has_public_thread(context):
                self.socket.close(linger=0)
                raise ValueError(
                    "ingest.public_endpoints needs a ZeroMQ context with 2 I/O threads "
                    "(the engine makes one when none is given)"
                )
            self.socket.setsockopt(zmq.AFFINITY, PUBLIC)
            for endpoint in config.public_endpoints:
                self.socket.bind(endpoint)
                self.public_endpoints.append(self.socket.getsockopt_string(zmq.LAST_ENDPOINT))
            self.socket.setsockopt(zmq.AFFINITY, PRIVATE)
        self._spill = bytearray(64)

    def receive(self) -> int:
        """Receive one frame into the buffer; return its length, or -1 if none came in time.

        A multipart message returns -2 (its parts are drained); a frame larger
        than the buffer returns its full length, which exceeds ``len(buffer)``.
        """
        return self.receive_into(self.buffer)

    def receive_into(self, buffer: np.ndarray, flags: int = 0) -> int:
        """:meth:`receive` into ``buffer`` (``flags``: ``zmq.NOBLOCK`` returns -1 at once
        when no frame is waiting)."""
        try:
            nbytes = self.socket.recv_into(buffer, flags=flags)
        except zmq.Again:
            return -1
        if self.socket.getsockopt(zmq.RCVMORE):
            while self.socket.getsockopt(zmq.RCVMORE):
                self.socket.recv_into(self._spill)
            return -2
        return nbytes

    def close(self) -> None:
        """Close the socket."""
        self.socket.close(linger=0)
