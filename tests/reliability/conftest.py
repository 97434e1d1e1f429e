"""Fixtures shared by the reliability tests."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest

from tickpath.engine.security.keys import new_keypair


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """CURVE key pairs ``engine``, ``alice`` (allowed) and ``mallory`` (not), and the
    allow directory holding alice's public key."""
    root = tmp_path_factory.mktemp("keys")
    for name in ("engine", "alice", "mallory"):
        new_keypair(root / "all", name)
    allow = root / "allow"
    allow.mkdir()
    shutil.copy(root / "all" / "alice.key", allow / "alice.key")
    return SimpleNamespace(
        dir=root / "all",
        allow=allow,
        server_secret=root / "all" / "engine.key_secret",
        server_public=root / "all" / "engine.key",
        alice=root / "all" / "alice.key_secret",
        mallory=root / "all" / "mallory.key_secret",
    )
