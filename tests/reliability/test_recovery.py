"""Recovery and replay: snapshot + journal tail rebuild the state of an engine never stopped."""

from __future__ import annotations

import json
import logging
import os
import threading

import msgspec
import numpy as np
import pytest
import zmq

from tests.reliability.helpers import (
    SMALL,
    accounting_holds,
    drive,
    market_frames,
    processor,
    small_config,
    with_bad_input,
)
from tests.waiting import DEADLINE_S
from tickpath.engine.cli import main
from tickpath.engine.journal import format as fmt
from tickpath.engine.journal.config import JournalConfig
from tickpath.engine.journal.extension import JournalExtension
from tickpath.engine.journal.reader import list_segments
from tickpath.engine.journal.recovery import JournalMismatchError
from tickpath.engine.journal.snapshot import differing_arrays, list_snapshots, state_digest
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu.streaming_view import CounterView

CONFIG = small_config()


@pytest.fixture(scope="module")
def items():
    """A stream of valid frames with every kind of refused input mixed in."""
    return with_bad_input(market_frames(1200, seed=5), seed=6)


@pytest.fixture(scope="module")
def reference(items):
    """The state of an engine that processed every item without ever stopping."""
    proc = processor(CONFIG)
    drive(proc, items)
    return proc


def _journal(path, **config):
    return JournalExtension(
        JournalConfig(dir=str(path), snapshot_background=False, sync="os", **config)
    )


def _recover(path):
    proc = processor(CONFIG)
    ext = _journal(path)
    report = ext.open(CONFIG, proc)
    return proc, ext, report


def test_journal_alone_rebuilds_the_identical_state(tmp_path, items, reference):
    live = processor(CONFIG)
    ext = _journal(tmp_path)
    ext.open(CONFIG, live)
    drive(live, items, ext)
    # no close: the process "dies" here (everything written is in the OS)
    recovered, ext2, report = _recover(tmp_path)
    assert report.snapshot is None and report.replayed_entries == len(items)
    assert report.replayed_drops == sum(isinstance(i, int) for i in items) > 0
    assert report.replayed_rejects > 0
    assert differing_arrays(recovered.state, live.state) == []
    assert differing_arrays(recovered.state, reference.state) == []
    stats = recovered.stats(0)
    assert accounting_holds(stats) and stats["frames_rejected"] > 0
    assert stats["rejected"]["multipart"] > 0 and stats["rejected"]["oversize"] > 0
    ext2.close()


@pytest.mark.parametrize("crash_at", [0, 1, 299, 300, 301, 777])
def test_snapshot_plus_tail_rebuilds_the_identical_state(tmp_path, items, crash_at):
    live = processor(CONFIG)
    ext = _journal(tmp_path)
    ext.open(CONFIG, live)
    last_snapshot = 0
    for start in range(0, crash_at, 300):
        drive(live, items[start : min(start + 300, crash_at)], ext)
        if start + 300 <= crash_at:
            ext.snapshot()
            last_snapshot = start + 300
    recovered, ext2, report = _recover(tmp_path)
    assert report.snapshot_index == last_snapshot
    assert report.replayed_entries == crash_at - last_snapshot
    assert report.next_index == crash_at
    assert differing_arrays(recovered.state, live.state) == []
    # and the engine carries on: the rest of the stream gives the uninterrupted result
    drive(recovered, items[crash_at:], ext2)
    expected = processor(CONFIG)
    drive(expected, items)
    assert differing_arrays(recovered.state, expected.state) == []
    ext2.close()


def test_a_frame_torn_mid_write_was_never_processed_and_is_resent(tmp_path, items, reference):
    live = processor(CONFIG)
    ext = _journal(tmp_path)
    ext.open(CONFIG, live)
    drive(live, items[:500], ext)
    ext.writer.sync()
    (seg,) = list_segments(tmp_path)
    size = seg.path.stat().st_size
    # the crash hit while the next frame's entry was being written: half of it is there
    frame = items[500]
    assert isinstance(frame, bytes)
    header = fmt.ENTRY.pack(fmt.ENTRY_MAGIC, fmt.ENTRY_FRAME, 0, len(frame), 500, 0, 0)
    with open(seg.path, "ab") as f:
        f.write(header + frame[: len(frame) // 2])
    recovered, ext2, report = _recover(tmp_path)
    assert report.next_index == 500 and len(report.repairs) == 1
    assert "500" in report.repairs[0]
    assert seg.path.stat().st_size == size
    drive(recovered, items[500:], ext2)
    assert differing_arrays(recovered.state, reference.state) == []
    ext2.close()


def test_repeated_crashes_at_random_points(tmp_path, items, reference):
    rng = np.random.default_rng(11)
    proc = processor(CONFIG)
    ext = _journal(tmp_path)
    ext.open(CONFIG, proc)
    done = 0
    for _ in range(6):
        stop = min(len(items), done + int(rng.integers(1, 400)))
        drive(proc, items[done:stop], ext)
        if rng.random() < 0.5:
            ext.snapshot()
        proc, ext, report = _recover(tmp_path)  # crash, restart
        done = report.next_index
        assert done == stop
    drive(proc, items[done:], ext)
    ext.close()
    assert differing_arrays(proc.state, reference.state) == []
    final, ext3, report = _recover(tmp_path)  # the clean shutdown left a final snapshot
    assert report.snapshot is not None and report.replayed_entries == 0
    assert differing_arrays(final.state, reference.state) == []
    ext3.close()


def test_a_snapshot_beyond_the_journal_is_skipped(tmp_path, items):
    live = processor(CONFIG)
    ext = _journal(tmp_path)
    ext.open(CONFIG, live)
    drive(live, items[:200], ext)
    ext.snapshot()
    drive(live, items[200:400], ext)
    ext.snapshot()
    ext.writer.close()
    # the journal lost its end (e.g. a disk restored from a backup): 300 entries left
    (seg,) = list_segments(tmp_path)
    next_seq: dict[int, int] = {}
    keep = fmt.SEGMENT_HEADER_SIZE + sum(
        fmt.ENTRY_SIZE + _payload_len(i, next_seq) for i in items[:300]
    )
    os.truncate(seg.path, keep)
    recovered, ext2, report = _recover(tmp_path)
    assert report.snapshot_index == 200 and report.next_index == 300
    assert any("covers 400" in problem for problem in report.skipped_snapshots)
    expected = processor(CONFIG)
    drive(expected, items[:300])
    assert differing_arrays(recovered.state, expected.state) == []
    ext2.close()


def _payload_len(item, next_seq):
    """Bytes the journal keeps for an item (an independent reading of the format).

    ``next_seq``: {stream: next sequence}, updated; a frame behind it (a duplicate or
    out of order, not a restart at 0) is refused whole and kept as a marker only.
    """
    if isinstance(item, int) or len(item) > CONFIG.ingest.max_frame_bytes:
        return fmt.DROP_PAYLOAD.size
    try:
        header, _ = codec.decode_frame(item, inputs_only=True)
        stream = int(header["stream_id"])
        ok = stream < CONFIG.ingest.max_streams
    except codec.FrameError:
        ok = False
    if ok:
        seq, count = int(header["seq"]), int(header["count"])
        expected = next_seq.get(stream, -1)
        if 0 < seq < expected:
            ok = False
        else:
            next_seq[stream] = seq + count
    return len(item) if ok else fmt.REJECT_PREFIX.size + min(len(item), s.HEADER_V2_SIZE)


def test_a_journal_of_other_parameters_is_refused(tmp_path, items):
    live = processor(CONFIG)
    ext = _journal(tmp_path)
    ext.open(CONFIG, live)
    drive(live, items[:10], ext)
    ext.close()
    other_config = small_config(analytics__vol_window=32)
    with pytest.raises(JournalMismatchError, match="vol_window"):
        _journal(tmp_path).open(other_config, processor(other_config))


def _replay_json(capsys, *args):
    assert main(["replay", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_replay_command_is_deterministic(tmp_path, items, reference, capsys):
    live = processor(CONFIG)
    ext = _journal(tmp_path)
    ext.open(CONFIG, live)
    drive(live, items[:600], ext)
    ext.snapshot()
    drive(live, items[600:], ext)
    ext.writer.close()
    full = _replay_json(capsys, "--journal", str(tmp_path))
    assert full["state_sha256"] == state_digest(reference.state)
    assert full["entries"] == len(items) and full["to"] == len(items)
    assert full["stats"]["frames_received"] == reference.stats(0)["frames_received"]
    again = _replay_json(capsys, "--journal", str(tmp_path), "--snapshot", "--from", "700")
    assert again["state_sha256"] == full["state_sha256"]
    assert again["rebuilt_from"] == {
        "snapshot": list_snapshots(tmp_path / "snapshots")[0].path.name,
        "entry": 600,
        "entries_applied": 100,
    }
    part = _replay_json(capsys, "--journal", str(tmp_path), "--from", "100", "--to", "250")
    assert (part["from"], part["to"], part["entries"]) == (100, 250, 150)
    prefix = processor(CONFIG)
    drive(prefix, items[:250])
    assert part["state_sha256"] == state_digest(prefix.state)
    assert main(["replay", "--journal", str(tmp_path / "nothing")]) == 2


@pytest.mark.integration
def test_replay_publishes_what_the_live_engine_computed(tmp_path, items, capsys):
    live = processor(CONFIG)
    ext = _journal(tmp_path)
    ext.open(CONFIG, live)
    view_results = []
    for i, item in enumerate(items[:400]):
        if drive(live, [item], ext) and 200 <= i < 300:
            view_results.extend(
                (f"{name}.{int(r['symbol'])}", _timeless(codec.decode_frame(r.tobytes())[1][0]))
                for name, r in live.results()
            )
    ext.writer.close()
    # the subscriber binds a port the OS picks and the replay's PUB connects to it
    # (publish.bind = false): no port is chosen first and bound later
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    sub.bind("tcp://127.0.0.1:*")
    endpoint = sub.getsockopt_string(zmq.LAST_ENDPOINT)
    config = tmp_path / "replay.toml"
    sections: dict[str, dict] = {"publish": {"endpoint": endpoint, "bind": False}}
    for dotted, value in SMALL.items():
        section, key = dotted.split(".")
        sections.setdefault(section, {})[key] = value
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    config.write_text("\n".join(lines) + "\n")
    got = []
    thread = threading.Thread(
        target=main,
        args=(
            [
                "replay",
                "--journal",
                str(tmp_path),
                "--from",
                "200",
                "--to",
                "300",
                "--config",
                str(config),
                "--publish",
                endpoint,
                "--wait",
                str(DEADLINE_S),  # it starts once the subscription is there, not after a time
            ],
        ),  # fmt: skip
    )
    thread.start()
    stats = None
    while stats is None and sub.poll(int(DEADLINE_S * 1000)):
        topic, payload = sub.recv_multipart()
        if topic == b"stats":
            stats = msgspec.json.decode(payload)
            continue
        _header, records = codec.decode_frame(payload)
        got.append((topic.decode(), _timeless(records[0])))
    thread.join(timeout=DEADLINE_S)
    sub.close()
    summary = json.loads(capsys.readouterr().out)
    assert stats is not None and summary["results"] == len(got) == len(view_results) > 0
    assert got == view_results


def _timeless(record):
    copy = record.copy()
    for field in ("recv_ns", "done_ns"):
        copy[field] = 0
    return copy.tobytes()


def test_results_in_flight_are_not_replayed_as_pending(tmp_path, items):
    live = processor(CONFIG)
    ext = _journal(tmp_path)
    ext.open(CONFIG, live)
    drive(live, items[:50], ext)
    recovered, ext2, _ = _recover(tmp_path)
    # out_seq (the per-topic result sequence numbers) continue where the live engine was
    assert np.array_equal(recovered.state.out_seq, live.state.out_seq)
    published = [CounterView(p.state.counters).read().results_published for p in (recovered, live)]
    assert published[0] == published[1]
    ext2.close()


def test_serve_refuses_a_journal_of_other_parameters_in_one_line(tmp_path, capsys):
    base = ["serve", "--ingest", "tcp://127.0.0.1:*", "--publish", "tcp://127.0.0.1:*"]
    assert main([*base, "--journal", str(tmp_path), "--symbols", "8", "--duration", "0.2"]) == 0
    assert (tmp_path / "engine.json").exists()
    capsys.readouterr()
    assert main([*base, "--journal", str(tmp_path), "--symbols", "16", "--duration", "0.2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n_symbols differ" in err[0]


def test_retain_snapshots_deletes_only_segments_no_kept_snapshot_needs(tmp_path, items, reference):
    """journal.retain = "snapshots": the journal stops growing without end, and recovery
    from every kept snapshot (and so the newest state) is still exact."""
    live = processor(CONFIG)
    ext = _journal(tmp_path, retain="snapshots", segment_bytes=1 << 16, snapshot_keep=2)
    ext.open(CONFIG, live)
    snapshot_at = []
    for start in range(0, len(items), 200):
        drive(live, items[start : start + 200], ext)
        ext.snapshot(wait=True)
        snapshot_at.append(min(start + 200, len(items)))
    segments = list_segments(tmp_path)
    kept = sorted(info.journal_next_index for info in list_snapshots(tmp_path / "snapshots"))
    assert kept == snapshot_at[-2:]
    # what is left starts at or below the oldest kept snapshot, and nothing more is left
    assert segments[0].first_index <= kept[0]
    assert len(segments) == 1 or segments[1].first_index > kept[0]
    assert ext.segments_pruned > 0 and ext.stats()["segments_pruned"] == ext.segments_pruned
    # the newest snapshot damaged: recovery falls back to the older kept one, still covered
    newest = list_snapshots(tmp_path / "snapshots")[0].path
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # torn in the middle of its arrays
    recovered, ext2, report = _recover(tmp_path)
    assert report.snapshot_index == kept[0] and report.skipped_snapshots
    assert differing_arrays(recovered.state, reference.state) == []
    ext2.close()


def test_retain_all_keeps_every_segment_and_pruned_journals_say_what_is_missing(tmp_path, items):
    from tickpath.engine.journal.reader import JournalCorruptError, iter_entries, prune_segments

    live = processor(CONFIG)
    ext = _journal(tmp_path, segment_bytes=1 << 16, snapshot_keep=1)  # retain = "all"
    ext.open(CONFIG, live)
    for start in range(0, len(items), 300):
        drive(live, items[start : start + 300], ext)
        ext.snapshot(wait=True)
    assert list_segments(tmp_path)[0].first_index == 0 and ext.segments_pruned == 0
    ext.close()
    segments = list_segments(tmp_path)
    removed = prune_segments(tmp_path, segments[2].first_index)
    assert removed == [seg.path for seg in segments[:2]]
    assert prune_segments(tmp_path, 10**9) == [seg.path for seg in segments[2:-1]]
    assert list_segments(tmp_path) == segments[-1:]  # the newest segment always stays
    with pytest.raises(JournalCorruptError, match="the journal starts at entry"):
        next(iter_entries(tmp_path, 0))


def test_replay_of_a_pruned_journal_names_where_to_start(tmp_path, items, capsys):
    live = processor(CONFIG)
    ext = _journal(tmp_path, retain="snapshots", segment_bytes=1 << 16, snapshot_keep=1)
    ext.open(CONFIG, live)
    for start in range(0, len(items), 400):
        drive(live, items[start : start + 400], ext)
        ext.snapshot(wait=True)
    ext.close()
    first = list_segments(tmp_path)[0].first_index
    oldest = min(i.journal_next_index for i in list_snapshots(tmp_path / "snapshots"))
    assert first > 0
    assert main(["replay", "--journal", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"entries before {first} are no longer in the journal" in err
    assert f"--snapshot --from N with N >= {oldest}" in err
    assert main(["replay", "--journal", str(tmp_path), "--snapshot", "--from", str(oldest)]) == 0


@pytest.mark.parametrize("session", [None, 5])
def test_the_journal_does_not_restore_a_jam(tmp_path, session):
    """A far-ahead frame from another publisher, journaled and replayed after a restart, is
    refused again (bad_jump / foreign_session): the real publisher's frames after the
    restart are processed, not counted as duplicates (before: the replay restored the jam)."""
    v2 = {} if session is None else {"session": session}
    frames = market_frames(60, seed=9, stream=2)
    if session is not None:  # the same market as a version 2 publisher
        frames = [
            codec.encode_frame(int(h["kind"]), 2, int(h["seq"]), r, 0, session)
            for h, r in (codec.decode_frame(f) for f in frames)
        ]
    header, records = codec.decode_frame(frames[0])
    attacker = {} if session is None else {"session": session + 1}
    jam = codec.encode_frame(int(header["kind"]), 2, 1 << 40, records, 0, **attacker)
    live = processor(CONFIG)
    ext = _journal(tmp_path)
    ext.open(CONFIG, live)
    drive(live, frames[:30] + [jam], ext)
    ext.writer.close()
    recovered, ext2, _report = _recover(tmp_path)
    drive(recovered, frames[30:], ext2)
    ext2.writer.close()
    stats = recovered.stats(0)
    assert stats["rejected"]["duplicate"] == 0
    assert stats["rejected"]["foreign_session" if v2 else "bad_jump"] == 1
    next_seq = int(codec.decode_header(frames[-1])["seq"]) + int(
        codec.decode_header(frames[-1])["count"]
    )
    assert stats["streams"]["2"]["next_seq"] == next_seq


def test_damage_in_a_snapshot_covered_segment_is_found_in_the_background(tmp_path, items, caplog):
    """Recovery does not read the segments a snapshot covers; a background check does and
    reports their damage (before: a corrupted finished segment went unnoticed)."""
    live = processor(CONFIG)
    ext = _journal(tmp_path, segment_bytes=1 << 16, snapshot_keep=1)
    ext.open(CONFIG, live)
    drive(live, items, ext)
    ext.snapshot(wait=True)
    ext.close()
    segments = list_segments(tmp_path)
    assert len(segments) >= 3
    victim = segments[1].path
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with caplog.at_level(logging.INFO, logger="tickpath.journal"):
        _recovered, ext2, report = _recover(tmp_path)
        verify = ext2.wait_verified(timeout=120)
    try:
        assert report.snapshot_index == len(items) and report.replayed_entries == 0
        assert verify["state"] == "done" and verify["segments"] == len(segments) - 1
        assert verify["checked"] == len(segments) - 1
        assert len(verify["damaged"]) == 1 and victim.name in verify["damaged"][0]
        assert ext2.stats()["verify"]["damaged"] == verify["damaged"]
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and victim.name in errors[0].getMessage()
    finally:
        ext2.close()


def test_a_skipped_snapshot_is_logged_as_a_warning(tmp_path, items, caplog):
    live = processor(CONFIG)
    ext = _journal(tmp_path, snapshot_keep=2)
    ext.open(CONFIG, live)
    drive(live, items[:300], ext)
    ext.snapshot(wait=True)
    drive(live, items[300:600], ext)
    ext.snapshot(wait=True)
    ext.writer.close()
    newest = list_snapshots(tmp_path / "snapshots")[0].path
    newest.write_bytes(newest.read_bytes()[:100])  # torn
    with caplog.at_level(logging.INFO, logger="tickpath.journal"):
        _recovered, ext2, report = _recover(tmp_path)
    ext2.close()
    assert report.snapshot_index == 300 and report.skipped_snapshots
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(newest.name in r.getMessage() for r in warnings), [
        (r.levelname, r.getMessage()) for r in caplog.records
    ]
