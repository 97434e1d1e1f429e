"""CURVE on ZeroMQ sockets: server and client options, and the client allow-list.

The engine's sockets are CURVE *servers* (whether they bind or connect); feeds,
subscribers and request clients are CURVE *clients* that must know the
server's public key.  Client keys are checked by the ZAP handler of
:class:`~tickpath.engine.security.guard.ConnectionGuard`, started on the
engine's context before any socket opens: a client whose public key is not
in the allow directory completes no handshake, so it receives nothing and
nothing it sends is delivered; each refusal is counted and logged (rate-limited).

For another endpoint of the engine (e.g. the request ROUTER)::

    from tickpath.engine.security.curve import apply_curve_server
    sock = context.socket(zmq.ROUTER)
    apply_curve_server(sock, config.security)   # before bind/connect
    sock.bind(endpoint)
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from tickpath.engine.config import ConfigError
from tickpath.engine.security.config import SecurityConfig

log = logging.getLogger("tickpath.security")


class SecurityError(ConfigError):
    """A key file or allow directory that cannot be used (a config problem)."""


def load_secret_certificate(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """``(public, secret)`` Z85 keys of a ``.key_secret`` certificate."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise SecurityError(f"cannot read key {path}: {exc}") from None
    if not secret:
        raise SecurityError(f"{path} holds no secret key (use the .key_secret file)")
    return public, secret


def load_public_key(path: str | os.PathLike[str]) -> bytes:
    """The Z85 public key of a certificate (``.key`` or ``.key_secret``)."""
    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise SecurityError(f"cannot read key {path}: {exc}") from None
    return public


def apply_curve_server(socket: zmq.Socket, security: SecurityConfig) -> None:
    """Make ``socket`` a CURVE server when ``security.curve`` is on (call before bind)."""
    if not security.curve:
        return
    public, secret = load_secret_certificate(security.secret_key)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    socket.zap_domain = security.domain.encode()


def apply_curve_client(
    socket: zmq.Socket,
    server_key: str | os.PathLike[str] | bytes,
    client_key: str | os.PathLike[str] | None = None,
) -> None:
    """Make ``socket`` a CURVE client of the server whose public key is ``server_key``.

    ``server_key``: the server's ``.key`` file, or its Z85 public key as bytes.
    ``client_key``: this client's ``.key_secret`` file; None uses a fresh
    throwaway key pair (accepted only by a server with ``allow_any``).
    """
    server_public = server_key if isinstance(server_key, bytes) else load_public_key(server_key)
    if client_key is None:
        public, secret = zmq.curve_keypair()
    else:
        public, secret = load_secret_certificate(client_key)
    socket.curve_serverkey = server_public
    socket.curve_publickey = public
    socket.curve_secretkey = secret


class _Authenticator(ThreadAuthenticator):
    """ThreadAuthenticator that remembers the peer address of the request being checked."""

    current_address = ""

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        if len(msg) > 3:
            self.current_address = msg[3].decode("utf-8", "replace")
        await super().handle_zap_message(msg)


class CurveAuthenticator:
    """A plain ZAP handler of a context: admits client keys found in the allow directory.

    Used where the connection guard is not: the request process and the ZAP process
    (``security.zap = "process"``).  ``reload()`` re-reads the directory when its
    content changed (a digest of the key files' names and contents, not mtimes);
    ``allowed``/``denied`` count handshakes.
    """

    def __init__(self, context: zmq.Context, security: SecurityConfig) -> None:
        self.security = security
        self.allowed = 0
        self.denied = 0
        self._keys: frozenset[bytes] = frozenset()
        self._digest: str | None = None
        self._lock = threading.Lock()
        self._auth = _Authenticator(context, log=logging.getLogger("tickpath.security.zap"))
        self.reload()
        self._auth.start()
        self._auth.configure_curve_callback(security.domain, credentials_provider=self)

    def reload(self) -> bool:
        """Re-read the allow directory if its content changed; return True when it was read."""
        from tickpath.engine.security.guard import allow_list_digest

        directory = self.security.allow
        if directory is None:
            return False
        path = Path(directory)
        try:
            digest = allow_list_digest(path)
        except OSError as exc:
            raise SecurityError(f"cannot read allow directory {directory}: {exc}") from None
        if digest == self._digest:
            return False
        keys = frozenset(zmq.auth.load_certificates(path))
        with self._lock:
            self._keys = keys
            self._digest = digest
        log.info("CURVE allow-list %s: %d client keys", directory, len(keys))
        return True

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP credentials check (called by pyzmq for every CURVE handshake)."""
        ok = self.security.allow_any or key in self._keys
        address = self._auth.current_address
        if ok:
            self.allowed += 1
            log.debug("CURVE client %s from %s allowed", key.decode(), address)
        else:
            self.denied += 1
            log.warning(
                "CURVE client %s from %s refused: key not in the allow-list",
                key.decode(errors="replace"),
                address,
            )
        return ok

    def stop(self) -> None:
        """Stop the ZAP handler thread."""
        self._auth.stop()


def is_loopback(endpoint: str) -> bool:
    """True for endpoints only this machine can reach (loopback tcp, ipc, inproc)."""
    transport, _, rest = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
