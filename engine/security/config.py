"""The ``[security]`` config section: CURVE on every engine endpoint.

Example::

    [security]
    curve = true
    secret_key = "/etc/tickpath/keys/engine.key_secret"   # from `tickpath keys new engine`
    allow = "/etc/tickpath/clients"                         # allowed clients' *.key files
"""

from __future__ import annotations

import msgspec


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


class SecurityConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """CURVE encryption and authentication of the engine's endpoints (off by default).

    With ``curve = true`` every endpoint the engine binds (ingest, publish and the
    request endpoint) is a CURVE server using the key pair in ``secret_key``;
    a client must know the server's public key, and its own public key must be
    in the ``allow`` directory (or ``allow_any = true``: encryption without
    authentication).  A refused client gets nothing and is logged.
    """

    curve: bool = False
    secret_key: str | None = None  # the engine's certificate with its secret key
    allow: str | None = None  # directory of allowed client public keys (*.key)
    allow_any: bool = False  # accept any client key: encrypted, not authenticated
    domain: str = "tickpath"  # ZAP domain of the engine's sockets
    # Where handshakes are checked: "thread" (the connection guard: caps, counts by reason,
    # revocation) or "process" (CURVE only: a child process, off the engine's GIL).
    zap: str = "thread"

    def __post_init__(self) -> None:
        _require(self.zap in ("thread", "process"), 'security.zap must be "thread" or "process"')
        if self.curve:
            _require(self.secret_key is not None, "security.secret_key is required with curve")
            _require(
                (self.allow is not None) != self.allow_any,
                "security: with curve give exactly one of allow (a key directory) or allow_any",
            )
        else:
            _require(
                self.secret_key is None and self.allow is None and not self.allow_any,
                "security.secret_key/allow/allow_any need curve = true",
            )
        _require(len(self.domain) > 0, "security.domain must not be empty")
