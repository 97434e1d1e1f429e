"""Argument glue for ``tickpath feed`` and ``tickpath import-bitstamp``.

``tickpath.engine.cli`` adds these to its sub-parsers::

    feed = sub.add_parser("feed", help="publish synthetic or recorded market data")
    add_feed_arguments(feed)
    feed.set_defaults(func=feed_main)
"""

from __future__ import annotations

import argparse
import sys

import msgspec

from tickpath.engine.feed.join import JoinTimeout
from tickpath.engine.feed.publisher import (
    DEFAULT_JOIN_TIMEOUT_S,
    DEFAULT_SNDHWM,
    MAX_BATCH,
    SYNTHETIC_DURATION_S,
    FeedReport,
    check_feed_options,
    run_feed,
)
from tickpath.engine.security.cli import add_client_arguments, client_curve


def add_feed_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``tickpath feed`` options to ``parser``."""
    parser.add_argument(
        "--endpoint",
        help="engine ingest endpoint, e.g. tcp://127.0.0.1:5555 (required unless --record-only "
        "or --discovery)",
    )
    parser.add_argument(
        "--discovery",
        metavar="FILE_OR_URL",
        help="a sharded cluster's discovery file or http://host:port (tickpath mesos run): "
        "each record goes to every replica of its symbol's shard, one stream per shard "
        "(docs/mesos.md)",
    )
    parser.add_argument("--symbols", type=int, default=8, metavar="N", help="symbols (default 8)")
    parser.add_argument(
        "--rate",
        type=float,
        default=100_000,
        metavar="RECORDS_PER_S",
        help="records per second (default 100000); for --replay only without --speed",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=64,
        metavar="N",
        help=f"records per frame, 1..{MAX_BATCH} (default 64; replay keeps the file's frames)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="seconds of schedule to send (default: 10 for a synthetic feed, the whole "
        "recording for --replay; 0: no limit)",
    )
    parser.add_argument(
        "--join-timeout",
        type=float,
        default=DEFAULT_JOIN_TIMEOUT_S,
        metavar="S",
        help="wait up to S seconds for the engine's subscription before the first frame, "
        f"so none is lost (default {DEFAULT_JOIN_TIMEOUT_S:g}; 0: send at once)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no replay progress bar on stderr"
    )
    parser.add_argument("--seed", type=int, default=1, metavar="N", help="generator seed")
    parser.add_argument("--replay", metavar="FILE", help="replay a recording instead of generating")
    parser.add_argument(
        "--speed",
        type=float,
        metavar="X",
        help="replay at the recording's own pacing times X (0: as fast as possible)",
    )
    parser.add_argument("--record", metavar="FILE", help="also write the frames sent to FILE")
    parser.add_argument(
        "--record-only",
        action="store_true",
        help="write --record FILE without sending (unpaced: rate x duration records)",
    )
    parser.add_argument(
        "--bind", action="store_true", help="bind the PUB socket instead of connecting"
    )
    parser.add_argument("--stream-id", type=int, default=1, metavar="N", help="stream id (1)")
    parser.add_argument(
        "--sndhwm",
        type=int,
        default=DEFAULT_SNDHWM,
        metavar="FRAMES",
        help=f"PUB send high-water mark in frames (default {DEFAULT_SNDHWM}; 0: none)",
    )
    parser.add_argument(
        "--max-records", type=int, metavar="N", help="stop after N records (default: no limit)"
    )
    for kind, default in (("trade", 0.1), ("quote", 0.4), ("order", 0.5)):
        parser.add_argument(
            f"--{kind}-ratio",
            type=float,
            default=default,
            metavar="W",
            help=f"relative weight of {kind} events (default {default})",
        )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_client_arguments(parser)


def feed_main(args: argparse.Namespace) -> int:
    """Run ``tickpath feed``; return the process exit status (2 for bad options)."""
    endpoint = None if args.record_only else args.endpoint
    try:
        if args.discovery and (args.endpoint or args.record_only or args.bind):
            raise ValueError(
                "--discovery cannot be combined with --endpoint, --bind or --record-only"
            )
        if args.record_only and args.record is None:
            raise ValueError("--record-only needs --record FILE")
        if args.record_only and args.replay is not None:
            raise ValueError("--record-only cannot be combined with --replay")
        ratios = (args.trade_ratio, args.quote_ratio, args.order_ratio)
        if min(ratios) < 0 or sum(ratios) <= 0:
            raise ValueError("--trade/quote/order-ratio must be >= 0 and not all 0")
        if args.duration is None:
            duration: float | None = SYNTHETIC_DURATION_S if args.replay is None else None
        else:
            duration = args.duration if args.duration != 0 else None
        if not args.join_timeout >= 0:
            raise ValueError(f"--join-timeout must be >= 0 seconds, got {args.join_timeout}")
        curve = client_curve(args)
        check_feed_options(
            endpoint=endpoint,
            symbols=args.symbols,
            rate=args.rate,
            batch=args.batch,
            duration=duration,
            replay=args.replay,
            record=args.record,
            stream_id=args.stream_id,
            speed=args.speed,
            sndhwm=args.sndhwm,
            max_records=args.max_records,
            discovery=args.discovery,
        )
    except ValueError as exc:
        print(f"tickpath feed: error: {exc}", file=sys.stderr)
        return 2
    bar = None
    if args.replay is not None and not args.no_progress and not args.json:
        bar = _ProgressBar(args.replay)
    try:
        report = _run(args, endpoint, duration, curve, bar)
    except JoinTimeout as exc:
        print(f"tickpath feed: error: {exc} (is `tickpath serve` running there?)", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(msgspec.json.encode(report).decode())
    else:
        print(summary(report))
    return 130 if report.interrupted else 0


def summary(report: FeedReport) -> str:
    """The one-line report ``tickpath feed`` prints."""
    whole = ""
    if report.recording_records is not None:
        share = report.records / report.recording_records if report.recording_records else 1.0
        whole = f" of {report.recording_records} in the recording ({share:.1%})"
    if report.sharding is not None:
        shards = report.sharding["shards"]
        undelivered = sum(sh["undelivered"] for sh in shards)
        target = f"{len(shards)} shards ({undelivered} records heard by no replica)"
    else:
        target = report.endpoint or report.recorded_to
    return (
        f"feed {report.source} -> {target}: "
        f"{report.records} records{whole} in {report.frames} frames "
        f"(trade {report.trades}, quote {report.quotes}, order {report.orders}), "
        f"{report.achieved_rate:,.0f} records/s over {report.elapsed_s:.2f} s, "
        f"seq {report.first_seq}..{report.next_seq}, max lag {report.max_lag_s * 1e3:.2f} ms, "
        f"final lag {report.final_lag_s * 1e3:.2f} ms, {report.late_frames} late frames"
        + (f", engine joined after {report.join_s:.2f} s" if report.endpoint else "")
        + (" (interrupted)" if report.interrupted else "")
    )


class _ProgressBar:
    """Replay progress on stderr: a rich bar on a terminal, a line per 10 % elsewhere."""

    def __init__(self, path: str) -> None:
        from pathlib import Path

        self._name = Path(path).name
        self._progress = None
        self._next_tenth = 0
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._progress = Progress(
                f"replay {self._name}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self._task = self._progress.add_task("replay", total=None)
            self._progress.start()

    def __call__(self, sent: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=sent, total=total)
            return
        tenth = 10 * sent // total if total else 10
        if tenth >= self._next_tenth:
            print(f"replay {self._name}: {sent}/{total} records", file=sys.stderr, flush=True)
            self._next_tenth = tenth + 1

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _run(
    args: argparse.Namespace,
    endpoint: str | None,
    duration: float | None,
    curve: tuple[str, str | None] | None,
    progress: _ProgressBar | None,
) -> FeedReport:
    return run_feed(
        endpoint,
        symbols=args.symbols,
        rate=args.rate,
        batch=args.batch,
        duration=duration,
        seed=args.seed,
        replay=args.replay,
        stream_id=args.stream_id,
        bind=args.bind,
        record=args.record,
        speed=args.speed,
        sndhwm=args.sndhwm,
        max_records=args.max_records,
        trade_ratio=args.trade_ratio,
        quote_ratio=args.quote_ratio,
        order_ratio=args.order_ratio,
        curve=curve,
        join_timeout=args.join_timeout,
        progress=progress,
        discovery=args.discovery,
    )


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``tickpath import-bitstamp`` options to ``parser``."""
    parser.add_argument("--out", required=True, metavar="FILE", help="recording to write (.tkp)")
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="where the ob-analytics wheel is downloaded (default ~/.cache/tickpath)",
    )
    parser.add_argument("--symbol", type=int, default=0, metavar="N", help="symbol id (0)")
    parser.add_argument("--stream-id", type=int, default=1, metavar="N", help="stream id (1)")
    parser.add_argument(
        "--batch", type=int, default=64, metavar="N", help="most records per frame (64)"
    )
    parser.add_argument(
        "--stale",
        choices=["drop", "keep"],
        default="drop",
        help="orders that trades print through without filling them: drop them (default) "
        "or keep them (the book is then crossed most of the time)",
    )
    parser.add_argument(
        "--stale-after",
        type=int,
        default=3,
        metavar="N",
        help="an order is stale once N trades printed through it (default 3)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def import_main(args: argparse.Namespace) -> int:
    """Run ``tickpath import-bitstamp``; return the exit status (2 bad options, 1 failure)."""
    from tickpath.engine.feed.bitstamp import BitstampImportError, import_bitstamp

    if not 1 <= args.batch <= MAX_BATCH:
        print(
            f"tickpath import-bitstamp: error: --batch must be in 1..{MAX_BATCH}", file=sys.stderr
        )
        return 2
    if not 0 <= args.symbol <= 0xFFFFFFFF or not 0 <= args.stream_id <= 0xFFFFFFFF:
        print(
            "tickpath import-bitstamp: error: --symbol/--stream-id must fit a u32", file=sys.stderr
        )
        return 2
    try:
        report = import_bitstamp(
            args.out,
            cache_dir=args.cache_dir,
            symbol=args.symbol,
            stream_id=args.stream_id,
            batch=args.batch,
            stale_policy=args.stale,
            stale_after=args.stale_after,
        )
    except ValueError as exc:
        print(f"tickpath import-bitstamp: error: {exc}", file=sys.stderr)
        return 2
    except BitstampImportError as exc:
        print(f"tickpath import-bitstamp: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(msgspec.json.encode(report).decode())
    else:
        print(report.summary())
    return 0
