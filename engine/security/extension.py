"""``SecurityExtension``: starts the CURVE allow-list before the engine's sockets open.

With CURVE off it only warns about endpoints reachable from other machines.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tickpath.engine.security.config import SecurityConfig
from tickpath.engine.security.curve import is_loopback, load_secret_certificate
from tickpath.engine.security.zap_process import ZapProcess
from tickpath.engine.service.engine import EngineExtension

if TYPE_CHECKING:
    from tickpath.engine.service.engine import Engine

log = logging.getLogger("tickpath.security")


class SecurityExtension(EngineExtension):
    """Owns the engine context's ZAP handler (see :mod:`tickpath.engine.security.curve`)."""

    name = "security"

    def __init__(self, config: SecurityConfig) -> None:
        self.config = config
        self.authenticator: ZapProcess | None = None

    def on_start(self, engine: Engine) -> None:
        """Start the allow-list handler (CURVE on), or warn about plain non-loopback endpoints."""
        endpoints = [*engine.config.ingest.endpoints, engine.config.publish.endpoint]
        requests = getattr(getattr(engine.config, "dispatch", None), "requests", None)
        if getattr(requests, "endpoint", None):
            endpoints.append(requests.endpoint)  # the request (ROUTER) endpoint
        if self.config.curve:
            load_secret_certificate(self.config.secret_key)  # fail before any thread starts
            # the allow-list check runs in a process of its own (a C proxy here): a flood
            # of handshakes never takes the engine's GIL (engine/security/zap_process.py)
            self.authenticator = ZapProcess(engine.context, self.config)
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
        """Pick up keys added to or removed from the allow directory."""
        if self.authenticator is not None:
            try:
                self.authenticator.reload()
            except Exception:  # a transient directory problem must not stop the engine
                log.exception("reloading the CURVE allow-list failed")

    def stats(self) -> dict:
        """CURVE state and handshake counts."""
        auth = self.authenticator
        return {
            "curve": self.config.curve,
            "clients_allowed": auth.allowed if auth else 0,
            "clients_denied": auth.denied if auth else 0,
        }

    def close(self) -> None:
        """Stop the ZAP handler."""
        if self.authenticator is not None:
            self.authenticator.stop()
            self.authenticator = None
