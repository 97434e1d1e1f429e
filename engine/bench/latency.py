"""PublisherEngineSubscriberLatency: tick-to-result latency, open loop, next to a raw echo.

Topology (separate processes, tcp loopback; see :mod:`tickpath.engine.bench.roles`)::

    publisher PUB --> SUB [tickpath serve] PUB --> SUB subscriber      (engine)
              PUB --> SUB [raw pyzmq echo] PUB --> SUB                  (baseline)

Both topologies have the same hops, the same input frames and the same
output message sizes (topic + one result frame per tick), and take turns in
slices of ``slice_s`` seconds within one run, so that both see the same
machine (a shared 2-core VM drifts) and never load it at the same time.

Load is open loop: frame ``j`` of a topology is due ``j * batch / rate``
seconds into that topology's own active time, and carries its due time in
``send_ns``; latency is measured from that intended time, so a late publisher
or a queue inside the engine shows up in the figures (no coordinated
omission).  The first ``warmup`` seconds of each topology are excluded.

Stages (the engine's stamps on every result): ``wire_in = recv_ns - send_ns``,
``kernel = done_ns - recv_ns``, ``publish = subscriber arrival - done_ns``.

Milli path (``chains > 0``): the engine also reprices an option chain of
``chain_size`` contracts per underlying (symbols ``0 .. chains - 1``) on its
worker threads; a chain result (``chain.<sym>``, one frame per repricing) carries
the provenance of the tick that triggered it, so its latency is measured the
same way, with ``queue_compute = done_ns - recv_ns`` (the tick's kernels, the
job's queue and batch wait, the repricing) in place of ``kernel``.  Repricings
are coalesced per underlying, so not every tick has a chain result.

Self-check (a failure makes the run fail): every result names a tick that
was sent (``in_seq``, ``symbol``, ``ts_ns``, ``in_stream``, ``in_send_ns``),
is the last tick of its symbol in its frame, and arrives once; every echo
message names a frame that was sent; sampled quote results equal the numpy
reference's mid/spread/microprice/imbalance, sampled trade results its EMAs,
VWAPs and return statistics (:mod:`tickpath.kernels.reference.streaming`), sampled bars
its OHLCV bars.  Every chain result names an underlying's trade or quote that was
sent (the last of its symbol in its frame), at most once, in a frame of
``chain_size`` records, and every chain frame the engine says it published
arrived; in sampled whole chain frames the contracts are the configured ones, the
underlying is the triggering tick's price, and price and greeks equal
``tickpath.kernels.black_scholes(..., backend="numpy")`` at the records' own inputs.
"""

from __future__ import annotations

import math
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from tickpath.engine.bench.common import (
    BenchError,
    Children,
    Latency,
    machine_facts,
    python_module,
    ratios,
    versions,
    write_json,
)
from tickpath.engine.bench.roles import (
    COMMON_END,
    ECHO_STAMPS,
    FULL_ROW_BYTES,
    JOIN_TIMEOUT_S,
    PREFIX_BYTES,
    READY_TIMEOUT_S,
)
from tickpath.engine.config import EngineConfig, load_config, parse_setting
from tickpath.engine.wire import codec
from tickpath.engine.wire import schema as s

BENCHMARK = "PublisherEngineSubscriberLatency"
ENGINE_STREAM = 1
ECHO_STREAM = 2
TARGET_ENGINE = 0
TARGET_ECHO = 1
STATS_INTERVAL_S = 0.25
MAX_BATCH = 4096
# Result kind -> (path, backend, the input kinds it answers).  The engine routes
# every micro-path analytic to the CPU kernels, inline on the ingest thread; with
# --fpga-emulate it also streams trades and quotes through the FPGA core's golden
# model (results ``fpga.<sym>``).  A route that publishes nothing in a run is not
# reported.  The milli path's routes are in MILLI_ROUTES: their backend is not fixed
# per kind but read from each record (BACKEND_CODES: cpu, cuda, cupy).
ROUTES: dict[int, tuple[str, str, tuple[int, ...]]] = {
    s.KIND_RESULT_QUOTE: ("micro", "cpu", (s.KIND_QUOTE,)),
    s.KIND_RESULT_TRADE: ("micro", "cpu", (s.KIND_TRADE,)),
    s.KIND_RESULT_BOOK: ("micro", "cpu", (s.KIND_ORDER,)),
    s.KIND_RESULT_FPGA: ("micro", "fpga_emulation", (s.KIND_TRADE, s.KIND_QUOTE)),
}
# Milli-path result kind -> (path, the input kinds that trigger it).  Chain results
# (--chains) carry the provenance of their triggering tick; ``corr`` is not measured:
# it is computed on a sampling timer, not for a tick.
MILLI_ROUTES: dict[int, tuple[str, tuple[int, ...]]] = {
    s.KIND_RESULT_CHAIN: ("milli", (s.KIND_TRADE, s.KIND_QUOTE)),
}
BACKEND_NAMES = {code: name for name, code in s.BACKEND_CODES.items()}
COMMON = np.dtype(s.RESULT_QUOTE.descr[:7])  # ts_ns, in_seq, in_send_ns, recv_ns, done_ns, ...
assert COMMON.itemsize == COMMON_END - s.HEADER_SIZE and COMMON.names[-1] == "symbol"
# what the subscriber keeps of every chain frame: its first record up to the flags
CHAIN_PREFIX = np.dtype(s.RESULT_CHAIN.descr[:13])
assert CHAIN_PREFIX.names[-2:] == ("flags", "_pad")
assert CHAIN_PREFIX.itemsize == PREFIX_BYTES - s.HEADER_SIZE
# The chains of --chains: contracts cycle through the expiries, then call/put, then
# strikes evenly spread over +-CHAIN_STRIKE_SPAN/2 of the underlying's first price.
CHAIN_EXPIRIES = (1 / 12, 0.25, 0.5, 1.0)  # years
CHAIN_STRIKE_SPAN = 0.4
CHAIN_VOL = 0.25
CHAIN_RATE = 0.03
CHAIN_DIVIDEND = 0.01
MAX_CHAIN_SIZE = 100_000  # contracts per chain (the engine's limit)
CHAIN_KEEP_BYTES = 32 << 20  # whole chain frames the subscriber keeps for the value check
CHAIN_RTOL = 1e-9  # chain price and greeks against the numpy reference
FRAME_DTYPES = {
    kind: np.dtype(s.HEADER.descr + s.RECORD_DTYPES[kind].descr)
    for kind in (*ROUTES, s.KIND_RESULT_BAR)
}
assert max(dt.itemsize for dt in FRAME_DTYPES.values()) <= FULL_ROW_BYTES


@dataclass(frozen=True)
class LatencyOptions:
    """What ``tickpath bench latency`` runs (validated by :meth:`check`)."""

    rate: float = 5_000.0  # ticks (records) per second, per topology
    duration: float = 10.0  # measured seconds per topology
    warmup: float = 1.0  # excluded seconds per topology, before the measured ones
    batch: int = 1  # records per frame
    symbols: int = 8
    seed: int = 1
    slice_s: float = 0.5  # the topologies take turns every slice_s seconds
    spin_us: float = 50.0  # publisher busy-waits this long before each due time
    drain_s: float = 1.0  # the subscriber listens this long after the last frame
    full_every: int = 4  # every n-th message is kept whole for the analytics check
    fpga_emulate: bool = False  # serve --fpga-emulate: also the FPGA core's golden model
    chains: int = 0  # option chains on the milli path: one per symbol 0 .. chains - 1
    chain_size: int = 100  # contracts per chain
    engine_set: tuple[str, ...] = ()  # serve --set KEY=VALUE: the engine's config overrides

    def check(self) -> None:
        """Raise ``ValueError`` with a one-line message for the first invalid option."""
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"--rate must be a number > 0 (ticks/s), got {self.rate}")
        if not (math.isfinite(self.duration) and 0 < self.duration <= 3600):
            raise ValueError(f"--duration must be in (0, 3600] seconds, got {self.duration}")
        if not (math.isfinite(self.warmup) and 0 <= self.warmup <= 600):
            raise ValueError(f"--warmup must be in [0, 600] seconds, got {self.warmup}")
        if not 1 <= self.batch <= MAX_BATCH:
            raise ValueError(f"--batch must be in 1..{MAX_BATCH}, got {self.batch}")
        if not 1 <= self.symbols <= 65_536:
            raise ValueError(f"--symbols must be in 1..65536, got {self.symbols}")
        if not 0 <= self.chains <= self.symbols:
            raise ValueError(
                f"--chains must be in 0..{self.symbols} (one per underlying symbol, at most "
                f"--symbols), got {self.chains}"
            )
        if not 1 <= self.chain_size <= MAX_CHAIN_SIZE:
            raise ValueError(
                f"--chain-size must be in 1..{MAX_CHAIN_SIZE} contracts, got {self.chain_size}"
            )
        for setting in self.engine_set:
            parse_setting(setting)  # one-line ValueError for a malformed KEY=VALUE
        if not (math.isfinite(self.slice_s) and 0.05 <= self.slice_s <= 60):
            raise ValueError(f"--slice must be in [0.05, 60] seconds, got {self.slice_s}")
        if not (math.isfinite(self.spin_us) and 0 <= self.spin_us <= 10_000):
            raise ValueError(f"--spin-us must be in [0, 10000], got {self.spin_us}")
        if not (math.isfinite(self.drain_s) and 0.6 <= self.drain_s <= 60):
            raise ValueError(f"--drain must be in [0.6, 60] seconds, got {self.drain_s}")
        frames = self.frames_per_topology
        if frames < 2 or frames > 5_000_000:
            raise ValueError(
                f"rate x (warmup + duration) / batch gives {frames} frames per topology; "
                "it must be in 2..5000000"
            )

    @property
    def spin_us_effective(self) -> float:
        """``spin_us``, capped at a quarter of the frame interval (the publisher's CPU cost)."""
        return min(self.spin_us, 0.25e6 * self.batch / self.rate)

    @property
    def frames_per_topology(self) -> int:
        """Frames each topology receives (warm-up included)."""
        return math.ceil(self.rate * (self.warmup + self.duration) / self.batch)


# ---------------------------------------------------------------------------
# The plan: frames, who gets them, when
# ---------------------------------------------------------------------------


@dataclass
class Plan:
    """The frames of one run and their schedule (see :func:`build_plan`)."""

    frames: list[tuple[int, np.ndarray]]  # (kind, records), the same for both topologies
    local_ns: np.ndarray  # due time of frame j within its topology's active time
    measured: np.ndarray  # bool per frame: after the warm-up
    rec_frame: np.ndarray  # per record of the engine stream (seq = index): its frame
    rec_kind: np.ndarray
    rec_symbol: np.ndarray
    rec_ts: np.ndarray
    rec_last: np.ndarray  # index of the last record of the same symbol in the same frame
    rec_sub: np.ndarray  # per record: its index in kind_records[its kind]
    kind_records: dict[int, np.ndarray]  # every record of a kind, in sequence order
    frame_seq: np.ndarray  # seq of the first record of frame j (both streams)
    due_ns: np.ndarray  # per send, relative to T0, in send order
    target: np.ndarray  # per send: TARGET_ENGINE or TARGET_ECHO
    send_frame: np.ndarray  # per send: frame index j
    flat: np.ndarray  # every send's encoded frame, concatenated (8-byte aligned)
    offset: np.ndarray
    length: np.ndarray
    chains: dict[int, np.ndarray] = field(default_factory=dict)  # underlying -> contracts

    def engine_due(self) -> np.ndarray:
        """Due time (relative to T0) of each frame sent to the engine, by frame index."""
        return self._due_by_frame(TARGET_ENGINE)

    def echo_due(self) -> np.ndarray:
        """Due time (relative to T0) of each frame sent to the echo, by frame index."""
        return self._due_by_frame(TARGET_ECHO)

    def _due_by_frame(self, target: int) -> np.ndarray:
        mine = self.target == target
        out = np.empty(len(self.frames), np.int64)
        out[self.send_frame[mine]] = self.due_ns[mine]
        return out


def interleave(local_ns: np.ndarray, topology: int, slice_ns: int) -> np.ndarray:
    """Map a topology's own active time onto the run's timeline (slices take turns)."""
    q = local_ns // slice_ns
    return (2 * q + topology) * slice_ns + (local_ns - q * slice_ns)


def build_plan(opts: LatencyOptions) -> Plan:
    """Generate the synthetic market's frames, the interleaved open-loop schedule, and
    the contracts of the ``chains`` option chains (around each underlying's first price)."""
    from tickpath.engine.feed.publisher import feed_market

    market = feed_market(opts.symbols, opts.seed, opts.rate)
    n = opts.frames_per_topology
    frames = [market.next_batch(opts.batch) for _ in range(n)]
    counts = np.array([len(r) for _, r in frames], np.int64)
    kinds = np.array([k for k, _ in frames], np.int64)
    frame_seq = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rec_frame = np.repeat(np.arange(n), counts)
    rec_symbol = np.concatenate([r["symbol"] for _, r in frames]).astype(np.int64)
    key = rec_frame * (opts.symbols + 1) + rec_symbol
    # the last record of each (frame, symbol): the one its conflated result names
    uniq, inverse = np.unique(key, return_inverse=True)
    last = np.zeros(len(uniq), np.int64)
    np.maximum.at(last, inverse, np.arange(len(key)))
    local_ns = np.round(np.arange(n) * opts.batch * 1e9 / opts.rate).astype(np.int64)
    slice_ns = int(opts.slice_s * 1e9)
    due = np.concatenate([interleave(local_ns, t, slice_ns) for t in (0, 1)])
    target = np.repeat(np.array([TARGET_ENGINE, TARGET_ECHO], np.int64), n)
    send_frame = np.tile(np.arange(n), 2)
    order = np.argsort(due, kind="stable")
    due, target, send_frame = due[order], target[order], send_frame[order]
    encoded = []
    for t, j in zip(target.tolist(), send_frame.tolist()):
        kind, records = frames[j]
        stream = ENGINE_STREAM if t == TARGET_ENGINE else ECHO_STREAM
        encoded.append(codec.encode_frame(kind, stream, int(frame_seq[j]), records))
    length = np.array([len(f) for f in encoded], np.int64)
    assert not (length % 8).any()  # so every send_ns sits 8-byte aligned in the flat buffer
    rec_kind = np.repeat(kinds, counts)
    rec_sub = np.zeros(len(rec_kind), np.int64)
    kind_records = {}
    for kind in s.INPUT_KINDS:
        mine = rec_kind == kind
        rec_sub[mine] = np.arange(int(mine.sum()))
        parts = [r for k, r in frames if k == kind]
        kind_records[kind] = np.concatenate(parts) if parts else np.empty(0, s.RECORD_DTYPES[kind])
    plan = Plan(
        frames=frames,
        local_ns=local_ns,
        measured=local_ns >= int(opts.warmup * 1e9),
        rec_frame=rec_frame,
        rec_kind=rec_kind,
        rec_symbol=rec_symbol,
        rec_ts=np.concatenate([r["ts_ns"] for _, r in frames]).astype(np.int64),
        rec_last=last[inverse],
        rec_sub=rec_sub,
        kind_records=kind_records,
        frame_seq=frame_seq,
        due_ns=due,
        target=target,
        send_frame=send_frame,
        flat=np.frombuffer(b"".join(encoded), np.uint8),
        offset=np.concatenate([[0], np.cumsum(length)[:-1]]),
        length=length,
    )
    for underlying in range(opts.chains):
        ticks = np.flatnonzero(
            (plan.rec_symbol == underlying)
            & np.isin(plan.rec_kind, MILLI_ROUTES[s.KIND_RESULT_CHAIN][1])
        )
        prices = tick_prices(plan, ticks[:16])
        first = prices[prices > 0][:1]
        plan.chains[underlying] = chain_contracts(
            float(first[0]) if first.size else 100.0, opts.chain_size
        )
    return plan


# ---------------------------------------------------------------------------
# The milli route: option chains
# ---------------------------------------------------------------------------

CHAIN_CONTRACT = np.dtype([("strike", "<f8"), ("expiry", "<f8"), ("is_call", "?")])


def chain_contracts(first_price: float, size: int) -> np.ndarray:
    """The ``size`` contracts of a benchmark chain around ``first_price`` (CHAIN_CONTRACT).

    Contract ``i``: expiry ``CHAIN_EXPIRIES[i % 4]``, a call when ``i // 4`` is even,
    strike ``i // 8`` of evenly spread strikes (rounded to 0.01) over
    ``first_price x (1 +- CHAIN_STRIKE_SPAN / 2)``.
    """
    i = np.arange(size)
    n_expiries = len(CHAIN_EXPIRIES)
    per_strike = 2 * n_expiries
    n_strikes = -(-size // per_strike)
    j = i // per_strike
    rel = (j / (n_strikes - 1) - 0.5) * CHAIN_STRIKE_SPAN if n_strikes > 1 else np.zeros(size)
    out = np.zeros(size, CHAIN_CONTRACT)
    out["strike"] = np.maximum(np.round(first_price * (1.0 + rel), 2), 0.01)
    out["expiry"] = np.asarray(CHAIN_EXPIRIES)[i % n_expiries]
    out["is_call"] = (i // n_expiries) % 2 == 0
    return out


def tick_prices(plan: Plan, seqs: np.ndarray) -> np.ndarray:
    """The underlying price the engine takes from each tick: quote mid or trade price.

    As ``tickpath.engine.dispatch.milli``: the mid of a two-sided quote, else 0 (no repricing);
    the price of a trade; 0 for any other kind.
    """
    seqs = np.asarray(seqs, np.int64)
    out = np.zeros(len(seqs))
    kind = plan.rec_kind[seqs]
    quotes = kind == s.KIND_QUOTE
    if quotes.any():
        q = plan.kind_records[s.KIND_QUOTE][plan.rec_sub[seqs[quotes]]]
        bid, ask = q["bid_price"].astype(np.int64), q["ask_price"].astype(np.int64)
        out[quotes] = np.where((bid > 0) & (ask > 0), (bid + ask) / (2.0 * s.PRICE_SCALE), 0.0)
    trades = kind == s.KIND_TRADE
    if trades.any():
        tr = plan.kind_records[s.KIND_TRADE][plan.rec_sub[seqs[trades]]]
        out[trades] = tr["price"].astype(np.int64) / s.PRICE_SCALE
    return out


def chain_triggers(opts: LatencyOptions, plan: Plan) -> np.ndarray:
    """Per record: whether it makes the engine queue a repricing of its symbol's chain.

    A trade or quote of an underlying with a price (see :func:`tick_prices`), the last
    of its symbol in its frame (the engine looks at each symbol once per frame).
    """
    mine = plan.rec_symbol < opts.chains
    mine &= np.isin(plan.rec_kind, MILLI_ROUTES[s.KIND_RESULT_CHAIN][1])
    mine &= plan.rec_last == np.arange(len(plan.rec_last))
    idx = np.flatnonzero(mine)
    mine[idx] = tick_prices(plan, idx) > 0
    return mine


def _chains_toml(plan: Plan) -> str:
    """The ``[[dispatch.chains]]`` tables of a run: explicit contracts, not quoted."""
    out = []
    for underlying, contracts in plan.chains.items():
        options = ", ".join(
            f"{{strike = {float(k)!r}, expiry = {float(t)!r}, call = {str(bool(c)).lower()}}}"
            for k, t, c in contracts.tolist()
        )
        out.append(
            f"[[dispatch.chains]]\nunderlying = {underlying}\nvol = {CHAIN_VOL!r}\n"
            f"rate = {CHAIN_RATE!r}\ndividend = {CHAIN_DIVIDEND!r}\noptions = [{options}]\n"
        )
    return "".join(out)


def chain_frame_bytes(opts: LatencyOptions) -> int:
    """Bytes of one chain result frame (header + ``chain_size`` records)."""
    return s.HEADER_SIZE + opts.chain_size * s.RESULT_CHAIN_SIZE


# ---------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------


def _max_frame_bytes(opts: LatencyOptions) -> int:
    return max(1 << 20, s.HEADER_SIZE + opts.batch * max(s.QUOTE_SIZE, s.TRADE_SIZE))


def _engine_config_toml(opts: LatencyOptions, plan: Plan, ingest: str, publish: str) -> str:
    return (
        f'[ingest]\nendpoints = ["{ingest}"]\nmax_frame_bytes = {_max_frame_bytes(opts)}\n'
        f"[analytics]\nn_symbols = {opts.symbols}\n"
        f'[publish]\nendpoint = "{publish}"\nstats_interval_s = {STATS_INTERVAL_S}\n'
        + _chains_toml(plan)
    )


PROFILE_FRAMES = 20_000


def engine_time(opts: LatencyOptions, plan: Plan) -> dict:
    """The engine's own time per frame on the run's first frames, in-process (see profile)."""
    from tickpath.engine.bench.profile import profile_engine_loop

    config = load_config(
        None,
        {"analytics.n_symbols": opts.symbols, "ingest.max_frame_bytes": _max_frame_bytes(opts)},
    )
    sends = np.flatnonzero(plan.target == TARGET_ENGINE)[:PROFILE_FRAMES]
    frames = [plan.flat[plan.offset[i] : plan.offset[i] + plan.length[i]].tobytes() for i in sends]
    return profile_engine_loop(config, frames)


@dataclass
class RunData:
    """What the children left behind."""

    t0_ns: int
    sent_ns: np.ndarray  # actual send time of each planned send
    prefix: np.ndarray  # (messages, PREFIX_BYTES): header, common block, echo stamps
    arrival: np.ndarray  # subscriber's time.time_ns() after each message
    full: np.ndarray  # whole rows of every full_every-th message
    full_every: int
    overflow: int
    engine_stats: dict
    engine_config: EngineConfig
    length: np.ndarray | None = None  # bytes of each message, whole (None: not saved)
    stats_at: int = -1  # messages received when the last engine stats arrived
    chain_full: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint8))
    chain_at: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # their rows


_ENGINE_BOUND = re.compile(r"ingest (\S+) \(rcvhwm \d+\), publish (\S+) \(sndhwm")


def _engine_endpoints(children: Children, timeout_s: float) -> tuple[str, str]:
    """The ingest and publish endpoints ``serve`` bound, from its log (after its kernels
    are ready); BenchError if it exits or has not logged them within ``timeout_s``."""
    path = children.workdir / "serve.log"
    deadline = time.monotonic() + timeout_s
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        match = _ENGINE_BOUND.search(text)
        if match:
            return match[1], match[2]
        children.check(expect_running=["serve"])
        if time.monotonic() > deadline:
            raise BenchError(
                f"serve logged no bound endpoints within {timeout_s:.0f} s (it must log at "
                f"INFO): {children.log_tail('serve')}"
            )
        time.sleep(0.05)  # polling its log file


def run_children(opts: LatencyOptions, plan: Plan, workdir: Path, progress: Any = None) -> RunData:
    """Start serve, echo, subscriber and publisher; run the plan; stop them all; load their data."""
    # the engine binds ports the OS picks (no port chosen first and bound later, which
    # another process can take in between); its INFO log line says which
    any_port = "tcp://127.0.0.1:*"
    config_path = workdir / "engine.toml"
    config_path.write_text(_engine_config_toml(opts, plan, any_port, any_port))
    engine_config = load_config(config_path, dict(map(parse_setting, opts.engine_set)))
    plan_path = workdir / "plan.npz"
    np.savez(
        plan_path,
        frames=plan.flat,
        offset=plan.offset,
        length=plan.length,
        due_ns=plan.due_ns,
        target=plan.target,
    )
    results_path = workdir / "results.npz"
    sent_path = workdir / "sent.npy"
    chain_msgs = int(chain_triggers(opts, plan).sum())  # at most one chain frame each
    capacity = _capacity(plan, opts.fpga_emulate) + chain_msgs
    chain_bytes = chain_frame_bytes(opts) if opts.chains else 0
    chain_keep = min(chain_msgs, max(1, CHAIN_KEEP_BYTES // max(chain_bytes, 1)))
    chain_every = max(1, math.ceil(chain_msgs / max(chain_keep, 1)))
    with Children(workdir) as children:
        fpga = ["--fpga-emulate"] if opts.fpga_emulate else []
        children.start(
            "serve",
            python_module(
                "tickpath",
                "serve",
                "--config",
                str(config_path),
                "--log-level",
                "INFO",  # its bound endpoints are logged at INFO
                *fpga,
                *(arg for setting in opts.engine_set for arg in ("--set", setting)),
            ),  # fmt: skip
        )
        children.start(
            "echo",
            python_module(
                "tickpath.engine.bench.roles", "echo", "--max-frame-bytes",
                str(engine_config.ingest.max_frame_bytes),
            ),
        )  # fmt: skip
        _, echo_ingest, echo_publish = children.wait_for_line("echo", "ready ", 60).split()
        ingest, publish = _engine_endpoints(children, READY_TIMEOUT_S)
        children.start(
            "subscriber",
            python_module(
                "tickpath.engine.bench.roles", "subscriber", "--connect", publish, "--connect",
                echo_publish, "--capacity", str(capacity), "--full-every", str(opts.full_every),
                "--out", str(results_path), "--chain-bytes", str(chain_bytes),
                "--chain-every", str(chain_every), "--chain-keep", str(chain_keep),
            ),
            stdin=True,
        )  # fmt: skip
        # ready once the engine's and the echo's stats reached it: the engine has
        # compiled (or loaded) its kernels and both subscriptions are through
        children.wait_for_line("subscriber", "ready", READY_TIMEOUT_S + 30)
        spin = str(opts.spin_us_effective)
        children.start(
            "publisher",
            python_module(
                "tickpath.engine.bench.roles", "publisher", "--plan", str(plan_path), "--engine",
                ingest, "--echo", echo_ingest, "--out", str(sent_path), "--spin-us", spin,
            ),
            stdin=True,
        )  # fmt: skip
        children.wait_for_line("publisher", "ready", JOIN_TIMEOUT_S + 30)
        t0 = time.time_ns() + 300_000_000
        end = t0 + int(plan.due_ns[-1]) + int(opts.drain_s * 1e9)
        for name in ("publisher", "subscriber"):
            stdin = children.procs[name].stdin
            stdin.write(f"start {t0} {end}\n".encode())
            stdin.flush()
        total_s = (end - t0) / 1e9
        task = progress.add_task("measuring", total=total_s) if progress is not None else None
        while True:
            children.check(expect_running=["serve", "echo"])
            done = children.procs["subscriber"].poll() is not None
            if done and children.procs["publisher"].poll() is not None:
                break
            if time.time_ns() > end + 60 * 10**9:
                raise BenchError("the publisher or the subscriber did not finish in time")
            if task is not None:
                elapsed = min(total_s, max(0.0, (time.time_ns() - t0) / 1e9))
                phase = _phase(opts, plan, elapsed)
                progress.update(task, completed=elapsed, description=phase)
            time.sleep(0.2)
        if task is not None:
            progress.update(task, completed=total_s, description="analysing")
    data = np.load(results_path)
    return RunData(
        t0_ns=t0,
        sent_ns=np.load(sent_path),
        prefix=data["prefix"],
        arrival=data["arrival"],
        full=data["full"],
        full_every=int(data["full_every"]),
        overflow=int(data["overflow"]),
        engine_stats=msgspec.json.decode(data["engine_stats"].tobytes() or b"{}"),
        engine_config=engine_config,
        length=data["length"].astype(np.int64),
        stats_at=int(data["stats_at"]),
        chain_full=data["chain_full"],
        chain_at=data["chain_at"],
    )


def _capacity(plan: Plan, fpga: bool) -> int:
    """Messages the subscriber may receive: results, bars, echoes (an upper bound)."""
    per_frame_results = np.unique(plan.rec_last).size  # one per (frame, symbol) and route
    trades = int((plan.rec_kind == s.KIND_TRADE).sum())  # at most one bar per trade
    return per_frame_results * (2 if fpga else 1) + trades + len(plan.frames) + 1000


def _phase(opts: LatencyOptions, plan: Plan, elapsed_s: float) -> str:
    """What the run is doing ``elapsed_s`` after T0 (for the progress bar)."""
    if elapsed_s * 1e9 > plan.due_ns[-1]:
        return "draining"
    q = int(elapsed_s // opts.slice_s)
    own = (q // 2) * opts.slice_s + (elapsed_s - q * opts.slice_s)
    return f"{'echo' if q % 2 else 'engine'} {'warm-up' if own < opts.warmup else 'measuring'}"


# ---------------------------------------------------------------------------
# Analysis and self-check
# ---------------------------------------------------------------------------


class _Checks:
    """Named checks with counts of failures, and the first examples of each."""

    def __init__(self) -> None:
        self.checked: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self.examples: list[str] = []
        self.skipped: dict[str, str] = {}

    def add(self, name: str, ok: np.ndarray) -> None:
        """Count ``ok.size`` checks named ``name``; the False ones fail."""
        ok = np.asarray(ok, bool)
        self.checked[name] = self.checked.get(name, 0) + int(ok.size)
        bad = int((~ok).sum())
        if bad:
            self.failed[name] = self.failed.get(name, 0) + bad
            where = np.flatnonzero(~ok)[:3].tolist()
            self.examples.append(f"{name}: {bad} of {ok.size} fail (first at {where})")

    def skip(self, name: str, reason: str) -> None:
        """Record that the check ``name`` could not run, and why."""
        self.skipped[name] = reason

    def report(self) -> dict:
        """The ``self_check`` section of the report."""
        return {
            "ok": not self.failed,
            "checked": self.checked,
            "failed": self.failed,
            "skipped": self.skipped,
            "errors": self.examples,
        }


def _decode_prefix(prefix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    header = np.ascontiguousarray(prefix[:, : s.HEADER_SIZE]).view(s.HEADER).ravel()
    common = np.ascontiguousarray(prefix[:, s.HEADER_SIZE : COMMON_END]).view(COMMON).ravel()
    return header, common


def _full_rows(data: RunData, kind: int) -> np.ndarray:
    """The whole sampled results of ``kind`` (header + record)."""
    dtype = FRAME_DTYPES[kind]
    if len(data.full) == 0:
        return np.empty(0, dtype)
    kinds = np.ascontiguousarray(data.full[:, 6:8]).view("<u2").ravel()
    rows = np.flatnonzero(kinds == kind)
    return np.ascontiguousarray(data.full[rows, : dtype.itemsize]).view(dtype).ravel()


def _close(a: np.ndarray, b: np.ndarray, rtol: float, atol: float = 0.0) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.isclose(a, b, rtol=rtol, atol=atol) | (np.isnan(a) & np.isnan(b))


def _engine_results(
    plan: Plan, data: RunData, header: np.ndarray, common: np.ndarray, checks: _Checks
) -> tuple[dict, int]:
    """Check the per-tick results of every route; return each route's latency entry and losses."""
    kind = header["kind"].astype(np.int64)
    engine_due = plan.engine_due() + data.t0_ns
    n_rec = len(plan.rec_kind)
    rec_measured = plan.measured[plan.rec_frame]
    paths: dict[str, dict[str, dict]] = {}
    lost_total = 0
    routes = sorted({(p, b) for p, b, _ in ROUTES.values()})
    for path, backend in routes:
        mine = {x: inputs for x, (p, b, inputs) in ROUTES.items() if (p, b) == (path, backend)}
        rows = np.flatnonzero(np.isin(kind, list(mine)))
        if not len(rows):
            continue
        h, c, k, arrival = header[rows], common[rows], kind[rows], data.arrival[rows]
        r = c["in_seq"].astype(np.int64)
        valid = (r >= 0) & (r < n_rec)
        checks.add("result in_seq names a tick that was sent", valid)
        rr = np.where(valid, r, 0)
        serves = np.zeros(len(rr), bool)
        for x, inputs in mine.items():
            serves |= (k == x) & np.isin(plan.rec_kind[rr], inputs)
        good = valid & serves
        good &= (plan.rec_symbol[rr] == c["symbol"]) & (plan.rec_ts[rr] == c["ts_ns"])
        good &= (c["in_stream"] == ENGINE_STREAM) & (h["stream_id"] == c["symbol"])
        checks.add("result symbol/ts_ns/in_stream/kind match the tick", good[valid])
        f = plan.rec_frame[rr]
        intended = c["in_send_ns"] == engine_due[f]
        checks.add("result in_send_ns is the frame's intended time", intended[good])
        is_last = plan.rec_last[rr] == rr
        checks.add("result names the last tick of its symbol in its frame", is_last[good])
        good &= is_last
        stamps = (c["recv_ns"] >= c["in_send_ns"]) & (c["done_ns"] >= c["recv_ns"])
        stamps &= arrival >= c["done_ns"]
        checks.add("stamps in order: send <= recv <= done <= arrival", stamps[good])
        # conflation: one result per (result kind, frame, symbol), naming its last tick
        received = np.zeros(n_rec, bool)
        ticks_served = np.zeros(n_rec, bool)
        lost = 0
        for x, inputs in mine.items():
            got = np.bincount(rr[good & (k == x)], minlength=n_rec)
            checks.add(f"one {s.ANALYTIC_OF_KIND[x]} result per (frame, symbol)", got[got > 0] == 1)
            served = rec_measured & np.isin(plan.rec_kind, inputs)
            ticks_served |= served
            arrived = got[plan.rec_last] > 0
            received |= served & arrived
            lost += int((served & ~arrived).sum())
        lost_total += lost

        keep = good & plan.measured[f]
        a, kk = arrival[keep], k[keep]
        send, recv, done = c["in_send_ns"][keep], c["recv_ns"][keep], c["done_ns"][keep]
        total = Latency(a - send)
        paths.setdefault(path, {})[backend] = {
            "latency": total.summary(),
            "stages": {
                "wire_in": Latency(recv - send).summary(),
                "kernel": Latency(done - recv).summary(),
                "publish": Latency(a - done).summary(),
            },
            "by_result": {
                s.ANALYTIC_OF_KIND[x]: Latency(a[kk == x] - send[kk == x]).summary()
                for x in mine
                if (kk == x).any()
            },
            "ticks_measured": int(ticks_served.sum()),
            "results_received": int(keep.sum()),
            "records_lost": lost,
            "_hist": total,
        }
    return paths, lost_total


def _milli_results(
    opts: LatencyOptions, plan: Plan, data: RunData, header: np.ndarray, checks: _Checks
) -> dict:
    """Check the chain results' provenance; return the milli route's entry per backend."""
    rows = np.flatnonzero(header["kind"] == s.KIND_RESULT_CHAIN)
    if not opts.chains:
        if len(rows):
            checks.add("no chain result without --chains", np.zeros(len(rows), bool))
        return {}
    h, arrival = header[rows], data.arrival[rows]
    c = np.ascontiguousarray(data.prefix[rows, s.HEADER_SIZE : PREFIX_BYTES]).view(CHAIN_PREFIX)
    c = c.ravel()
    n_rec = len(plan.rec_kind)
    r = c["in_seq"].astype(np.int64)
    valid = (r >= 0) & (r < n_rec)
    checks.add("chain result in_seq names a tick that was sent", valid)
    rr = np.where(valid, r, 0)
    good = valid & np.isin(plan.rec_kind[rr], MILLI_ROUTES[s.KIND_RESULT_CHAIN][1])
    good &= (plan.rec_symbol[rr] == c["symbol"]) & (plan.rec_ts[rr] == c["ts_ns"])
    good &= (c["in_stream"] == ENGINE_STREAM) & (h["stream_id"] == c["symbol"])
    good &= c["symbol"] < opts.chains
    checks.add("chain result names a trade or quote of its underlying", good[valid])
    f = plan.rec_frame[rr]
    intended = c["in_send_ns"] == plan.engine_due()[f] + data.t0_ns
    checks.add("chain result in_send_ns is the frame's intended time", intended[good])
    trigger = chain_triggers(opts, plan)
    checks.add("chain result names a tick that triggers a repricing", trigger[rr][good])
    good &= trigger[rr]
    got = np.bincount(rr[good], minlength=n_rec)
    checks.add("at most one chain result per tick", got[got > 0] == 1)
    size = h["count"] == opts.chain_size
    if data.length is not None:
        size &= data.length[rows] == chain_frame_bytes(opts)
    checks.add("chain frame holds --chain-size records", size)
    stamps = (c["recv_ns"] >= c["in_send_ns"]) & (c["done_ns"] >= c["recv_ns"])
    stamps &= arrival >= c["done_ns"]
    checks.add("chain stamps in order: send <= recv <= done <= arrival", stamps[good])
    published = _chains_published(data.engine_stats)
    if published is None or data.stats_at < 0:
        checks.skip("every chain frame published arrived", "no engine stats with chains received")
    else:  # messages arrive in order: those before the last stats are what it counted
        before = int((rows < data.stats_at).sum())
        checks.add("every chain frame published arrived", np.arange(published) < before)

    dispatch = data.engine_stats.get("dispatch", {})
    lane = dispatch.get("lanes", {}).get("stream", {})
    lane_config = data.engine_config.dispatch.lanes.stream
    keep = good & plan.measured[f]
    triggered = trigger & plan.measured[plan.rec_frame]
    if triggered.any():
        checks.add("chain results arrive for measured ticks", np.array([keep.any()]))
    if "failed" in lane:
        failed = int(lane["failed"]) + int(lane.get("finish_errors", 0))
        checks.add(
            "no chain repricing failed (engine stats)",
            np.zeros(failed, bool) if failed else np.ones(1, bool),
        )
    flags = c["flags"].astype(np.int64)
    out: dict[str, dict] = {}
    for code in np.unique(c["backend"][keep]).tolist():
        name = BACKEND_NAMES.get(code, "other")
        mine = keep & (c["backend"] == code)
        a, send = arrival[mine], c["in_send_ns"][mine]
        recv, done = c["recv_ns"][mine], c["done_ns"][mine]
        total = Latency(a - send)
        calls = dispatch.get("backends", {}).get(name, {})
        out[name] = {
            "latency": total.summary(),
            "stages": {
                "wire_in": Latency(recv - send).summary(),
                "queue_compute": Latency(done - recv).summary(),
                "publish": Latency(a - done).summary(),
            },
            "by_result": {"chain": total.summary()},
            "ticks_measured": int(triggered.sum()),
            "results_received": int(mine.sum()),
            "contracts_per_result": opts.chain_size,
            "underlyings": opts.chains,
            "results_fallback": int((flags[mine] & s.RESULT_FLAG_FALLBACK > 0).sum()),
            "results_late": int((flags[mine] & s.RESULT_FLAG_LATE > 0).sum()),
            # the engine's counters: the whole run (warm-up included), every backend
            "repricings": {
                "submitted": lane.get("submitted"),
                "coalesced": lane.get("coalesced"),
                "refused": lane.get("refused"),
                "late": lane.get("late"),
                "failed": lane.get("failed"),
                "fused": lane.get("fused"),
                "published": published,
            },
            "backend_calls": calls.get("jobs"),
            "backend_us_per_call": round(calls["busy_us"] / calls["jobs"], 1)
            if calls.get("jobs")
            else None,
            "lane": {
                "workers": lane_config.workers,
                "max_batch": lane_config.max_batch,
                "max_wait_ms": lane_config.max_wait_ms,
            },
            "_hist": total,
        }
    return out


def _chains_published(stats: dict) -> int | None:
    """Chain frames the engine published, from its stats (None if it has no chains)."""
    chains = stats.get("dispatch", {}).get("chains")
    if not chains:
        return None
    return sum(int(c.get("published", 0)) for c in chains.values())


def analyse(opts: LatencyOptions, plan: Plan, data: RunData) -> dict:
    """Latency summaries, loss accounting and the self-check of one run."""
    checks = _Checks()
    header, common = _decode_prefix(data.prefix)
    kind = header["kind"].astype(np.int64)
    n_frames = len(plan.frames)

    # --- the baseline: echo messages carry the input frame's header
    is_echo = kind < 16
    eh = header[is_echo]
    echo_frame = np.searchsorted(plan.frame_seq, eh["seq"].astype(np.int64))
    known = (echo_frame < n_frames) & (eh["stream_id"] == ECHO_STREAM)
    known[known] &= plan.frame_seq[echo_frame[known]] == eh["seq"][known].astype(np.int64)
    checks.add("echo message names a frame that was sent", known)
    echo_frame, eh, echo_arrival = echo_frame[known], eh[known], data.arrival[is_echo][known]
    echo_due = plan.echo_due()[echo_frame] + data.t0_ns
    checks.add("echo send_ns is the frame's intended time", eh["send_ns"] == echo_due)
    checks.add("echo frame received once", np.bincount(echo_frame)[echo_frame] == 1)
    echo_measured = plan.measured[echo_frame]
    send = eh["send_ns"][echo_measured]
    echo_arrival = echo_arrival[echo_measured]
    baseline = Latency(echo_arrival - send)
    stamps = np.ascontiguousarray(data.prefix[is_echo][known][echo_measured][:, ECHO_STAMPS])
    recv, done = stamps.view(np.int64).T
    baseline_stages = {
        "wire_in": Latency(recv - send).summary(),
        "echo": Latency(done - recv).summary(),
        "publish": Latency(echo_arrival - done).summary(),
    }
    echo_got = np.zeros(n_frames, bool)
    echo_got[echo_frame] = True

    # --- the engine's per-tick results, route by route
    paths, records_lost = _engine_results(plan, data, header, common, checks)
    milli = _milli_results(opts, plan, data, header, checks)
    if milli:
        paths[MILLI_ROUTES[s.KIND_RESULT_CHAIN][0]] = milli
    for backends in paths.values():
        for entry in backends.values():
            entry["ratio_to_baseline"] = ratios(entry["latency"], baseline.summary())

    # --- per-topic sequence numbers of every engine result (bars included)
    all_engine = np.flatnonzero(kind >= 16)
    topic = kind[all_engine] * (1 << 32) + header["stream_id"][all_engine].astype(np.int64)
    seq = header["seq"][all_engine].astype(np.int64)
    order = np.lexsort((seq, topic))
    same_topic = topic[order][1:] == topic[order][:-1]
    step = np.diff(seq[order])[same_topic]
    # sequence numbers count records: a chain frame advances its topic by its size
    count = np.maximum(header["count"][all_engine].astype(np.int64)[order][:-1][same_topic], 1)
    checks.add("result seq not repeated within its topic", step >= count)
    missing = (step - count) // count  # result frames between two that arrived

    # --- bars: provenance here, values in _check_values
    bar_rows = np.flatnonzero(kind == s.KIND_RESULT_BAR)
    if len(bar_rows):
        br = common["in_seq"][bar_rows].astype(np.int64)
        ok = (br >= 0) & (br < len(plan.rec_kind))
        brc = np.where(ok, br, 0)
        ok &= plan.rec_kind[brc] == s.KIND_TRADE
        ok &= plan.rec_symbol[brc] == common["symbol"][bar_rows]
        checks.add("bar result names a trade of its symbol", ok)

    stats = data.engine_stats
    _check_values(plan, data, stats, checks)
    _check_chain_values(opts, plan, data, checks)
    if data.overflow:
        checks.add("subscriber capacity", np.zeros(data.overflow, bool))

    # --- load: what the publisher achieved, over the engine's measured active time
    lag = data.sent_ns - (plan.due_ns + data.t0_ns)[: len(data.sent_ns)]
    sends = plan.target[: len(lag)] == TARGET_ENGINE
    sends &= plan.measured[plan.send_frame[: len(lag)]]
    ticks_measured = int(plan.measured[plan.rec_frame].sum())
    span_s = opts.duration
    if sends.any():
        first, last = np.flatnonzero(sends)[[0, -1]]
        local = plan.local_ns[plan.send_frame[[first, last]]]
        span_s = (local[1] - local[0] + (lag[last] - lag[first])) / 1e9 + opts.batch / opts.rate
    micro_cpu = paths.get("micro", {}).get("cpu", {})
    lag_hist = Latency(lag)
    return {
        "paths": paths,
        "baseline": {
            "name": "raw pyzmq echo (PUB->SUB->PUB->SUB, result-sized messages)",
            "latency": baseline.summary(),
            "stages": baseline_stages,
            "frames_measured": int(plan.measured.sum()),
            "frames_received": int((echo_got & plan.measured).sum()),
            "frames_lost": int((~echo_got & plan.measured).sum()),
            "_hist": baseline,
        },
        "load": {
            "target_rate": opts.rate,
            "achieved_send_rate": round(ticks_measured / span_s, 1),
            "achieved_result_rate": round(micro_cpu.get("results_received", 0) / span_s, 1),
            "publisher_lag": lag_hist.summary(),
            "_hist": lag_hist,
        },
        "loss": {
            "ticks_measured": ticks_measured,
            "records_lost": records_lost,
            "engine_ingest_gaps": stats.get("gaps"),
            "engine_ingest_records_lost": stats.get("records_lost"),
            "result_seq_gaps": int((missing > 0).sum()),
            "results_lost_by_seq": int(missing[missing > 0].sum()),
            "bars_received": int(len(bar_rows)),
        },
        "self_check": checks.report(),
        "engine_stats": stats,
    }


def _check_values(plan: Plan, data: RunData, stats: dict, checks: _Checks) -> None:
    """Recompute the analytics of the sampled results with the numpy reference."""
    from tickpath.kernels.reference import streaming as ref

    a = data.engine_config.analytics
    # quotes: stateless, every sampled quote result is checked
    quotes = _full_rows(data, s.KIND_RESULT_QUOTE)
    if len(quotes):
        rec = quotes["in_seq"].astype(np.int64)
        ok = rec < len(plan.rec_kind)
        ok[ok] &= plan.rec_kind[rec[ok]] == s.KIND_QUOTE
        quotes, rec = quotes[ok], rec[ok]
        src = _records_by_seq(plan, s.KIND_QUOTE, rec)
        want = ref.quote_features(src)
        same = np.ones(len(quotes), bool)
        for field in ("bid_price", "bid_size", "ask_price", "ask_size"):
            same &= quotes[field] == src[field]
        for field in ("mid", "spread", "microprice", "imbalance"):
            same &= _close(quotes[field], want[field], rtol=1e-12)
        checks.add("sampled quote results equal the reference", same)
    else:
        checks.skip("sampled quote results equal the reference", "no quote result sampled")

    # trades: the reference replays every trade the engine processed, in order
    trades = _full_rows(data, s.KIND_RESULT_TRADE)
    sent = len(plan.rec_kind)
    accepted = stats.get("records_accepted")
    if not len(trades):
        checks.skip("sampled trade results equal the reference", "no trade result sampled")
    elif stats.get("gaps", 0) or accepted is None or accepted < sent:
        checks.skip(
            "sampled trade results equal the reference",
            f"the engine did not process every tick (accepted {accepted} of {sent}, "
            f"{stats.get('gaps')} gaps): the reference would start from another state",
        )
    else:
        trade_idx = np.flatnonzero(plan.rec_kind == s.KIND_TRADE)
        all_trades = _records_by_seq(plan, s.KIND_TRADE, trade_idx)
        want = ref.trade_features(
            all_trades, tuple(a.ema_spans), int(a.vwap_window_s * 1e9), a.vwap_ring, a.vol_window
        )
        j = np.searchsorted(trade_idx, trades["in_seq"].astype(np.int64))
        ok = j < len(trade_idx)
        ok[ok] &= trade_idx[j[ok]] == trades["in_seq"][ok]
        trades, j = trades[ok], j[ok]
        n_ema = len(a.ema_spans)
        same = trades["price"] == all_trades["price"][j]
        same &= trades["size"] == all_trades["size"][j]
        same &= np.all(_close(trades["ema"][:, :n_ema], want["ema"][j, :n_ema], 1e-12), axis=1)
        same &= _close(trades["vwap_session"], want["vwap_session"][j], 1e-12)
        same &= _close(trades["vwap_window"], want["vwap_window"][j], 1e-12)
        same &= _close(trades["trade_flow_imbalance"], want["trade_flow_imbalance"][j], 1e-9, 1e-12)
        same &= trades["n_returns"] == want["n_returns"][j]
        same &= _close(trades["ret_mean"], want["ret_mean"][j], 1e-9, 1e-15)
        same &= _close(trades["ret_var"], want["ret_var"][j], 1e-7, 1e-18)
        same &= _close(trades["realized_vol"], want["realized_vol"][j], 1e-9, 1e-15)
        checks.add("sampled trade results equal the reference", same)
        bars = _full_rows(data, s.KIND_RESULT_BAR)
        if len(bars):
            want_bars = ref.completed_bars(all_trades, int(a.bar_s * 1e9))
            keyed = {(int(b["symbol"]), int(b["bar_start_ns"])): b for b in want_bars}
            fields = ("open", "high", "low", "close", "volume", "n_trades")
            same = np.array(
                [
                    (int(b["symbol"]), int(b["bar_start_ns"])) in keyed
                    and all(
                        int(b[x]) == int(keyed[(int(b["symbol"]), int(b["bar_start_ns"]))][x])
                        for x in fields
                    )
                    for b in bars
                ],
                bool,
            )
            checks.add("sampled bars equal the reference", same)


CHAIN_GREEKS = ("price", "delta", "gamma", "vega", "theta", "rho")


def _check_chain_values(opts: LatencyOptions, plan: Plan, data: RunData, checks: _Checks) -> None:
    """Check every record of the whole chain frames kept: contracts, underlying, values."""
    if not opts.chains:
        return
    name = "sampled chain prices and greeks equal the numpy reference"
    if not len(data.chain_full):
        checks.skip(name, "no chain frame kept whole")
        return
    from tickpath.kernels import black_scholes

    size = s.RESULT_CHAIN_SIZE
    parts = []
    for row in data.chain_full:
        count = int(row[: s.HEADER_SIZE].view(s.HEADER)[0]["count"])
        n = min(count, (len(row) - s.HEADER_SIZE) // size)
        parts.append(row[s.HEADER_SIZE : s.HEADER_SIZE + n * size].view(s.RESULT_CHAIN))
    rec = np.concatenate(parts)
    lengths = np.array([len(p) for p in parts], np.int64)
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])[
        np.repeat(np.arange(len(parts)), lengths)
    ]
    same = rec["index"] == np.arange(len(rec)) - first
    for field_name in (*COMMON.names, "backend"):
        same &= rec[field_name] == rec[field_name][first]
    checks.add("sampled chain records share their frame's tick, in contract order", same)

    u = rec["symbol"].astype(np.int64)
    i = rec["index"].astype(np.int64)
    ok = (u < opts.chains) & (i < opts.chain_size)
    table = np.stack([plan.chains[x] for x in range(opts.chains)])  # (chains, chain_size)
    want = table[np.where(ok, u, 0), np.where(ok, i, 0)]
    ok &= (rec["strike"] == want["strike"]) & (rec["expiry"] == want["expiry"])
    ok &= rec["is_call"].astype(bool) == want["is_call"]
    ok &= (rec["rate"] == CHAIN_RATE) & (rec["dividend"] == CHAIN_DIVIDEND)
    ok &= (rec["sigma"] == CHAIN_VOL) & (rec["option_symbol"] == s.NO_SYMBOL)
    ok &= np.isnan(rec["option_mid"]) & np.isnan(rec["implied_vol"])
    ok &= (rec["flags"] & s.RESULT_FLAG_QUOTED) == 0
    checks.add("sampled chain contracts are the configured ones", ok)

    seq = rec["in_seq"].astype(np.int64)
    known = seq < len(plan.rec_kind)
    price = np.zeros(len(rec))
    price[known] = tick_prices(plan, seq[known])
    checks.add(
        "sampled chain underlying is the triggering tick's price", rec["underlying"] == price
    )

    inputs = ("underlying", "strike", "expiry", "rate", "dividend", "sigma")
    usable = np.all([np.isfinite(rec[x]) for x in inputs], axis=0)
    usable &= (rec["underlying"] > 0) & (rec["strike"] > 0) & (rec["expiry"] >= 0)
    usable &= rec["sigma"] >= 0  # what black_scholes accepts; the others fail the check
    r = rec[usable]
    ref = black_scholes(*(r[x] for x in inputs), r["is_call"].astype(bool), backend="numpy")
    same = np.zeros(len(rec), bool)
    close = np.ones(len(r), bool)
    for greek in CHAIN_GREEKS:
        close &= _close(r[greek], getattr(ref, greek), rtol=CHAIN_RTOL, atol=1e-12)
    same[usable] = close
    checks.add(name, same)


def _records_by_seq(plan: Plan, kind: int, seqs: np.ndarray) -> np.ndarray:
    """The engine-stream records with these sequence numbers (all of ``kind``)."""
    assert (plan.rec_kind[seqs] == kind).all()
    return plan.kind_records[kind][plan.rec_sub[seqs]]


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

GOAL_P50_RATIO = 1.25
GOAL_P99_RATIO = 2.0
GOAL_ENGINE_TIME_US = 10.0


def _goals(opts: LatencyOptions, result: dict) -> dict:
    """The project's latency goals, each with its target, what was measured, and whether met."""
    micro = result["paths"].get("micro", {}).get("cpu")
    out: dict[str, Any] = {}
    if opts.batch != 1:
        out["note"] = "the latency goals are stated for single-record frames (--batch 1)"
    if micro is not None:
        ratio = micro["ratio_to_baseline"]
        for key, target in (("p50", GOAL_P50_RATIO), ("p99", GOAL_P99_RATIO)):
            got = ratio.get(key)
            out[f"micro_cpu_{key}_ratio_to_baseline"] = {
                "target_max": target,
                "measured": got,
                "met": got is not None and got <= target,
            }
        kernel = micro["stages"]["kernel"]["p50"]
        out["micro_cpu_kernel_stage_p50_us"] = {
            "target_max": GOAL_ENGINE_TIME_US,
            "measured": kernel,
            "met": kernel is not None and kernel < GOAL_ENGINE_TIME_US,
            "note": "in the run: decode + kernels only (done_ns - recv_ns), after a wake-up; "
            "the engine's own time per tick is at least this",
        }
    own = result.get("engine_time", {}).get("total", {}).get("p50")
    out["engine_time_per_frame_p50_us"] = {
        "target_max": GOAL_ENGINE_TIME_US,
        "measured": own,
        "met": own is not None and own < GOAL_ENGINE_TIME_US,
        "note": "process + publish_results per frame, in-process, back to back (engine_time)",
    }
    lost = result["loss"]["records_lost"]
    out["no_records_lost"] = {"measured": lost, "met": lost == 0}
    return out


def _strip_private(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_private(v) for k, v in value.items() if not k.startswith("_")}
    return value


def latency_report(opts: LatencyOptions, result: dict, machine: dict, seconds: float) -> dict:
    """The JSON document of one run (every figure in microseconds)."""
    return {
        "benchmark": BENCHMARK,
        "units": "us",
        "topology": "publisher PUB -> SUB tickpath serve PUB -> SUB subscriber, tcp loopback; "
        "baseline: the same hops through a raw pyzmq echo, in alternating slices",
        "config": {
            **asdict(opts),
            "spin_us_effective": round(opts.spin_us_effective, 3),
            "transport": "tcp 127.0.0.1",
            "clock": "CLOCK_REALTIME",
        },
        "machine": machine,
        "versions": versions(),
        "wall_s": round(seconds, 2),
        **_strip_private(result),
        "goals": _goals(opts, result),
    }


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, int):
        return str(x)
    return f"{x:.1f}" if x < 1000 else f"{x:.0f}"


def print_latency(report: dict, console: Any) -> None:
    """The rich table of one run, and a few lines on load, loss, goals and the self-check."""
    from rich.table import Table

    cfg, machine = report["config"], report["machine"]
    table = Table(
        title=f"tick -> result latency in us: {cfg['rate']:.0f} ticks/s, batch {cfg['batch']}, "
        f"{cfg['duration']:g} s per topology; {machine['cores']} cores, {machine['cpu']}",
        title_justify="left",
    )
    table.add_column("path / stage", no_wrap=True)
    for col in ("count", "p50", "p90", "p99", "p99.9", "p99.99", "max", "x p50", "x p99"):
        table.add_column(col, justify="right", no_wrap=True)

    def row(name: str, summary: dict, ratio: dict | None = None, style: str = "") -> None:
        cells = [_fmt(summary.get(k)) for k in ("count", "p50", "p90", "p99", "p99_9", "p99_99")]
        cells.append(_fmt(summary.get("max")))
        for key in ("p50", "p99"):
            cells.append("" if not ratio or ratio.get(key) is None else f"{ratio[key]:.2f}")
        table.add_row(name, *cells, style=style)

    row("baseline (raw pyzmq echo)", report["baseline"]["latency"], style="bold")
    for stage, summary in report["baseline"]["stages"].items():
        row(f"  stage {stage}", summary)
    for path, backends in report["paths"].items():
        for backend, entry in backends.items():
            row(f"{path} / {backend}", entry["latency"], entry["ratio_to_baseline"], "bold")
            for stage, summary in entry["stages"].items():
                row(f"  stage {stage}", summary)
            for name, summary in entry["by_result"].items():
                row(f"  {name} results", summary)
    row("publisher lag (sent - due)", report["load"]["publisher_lag"], style="dim")
    own = report.get("engine_time")
    if own:
        row("engine own time per frame", own["total"], style="bold")
        row("  process (1 numba call)", own["process"])
        row("  publish_results", own["publish"])
        for kind, entry in own["by_kind"].items():
            row(f"  {kind} frames, total", entry["total"])
        row("  floor: rejected frame", own["floor_process_rejected_frame"], style="dim")
        row("  floor: raw 2-part send", own["floor_raw_two_part_send"], style="dim")
    console.print(table)
    load, loss = report["load"], report["loss"]
    console.print(
        f"rate: target {load['target_rate']:.0f}, sent {load['achieved_send_rate']:.0f}, "
        f"results {load['achieved_result_rate']:.0f} per s of the engine's active time; "
        f"ticks lost {loss['records_lost']} of {loss['ticks_measured']} measured (engine "
        f"ingest gaps {loss['engine_ingest_gaps']}, result seq gaps {loss['result_seq_gaps']}); "
        f"baseline frames lost {report['baseline']['frames_lost']}"
    )
    for backend, entry in report["paths"].get("milli", {}).items():
        jobs, lane = entry["repricings"], entry["lane"]
        console.print(
            f"milli / {backend}: {entry['results_received']} chain results of "
            f"{entry['contracts_per_result']} contracts ({entry['underlyings']} underlyings) "
            f"for {entry['ticks_measured']} measured underlying ticks; engine, whole run: "
            f"{jobs['submitted']} repricings queued, {jobs['coalesced']} coalesced, "
            f"{jobs['refused']} refused, {jobs['late']} late, {jobs['published']} published; "
            f"{_fmt(entry['backend_us_per_call'])} us per {backend} call; lane: "
            f"{lane['workers']} worker(s), batches of <= {lane['max_batch']} within "
            f"{lane['max_wait_ms']:g} ms"
        )
    for name, goal in report["goals"].items():
        if isinstance(goal, dict):
            verdict = "[green]met[/]" if goal["met"] else "[red]missed[/]"
            target = f" (target <= {goal['target_max']:g})" if "target_max" in goal else ""
            console.print(f"goal {name}: {goal['measured']}{target} {verdict}")
    check = report["self_check"]
    if check["ok"]:
        skipped = f"; skipped: {check['skipped']}" if check["skipped"] else ""
        console.print(f"self-check passed: {sum(check['checked'].values())} checks{skipped}")
    else:
        console.print("[bold red]SELF-CHECK FAILED[/]")
        for line in check["errors"]:
            console.print(f"  {line}", markup=False)


def run_latency(
    opts: LatencyOptions,
    json_path: str | None = None,
    plot_path: str | None = None,
    console: Any = None,
) -> tuple[dict, bool]:
    """Run ``bench latency``; return the report and whether the self-check passed."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    opts.check()
    console = console or Console(width=None if sys.stdout.isatty() else 130)
    started = time.perf_counter()
    machine = machine_facts()
    plan = build_plan(opts)
    console.print("engine's own time per frame, in-process ...", end="\r")
    own_time = engine_time(opts, plan)
    workdir = Path(tempfile.mkdtemp(prefix="tickpath-bench-latency-"))
    try:
        columns = (TextColumn("{task.description:<18}"), BarColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True, refresh_per_second=4) as bar:
            data = run_children(opts, plan, workdir, bar)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = analyse(opts, plan, data)
    result["engine_time"] = own_time
    if not own_time["records_accepted_ok"]:
        result["self_check"]["ok"] = False
        result["self_check"]["errors"].append("in-process profile: not every record accepted")
    report = latency_report(opts, result, machine, time.perf_counter() - started)
    print_latency(report, console)
    if json_path:
        write_json(json_path, report)
    if plot_path:
        from tickpath.engine.bench.plot import percentile_plot

        series = [("baseline: raw pyzmq echo", result["baseline"]["_hist"], "k--")]
        for path, backends in result["paths"].items():
            for backend, entry in backends.items():
                what = "chain result" if path == MILLI_ROUTES[s.KIND_RESULT_CHAIN][0] else "result"
                series.append((f"{path} / {backend}: tick -> {what}", entry["_hist"], "-"))
        series.append(("publisher lag (sent - due)", result["load"]["_hist"], "C7:"))
        percentile_plot(
            plot_path,
            f"tick-to-result latency, {opts.rate:,.0f} ticks/s, batch {opts.batch}, "
            f"{machine['cores']} cores ({machine['cpu']})",
            series,
        )
    return report, report["self_check"]["ok"]
