"""Encode and strictly decode tickpath frames (header + records), zero-copy.

``decode_frame`` is the general-purpose decoder (tools, tests, subscribers);
the ingest hot path applies the same header rules inside its numba kernel
(:func:`header_reject_reason` is shared by both).
"""

from __future__ import annotations

import numba
import numpy as np

from tickpath.engine.wire import schema as s

# Largest count a header may state; the engine's max_frame_bytes usually binds first.
MAX_RECORDS_PER_FRAME = 1 << 20


class FrameError(ValueError):
    """A frame that breaks the wire format; ``reason`` is a ``schema.REJECT_*`` code."""

    def __init__(self, reason: int, detail: str) -> None:
        super().__init__(f"{s.REJECT_NAMES[reason]}: {detail}")
        self.reason = reason


@numba.njit(cache=True, nogil=True)
def record_size_of_kind(kind: int) -> int:
    """Record size in bytes for a kind, or 0 for an unknown kind."""
    if kind == s.KIND_TRADE:
        return s.TRADE_SIZE
    if kind == s.KIND_QUOTE:
        return s.QUOTE_SIZE
    if kind == s.KIND_ORDER:
        return s.ORDER_SIZE
    if kind == s.KIND_RESULT_QUOTE:
        return s.RESULT_QUOTE_SIZE
    if kind == s.KIND_RESULT_TRADE:
        return s.RESULT_TRADE_SIZE
    if kind == s.KIND_RESULT_BAR:
        return s.RESULT_BAR_SIZE
    if kind == s.KIND_RESULT_BOOK:
        return s.RESULT_BOOK_SIZE
    if kind == s.KIND_RESULT_FPGA:
        return s.RESULT_FPGA_SIZE
    if kind == s.KIND_RESULT_CHAIN:
        return s.RESULT_CHAIN_SIZE
    if kind == s.KIND_RESULT_CORR:
        return s.RESULT_CORR_SIZE
    return 0


@numba.njit(cache=True, nogil=True)
def header_reject_reason(
    nbytes: int, magic: int, version: int, kind: int, count: int, inputs_only: bool
) -> int:
    """Return -1 if a header is acceptable for a frame of ``nbytes``, else a REJECT_* code.

    Version 2 (a 40-byte header with a session id) exists for input kinds only;
    the session id itself is checked by the caller (see :func:`decode_frame`).
    """
    if nbytes < s.HEADER_SIZE:
        return s.REJECT_SHORT
    if magic != s.MAGIC:
        return s.REJECT_BAD_MAGIC
    if version != s.VERSION and version != s.VERSION_SESSION:
        return s.REJECT_BAD_VERSION
    hsize = header_size_of_version(version)
    if nbytes < hsize:
        return s.REJECT_SHORT
    size = record_size_of_kind(kind)
    if size == 0 or ((inputs_only or version == s.VERSION_SESSION) and kind >= 16):
        return s.REJECT_BAD_KIND
    if (count == 0 and version != s.VERSION_SESSION) or count > MAX_RECORDS_PER_FRAME:
        return s.REJECT_BAD_COUNT  # count 0: a version 2 end of session
    if nbytes - hsize != count * size:
        return s.REJECT_BAD_LENGTH
    return -1


@numba.njit(cache=True, nogil=True)
def header_size_of_version(version: int) -> int:
    """Header bytes of a frame of ``version`` (40 for version 2, else 32)."""
    if version == s.VERSION_SESSION:
        return s.HEADER_V2_SIZE
    return s.HEADER_SIZE


def _check_sizes() -> None:
    for kind, dtype in s.RECORD_DTYPES.items():
        assert record_size_of_kind.py_func(kind) == dtype.itemsize, kind


_check_sizes()


def encode_frame(
    kind: int,
    stream_id: int,
    seq: int,
    records: np.ndarray,
    send_ns: int = 0,
    session: int | None = None,
) -> bytes:
    """Return one frame: a header followed by ``records`` (which must have the kind's dtype).

    ``session``: a publisher session id (not 0) makes a version 2 frame; None, version 1.
    """
    dtype = s.RECORD_DTYPES.get(kind)
    if dtype is None:
        raise ValueError(f"unknown record kind {kind}")
    if records.dtype != dtype:
        raise TypeError(f"kind {kind} needs dtype {dtype}, got {records.dtype}")
    if session is None:
        header = np.zeros(1, s.HEADER)
        header[0] = (s.MAGIC, s.VERSION, kind, stream_id, len(records), seq, send_ns)
    else:
        if not 0 < session < 1 << 64:
            raise ValueError(f"a session id is in 1..2**64-1, not {session}")
        header = np.zeros(1, s.HEADER_V2)
        header[0] = (
            s.MAGIC, s.VERSION_SESSION, kind, stream_id, len(records), seq, send_ns, session
        )  # fmt: skip
    return header.tobytes() + np.ascontiguousarray(records).tobytes()


def encode_frame_into(
    out: np.ndarray,
    kind: int,
    stream_id: int,
    seq: int,
    records: np.ndarray,
    send_ns: int,
    session: int | None = None,
) -> int:
    """Write a frame into the uint8 buffer ``out``; return its length in bytes. No allocation.

    ``session`` as in :func:`encode_frame`.
    """
    n = len(records)
    if session is None:
        hsize = s.HEADER_SIZE
        header = out[:hsize].view(s.HEADER)
        header[0] = (s.MAGIC, s.VERSION, kind, stream_id, n, seq, send_ns)
    else:
        hsize = s.HEADER_V2_SIZE
        header = out[:hsize].view(s.HEADER_V2)
        header[0] = (s.MAGIC, s.VERSION_SESSION, kind, stream_id, n, seq, send_ns, session)
    length = hsize + n * records.dtype.itemsize
    out[hsize:length] = records.view(np.uint8).reshape(-1)
    return length


def encode_end_of_session(kind: int, stream_id: int, seq: int, session: int, send_ns: int) -> bytes:
    """A version 2 end-of-session frame: the header alone, ``count`` 0.

    The holder of ``stream_id`` releases it: another session may take it over at
    once instead of after the failover time.  ``seq`` is the session's next sequence.
    """
    records = np.zeros(0, s.RECORD_DTYPES[kind])
    return encode_frame(kind, stream_id, seq, records, send_ns, session)


def decode_header(buf: bytes | memoryview | np.ndarray) -> np.void:
    """Return the header record of a frame (a zero-copy view), without validating it.

    A version 2 frame of at least 40 bytes gives a :data:`schema.HEADER_V2`
    record (with ``session``), anything else a version 1 :data:`schema.HEADER`.
    """
    if len(buf) < s.HEADER_SIZE:
        raise FrameError(s.REJECT_SHORT, f"{len(buf)} bytes, a header needs {s.HEADER_SIZE}")
    header = np.frombuffer(buf, s.HEADER, count=1)[0]
    if int(header["version"]) == s.VERSION_SESSION and len(buf) >= s.HEADER_V2_SIZE:
        return np.frombuffer(buf, s.HEADER_V2, count=1)[0]
    return header


def session_of(header: np.void) -> int | None:
    """The publisher session id of a decoded header, or None for a version 1 header."""
    return int(header["session"]) if "session" in (header.dtype.names or ()) else None


def decode_frame(
    buf: bytes | memoryview | np.ndarray, inputs_only: bool = False
) -> tuple[np.void, np.ndarray]:
    """Strictly decode one frame; return ``(header, records)`` as zero-copy views.

    Raises :class:`FrameError` with the reject reason on any violation of the
    wire format (record contents are not checked here: that is the engine's job).
    """
    nbytes = len(buf)
    header = decode_header(buf)
    reason = header_reject_reason(
        nbytes,
        int(header["magic"]),
        int(header["version"]),
        int(header["kind"]),
        int(header["count"]),
        inputs_only,
    )
    if reason >= 0:
        raise FrameError(
            reason,
            f"magic=0x{int(header['magic']):08x} version={int(header['version'])} "
            f"kind={int(header['kind'])} count={int(header['count'])} bytes={nbytes}",
        )
    if session_of(header) == 0:
        raise FrameError(s.REJECT_BAD_SESSION, "a version 2 header needs a session id > 0")
    dtype = s.RECORD_DTYPES[int(header["kind"])]
    offset = header_size_of_version.py_func(int(header["version"]))
    records = np.frombuffer(buf, dtype, count=int(header["count"]), offset=offset)
    return header, records
