"""A seqlocked shared-memory slot: one process publishes a snapshot, others read it.

Used by the engine's helper processes (the request process, the ZAP process) to hand
their counters to the engine without either side ever waiting for the other. Imports
nothing heavy, so a small child process starts fast.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile
import threading
from pathlib import Path

STATS_BYTES = 1 << 20  # the snapshot slot: far more than a stats dict needs
_SLOT = struct.Struct("<QQ")  # version (odd while written), length


class StatsSlot:
    """A seqlock over a shared-memory file: one writer process, readers that never block.

    The writer makes the version odd, writes the bytes and the length, makes it even
    again; a reader copies the bytes and retries when the version was odd or changed.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._mm = mmap.mmap(fd, STATS_BYTES)
        self._version = _SLOT.unpack_from(self._mm, 0)[0]
        self._lock = threading.Lock()

    @classmethod
    def create(cls) -> StatsSlot:
        """A new slot: a file made and unlinked at once (in /dev/shm where there is one),
        so nothing is left behind however the processes end; children get its descriptor."""
        shm = Path("/dev/shm")
        directory = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
        fd, path = tempfile.mkstemp(prefix="tickpath-requests-", dir=directory)
        os.unlink(path)
        os.ftruncate(fd, STATS_BYTES)
        return cls(fd)

    def write(self, data: bytes) -> bool:
        """Publish `data` (any thread of the writer process); False if it does not fit."""
        if len(data) > STATS_BYTES - _SLOT.size:
            return False
        with self._lock:
            mm = self._mm
            self._version += 1
            mm[0:8] = struct.pack("<Q", self._version)  # odd: being written
            mm[_SLOT.size : _SLOT.size + len(data)] = data
            mm[8:16] = struct.pack("<Q", len(data))
            self._version += 1
            mm[0:8] = struct.pack("<Q", self._version)  # even: consistent
        return True

    def read(self, tries: int = 100) -> bytes | None:
        """The latest consistent snapshot; None when there is none (yet) or the writer
        kept changing it (never waits)."""
        mm = self._mm
        for _ in range(tries):
            v1, n = _SLOT.unpack_from(mm, 0)
            if v1 == 0:
                return None
            if v1 & 1:
                continue
            data = mm[_SLOT.size : _SLOT.size + min(n, STATS_BYTES - _SLOT.size)]
            if _SLOT.unpack_from(mm, 0)[0] == v1:
                return data
        return None

    def read_dict(self) -> dict:
        """The latest snapshot decoded from msgpack ({} when there is none or it is bad)."""
        import msgspec

        data = self.read()
        if not data:
            return {}
        try:
            return msgspec.msgpack.decode(data)
        except msgspec.DecodeError:
            return {}

    def close(self) -> None:
        """Unmap and close the descriptor."""
        self._mm.close()
        os.close(self.fd)
