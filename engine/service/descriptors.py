"""File descriptors: the soft ``RLIMIT_NOFILE`` raised at start, with a reserve kept back.

libzmq accepts every TCP connection it can; when the process is out of
descriptors its I/O thread retries ``accept`` in a loop and takes every
descriptor the moment one is freed.  A journaled engine that must open its
next segment or snapshot at that moment would fail with ``EMFILE`` and stop.

So the engine *claims* the descriptor table at start: the soft limit goes up
to the hard limit minus ``reserve`` descriptors.  Everything (libzmq
included) lives under that soft limit; the journal and the snapshots open
their files inside :func:`reserved`, which lifts the soft limit to the hard
limit for the duration of the ``open`` only.  Descriptors opened above the soft
limit stay valid after it is lowered again.

:func:`open_fd` is the narrowest window: on Linux it calls ``setrlimit``, ``open``
and ``setrlimit`` through libc *without releasing the GIL*, so no other Python
thread runs (and stretches the window) in between; libzmq's I/O thread can still
take a reserved descriptor during those few microseconds (a descriptor it takes
comes back when that connection is closed, e.g. by the handshake deadline).

The limit is process-wide: claims are counted, and the last :func:`release`
restores the soft limit the process had before the first :func:`claim`.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import sys
import threading
from collections.abc import Iterator

log = logging.getLogger("tickpath.engine")

_NR_OPEN_FALLBACK = 1 << 20  # Linux's default fs.nr_open, used when the hard limit is infinite
_lock = threading.RLock()  # reserved() may nest (a listing inside an fsync path)
_claims = 0
_original: tuple[int, int] | None = None
_reserve = 0
_hard = 0


def _hard_limit(hard: int) -> int:
    if hard != resource.RLIM_INFINITY:
        return hard
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return _NR_OPEN_FALLBACK


def claim(reserve: int) -> tuple[int, int]:
    """Raise the soft limit to ``hard - reserve``; return ``(soft, hard)`` now in force.

    Idempotent per claim; the first claim of the process remembers the limit to restore.
    """
    global _claims, _original, _reserve, _hard
    with _lock:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if _claims == 0:
            _original = (soft, hard)
        _claims += 1
        _hard = _hard_limit(hard)
        _reserve = min(reserve, max(0, _hard // 4))  # never more than a quarter of the table
        target = _hard - _reserve
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:
            log.warning("cannot set the descriptor soft limit to %d: %s", target, exc)
            _reserve = 0
            return soft, hard
        if target != soft:
            log.info(
                "descriptors: soft limit %d -> %d (hard %d, %d kept for the journal/snapshots)",
                soft,
                target,
                _hard,
                _reserve,
            )
        return target, _hard


def release() -> None:
    """Undo one :func:`claim`; the last one restores the original soft limit."""
    global _claims, _original, _reserve
    with _lock:
        if _claims == 0:
            return
        _claims -= 1
        if _claims == 0 and _original is not None:
            with contextlib.suppress(OSError, ValueError):
                resource.setrlimit(resource.RLIMIT_NOFILE, _original)
            _original = None
            _reserve = 0


@contextlib.contextmanager
def reserved() -> Iterator[None]:
    """Open descriptors from the reserve: the soft limit is the hard limit inside the block."""
    with _lock:
        if _claims == 0 or _reserve == 0:
            yield
            return
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, hard))
        except (OSError, ValueError):
            yield
            return
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class _Rlimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_ulong), ("max", ctypes.c_ulong)]


def _libc() -> ctypes.PyDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: calls keep the GIL
        libc.open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint]
        libc.open.restype = ctypes.c_int
        libc.setrlimit.argtypes = [ctypes.c_int, ctypes.POINTER(_Rlimit)]
        libc.setrlimit.restype = ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()


def open_fd(path: str | os.PathLike[str], flags: int, mode: int = 0o644) -> int:
    """``os.open`` from the reserve (see the module doc); raises ``OSError`` like it."""
    with _lock:
        if _claims == 0 or _reserve == 0 or _LIBC is None:
            with reserved():
                return os.open(path, flags, mode)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        lifted = _Rlimit(_hard, hard)
        lowered = _Rlimit(soft, hard)
        name = os.fsencode(path)
        libc = _LIBC
        libc.setrlimit(resource.RLIMIT_NOFILE, ctypes.byref(lifted))
        fd = libc.open(name, flags, mode)
        err = ctypes.get_errno()
        libc.setrlimit(resource.RLIMIT_NOFILE, ctypes.byref(lowered))
        if fd < 0:
            raise OSError(err, os.strerror(err), os.fsdecode(name))
        return fd
