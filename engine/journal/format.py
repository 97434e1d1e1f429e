"""On-disk layout of the journal: segment files of checksummed entries.

A journal is a directory of *segments*, each named after the index of its
first entry (``00000000000000000000.journal``, zero-padded to 20 digits so
that names sort by index).  A segment is a 64-byte header followed by entries,
back to back::

    segment header (64 bytes, little-endian)
      0  8s  magic       b"TKPJRNL\\x01"
      8  u16 version     1
     10  u16 header_size 64
     12  u32 reserved    0
     16  u64 first_index index of the segment's first entry
     24  i64 created_ns  wall clock when the segment was created
     32  28 bytes        reserved, 0
     60  u32 crc32       zlib.crc32 of bytes 0..59

    entry header (32 bytes, little-endian), then ``length`` payload bytes
      0  u32 magic   0x454A5054 (the bytes "TPJE")
      4  u16 type    1 FRAME, 2 REJECT, 3 DROP
      6  u16 flags   FRAME: its slice index (0: a whole frame); other types: 0
      8  u32 length  payload bytes
     12  u64 index   journal index of the entry (0, 1, 2, ... over all segments)
     20  i64 recv_ns wall clock when the engine journaled the frame
     28  u32 crc32   zlib.crc32 of header bytes 0..27, then of the payload

Entry types (what ``payload`` holds):

* ``FRAME``: a frame whose header passed the engine's header checks, byte for
  byte as received.  Replay runs it through the kernels, which re-apply the
  sequence and record rules.  With ``ingest.slice_records`` a large frame is
  journaled as it ran: one FRAME per slice, each with its own header (count and
  seq of the slice), the flags of slice ``j`` holding ``j``.
* ``REJECT``: a frame the header checks refuse.  Only ``u32 nbytes`` and its
  first ``min(nbytes, 32)`` bytes are kept: the kernels' verdict on such a frame
  depends on nothing else, so replay counts it exactly as the live engine did,
  and garbage never fills the disk.
* ``DROP``: a message refused before it reached the buffer (``i64 nbytes``:
  -2 for a multipart message, the length of an oversize frame); kept so that
  replayed counters (and frame numbers) equal the live ones.

Every entry is checksummed on its own, so a torn or corrupt tail is found by
walking the newest segment from its start; only the newest segment can be torn
(an older one is synced before the next is created).
"""

from __future__ import annotations

import struct
import zlib

SEGMENT_MAGIC = b"TKPJRNL\x01"
SEGMENT_VERSION = 1
SEGMENT_HEADER_SIZE = 64
SEGMENT_SUFFIX = ".journal"
SEGMENT_HEADER = struct.Struct("<8sHHIQq")  # the first 32 bytes; crc32 at offset 60
SEGMENT_CRC_OFFSET = 60

ENTRY_MAGIC = 0x454A5054  # b"TPJE" little-endian
ENTRY = struct.Struct("<IHHIQqI")
ENTRY_SIZE = ENTRY.size  # 32
ENTRY_CRC_OFFSET = 28
ENTRY_FRAME = 1
ENTRY_REJECT = 2
ENTRY_DROP = 3
ENTRY_TYPES = {ENTRY_FRAME: "frame", ENTRY_REJECT: "reject", ENTRY_DROP: "drop"}

REJECT_PREFIX = struct.Struct("<I")  # nbytes of the refused frame, then its first <= 32 bytes
DROP_PAYLOAD = struct.Struct("<q")  # nbytes as the receiver returned it (-2: multipart)

assert ENTRY_SIZE == 32


def segment_name(first_index: int) -> str:
    """File name of the segment whose first entry has index ``first_index``."""
    return f"{first_index:020d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """First index encoded in a segment file name, or None if it is not a segment name."""
    if not name.endswith(SEGMENT_SUFFIX):
        return None
    stem = name[: -len(SEGMENT_SUFFIX)]
    if len(stem) != 20 or not stem.isdigit():
        return None
    return int(stem)


def encode_segment_header(first_index: int, created_ns: int) -> bytes:
    """The 64-byte header of a new segment."""
    head = SEGMENT_HEADER.pack(
        SEGMENT_MAGIC, SEGMENT_VERSION, SEGMENT_HEADER_SIZE, 0, first_index, created_ns
    )
    body = head + bytes(SEGMENT_CRC_OFFSET - len(head))
    return body + struct.pack("<I", zlib.crc32(body))


def decode_segment_header(data: bytes | memoryview) -> tuple[int, int] | None:
    """``(first_index, created_ns)`` of a valid segment header, or None."""
    if len(data) < SEGMENT_HEADER_SIZE:
        return None
    (crc,) = struct.unpack_from("<I", data, SEGMENT_CRC_OFFSET)
    if zlib.crc32(data[:SEGMENT_CRC_OFFSET]) != crc:
        return None
    magic, version, size, _, first_index, created_ns = SEGMENT_HEADER.unpack_from(data)
    if magic != SEGMENT_MAGIC or version != SEGMENT_VERSION or size != SEGMENT_HEADER_SIZE:
        return None
    return first_index, created_ns


def entry_crc(header: bytes | memoryview, payload: bytes | memoryview) -> int:
    """Checksum of an entry: header bytes 0..27, then the payload."""
    return zlib.crc32(payload, zlib.crc32(header[:ENTRY_CRC_OFFSET]))
