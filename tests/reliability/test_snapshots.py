"""Snapshots: every state array round-trips; damage, other parameters and leftovers are refused."""

from __future__ import annotations

import errno
import os
import resource
import sys

import numpy as np
import pytest

from tests.reliability.helpers import drive, market_frames, processor, small_config, with_bad_input
from tickpath.engine.journal.snapshot import (
    FORKED_NICE,
    SnapshotError,
    Snapshotter,
    differing_arrays,
    exit_reason,
    forked,
    list_snapshots,
    load_newest,
    load_snapshot,
    prune_snapshots,
    read_manifest,
    snapshot_name,
    state_arrays,
    write_snapshot,
)
from tickpath.kernels.cpu import streaming as k
from tickpath.kernels.cpu.streaming_view import CounterView


@pytest.fixture(scope="module")
def busy():
    """A processor that has seen trades, quotes, orders and bad input."""
    proc = processor()
    drive(proc, with_bad_input(market_frames(1500)))
    return proc


def test_every_state_array_is_in_a_snapshot(busy):
    arrays = state_arrays(busy.state)
    fields = [f for f in k.StreamingState._fields if f not in ("params", "book")]
    book = [f"book.{f}" for f in type(busy.state.book)._fields]
    assert sorted(arrays) == sorted(fields + book)
    assert all(isinstance(a, np.ndarray) for a in arrays.values())


def test_round_trip_is_byte_identical(tmp_path, busy):
    path = write_snapshot(tmp_path, state_arrays(busy.state), busy.state.params, 1234, ("x", 64))
    assert path.name == snapshot_name(1234)
    fresh = processor()
    manifest = load_snapshot(path, fresh.state)
    assert manifest["journal_next_index"] == 1234 and manifest["journal_position"] == ["x", 64]
    for name, array in state_arrays(busy.state).items():
        assert state_arrays(fresh.state)[name].tobytes() == array.tobytes(), name
    assert differing_arrays(busy.state, fresh.state) == []
    assert CounterView(busy.state.counters).read().frames_received > 1500  # not trivial


def test_damaged_snapshots_are_refused_and_the_next_older_one_used(tmp_path, busy):
    params = busy.state.params
    older = processor()
    drive(older, market_frames(200))
    write_snapshot(tmp_path, state_arrays(older.state), params, 200)
    newest = write_snapshot(tmp_path, state_arrays(busy.state), params, 1000)
    data = bytearray(newest.read_bytes())
    data[-100] ^= 0xFF  # inside the last array
    newest.write_bytes(bytes(data))
    target = processor()
    with pytest.raises(SnapshotError, match="checksum"):
        load_snapshot(newest, target.state)
    manifest, problems = load_newest(tmp_path, target.state)
    assert manifest["journal_next_index"] == 200 and len(problems) == 1
    assert differing_arrays(target.state, older.state) == []
    newest.write_bytes(bytes(data[:5000]))  # truncated
    with pytest.raises(SnapshotError):
        load_snapshot(newest, processor().state)
    assert load_newest(tmp_path, processor().state, max_index=199)[0] is None


def test_manifest_damage_and_foreign_files_are_refused(tmp_path, busy):
    path = write_snapshot(tmp_path, state_arrays(busy.state), busy.state.params, 7)
    data = bytearray(path.read_bytes())
    data[40] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="manifest"):
        read_manifest(path)
    path.write_bytes(b"not a snapshot at all, just some bytes")
    with pytest.raises(SnapshotError, match="not a tickpath snapshot"):
        read_manifest(path)


def test_a_snapshot_of_other_parameters_is_refused(tmp_path, busy):
    path = write_snapshot(tmp_path, state_arrays(busy.state), busy.state.params, 7)
    other = processor(small_config(analytics__n_symbols=32))
    with pytest.raises(SnapshotError, match="n_symbols"):
        load_snapshot(path, other.state)


def test_pruning_keeps_the_newest_and_removes_stale_temporaries(tmp_path, busy):
    for index in (10, 20, 30, 40):
        write_snapshot(tmp_path, state_arrays(busy.state), busy.state.params, index)
    stale = tmp_path / f".{snapshot_name(50)}.999999999.tmp"
    stale.write_bytes(b"half a snapshot")
    prune_snapshots(tmp_path, 2)
    assert [info.journal_next_index for info in list_snapshots(tmp_path)] == [40, 30]
    assert not stale.exists()


@pytest.mark.parametrize("method", ["fork", "copy"])
def test_background_snapshot_is_the_state_at_take_time(tmp_path, method):
    proc = processor()
    frames = market_frames(600)
    drive(proc, frames[:300])
    at_take = processor()
    drive(at_take, frames[:300])
    snap = Snapshotter(tmp_path, proc.state, keep=3, background=True, method=method)
    assert snap.take(300, None)
    drive(proc, frames[300:])  # keeps changing while the thread (or child) writes
    snap.wait()
    loaded = processor()
    load_snapshot(tmp_path / snapshot_name(300), loaded.state)
    assert differing_arrays(loaded.state, at_take.state) == []
    assert differing_arrays(loaded.state, proc.state) != []
    assert snap.stats()["taken"] == 1
    assert not snap.take(300, None)  # already on disk


def test_a_forked_child_runs_below_its_parent():
    """A snapshot's (or a state transfer's) child yields the CPU to the tick thread."""
    read_end, write_end = os.pipe()
    pid = forked(lambda: os.write(write_end, b"%d" % os.getpriority(os.PRIO_PROCESS, 0)))
    os.close(write_end)
    child_nice = int(os.read(read_end, 32))
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_nice == min(19, os.getpriority(os.PRIO_PROCESS, 0) + FORKED_NICE)


def test_a_failed_forked_snapshot_is_counted_and_says_why(tmp_path):
    proc = processor()
    drive(proc, market_frames(300))
    snap = Snapshotter(tmp_path, proc.state, keep=3, background=True, method="fork")
    # the child inherits a 4 KiB file-size limit: its write fails with EFBIG
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        assert snap.take(300, None)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    snap.wait()
    stats = snap.stats()
    assert stats["failed"] == 1 and stats["taken"] == 0
    assert "File too large" in stats["last_error"]
    assert list_snapshots(tmp_path) == [] and not list(tmp_path.glob(".*.tmp"))
    assert snap.take(300, None)  # the next one, with room again, is written
    snap.wait()
    assert snap.stats()["taken"] == 1 and len(list_snapshots(tmp_path)) == 1


def test_unused_capacity_costs_no_space_and_any_pattern_round_trips(tmp_path):
    config = small_config(analytics__book_orders=1 << 16)
    proc = processor(config)
    drive(proc, market_frames(300))
    state_bytes = sum(a.nbytes for a in state_arrays(proc.state).values())
    path = write_snapshot(tmp_path, state_arrays(proc.state), proc.state.params, 300)
    assert path.stat().st_size < state_bytes / 4  # the empty order pool is not written out
    # rows equal within some blocks and not others, partial last blocks, scratch frames
    rng = np.random.default_rng(4)
    big = max(state_arrays(proc.state).values(), key=lambda a: a.nbytes)  # a book array
    flat = big.reshape(big.shape[0], -1)
    flat[100:3000] = rng.integers(-5, 5, (2900, flat.shape[1]))
    flat[5000:9000] = 7
    proc.state.ring_f[3] = rng.random(proc.state.ring_f[3].shape)
    proc.state.out_trade[::7] = proc.state.out_trade[0]
    path = write_snapshot(tmp_path, state_arrays(proc.state), proc.state.params, 301)
    loaded = processor(config)
    load_snapshot(path, loaded.state)
    for name, array in state_arrays(proc.state).items():
        assert state_arrays(loaded.state)[name].tobytes() == array.tobytes(), name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_a_forked_snapshot_is_written_when_the_descriptor_table_is_full(tmp_path):
    """Idle peers can hold every descriptor up to the hard limit, the reserve included
    (libzmq's I/O thread takes it while the engine lifts its soft limit to open a
    file): the forked writer still opens its file, in a slot of its own copy."""
    proc = processor()
    drive(proc, market_frames(300))
    snap = Snapshotter(tmp_path, proc.state, keep=3, background=True, method="fork")

    def engine_with_a_full_table() -> None:  # in a child: the test's own table stays as is
        highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        limit = highest + 16
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
        while True:  # every descriptor up to the hard limit is taken
            try:
                os.open(os.devnull, os.O_RDONLY)
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        taken = snap.take(300, None)
        snap.wait()
        if not (taken and snap.stats()["taken"] == 1 and snap.stats()["failed"] == 0):
            raise OSError(errno.EIO, f"snapshot not written: {snap.stats()['last_error']}")

    pid = forked(engine_with_a_full_table)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, exit_reason(status)
    loaded = processor()
    load_snapshot(tmp_path / snapshot_name(300), loaded.state)
    assert differing_arrays(loaded.state, proc.state) == []
