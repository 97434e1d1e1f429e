"""What turns ticks into milli-path stream jobs: chains repriced, return windows correlated.

The engine thread does as little as it can: after a frame it packs one small `TickEvent`
per input that concerns a chain (an underlying's price, an option's quote) and, on the
correlation clock, one price sample; `StreamJobs` does the rest wherever the milli path
runs (its own process by default, `tickpath.engine.dispatch.stream_process`): it keeps
each chain's option quotes and last price, builds generated chains on their first price,
keeps the window of log returns, and submits `ChainJob` / `CorrJob` to the stream lane.

Events travel as packed bytes (`pack_event` / `unpack_events`), so the same code runs
whether they cross a process boundary or not.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np

from tickpath.engine.dispatch.chains import ChainJob, ChainSpec, Provenance, Sink, build_chain
from tickpath.engine.dispatch.config import ChainConfig, DispatchConfig, chain_option_symbols
from tickpath.engine.dispatch.correlation import CorrJob, ReturnSampler
from tickpath.engine.dispatch.jobs import Job
from tickpath.kernels.cpu import streaming as k

log = logging.getLogger("tickpath.dispatch")

ROLE_UNDERLYING = 1
ROLE_OPTION = 2

# price, ts_ns, seq, send_ns, recv_ns, symbol, stream, analytic (k.A_QUOTE / k.A_TRADE)
_EVENT = struct.Struct("<dqqqqIIB")
_SAMPLE = struct.Struct("<q")  # newest_ts_ns, after the prices


class TickEvent(NamedTuple):
    """One input that concerns the milli path: a price and where it came from."""

    symbol: int
    analytic: int  # k.A_QUOTE or k.A_TRADE
    price: float  # quote mid (0.0 for a one-sided quote) or trade price, price units
    provenance: Provenance


def pack_event(
    symbol: int, analytic: int, price: float, ts_ns: int, seq: int, send_ns: int,
    recv_ns: int, stream: int,
) -> bytes:  # fmt: skip
    """One event's bytes (concatenate several into one message)."""
    return _EVENT.pack(price, ts_ns, seq, send_ns, recv_ns, symbol, stream, analytic)


def unpack_events(data: bytes | memoryview) -> Iterator[TickEvent]:
    """The events of a message made by `pack_event`; a torn tail is ignored."""
    usable = len(data) - len(data) % _EVENT.size
    for price, ts, seq, send, recv, symbol, stream, analytic in _EVENT.iter_unpack(
        memoryview(data)[:usable]
    ):
        yield TickEvent(symbol, analytic, price, Provenance(ts, seq, send, recv, stream))


def pack_sample(prices: np.ndarray, newest_ts_ns: int) -> bytes:
    """A correlation sample: the symbols' prices (float64, NaN: none yet), newest input time."""
    return np.ascontiguousarray(prices, np.float64).tobytes() + _SAMPLE.pack(newest_ts_ns)


def unpack_sample(data: bytes | memoryview) -> tuple[np.ndarray, int]:
    """The prices and the newest input time of a `pack_sample` message."""
    body = memoryview(data)
    (newest,) = _SAMPLE.unpack_from(body, len(body) - _SAMPLE.size)
    return np.frombuffer(body[: len(body) - _SAMPLE.size], np.float64).copy(), newest


def symbol_roles(config: DispatchConfig, n_symbols: int) -> np.ndarray:
    """Per symbol: ROLE_UNDERLYING and/or ROLE_OPTION bits (0: no chain cares)."""
    role = np.zeros(n_symbols, np.int8)
    for chain in config.chains:
        role[chain.underlying] |= ROLE_UNDERLYING
        for symbol in chain_option_symbols(chain):
            role[symbol] |= ROLE_OPTION
    return role


class ChainState:
    """One chain's contracts, option quotes and last underlying price."""

    def __init__(self, config: ChainConfig) -> None:
        self.config = config
        self.spec: ChainSpec | None = build_chain(config)
        self.option_mid = np.full(self.spec.size, np.nan) if self.spec else None
        self.pending_mid: dict[int, float] = {}  # quotes before the chain is built
        self.last_price = float("nan")
        self.submitted = 0
        self.refused = 0
        self.index: dict[int, int] = self.spec.index_of_symbol() if self.spec else {}

    def build(self, price: float) -> None:
        """Build generated strikes around `price`; apply quotes that came before."""
        self.spec = build_chain(self.config, price)
        self.option_mid = np.full(self.spec.size, np.nan)
        self.index = self.spec.index_of_symbol()
        for symbol, mid in self.pending_mid.items():
            i = self.index.get(symbol)
            if i is not None:
                self.option_mid[i] = mid
        self.pending_mid.clear()
        log.info(
            "chain %d: %d contracts, strikes %.4g..%.4g, expiries %s",
            self.config.underlying, self.spec.size, self.spec.strike.min(),
            self.spec.strike.max(), sorted(set(self.spec.expiry.tolist())),
        )  # fmt: skip


class StreamJobs:
    """Chains and correlation: tick events and samples in, jobs to ``submit`` out.

    ``submit(job)`` queues a job on the stream lane and says whether it was taken; the
    jobs deliver their records through ``sink``.
    """

    def __init__(
        self,
        config: DispatchConfig,
        n_symbols: int,
        submit: Callable[[Job], bool],
        sink: Sink,
    ) -> None:
        self.submit = submit
        self.sink = sink
        self.role = symbol_roles(config, n_symbols).tolist()
        self.chains: dict[int, ChainState] = {c.underlying: ChainState(c) for c in config.chains}
        self.option_of: dict[int, ChainState] = {
            symbol: self.chains[c.underlying]
            for c in config.chains
            for symbol in chain_option_symbols(c)
        }
        self.sampler = ReturnSampler(config.correlation) if config.correlation.symbols else None
        self.corr_submitted = 0
        self.corr_refused = 0
        self.events = 0

    def on_events(self, data: bytes | memoryview) -> None:
        """Apply a message of packed tick events (in the order they happened)."""
        for event in unpack_events(data):
            self.on_event(event)

    def on_event(self, event: TickEvent) -> None:
        """Reprice on an underlying's price; record an option's quote (and reprice if the
        chain asks for it)."""
        self.events += 1
        symbol, analytic, price = event.symbol, event.analytic, event.price
        if not 0 <= symbol < len(self.role):
            return
        role = self.role[symbol]
        if role & ROLE_UNDERLYING and price > 0:  # a one-sided quote has no mid
            chain = self.chains[symbol]
            chain.last_price = price
            if chain.spec is None:
                chain.build(price)
            self._reprice(chain, event.provenance)
        if role & ROLE_OPTION and analytic == k.A_QUOTE:
            chain = self.option_of[symbol]
            mid = price if price > 0 else float("nan")
            if chain.spec is None:
                chain.pending_mid[symbol] = mid
                return
            i = chain.index.get(symbol)
            if i is None:
                return  # a reserved symbol of a generated chain with fewer strikes
            chain.option_mid[i] = mid
            if chain.config.reprice_on_option_quote and chain.last_price > 0:
                self._reprice(chain, event.provenance)

    def _reprice(self, chain: ChainState, provenance: Provenance) -> None:
        job = ChainJob(chain.spec, chain.last_price, chain.option_mid.copy(), provenance, self.sink)
        if self.submit(job):
            chain.submitted += 1
        else:
            chain.refused += 1

    def on_sample(self, prices: np.ndarray, newest_ts_ns: int) -> None:
        """Push one correlation sample; submit a `CorrJob` when one is due."""
        sampler = self.sampler
        if sampler is None or not sampler.push(prices, newest_ts_ns):
            return
        job = CorrJob(
            sampler.window(), sampler.symbols, sampler.samples, sampler.newest_ts_ns, self.sink
        )
        if self.submit(job):
            self.corr_submitted += 1
        else:
            self.corr_refused += 1

    def stats(self) -> dict:
        """``chains`` (per underlying) and, when configured, ``correlation``."""
        out: dict = {
            "chains": {
                str(u): {
                    "contracts": c.spec.size if c.spec is not None else 0,
                    "last_price": c.last_price if c.last_price == c.last_price else None,
                    "submitted": c.submitted,
                    "refused": c.refused,
                    "quoted": int(np.count_nonzero(np.isfinite(c.option_mid)))
                    if c.option_mid is not None
                    else 0,
                }
                for u, c in self.chains.items()
            },
            "events": self.events,
        }
        if self.sampler is not None:
            out["correlation"] = {
                "symbols": len(self.sampler.symbols),
                "samples": self.sampler.samples,
                "rows": self.sampler.rows,
                "submitted": self.corr_submitted,
                "refused": self.corr_refused,
            }
        return out
