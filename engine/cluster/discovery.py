"""Where each shard's replica listens: a JSON document, in a file and over HTTP.

The scheduler rewrites the document (atomically) whenever the set of running
replicas changes, and can serve the same document at ``GET /endpoints`` for hosts
that do not share its file system.  Readers::

    follow_endpoints("tickpath-endpoints.json")       # -> ["tcp://10.0.0.5:31002", ...]
    follow_endpoints("http://scheduler:8089")          # the same, over HTTP

Document::

    {"framework_id": "...", "replicas": 4, "shards": 4, "phase": "ready",
     "updated_unix": 1700000000.0,
     "endpoints": [{"shard": 0, "shards": 4, "slot": 0, "task_id": "...",
                    "hostname": "agent-1", "ingest": "tcp://10.0.0.5:31001",
                    "publish": "tcp://10.0.0.5:31002"}, ...]}
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tickpath.engine.cluster.store import write_json_atomically


def read_discovery(discovery: str, timeout: float = 5.0) -> dict:
    """Load the discovery document from a file path or an ``http://host:port`` URL."""
    if discovery.startswith(("http://", "https://")):
        url = discovery.rstrip("/")
        if not url.endswith("/endpoints"):
            url += "/endpoints"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read().decode())
    return json.loads(Path(discovery).read_text())


def follow_endpoints(discovery: str) -> list[str]:
    """Publish endpoints of every running replica, in shard order (for ``tickpath watch``).

    ``discovery`` is the scheduler's discovery file or its ``http://host:port`` URL.
    A subscriber connects a SUB socket to each endpoint to follow all shards.
    """
    document = read_discovery(discovery)
    seen: set[str] = set()
    out: list[str] = []
    for item in sorted(document.get("endpoints", []), key=lambda e: (e["shard"], e["slot"])):
        if item["publish"] not in seen:
            seen.add(item["publish"])
            out.append(item["publish"])
    return out


class EndpointFollower:
    """New publish endpoints as the discovery document gains them (a relaunched replica).

    ``poll()`` re-reads the document at most every ``refresh_s`` and returns the
    endpoints not returned before, in shard order.  Endpoints that leave the document are
    kept by the caller: a SUB socket reconnects by itself, and a replica relaunched on the
    same address is followed again; an unreadable document keeps the last known set.
    """

    def __init__(self, discovery: str, refresh_s: float = 1.0) -> None:
        self.discovery = discovery
        self.refresh_s = refresh_s
        self.known: list[str] = []
        self.errors = 0
        self._next = 0.0

    def poll(self, force: bool = False) -> list[str]:
        """Endpoints new since the last call (reads the document when due or ``force``)."""
        now = time.monotonic()
        if not force and now < self._next:
            return []
        self._next = now + self.refresh_s
        try:
            listed = follow_endpoints(self.discovery)
        except (OSError, ValueError, KeyError):
            self.errors += 1
            return []
        new = [e for e in listed if e not in self.known]
        self.known.extend(new)
        return new


class DiscoveryPublisher:
    """Keeps the discovery file and (optionally) an HTTP endpoint up to date."""

    def __init__(self, path: str | None = None, http_bind: str | None = None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._body = b"{}"
        self._last: dict | None = None
        self._server: ThreadingHTTPServer | None = None
        if http_bind:
            host, _, port = http_bind.rpartition(":")
            self._server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), self._handler())
            self._server.daemon_threads = True
            threading.Thread(
                target=self._server.serve_forever, name="tickpath-discovery", daemon=True
            ).start()

    @property
    def http_address(self) -> str | None:
        """``http://host:port`` of the HTTP endpoint, if one is served."""
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def publish(self, document: dict) -> bool:
        """Publish ``document`` if its content changed; return True if it did."""
        content = {k: v for k, v in document.items() if k != "updated_unix"}
        if content == self._last:
            return False
        self._last = content
        with self._lock:
            self._body = json.dumps(document, sort_keys=True).encode()
        if self.path is not None:
            write_json_atomically(self.path, document)
        return True

    def close(self) -> None:
        """Stop the HTTP endpoint."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        publisher = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.rstrip("/") not in ("", "/endpoints"):
                    self.send_error(404)
                    return
                with publisher._lock:
                    body = publisher._body
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        return Handler
