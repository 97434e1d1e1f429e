"""``JournalExtension``: the journal, snapshots and recovery plugged into the engine loop.

* ``on_start``: check ``engine.json``, cut a torn tail, load the newest valid
  snapshot, replay the journal after it (nothing is published: those results
  went out before the restart, or are the in-flight frame's, which subscribers
  see as a gap in that topic's sequence), then open the journal for appending.
  The finished segments the snapshot covers (recovery does not read them) are
  then verified entry by entry in a background thread; damage is logged at
  ERROR and listed in ``stats.journal.verify`` (the engine does not need those
  entries, but a replay from before the snapshot would).
* ``on_frame``: append the frame before the kernels see it (see
  :mod:`tickpath.engine.journal.writer`).  A write error propagates and stops the
  engine: it never processes a frame it could not journal.
* ``on_dropped``: journal a message refused before the buffer (multipart, oversize).
* ``on_tick``: a snapshot when ``snapshot_interval_s`` has passed.
* ``close``: a final snapshot (``snapshot_on_close``), sync, close.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from tickpath.engine.journal.config import JournalConfig
from tickpath.engine.journal.reader import (
    SegmentInfo,
    check_finished_segment,
    open_journal,
    prune_segments,
)
from tickpath.engine.journal.recovery import (
    RecoveryReport,
    check_engine_file,
    engine_parameters,
    recover,
)
from tickpath.engine.journal.snapshot import Snapshotter
from tickpath.engine.journal.writer import JournalWriter
from tickpath.engine.service.engine import EngineExtension
from tickpath.kernels.cpu.streaming_view import counter_index

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
        self.verify: dict = {"state": "idle", "segments": 0, "checked": 0, "damaged": []}
        self._verify_thread: threading.Thread | None = None

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
        for problem in r.skipped_snapshots:
            log.warning("journal %s: snapshot skipped: %s", self.directory, problem)
        state = processor.state
        self.writer = JournalWriter(
            self.directory,
            self.config,
            max_streams=state.streams.shape[0],
            max_records=state.touched_list.shape[1],
            opened=opened,
            counters=state.counters,  # whole-frame refusals become small REJECT markers
            accepted_counter=counter_index("frames_accepted"),
        )
        self.snapshotter = Snapshotter(
            self.directory / "snapshots",
            state,
            keep=self.config.snapshot_keep,
            background=self.config.snapshot_background,
            method=self.config.snapshot_method,
            before_commit=self.writer.sync,
            commit_fd=self.writer.segment_fd,
            after_prune=self._prune_segments if self.config.retain == "snapshots" else None,
        )
        if self.config.snapshot_interval_s > 0:
            self.snapshotter.prepare()  # memory flat from the start (background mode)
        covered = [
            (seg, nxt.first_index)
            for seg, nxt in zip(opened.segments, opened.segments[1:], strict=False)
            if seg.first_index < r.snapshot_index
        ]
        self._start_verify(covered)
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

    def _start_verify(self, segments: list[tuple[SegmentInfo, int]]) -> None:
        """Verify the snapshot-covered finished ``segments`` in a background thread."""
        self.verify = {"state": "running", "segments": len(segments), "checked": 0, "damaged": []}
        if not segments:
            self.verify["state"] = "done"
            return
        self._verify_thread = threading.Thread(
            target=self._verify_segments, args=(segments,), name="journal-verify", daemon=True
        )
        self._verify_thread.start()

    def _verify_segments(self, segments: list[tuple[SegmentInfo, int]]) -> None:
        verify = self.verify
        for info, next_first in segments:
            try:
                problem = check_finished_segment(info, next_first)
            except OSError as exc:
                problem = f"{info.path.name}: cannot be read: {exc.strerror or exc}"
            if problem is not None:
                verify["damaged"].append(problem)
                log.error(
                    "journal segment damaged (covered by a snapshot: this engine does not "
                    "need it, a replay from before the snapshot would): %s",
                    problem,
                )
            verify["checked"] += 1
            time.sleep(0.001)  # let the engine thread have the interpreter between segments
        verify["state"] = "done"
        log.info(
            "journal: %d snapshot-covered segment(s) verified, %d damaged",
            len(segments),
            len(verify["damaged"]),
        )

    def wait_verified(self, timeout: float | None = None) -> dict:
        """Wait for the background verification (tests, tools); return its figures."""
        if self._verify_thread is not None:
            self._verify_thread.join(timeout)
        return self.verify

    def on_frame(self, frame: memoryview, recv_ns: int | None = None, part: int = 0) -> None:
        """Journal a received frame (or continuation slice ``part``) before it is processed
        (stamped ``recv_ns``)."""
        self.writer.append_frame(frame, recv_ns, part)

    def on_dropped(self, nbytes: int, recv_ns: int | None = None) -> None:
        """Journal a message refused before the buffer (-2 multipart, else oversize length)."""
        self.writer.append_drop(nbytes, recv_ns)

    def on_tick(self, engine: Engine, now_ns: int) -> None:
        """Take a snapshot when one is due (and reap one written by a child)."""
        if self.snapshotter is not None:
            self.snapshotter.poll()
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
        verify = self.verify
        out["verify"] = {
            "state": verify["state"],
            "segments": verify["segments"],
            "checked": verify["checked"],
            "damaged": list(verify["damaged"]),
        }
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
