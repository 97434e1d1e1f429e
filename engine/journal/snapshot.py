"""Snapshots of the whole streaming state, written atomically, read back in place.

A snapshot holds every array of :class:`tickpath.kernels.cpu.streaming.StreamingState`
(the per-symbol analytics, rings, counters, per-stream sequence state, the
result sequence numbers and scratch frames) and of its
:class:`tickpath.kernels.cpu.book.BookState`, plus the journal position it covers:
``journal_next_index`` is the index of the first journal entry *not* applied.

File layout (``snapshot-<journal_next_index, 20 digits>.tps``)::

    0   8s   magic            b"TKPSNAP\\x01"
    8   u32  format version   1
    12  u32  manifest bytes   M
    16  u32  manifest crc32
    20  u32  reserved         0
    24  u64  data offset      start of the arrays (4096-aligned)
    32  M    manifest         JSON: format, journal_next_index, journal_position,
                              created_ns, params (StreamingParams), arrays: [{name,
                              descr (numpy dtype descr), shape, offset, nbytes, stored,
                              block_rows, runs, crc32}]
    ...      arrays           each at a 64-byte aligned offset from the data offset

An array is its C-order bytes cut into blocks of ``block_rows`` rows (rows of
its first axis, about 64 KiB a block).  ``runs`` lists ``[kind, blocks]`` in
order: kind 0 blocks are stored whole, kind 1 blocks (every row equal) as one
row.  ``crc32`` covers the stored bytes, in order.

Writing: a temporary file in the same directory, ``fsync``, ``rename`` over the
final name, ``fsync`` of the directory: a reader sees a whole snapshot or none.
Reading checks the magic, the manifest checksum, every array's name, dtype,
shape and checksum, and that the snapshot was taken with the same
``StreamingParams``; any mismatch raises :class:`SnapshotError` and
:func:`load_newest` falls back to the next older snapshot.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import resource
import struct
import threading
import time
import weakref
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numba
import numpy as np

from tickpath.engine.journal.reader import _fsync_dir
from tickpath.engine.service.descriptors import open_fd, reserved
from tickpath.kernels.cpu import streaming as k
from tickpath.kernels.cpu.streaming_view import StreamTable

log = logging.getLogger("tickpath.journal")

MAGIC = b"TKPSNAP\x01"
FORMAT_VERSION = 1
_HEAD = struct.Struct("<8sIIIIQ")
_ALIGN = 64
_BLOCK_BYTES = 1 << 16  # rows per block: about this many bytes
_DATA_ALIGN = 4096
SUFFIX = ".tps"
PREFIX = "snapshot-"
# Wall-clock stamps inside the result scratch frames: times, not state.
TIME_FIELDS = ("send_ns", "recv_ns", "done_ns")
SCRATCH_FRAMES = ("out_quote", "out_trade", "out_bar", "out_book")


class SnapshotError(Exception):
    """A snapshot that cannot be used (damaged, other format, other parameters)."""


class SnapshotInfo(NamedTuple):
    """A snapshot file and the journal index it covers (from its name)."""

    path: Path
    journal_next_index: int


def state_arrays(state: k.StreamingState) -> dict[str, np.ndarray]:
    """Every array of the streaming state, book included, by a stable name."""
    arrays: dict[str, np.ndarray] = {}
    for name in k.StreamingState._fields:
        value = getattr(state, name)
        if name == "params":
            continue
        if name == "book":
            for book_name in type(value)._fields:
                arrays[f"book.{book_name}"] = getattr(value, book_name)
        else:
            arrays[name] = value
    return arrays


def _bytes_of(array: np.ndarray) -> memoryview:
    if not array.flags.c_contiguous:
        raise SnapshotError("state arrays must be C-contiguous")
    return memoryview(array.reshape(-1).view(np.uint8))


def _descr(dtype: np.dtype) -> str:
    return json.dumps(np.lib.format.dtype_to_descr(dtype))


def params_dict(params: k.StreamingParams) -> dict:
    """The parameters as JSON-ready values."""
    return {name: list(v) if isinstance(v, tuple) else v for name, v in params._asdict().items()}


def comparable_arrays(state: k.StreamingState) -> dict[str, np.ndarray]:
    """:func:`state_arrays` with the wall-clock stamps of the scratch frames zeroed (copies).

    Two engines that processed the same frames have byte-identical comparable
    arrays; the zeroed fields (a result's ``recv_ns``/``done_ns`` and its
    header's ``send_ns``, a stream's last receive time) say *when* the kernels
    ran, not what they computed.
    """
    arrays = dict(state_arrays(state))
    streams = arrays["streams"].copy()
    StreamTable(streams).clear_arrival_times()  # when a frame arrived: a time, not a result
    arrays["streams"] = streams
    for name in SCRATCH_FRAMES:
        copy = arrays[name].copy()
        for field in TIME_FIELDS:
            copy[field] = 0
        arrays[name] = copy
    return arrays


def state_digest(state: k.StreamingState) -> str:
    """SHA-256 over :func:`comparable_arrays`, in a fixed order (an audit fingerprint)."""
    h = hashlib.sha256()
    for name, array in comparable_arrays(state).items():
        h.update(name.encode())
        h.update(_bytes_of(np.ascontiguousarray(array)))
    return h.hexdigest()


def differing_arrays(a: k.StreamingState, b: k.StreamingState) -> list[str]:
    """Names of the comparable arrays whose bytes differ between two states."""
    ca, cb = comparable_arrays(a), comparable_arrays(b)
    return [
        name
        for name in ca
        if ca[name].shape != cb[name].shape
        or ca[name].dtype != cb[name].dtype
        or bytes(_bytes_of(ca[name])) != bytes(_bytes_of(cb[name]))
    ]


def snapshot_name(journal_next_index: int) -> str:
    """File name of the snapshot covering entries ``0 .. journal_next_index - 1``."""
    return f"{PREFIX}{journal_next_index:020d}{SUFFIX}"


def list_snapshots(directory: str | os.PathLike[str]) -> list[SnapshotInfo]:
    """Snapshot files in ``directory``, newest (highest index) first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    with reserved():  # listing takes a descriptor: from the engine's reserve
        names = os.listdir(directory)
    for name in names:
        if name.startswith(PREFIX) and name.endswith(SUFFIX):
            stem = name[len(PREFIX) : -len(SUFFIX)]
            if len(stem) == 20 and stem.isdigit():
                found.append(SnapshotInfo(directory / name, int(stem)))
    found.sort(key=lambda info: info.journal_next_index, reverse=True)
    return found


def _rows(array: np.ndarray) -> np.ndarray:
    """The array's bytes as a uint8 matrix, one row per index of its first axis."""
    data = _bytes_of(array)
    flat = np.frombuffer(data, np.uint8) if len(data) else np.zeros(0, np.uint8)
    n_rows = array.shape[0] if array.ndim >= 1 and array.shape[0] > 0 else 1
    return flat.reshape(n_rows, -1) if len(flat) else flat.reshape(1, 0)


@numba.njit(cache=True, nogil=True)
def _equal_row_blocks(words, block_rows, kinds):  # noqa: ANN001, ANN202 - numba kernel
    """kinds[b] = 1 when every row of block b equals its first row (no GIL held)."""
    n_rows, width = words.shape
    for b in range(kinds.shape[0]):
        start = b * block_rows
        end = min(start + block_rows, n_rows)
        same = 1
        for r in range(start + 1, end):
            for c in range(width):
                if words[r, c] != words[start, c]:
                    same = 0
                    break
            if same == 0:
                break
        kinds[b] = same


def _block_runs(rows: np.ndarray, block_rows: int) -> list[list[int]]:
    """``[[kind, blocks], ...]``: runs of blocks stored whole (0) or as one repeated row (1)."""
    n_blocks = -(-rows.shape[0] // block_rows)
    kinds = np.zeros(n_blocks, np.int8)
    if rows.shape[1]:
        words = rows.view(np.uint64) if rows.shape[1] % 8 == 0 else rows
        _equal_row_blocks(words, block_rows, kinds)
    edges = np.flatnonzero(np.diff(kinds)) + 1
    starts = np.concatenate(([0], edges)).tolist()
    ends = np.concatenate((edges, [n_blocks])).tolist()
    return [[int(kinds[s]), e - s] for s, e in zip(starts, ends)]


def _pieces(rows: np.ndarray, block_rows: int, runs: list[list[int]]):  # noqa: ANN202
    """The byte pieces stored for an array, in file order."""
    block = 0
    for kind, count in runs:
        first = block * block_rows
        if kind == 0:
            yield _bytes_of(np.ascontiguousarray(rows[first : (block + count) * block_rows]))
        else:
            yield _bytes_of(
                np.ascontiguousarray(rows[first : first + count * block_rows : block_rows])
            )
        block += count


def _layout(
    arrays: dict[str, np.ndarray],
    params: k.StreamingParams,
    journal_next_index: int,
    journal_position: tuple[str, int] | None,
    extra: dict | None = None,
) -> tuple[bytes, list[tuple[np.ndarray, int, list[list[int]], int]]]:
    """The header (magic, manifest, padding to the data offset) and each array's layout."""
    entries = []
    layouts = []
    offset = 0
    for name, array in arrays.items():
        rows = _rows(array)
        block_rows = max(1, _BLOCK_BYTES // max(1, rows.shape[1]))
        runs = _block_runs(rows, block_rows)
        crc = 0
        stored = 0
        for piece in _pieces(rows, block_rows, runs):
            crc = zlib.crc32(piece, crc)
            stored += len(piece)
        entries.append(
            {
                "name": name,
                "descr": _descr(array.dtype),
                "shape": list(array.shape),
                "offset": offset,
                "nbytes": array.nbytes,
                "stored": stored,
                "block_rows": block_rows,
                "runs": runs,
                "crc32": crc,
            }
        )
        layouts.append((rows, block_rows, runs, stored))
        offset += -(-stored // _ALIGN) * _ALIGN
    doc = {
        "format": FORMAT_VERSION,
        "journal_next_index": journal_next_index,
        "journal_position": list(journal_position) if journal_position else None,
        "created_ns": time.time_ns(),
        "params": params_dict(params),
        "arrays": entries,
    }
    if extra:
        doc.update(extra)
    manifest = json.dumps(doc).encode()
    data_offset = -(-(_HEAD.size + len(manifest)) // _DATA_ALIGN) * _DATA_ALIGN
    head = _HEAD.pack(MAGIC, FORMAT_VERSION, len(manifest), zlib.crc32(manifest), 0, data_offset)
    return head + manifest + bytes(data_offset - _HEAD.size - len(manifest)), layouts


def _body(layouts: list[tuple[np.ndarray, int, list[list[int]], int]]):  # noqa: ANN202
    """The stored pieces of every array, each array padded to the alignment, in file order."""
    for rows, block_rows, runs, stored in layouts:
        yield from _pieces(rows, block_rows, runs)
        if stored % _ALIGN:
            yield bytes(-stored % _ALIGN)


def encode_snapshot(
    arrays: dict[str, np.ndarray],
    params: k.StreamingParams,
    journal_next_index: int = 0,
    extra: dict | None = None,
) -> bytes:
    """The bytes of a snapshot file of ``arrays`` (the format above), in memory.

    :func:`decode_snapshot` loads them; ``extra`` adds keys to the manifest (e.g. the
    sender of a snapshot sent over the network).  Used to hand a shard's state to a
    relaunched replica (:mod:`tickpath.engine.cluster.state_transfer`).
    """
    head, layouts = _layout(arrays, params, journal_next_index, None, extra)
    return b"".join([head, *_body(layouts)])


_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


def snapshot_tmp_path(directory: str | os.PathLike[str], journal_next_index: int) -> Path:
    """The temporary file a snapshot of this process is written to, before its rename."""
    return Path(directory) / f".{snapshot_name(journal_next_index)}.{os.getpid()}.tmp"


def open_snapshot_file(
    directory: str | os.PathLike[str], journal_next_index: int
) -> tuple[Path, int]:
    """The temporary file a snapshot is written to, open: ``(path, descriptor)``.

    Opened from the engine's descriptor reserve, so idle peers holding every other
    descriptor do not make it fail with EMFILE (but see :func:`open_in_child`, which
    a forked writer uses: libzmq's I/O thread may take the reserve while it is open).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = snapshot_tmp_path(directory, journal_next_index)
    return tmp, open_fd(tmp, _TMP_FLAGS)


def open_in_child(path: str | os.PathLike[str], flags: int, keep: set[int]) -> int:
    """``os.open`` in a child made by :func:`forked`, whatever the parent's table holds.

    The engine opens files from a descriptor reserve by lifting its soft limit for
    an instant (:mod:`tickpath.engine.service.descriptors`); libzmq's I/O thread, retrying
    ``accept`` while idle peers fill the table, can take reserved descriptors in that
    instant and hold them until the peers are reaped.  A forked child has no other
    thread: it lifts its own soft limit to the hard limit, and if its copy of the
    table is full even so, closes its copy of a descriptor it does not need (not one
    of ``keep``, nor 0-2; the parent's stays open) and opens the file in that slot.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        return os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno != errno.EMFILE:
            raise
        full = exc
    top = hard if hard != resource.RLIM_INFINITY else 1 << 20
    for fd in range(top - 1, 2, -1):
        if fd in keep:
            continue
        try:
            os.close(fd)
        except OSError:
            continue
        return os.open(path, flags, 0o644)
    raise full


def write_snapshot(
    directory: str | os.PathLike[str],
    arrays: dict[str, np.ndarray],
    params: k.StreamingParams,
    journal_next_index: int,
    journal_position: tuple[str, int] | None = None,
    before_commit: Callable[[], None] | None = None,
    dir_fd: int = -1,
    opened: tuple[Path, int] | None = None,
) -> Path:
    """Write ``arrays`` (from :func:`state_arrays`) atomically; return the snapshot's path.

    Each array is stored in blocks of about 64 KiB of whole rows (first axis); a
    block whose rows are all equal (an empty region of the order table, an unused
    ring) is stored as that one row, so a snapshot's size follows the state in
    use, not its capacity.  ``before_commit`` runs after the data is on disk and
    before the rename (the journal uses it to make its entries up to
    ``journal_next_index`` durable first, so a snapshot never covers journal
    entries a crash could lose).  ``opened``: the temporary file, already open
    (:func:`open_snapshot_file`; a forked writer opens it with :func:`open_in_child`).
    """
    directory = Path(directory)
    final = directory / snapshot_name(journal_next_index)
    head, layouts = _layout(arrays, params, journal_next_index, journal_position)
    tmp, fd = opened if opened is not None else open_snapshot_file(directory, journal_next_index)
    try:
        _write_all(fd, head)
        for piece in _body(layouts):
            _write_all(fd, piece)
        os.fsync(fd)
        if before_commit is not None:
            before_commit()
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.rename(tmp, final)
    if dir_fd >= 0:
        os.fsync(dir_fd)
    else:
        _fsync_dir(directory)
    return final


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while len(view):
        view = view[os.write(fd, view) :]


def read_manifest(path: str | os.PathLike[str]) -> dict:
    """The checked manifest of a snapshot file (raises :class:`SnapshotError`)."""
    with open(path, "rb") as f:
        return _read_manifest(f, path)


def _read_manifest(f: BinaryIO, path: object) -> dict:
    head = f.read(_HEAD.size)
    if len(head) != _HEAD.size:
        raise SnapshotError(f"{path}: too short for a snapshot header")
    magic, version, length, crc, _reserved, data_offset = _HEAD.unpack(head)
    if magic != MAGIC:
        raise SnapshotError(f"{path}: not a tickpath snapshot")
    if version != FORMAT_VERSION:
        raise SnapshotError(f"{path}: snapshot format {version}, this build reads 1")
    manifest = f.read(length)
    if len(manifest) != length or zlib.crc32(manifest) != crc:
        raise SnapshotError(f"{path}: manifest damaged")
    info = json.loads(manifest)
    info["data_offset"] = data_offset
    return info


def load_snapshot(path: str | os.PathLike[str], state: k.StreamingState) -> dict:
    """Read a snapshot into ``state``'s arrays in place; return its manifest.

    On :class:`SnapshotError` the state may be partly overwritten: reset it.
    """
    with open(path, "rb", buffering=0) as f:
        return _load(f, path, state)


def decode_snapshot(data: bytes | memoryview, state: k.StreamingState, label: str) -> dict:
    """Load the bytes of :func:`encode_snapshot` into ``state`` in place; return the manifest.

    The same checks as :func:`load_snapshot` (``label`` names the source in errors);
    on :class:`SnapshotError` the state may be partly overwritten: reset it.
    """
    try:
        return _load(io.BytesIO(data), label, state)
    except (ValueError, KeyError, TypeError) as exc:  # a damaged manifest's content
        raise SnapshotError(f"{label}: {exc}") from None


def _load(f: BinaryIO, path: object, state: k.StreamingState) -> dict:
    manifest = _read_manifest(f, path)
    want = params_dict(state.params)
    if manifest["params"] != want:
        diff = sorted(key for key in want if manifest["params"].get(key) != want[key])
        raise SnapshotError(
            f"{path}: taken with other analytics parameters ({', '.join(diff)} differ)"
        )
    targets = state_arrays(state)
    listed = {entry["name"]: entry for entry in manifest["arrays"]}
    if set(listed) != set(targets):
        raise SnapshotError(f"{path}: holds arrays {sorted(listed)}, expected {sorted(targets)}")
    base = manifest["data_offset"]
    for name, target in targets.items():
        entry = listed[name]
        if entry["descr"] != _descr(target.dtype) or entry["shape"] != list(target.shape):
            raise SnapshotError(f"{path}: array {name} has another dtype or shape")
        if entry["nbytes"] != target.nbytes:
            raise SnapshotError(f"{path}: array {name} has {entry['nbytes']} bytes")
        f.seek(base + entry["offset"])
        _read_blocks(f, path, name, entry, _rows(target))
    return manifest


def _read_blocks(f: object, path: object, name: str, entry: dict, rows: np.ndarray) -> None:
    """Read one array's stored blocks into ``rows`` (its target), checking the checksum."""
    block_rows = int(entry["block_rows"])
    runs = entry["runs"]
    n_rows, width = rows.shape
    n_blocks = -(-n_rows // block_rows)
    if block_rows < 1 or sum(count for _, count in runs) != n_blocks:
        raise SnapshotError(f"{path}: array {name} has a bad block layout")
    crc = 0
    block = 0
    for kind, count in runs:
        first = block * block_rows
        if kind == 0:
            view = _bytes_of(rows[first : min((block + count) * block_rows, n_rows)])
            if f.readinto(view) != len(view):
                raise SnapshotError(f"{path}: truncated in array {name}")
            crc = zlib.crc32(view, crc)
        elif kind == 1:
            fills = np.empty((count, width), np.uint8)
            view = _bytes_of(fills)
            if f.readinto(view) != len(view):
                raise SnapshotError(f"{path}: truncated in array {name}")
            crc = zlib.crc32(view, crc)
            for j in range(count):
                start = first + j * block_rows
                rows[start : start + block_rows] = fills[j]
        else:
            raise SnapshotError(f"{path}: array {name} has a bad block kind {kind}")
        block += count
    if crc != entry["crc32"]:
        raise SnapshotError(f"{path}: array {name} fails its checksum")


def load_newest(
    directory: str | os.PathLike[str], state: k.StreamingState, max_index: int | None = None
) -> tuple[dict | None, list[str]]:
    """Load the newest usable snapshot (covering at most ``max_index`` entries) into ``state``.

    Returns ``(manifest or None, problems)``: ``problems`` describes every newer
    snapshot that was skipped.  With no usable snapshot the state is reset.
    """
    problems: list[str] = []
    for info in list_snapshots(directory):
        if max_index is not None and info.journal_next_index > max_index:
            problems.append(
                f"{info.path.name}: covers {info.journal_next_index} entries, "
                f"the journal holds {max_index}"
            )
            continue
        try:
            manifest = load_snapshot(info.path, state)
            manifest["path"] = str(info.path)
        except (SnapshotError, OSError, ValueError, KeyError) as exc:
            problems.append(str(exc))
            k.reset_state(state)
            continue
        if manifest["journal_next_index"] != info.journal_next_index:
            problems.append(f"{info.path.name}: manifest and name disagree")
            k.reset_state(state)
            continue
        return manifest, problems
    k.reset_state(state)
    return None, problems


def prune_snapshots(directory: str | os.PathLike[str], keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest snapshots (and stale temporary files)."""
    removed = []
    for info in list_snapshots(directory)[keep:]:
        info.path.unlink(missing_ok=True)
        removed.append(info.path)
    with reserved():
        names = os.listdir(directory)
    for name in names:
        if name.startswith(f".{PREFIX}") and name.endswith(".tmp"):
            pid = name.rsplit(".", 2)[-2]
            if pid.isdigit() and int(pid) != os.getpid():
                (Path(directory) / name).unlink(missing_ok=True)
    return removed


def warm_up() -> None:
    """Compile (or load from numba's cache) the snapshot kernel for both row layouts."""
    for width in (8, 3):  # rows of whole 64-bit words, and of bytes
        _block_runs(_rows(np.zeros((2, width), np.uint8)), 1)


def _libc_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up now: a forked child must not load anything."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux/glibc: children may outlive the engine
        return None


_PRCTL = _libc_prctl()
_PR_SET_PDEATHSIG = 1


class Snapshotter:
    """Takes snapshots of a live state, optionally while the engine runs on.

    Background snapshots (``background``) freeze the state in one of two ways
    (``method``, as ``journal.snapshot_method``):

    * ``"fork"`` (the default): a child process (``os.fork``) writes the state as it was at the
      fork: the kernel shares the pages copy-on-write, so the tick thread pays the
      fork itself (page tables, a few ms) and a page fault for each page it changes
      while the child writes, instead of a copy of the whole state. The child only
      writes the file (its own descriptor limit, no lock of the engine's, no ZeroMQ)
      and leaves with ``os._exit``; the engine reaps it (``poll``) and then prunes.
    * ``"copy"``: :meth:`take` copies every array into a preallocated shadow (one
      memcpy of the state on the engine thread) and a thread writes the copy.

    A snapshot requested while the previous one is still being written is skipped
    (and counted).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        state: k.StreamingState,
        *,
        keep: int = 2,
        background: bool = True,
        method: str = "fork",
        before_commit: Callable[[], None] | None = None,
        commit_fd: Callable[[], int] | None = None,
        after_prune: Callable[[int], None] | None = None,
    ) -> None:
        if method not in ("fork", "copy"):
            raise ValueError(f"snapshot method must be 'fork' or 'copy', not {method!r}")
        self.directory = Path(directory)
        self.before_commit = before_commit
        # fork: the descriptor the child fdatasyncs before its rename (the journal's
        # current segment), instead of before_commit (whose lock another thread may hold)
        self.commit_fd = commit_fd
        # called with the journal index of the oldest snapshot kept, after each snapshot
        self.after_prune = after_prune
        self.state = state
        self.keep = keep
        self.background = background
        self.method = method
        self.taken = 0
        self.skipped = 0
        self.failed = 0
        self.last_index: int | None = None
        self.last_copy_ms = 0.0
        self.last_write_ms = 0.0
        self.last_error: str | None = None
        self._shadow: dict[str, np.ndarray] | None = None
        self._thread: threading.Thread | None = None
        self._child: tuple[int, int, float, Path] | None = None  # pid, index, start, tmp
        warm_up()  # numba loads its cache now, not at the first snapshot (no JIT, no open)
        # Held open, with the list of snapshots on disk, so that a snapshot needs one new
        # descriptor only (its file): idle peers may hold every other one.
        self.directory.mkdir(parents=True, exist_ok=True)
        self._dir_fd = open_fd(self.directory, os.O_RDONLY | os.O_CLOEXEC)
        self._closer = weakref.finalize(self, os.close, self._dir_fd)
        self._known = list_snapshots(self.directory)  # newest first

    def prepare(self) -> float:
        """Allocate and touch the copy method's shadow now, not at the first snapshot;
        return ms.

        The engine's memory then stays flat from the start (the shadow is a second
        copy of the state), and the first snapshot does not pay the page faults.
        """
        if not self.background or self.method != "copy":
            return 0.0
        t0 = time.perf_counter()
        live = state_arrays(self.state)
        if self._shadow is None:
            self._shadow = {name: np.empty_like(a, order="C") for name, a in live.items()}
        for name, array in live.items():
            np.copyto(self._shadow[name], array)
        return (time.perf_counter() - t0) * 1e3

    def busy(self) -> bool:
        """True while a background snapshot is being written (reaps a finished child)."""
        if self._child is not None:
            self._reap(block=False)
            return self._child is not None
        return self._thread is not None and self._thread.is_alive()

    def poll(self) -> None:
        """Finish the bookkeeping of a snapshot written by a child (call now and then)."""
        self.busy()

    def take(self, journal_next_index: int, position: tuple[str, int] | None) -> bool:
        """Snapshot the state as it is now; False if skipped (busy, or already on disk)."""
        if self.busy():
            self.skipped += 1
            return False
        if (self.directory / snapshot_name(journal_next_index)).exists():
            return False  # nothing was applied since: the snapshot on disk is this state
        if not self.background:
            self.last_copy_ms = 0.0
            self._write(state_arrays(self.state), journal_next_index, position)
            return True
        if self.method == "fork":
            self._fork(journal_next_index, position)
            return True
        self.last_copy_ms = self.prepare()
        self._thread = threading.Thread(
            target=self._write,
            args=(self._shadow, journal_next_index, position),
            name="tickpath-snapshot",
            daemon=True,
        )
        self._thread.start()
        return True

    # -- fork ------------------------------------------------------------------------------

    def _fork(self, index: int, position: tuple[str, int] | None) -> None:
        arrays = state_arrays(self.state)  # views: the child sees them as at the fork
        sync_fd = self.commit_fd() if self.commit_fd is not None else -1
        commit = (lambda: os.fdatasync(sync_fd)) if sync_fd >= 0 else None
        params, directory, dir_fd = self.state.params, self.directory, self._dir_fd
        t0 = time.perf_counter()
        tmp = snapshot_tmp_path(directory, index)  # named after this process, not the child

        def write() -> None:
            # opened in the child: no thread of the engine's competes for its descriptors
            opened = (tmp, open_in_child(tmp, _TMP_FLAGS, {dir_fd, sync_fd}))
            write_snapshot(directory, arrays, params, index, position, commit, dir_fd, opened)

        try:
            pid = forked(write)
        except OSError as exc:
            self._failed(index, f"fork: {exc}")
            return
        self.last_copy_ms = (time.perf_counter() - t0) * 1e3
        self._child = (pid, index, t0, tmp)

    def _reap(self, block: bool) -> None:
        pid, index, t0, tmp = self._child
        done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        if done == 0:
            return
        self._child = None
        why = exit_reason(status)
        if why:
            tmp.unlink(missing_ok=True)
            self._failed(index, f"{why} (writing it in process {pid})")
            return
        self._committed(self.directory / snapshot_name(index), index, t0)

    # -- bookkeeping -----------------------------------------------------------------------

    def _write(
        self, arrays: dict[str, np.ndarray], index: int, position: tuple[str, int] | None
    ) -> None:
        t0 = time.perf_counter()
        try:
            path = write_snapshot(
                self.directory,
                arrays,
                self.state.params,
                index,
                position,
                self.before_commit,
                self._dir_fd,
            )
        except OSError as exc:
            self._failed(index, str(exc))
            return
        self._committed(path, index, t0)

    def _failed(self, index: int, error: str) -> None:
        self.failed += 1
        self.last_error = error
        log.error("snapshot at journal index %d failed: %s", index, error)

    def _committed(self, path: Path, index: int, t0: float) -> None:
        """A snapshot is on disk: keep the newest ``keep``, prune, count."""
        try:
            known = [info for info in self._known if info.path != path]
            known.append(SnapshotInfo(path, index))
            known.sort(key=lambda info: info.journal_next_index, reverse=True)
            for info in known[self.keep :]:
                info.path.unlink(missing_ok=True)
            self._known = kept = known[: self.keep]
            if self.after_prune is not None and kept:
                self.after_prune(min(info.journal_next_index for info in kept))
        except OSError as exc:
            self._failed(index, f"pruning after the snapshot: {exc}")
            return
        self.taken += 1
        self.last_index = index
        self.last_write_ms = (time.perf_counter() - t0) * 1e3
        log.info(
            "snapshot %s written in %.0f ms (%s %.1f ms on the engine thread)",
            path.name,
            self.last_write_ms,
            "fork" if self.method == "fork" and self.background else "copy",
            self.last_copy_ms,
        )

    def close(self) -> None:
        """Wait for a snapshot in flight, release the directory descriptor (idempotent)."""
        self.wait()
        self._closer()

    def wait(self) -> None:
        """Wait for a background snapshot in flight."""
        if self._child is not None:
            self._reap(block=True)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def stats(self) -> dict:
        """Counters for the ``stats`` message."""
        return {
            "taken": self.taken,
            "skipped_busy": self.skipped,
            "failed": self.failed,
            "last_index": self.last_index,
            "last_copy_ms": round(self.last_copy_ms, 3),
            "last_write_ms": round(self.last_write_ms, 3),
            "last_error": self.last_error,
        }


FORKED_NICE = 10  # a forked child's niceness above its parent's: the tick thread first


def forked(work: Callable[[], None]) -> int:
    """Run ``work()`` in a child made by ``os.fork()``; return the child's pid.

    The child sees the parent's memory as it was at the fork (copy-on-write). It runs
    only `work` (which must touch no lock, socket or thread of the parent's, and open
    descriptors only with :func:`open_in_child`: the parent's table, full at times, is
    its table; plain system calls and compiled code), at :data:`FORKED_NICE` above the
    parent's niceness (not ``SCHED_IDLE``: a snapshot must finish even while ticks keep
    the CPUs busy), dies with the parent (``PR_SET_PDEATHSIG``), and leaves with
    ``os._exit``: status 0, or an OSError's errno, or 1. Raises OSError if the fork fails.
    """
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        import signal

        if _PRCTL is not None:  # no child outlives its engine
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # it died before that took effect
            os._exit(1)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.nice(FORKED_NICE)  # the child's one thread (fork copies only the caller)
        work()
        status = 0
    except OSError as exc:  # its errno is the exit status: the parent can say why
        status = exc.errno if exc.errno and 0 < exc.errno < 126 else 1
    finally:
        os._exit(status)


def exit_reason(status: int) -> str:
    """What a `forked` child's wait status says (``""`` for success)."""
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return ""
    if code > 1:
        return f"[Errno {code}] {os.strerror(code)}"
    return f"ended with status {code}"
