"""Which replica shard owns a symbol: the shard map, known to scheduler, replicas and clients.

Two forms, one function ``shard_of``:

* ``ShardMap.modulo(S)``: symbol ``s`` belongs to shard ``s % S`` (the default; even for
  dense symbol ids);
* ``ShardMap.from_file(path)``: a JSON map for uneven universes, ``{"shards": S,
  "symbols": {"17": 0, "42": 3, ...}}``; symbols not listed fall back to ``s % S``.

The map is validated once when built.  ``shard_of`` is vectorised over a numpy array
of symbol ids (one call per frame, no per-record Python).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MAX_SHARDS = 4096
MAX_MAPPED_SYMBOLS = 1 << 20  # entries in a map file (a dense lookup table is built)


class ShardMapError(ValueError):
    """A shard specification or map file that cannot be used (the message says why)."""


class ShardMap:
    """A function from symbol id (u32) to shard index in ``0..shards-1``."""

    def __init__(self, shards: int, overrides: dict[int, int] | None = None) -> None:
        if not 1 <= shards <= MAX_SHARDS:
            raise ShardMapError(f"shards must be in 1..{MAX_SHARDS}, got {shards}")
        self.shards = shards
        overrides = dict(overrides or {})
        if len(overrides) > MAX_MAPPED_SYMBOLS:
            raise ShardMapError(f"a map file may list at most {MAX_MAPPED_SYMBOLS} symbols")
        for symbol, shard in overrides.items():
            if not 0 <= symbol < 1 << 32:
                raise ShardMapError(f"symbol {symbol} is not a u32 symbol id")
            if not 0 <= shard < shards:
                raise ShardMapError(f"symbol {symbol}: shard {shard} is not in 0..{shards - 1}")
        self.overrides = overrides
        # dense table over the listed ids: the vectorised lookup stays one gather
        size = max(overrides) + 1 if overrides else 0
        self._table = np.arange(size, dtype=np.int64) % shards
        for symbol, shard in overrides.items():
            self._table[symbol] = shard

    @classmethod
    def modulo(cls, shards: int) -> ShardMap:
        """Symbol ``s`` -> shard ``s % shards``."""
        return cls(shards)

    @classmethod
    def from_file(cls, path: str | Path) -> ShardMap:
        """Load a JSON map file ``{"shards": S, "symbols": {"<id>": shard, ...}}``."""
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ShardMapError(f"shard map {path}: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("shards"), int):
            raise ShardMapError(f"shard map {path}: needs an integer 'shards'")
        symbols = doc.get("symbols", {})
        if not isinstance(symbols, dict):
            raise ShardMapError(f"shard map {path}: 'symbols' must be an object")
        try:
            overrides = {int(k): int(v) for k, v in symbols.items()}
        except (TypeError, ValueError):
            raise ShardMapError(
                f"shard map {path}: symbol ids and shards must be integers"
            ) from None
        return cls(doc["shards"], overrides)

    def to_json(self) -> dict:
        """The map file form (``from_file`` reads it back)."""
        return {"shards": self.shards, "symbols": {str(k): v for k, v in self.overrides.items()}}

    def shard_of(self, symbols: np.ndarray) -> np.ndarray:
        """Shard index (int64) of each symbol id in ``symbols``."""
        ids = np.asarray(symbols).astype(np.int64, copy=False)
        out = ids % self.shards
        if len(self._table):
            listed = ids < len(self._table)
            out[listed] = self._table[ids[listed]]
        return out

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ShardMap)
            and other.shards == self.shards
            and other.overrides == self.overrides
        )

    def __repr__(self) -> str:
        return f"ShardMap(shards={self.shards}, mapped={len(self.overrides)})"


def parse_shard(spec: str) -> tuple[int, int]:
    """Parse ``I/N`` (shard ``I`` of ``N``); raise :class:`ShardMapError` with the reason."""
    index, sep, count = spec.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise ShardMapError(f"shard must be I/N with integers, got {spec!r}") from None
    if not sep or not 1 <= n <= MAX_SHARDS or not 0 <= i < n:
        raise ShardMapError(f"shard must be I/N with 0 <= I < N <= {MAX_SHARDS}, got {spec!r}")
    return i, n
