"""The wire codec: round trips, strictness, and the README's wire tables against the schema."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.factories import make_quotes, make_trades
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s

README = Path(__file__).resolve().parents[2] / "README.md"


def test_round_trip_is_zero_copy():
    trades = make_trades(5)
    frame = codec.encode_frame(s.KIND_TRADE, 3, 42, trades, send_ns=7)
    header, records = codec.decode_frame(frame)
    assert (header["kind"], header["stream_id"], header["seq"], header["count"]) == (1, 3, 42, 5)
    np.testing.assert_array_equal(records, trades)
    assert not records.flags.owndata  # a view of the received bytes


def test_encode_into_preallocated_buffer():
    quotes = make_quotes(3)
    out = np.zeros(1024, np.uint8)
    n = codec.encode_frame_into(out, s.KIND_QUOTE, 1, 9, quotes, 5)
    assert bytes(out[:n]) == codec.encode_frame(s.KIND_QUOTE, 1, 9, quotes, 5)


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda b: b[:10], s.REJECT_SHORT),
        (lambda b: b"XXXX" + b[4:], s.REJECT_BAD_MAGIC),
        (lambda b: b[:4] + struct.pack("<H", 3) + b[6:], s.REJECT_BAD_VERSION),
        (lambda b: b[:6] + struct.pack("<H", 99) + b[8:], s.REJECT_BAD_KIND),
        (lambda b: b[:12] + struct.pack("<I", 0) + b[16:], s.REJECT_BAD_COUNT),
        (lambda b: b[:-1], s.REJECT_BAD_LENGTH),
        (lambda b: b + b"\0" * 40, s.REJECT_BAD_LENGTH),
    ],
)
def test_decode_is_strict(mutate, reason):
    frame = codec.encode_frame(s.KIND_TRADE, 0, 0, make_trades(2))
    with pytest.raises(codec.FrameError) as info:
        codec.decode_frame(mutate(frame))
    assert info.value.reason == reason
    assert s.REJECT_NAMES[reason] in str(info.value)


def test_version_2_round_trip_carries_the_session():
    trades = make_trades(3)
    frame = codec.encode_frame(s.KIND_TRADE, 2, 10, trades, send_ns=5, session=2**64 - 1)
    assert len(frame) == s.HEADER_V2_SIZE + 3 * s.TRADE_SIZE
    header, records = codec.decode_frame(frame, inputs_only=True)
    assert int(header["version"]) == s.VERSION_SESSION
    assert codec.session_of(header) == 2**64 - 1
    np.testing.assert_array_equal(records, trades)
    out = np.zeros(1024, np.uint8)
    n = codec.encode_frame_into(out, s.KIND_TRADE, 2, 10, trades, 5, 2**64 - 1)
    assert bytes(out[:n]) == frame
    assert codec.session_of(codec.decode_header(codec.encode_frame(1, 2, 10, trades))) is None


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda b: b[:32] + struct.pack("<Q", 0) + b[40:], s.REJECT_BAD_SESSION),
        (lambda b: b[:36], s.REJECT_SHORT),
        (lambda b: b[:6] + struct.pack("<H", s.KIND_RESULT_TRADE) + b[8:], s.REJECT_BAD_KIND),
        (lambda b: b[:4] + struct.pack("<H", 1) + b[6:], s.REJECT_BAD_LENGTH),  # 8 bytes too many
    ],
)
def test_version_2_decode_is_strict(mutate, reason):
    frame = codec.encode_frame(s.KIND_TRADE, 0, 0, make_trades(2), session=9)
    with pytest.raises(codec.FrameError) as info:
        codec.decode_frame(mutate(frame))
    assert info.value.reason == reason


def test_encode_refuses_wrong_dtype():
    with pytest.raises(TypeError):
        codec.encode_frame(s.KIND_TRADE, 0, 0, make_quotes(1))


def test_struct_formats_in_readme_match_schema():
    text = README.read_text()
    formats = dict(re.findall(r"(header|trade|quote|order) `(<[A-Za-z]+)`", text))
    for name, dtype in (("header", s.HEADER), ("trade", s.TRADE), ("quote", s.QUOTE),
                        ("order", s.ORDER)):  # fmt: skip
        assert struct.calcsize(formats[name]) == dtype.itemsize
        record = np.zeros(1, dtype)
        for i, field in enumerate(dtype.names):
            record[field] = i + 1
        assert struct.unpack(formats[name], record.tobytes()) == tuple(
            range(1, len(dtype.names) + 1)
        )


_TYPES = {"u8": "u1", "i8": "i1", "u16": "<u2", "u32": "<u4", "u64": "<u8", "i64": "<i8"}


@pytest.mark.parametrize("title, dtype", [("HEADER", s.HEADER), ("HEADER_V2", s.HEADER_V2),
                                          ("TRADE", s.TRADE), ("QUOTE", s.QUOTE),
                                          ("ORDER", s.ORDER)])  # fmt: skip
def test_readme_wire_tables_match_schema(title, dtype):
    text = README.read_text()
    section = text.split(f"#### {title} ", 1)[1].split("####", 1)[0].split("\n### ", 1)[0]
    assert f"{dtype.itemsize} bytes" in section.splitlines()[0]
    rows = re.findall(r"^\| (\d+) \| (\w+) \| (\w+) \|", section, re.M)
    documented = {name: (int(off), np.dtype(_TYPES[typ])) for off, name, typ in rows}
    actual = {name: (off, dt) for name, (dt, off, *_) in dtype.fields.items()}
    assert documented == actual


def test_end_of_session_is_a_version_2_header_alone():
    frame = codec.encode_end_of_session(s.KIND_TRADE, 4, 99, 12, 5)
    assert len(frame) == s.HEADER_V2_SIZE
    header, records = codec.decode_frame(frame, inputs_only=True)
    assert int(header["count"]) == 0 and len(records) == 0 and codec.session_of(header) == 12
    v1 = frame[:4] + struct.pack("<H", s.VERSION) + frame[6:32]  # count 0 stays bad in v1
    with pytest.raises(codec.FrameError) as info:
        codec.decode_frame(v1)
    assert info.value.reason == s.REJECT_BAD_COUNT
