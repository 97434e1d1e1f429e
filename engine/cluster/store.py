"""Where the scheduler persists its framework id and tasks: a JSON file and/or ZooKeeper.

A restarted scheduler loads the snapshot, re-subscribes with the same framework id
(within ``failover_timeout`` the master keeps its tasks running) and reconciles the
tasks it knew, so it launches no duplicates.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Protocol


class StateStore(Protocol):
    """Loads and saves the scheduler's snapshot (a JSON-able dict)."""

    def load(self) -> dict | None:
        """The last saved snapshot, or None."""
        ...

    def save(self, snapshot: dict) -> None:
        """Persist ``snapshot`` durably (atomically where the medium allows)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def write_json_atomically(path: Path, document: dict) -> None:
    """Write ``document`` to ``path`` so that readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(document, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FileStore:
    """Snapshot in a JSON file, replaced atomically on every save."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> dict | None:
        """The saved snapshot, None if the file does not exist."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        if not text.strip():
            return None
        document = json.loads(text)
        if isinstance(document, str):  # a file holding just a framework id, written by hand
            return {"framework_id": document}
        return document

    def save(self, snapshot: dict) -> None:
        """Atomically replace the file."""
        write_json_atomically(self.path, snapshot)

    def close(self) -> None:
        """Nothing to release."""


class ZooKeeperStore:
    """Snapshot in a ZooKeeper node (kazoo), for schedulers that may restart on another host."""

    def __init__(self, hosts: str, path: str, timeout: float = 10.0) -> None:
        from kazoo.client import KazooClient  # the `mesos` extra

        self.path = path
        self._zk = KazooClient(hosts=hosts, timeout=timeout)
        self._zk.start(timeout=timeout)

    def load(self) -> dict | None:
        """The node's JSON, None if the node does not exist."""
        if not self._zk.exists(self.path):
            return None
        data, _ = self._zk.get(self.path)
        return json.loads(data.decode()) if data else None

    def save(self, snapshot: dict) -> None:
        """Create or set the node."""
        data = json.dumps(snapshot, sort_keys=True).encode()
        if self._zk.exists(self.path):
            self._zk.set(self.path, data)
        else:
            self._zk.create(self.path, data, makepath=True)

    def close(self) -> None:
        """Stop the ZooKeeper session."""
        self._zk.stop()
        self._zk.close()


class MultiStore:
    """Saves to every store; loads from the first that has a snapshot."""

    def __init__(self, stores: list[StateStore]) -> None:
        self.stores = stores

    def load(self) -> dict | None:
        """First snapshot found, in store order."""
        for store in self.stores:
            snapshot = store.load()
            if snapshot:
                return snapshot
        return None

    def save(self, snapshot: dict) -> None:
        """Save everywhere."""
        for store in self.stores:
            store.save(snapshot)

    def close(self) -> None:
        """Close every store."""
        for store in self.stores:
            store.close()


def zk_hosts_and_root(master: str) -> tuple[str, str]:
    """Split ``zk://h1:2181,h2:2181/mesos`` into ``("h1:2181,h2:2181", "/mesos")``."""
    rest = master.split("://", 1)[1]
    hosts, _, root = rest.partition("/")
    return hosts, "/" + root
