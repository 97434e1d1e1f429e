"""Configuration of the journal and the snapshots (the ``[journal]`` config section).

Example::

    [journal]
    dir = "/var/lib/tickpath/journal"
    sync = "interval"          # "frame" | "interval" | "os"
    sync_interval_ms = 50
    snapshot_interval_s = 60

What each sync policy can lose is stated in docs/reliability.md.
"""

from __future__ import annotations

from typing import Literal

import msgspec

SyncPolicy = Literal["frame", "interval", "os"]
SYNC_POLICIES: tuple[str, ...] = ("frame", "interval", "os")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


class JournalConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Write-ahead journal of received frames, periodic snapshots, recovery at start.

    ``dir = None`` (the default) runs without a journal.  With a directory, the
    engine always recovers at start: the newest valid snapshot, then the
    journal entries after it (start from an empty directory for a fresh state).
    """

    dir: str | None = None
    # "frame": fdatasync before each frame is processed; "interval": a background
    # thread fdatasyncs every sync_interval_ms; "os": the OS writes back when it likes.
    # Every policy hands each entry to the OS (write) before the frame is processed.
    sync: SyncPolicy = "interval"
    sync_interval_ms: float = 50.0
    segment_bytes: int = 64 << 20  # a segment is closed (synced) and a new one begun past this
    snapshot_interval_s: float = 60.0  # 0: snapshots only at shutdown
    snapshot_keep: int = 2  # newest snapshots kept; older ones are deleted
    snapshot_on_close: bool = True  # a final snapshot at clean shutdown (fast restart)
    snapshot_background: bool = True  # write snapshots while the engine runs on
    # How a background snapshot freezes the state: "fork", a child process writes the
    # state as it was at fork() (copy-on-write: the tick thread pays the fork itself, a
    # few ms, docs/reliability.md), or "copy", one memcpy of the state into a shadow
    # on the tick thread, written by a thread.
    snapshot_method: Literal["fork", "copy"] = "fork"
    truncate_corrupt: bool = False  # also cut a corrupt entry followed by valid ones
    # "all": segments are never deleted (the whole history stays replayable);
    # "snapshots": after each snapshot, segments whose every entry precedes the oldest
    # kept snapshot are deleted (recovery needs nothing older; replay starts there).
    retain: Literal["all", "snapshots"] = "all"

    def __post_init__(self) -> None:
        _require(self.dir is None or len(self.dir) > 0, "journal.dir must not be empty")
        _require(
            0.1 <= self.sync_interval_ms <= 60_000,
            "journal.sync_interval_ms must be in 0.1..60000",
        )
        _require(
            1 << 16 <= self.segment_bytes <= 1 << 40,
            "journal.segment_bytes must be between 64 KiB and 1 TiB",
        )
        _require(self.snapshot_interval_s >= 0, "journal.snapshot_interval_s must be >= 0")
        _require(1 <= self.snapshot_keep <= 1000, "journal.snapshot_keep must be in 1..1000")

    @property
    def enabled(self) -> bool:
        """True when a journal directory is configured."""
        return self.dir is not None
