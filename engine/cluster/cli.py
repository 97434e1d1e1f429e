"""``tickpath mesos run|status``: keep engine replicas running on Mesos, and look at them.

``engine/cli.py`` calls :func:`add_mesos_parser` on its subparsers; each leaf parser
sets ``func`` (``args.func(args)`` returns the exit code).  pymesos is imported only
when ``mesos run`` starts, so ``tickpath --help`` works without the ``mesos`` extra.
Failures print one ``tickpath mesos: error: ...`` line (no traceback) and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

from tickpath.engine.cluster.spec import (
    ONE_WEEK_S,
    REDUNDANT_COMMAND,
    Constraint,
    ReplicaResources,
    SchedulerConfig,
)

DEFAULT_STATE_FILE = "tickpath-mesos-state.json"
DEFAULT_DISCOVERY_FILE = "tickpath-endpoints.json"


class CliError(Exception):
    """A user-facing failure: printed as one line."""


def add_mesos_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``mesos run`` and ``mesos status`` on an argparse subparsers object."""
    mesos = subparsers.add_parser(
        "mesos",
        help="run engine replicas on a Mesos cluster",
        description="Keep tickpath engine replicas (one per symbol shard) running on Mesos.",
    )
    sub = mesos.add_subparsers(dest="mesos_command", metavar="{run,status}")
    sub.required = True

    run = sub.add_parser("run", help="run the replica scheduler (until interrupted)")
    run.add_argument("--master", required=True, help="HOST:PORT or zk://H1:2181,H2:2181/mesos")
    run.add_argument("--replicas", type=int, required=True, help="replicas to keep running")
    run.add_argument("--shards", type=int, default=0, help="symbol shards (default: replicas)")
    run.add_argument("--cpus", type=float, default=1.0, help="CPUs per replica")
    run.add_argument("--mem", type=float, default=512.0, help="memory per replica, MB")
    run.add_argument("--gpus", type=int, default=0, help="whole GPUs per replica")
    run.add_argument("--fpgas", type=int, default=0, help="`fpgas` resource per replica")
    run.add_argument(
        "--constraint",
        action="append",
        default=[],
        metavar="ATTR:VALUE",
        help="agent attribute must equal VALUE, or ATTR:UNIQUE (repeatable)",
    )
    run.add_argument(
        "--colocate",
        action="store_true",
        help="allow several replicas per host (no hostname:UNIQUE)",
    )
    run.add_argument(
        "--framework-id-file",
        default=DEFAULT_STATE_FILE,
        metavar="PATH",
        help=f"framework id and tasks, kept across restarts (default {DEFAULT_STATE_FILE})",
    )
    run.add_argument(
        "--zk-state-path",
        default="/tickpath/scheduler",
        metavar="ZNODE",
        help="with a zk:// master, also keep the state in this ZooKeeper node",
    )
    run.add_argument("--name", default="tickpath", help="framework name")
    run.add_argument("--role", default="*", help="Mesos role")
    run.add_argument("--user", default="", help="user the tasks run as (default: yours)")
    run.add_argument(
        "--failover-timeout",
        type=float,
        default=ONE_WEEK_S,
        metavar="SECONDS",
        help="how long the master keeps the replicas after the scheduler vanishes (one week)",
    )
    run.add_argument("--no-checkpoint", action="store_true", help="do not checkpoint tasks")
    run.add_argument(
        "--command",
        default=None,
        help="replica command template ({ingest_port} {publish_port} {shard} {shards} {slot} "
        "{state_port} {state_from})",
    )
    run.add_argument("--kill-grace", type=float, default=10.0, metavar="SECONDS")
    run.add_argument("--heartbeat-timeout", type=float, default=45.0, metavar="SECONDS")
    run.add_argument("--reconcile-settle", type=float, default=3.0, metavar="SECONDS")
    run.add_argument("--refuse-seconds", type=float, default=5.0, metavar="SECONDS")
    run.add_argument("--backoff", type=float, default=1.0, metavar="SECONDS")
    run.add_argument("--discovery-file", default=DEFAULT_DISCOVERY_FILE, metavar="PATH")
    run.add_argument("--discovery-http", default=None, metavar="HOST:PORT")
    run.add_argument("--register-timeout", type=float, default=60.0, metavar="SECONDS")
    run.add_argument("--verbose", action="store_true", help="log tracebacks and debug output")
    run.set_defaults(func=run_command)

    status = sub.add_parser("status", help="show the replicas and their endpoints")
    status.add_argument(
        "--discovery",
        default=DEFAULT_DISCOVERY_FILE,
        metavar="PATH|URL",
        help="the scheduler's discovery file or http://HOST:PORT",
    )
    status.add_argument("--json", action="store_true", help="print the raw document")
    status.set_defaults(func=status_command)
    return mesos


def config_from_args(args: argparse.Namespace) -> SchedulerConfig:
    """Build the scheduler configuration from ``mesos run`` arguments."""
    constraints = [Constraint.parse(c) for c in args.constraint]
    if not args.colocate and not any(c.attribute == "hostname" and c.unique for c in constraints):
        constraints.append(Constraint(attribute="hostname", value="UNIQUE"))
    extra = {"command": args.command} if args.command else {}
    if not args.command and args.replicas > (args.shards or args.replicas):
        extra = {"command": REDUNDANT_COMMAND}  # twins: a relaunched one takes the other's state
    return SchedulerConfig(
        replicas=args.replicas,
        shards=args.shards,
        resources=ReplicaResources(cpus=args.cpus, mem=args.mem, gpus=args.gpus, fpgas=args.fpgas),
        constraints=tuple(constraints),
        framework_name=args.name,
        role=args.role,
        user=args.user,
        failover_timeout=args.failover_timeout,
        checkpoint=not args.no_checkpoint,
        kill_grace_period=args.kill_grace,
        heartbeat_timeout=args.heartbeat_timeout,
        reconcile_settle=args.reconcile_settle,
        refuse_seconds=args.refuse_seconds,
        backoff_initial=args.backoff,
        **extra,
    )


class _PymesosLogFilter(logging.Filter):
    """Keeps pymesos' tracebacks off the terminal (unless --verbose); remembers the last one."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose
        self.errors: list[str] = []

    @property
    def last_error(self) -> str | None:
        """The master's own answer when pymesos logged one (``HTTP 403 ...``), else the last error.

        pymesos can log a secondary error of its own after the master's answer
        (seen: "can't concat str to bytes" while it tears the stream down), and
        that says nothing to a user.
        """
        for error in reversed(self.errors):
            if "HTTP" in error:
                return error
        if self.errors and "concat str to bytes" in self.errors[-1]:
            # pymesos 0.3.15 reading a 4xx whose body came after its headers
            return "a 4xx answer that pymesos could not quote (see the master's log)"
        return self.errors[-1] if self.errors else None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(str(record.exc_info[1]).strip().splitlines()[0])
            if not self.verbose:
                record.exc_info = None
                record.exc_text = None
        return True


def _fail(message: str) -> int:
    print(f"tickpath mesos: error: {message}", file=sys.stderr)
    return 2


def run_command(args: argparse.Namespace) -> int:
    """``mesos run``: start the scheduler and keep it running until SIGINT/SIGTERM."""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = config_from_args(args)
    except ValueError as exc:
        return _fail(str(exc))
    if args.master.startswith(("http://", "https://")):
        return _fail("--master is HOST:PORT or zk://HOSTS/PATH (pymesos cannot use http:// URIs)")

    from tickpath.engine.cluster.discovery import DiscoveryPublisher
    from tickpath.engine.cluster.framework import FrameworkRunner, MasterUnreachable, import_pymesos
    from tickpath.engine.cluster.store import FileStore, MultiStore, StateStore, zk_hosts_and_root

    try:
        import_pymesos()  # now, so that its log handler exists for the filter below
    except RuntimeError as exc:
        return _fail(str(exc))
    log_filter = _PymesosLogFilter(args.verbose)
    pymesos_log = logging.getLogger("pymesos")
    pymesos_log.propagate = False  # it has its own stderr handler: print once
    for handler in pymesos_log.handlers:
        handler.addFilter(log_filter)
    stop = threading.Event()
    runner = None
    try:
        stores: list[StateStore] = [FileStore(args.framework_id_file)]
        if args.master.startswith(("zk://", "zoo://")):
            from tickpath.engine.cluster.store import ZooKeeperStore

            hosts, _ = zk_hosts_and_root(args.master)
            try:
                stores.insert(0, ZooKeeperStore(hosts, args.zk_state_path))
            except Exception as exc:  # kazoo's timeout and connection errors
                return _fail(f"ZooKeeper {hosts} unreachable: {exc}")
        runner = FrameworkRunner(
            config,
            args.master,
            store=MultiStore(stores),
            discovery=DiscoveryPublisher(args.discovery_file, args.discovery_http),
        )

        def on_signal(signum: int, frame: object) -> None:
            # pymesos' dying I/O thread "interrupts" the main thread (SIGINT): the loop below
            # reports that case; a real SIGINT/SIGTERM stops us (with failover).
            if not runner.driver_aborted:
                stop.set()

        signal.signal(signal.SIGINT, on_signal)  # replaces pymesos' handler
        signal.signal(signal.SIGTERM, on_signal)
        runner.start()
        started = time.monotonic()
        while not stop.wait(0.2):
            if runner.fatal_error:
                return _fail(runner.fatal_error)
            if runner.driver_aborted:
                return _fail(f"master {args.master} refused the framework: {log_filter.last_error}")
            if not runner.wait_registered(0) and time.monotonic() - started > args.register_timeout:
                detail = f" ({log_filter.last_error})" if log_filter.last_error else ""
                return _fail(
                    f"master {args.master} did not register the framework "
                    f"within {args.register_timeout:g} s{detail}"
                )
        return 0
    except MasterUnreachable as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(str(exc))
    finally:
        if runner is not None:
            try:
                runner.stop(failover=True)
            except Exception as exc:  # noqa: BLE001 (the exit must not turn into a traceback)
                print(f"tickpath mesos: warning: clean stop failed: {exc}", file=sys.stderr)


def status_command(args: argparse.Namespace) -> int:
    """``mesos status``: print the replicas from the discovery file or URL."""
    import json

    from tickpath.engine.cluster.discovery import read_discovery

    try:
        document = read_discovery(args.discovery)
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read discovery {args.discovery}: {exc}")
    if args.json:
        print(json.dumps(document, indent=1, sort_keys=True))
        return 0
    endpoints = document.get("endpoints", [])
    age = time.time() - float(document.get("updated_unix", 0))
    print(
        f"framework {document.get('framework_id')}  phase {document.get('phase')}  "
        f"connected {document.get('connected')}  replicas {len(endpoints)}/"
        f"{document.get('replicas')} running  updated {age:.0f} s ago"
    )
    print(f"{'shard':>7}  {'slot':>4}  {'host':<20} {'ingest':<28} {'publish':<28} task")
    for e in endpoints:
        print(
            f"{e['shard']:>3}/{e['shards']:<3}  {e['slot']:>4}  {e['hostname']:<20} "
            f"{e['ingest']:<28} {e['publish']:<28} {e['task_id']}"
        )
    for u in document.get("unplaced", []):
        wait = f"backoff {u['backoff_s']:.1f} s" if u["waiting"] == "backoff" else u["waiting"]
        print(f"unplaced: shard {u['shard']} slot {u['slot']}, waiting for {wait}")
        for rule, r in u.get("declined_by_rule", {}).items():
            print(
                f"  declined by {rule}: {r['detail']} ({r['count']} offers, last from "
                f"{r['last_host']} {r['seconds_ago']:.0f} s ago)"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m tickpath.engine.cluster mesos ...``)."""
    parser = argparse.ArgumentParser(prog="python -m tickpath.engine.cluster")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_mesos_parser(subparsers)
    args = parser.parse_args(argv)
    return args.func(args)
