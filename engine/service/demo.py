"""``tickpath demo``: a synthetic feed, an engine and a live terminal view, all on loopback.

The feed and the engine run as child processes (``tickpath feed`` and
``tickpath serve``, exactly as a user would start them); this process
subscribes to the results and draws them with rich.  Every child is stopped
on exit, on Ctrl-C and on failure.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import msgspec
import zmq
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fmt(value: float, digits: int = 4) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else (f"{value:.{digits}f}")
    )


class _View:
    def __init__(self, n_symbols: int) -> None:
        self.n_symbols = n_symbols
        self.quote: dict[int, object] = {}
        self.trade: dict[int, object] = {}
        self.book: dict[int, object] = {}
        self.bars = 0
        self.chain = None  # the latest chain.0 frame's records (milli path)
        self.chains = 0
        self.stats: dict = {}
        self.messages = 0
        self.results = 0  # result messages (all but stats)

    def update(self, topic: bytes, payload: bytes) -> None:
        self.messages += 1
        if topic == b"stats":
            self.stats = msgspec.json.decode(payload)
            return
        self.results += 1
        header, records = codec.decode_frame(payload)
        if int(header["kind"]) == s.KIND_RESULT_CHAIN:
            self.chain = records.copy()
            self.chains += 1
            return
        record = records[0]
        kind = int(header["kind"])
        symbol = int(record["symbol"])
        if kind == s.KIND_RESULT_QUOTE:
            self.quote[symbol] = record.copy()
        elif kind == s.KIND_RESULT_TRADE:
            self.trade[symbol] = record.copy()
        elif kind == s.KIND_RESULT_BOOK:
            self.book[symbol] = record.copy()
        elif kind == s.KIND_RESULT_BAR:
            self.bars += 1

    def render(self, elapsed: float, duration: float) -> Group:
        table = Table(
            title=f"tickpath demo  {elapsed:5.1f}/{duration:.0f} s",
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
        )
        for column in ("sym", "bid", "ask", "mid", "spread", "micro", "L1 imb", "last",
                       "EMA15", "EMA255", "VWAP", "VWAP 60s", "RV", "TFI", "book bid/ask",
                       "depth imb"):  # fmt: skip
            table.add_column(column, justify="right")
        for sym in range(self.n_symbols):
            q, t, b = self.quote.get(sym), self.trade.get(sym), self.book.get(sym)
            row = [str(sym)]
            if q is not None:
                row += [
                    _fmt(q["bid_price"] / s.PRICE_SCALE, 2),
                    _fmt(q["ask_price"] / s.PRICE_SCALE, 2),
                    _fmt(q["mid"], 3),
                    _fmt(q["spread"], 2),
                    _fmt(q["microprice"], 3),
                    _fmt(q["imbalance"], 3),
                ]
            else:
                row += ["-"] * 6
            if t is not None:
                row += [
                    _fmt(t["price"] / s.PRICE_SCALE, 2),
                    _fmt(t["ema"][0], 3),
                    _fmt(t["ema"][2], 3),
                    _fmt(t["vwap_session"], 3),
                    _fmt(t["vwap_window"], 3),
                    f"{t['realized_vol']:.1e}" if not math.isnan(t["realized_vol"]) else "-",
                    _fmt(t["trade_flow_imbalance"], 2),
                ]
            else:
                row += ["-"] * 7
            if b is not None:
                bid, ask = b["bid_price"][0] / s.PRICE_SCALE, b["ask_price"][0] / s.PRICE_SCALE
                row += [
                    f"{bid:.2f}/{ask:.2f}",
                    _fmt(b["depth_imbalance"], 3),
                ]
            else:
                row += ["-"] * 2
            table.add_row(*row)
        st = self.stats
        line = Text(
            f"engine: {st.get('records_accepted', 0):,} records, "
            f"{st.get('frames_received', 0):,} frames, "
            f"{st.get('gaps', 0)} gaps ({st.get('records_lost', 0)} lost), "
            f"{st.get('frames_rejected', 0)} frames / {st.get('records_rejected', 0)} records "
            f"rejected, {st.get('results_published', 0):,} results, {self.bars} bars seen  "
            f"| processed {st.get('processed', {})}"
        )
        return Group(table, line, self._chain_line())

    def _chain_line(self) -> Text:
        c = self.chain
        if c is None:
            return Text("chain.0: waiting for the first repricing")
        atm = int(abs(c["strike"] - c["underlying"]).argmin())  # nearest strike, first expiry
        r = c[atm]
        backend = {v: k for k, v in s.BACKEND_CODES.items()}.get(int(r["backend"]), "other")
        return Text(
            f"chain.0 (milli path): {len(c)} contracts repriced {self.chains} times, last at "
            f"S={r['underlying']:.2f} on {backend} in {(r['done_ns'] - r['recv_ns']) / 1e3:.0f} "
            f"us; {'call' if r['is_call'] else 'put'} K={r['strike']:g} T={r['expiry']:g}y: "
            f"price {r['price']:.4f} delta {r['delta']:+.3f} vega {r['vega']:.3f}"
        )


START_TIMEOUT_S = 600.0  # engine start-up and feed start-up: a cold cache on a busy machine


def _tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, errors="replace") as f:
            return " | ".join(f.read().strip().splitlines()[-lines:])
    except OSError:
        return ""


class _Children:
    """The demo's child processes, each with its stderr in a temporary file."""

    def __init__(self) -> None:
        self.procs: list[tuple[subprocess.Popen, str]] = []

    def start(self, args: list[str], stdout: int | None = None) -> tuple[subprocess.Popen, str]:
        fd, err_path = tempfile.mkstemp(prefix="tickpath-demo-", suffix=".log")
        with os.fdopen(fd, "w") as err:
            proc = subprocess.Popen(args, stdout=stdout, stderr=err)
        self.procs.append((proc, err_path))
        return proc, err_path

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, err_path in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            os.unlink(err_path)


def _wait(
    console: Console,
    what: str,
    done: Callable[[], bool],
    child: tuple[subprocess.Popen, str],
    pump: Callable[[], None],
    timeout_s: float,
) -> str | None:
    """Pump results until ``done()``; None, or a one-line reason why not."""
    t0 = time.monotonic()
    if not console.is_terminal:  # a pipe or a CI log: no spinner, one line
        console.print(f"demo: {what} ...")
    with console.status(f"{what} ...") as status:
        while not done():
            proc, err_path = child
            if proc.poll() is not None:
                return f"{what}: it exited with status {proc.returncode}: {_tail(err_path)}"
            waited = time.monotonic() - t0
            if waited > timeout_s:
                return f"{what}: nothing after {timeout_s:g} s"
            status.update(f"{what} ... {waited:.0f} s")
            pump()
    return None


def run_demo(duration: float = 20.0, n_symbols: int = 8, rate: float = 20_000.0) -> int:
    """Run feed + engine + live view for ``duration`` seconds of results; return the status.

    The engine and the feed start first (on a fresh install they compile their
    kernels: tens of seconds, said on the screen while it lasts); ``duration``
    counts from the first result.  When something does not come, the demo says
    what and exits 1.
    """
    # IPC endpoints in a private directory: no TCP port to race another program for (a port
    # found free can be taken before the engine binds it) and nothing another user can reach
    sockets_dir = tempfile.mkdtemp(prefix="tickpath-demo-")
    ingest = f"ipc://{sockets_dir}/ingest"
    results = f"ipc://{sockets_dir}/results"
    # A terminal gets its own width; a pipe or a CI log gets room for the whole table.
    console = Console() if sys.stdout.isatty() else Console(width=150)
    exe = [sys.executable, "-m", "tickpath"]
    children = _Children()
    context = zmq.Context.instance()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(results)
    view = _View(n_symbols)
    # a generated option chain on symbol 0: 5 strikes around its first price, 2 expiries
    chain_config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    chain_config.write(
        "[[dispatch.chains]]\nunderlying = 0\nexpiries = [0.1, 0.5]\nstrike_count = 5\n"
    )
    chain_config.close()

    def pump() -> None:
        if sub.poll(200):
            view.update(*sub.recv_multipart())

    try:
        t_start = time.monotonic()
        serve = children.start(
            exe + ["serve", "--ingest", ingest, "--publish", results, "--symbols", str(n_symbols),
                   "--log-level", "WARNING", "--config", chain_config.name],
        )  # fmt: skip
        # The feed starts at once: it compiles its generator while the engine compiles
        # its kernels (two cores), then waits on its XPUB until the engine subscribes.
        feed = children.start(
            exe + ["feed", "--endpoint", ingest, "--symbols", str(n_symbols), "--rate", str(rate),
                   "--batch", "16", "--duration", "0", "--join-timeout", str(START_TIMEOUT_S)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        # The engine is up when its first stats message arrives.
        problem = _wait(
            console, "starting the engine (compiling kernels, first run only)",
            lambda: bool(view.stats), serve, pump, START_TIMEOUT_S,
        )  # fmt: skip
        if problem:
            console.print(f"[red]demo: {problem}[/red]")
            return 1
        t_ready = time.monotonic()
        problem = _wait(
            console, "starting the feed, waiting for the first result",
            lambda: view.results > 0, feed, pump, START_TIMEOUT_S,
        )  # fmt: skip
        if problem:
            received = view.stats.get("records_received", 0)
            console.print(
                f"[red]demo: {problem} (the engine has received {received} records on "
                f"{ingest})[/red]"
            )
            return 1
        start = time.monotonic()
        console.print(
            f"demo: engine ready after {t_ready - t_start:.1f} s, first result after "
            f"{start - t_start:.1f} s; showing {duration:g} s"
        )
        with Live(view.render(0, duration), console=console, refresh_per_second=4) as live:
            next_draw = start
            while time.monotonic() - start < duration:
                while sub.poll(50):
                    view.update(*sub.recv_multipart())
                    if time.monotonic() >= next_draw:
                        break
                now = time.monotonic()
                if now >= next_draw:
                    live.update(view.render(now - start, duration))
                    next_draw = now + 0.25
            live.update(view.render(time.monotonic() - start, duration))
        if not (view.quote or view.trade):
            console.print("[red]demo: no quote or trade result arrived[/red]")
            return 1
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        os.unlink(chain_config.name)
        sub.close(linger=0)
        children.stop()
        shutil.rmtree(sockets_dir, ignore_errors=True)
