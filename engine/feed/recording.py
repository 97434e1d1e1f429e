"""Recording files: tickpath frames exactly as on the wire, concatenated.

Format
------
A recording is a plain sequence of frames with nothing before, between or after
them: no file header, no padding, no index.  Each frame is the 32-byte wire
header (:data:`tickpath.engine.wire.schema.HEADER`, little-endian) followed by
``count`` records of the header's ``kind``, so the next frame starts at::

    offset + HEADER_SIZE + count * record_size(kind)

An empty file is a valid, empty recording.  Frames keep the ``stream_id``,
``seq`` and ``send_ns`` they had when recorded; a replayer re-stamps them.  The
usual suffix is ``.tkp``.

The reader maps the file read-only and yields zero-copy views into the map.  It
is strict: a short trailing header, a bad magic/version/kind/count, a frame
running past the end of the file, and (with ``check_sequence``) a frame whose
``seq`` is not the previous frame's ``seq + count`` in the same stream all raise
:class:`RecordingError` (a :class:`~tickpath.engine.wire.codec.FrameError`) naming the
byte offset of the offending frame.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

import numpy as np

from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s


class RecordingError(codec.FrameError):
    """A corrupt recording; ``offset`` is the byte offset of the frame at fault."""

    def __init__(self, reason: int, offset: int, detail: str) -> None:
        super().__init__(reason, f"at byte offset {offset}: {detail}")
        self.offset = offset


class RecordedFrame(NamedTuple):
    """One frame of a recording: zero-copy views into the mapped file."""

    offset: int  # byte offset of the frame's header in the file
    frame: np.ndarray  # the whole frame's bytes (uint8), header included
    header: np.void
    records: np.ndarray


class RecordingWriter:
    """Append frames to a recording file (created or truncated on open).

    Use as a context manager, or call :meth:`close`.  Every frame is validated
    with the strict codec before it is written, so a writer cannot produce a
    file its reader rejects (sequence contiguity is the caller's business).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file = open(self.path, "wb", buffering=1 << 20)  # noqa: SIM115 - closed in close()
        self.frames = 0
        self.records = 0
        self.bytes = 0

    def write_frame(self, frame: bytes | memoryview | np.ndarray) -> None:
        """Append one encoded frame (header + records)."""
        header, records = codec.decode_frame(frame, inputs_only=False)
        self._file.write(frame)
        self.frames += 1
        self.records += len(records)
        self.bytes += len(frame) if not isinstance(frame, np.ndarray) else frame.nbytes

    def write(
        self, kind: int, stream_id: int, seq: int, records: np.ndarray, send_ns: int = 0
    ) -> None:
        """Encode ``records`` as one frame of ``kind`` and append it."""
        self.write_frame(codec.encode_frame(kind, stream_id, seq, records, send_ns))

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def iter_frames(
    path: str | os.PathLike[str], *, inputs_only: bool = True, check_sequence: bool = True
) -> Iterator[RecordedFrame]:
    """Yield every frame of a recording, in file order, as zero-copy views.

    ``inputs_only`` rejects result kinds (a feed recording holds only TRADE,
    QUOTE and ORDER frames).  ``check_sequence`` requires each stream's frames
    to be contiguous (``seq`` of a frame == ``seq + count`` of the previous one).
    Raises :class:`RecordingError` at the first corrupt frame.
    """
    size = os.path.getsize(path)
    if size == 0:
        return
    # a plain ndarray view of the map: slicing a memmap subclass is several times slower
    data = np.asarray(np.memmap(path, dtype=np.uint8, mode="r"))
    next_seq: dict[int, int] = {}
    offset = 0
    while offset < size:
        left = size - offset
        if left < s.HEADER_SIZE:
            raise RecordingError(
                s.REJECT_SHORT, offset, f"{left} trailing bytes, a header needs {s.HEADER_SIZE}"
            )
        header = data[offset : offset + s.HEADER_SIZE].view(s.HEADER)[0]
        kind = int(header["kind"])
        count = int(header["count"])
        record_size = int(codec.record_size_of_kind(kind))
        length = s.HEADER_SIZE + count * record_size
        reason = codec.header_reject_reason(
            min(length, left),
            int(header["magic"]),
            int(header["version"]),
            kind,
            count,
            inputs_only,
        )
        if reason < 0 and length > left:
            reason = s.REJECT_BAD_LENGTH
        if reason >= 0:
            raise RecordingError(
                reason,
                offset,
                f"magic=0x{int(header['magic']):08x} version={int(header['version'])} "
                f"kind={kind} count={count} frame_bytes={length} bytes_left={left}",
            )
        frame = data[offset : offset + length]
        header, records = codec.decode_frame(frame, inputs_only=inputs_only)
        if check_sequence:
            stream = int(header["stream_id"])
            seq = int(header["seq"])
            expected = next_seq.get(stream)
            if expected is not None and seq != expected:
                # every record seen before: a duplicate; otherwise a gap or an overlap
                dup = seq + count <= expected
                reason = s.REJECT_DUPLICATE if dup else s.REJECT_OUT_OF_ORDER
                raise RecordingError(
                    reason, offset, f"stream {stream} seq {seq}, expected {expected}"
                )
            next_seq[stream] = seq + count
        yield RecordedFrame(offset, frame, header, records)
        offset += length


class RecordingSummary(NamedTuple):
    """Totals of a recording, from :func:`scan`."""

    frames: int
    records_by_kind: dict[int, int]
    first_ts_ns: int | None
    last_ts_ns: int | None
    bytes: int


def scan(path: str | os.PathLike[str]) -> RecordingSummary:
    """Validate a whole recording strictly and return its totals."""
    frames = 0
    by_kind: dict[int, int] = {}
    first = last = None
    for item in iter_frames(path):
        frames += 1
        kind = int(item.header["kind"])
        by_kind[kind] = by_kind.get(kind, 0) + len(item.records)
        ts = item.records["ts_ns"]
        lo, hi = int(ts.min()), int(ts.max())
        first = lo if first is None else min(first, lo)
        last = hi if last is None else max(last, hi)
    return RecordingSummary(frames, by_kind, first, last, os.path.getsize(path))
