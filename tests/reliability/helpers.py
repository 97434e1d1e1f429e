"""Shared helpers of the reliability tests: small configs, frame streams, an engine-loop driver."""

from __future__ import annotations

import numpy as np

from tickpath.engine.config import EngineConfig, load_config
from tickpath.engine.feed.synthetic import SyntheticMarket
from tickpath.engine.service.engine import StreamProcessor
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s

SMALL = {
    "analytics.n_symbols": 16,
    "analytics.book_orders": 4096,
    "analytics.vwap_ring": 64,
    "analytics.vol_window": 16,
    "ingest.max_frame_bytes": 65536,
    "ingest.max_streams": 8,
}


def small_config(**overrides: object) -> EngineConfig:
    """A small engine config (fast snapshots); ``overrides`` use dotted keys with ``__``."""
    values = dict(SMALL)
    values.update({key.replace("__", "."): value for key, value in overrides.items()})
    return load_config(None, values)


def processor(config: EngineConfig | None = None) -> StreamProcessor:
    """A warmed-up processor for ``config`` (default: :func:`small_config`)."""
    proc = StreamProcessor(config or small_config())
    proc.warm_up()
    return proc


def market_frames(
    n_frames: int, *, seed: int = 1, symbols: int = 16, stream: int = 1, max_batch: int = 9
) -> list[bytes]:
    """Valid frames of a seeded synthetic market (trades, quotes, L3 orders), contiguous seqs."""
    market = SyntheticMarket(symbols, seed)
    rng = np.random.default_rng(seed)
    frames = []
    seq = 0
    for i in range(n_frames):
        kind, records = market.next_batch(int(rng.integers(1, max_batch + 1)))
        frames.append(codec.encode_frame(kind, stream, seq, records, 1_000 + i))
        seq += len(records)
    return frames


def with_bad_input(frames: list[bytes], *, seed: int = 2, every: int = 7) -> list[bytes | int]:
    """``frames`` with refused input mixed in: garbage, bad headers, duplicates, drops.

    Integers stand for messages refused before the buffer (-2: multipart,
    > max_frame_bytes: oversize), as the receiver reports them.
    """
    rng = np.random.default_rng(seed)
    out: list[bytes | int] = []
    for i, frame in enumerate(frames):
        out.append(frame)
        if i % every:
            continue
        choice = int(rng.integers(0, 8))
        if choice == 0:
            out.append(b"TKPT")  # short
        elif choice == 1:
            out.append(frame[:40])  # bad length
        elif choice == 2:
            bad = bytearray(frame)
            bad[0] ^= 0xFF  # bad magic
            out.append(bytes(bad))
        elif choice == 3:
            out.append(frame)  # duplicate: the kernels reject it by sequence
        elif choice == 4:
            bad = bytearray(frame)
            bad[8:12] = (200).to_bytes(4, "little")  # unknown stream
            out.append(bytes(bad))
        elif choice == 5:
            out.append(-2)  # multipart
        elif choice == 6:
            out.append(1 << 20)  # oversize
        else:
            bad = bytearray(frame)
            bad[s.HEADER_SIZE : s.HEADER_SIZE + 8] = (-1).to_bytes(8, "little", signed=True)
            out[-1] = bytes(bad)  # the frame itself, with a bad first record (bad_timestamp)
    return out


def drive(proc: StreamProcessor, items: list[bytes | int], journal: object = None) -> int:
    """Run ``items`` through ``proc`` exactly as ``Engine.run`` does; return the results made.

    ``journal``: an object with ``on_frame(memoryview, recv_ns)`` / ``on_dropped(int,
    recv_ns)`` (a JournalExtension), called first, as the engine's hooks are, with the
    same ``recv_ns`` the processor gets (0 here: the clock-dependent rules stay off).
    """
    view = memoryview(proc.buffer)
    size = len(proc.buffer)
    results = 0
    for item in items:
        if isinstance(item, int):
            if journal is not None:
                journal.on_dropped(item, 0)
            results += proc.process(item, 0)
            continue
        n = len(item)
        if n <= size:
            proc.buffer[:n] = np.frombuffer(item, np.uint8)
            if journal is not None:
                journal.on_frame(view[:n], 0)
        elif journal is not None:
            journal.on_dropped(n, 0)
        results += proc.process(n, 0)
    return results


def accounting_holds(stats: dict) -> bool:
    """Every frame accepted or rejected; every record of an accepted frame accepted or rejected."""
    return (
        stats["frames_received"] == stats["frames_accepted"] + stats["frames_rejected"]
        and stats["records_received"] == stats["records_accepted"] + stats["records_rejected"]
    )
