"""Kernel buffers: every TCP connection the engine accepts has the configured SO_RCVBUF
and SO_SNDBUF (``connections.receive_buffer_bytes`` and ``send_buffer_bytes`` for ingest
and publish, ``dispatch.requests.receive_buffer_bytes`` and ``send_buffer_bytes`` for the
request endpoint).

A bounded receive buffer caps what a peer has in flight in the kernel and what one read
copies; a bounded send buffer caps the kernel memory a slow subscriber holds beyond its
SNDHWM queue and what one write copies. Under Linux's non-preemptive kernel a multi-MiB
copy in the request process or in libzmq's I/O thread delays the tick thread's wake-up
(bench/bench_pressure.py, docs/reliability.md). Without the settings the kernel
autotunes the buffers up to ``net.ipv4.tcp_rmem``'s and ``tcp_wmem``'s maxima.

The engine runs in this process, so its accepted sockets are this process's descriptors,
and the request process is its child: each socket is inspected with ``getsockopt`` on a
duplicate (``pidfd_getfd`` for the child's). Linux reports twice the value set (the other
half is its bookkeeping).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket

import pytest
import zmq

from tests.dispatch.helpers import EngineRig
from tests.integration.test_engine_sockets import Harness
from tickpath.engine.config import load_config
from tickpath.engine.service.requests import decode_reply, encode_request

pytestmark = pytest.mark.integration


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


_SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture (the generic table)
_libc = ctypes.CDLL(None, use_errno=True)


def _descriptor(fd: int, pidfd: int | None) -> int:
    """A duplicate, in this process, of descriptor ``fd`` of this process (``pidfd`` None)
    or of the process ``pidfd`` refers to."""
    if pidfd is None:
        return os.dup(fd)
    got = _libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)  # Linux >= 5.6; ptrace access
    if got < 0:
        raise OSError(ctypes.get_errno(), f"pidfd_getfd of descriptor {fd}")
    return got


def accepted_buffers(
    port: int, pid: int | None = None, option: int = socket.SO_RCVBUF
) -> list[int]:
    """SO_RCVBUF (or ``option``) of every TCP connection of process ``pid`` (this one by
    default) accepted on local ``port``."""
    pidfd = None if pid is None else os.pidfd_open(pid)
    fds = f"/proc/{pid or 'self'}/fd"
    found = []
    try:
        for name in os.listdir(fds):
            try:
                if not os.readlink(f"{fds}/{name}").startswith("socket:"):
                    continue
                sock = socket.socket(fileno=_descriptor(int(name), pidfd))
            except OSError as exc:  # closed meanwhile (the listing's own descriptor, for one)
                if exc.errno in (errno.ENOENT, errno.EBADF):
                    continue
                raise
            try:
                if sock.family != socket.AF_INET or sock.type != socket.SOCK_STREAM:
                    continue
                try:
                    sock.getpeername()
                except OSError:
                    continue  # the listener
                if sock.getsockname()[1] == port:
                    found.append(sock.getsockopt(socket.SOL_SOCKET, option))
            finally:
                sock.close()
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return found


def test_ingest_and_publish_connections_have_the_configured_receive_buffer():
    h = Harness(**{"connections.receive_buffer_bytes": 40960})
    try:  # joined: the harness's PUB and SUB are connected and have exchanged a probe
        for endpoint in (h.engine.receiver.endpoints[0], h.engine.publisher.endpoint):
            buffers = accepted_buffers(_port(endpoint))
            assert buffers == [2 * 40960], (endpoint, buffers)
    finally:
        h.close()


def test_ingest_and_publish_connections_have_the_configured_send_buffer():
    h = Harness(**{"connections.send_buffer_bytes": 36864})
    try:
        for endpoint in (h.engine.receiver.endpoints[0], h.engine.publisher.endpoint):
            buffers = accepted_buffers(_port(endpoint), option=socket.SO_SNDBUF)
            assert buffers == [2 * 36864], (endpoint, buffers)
    finally:
        h.close()


def test_send_buffers_are_bounded_by_default():
    """Without a setting the kernel would autotune a busy subscriber's send buffer up to
    tcp_wmem's maximum; the default bounds it (64 KiB, reported as twice that)."""
    h = Harness()
    try:
        buffers = accepted_buffers(_port(h.engine.publisher.endpoint), option=socket.SO_SNDBUF)
        assert buffers == [2 * (64 << 10)], buffers
    finally:
        h.close()


def test_request_connections_have_their_own_buffers():
    rig = EngineRig(
        dispatch={"requests": {"receive_buffer_bytes": 24576, "send_buffer_bytes": 20480}},
        requests=True,
        **{"connections.receive_buffer_bytes": 40960},
    )
    client = zmq.Context.instance().socket(zmq.DEALER)
    client.setsockopt(zmq.LINGER, 0)
    try:
        job = {"type": "price_chain", "spot": 100.0, "strike": [90.0, 110.0],
               "expiry": [0.5, 0.5], "vol": [0.2, 0.2], "call": [True, False]}  # fmt: skip
        client.connect(rig.request_endpoint)
        client.send_multipart([b"", encode_request(job, use_msgpack=False)])
        assert client.poll(120_000), "no reply"
        assert decode_reply(client.recv_multipart()[-1])["ok"]
        # the reply came over the accepted connection, which stays open with the client
        pid = rig.engine.stats()["requests"]["process"]["pid"]  # the request process
        buffers = accepted_buffers(_port(rig.request_endpoint), pid)
        assert buffers == [2 * 24576], buffers
        sent = accepted_buffers(_port(rig.request_endpoint), pid, socket.SO_SNDBUF)
        assert sent == [2 * 20480], sent
        ingest = accepted_buffers(_port(rig.engine.receiver.endpoints[0]))
        assert ingest == [2 * 40960], ingest
    finally:
        client.close()
        rig.close()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("connections.receive_buffer_bytes", 100),
        ("connections.receive_buffer_bytes", 1 << 30),
        ("dispatch.requests.receive_buffer_bytes", -1),
        ("connections.send_buffer_bytes", 4095),
        ("connections.send_buffer_bytes", 1 << 27),
        ("dispatch.requests.send_buffer_bytes", -1),
    ],
)
def test_a_kernel_buffer_out_of_range_is_a_one_line_error(key, value):
    with pytest.raises(ValueError, match=key.replace(".", r"\.") + " must be 0 or in"):
        load_config(None, {key: value})
