"""Rebuilding engine state from a journal: snapshot + replay of the entries after it.

Replay feeds every entry through the same :meth:`StreamProcessor.process` the
live engine ran, in journal order, so the kernels re-apply the header,
sequence and record rules exactly as they did live:

* FRAME: the frame's bytes go into the processor's buffer, then ``process``;
* REJECT: the stored header bytes go into the buffer and ``process`` is called
  with the refused frame's original length (the kernels' verdict on such a
  frame depends on nothing else);
* DROP: ``process`` with the receiver's code (multipart, oversize).

``recv_ns`` is the journal's timestamp of the entry, which is the same stamp
the live engine handed the kernels with that frame: the rules that read it
(a record's clock skew, a session's failover after silence) decide alike in
replay, and the per-stream ``S_LAST_NS`` it leaves in the state is identical.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from tickpath.engine.config import ConfigError
from tickpath.engine.journal import format as fmt
from tickpath.engine.journal.reader import OpenedJournal, iter_entries
from tickpath.engine.journal.snapshot import load_newest, params_dict

if TYPE_CHECKING:
    from tickpath.engine.config import EngineConfig
    from tickpath.engine.service.engine import StreamProcessor

log = logging.getLogger("tickpath.journal")

ENGINE_FILE = "engine.json"  # the parameters the journal's frames must be replayed with


class JournalMismatchError(ConfigError):
    """The journal directory was written with other engine parameters (a config problem)."""


class RecoveryReport(msgspec.Struct, kw_only=True):
    """What recovery did at start-up."""

    snapshot: str | None  # file name of the snapshot loaded, None: replayed from entry 0
    snapshot_index: int  # journal entries the snapshot covered
    replayed_entries: int
    replayed_frames: int
    replayed_rejects: int
    replayed_drops: int
    next_index: int  # where appending resumes
    seconds: float
    repairs: list[str]  # torn or corrupt tails cut off the journal
    skipped_snapshots: list[str]  # newer snapshots that could not be used, and why


def apply_entry(
    processor: StreamProcessor, entry_type: int, payload: Any, recv_ns: int, flags: int = 0
) -> int:
    """Run one journal entry through ``processor``; return the number of results.

    A FRAME's ``flags`` is its slice index (engine/ingest/slicer.py): 0 for a whole frame.
    """
    buffer = processor.buffer
    if entry_type == fmt.ENTRY_FRAME:
        n = len(payload)
        buffer[:n] = payload
        return processor.process(n, recv_ns, flags)
    if entry_type == fmt.ENTRY_REJECT:
        (nbytes,) = fmt.REJECT_PREFIX.unpack_from(payload)
        head = payload[fmt.REJECT_PREFIX.size :]
        buffer[: len(head)] = head
        return processor.process(nbytes, recv_ns)
    if entry_type == fmt.ENTRY_DROP:
        (nbytes,) = fmt.DROP_PAYLOAD.unpack_from(payload)
        return processor.process(nbytes, recv_ns)
    raise ValueError(f"unknown journal entry type {entry_type}")


class ReplayCounts(msgspec.Struct, kw_only=True):
    """Entries replayed by :func:`replay`, by type."""

    entries: int = 0
    frames: int = 0
    rejects: int = 0
    drops: int = 0
    results: int = 0
    last_index: int = -1


def replay(
    processor: StreamProcessor,
    directory: str | os.PathLike[str],
    start: int = 0,
    stop: int | None = None,
    *,
    start_hint: tuple[str, int] | None = None,
    on_results: Callable[[int, int], None] | None = None,
    pace: Callable[[int], None] | None = None,
) -> ReplayCounts:
    """Apply journal entries ``start <= index < stop`` to ``processor``.

    ``on_results(index, n)`` is called after every entry that produced results
    (they are in the processor's output arrays until the next entry);
    ``pace(recv_ns)`` before every entry (e.g. to replay in real time).
    """
    counts = ReplayCounts()
    for entry in iter_entries(directory, start, stop, start_hint=start_hint):
        if pace is not None:
            pace(entry.recv_ns)
        n = apply_entry(processor, entry.type, entry.payload, entry.recv_ns, entry.flags)
        counts.entries += 1
        counts.last_index = entry.index
        if entry.type == fmt.ENTRY_FRAME:
            counts.frames += 1
        elif entry.type == fmt.ENTRY_REJECT:
            counts.rejects += 1
        else:
            counts.drops += 1
        if n:
            counts.results += n
            if on_results is not None:
                on_results(entry.index, n)
    return counts


def recover(
    processor: StreamProcessor, directory: str | os.PathLike[str], opened: OpenedJournal
) -> RecoveryReport:
    """Load the newest usable snapshot into ``processor`` and replay the journal after it.

    ``opened`` is :func:`~tickpath.engine.journal.reader.open_journal`'s view of the
    directory (torn tail already cut).  Raises
    :class:`~tickpath.engine.journal.reader.JournalCorruptError` if the entries to
    replay cannot be read whole.
    """
    t0 = time.perf_counter()
    directory = Path(directory)
    manifest, skipped = load_newest(
        directory / "snapshots", processor.state, max_index=opened.next_index
    )
    start = manifest["journal_next_index"] if manifest else 0
    position = manifest.get("journal_position") if manifest else None
    hint = (position[0], int(position[1])) if position else None
    if start == 0 and opened.segments and opened.segments[0].first_index > 0:
        raise JournalMismatchError(
            f"{directory}: the journal starts at entry {opened.segments[0].first_index} and "
            "no snapshot covers the entries before it"
        )
    counts = replay(processor, directory, start, opened.next_index, start_hint=hint)
    if start + counts.entries != opened.next_index:
        raise JournalMismatchError(
            f"{directory}: replayed {counts.entries} entries from {start}, "
            f"but the journal ends at {opened.next_index}"
        )
    report = RecoveryReport(
        snapshot=Path(manifest["path"]).name if manifest and "path" in manifest else None,
        snapshot_index=start,
        replayed_entries=counts.entries,
        replayed_frames=counts.frames,
        replayed_rejects=counts.rejects,
        replayed_drops=counts.drops,
        next_index=opened.next_index,
        seconds=round(time.perf_counter() - t0, 6),
        repairs=[r.describe() for r in opened.repairs],
        skipped_snapshots=skipped,
    )
    return report


def engine_parameters(config: EngineConfig, processor: StreamProcessor) -> dict:
    """What a journal's frames mean: the parameters replay must use (``engine.json``)."""
    return {
        "format": 1,
        "params": params_dict(processor.state.params),
        "analytics": msgspec.to_builtins(config.analytics),
        "ingest": {
            "max_frame_bytes": config.ingest.max_frame_bytes,
            "max_streams": config.ingest.max_streams,
        },
    }


def check_engine_file(directory: str | os.PathLike[str], parameters: dict) -> None:
    """Write ``engine.json`` in a new journal directory, or check an existing one matches."""
    path = Path(directory) / ENGINE_FILE
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise JournalMismatchError(f"cannot read {path}: {exc}") from None
        if stored.get("params") != parameters["params"]:
            want = parameters["params"]
            diff = sorted(key for key in want if stored.get("params", {}).get(key) != want[key])
            raise JournalMismatchError(
                f"journal {directory} was written with other analytics/ingest parameters "
                f"({', '.join(diff)} differ): use the same config, or another directory"
            )
        return
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w") as f:
        json.dump(parameters, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def read_engine_file(directory: str | os.PathLike[str]) -> dict | None:
    """The parameters stored with a journal, or None if there is no ``engine.json``."""
    path = Path(directory) / ENGINE_FILE
    return json.loads(path.read_text()) if path.exists() else None
