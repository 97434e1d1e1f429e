"""``SecurityExtension``: starts the connection guard before the engine's sockets open.

The guard (:mod:`tickpath.engine.security.guard`) admits CURVE clients by the
allow-list, caps connections per socket and counts every refused or dropped
connection, CURVE on or off.  With CURVE off the extension also warns about
endpoints reachable from other machines.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tickpath.engine.security.config import SecurityConfig
from tickpath.engine.security.curve import SecurityError, is_loopback, load_secret_certificate
from tickpath.engine.security.guard import ConnectionGuard, guard_for
from tickpath.engine.service.engine import EngineExtension

if TYPE_CHECKING:
    from tickpath.engine.service.engine import Engine

log = logging.getLogger("tickpath.security")


class SecurityExtension(EngineExtension):
    """Owns the engine context's connection guard (ZAP handler and socket monitors)."""

    name = "security"

    def __init__(self, config: SecurityConfig) -> None:
        self.config = config
        self.authenticator: ConnectionGuard | None = None

    def on_start(self, engine: Engine) -> None:
        """Start the guard; warn about plain endpoints other machines can reach."""
        endpoints = [*engine.config.ingest.endpoints, engine.config.publish.endpoint]
        requests = getattr(getattr(engine.config, "dispatch", None), "requests", None)
        if getattr(requests, "endpoint", None):
            endpoints.append(requests.endpoint)  # the request (ROUTER) endpoint
        if self.config.curve:
            load_secret_certificate(self.config.secret_key)  # fail before any thread starts
        connections = getattr(engine.config, "connections", None)
        if engine.context is not None:  # None: a dry check of the endpoints only
            if guard_for(engine.context) is None:
                self.authenticator = ConnectionGuard(engine.context, self.config, connections)
            elif self.config.curve:  # one ZAP handler per context: never run CURVE unchecked
                raise SecurityError(
                    "this ZeroMQ context already has a connection guard (another engine): "
                    "give each engine its own context"
                )
            else:
                log.warning(
                    "another engine's connection guard runs on this context: this engine's "
                    "sockets have no connection caps or refusal counts"
                )
        if self.config.curve:
            log.info(
                "CURVE on every endpoint (domain %s), clients: %s",
                self.config.domain,
                "any key" if self.config.allow_any else f"keys in {self.config.allow}",
            )
            return
        for endpoint in endpoints:
            if not is_loopback(endpoint):
                log.warning(
                    "endpoint %s is reachable from other machines and CURVE is off: "
                    "anyone who can connect can send data and read results "
                    "(see docs/reliability.md, CURVE)",
                    endpoint,
                )

    def stats(self) -> dict:
        """CURVE state, handshake counts, refusals by reason, connections per socket."""
        auth = self.authenticator
        out: dict = {"curve": self.config.curve}
        if auth is None:
            out.update(clients_allowed=0, clients_denied=0)
        else:
            out.update(auth.stats())
        return out

    def close(self) -> None:
        """Stop the guard (its ZAP handler and monitors)."""
        if self.authenticator is not None:
            self.authenticator.stop()
            self.authenticator = None
