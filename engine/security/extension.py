"""``SecurityExtension``: starts the handshake checks before the engine's sockets open.

Two designs, chosen by ``security.zap``:

* ``"thread"`` (default): the connection guard (:mod:`tickpath.engine.security.guard`),
  a thread of the engine process, admits CURVE clients by the allow-list, caps
  connections per socket, counts every refused or dropped connection by reason (CURVE
  on or off), reloads the allow-list on content changes and disconnects revoked keys;
* ``"process"`` (CURVE only): the allow-list check runs in a child process behind a C
  proxy (:mod:`tickpath.engine.security.zap_process`), so a flood of handshakes never
  takes the engine's GIL; it has no connection caps, socket monitors or revocation of
  live connections (docs/reliability.md weighs the two).

With CURVE off the extension also warns about endpoints reachable from other machines.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tickpath.engine.security.config import SecurityConfig
from tickpath.engine.security.curve import SecurityError, is_loopback, load_secret_certificate
from tickpath.engine.security.guard import ConnectionGuard, guard_for
from tickpath.engine.security.zap_process import ZapProcess
from tickpath.engine.service.engine import EngineExtension

if TYPE_CHECKING:
    from tickpath.engine.service.engine import Engine

log = logging.getLogger("tickpath.security")


class SecurityExtension(EngineExtension):
    """Owns the engine context's connection guard (ZAP handler and socket monitors)."""

    name = "security"

    def __init__(self, config: SecurityConfig) -> None:
        self.config = config
        self.authenticator: ConnectionGuard | ZapProcess | None = None

    def on_start(self, engine: Engine) -> None:
        """Start the guard; warn about plain endpoints other machines can reach."""
        ingest = engine.config.ingest
        endpoints = [*ingest.endpoints, *ingest.public_endpoints, engine.config.publish.endpoint]
        requests = getattr(getattr(engine.config, "dispatch", None), "requests", None)
        if getattr(requests, "endpoint", None):
            endpoints.append(requests.endpoint)  # the request (ROUTER) endpoint
        if self.config.curve:
            load_secret_certificate(self.config.secret_key)  # fail before any thread starts
        connections = getattr(engine.config, "connections", None)
        if engine.context is not None and self.config.curve and self.config.zap == "process":
            # the allow-list check in a process of its own: handshakes never take our GIL
            self.authenticator = ZapProcess(engine.context, self.config)
        elif engine.context is not None:  # None: a dry check of the endpoints only
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

    def on_tick(self, engine: Engine, now_ns: int) -> None:
        """``zap = "process"``: start the child again if it died."""
        if isinstance(self.authenticator, ZapProcess):
            try:
                self.authenticator.reload()
            except Exception:  # a transient problem must not stop the engine
                log.exception("restarting the ZAP process failed")

    def stats(self) -> dict:
        """CURVE state, handshake counts, refusals by reason, connections per socket."""
        auth = self.authenticator
        out: dict = {"curve": self.config.curve, "zap": self.config.zap}
        if auth is None:
            out.update(clients_allowed=0, clients_denied=0)
        elif isinstance(auth, ZapProcess):
            out.update(clients_allowed=auth.allowed, clients_denied=auth.denied)
        else:
            out.update(auth.stats())
        return out

    def close(self) -> None:
        """Stop the guard (its ZAP handler and monitors)."""
        if self.authenticator is not None:
            self.authenticator.stop()
            self.authenticator = None
