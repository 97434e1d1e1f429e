"""CURVE key pairs on disk, in ZeroMQ's certificate format (``zmq.auth``).

``new_keypair(dir, name)`` writes ``name.key`` (the public key: hand it to
peers, or put it in the engine's allow directory) and ``name.key_secret``
(public and secret key: keep it, mode 0600).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import zmq.auth

DEFAULT_KEYS_DIR = "~/.config/tickpath/keys"


class KeyInfo(NamedTuple):
    """A certificate found in a key directory."""

    name: str
    public_key: str  # Z85
    has_secret: bool
    path: Path


def keys_dir(directory: str | os.PathLike[str] | None = None) -> Path:
    """``directory``, else ``$TICKPATH_KEYS_DIR``, else ``~/.config/tickpath/keys``."""
    chosen = directory or os.environ.get("TICKPATH_KEYS_DIR") or DEFAULT_KEYS_DIR
    return Path(chosen).expanduser()


def new_keypair(directory: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Create ``name.key`` and ``name.key_secret`` in ``directory``; return their paths.

    Refuses to overwrite an existing key pair (``FileExistsError``).
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad key name {name!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for suffix in (".key", ".key_secret"):
        if (directory / f"{name}{suffix}").exists():
            raise FileExistsError(f"{directory / (name + suffix)} exists")
    old = os.umask(0o077)
    try:
        public, secret = zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    return Path(public), Path(secret)


def list_keys(directory: str | os.PathLike[str]) -> list[KeyInfo]:
    """Every certificate in ``directory`` (public ones, and secret ones without a public twin)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    names = sorted({p.stem for p in directory.iterdir() if p.suffix in (".key", ".key_secret")})
    found = []
    for name in names:
        public_file = directory / f"{name}.key"
        secret_file = directory / f"{name}.key_secret"
        try:
            public, _ = zmq.auth.load_certificate(
                public_file if public_file.exists() else secret_file
            )
            has_secret = secret_file.exists() and zmq.auth.load_certificate(secret_file)[1]
        except (ValueError, OSError):
            continue  # not a certificate
        path = public_file if public_file.exists() else secret_file
        found.append(KeyInfo(name, public.decode(), bool(has_secret), path))
    return found
