"""``JournalExtension``: the journal, snapshots and recovery plugged into the engine loop.

* ``on_start``: check ``engine.json``, cut a torn tail, load the newest valid
  snapshot, replay the journal after it (nothing is published: those results
  went out before the restart, or are the in-flight frame's, which subscribers
  see as a gap in that topic's sequence), then open the journal for appending.
* ``on_frame``: append the frame before the kernels see it (see
  :mod:`tickpath.engine.journal.writer`).  A write error propagates and stops the
  engine: it never processes a frame it could not journal.
* ``on_dropped``: journal a message refused before the buffer (multipart, oversize).
* ``on_tick``: a snapshot when ``snapshot_interval_s`` has passed.
* ``close``: a final snapshot (``snapshot_on_close``), sync, close.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from tickpath.engine.journal.config import JournalConfig
from tickpath.engine.journal.reader import open_journal, prune_segments
from tickpath.engine.journal.recovery import (
    RecoveryReport,
    check_engine_file,
    engine_parameters,
    recover,
)
from tickpath.engine.journal.snapshot import Snapshotter
from tickpath.engine.journal.writer import JournalWriter
from tickpath.engine.service.engine import EngineExtension
from tickpath.kernels.cpu.streaming import C_FRAMES_ACCEPTED

if TYPE_CHECKING:
    from tickpath.engine.service.engine import Engine, StreamProcessor

log = logging.getLogger("tickpath.journal")


class JournalExtension(EngineExtension):
    """Write-ahead journal + snapshots + recovery for one engine (see the module doc)."""

    name = "journal"

    def __init__(self, config: JournalConfig) -> None:
        if config.dir is None:
            raise ValueError("JournalExtension needs journal.dir")
        self.config = config
        self.directory = Path(config.dir)
        self.writer: JournalWriter | None = None
        self.snapshotter: Snapshotter | None = None
        self.report: RecoveryReport | None = None
        self._engine_config = None
        self._next_snapshot = 0.0
        self.segments_pruned = 0

    def on_start(self, engine: Engine) -> None:
        """Recover the processor's state from the journal, then open it for appending."""
        self.open(engine.config, engine.processor)

    def open(self, engine_config: object, processor: StreamProcessor) -> RecoveryReport:
        """:meth:`on_start` without an :class:`Engine` (tests and benchmarks drive a processor)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        check_engine_file(self.directory, engine_parameters(engine_config, processor))
        opened = open_journal(self.directory, truncate_corrupt=self.config.truncate_corrupt)
        self.report = recover(processor, self.directory, opened)
        r = self.report
        log.info(
            "journal %s: recovered from %s, replayed %d entries (%d frames, %d rejects, "
            "%d drops) in %.3f s; appending at entry %d",
            self.directory,
            r.snapshot or "an empty state",
            r.replayed_entries,
            r.replayed_frames,
            r.replayed_rejects,
            r.replayed_drops,
            r.seconds,
            r.next_index,
        )
        state = processor.state
        self.writer = JournalWriter(
            self.directory,
            self.config,
            max_streams=state.streams.shape[0],
            max_records=state.touched_list.shape[1],
            opened=opened,
            counters=state.counters,  # whole-frame refusals become small REJECT markers
            accepted_counter=C_FRAMES_ACCEPTED,
        )
        self.snapshotter = Snapshotter(
            self.directory / "snapshots",
            state,
            keep=self.config.snapshot_keep,
            background=self.config.snapshot_background,
            before_commit=self.writer.sync,
            after_prune=self._prune_segments if self.config.retain == "snapshots" else None,
        )
        if self.config.snapshot_interval_s > 0:
            self.snapshotter.prepare()  # memory flat from the start (background mode)
        # The engine collects its frame hooks after on_start: hand it the writer's
        # own method, one Python call per frame instead of two.
        self.on_frame = self.writer.append_frame  # type: ignore[method-assign]
        self._next_snapshot = time.monotonic() + self.config.snapshot_interval_s
        return r

    def _prune_segments(self, oldest_snapshot_index: int) -> None:
        """``retain = "snapshots"``: drop the segments no kept snapshot needs."""
        writer = self.writer
        if writer is not None:  # the writer's own list and directory descriptor: no open
            removed = writer.prune(oldest_snapshot_index)
        else:
            removed = prune_segments(self.directory, oldest_snapshot_index)
        self.segments_pruned += len(removed)
        if removed:
            log.info(
                "journal: %d segment(s) before entry %d deleted (retain = snapshots)",
                len(removed),
                oldest_snapshot_index,
            )

    def on_frame(self, frame: memoryview) -> None:
        """Journal a received frame before it is processed."""
        self.writer.append_frame(frame)

    def on_dropped(self, nbytes: int) -> None:
        """Journal a message refused before the buffer (-2 multipart, else oversize length)."""
        self.writer.append_drop(nbytes)

    def on_tick(self, engine: Engine, now_ns: int) -> None:
        """Take a snapshot when one is due."""
        interval = self.config.snapshot_interval_s
        if interval > 0 and time.monotonic() >= self._next_snapshot:
            self.snapshot()
            self._next_snapshot = time.monotonic() + interval

    def snapshot(self, wait: bool = False) -> bool:
        """Snapshot the state now (covering every entry journaled so far)."""
        if self.writer.next_index == 0:
            return False  # nothing journaled: the initial state needs no snapshot
        taken = self.snapshotter.take(self.writer.next_index, self.writer.position())
        if wait:
            self.snapshotter.wait()
        return taken

    def stats(self) -> dict:
        """Journal, snapshot and recovery figures for the ``stats`` message."""
        out: dict = {"dir": str(self.directory), "sync": self.config.sync}
        if self.writer is not None:
            out.update(self.writer.stats())
        if self.snapshotter is not None:
            out["snapshots"] = self.snapshotter.stats()
        out["retain"] = self.config.retain
        out["segments_pruned"] = self.segments_pruned
        if self.report is not None:
            out["recovery"] = msgspec.to_builtins(self.report)
        return out

    def close(self) -> None:
        """Final snapshot (if configured), then sync and close the journal."""
        if self.writer is None:
            return
        try:
            if self.snapshotter is not None:
                self.snapshotter.wait()
                if self.config.snapshot_on_close:
                    self.snapshotter.background = False
                    self.snapshot()
        finally:
            if self.snapshotter is not None:
                self.snapshotter.close()
            self.writer.close()
            self.writer = None
