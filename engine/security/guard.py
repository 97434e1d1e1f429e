"""``ConnectionGuard``: who may connect to the engine, and what happened to every connection.

One thread per engine context, off the tick path, does three things:

* **ZAP handler** (``inproc://zeromq.zap.01``): every handshake on a guarded
  socket asks it first.  CURVE clients are admitted when their public key is in
  the allow directory (or ``allow_any``); every client, CURVE or NULL, is refused
  when its socket already has ``limit`` open connections (``connection_cap``).
* **Socket monitors** of the guarded sockets: accepted, closed and refused
  connections are counted per socket (``ingest``, ``publish``), and
  handshakes that fail before ZAP is asked are counted by libzmq's reason:
  ``mechanism_mismatch`` (a NULL client at a CURVE endpoint) and
  ``cryptographic`` (a client with a wrong server key, or one presenting an
  allowed public key without its secret key: libzmq reports both as
  ``ZMTP_CRYPTOGRAPHIC`` and does not tell them apart).  ``accept_failed`` counts
  ``accept`` errors (``EMFILE``: out of descriptors).
* **Allow-list reload**: the allow directory's ``*.key`` files are hashed (names
  and contents) every second; when the hash changes the keys are re-read, and
  live connections of a key that is no longer allowed are closed (libzmq has no
  call to close one connection: the guard ``shutdown``\\ s the TCP sockets from
  the addresses that key connected from; an allowed client sharing such an address
  reconnects and is admitted again).

Refusals and drops are logged at WARNING, at most once per reason (and key) per
``connections.log_interval_s``, with the number suppressed since.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import queue
import socket as pysocket
import struct
import threading
import time
import weakref
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from tickpath.engine.config import ConnectionsConfig
from tickpath.engine.security.config import SecurityConfig
from tickpath.engine.security.curve import SecurityError

log = logging.getLogger("tickpath.security")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
REFUSE_REASONS = (
    "unknown_key",  # ZAP: a CURVE key not in the allow-list
    "connection_cap",  # ZAP: the socket already has its limit of connections
    "mechanism",  # ZAP: a mechanism the engine does not use (PLAIN)
    "mechanism_mismatch",  # monitor: NULL client at a CURVE endpoint (or CURVE at a NULL one)
    "cryptographic",  # monitor: wrong server key, or an allowed public key without its secret
    "protocol",  # monitor: any other ZMTP protocol error
    "no_detail",  # monitor: handshake failed without a reason (e.g. a peer that vanished)
)
_MONITOR_EVENTS = (
    zmq.EVENT_ACCEPTED
    | zmq.EVENT_ACCEPT_FAILED
    | zmq.EVENT_CONNECTED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
_PROTOCOL_REASONS = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "mechanism_mismatch",
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "cryptographic",
}
_RELOAD_S = 1.0
_EVENT = struct.Struct("=HI")  # a monitor event's first frame

_guards: weakref.WeakKeyDictionary[zmq.Context, ConnectionGuard] = weakref.WeakKeyDictionary()


def bind_zap_endpoint(socket: zmq.Socket, wait_s: float = 5.0) -> None:
    """Bind ``socket`` to the context's ZAP address, waiting up to ``wait_s`` while the
    address is still taken: libzmq releases a closed socket's inproc address when its
    reaper thread gets to it, so a handler closed just before (the previous engine of this
    context) can hold it for a moment after ``close()`` returned."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            socket.bind(ZAP_ENDPOINT)
            return
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EADDRINUSE or time.monotonic() >= deadline:
                raise
        time.sleep(0.01)


def guard_for(context: zmq.Context) -> ConnectionGuard | None:
    """The running guard of ``context``, if any."""
    return _guards.get(context)


def apply_connection_options(
    socket: zmq.Socket,
    connections: ConnectionsConfig,
    receive_buffer_bytes: int | None = None,
    send_buffer_bytes: int | None = None,
) -> None:
    """Heartbeats, the handshake deadline and the kernel receive and send buffers of a
    socket that talks to peers (before bind); ``receive_buffer_bytes`` and
    ``send_buffer_bytes`` override the connections'."""
    socket.setsockopt(zmq.HANDSHAKE_IVL, max(1, int(connections.handshake_timeout_s * 1000)))
    if receive_buffer_bytes is None:
        receive_buffer_bytes = connections.receive_buffer_bytes
    if send_buffer_bytes is None:
        send_buffer_bytes = connections.send_buffer_bytes
    # libzmq sets SO_RCVBUF and SO_SNDBUF on every connection it makes or accepts
    if receive_buffer_bytes:
        socket.setsockopt(zmq.RCVBUF, receive_buffer_bytes)
    if send_buffer_bytes:
        socket.setsockopt(zmq.SNDBUF, send_buffer_bytes)
    if connections.heartbeat_ivl_s > 0:
        timeout = max(1, int(connections.heartbeat_timeout_s * 1000))
        socket.setsockopt(zmq.HEARTBEAT_IVL, max(1, int(connections.heartbeat_ivl_s * 1000)))
        socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, timeout)
        socket.setsockopt(zmq.HEARTBEAT_TTL, min(timeout, 6_553_500))  # libzmq: 100 ms units


def guard_socket(socket: zmq.Socket, role: str, limit: int) -> bool:
    """Put ``socket`` under its context's guard (before bind/connect); False without one."""
    guard = guard_for(socket.context)
    if guard is None:
        return False
    guard.attach(socket, role, limit)
    return True


class RateLimitedLog:
    """WARNING lines, at most one per key and interval, with the count suppressed meanwhile."""

    def __init__(self, logger: logging.Logger, interval_s: float) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last: dict[object, float] = {}
        self._suppressed: dict[object, int] = {}

    def due(self, key: object) -> bool:
        """True if a line for ``key`` would be logged now (else it only counts as suppressed)."""
        last = self._last.get(key)
        if last is not None and time.monotonic() - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        return True

    def warning(self, key: object, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``key`` was logged within the interval; True if logged."""
        return self.log(logging.WARNING, key, message, *args)

    def log(self, level: int, key: object, message: str, *args: object) -> bool:
        """:meth:`warning` at another level."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if len(self._last) > 10_000:  # keys by client key: keep the table bounded
            self._last.clear()
        self._last[key] = now
        more = self._suppressed.pop(key, 0)
        if more:
            message += " (%d more like it since the last report)"
            args = (*args, more)
        self.logger.log(level, message, *args)
        return True


def _peer_ip(fd: int) -> str | None:
    try:
        sock = pysocket.socket(fileno=fd)
    except OSError:
        return None
    try:
        return str(sock.getpeername()[0])
    except (OSError, IndexError):
        return None
    finally:
        sock.detach()


def _shutdown(fd: int) -> bool:
    try:
        sock = pysocket.socket(fileno=fd)
    except OSError:
        return False
    try:
        sock.shutdown(pysocket.SHUT_RDWR)  # libzmq sees the end of the stream and closes it
        return True
    except OSError:
        return False
    finally:
        sock.detach()


def allow_list_digest(directory: str | Path) -> str:
    """SHA-256 over the names and contents of the ``*.key`` files of an allow directory."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).glob("*.key")):
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


class ConnectionGuard:
    """ZAP handler, socket monitors and allow-list of one context (see the module doc)."""

    def __init__(
        self,
        context: zmq.Context,
        security: SecurityConfig,
        connections: ConnectionsConfig | None = None,
    ) -> None:
        if guard_for(context) is not None:
            raise RuntimeError("this context already has a connection guard")
        self.context = context
        self.security = security
        self.connections = connections or ConnectionsConfig()
        self.allowed = 0
        self.denied = 0
        self.refused = dict.fromkeys(REFUSE_REASONS, 0)
        self.revoked_disconnects = 0
        self.reloads = 0
        self.roles: dict[str, dict[str, int]] = {}
        self._fds: dict[str, dict[int, str | None]] = {}
        self._key_ips: dict[bytes, set[str]] = {}
        self._keys: frozenset[bytes] = frozenset()
        self._digest: str | None = None
        self._log = RateLimitedLog(log, self.connections.log_interval_s)
        self._new: queue.SimpleQueue = queue.SimpleQueue()
        self._reload_now = threading.Event()
        self._stop = threading.Event()
        if security.curve and security.allow is not None:
            self._reload(initial=True)
        self._zap = context.socket(zmq.REP)
        self._zap.setsockopt(zmq.LINGER, 0)
        try:
            bind_zap_endpoint(self._zap)
        except zmq.ZMQError as exc:
            self._zap.close()
            raise SecurityError(f"cannot start the ZAP handler: {exc}") from None
        _guards[context] = self
        self._thread = threading.Thread(target=self._run, name="tickpath-guard", daemon=True)
        self._thread.start()

    # -- sockets ------------------------------------------------------------

    def attach(self, socket: zmq.Socket, role: str, limit: int) -> None:
        """Guard ``socket`` as ``role`` with at most ``limit`` connections (before bind)."""
        socket.zap_domain = f"{self.security.domain}.{role}".encode()
        if role not in self.roles:
            self.roles[role] = {
                "limit": limit,
                "accepted": 0,
                "disconnected": 0,
                "handshakes": 0,
                "accept_failed": 0,
            }
            self._fds[role] = {}
        monitor = socket.get_monitor_socket(_MONITOR_EVENTS)
        self._new.put((monitor, role))

    # -- the thread ---------------------------------------------------------

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._zap, zmq.POLLIN)
        monitors: dict[zmq.Socket, str] = {}
        next_reload = time.monotonic() + _RELOAD_S
        try:
            while not self._stop.is_set():
                while not self._new.empty():
                    monitor, role = self._new.get()
                    monitors[monitor] = role
                    poller.register(monitor, zmq.POLLIN)
                ready = dict(poller.poll(100))
                for monitor, role in monitors.items():
                    if monitor in ready:  # before ZAP: a connection is counted before it asks
                        try:
                            self._drain_monitor(monitor, role)
                        except Exception as exc:  # a malformed event: report, keep guarding
                            self._log.warning("monitor", "%s socket monitor: %r", role, exc)
                if self._zap in ready:
                    for _ in range(256):
                        try:
                            request = self._zap.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        try:
                            reply = self._answer(request)
                        except Exception:  # never leave a handshake waiting for an answer
                            log.exception("ZAP request failed")
                            request_id = request[1] if len(request) > 1 else b""
                            reply = [b"1.0", request_id, b"500", b"internal error", b"", b""]
                        self._zap.send_multipart(reply)
                now = time.monotonic()
                if self._reload_now.is_set() or now >= next_reload:
                    self._reload_now.clear()
                    next_reload = now + _RELOAD_S
                    if self.security.curve and self.security.allow is not None:
                        try:
                            self._reload()
                        except Exception as exc:  # keep the last good list
                            self._log.warning(
                                "reload", "CURVE allow-list %s: %s", self.security.allow, exc
                            )
        finally:
            for monitor in monitors:
                monitor.close(linger=0)
            while not self._new.empty():
                self._new.get()[0].close(linger=0)
            self._zap.close(linger=0)

    def _drain_monitor(self, monitor: zmq.Socket, role: str) -> None:
        counts = self.roles[role]
        fds = self._fds[role]
        recv = monitor.recv_multipart
        for _ in range(4096):
            try:
                frames = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            # [u16 event, u32 value][endpoint]; unpacked here, not by parse_monitor_message:
            # out of descriptors, libzmq reports ~100,000 failed accepts a second
            kind, value = _EVENT.unpack_from(frames[0])
            if kind == zmq.EVENT_ACCEPT_FAILED:
                counts["accept_failed"] += 1
                if self._log.due(("accept", role)):
                    self._log.warning(
                        ("accept", role),
                        "%s socket: accepting a connection failed: %s (%d open connections)",
                        role,
                        errno.errorcode.get(value, str(value)),
                        len(fds),
                    )
                continue
            event = {"endpoint": frames[1] if len(frames) > 1 else b""}
            if kind in (zmq.EVENT_ACCEPTED, zmq.EVENT_CONNECTED):
                fds[value] = _peer_ip(value)
                counts["accepted"] += 1
            elif kind == zmq.EVENT_DISCONNECTED:
                peer = fds.pop(value, None)
                counts["disconnected"] += 1
                if self._log.due(("closed", role)):  # leaving peers are normal: INFO
                    self._log.log(
                        logging.INFO,
                        ("closed", role),
                        "%s socket: connection from %s closed (%d open)",
                        role,
                        peer or "an unknown address",
                        len(fds),
                    )
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                counts["handshakes"] += 1
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                self._refuse(_PROTOCOL_REASONS.get(value, "protocol"), role, event["endpoint"])
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                self._refuse("no_detail", role, event["endpoint"])
            # HANDSHAKE_FAILED_AUTH: ZAP said no, already counted by its reason

    def _refuse(self, reason: str, role: str, endpoint: object, detail: str = "") -> None:
        self.refused[reason] += 1
        where = endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)
        self._log.warning(
            (reason, role), "%s %s: handshake refused (%s)%s", role, where, reason, detail
        )

    # -- ZAP ----------------------------------------------------------------

    def _answer(self, request: list[bytes]) -> list[bytes]:
        if len(request) < 6:
            request_id = request[1] if len(request) > 1 else b""
            return [b"1.0", request_id, b"500", b"malformed ZAP request", b"", b""]
        version, request_id, domain, address, _identity, mechanism = request[:6]
        credentials = request[6:]
        role = domain.decode(errors="replace").rpartition(".")[2]
        peer = address.decode(errors="replace")
        key = b""
        reason = None
        if mechanism == b"CURVE" and credentials:
            key = z85.encode(credentials[0])
            if not (self.security.allow_any or key in self._keys):
                reason = "unknown_key"
        elif mechanism != b"NULL" or self.security.curve:
            reason = "mechanism"
        limit = self.roles.get(role, {}).get("limit", 0)
        if reason is None and limit and len(self._fds.get(role, ())) > limit:
            reason = "connection_cap"
        if reason is None:
            if key:
                self.allowed += 1
                if not self.security.allow_any:  # revocable: remember where it connects from
                    self._key_ips.setdefault(key, set()).add(peer)
                log.debug("CURVE client %s from %s allowed (%s)", key.decode(), peer, role)
            return [version, request_id, b"200", b"OK", key, b""]
        self.denied += 1
        self.refused[reason] += 1
        if reason == "unknown_key":
            self._log.warning(
                (reason, key),
                "CURVE client %s from %s refused: key not in the allow-list (%s)",
                key.decode(errors="replace"),
                peer,
                role,
            )
        elif reason == "connection_cap":
            self._log.warning(
                (reason, role),
                "%s socket: connection from %s refused: %d connections open, limit %d",
                role,
                peer,
                len(self._fds.get(role, ())),
                limit,
            )
        else:
            self._log.warning(
                (reason, role), "%s socket: %s client from %s refused", role, mechanism, peer
            )
        return [version, request_id, b"400", reason.encode(), b"", b""]

    # -- allow-list ---------------------------------------------------------

    def _reload(self, initial: bool = False) -> bool:
        directory = self.security.allow
        try:
            digest = allow_list_digest(directory)
        except OSError as exc:
            if initial:
                raise SecurityError(f"cannot read allow directory {directory}: {exc}") from None
            raise
        if digest == self._digest:
            return False
        keys = frozenset(zmq.auth.load_certificates(directory))
        revoked = self._keys - keys
        self._keys = keys
        self._digest = digest
        self.reloads += 1
        log.info("CURVE allow-list %s: %d client keys", directory, len(keys))
        for key in revoked:
            self._disconnect(key)
        return True

    def _disconnect(self, key: bytes) -> None:
        ips = self._key_ips.pop(key, set())
        closed = 0
        for fds in self._fds.values():
            for fd, ip in list(fds.items()):
                if ip in ips and _shutdown(fd):
                    closed += 1
        self.revoked_disconnects += closed
        log.warning(
            "CURVE client %s revoked: %d live connection(s) from %s closed",
            key.decode(errors="replace"),
            closed,
            ", ".join(sorted(ips)) or "no address",
        )

    def request_reload(self) -> None:
        """Check the allow directory now instead of within the next second."""
        self._reload_now.set()

    # -- reporting, shutdown ------------------------------------------------

    def stats(self) -> dict:
        """Handshake, refusal and per-socket connection counts."""
        return {
            "clients_allowed": self.allowed,
            "clients_denied": self.denied,
            "refused": dict(self.refused),
            "revoked_disconnects": self.revoked_disconnects,
            "allow_list_reloads": self.reloads,
            "allow_list_keys": len(self._keys),
            "connections": {
                role: {"open": len(self._fds[role]), **counts}
                for role, counts in list(self.roles.items())
            },
        }

    def stop(self) -> None:
        """Stop the thread, close the ZAP and monitor sockets (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if _guards.get(self.context) is self:
            del _guards[self.context]
