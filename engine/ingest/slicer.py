"""Large frames processed in slices, with other streams' frames taken in between.

A frame of ``count`` records takes the tick thread ``count`` times a record's cost: a
legal 1 MiB frame of 20,000 quotes about 3 ms. Fair queueing in libzmq is per message,
so a feed's one-record frame that arrives meanwhile waits for all of it (and possibly
for the next one from the same connection). With ``ingest.slice_records = c`` an input
frame of more than ``c`` records that continues its stream in order (the holder's
session, the next sequence) is processed as slices of at most ``c`` records:

* each slice is a frame for everything downstream: a header with the original fields,
  ``count`` the slice's and ``seq`` its first record's, followed by its records,
  journaled, processed and published like a received frame, so a recovery replays
  exactly what ran.  Slice ``j`` > 0 is handed on as ``part = j``: the kernels count it
  as records of the frame, not as a frame (``frames_received`` and the streams' frame
  counts stay per message, ``bytes_received`` counts the message's bytes), and the
  journal marks its entry with ``j``;
* slice ``j`` is moved to the front of the receive buffer (the records before it are
  done) and the original header written in front of it with the slice's count and seq;
* between two slices the engine takes at most one waiting frame off the socket (non
  blocking), into a buffer of its own: a frame of another stream that fits the free front
  of the receive buffer, and whose stream has no frame waiting, is processed at once; any
  other frame (of the sliced stream, of a stream with a frame waiting, or too large) waits
  until the sliced frame is done, then the waiting frames are processed oldest first
  (per-stream order is never changed). At most :data:`LOOKAHEAD` frames wait; with all
  their buffers taken, nothing more is taken until the sliced frame is done.

Frames that start a stream, skip ahead, restart or change session are processed whole:
their verdict depends on the whole frame.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np
import zmq

from tickpath.engine.ingest.receiver import FrameReceiver
from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu.streaming_view import StreamTable

_RECORD_SIZE = {s.KIND_TRADE: s.TRADE_SIZE, s.KIND_QUOTE: s.QUOTE_SIZE, s.KIND_ORDER: s.ORDER_SIZE}
_STREAM_AT = s.HEADER.fields["stream_id"][1]
_COUNT_AT = s.HEADER.fields["count"][1]
_SEQ_AT = s.HEADER.fields["seq"][1]
_U64 = 1 << 64
# Frames that may wait for a sliced one, each in a preallocated buffer of the receive
# buffer's size. With one, a sliced frame that took the next frame of a flood off the
# socket took nothing more, and a feed's one-record frame queued behind it waited for the
# whole rest of the sliced frame; with two, libzmq's fair queueing (one message per
# connection in turn) hands the feed's frame over at the next slice.
LOOKAHEAD = 2


class FrameSlicer:
    """Slices the large in-order frames of one receive buffer (see the module doc)."""

    def __init__(self, receiver: FrameReceiver, streams: StreamTable, slice_records: int) -> None:
        self.buffer = buffer = receiver.buffer
        self.receiver = receiver
        self.streams = streams
        self.slice_records = slice_records
        # the smallest frame that can be sliced: a header and slice_records + 1 records
        self.min_bytes = s.HEADER_SIZE + (slice_records + 1) * min(_RECORD_SIZE.values())
        # buffers for frames taken off the socket between two slices; written now, so
        # their pages are part of the engine's resident size after start-up, not of an
        # attack's
        self._slots = [np.zeros(len(buffer), np.uint8) for _ in range(LOOKAHEAD)]
        for slot in self._slots:
            slot.fill(0)
        self._slot_streams = [slot[_STREAM_AT : _STREAM_AT + 4].view("<u4") for slot in self._slots]
        self._free = list(range(LOOKAHEAD))  # slots not holding a waiting frame
        # the frames that wait, oldest first: (slot, nbytes, recv_ns, stream or -1)
        self._waiting: deque[tuple[int, int, int, int]] = deque()
        self._header = np.zeros(s.HEADER_V2_SIZE, np.uint8)  # the sliced frame's own
        # header fields, viewed once: a slice rewrites count and seq in place
        self._count = buffer[_COUNT_AT : _COUNT_AT + 4].view("<u4")
        self._seq = buffer[_SEQ_AT : _SEQ_AT + 8].view("<u8")
        self.frames_sliced = 0
        self.slices = 0
        self.interleaved = 0  # frames of other streams processed between two slices
        self.deferred = 0  # frames taken between slices that waited for the sliced one
        self.waiting_max = 0  # most frames waiting at once
        self.intake_paused = 0  # slice boundaries that took nothing: every buffer was taken

    def slice_plan(self, nbytes: int) -> tuple[int, int, int, int] | None:
        """``(header bytes, record bytes, count, stream)`` if the frame of ``nbytes`` in
        the buffer is to be sliced, else None."""
        if nbytes < self.min_bytes or nbytes > len(self.buffer):  # too small, or refused
            return None
        head = self.buffer[: s.HEADER_V2_SIZE]
        header = head[: s.HEADER_SIZE].view(s.HEADER)[0]
        version = int(header["version"])
        size = _RECORD_SIZE.get(int(header["kind"]))
        if int(header["magic"]) != s.MAGIC or size is None:
            return None
        if version == s.VERSION:
            hdr, session = s.HEADER_SIZE, 0
        elif version == s.VERSION_SESSION:
            hdr = s.HEADER_V2_SIZE
            session = int(head.view(s.HEADER_V2)[0]["session"])
            session = session - _U64 if session >= _U64 // 2 else session  # int64 bits
        else:
            return None
        count, stream = int(header["count"]), int(header["stream_id"])
        if count <= self.slice_records or nbytes != hdr + count * size:
            return None
        if not self.streams.in_order(stream, int(header["seq"]), session):
            return None
        return hdr, size, count, stream

    def run(
        self,
        plan: tuple[int, int, int, int],
        recv_ns: int,
        handle: Callable[..., None],
        clock: Callable[[], int],
    ) -> None:
        """Process the planned frame slice by slice through ``handle(nbytes, recv_ns,
        part)`` (``part``: the slice's index, 0 for the first). Frames taken meanwhile
        that must wait are kept for :meth:`next_waiting`."""
        hdr, size, count, stream = plan
        buf = self.buffer
        header = self._header
        header[:hdr] = buf[:hdr]
        c = self.slice_records
        self.frames_sliced += 1
        done = part = 0
        while done < count:
            n = min(c, count - done)
            if done:  # slice 0 is in place already
                src = hdr + done * size
                buf[hdr : hdr + n * size] = buf[src : src + n * size]
                buf[:hdr] = header[:hdr]
            self._count[0] = n
            self._seq[0] += done
            handle(hdr + n * size, recv_ns, part)
            self.slices += 1
            part += 1
            done += n
            if done < count:
                if self._free:
                    self._take_one(stream, hdr + done * size, handle, clock)
                else:
                    self.intake_paused += 1

    def process(
        self, nbytes: int, recv_ns: int, handle: Callable[..., None], clock: Callable[[], int]
    ) -> None:
        """Process a frame just received into the buffer through ``handle``: whole, or in
        slices when :meth:`slice_plan` says so; then every frame that waited meanwhile,
        oldest first, the same way."""
        while True:
            plan = self.slice_plan(nbytes) if nbytes >= self.min_bytes else None
            if plan is None:
                handle(nbytes, recv_ns)
            else:
                self.run(plan, recv_ns, handle, clock)
            waited = self.next_waiting()
            if waited is None:
                return
            nbytes, recv_ns = waited

    def next_waiting(self) -> tuple[int, int] | None:
        """Move the oldest waiting frame into the receive buffer and return ``(nbytes,
        recv_ns)``, for the caller to process as if just received; None if none waits."""
        if not self._waiting:
            return None
        slot, nbytes, at, _stream = self._waiting.popleft()
        self.buffer[:nbytes] = self._slots[slot][:nbytes]
        self._free.append(slot)
        return nbytes, at

    def _take_one(
        self, stream: int, free: int, handle: Callable[..., None], clock: Callable[[], int]
    ) -> None:
        """Take one frame off the socket, if any: process it now (a stream that is not
        sliced and has no frame waiting; fits in the first ``free`` bytes of the buffer)
        or keep it waiting for the sliced frame."""
        slot = self._free[-1]
        into = self._slots[slot]
        nbytes = self.receiver.receive_into(into, zmq.NOBLOCK)
        if nbytes == -1:
            return
        at = clock()
        if nbytes < 0 or nbytes > len(into):
            handle(nbytes, at)  # refused from its length alone: no buffer is read
            return
        other = -1 if nbytes < _STREAM_AT + 4 else int(self._slot_streams[slot][0])
        ordered = other >= 0 and (other == stream or any(w[3] == other for w in self._waiting))
        if not ordered and nbytes <= free:
            self.buffer[:nbytes] = into[:nbytes]
            handle(nbytes, at)
            self.interleaved += 1
            return
        self._free.pop()
        self._waiting.append((slot, nbytes, at, other))
        self.deferred += 1
        self.waiting_max = max(self.waiting_max, len(self._waiting))

    def stats(self) -> dict[str, int]:
        """Frames sliced, slices processed, frames interleaved and deferred, the most
        frames that waited at once, slice boundaries at which intake paused."""
        return {
            "slice_records": self.slice_records,
            "frames_sliced": self.frames_sliced,
            "slices": self.slices,
            "interleaved": self.interleaved,
            "deferred": self.deferred,
            "waiting_max": self.waiting_max,
            "intake_paused": self.intake_paused,
        }
