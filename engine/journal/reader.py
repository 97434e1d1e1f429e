"""Reading the journal: list and check segments, repair a torn tail, iterate entries.

:func:`open_journal` is what a writer (and recovery) calls first: it walks the
newest segment entry by entry, verifying each checksum, and truncates a torn or
corrupt tail, reporting what was cut (:class:`TailRepair`).  A damaged entry
*followed by valid ones* is not a torn write but corruption: that raises
:class:`JournalCorruptError` unless ``truncate_corrupt`` is set, because
truncating would throw away good entries.

:func:`iter_entries` yields entries in index order across segments, verifying
every checksum and the continuity of the indices; it raises
:class:`JournalCorruptError` on anything it cannot trust, except an incomplete
last entry of the newest segment (a journal still being written), where it
simply stops.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tickpath.engine.journal import format as fmt
from tickpath.engine.service.descriptors import open_fd, reserved

log = logging.getLogger("tickpath.journal")


class JournalCorruptError(OSError):
    """Journal damage that cannot be repaired automatically (or an inconsistent journal)."""


class SegmentInfo(NamedTuple):
    """A segment file and the index of its first entry (from its name)."""

    path: Path
    first_index: int


class SegmentScan(NamedTuple):
    """The result of walking one segment."""

    first_index: int
    entries: int  # valid entries from the start of the segment
    end_offset: int  # byte offset just past the last valid entry
    file_size: int
    header_ok: bool
    problem: str | None  # why the walk stopped before the end of the file
    announced_length: int | None  # payload length of the damaged entry, if its header parsed
    valid_after: bool  # a valid entry exists after the damage (corruption, not a torn write)


class TailRepair(NamedTuple):
    """What :func:`open_journal` cut off the end of the journal."""

    segment: str
    offset: int  # where the damage starts (the file now ends here)
    bytes_lost: int
    first_lost_index: int  # index the first lost entry would have had
    announced_length: int | None  # payload length announced by a partial entry header
    reason: str
    removed_segment: bool  # the whole segment file was removed (its header was torn)

    def describe(self) -> str:
        """One line for the log."""
        what = "removed segment" if self.removed_segment else "truncated"
        partial = (
            f", a partial entry announcing {self.announced_length} payload bytes"
            if self.announced_length is not None
            else ""
        )
        return (
            f"journal tail damaged ({self.reason}): {what} {self.segment} at byte "
            f"{self.offset}, {self.bytes_lost} bytes lost from entry index "
            f"{self.first_lost_index}{partial}"
        )


class OpenedJournal(NamedTuple):
    """State of a journal directory after :func:`open_journal`."""

    directory: Path
    segments: list[SegmentInfo]
    next_index: int  # index the next appended entry gets
    tail_offset: int  # end of the newest segment's valid data (0 when there is none)
    repairs: list[TailRepair]


class Entry(NamedTuple):
    """One journal entry; ``payload`` is a view into the mapped segment."""

    index: int
    type: int
    recv_ns: int
    payload: np.ndarray  # uint8
    flags: int = 0  # a FRAME's slice index (0: a whole frame or a first slice)


def list_segments(directory: str | os.PathLike[str]) -> list[SegmentInfo]:
    """Segment files of a journal directory, in index order."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    with reserved():  # listing takes a descriptor: from the engine's reserve
        names = os.listdir(directory)
    for name in names:
        first = fmt.parse_segment_name(name)
        if first is not None:
            found.append(SegmentInfo(directory / name, first))
    found.sort(key=lambda seg: seg.first_index)
    return found


def prune_segments(
    directory: str | os.PathLike[str],
    before_index: int,
    segments: list[SegmentInfo] | None = None,
    dir_fd: int = -1,
) -> list[Path]:
    """Delete the segments whose every entry has an index below `before_index`.

    The newest segment is never deleted (the writer appends to it), so a segment goes
    only once the next one exists and starts at or below `before_index`.  A running
    writer passes its own list of ``segments`` and directory descriptor (``dir_fd``):
    no descriptor is needed then.
    """
    if segments is None:
        segments = list_segments(directory)
    removed = []
    for seg, following in zip(segments, segments[1:]):
        if following.first_index > before_index:
            break
        seg.path.unlink(missing_ok=True)
        removed.append(seg.path)
    if removed:
        if dir_fd >= 0:
            os.fsync(dir_fd)
        else:
            _fsync_dir(Path(directory))
    return removed


def _map(path: Path) -> np.ndarray:
    size = path.stat().st_size
    if size == 0:
        return np.zeros(0, np.uint8)
    return np.asarray(np.memmap(path, dtype=np.uint8, mode="r"))


def _entry_at(data: np.ndarray, offset: int, expect_index: int | None) -> tuple[int, str | None]:
    """Check the entry at ``offset``; return ``(length or -1, problem)``."""
    left = len(data) - offset
    if left < fmt.ENTRY_SIZE:
        length = -1
        if left >= 12 and int.from_bytes(data[offset : offset + 4], "little") == fmt.ENTRY_MAGIC:
            length = int.from_bytes(data[offset + 8 : offset + 12], "little")
        return length, f"{left} bytes, short of an entry header"
    magic, etype, flags, length, index, _recv, crc = fmt.ENTRY.unpack_from(data, offset)
    if magic != fmt.ENTRY_MAGIC:
        return -1, "bad entry magic"
    if etype not in fmt.ENTRY_TYPES or (flags != 0 and etype != fmt.ENTRY_FRAME):
        return -1, f"bad entry type {etype}"
    if length > left - fmt.ENTRY_SIZE:
        return length, f"entry of {length} bytes runs past the end of the file"
    header = data[offset : offset + fmt.ENTRY_SIZE]
    payload = data[offset + fmt.ENTRY_SIZE : offset + fmt.ENTRY_SIZE + length]
    if fmt.entry_crc(header, payload) != crc:
        return length, "checksum mismatch"
    if expect_index is not None and index != expect_index:
        return length, f"entry index {index}, expected {expect_index}"
    return length, None


def _valid_entry_after(data: np.ndarray, start: int) -> bool:
    """True if a complete, checksummed entry starts anywhere at or after ``start``."""
    tail = data[start:]
    if len(tail) < fmt.ENTRY_SIZE:
        return False
    magic = np.frombuffer(fmt.ENTRY_MAGIC.to_bytes(4, "little"), np.uint8)
    n = len(tail) - 3
    hits = tail[:n] == magic[0]
    for k in range(1, 4):
        hits &= tail[k : n + k] == magic[k]
    for pos in np.flatnonzero(hits).tolist():
        _length, problem = _entry_at(data, start + pos, None)
        if problem is None:
            return True
    return False


def scan_segment(path: str | os.PathLike[str], first_index: int | None = None) -> SegmentScan:
    """Walk a segment from its start, verifying every entry; see :class:`SegmentScan`."""
    path = Path(path)
    data = _map(path)
    size = len(data)
    header = fmt.decode_segment_header(bytes(data[: fmt.SEGMENT_HEADER_SIZE]))
    named = fmt.parse_segment_name(path.name)
    expected_first = first_index if first_index is not None else named
    if header is None or (expected_first is not None and header[0] != expected_first):
        problem = "segment header torn or invalid" if header is None else "segment header index"
        return SegmentScan(
            expected_first if expected_first is not None else -1,
            0,
            0,
            size,
            False,
            problem,
            None,
            _valid_entry_after(data, 0) if size else False,
        )
    first = header[0]
    offset = fmt.SEGMENT_HEADER_SIZE
    entries = 0
    while offset < size:
        length, problem = _entry_at(data, offset, first + entries)
        if problem is not None:
            return SegmentScan(
                first,
                entries,
                offset,
                size,
                True,
                problem,
                length if length >= 0 else None,
                _valid_entry_after(data, offset + 1),
            )
        offset += fmt.ENTRY_SIZE + length
        entries += 1
    return SegmentScan(first, entries, offset, size, True, None, None, False)


def check_finished_segment(info: SegmentInfo, next_first_index: int) -> str | None:
    """Verify every entry of a finished (not the newest) segment; describe its damage, or None.

    A segment pruned meanwhile (``journal.retain``) is not damage: None.
    """
    try:
        scan = scan_segment(info.path, info.first_index)
    except FileNotFoundError:
        return None
    if scan.problem is not None:
        return (
            f"{info.path.name}: {scan.problem} at byte {scan.end_offset} "
            f"(entry {scan.first_index + scan.entries}); "
            f"{scan.file_size - scan.end_offset} bytes from there cannot be read"
        )
    if scan.first_index + scan.entries != next_first_index:
        return (
            f"{info.path.name}: ends at entry {scan.first_index + scan.entries}, "
            f"the next segment starts at {next_first_index}"
        )
    return None


def _fsync_dir(directory: Path) -> None:
    fd = open_fd(directory, os.O_RDONLY | os.O_CLOEXEC)  # from the engine's reserve
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_journal(
    directory: str | os.PathLike[str], *, truncate_corrupt: bool = False, repair: bool = True
) -> OpenedJournal:
    """Check a journal directory and cut a torn tail; return where appending resumes.

    ``repair=False`` only reports (nothing is written).  Raises
    :class:`JournalCorruptError` when the newest segment holds a damaged entry
    followed by valid ones and ``truncate_corrupt`` is false.
    """
    directory = Path(directory)
    segments = list_segments(directory)
    repairs: list[TailRepair] = []
    while segments:
        last = segments[-1]
        scan = scan_segment(last.path, last.first_index)
        if scan.problem is None:
            return OpenedJournal(
                directory, segments, scan.first_index + scan.entries, scan.end_offset, repairs
            )
        if scan.valid_after and not truncate_corrupt:
            raise JournalCorruptError(
                f"{last.path}: {scan.problem} at byte {scan.end_offset}, but valid entries "
                "follow: this is corruption, not a torn write; set journal.truncate_corrupt "
                "= true to cut the segment there (the entries after it are lost)"
            )
        remove = not scan.header_ok or (scan.entries == 0 and len(segments) > 1)
        repair_info = TailRepair(
            segment=last.path.name,
            offset=scan.end_offset,
            bytes_lost=scan.file_size - scan.end_offset,
            first_lost_index=last.first_index + scan.entries,
            announced_length=scan.announced_length,
            reason=scan.problem,
            removed_segment=remove,
        )
        repairs.append(repair_info)
        log.warning("%s", repair_info.describe())
        if not repair:
            return OpenedJournal(
                directory,
                segments[:-1] if remove else segments,
                last.first_index + scan.entries,
                0 if remove else scan.end_offset,
                repairs,
            )
        if remove:
            last.path.unlink()
            _fsync_dir(directory)
            segments.pop()
            if not segments:
                return OpenedJournal(directory, [], last.first_index, 0, repairs)
            continue
        fd = os.open(last.path, os.O_WRONLY)
        try:
            os.ftruncate(fd, scan.end_offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        return OpenedJournal(
            directory, segments, last.first_index + scan.entries, scan.end_offset, repairs
        )
    return OpenedJournal(directory, [], 0, 0, repairs)


def iter_entries(
    directory: str | os.PathLike[str],
    start: int = 0,
    stop: int | None = None,
    *,
    start_hint: tuple[str, int] | None = None,
) -> Iterator[Entry]:
    """Yield the entries with ``start <= index < stop`` in order, verified.

    ``start_hint`` (segment file name, byte offset of entry ``start``), as a
    snapshot records it, skips the walk from the segment's start; it is
    checked and ignored when it does not point at entry ``start``.
    """
    segments = list_segments(directory)
    if stop is not None and stop <= start:
        return
    first_seg = 0
    for i, seg in enumerate(segments):
        if seg.first_index <= start:
            first_seg = i
    if segments and segments[first_seg].first_index > start:
        raise JournalCorruptError(
            f"{directory}: the journal starts at entry {segments[0].first_index}, "
            f"entry {start} is not in it"
        )
    expect = None
    for n, seg in enumerate(segments[first_seg:], start=first_seg):
        newest = n == len(segments) - 1
        if expect is not None and seg.first_index != expect:
            raise JournalCorruptError(
                f"{seg.path}: starts at entry {seg.first_index}, expected {expect} "
                "(a segment is missing or damaged)"
            )
        data = _map(seg.path)
        header = fmt.decode_segment_header(bytes(data[: fmt.SEGMENT_HEADER_SIZE]))
        if header is None or header[0] != seg.first_index:
            if newest and (len(data) < fmt.SEGMENT_HEADER_SIZE or header is None):
                return  # a segment being created
            raise JournalCorruptError(f"{seg.path}: segment header torn or invalid")
        index = seg.first_index
        offset = fmt.SEGMENT_HEADER_SIZE
        if start_hint is not None and start_hint[0] == seg.path.name and index < start:
            hinted = start_hint[1]
            if fmt.SEGMENT_HEADER_SIZE <= hinted <= len(data) - fmt.ENTRY_SIZE:
                _l, problem = _entry_at(data, hinted, start)
                if problem is None:
                    index, offset = start, hinted
        size = len(data)
        while offset < size:
            if stop is not None and index >= stop:
                return
            if index < start:  # skip quickly: framing and index only
                left = size - offset
                if left < fmt.ENTRY_SIZE:
                    break
                magic, _t, _f, length, idx, _r, _c = fmt.ENTRY.unpack_from(data, offset)
                if magic == fmt.ENTRY_MAGIC and idx == index and length <= left - fmt.ENTRY_SIZE:
                    offset += fmt.ENTRY_SIZE + length
                    index += 1
                    continue
            length, problem = _entry_at(data, offset, index)
            if problem is not None:
                if newest and not _valid_entry_after(data, offset + 1):
                    log.warning(
                        "%s: journal ends with an incomplete entry at byte %d (%s)",
                        seg.path.name,
                        offset,
                        problem,
                    )
                    return
                raise JournalCorruptError(f"{seg.path}: {problem} at byte {offset}")
            _m, etype, flags, _l, _i, recv_ns, _c = fmt.ENTRY.unpack_from(data, offset)
            body = offset + fmt.ENTRY_SIZE
            yield Entry(index, etype, recv_ns, data[body : body + length], flags)
            offset = body + length
            index += 1
        expect = index
    if expect is not None and expect < start:
        raise JournalCorruptError(
            f"{directory}: the journal ends at entry {expect}, before {start}"
        )
