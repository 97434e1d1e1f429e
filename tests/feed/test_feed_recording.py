import numpy as np
import pytest

from tickpath.engine.feed.recording import RecordingError, RecordingWriter, iter_frames, scan
from tickpath.engine.feed.synthetic import SyntheticMarket
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s


def write_sample(path, n_frames=40, batch=32, stream_id=3, first_seq=100):
    market = SyntheticMarket(3, seed=4)
    frames = []
    seq = first_seq
    with RecordingWriter(path) as writer:
        for _ in range(n_frames):
            kind, records = market.next_batch(batch)
            writer.write(kind, stream_id, seq, records, send_ns=seq)
            frames.append((kind, seq, records))
            seq += len(records)
    return frames


def test_round_trip_is_exact_and_zero_copy(tmp_path):
    path = tmp_path / "a.tkp"
    written = write_sample(path)
    read = list(iter_frames(path))
    assert len(read) == len(written)
    offset = 0
    for item, (kind, seq, records) in zip(read, written):
        assert item.offset == offset
        assert int(item.header["kind"]) == kind
        assert int(item.header["seq"]) == seq
        assert int(item.header["stream_id"]) == 3
        assert item.records.tobytes() == records.tobytes()
        assert not item.records.flags.owndata  # a view into the map
        offset += len(item.frame)
    assert offset == path.stat().st_size
    # the file is the wire frames concatenated, nothing else
    blob = b"".join(codec.encode_frame(k, 3, q, r, q) for k, q, r in written)
    assert path.read_bytes() == blob
    summary = scan(path)
    assert summary.frames == 40
    assert sum(summary.records_by_kind.values()) == 40 * 32
    assert summary.first_ts_ns == min(int(r["ts_ns"].min()) for _, _, r in written)


def test_empty_file_is_an_empty_recording(tmp_path):
    path = tmp_path / "empty.tkp"
    path.write_bytes(b"")
    assert list(iter_frames(path)) == []


def frame_offsets(path):
    return [f.offset for f in iter_frames(path)]


def test_truncated_last_frame_reports_its_offset(tmp_path):
    path = tmp_path / "t.tkp"
    write_sample(path, n_frames=5)
    offsets = frame_offsets(path)
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.raises(RecordingError) as err:
        list(iter_frames(path))
    assert err.value.offset == offsets[-1]
    assert err.value.reason == s.REJECT_BAD_LENGTH
    assert f"offset {offsets[-1]}" in str(err.value)


def test_trailing_partial_header(tmp_path):
    path = tmp_path / "t.tkp"
    write_sample(path, n_frames=2)
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"\x01" * 10)
    with pytest.raises(RecordingError) as err:
        list(iter_frames(path))
    assert err.value.offset == size
    assert err.value.reason == s.REJECT_SHORT


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("magic", 0xDEADBEEF, s.REJECT_BAD_MAGIC),
        ("version", 9, s.REJECT_BAD_VERSION),
        ("kind", s.KIND_RESULT_BAR, s.REJECT_BAD_KIND),
        ("kind", 77, s.REJECT_BAD_KIND),
        ("count", 0, s.REJECT_BAD_COUNT),
    ],
)
def test_corrupt_header_of_third_frame(tmp_path, field, value, reason):
    path = tmp_path / "c.tkp"
    write_sample(path, n_frames=6)
    offsets = frame_offsets(path)
    data = bytearray(path.read_bytes())
    header = np.frombuffer(data, s.HEADER, count=1, offset=offsets[2]).copy()
    header[field] = value
    data[offsets[2] : offsets[2] + s.HEADER_SIZE] = header.tobytes()
    path.write_bytes(bytes(data))
    frames = iter_frames(path)
    assert next(frames).offset == 0
    next(frames)
    with pytest.raises(RecordingError) as err:
        next(frames)
    assert err.value.offset == offsets[2]
    assert err.value.reason == reason
    assert isinstance(err.value, codec.FrameError)


def test_count_that_overruns_the_file(tmp_path):
    path = tmp_path / "c.tkp"
    write_sample(path, n_frames=3)
    offsets = frame_offsets(path)
    data = bytearray(path.read_bytes())
    header = np.frombuffer(data, s.HEADER, count=1, offset=offsets[1]).copy()
    header["count"] = 10_000
    data[offsets[1] : offsets[1] + s.HEADER_SIZE] = header.tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(RecordingError) as err:
        list(iter_frames(path))
    assert err.value.offset == offsets[1]
    assert err.value.reason == s.REJECT_BAD_LENGTH


def test_sequence_gap_and_duplicate_are_detected(tmp_path):
    market = SyntheticMarket(2, seed=1)
    a = market.next_batch(10)
    b = market.next_batch(10)
    gap = tmp_path / "gap.tkp"
    with RecordingWriter(gap) as w:
        w.write(a[0], 1, 0, a[1])
        w.write(b[0], 2, 500, b[1])  # another stream: independent
        w.write(b[0], 1, 11, b[1])  # stream 1 expected 10
    with pytest.raises(RecordingError) as err:
        list(iter_frames(gap))
    assert err.value.reason == s.REJECT_OUT_OF_ORDER
    assert err.value.offset == 2 * s.HEADER_SIZE + a[1].nbytes + b[1].nbytes
    assert len(list(iter_frames(gap, check_sequence=False))) == 3
    dup = tmp_path / "dup.tkp"
    with RecordingWriter(dup) as w:
        w.write(a[0], 1, 0, a[1])
        w.write(a[0], 1, 0, a[1])
    with pytest.raises(RecordingError) as err:
        list(iter_frames(dup))
    assert err.value.reason == s.REJECT_DUPLICATE


def test_writer_refuses_a_malformed_frame(tmp_path):
    market = SyntheticMarket(2, seed=1)
    kind, records = market.next_batch(4)
    frame = codec.encode_frame(kind, 1, 0, records)
    with RecordingWriter(tmp_path / "w.tkp") as w, pytest.raises(codec.FrameError):
        w.write_frame(frame[:-1])
    assert (tmp_path / "w.tkp").stat().st_size == 0
