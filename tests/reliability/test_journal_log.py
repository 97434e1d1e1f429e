"""The journal on disk: entries, segments, checksums, torn and corrupt tails, sync policies."""

from __future__ import annotations

import os
import struct
import time
import tracemalloc

import numpy as np
import pytest

from tests.reliability.helpers import market_frames
from tests.waiting import wait_until
from tickpath.engine.journal import format as fmt
from tickpath.engine.journal.config import JournalConfig
from tickpath.engine.journal.reader import (
    JournalCorruptError,
    iter_entries,
    list_segments,
    open_journal,
    scan_segment,
)
from tickpath.engine.journal.writer import JournalWriter
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s

MAX_STREAMS = 8
MAX_RECORDS = 1600


def _writer(tmp_path, **config):
    return JournalWriter(
        tmp_path,
        JournalConfig(dir=str(tmp_path), **config),
        max_streams=MAX_STREAMS,
        max_records=MAX_RECORDS,
    )


def _append_all(writer, items):
    for item in items:
        if isinstance(item, int):
            writer.append_drop(item)
        else:
            writer.append_frame(memoryview(item))


def test_entries_round_trip_with_types_indices_and_times(tmp_path):
    frames = market_frames(50)
    items = [frames[0], b"junk", frames[1], -2, frames[2], 1 << 20] + frames[3:]
    t0 = time.time_ns()
    w = _writer(tmp_path, sync="os")
    _append_all(w, items)
    w.close()
    entries = [(e.index, e.type, e.recv_ns, bytes(e.payload)) for e in iter_entries(tmp_path)]
    assert [e[0] for e in entries] == list(range(len(items)))
    assert all(t0 <= e[2] <= time.time_ns() for e in entries)
    assert [e[2] for e in entries] == sorted(e[2] for e in entries)
    for (_, etype, _, payload), item in zip(entries, items):
        if isinstance(item, int):
            assert etype == fmt.ENTRY_DROP
            assert struct.unpack("<q", payload)[0] == item
        elif item == b"junk":
            assert etype == fmt.ENTRY_REJECT
            assert payload == struct.pack("<I", 4) + b"junk"  # length + the bytes there were
        else:
            assert etype == fmt.ENTRY_FRAME and payload == item
    assert w.frames == len(frames) and w.rejects == 1 and w.drops == 2


HEADER_CASES = {
    "valid": (lambda h: h, fmt.ENTRY_FRAME),
    "bad_magic": (lambda h: h.__setitem__("magic", 1), fmt.ENTRY_REJECT),
    "bad_version": (lambda h: h.__setitem__("version", 2), fmt.ENTRY_REJECT),
    "result_kind": (lambda h: h.__setitem__("kind", s.KIND_RESULT_TRADE), fmt.ENTRY_REJECT),
    "unknown_kind": (lambda h: h.__setitem__("kind", 9), fmt.ENTRY_REJECT),
    "zero_count": (lambda h: h.__setitem__("count", 0), fmt.ENTRY_REJECT),
    "count_mismatch": (lambda h: h.__setitem__("count", int(h["count"]) + 1), fmt.ENTRY_REJECT),
    "unknown_stream": (lambda h: h.__setitem__("stream_id", MAX_STREAMS), fmt.ENTRY_REJECT),
    "last_stream": (lambda h: h.__setitem__("stream_id", MAX_STREAMS - 1), fmt.ENTRY_FRAME),
    "any_seq": (lambda h: h.__setitem__("seq", 2**63 + 5), fmt.ENTRY_FRAME),
}


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_frame_or_reject_follows_the_kernels_header_rules(tmp_path, case):
    mutate, expected = HEADER_CASES[case]
    frame = bytearray(market_frames(1)[0])
    header = np.frombuffer(frame, s.HEADER, count=1)
    mutate(header[0])
    w = _writer(tmp_path, sync="os")
    w.append_frame(memoryview(frame))
    w.close()
    (entry,) = list(iter_entries(tmp_path))
    assert entry.type == expected
    if expected == fmt.ENTRY_REJECT:
        # the first 40 bytes: a version 2 header, whose session the kernels may read
        assert bytes(entry.payload) == struct.pack("<I", len(frame)) + bytes(frame[:40])


@pytest.mark.parametrize(
    "session, expected", [(7, fmt.ENTRY_FRAME), (2**64 - 1, fmt.ENTRY_FRAME), (0, None)]
)
def test_version_2_frames_are_journaled_whole_unless_their_session_is_0(
    tmp_path, session, expected
):
    v1 = market_frames(1)[0]
    header = np.frombuffer(v1, s.HEADER, count=1)[0]
    frame = bytearray(v1[:32] + struct.pack("<Q", session) + v1[32:])
    frame[4:6] = struct.pack("<H", s.VERSION_SESSION)
    assert int(header["count"]) > 0
    w = _writer(tmp_path, sync="os")
    w.append_frame(memoryview(frame), 12345)
    w.close()
    (entry,) = list(iter_entries(tmp_path))
    assert entry.recv_ns == 12345  # the stamp the engine gave the kernels
    if expected == fmt.ENTRY_FRAME:
        assert entry.type == fmt.ENTRY_FRAME and bytes(entry.payload) == bytes(frame)
    else:  # bad_session: a REJECT that keeps the whole 40-byte header (session included)
        assert entry.type == fmt.ENTRY_REJECT
        assert bytes(entry.payload) == struct.pack("<I", len(frame)) + bytes(frame[:40])


def test_segments_roll_and_iteration_crosses_them_from_any_start(tmp_path):
    frames = market_frames(3000, max_batch=30)
    w = _writer(tmp_path, sync="os", segment_bytes=1 << 16)
    _append_all(w, frames)
    w.close()
    segments = list_segments(tmp_path)
    assert len(segments) > 5
    assert [seg.first_index for seg in segments] == sorted({seg.first_index for seg in segments})
    for seg in segments:
        assert seg.path.stat().st_size <= (1 << 16)
        assert scan_segment(seg.path).problem is None
    for start, stop in ((0, None), (1234, 1300), (segments[3].first_index, None), (2999, None)):
        got = [e.index for e in iter_entries(tmp_path, start, stop)]
        assert got == list(range(start, stop if stop is not None else 3000))
    assert bytes(next(iter_entries(tmp_path, 1234)).payload) == frames[1234]


def test_a_frame_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path):
    trades = np.zeros(1700, s.TRADE)
    trades["price"] = trades["size"] = 1
    big = codec.encode_frame(s.KIND_TRADE, 1, 0, trades)  # over the 64 KiB segment limit
    w = JournalWriter(
        tmp_path,
        JournalConfig(dir=str(tmp_path), sync="os", segment_bytes=1 << 16),
        max_streams=MAX_STREAMS,
        max_records=4000,
    )
    _append_all(w, [market_frames(1)[0], big, market_frames(1)[0]])
    w.close()
    assert len(list_segments(tmp_path)) == 3
    assert [bytes(e.payload) == big for e in iter_entries(tmp_path)] == [False, True, False]


@pytest.mark.parametrize("cut", [1, 5, 31, 32, 33, 100, "all_but_one"])
def test_torn_tail_is_cut_at_the_last_whole_entry_and_reported(tmp_path, cut):
    frames = market_frames(20)
    w = _writer(tmp_path, sync="os")
    _append_all(w, frames)
    w.close()
    (seg,) = list_segments(tmp_path)
    size = seg.path.stat().st_size
    last_len = fmt.ENTRY_SIZE + len(frames[-1])
    keep = size - last_len + (last_len - 1 if cut == "all_but_one" else min(cut, last_len - 1))
    os.truncate(seg.path, keep)
    opened = open_journal(tmp_path)
    assert opened.next_index == 19
    (repair,) = opened.repairs
    assert repair.bytes_lost == keep - (size - last_len)
    assert repair.first_lost_index == 19 and repair.offset == size - last_len
    if keep - (size - last_len) >= 12:  # the entry header's length field survived
        assert repair.announced_length == len(frames[-1])
    assert seg.path.stat().st_size == size - last_len
    # appending resumes at the cut with the next index; the journal reads whole again
    w = _writer(tmp_path, sync="os")
    w.append_frame(memoryview(frames[-1]))
    w.close()
    assert [bytes(e.payload) for e in iter_entries(tmp_path)] == frames


def test_garbage_and_zeroed_tail_are_cut(tmp_path):
    frames = market_frames(10)
    w = _writer(tmp_path, sync="os")
    _append_all(w, frames)
    w.close()
    (seg,) = list_segments(tmp_path)
    size = seg.path.stat().st_size
    with open(seg.path, "ab") as f:
        f.write(bytes(4096))  # a power cut can leave zero-filled blocks past the data
    opened = open_journal(tmp_path)
    assert opened.next_index == 10 and opened.repairs[0].bytes_lost == 4096
    assert seg.path.stat().st_size == size


def test_torn_new_segment_header_removes_the_segment(tmp_path):
    w = _writer(tmp_path, sync="os", segment_bytes=1 << 16)
    _append_all(w, market_frames(2000))
    w.close()
    segments = list_segments(tmp_path)
    end = sum(1 for _ in iter_entries(tmp_path))
    torn = tmp_path / fmt.segment_name(end)
    torn.write_bytes(fmt.encode_segment_header(end, 0)[:20])
    opened = open_journal(tmp_path)
    assert opened.next_index == end and not torn.exists()
    assert opened.repairs[0].removed_segment and opened.repairs[0].first_lost_index == end
    assert list_segments(tmp_path) == segments


def test_flipped_bit_before_valid_entries_is_corruption_not_a_torn_tail(tmp_path):
    frames = market_frames(30)
    w = _writer(tmp_path, sync="os")
    _append_all(w, frames)
    w.close()
    (seg,) = list_segments(tmp_path)
    data = bytearray(seg.path.read_bytes())
    offset = fmt.SEGMENT_HEADER_SIZE + sum(fmt.ENTRY_SIZE + len(f) for f in frames[:10]) + 40
    data[offset] ^= 0x01
    seg.path.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptError, match="valid entries follow"):
        open_journal(tmp_path)
    with pytest.raises(JournalCorruptError, match="checksum"):
        list(iter_entries(tmp_path))
    assert len(list(iter_entries(tmp_path, 0, 10))) == 10  # readable up to the damage
    opened = open_journal(tmp_path, truncate_corrupt=True)
    assert opened.next_index == 10 and opened.repairs[0].reason == "checksum mismatch"


def test_damage_in_an_older_segment_or_a_missing_segment_is_an_error(tmp_path):
    w = _writer(tmp_path, sync="os", segment_bytes=1 << 16)
    _append_all(w, market_frames(2000))
    w.close()
    segments = list_segments(tmp_path)
    data = bytearray(segments[1].path.read_bytes())
    data[200] ^= 0x40
    segments[1].path.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptError):
        list(iter_entries(tmp_path))
    data[200] ^= 0x40
    segments[1].path.write_bytes(bytes(data))
    assert sum(1 for _ in iter_entries(tmp_path)) == 2000
    segments[2].path.unlink()
    with pytest.raises(JournalCorruptError, match="missing"):
        list(iter_entries(tmp_path))


def test_sync_policies_sync_when_they_say(tmp_path):
    frames = market_frames(40)
    every = _writer(tmp_path / "frame", sync="frame")
    _append_all(every, frames)
    assert every.syncs == 40
    every.close()
    interval = _writer(tmp_path / "interval", sync="interval", sync_interval_ms=20)
    # count the background thread's rounds (the real method runs; this only counts)
    rounds = {"done": 0}
    sync_if_dirty = interval._sync_if_dirty

    def counted():
        sync_if_dirty()
        rounds["done"] += 1

    interval._sync_if_dirty = counted
    _append_all(interval, frames)
    # a round that began after the last append has synced everything written
    begun = rounds["done"]
    wait_until(lambda: rounds["done"] >= begun + 2, what="two sync rounds")
    assert 1 <= interval.syncs < 40  # by the background thread, not per frame
    synced = interval.syncs
    later = rounds["done"]
    wait_until(lambda: rounds["done"] >= later + 3, what="three more sync rounds")
    assert interval.syncs == synced  # nothing new written: nothing to sync
    interval.close()
    lazy = _writer(tmp_path / "os", sync="os")
    _append_all(lazy, frames)
    assert lazy.syncs == 0
    lazy.close()
    for name in ("frame", "interval", "os"):
        assert [bytes(e.payload) for e in iter_entries(tmp_path / name)] == frames


def test_the_append_path_keeps_no_memory_per_frame(tmp_path):
    frames = [memoryview(f) for f in market_frames(200)]
    w = _writer(tmp_path, sync="os")
    for f in frames:  # warm every code path once
        w.append_frame(f)
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    for _ in range(50):
        for f in frames:
            w.append_frame(f)
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    w.close()
    assert after - before < 4096  # 10,000 frames written


def test_an_end_of_session_is_journaled_as_a_frame(tmp_path):
    from tickpath.engine.wire import codec

    frame = codec.encode_end_of_session(s.KIND_QUOTE, 1, 500, 7, 0)
    w = _writer(tmp_path, sync="os")
    w.append_frame(memoryview(frame), 1)
    w.close()
    (entry,) = list(iter_entries(tmp_path))
    assert entry.type == fmt.ENTRY_FRAME and bytes(entry.payload) == frame
