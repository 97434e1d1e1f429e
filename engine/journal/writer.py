"""Appending to the journal: one ``writev`` per frame, straight from the receive buffer.

Hot path (:meth:`JournalWriter.append_frame`, once per received frame, before
the kernels run): the header is checked with ``struct`` in Python (the same
conditions as the kernels' header check), the 32-byte entry header is packed
into a preallocated buffer, the checksum is ``zlib.crc32`` over that header and
the frame's memoryview, and one ``os.writev`` hands both to the OS.  No buffer
is allocated or copied per frame.

Sync policies (``JournalConfig.sync``):

* ``"frame"``: ``fdatasync`` after every entry, before the frame is processed.
* ``"interval"``: a background thread ``fdatasync``\\ s every ``sync_interval_ms``
  when something was written (the engine thread never waits for the disk).
* ``"os"``: never synced while running; the OS writes back when it likes.

Whatever the policy, a segment is synced before the next one is created and
at :meth:`close`, so only the newest segment can ever be torn.

Descriptors: the writer holds the journal directory open (for its fsyncs) and
the *next* segment file open ahead of time (``.next-segment.tmp``, renamed to its
final name when the segment begins), so rolling to a new segment needs no new
descriptor even when idle peers hold every other one (see
:mod:`tickpath.engine.service.descriptors`).

Frames the kernels refuse whole: given the processor's counters, a FRAME entry
whose frame the kernels then refused whole (a duplicate, an out-of-order
frame: ``frames_accepted`` did not move) is rewritten, before the next entry,
as a REJECT marker (length + header).  Replay reaches the same verdict from the
header alone, and a publisher re-sending large frames cannot fill the disk.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np

from tickpath.engine.journal import format as fmt
from tickpath.engine.journal.config import JournalConfig
from tickpath.engine.journal.reader import OpenedJournal, SegmentInfo, open_journal, prune_segments
from tickpath.engine.service.descriptors import open_fd
from tickpath.engine.wire import schema as s

log = logging.getLogger("tickpath.journal")

_FRAME_HEADER = struct.Struct("<IHHII")  # magic, version, kind, stream_id, count
_CRC = struct.Struct("<I")
_SESSION = struct.Struct("<Q")  # a version 2 header's session id, at byte 32
_RECORD_SIZE = {s.KIND_TRADE: s.TRADE_SIZE, s.KIND_QUOTE: s.QUOTE_SIZE, s.KIND_ORDER: s.ORDER_SIZE}
SPARE_SEGMENT = ".next-segment.tmp"  # the next segment, opened ahead (not a segment name)


class JournalWriter:
    """Appends entries to a journal directory under a sync policy.

    ``max_streams`` and ``max_records`` are the engine's limits: a frame is
    journaled whole (FRAME) exactly when the kernels' header check would pass it
    (``stream_id < max_streams``, ``0 < count <= max_records``, an input kind,
    the right length, magic and version); otherwise only its length and header
    (REJECT).  Use :func:`open_journal` first, or let the constructor call it.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        config: JournalConfig,
        *,
        max_streams: int,
        max_records: int,
        opened: OpenedJournal | None = None,
        counters: np.ndarray | None = None,
        accepted_counter: int = -1,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.policy = config.sync
        self.max_streams = max_streams
        self.max_records = max_records
        if opened is None:
            opened = open_journal(self.directory, truncate_corrupt=config.truncate_corrupt)
        self.next_index = opened.next_index
        self.frames = 0  # FRAME entries written by this writer
        self.rejects = 0
        self.drops = 0
        self.bytes = 0
        self.syncs = 0
        self.segments_created = 0
        self._lock = threading.Lock()
        self._dirty = False
        self._sync_error: OSError | None = None
        self._header = bytearray(fmt.ENTRY_SIZE)
        self._header_crc_part = memoryview(self._header)[: fmt.ENTRY_CRC_OFFSET]
        self._iov: list = [self._header, b""]
        self._reject = bytearray(fmt.REJECT_PREFIX.size + s.HEADER_V2_SIZE)
        self._drop = bytearray(fmt.DROP_PAYLOAD.size)
        self._fd = -1
        # whole-frame refusals: counters[accepted_counter] is the kernels' frames_accepted
        self._counters = counters if accepted_counter >= 0 else None
        self._accepted_i = accepted_counter
        self._pending = -1  # offset of the last FRAME entry, until the kernels' verdict
        self._pending_accepted = 0
        self._pending_n = 0
        self.shrunk = 0  # FRAME entries rewritten as REJECT markers
        self._dir_fd = open_fd(self.directory, os.O_RDONLY | os.O_CLOEXEC)
        self.segments: list[SegmentInfo] = list(opened.segments)  # in index order
        self._spare = -1
        self._spare_failed = False
        self.rolls_deferred = 0  # rolls put off for want of a descriptor
        self._next_roll_try = 0.0
        self._open_spare()
        if opened.segments:
            last = opened.segments[-1]
            self._segment = last.path
            self._segment_first = last.first_index
            self._fd = os.open(last.path, os.O_RDWR | os.O_CLOEXEC)
            os.lseek(self._fd, opened.tail_offset, os.SEEK_SET)
            self._offset = opened.tail_offset
        else:
            self._create_segment(self.next_index)
        self._open_spare()  # the next segment, ahead of time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.policy == "interval":
            self._thread = threading.Thread(
                target=self._sync_loop, name="tickpath-journal-sync", daemon=True
            )
            self._thread.start()

    # -- segments -----------------------------------------------------------

    def _open_spare(self) -> None:
        """Open the next segment's file ahead of time (a stale one is reused)."""
        if self._spare >= 0:
            return
        try:
            self._spare = open_fd(
                self.directory / SPARE_SEGMENT, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
            )
        except OSError as exc:  # retried at the next roll, which then opens its file itself
            if not self._spare_failed:
                log.warning("journal: cannot open the next segment ahead: %s", exc)
            self._spare_failed = True
            return
        self._spare_failed = False

    def _create_segment(self, first_index: int) -> None:
        path = self.directory / fmt.segment_name(first_index)
        header = fmt.encode_segment_header(first_index, time.time_ns())
        if self._spare >= 0:
            if path.exists():
                raise FileExistsError(f"journal segment {path} exists")
            fd, self._spare = self._spare, -1
            os.write(fd, header)
            os.fdatasync(fd)
            os.rename(self.directory / SPARE_SEGMENT, path)
        else:
            fd = open_fd(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC)
            os.write(fd, header)
            os.fdatasync(fd)
        os.fsync(self._dir_fd)  # the new name itself must survive a crash
        self._fd = fd
        self._segment = path
        self._segment_first = first_index
        self._offset = len(header)
        self.segments_created += 1
        self.segments.append(SegmentInfo(path, first_index))

    def _roll(self) -> None:
        if self._spare < 0:
            if time.monotonic() < self._next_roll_try:
                return  # out of descriptors: this segment grows past segment_bytes for now
            self._open_spare()
        with self._lock:
            os.fdatasync(self._fd)  # the older segment is complete on disk before the next
            old = self._fd
            try:
                self._create_segment(self.next_index)
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE):
                    raise
                self.rolls_deferred += 1  # keep appending here; try again in a second
                self._next_roll_try = time.monotonic() + 1.0
                log.warning(
                    "journal: no descriptor for the next segment (%s): %s grows past "
                    "segment_bytes until one is free",
                    exc.strerror,
                    self._segment.name,
                )
                return
            os.close(old)
            self._dirty = False
        self._open_spare()

    # -- appending ----------------------------------------------------------

    def append_frame(self, frame: memoryview, recv_ns: int | None = None, part: int = 0) -> None:
        """Journal one received frame (FRAME when its header passes, else REJECT).

        ``recv_ns``: the receive time the engine hands the kernels with this frame
        (they use it for the clock-skew and failover rules), so replay decides alike.
        ``part`` > 0: continuation slice ``part`` of a frame (engine/ingest/slicer.py),
        in order by construction: a FRAME entry whose flags hold ``part``.
        """
        n = len(frame)
        if part:
            self.append(fmt.ENTRY_FRAME, frame, n, recv_ns, part)
            self.frames += 1
            return
        if n >= s.HEADER_SIZE:
            magic, version, kind, stream, count = _FRAME_HEADER.unpack_from(frame)
            size = _RECORD_SIZE.get(kind, 0)
            hsize = s.HEADER_V2_SIZE if version == s.VERSION_SESSION else s.HEADER_SIZE
            if (
                magic == s.MAGIC
                and (version == s.VERSION or (version == s.VERSION_SESSION and n >= hsize))
                and size
                and (0 < count or hsize == s.HEADER_V2_SIZE)  # v2 count 0: end of session
                and count <= self.max_records
                and n - hsize == count * size
                and stream < self.max_streams
                and (hsize == s.HEADER_SIZE or _SESSION.unpack_from(frame, s.HEADER_SIZE)[0])
            ):
                self.append(fmt.ENTRY_FRAME, frame, n, recv_ns)
                self.frames += 1
                if self._counters is not None:  # the kernels' verdict is settled later
                    self._pending = self._offset - fmt.ENTRY_SIZE - n
                    self._pending_n = n
                    self._pending_accepted = self._counters[self._accepted_i]
                return
        keep = min(n, s.HEADER_V2_SIZE)
        buf = self._reject
        fmt.REJECT_PREFIX.pack_into(buf, 0, n)
        buf[fmt.REJECT_PREFIX.size : fmt.REJECT_PREFIX.size + keep] = frame[:keep]
        self.append(fmt.ENTRY_REJECT, memoryview(buf)[: fmt.REJECT_PREFIX.size + keep], -1, recv_ns)
        self.rejects += 1

    def append_drop(self, nbytes: int, recv_ns: int | None = None) -> None:
        """Journal a message refused before the buffer (multipart: -2, oversize: its length)."""
        fmt.DROP_PAYLOAD.pack_into(self._drop, 0, nbytes)
        self.append(fmt.ENTRY_DROP, self._drop, -1, recv_ns)
        self.drops += 1

    def append(
        self,
        entry_type: int,
        payload: memoryview | bytes | bytearray,
        n: int = -1,
        recv_ns: int | None = None,
        flags: int = 0,
    ) -> None:
        """Write one entry (header + ``payload``) under the sync policy.

        ``recv_ns`` is the entry's timestamp (now when None); ``flags`` the header's
        (a FRAME's slice index, see :mod:`tickpath.engine.journal.format`).
        """
        if n < 0:
            n = len(payload)
        if recv_ns is None:
            recv_ns = time.time_ns()
        if self._pending >= 0:
            self.settle()
        if self._sync_error is not None:
            raise self._sync_error
        total = fmt.ENTRY_SIZE + n
        if self._offset + total > self.config.segment_bytes and self.next_index > (
            self._segment_first
        ):
            self._roll()
        header = self._header
        fmt.ENTRY.pack_into(
            header, 0, fmt.ENTRY_MAGIC, entry_type, flags, n, self.next_index, recv_ns, 0
        )
        _CRC.pack_into(
            header, fmt.ENTRY_CRC_OFFSET, zlib.crc32(payload, zlib.crc32(self._header_crc_part))
        )
        iov = self._iov
        iov[1] = payload
        written = os.writev(self._fd, iov)
        if written != total:
            self._write_rest(payload, written)
        iov[1] = b""
        self._offset += total
        self.bytes += total
        self.next_index += 1
        if self.policy == "frame":
            os.fdatasync(self._fd)
            self.syncs += 1
        else:
            self._dirty = True

    def prune(self, before_index: int) -> list[Path]:
        """Delete segments before ``before_index`` (see ``prune_segments``); any thread."""
        with self._lock:
            known = list(self.segments)
        if self._dir_fd < 0:
            return []
        removed = prune_segments(self.directory, before_index, known, self._dir_fd)
        gone = set(removed)
        with self._lock:
            self.segments = [seg for seg in self.segments if seg.path not in gone]
        return removed

    def settle(self) -> None:
        """Rewrite the last FRAME entry as a REJECT marker if the kernels refused it whole.

        Call on the engine thread, after the frame was processed and before the journal
        position is used (done before the next entry, in :meth:`position` and at close).
        """
        offset = self._pending
        if offset < 0:
            return
        self._pending = -1
        if self._counters[self._accepted_i] != self._pending_accepted:
            return  # accepted: the kernels read its records, keep them
        n = self._pending_n
        keep = min(n, s.HEADER_V2_SIZE)  # a version 2 header whole: its session decides
        buf = bytearray(fmt.REJECT_PREFIX.size + keep)  # the refusal path: may allocate
        fmt.REJECT_PREFIX.pack_into(buf, 0, n)
        buf[fmt.REJECT_PREFIX.size :] = os.pread(self._fd, keep, offset + fmt.ENTRY_SIZE)
        payload = bytes(buf)
        _, _, _, _, index, recv_ns, _ = fmt.ENTRY.unpack_from(
            os.pread(self._fd, fmt.ENTRY_SIZE, offset)
        )
        header = bytearray(fmt.ENTRY_SIZE)
        fmt.ENTRY.pack_into(
            header, 0, fmt.ENTRY_MAGIC, fmt.ENTRY_REJECT, 0, len(payload), index, recv_ns, 0
        )
        _CRC.pack_into(header, fmt.ENTRY_CRC_OFFSET, fmt.entry_crc(header, payload))
        entry = bytes(header) + payload
        with self._lock:
            # marker first, then cut: a crash in between leaves the marker and a torn
            # tail, which opening the journal cuts off (only the newest segment)
            os.pwrite(self._fd, entry, offset)
            os.ftruncate(self._fd, offset + len(entry))
            self._dirty = True
        os.lseek(self._fd, offset + len(entry), os.SEEK_SET)
        self.bytes -= fmt.ENTRY_SIZE + n - len(entry)
        self._offset = offset + len(entry)
        self.frames -= 1
        self.rejects += 1
        self.shrunk += 1

    def _write_rest(self, payload: memoryview | bytes | bytearray, written: int) -> None:
        """Finish a short write (rare on regular files; ENOSPC raises from os.write)."""
        data = memoryview(bytes(self._header) + bytes(payload))[written:]
        while len(data):
            done = os.write(self._fd, data)
            data = data[done:]

    # -- syncing ------------------------------------------------------------

    def _sync_loop(self) -> None:
        interval = self.config.sync_interval_ms / 1000.0
        while not self._stop.wait(interval):
            self._sync_if_dirty()

    def _sync_if_dirty(self) -> None:
        if not self._dirty:
            return
        with self._lock:
            if self._fd < 0:
                return
            self._dirty = False  # set first: a write during the sync marks it dirty again
            try:
                os.fdatasync(self._fd)
                self.syncs += 1
            except OSError as exc:  # reported on the engine thread at the next append
                self._sync_error = exc

    def sync(self) -> None:
        """Make everything written so far durable now (any policy; any thread)."""
        with self._lock:
            if self._fd >= 0:
                os.fdatasync(self._fd)
                self._dirty = False
                self.syncs += 1

    def segment_fd(self) -> int:
        r"""The descriptor of the segment being written: a forked snapshot writer
        ``fdatasync``\ s it before its rename (every entry up to the snapshot is in it or
        in an older segment, synced when it was finished)."""
        self.settle()
        return self._fd

    def position(self) -> tuple[str, int]:
        """``(segment file name, byte offset)`` where the next entry will be written."""
        self.settle()
        return self._segment.name, self._offset

    def stats(self) -> dict:
        """Counters for the ``stats`` message."""
        return {
            "next_index": self.next_index,
            "frames": self.frames,
            "rejects": self.rejects,
            "drops": self.drops,
            "bytes": self.bytes,
            "syncs": self.syncs,
            "segment": self._segment.name,
            "segments_created": self.segments_created,
            "rejected_frames_shrunk": self.shrunk,
            "next_segment_open": self._spare >= 0,
            "rolls_deferred": self.rolls_deferred,
        }

    def close(self) -> None:
        """Stop the sync thread, sync and close the segment (idempotent)."""
        if self._fd >= 0:
            self.settle()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            if self._fd >= 0:
                try:
                    os.fdatasync(self._fd)
                finally:
                    os.close(self._fd)
                    self._fd = -1
            if self._spare >= 0:
                os.close(self._spare)
                self._spare = -1
                (self.directory / SPARE_SEGMENT).unlink(missing_ok=True)
            if self._dir_fd >= 0:
                os.close(self._dir_fd)
                self._dir_fd = -1
