"""The ``tickpath`` command line: serve, feed, watch, demo and the tools around them.

The command names and flags are a contract other tools script against.  Bad
flags and bad configs end with one line on stderr and exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

import zmq

from tickpath.engine.cluster import state_transfer
from tickpath.engine.config import ConfigError, load_config, parse_setting
from tickpath.engine.dispatch import cli as dispatch_cli
from tickpath.engine.journal import cli as journal_cli
from tickpath.engine.security import cli as security_cli


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


class UsageError(Exception):
    """A bad value found after parsing; reported as one line, exit status 2."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _setting(text: str) -> tuple[str, object]:
    try:
        return parse_setting(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


# ---------------------------------------------------------------------------
# serve
# ---------------------------------------------------------------------------


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the engine: ingest market data, publish analytics",
        description="Run the streaming engine: SUB on --ingest, results and stats on --publish.",
    )
    p.add_argument("--ingest", metavar="ENDPOINT", action="append", help="ingest endpoint "
                   "(repeatable; default tcp://127.0.0.1:5555); the engine binds it")  # fmt: skip
    p.add_argument("--publish", metavar="ENDPOINT", help="result endpoint the engine binds "
                   "(default tcp://127.0.0.1:5556)")  # fmt: skip
    p.add_argument("--config", metavar="FILE", help="TOML config file (flags override it)")
    p.add_argument("--symbols", type=_positive_int, metavar="N", help="symbol ids 0..N-1")
    p.add_argument("--symbols-shard", metavar="I/N", help="serve only symbol shard I of N "
                   "(symbol %% N == I; records of other shards are refused as foreign_shard; "
                   "set by the cluster scheduler); same as --set ingest.shard='I/N'")  # fmt: skip
    p.add_argument("--duration", type=_positive_float, metavar="S", help="stop after S seconds")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--set", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, VALUE as TOML (repeatable), e.g. "
                   "--set dispatch.lanes.stream.max_wait_ms=0.5")  # fmt: skip
    fpga = p.add_mutually_exclusive_group()
    fpga.add_argument("--fpga-overlay", metavar="PATH", help="stream tick features through "
                      "the FPGA overlay PATH.bit (needs pynq and a board)")  # fmt: skip
    fpga.add_argument("--fpga-emulate", action="store_true", help="run the FPGA tick-features "
                      "path on the bit-exact golden model (no board)")  # fmt: skip
    p.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics on "
                   "http://HOST:PORT/metrics (the 'metrics' extra)")  # fmt: skip
    journal_cli.add_serve_arguments(p)
    security_cli.add_serve_arguments(p)
    dispatch_cli.add_serve_arguments(p)
    state_transfer.add_serve_arguments(p)
    p.set_defaults(func=_serve_main)


def _serve_main(args: argparse.Namespace) -> int:
    from tickpath.engine.service.engine import Engine

    overrides = {
        "ingest.endpoints": args.ingest,
        "publish.endpoint": args.publish,
        "analytics.n_symbols": args.symbols,
        "ingest.shard": args.symbols_shard,
        "log_level": args.log_level,
        **dispatch_cli.serve_overrides(args),
        **journal_cli.serve_overrides(args),
        **security_cli.serve_overrides(args),
        **dict(args.set),  # the most specific: --set wins over every other flag
    }
    config = load_config(args.config, overrides)
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    # security first (its ZAP handler must run before any socket opens), then the
    # journal (recovery before the others start; frames journaled before anything else)
    extensions = security_cli.serve_extensions(config.security)
    extensions += journal_cli.serve_extensions(config.journal)
    if args.fpga_overlay or args.fpga_emulate:
        from tickpath.engine.backends.fpga import FpgaUnavailableError
        from tickpath.engine.backends.fpga.micro import fpga_extension

        try:
            extensions.append(
                fpga_extension(args.fpga_overlay, args.fpga_emulate, config.analytics.n_symbols)
            )
        except FpgaUnavailableError as exc:
            raise UsageError(f"FPGA overlay: {exc}") from None
    extensions += dispatch_cli.serve_extensions(config)  # milli path, request endpoint
    if args.metrics:
        extensions.append(_metrics_extension(args.metrics))
    try:  # a relaunched replica's state from its twin (docs/mesos.md)
        transfer = state_transfer.serve_extension(args, config.journal.dir)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if transfer is not None:
        extensions.append(transfer)
    engine = Engine(config, extensions=extensions)
    engine.start()
    if transfer is not None:
        transfer.bootstrap(engine)  # ingest open, loop not yet running: frames queue
    if args.symbols_shard:
        logging.getLogger("tickpath.engine").info("serving symbol shard %s", args.symbols_shard)

    def _stop(signum: int, frame: object) -> None:
        engine.stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        engine.run(args.duration)
    finally:
        stats = engine.stats()
        engine.close()
        logging.getLogger("tickpath.engine").info(
            "stopped: %d frames, %d records accepted, %d gaps, %d lost, %d rejected frames",
            stats["frames_received"],
            stats["records_accepted"],
            stats["gaps"],
            stats["records_lost"],
            stats["frames_rejected"],
        )
    return 0


def _metrics_extension(address: str) -> object:
    from tickpath.engine.service.metrics import MetricsExtension, parse_address

    try:
        host, port = parse_address(address)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise UsageError(
            "--metrics needs prometheus_client: pip install 'tickpath[metrics]'"
        ) from None
    return MetricsExtension(host, port)


# ---------------------------------------------------------------------------
# watch
# ---------------------------------------------------------------------------


def _add_watch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch",
        help="subscribe to results and print them",
        description="Subscribe to an engine's results (and stats) and print them.",
    )
    p.add_argument("--endpoint", metavar="ENDPOINT", action="append",
                   help="result endpoint to connect to (repeatable)")  # fmt: skip
    p.add_argument("--discovery", metavar="FILE_OR_URL", help="follow every shard listed by "
                   "a Mesos scheduler's discovery file or http:// endpoint; with redundant "
                   "replicas, the first copy of each result is shown")  # fmt: skip
    p.add_argument("--topic", metavar="PREFIX", action="append", help="topic prefix, e.g. "
                   "trade. or book.3 or stats (repeatable; default: everything)")  # fmt: skip
    p.add_argument("--count", type=_positive_int, metavar="N", help="exit after N messages")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--timeout", type=_positive_float, metavar="S",
                   help="exit after S seconds without a message")  # fmt: skip
    security_cli.add_client_arguments(p)
    p.set_defaults(func=_watch_main)


def _watch_main(args: argparse.Namespace) -> int:
    from tickpath.engine.service.watch import watch

    endpoints = list(args.endpoint or [])
    if args.discovery:
        from tickpath.engine.cluster.discovery import follow_endpoints

        try:
            endpoints += follow_endpoints(args.discovery)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read discovery {args.discovery}: {exc}") from None
        if not endpoints:
            raise UsageError(f"discovery {args.discovery} lists no running replica")
    if not endpoints:
        raise UsageError("give --endpoint ENDPOINT or --discovery FILE_OR_URL")
    try:
        curve = security_cli.client_curve(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    # replicas of one shard publish the same results: show the first copy of each
    return watch(
        endpoints, args.topic or [""], args.count, args.json, args.timeout, curve,
        first_copy_only=bool(args.discovery), discovery=args.discovery,
    )  # fmt: skip


# ---------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="feed, engine and a live terminal view on this machine",
        description="Start a synthetic feed and an engine on loopback and show live analytics.",
    )
    p.add_argument("--duration", type=_positive_float, default=20.0, metavar="S")
    p.add_argument("--symbols", type=_positive_int, default=8, metavar="N")
    p.add_argument("--rate", type=_positive_float, default=20_000.0, metavar="RECORDS_PER_S")
    p.set_defaults(func=_demo_main)


def _demo_main(args: argparse.Namespace) -> int:
    from tickpath.engine.service.demo import run_demo

    return run_demo(args.duration, args.symbols, args.rate)


# ---------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The full ``tickpath`` argument parser."""
    parser = _Parser(prog="tickpath", description="Low-latency trading analytics engine.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_serve(sub)
    _add_optional_commands(sub)
    _add_watch(sub)
    _add_demo(sub)
    from tickpath.engine.cluster.cli import add_mesos_parser

    add_mesos_parser(sub)
    dispatch_cli.add_request_parser(sub)
    journal_cli.add_replay_parser(sub)
    security_cli.add_keys_parser(sub)
    from tickpath.engine.bench.cli import add_bench_parser

    add_bench_parser(sub)
    return parser


def _add_optional_commands(sub: argparse._SubParsersAction) -> None:
    from tickpath.engine.feed.cli import (
        add_feed_arguments,
        add_import_arguments,
        feed_main,
        import_main,
    )

    feed = sub.add_parser(
        "feed",
        help="publish a synthetic market or replay a recording",
        description="Publish market data frames: a seeded synthetic market, or --replay FILE.",
    )
    add_feed_arguments(feed)
    feed.set_defaults(func=feed_main)
    imp = sub.add_parser(
        "import-bitstamp",
        help="import the Bitstamp L3 sample (fetched from PyPI) as a recording",
        description="Fetch ob-analytics (GPL sample data, never committed) and convert it.",
    )
    add_import_arguments(imp)
    imp.set_defaults(func=import_main)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tickpath``; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, UsageError) as exc:
        print(f"tickpath {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, zmq.ZMQError) as exc:
        print(f"tickpath {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
