"""Argument glue for ``tickpath bench latency|ingest|kernels``.

``tickpath.engine.cli`` registers the command with one call (the heavy modules are
imported only when a benchmark runs, so ``tickpath --help`` stays fast)::

    add_bench_parser(sub)   # sub: the tickpath sub-parsers

Bad flags end with one line on stderr and exit status 2; a benchmark that
cannot run ends with one line and status 1, as does a failed self-check
(after its report); Ctrl-C stops every child process and exits with 130.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from collections.abc import Callable
from typing import Any


class _OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors (as ``tickpath``'s own parser)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(kind: Callable[[str], Any], minimum: float, inclusive: bool = False) -> Callable:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text}")
        if value < minimum or (value == minimum and not inclusive):
            op = ">=" if inclusive else ">"
            raise argparse.ArgumentTypeError(f"must be {op} {minimum:g}, got {text}")
        return value

    return parse


_positive_float = _number(float, 0.0)
_non_negative_float = _number(float, 0.0, inclusive=True)
_positive_int = _number(int, 1, inclusive=True)
_non_negative_int = _number(int, 0, inclusive=True)


def add_bench_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench`` and its sub-commands on ``subparsers``; return the ``bench`` parser."""
    parser_class = getattr(subparsers, "_parser_class", argparse.ArgumentParser)
    if parser_class is argparse.ArgumentParser:  # keep errors to one line
        parser_class = _OneLineParser
    bench = subparsers.add_parser(
        "bench",
        help="self-checking benchmarks: latency, ingest, kernels",
        description="Self-checking benchmarks; each fails (status 1) when its check fails.",
    )
    sub = bench.add_subparsers(dest="bench_command", metavar="BENCHMARK", parser_class=parser_class)
    sub.required = True

    lat = sub.add_parser(
        "latency",
        help="tick-to-result latency: publisher -> tickpath serve -> subscriber, vs raw pyzmq",
        description="Open-loop tick-to-result latency through `tickpath serve` (separate "
        "processes, tcp loopback), next to a raw pyzmq echo with the same hops and message "
        "sizes, in alternating slices of one run. Latency is measured from each tick's "
        "intended send time.",
    )
    lat.add_argument(
        "--rate",
        type=_positive_float,
        default=5000.0,
        metavar="TICKS_PER_S",
        help="open-loop rate, ticks per second (default 5000)",
    )
    lat.add_argument(
        "--duration",
        type=_positive_float,
        default=10.0,
        metavar="S",
        help="measured seconds per topology (default 10)",
    )
    lat.add_argument(
        "--warmup",
        type=_non_negative_float,
        default=1.0,
        metavar="S",
        help="excluded seconds per topology, before the measured (default 1)",
    )
    lat.add_argument(
        "--batch",
        type=_positive_int,
        default=1,
        metavar="N",
        help="records per frame (default 1: single-record frames)",
    )
    lat.add_argument(
        "--symbols",
        type=_positive_int,
        default=8,
        metavar="N",
        help="symbols of the synthetic market (default 8)",
    )
    lat.add_argument("--seed", type=int, default=1, metavar="N", help="market seed (default 1)")
    lat.add_argument(
        "--slice",
        type=_positive_float,
        default=0.5,
        metavar="S",
        dest="slice_s",
        help="engine and baseline alternate every S seconds (default 0.5)",
    )
    lat.add_argument(
        "--spin-us",
        type=_non_negative_float,
        default=50.0,
        metavar="US",
        help="publisher sleeps until US before each due time, then busy-waits (default 50, "
        "at most a quarter of the frame interval; 0: sleep only, which wakes tens of us late)",
    )
    lat.add_argument(
        "--drain",
        type=_positive_float,
        default=1.0,
        metavar="S",
        dest="drain_s",
        help="the subscriber listens S seconds after the last frame (default 1; at least 0.6)",
    )
    lat.add_argument(
        "--fpga-emulate",
        action="store_true",
        help="serve --fpga-emulate: also measure the FPGA core's golden model (micro path)",
    )
    lat.add_argument(
        "--chains",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="the engine also reprices an option chain per underlying, symbols 0..N-1, on "
        "the milli path, and tick -> chain result latency is measured (default 0: off)",
    )
    lat.add_argument(
        "--chain-size",
        type=_positive_int,
        default=100,
        metavar="M",
        help="contracts per chain (default 100)",
    )
    lat.add_argument(
        "--engine-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to the engine as serve --set KEY=VALUE (repeatable), e.g. "
        "dispatch.lanes.stream.max_wait_ms=1 to measure a setting",
    )
    lat.add_argument("--json", metavar="FILE", help="write every figure as JSON")
    lat.add_argument("--plot", metavar="FILE.png", help="write the percentile distribution")
    lat.set_defaults(func=_latency_main)

    ing = sub.add_parser(
        "ingest",
        help="records/s through decode + streaming kernels on batched frames, vs raw pyzmq",
        description="Batched frames over tcp loopback into a raw pyzmq receiver, the engine's "
        "kernels, and the kernels plus result publishing, in one run; reports records/s and "
        "the ratio to the raw frame rate.",
    )
    ing.add_argument(
        "--records",
        type=_positive_int,
        default=2_000_000,
        metavar="N",
        help="records per receiver run (default 2000000)",
    )
    ing.add_argument(
        "--batch",
        type=_positive_int,
        default=1024,
        metavar="N",
        help="records per frame (default 1024)",
    )
    ing.add_argument(
        "--symbols", type=_positive_int, default=64, metavar="N", help="symbols (default 64)"
    )
    ing.add_argument(
        "--repeat",
        type=_positive_int,
        default=2,
        metavar="N",
        help="runs per receiver, the best is kept (default 2)",
    )
    ing.add_argument("--json", metavar="FILE", help="write every figure as JSON")
    ing.add_argument("--plot", metavar="FILE.png", help="write a bar chart of the rates")
    ing.set_defaults(func=_ingest_main)

    ker = sub.add_parser(
        "kernels",
        help="batch-kernel throughput and accuracy per backend, next to peers",
        description="Black-Scholes, implied volatility, Monte Carlo, VaR and covariance "
        "kernels on every available backend (numpy, cpu, cuda, cupy), with their accuracy "
        "against the reference and peers measured in the same run.",
    )
    ker.add_argument(
        "--n",
        type=_positive_int,
        default=1_000_000,
        metavar="N",
        help="options per Black-Scholes/IV batch (default 1000000)",
    )
    ker.add_argument(
        "--n-reference",
        type=_positive_int,
        default=100_000,
        metavar="N",
        help="batch of the slow numpy IV reference (default 100000)",
    )
    ker.add_argument(
        "--n-loop",
        type=_positive_int,
        default=20_000,
        metavar="N",
        help="options for peers that loop in Python (default 20000)",
    )
    ker.add_argument(
        "--n-accuracy",
        type=_positive_int,
        default=2000,
        metavar="N",
        help="options priced by mpmath for the accuracy figures (default 2000)",
    )
    ker.add_argument(
        "--repeats",
        type=_positive_int,
        default=5,
        metavar="N",
        help="timed calls per figure, the best is kept (default 5)",
    )
    ker.add_argument("--quick", action="store_true", help="small batches (a smoke run)")
    ker.add_argument(
        "--peer-python",
        metavar="PYTHON",
        help="python with the peers installed ($TICKPATH_PEER_PYTHON)",
    )
    ker.add_argument("--json", metavar="FILE", help="write every figure as JSON")
    ker.add_argument("--plot", metavar="FILE.png", help="write a bar chart of items/s")
    ker.set_defaults(func=_kernels_main)
    return bench


def _fail(command: str, message: str, status: int) -> int:
    print(f"tickpath bench {command}: error: {message}", file=sys.stderr)
    return status


def _run(command: str, body: Callable[[], bool]) -> int:
    """Run a benchmark body; map its failures to one line and an exit status."""
    import zmq

    from tickpath.engine.bench.common import BenchError

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM too: stop the children, remove the work files

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        ok = body()
    except ValueError as exc:  # options that argparse alone cannot judge
        return _fail(command, str(exc), 2)
    except (BenchError, OSError, zmq.ZMQError) as exc:
        return _fail(command, str(exc), 1)
    except KeyboardInterrupt:
        return _fail(command, "interrupted", 130)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not ok:
        return _fail(command, "self-check failed (see above)", 1)
    return 0


def _latency_main(args: argparse.Namespace) -> int:
    from tickpath.engine.bench.latency import LatencyOptions, run_latency

    opts = LatencyOptions(
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        batch=args.batch,
        symbols=args.symbols,
        seed=args.seed,
        slice_s=args.slice_s,
        spin_us=args.spin_us,
        drain_s=args.drain_s,
        fpga_emulate=args.fpga_emulate,
        chains=args.chains,
        chain_size=args.chain_size,
        engine_set=tuple(args.engine_set),
    )
    return _run("latency", lambda: run_latency(opts, args.json, args.plot)[1])


def _ingest_main(args: argparse.Namespace) -> int:
    from tickpath.engine.bench.ingest import IngestOptions, run_ingest

    opts = IngestOptions(
        records=args.records, batch=args.batch, symbols=args.symbols, repeat=args.repeat
    )
    return _run("ingest", lambda: run_ingest(opts, args.json, args.plot)[1])


def _kernels_main(args: argparse.Namespace) -> int:
    from tickpath.engine.bench.kernels import KernelOptions, run_kernels

    opts = KernelOptions(
        n=args.n,
        n_reference=args.n_reference,
        n_loop=args.n_loop,
        n_accuracy=args.n_accuracy,
        repeats=args.repeats,
        quick=args.quick,
        peer_python=args.peer_python,
    )
    return _run("kernels", lambda: run_kernels(opts, args.json, args.plot)[1])


def main(argv: list[str] | None = None) -> int:
    """``python -m tickpath.engine.bench``: the same commands as ``tickpath bench``."""
    parser = _OneLineParser(prog="tickpath", description="tickpath benchmarks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)
    sub.required = True
    add_bench_parser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)
