"""The typed view of the streaming state: what the frames did, read by name, and the
boundary itself (no module outside the kernels' two indexes their columns)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from tests.factories import make_quotes, make_trades
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu import streaming as k
from tickpath.kernels.cpu.streaming_view import (
    COUNTER_FIELDS,
    Counters,
    CounterView,
    StreamTable,
    SymbolView,
    counter_index,
)

REPO = Path(__file__).resolve().parents[2]


def test_view_agrees_with_the_result_frames(processor_factory):
    proc = processor_factory(n_symbols=8)
    view = SymbolView(proc.state.sym_i)
    symbols = np.arange(8)
    assert np.isnan(view.last_price(symbols)).all() and np.isnan(view.mid(symbols)).all()
    trades = make_trades(40, symbols=4, seed=2)
    quotes = make_quotes(30, symbols=3, seed=5)
    last = {}
    for i, frame in enumerate(
        [codec.encode_frame(s.KIND_TRADE, 1, 0, trades, send_ns=11)]
        + [codec.encode_frame(s.KIND_QUOTE, 2, 0, quotes, send_ns=22)]
    ):
        for analytic, r in proc.feed(frame, recv_ns=i):
            last[(analytic, int(r["symbol"]))] = r.copy()
    for (analytic, sym), r in last.items():
        tick = view.tick(sym, k.A_TRADE if analytic == "trade" else k.A_QUOTE)
        assert (tick.ts_ns, tick.seq, tick.send_ns, tick.stream) == (
            int(r["ts_ns"]), int(r["in_seq"]), int(r["in_send_ns"]), int(r["in_stream"]),
        )  # fmt: skip
        if analytic == "trade":
            assert tick.price == r["price"] / s.PRICE_SCALE == view.last_price(np.array([sym]))[0]
        else:
            mid = view.mid(np.array([sym]))[0]
            assert tick.price == (0.0 if np.isnan(r["mid"]) else r["mid"])
            assert (np.isnan(mid) and np.isnan(r["mid"])) or mid == r["mid"]
    assert view.newest_ts(np.arange(4), k.A_TRADE) == trades["ts_ns"].max()
    assert np.isnan(view.last_price(np.array([7])))[0]


def test_view_refuses_an_array_of_another_layout():
    with pytest.raises(ValueError, match="sym_i must have shape"):
        SymbolView(np.zeros((4, k.I_COLS + 1), np.int64))


def _quotes(n, symbol=1, bad_price=0):
    q = make_quotes(n, symbols=1, seed=n)
    q["symbol"] = symbol
    q["bid_price"][:bad_price] = -1  # refused: bad_price
    return q


def test_counters_read_by_name_what_the_frames_did(processor_factory):
    proc = processor_factory(n_symbols=4)
    view = CounterView(proc.state.counters)
    assert view.read() == Counters(*[0] * 14, {n: 0 for n in s.REJECT_NAMES},
                                   dict.fromkeys(k.ANALYTIC_NAMES, 0),
                                   dict.fromkeys(view.read().book, 0))  # fmt: skip
    frames = [
        codec.encode_frame(s.KIND_QUOTE, 0, 0, _quotes(3)),
        codec.encode_frame(s.KIND_QUOTE, 0, 3, _quotes(4, bad_price=1)),
        codec.encode_frame(s.KIND_QUOTE, 0, 3, _quotes(2)),  # duplicate (seq 3..4 seen)
        codec.encode_frame(s.KIND_TRADE, 1, 5, make_trades(2, symbols=2)),  # a join: any first seq
    ]
    for frame in frames:
        proc.feed(frame)
    proc.process(-2, 0)  # multipart, refused before the kernels
    oversize = len(proc.buffer) + 9
    proc.process(oversize, 0)
    c = view.read()
    assert (c.frames_received, c.frames_accepted) == (6, 3)
    assert (c.records_received, c.records_accepted) == (9, 8)
    assert c.bytes_received == sum(map(len, frames)) + oversize
    assert c.rejected["duplicate"] == c.rejected["multipart"] == c.rejected["oversize"] == 1
    assert c.rejected["bad_price"] == 1 and sum(c.rejected.values()) == 4
    assert (c.frames_rejected, c.records_rejected) == (3, 1)
    assert c.processed["quote"] == 6 and c.processed["trade"] == 2
    assert c.results_published > 0 and c.gaps == c.records_lost == c.sequence_resets == 0
    # one name per column, every column named; the flat names read the same values
    assert sorted(counter_index(name) for name in COUNTER_FIELDS) == list(range(k.N_COUNTERS))
    flat = {**c._asdict()}
    del flat["frames_rejected"], flat["records_rejected"]  # sums of counters, not counters
    for group in ("rejected", "processed", "book"):
        flat.update({f"{group}.{name}": value for name, value in flat.pop(group).items()})
    assert {name: view.value(name) for name in COUNTER_FIELDS} == flat
    names = ["processed.quote", "rejected.oversize", "frames_received"]
    read = view.reader(names)
    got = read()
    assert got.tolist() == [6, 1, 6]
    proc.process(-2, 0)
    assert got.tolist() == [6, 1, 6] and read().tolist() == [6, 1, 7]  # a copy, then live
    with pytest.raises(ValueError, match="no counter named 'frames'"):
        counter_index("frames")


def test_stream_table_rows_by_name(processor_factory):
    proc = processor_factory(n_symbols=4)
    table = StreamTable(proc.state.streams)
    assert table.active() == [] and len(table.rows()) == len(table)
    assert table.rows([0])[0].next_seq == -1
    top = (1 << 64) - 1  # a session id with the top bit set: u64, not a negative int64
    proc.feed(codec.encode_frame(s.KIND_QUOTE, 3, 10, _quotes(2), session=top), recv_ns=50)
    proc.feed(codec.encode_frame(s.KIND_QUOTE, 3, 15, _quotes(1), session=top), recv_ns=70)
    proc.feed(codec.encode_frame(s.KIND_QUOTE, 1, 0, _quotes(3)), recv_ns=60)
    proc.feed(codec.encode_end_of_session(s.KIND_QUOTE, 3, 16, top, 0), recv_ns=80)
    one, three = table.active()
    assert one == (1, 3, 1, 0, 0, 0, 0, 0, 0, 60, False)
    assert three.stream == 3 and three.next_seq == 16 and three.frames == 2
    assert (three.gaps, three.records_lost, three.first_seq) == (1, 3, 10)
    assert (three.session, three.prev_session, three.takeovers) == (top, 0, 0)
    assert three.last_ns == 70 and three.ended
    before = proc.state.streams.copy()
    table.clear_arrival_times()
    assert [row.last_ns for row in table.rows()] == [0] * len(table)
    assert [r._replace(last_ns=0) for r in StreamTable(before).rows()] == table.rows()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: CounterView(np.zeros(k.N_COUNTERS - 1, np.int64)), "counters must have shape"),
        (lambda: StreamTable(np.zeros((4, k.S_COLS - 1), np.int64)), "streams must have shape"),
    ],
)
def test_views_refuse_arrays_of_another_layout(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# The kernels' column constants: counters, streams, per-symbol int and float columns.
_COLUMN = re.compile(r"^[CSIF]_[A-Z0-9_]+$")
_STREAMING = "tickpath.kernels.cpu.streaming"
_LAYOUT_OWNERS = {
    "kernels/cpu/streaming.py",  # defines the layout
    "kernels/cpu/streaming_view.py",  # the one view of it
    "tests/kernels/test_streaming_view.py",  # checks the view against the layout
}


def _column_uses(path: Path) -> list[str]:
    """``line: name`` of every streaming column constant the module at ``path`` uses."""
    tree = ast.parse(path.read_text(), str(path))
    aliases = set()  # names bound to the streaming module
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update(a.asname or a.name for a in node.names if a.name == _STREAMING)
        elif isinstance(node, ast.ImportFrom) and node.module == "tickpath.kernels.cpu":
            aliases.update(a.asname or a.name for a in node.names if a.name == "streaming")
        elif isinstance(node, ast.ImportFrom) and node.module == _STREAMING:
            found += [f"{node.lineno}: {a.name}" for a in node.names if _COLUMN.match(a.name)]
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _COLUMN.match(node.attr)
            and ast.unparse(node.value) in aliases
        ):
            found.append(f"{node.lineno}: {node.attr}")
    return found


def test_only_the_view_knows_the_column_layout():
    """No module but the kernels' and the view's indexes the state by column constant."""
    offenders = {}
    for folder in ("engine", "kernels", "bench", "tests"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel not in _LAYOUT_OWNERS and (uses := _column_uses(path)):
                offenders[rel] = uses
    assert offenders == {}, f"use tickpath.kernels.cpu.streaming_view instead: {offenders}"


def test_the_boundary_check_sees_each_way_of_naming_a_column(tmp_path):
    sources = {
        "alias": "from tickpath.kernels.cpu import streaming as k\nx = k.C_FRAMES\n",
        "plain": "from tickpath.kernels.cpu import streaming\nx = streaming.S_NEXT\n",
        "dotted": f"import {_STREAMING}\nx = {_STREAMING}.I_BID_PX\n",
        "name": "from tickpath.kernels.cpu.streaming import F_EMA\n",
        "api": "from tickpath.kernels.cpu import streaming as k\nx = k.A_QUOTE, k.reset_state\n",
    }
    found = {}
    for name, source in sources.items():
        (path := tmp_path / f"{name}.py").write_text(source)
        found[name] = _column_uses(path)
    assert found == {
        "alias": ["2: C_FRAMES"],
        "plain": ["2: S_NEXT"],
        "dotted": ["2: I_BID_PX"],
        "name": ["1: F_EMA"],
        "api": [],  # analytic indices and functions are the kernels' API
    }
