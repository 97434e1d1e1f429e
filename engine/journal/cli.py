"""Command-line glue: ``tickpath serve --journal DIR`` and ``tickpath replay``.

``tickpath.engine.cli`` calls :func:`add_serve_arguments` / :func:`serve_overrides` /
:func:`serve_extensions` for ``serve`` and :func:`add_replay_parser` for the
``replay`` command.

``tickpath replay --journal DIR [--from I] [--to J] [--publish ENDPOINT]``
rebuilds the engine state from a journal through the same kernels, in journal
order, and prints a JSON summary with the state's SHA-256 digest.  ``I`` and
``J`` are *journal entry indices* (0 = the first frame ever journaled, counting
every received frame, refused ones included; half-open ``[I, J)``).  The state
is always rebuilt from entry 0 (or, with ``--snapshot``, from the newest
snapshot at or before ``I``), so entry ``I``'s results are exactly those the
live engine computed; only entries ``I .. J-1`` are published and counted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tickpath.engine.journal.config import SYNC_POLICIES, JournalConfig


def _nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _nonnegative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


# ---------------------------------------------------------------------------
# serve
# ---------------------------------------------------------------------------


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The journal flags of ``tickpath serve``."""
    parser.add_argument(
        "--journal",
        metavar="DIR",
        help="journal every received frame to DIR "
        "before processing it, snapshot periodically, recover from DIR at "
        "start (docs/reliability.md)",
    )
    parser.add_argument(
        "--journal-sync",
        choices=SYNC_POLICIES,
        help="when the journal is "
        "fsynced: every frame, every journal.sync_interval_ms (default), or "
        "left to the OS",
    )
    parser.add_argument(
        "--snapshot-interval",
        type=_nonnegative_float,
        metavar="S",
        help="seconds between snapshots (default 60; 0: only at shutdown)",
    )


def serve_overrides(args: argparse.Namespace) -> dict:
    """Config overrides from the journal flags (None values are ignored by load_config)."""
    return {
        "journal.dir": args.journal,
        "journal.sync": args.journal_sync,
        "journal.snapshot_interval_s": args.snapshot_interval,
    }


def serve_extensions(config: JournalConfig) -> list:
    """``[JournalExtension]`` when a journal directory is configured, else ``[]``."""
    if not config.enabled:
        return []
    from tickpath.engine.journal.extension import JournalExtension

    return [JournalExtension(config)]


# ---------------------------------------------------------------------------
# replay
# ---------------------------------------------------------------------------


def add_replay_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``tickpath replay`` to the sub-command parsers."""
    p = sub.add_parser(
        "replay",
        help="replay a journal through the engine (research, audits)",
        description="Rebuild the engine state from a journal, deterministically; optionally "
        "publish the results of entries [--from, --to) as the live engine did.",
    )
    p.add_argument("--journal", required=True, metavar="DIR", help="journal directory")
    p.add_argument(
        "--from",
        dest="start",
        type=_nonnegative_int,
        default=0,
        metavar="I",
        help="first journal entry index to publish and count (default 0)",
    )
    p.add_argument(
        "--to",
        dest="stop",
        type=_nonnegative_int,
        metavar="J",
        help="stop before entry index J (default: the end of the journal)",
    )
    p.add_argument(
        "--publish",
        metavar="ENDPOINT",
        help="bind a PUB socket here and publish "
        "the results (same topics and frames as tickpath serve)",
    )
    p.add_argument(
        "--wait",
        type=_nonnegative_float,
        default=10.0,
        metavar="S",
        help="with --publish: wait up to S seconds for a first subscriber before replaying "
        "(10; 0: do not wait); at the end, up to S seconds for the results to leave",
    )
    p.add_argument(
        "--speed",
        type=_nonnegative_float,
        default=0.0,
        metavar="X",
        help="with --publish: pace by the journal's receive times / X "
        "(0, the default: as fast as possible)",
    )
    p.add_argument(
        "--snapshot",
        action="store_true",
        help="start from the newest snapshot at or before --from instead of entry 0",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="engine config (default: the parameters stored with the journal, engine.json)",
    )
    p.add_argument("--symbols", type=int, metavar="N", help="override analytics.n_symbols")
    p.set_defaults(func=replay_main)


def _replay_config(args: argparse.Namespace) -> object:
    from tickpath.engine.config import load_config
    from tickpath.engine.journal.recovery import read_engine_file

    overrides: dict = {"analytics.n_symbols": args.symbols}
    if args.config is None:
        stored = read_engine_file(args.journal)
        if stored is not None:
            for key, value in stored["analytics"].items():
                overrides.setdefault(f"analytics.{key}", value)
            for key, value in stored["ingest"].items():
                overrides[f"ingest.{key}"] = value
            if args.symbols is None:
                overrides["analytics.n_symbols"] = stored["analytics"]["n_symbols"]
    if args.publish:
        overrides["publish.endpoint"] = args.publish
    return load_config(args.config, overrides)


def replay_main(args: argparse.Namespace) -> int:
    """Run ``tickpath replay``; print a JSON summary; return the exit status."""
    import zmq

    from tickpath.engine.journal.reader import JournalCorruptError, list_segments
    from tickpath.engine.journal.recovery import JournalMismatchError, replay
    from tickpath.engine.journal.snapshot import SnapshotError, load_newest, state_digest
    from tickpath.engine.service.engine import StreamProcessor

    if not Path(args.journal).is_dir() or not list_segments(args.journal):
        print(f"tickpath replay: error: {args.journal} holds no journal", file=sys.stderr)
        return 2
    if args.stop is not None and args.stop < args.start:
        print("tickpath replay: error: --to must be >= --from", file=sys.stderr)
        return 2
    config = _replay_config(args)
    processor = StreamProcessor(config)
    processor.warm_up()
    t0 = time.perf_counter()
    base = 0
    snapshot = None
    if args.snapshot:
        manifest, _problems = load_newest(
            Path(args.journal) / "snapshots", processor.state, max_index=args.start
        )
        if manifest is not None:
            base = manifest["journal_next_index"]
            snapshot = Path(manifest["path"]).name
    first = list_segments(args.journal)[0].first_index
    if base < first:
        from tickpath.engine.journal.snapshot import list_snapshots

        covered = [i.journal_next_index for i in list_snapshots(Path(args.journal) / "snapshots")]
        hint = f"; use --snapshot --from N with N >= {min(covered)}" if covered else ""
        print(
            f"tickpath replay: error: {args.journal}: entries before {first} are no longer in "
            f'the journal (journal.retain = "snapshots" deleted them){hint}',
            file=sys.stderr,
        )
        return 2
    publisher = None
    context = None
    auth = None
    try:
        prefix = replay(processor, args.journal, base, args.start)
        if args.publish:
            from tickpath.engine.service.publisher import ResultPublisher

            context = zmq.Context()
            if config.security.curve:
                from tickpath.engine.security.guard import ConnectionGuard

                auth = ConnectionGuard(context, config.security)
            publisher = ResultPublisher(
                context,
                config.publish,
                config.analytics.n_symbols,
                config.security,
                see_subscribers=True,
            )
            if args.wait > 0 and not publisher.wait_for_subscriber(args.wait):
                print(
                    f"tickpath replay: no subscriber within {args.wait:g} s; publishing anyway",
                    file=sys.stderr,
                )
        pacer = _Pacer(args.speed) if publisher is not None and args.speed > 0 else None
        state = processor.state

        def emit(index: int, n: int) -> None:
            if publisher is not None:
                publisher.publish_results(state, n)

        counts = replay(
            processor,
            args.journal,
            args.start,
            args.stop,
            on_results=emit,
            pace=pacer.wait if pacer is not None else None,
        )
        if publisher is not None:
            publisher.publish_stats(processor.stats(time.time_ns()))
    except (JournalCorruptError, JournalMismatchError, SnapshotError) as exc:
        print(f"tickpath replay: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if publisher is not None:
            publisher.close(flush_s=args.wait)  # context.term() below waits for them
        if auth is not None:
            auth.stop()
        if context is not None:
            context.term()
    seconds = time.perf_counter() - t0
    stats = processor.stats(time.time_ns())
    summary = {
        "journal": str(args.journal),
        "from": args.start,
        "to": args.start + counts.entries,
        "rebuilt_from": {"snapshot": snapshot, "entry": base, "entries_applied": prefix.entries},
        "entries": counts.entries,
        "frames": counts.frames,
        "rejects": counts.rejects,
        "drops": counts.drops,
        "results": counts.results,
        "published": publisher is not None,
        "seconds": round(seconds, 6),
        "state_sha256": state_digest(processor.state),
        "stats": {key: value for key, value in stats.items() if key != "uptime_s"},
    }
    print(json.dumps(summary))
    return 0


class _Pacer:
    """Sleeps so that entries go out at their journaled receive times divided by ``speed``."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.first_ns: int | None = None
        self.t0 = 0.0

    def wait(self, recv_ns: int) -> None:
        if self.first_ns is None:
            self.first_ns = recv_ns
            self.t0 = time.perf_counter()
            return
        due = self.t0 + (recv_ns - self.first_ns) / 1e9 / self.speed
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
