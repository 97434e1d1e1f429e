"""Option chains on the milli path: contracts per underlying, repricing jobs, result records.

A chain (`ChainConfig`) becomes a `ChainSpec`: flat arrays of strikes, expiries, call
flags, model vols and quote symbols, fixed once built (a chain with generated strikes is
built on the first underlying price seen). Every underlying tick queues a `ChainJob`
keyed ``("chain", underlying)``, so a burst of ticks collapses into one repricing at the
newest price. The job computes, on the backend the router picks:

1. implied vols of the contracts that have a quote (``tickpath.kernels.implied_vol`` on the
   option quote's mid), then
2. price and greeks at the model vol, or at the implied vol where ``greeks_vol =
   "implied"`` and that vol is finite (``tickpath.kernels.black_scholes``),

and publishes one ``RESULT_CHAIN`` record per contract, all in one frame on topic
``chain.<underlying>``. Several chains taken together from the queue are fused into one
kernel call per kernel (`FusedChainJob`).

Two ways to compute, chosen by the backend's capabilities:

* the fast path, on a backend that supports `REPRICE_CHAIN` (the CPU): one nogil call
  per repricing (per chain of a fused group) computes both steps and writes the records
  themselves, from the chain's template (`ChainSpec.template`); the chain's arrays were
  validated once when it was built, so a job checks only its underlying price and mids
  (``prepare``). The result is a `ChainRecords`;
* the generic path, on any other backend (cuda, cupy, numpy): ``backend.implied_vol`` and
  ``backend.black_scholes`` on flat inputs, then the records are built field by field
  (`compute_chain_values`, `ChainJob.records`). The result is a `ChainValues`.

Both give the same records (bit for bit on the CPU: the same scalar source).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from tickpath.engine.dispatch.backends import REPRICE_CHAIN
from tickpath.engine.dispatch.config import ChainConfig
from tickpath.engine.dispatch.jobs import Job, JobRejected, Outcome, non_finite
from tickpath.engine.wire import schema as s

# sink(topic, kind, stream_id, records): hands a finished result frame's records to the
# engine thread, which adds the header and publishes it (called on a worker thread).
Sink = Callable[[bytes, int, int, np.ndarray], None]


@dataclass(frozen=True)
class ChainSpec:
    """The contracts of one chain as flat arrays (immutable once built)."""

    underlying: int
    strike: np.ndarray  # float64[n]
    expiry: np.ndarray  # float64[n], years
    is_call: np.ndarray  # bool[n]
    vol: np.ndarray  # float64[n], model vol
    option_symbol: np.ndarray  # uint32[n], NO_SYMBOL where not quoted
    rate: float
    dividend: float
    use_implied: bool  # greeks at the implied vol where it is finite
    # RESULT_CHAIN[n] with the static fields set and sigma = the model vol (fast path)
    template: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Validate the arrays once (a repricing then checks only its own inputs)."""
        n = self.strike.size if isinstance(self.strike, np.ndarray) else -1
        for name, dtype in (("strike", np.float64), ("expiry", np.float64),
                            ("is_call", np.bool_), ("vol", np.float64),
                            ("option_symbol", np.uint32)):  # fmt: skip
            a = getattr(self, name)
            if not (isinstance(a, np.ndarray) and a.dtype == dtype and a.shape == (n,)
                    and a.flags.c_contiguous):  # fmt: skip
                raise ValueError(f"chain {self.underlying}: {name} must be a contiguous "
                                 f"{np.dtype(dtype)}[{n}] array")  # fmt: skip
        problems = []
        for name, values, positive in (
            ("strikes", self.strike, True), ("expiries", self.expiry, False),
            ("vols", self.vol, False),
        ):  # fmt: skip
            above = values > 0 if positive else values >= 0
            if not (np.isfinite(values).all() and above.all()):
                problems.append(f"{name} must be finite and {'>' if positive else '>='} 0")
        if not (math.isfinite(self.rate) and math.isfinite(self.dividend)):
            problems.append("rate and dividend must be finite")
        if not 0 <= self.underlying < s.NO_SYMBOL:
            problems.append("underlying must be a symbol id")
        if problems:
            raise ValueError(f"chain {self.underlying}: " + "; ".join(problems))
        rec = np.zeros(n, s.RESULT_CHAIN)
        rec["symbol"] = self.underlying
        rec["option_symbol"] = self.option_symbol
        rec["index"] = np.arange(n, dtype=np.uint32)
        rec["is_call"] = self.is_call
        rec["strike"] = self.strike
        rec["expiry"] = self.expiry
        rec["rate"] = self.rate
        rec["dividend"] = self.dividend
        rec["sigma"] = self.vol
        rec["option_mid"] = rec["implied_vol"] = np.nan
        rec.flags.writeable = False  # copied per repricing, never written
        object.__setattr__(self, "template", rec)

    @property
    def size(self) -> int:
        """Contracts in the chain."""
        return int(self.strike.size)

    def index_of_symbol(self) -> dict[int, int]:
        """``{option quote symbol: contract index}``."""
        return {
            int(sym): i for i, sym in enumerate(self.option_symbol.tolist()) if sym != s.NO_SYMBOL
        }


def generated_strikes(config: ChainConfig, first_price: float) -> list[float]:
    """``strike_count`` strikes ``strike_step`` apart (relative) around `first_price`."""
    tick = config.strike_tick
    centre = round(first_price / tick) * tick
    half = (config.strike_count - 1) / 2
    strikes = []
    for i in range(config.strike_count):
        k = round(centre * (1.0 + config.strike_step * (i - half)) / tick) * tick
        if k > 0 and (not strikes or k > strikes[-1] + tick / 2):
            strikes.append(round(k, 10))
    return strikes


def build_chain(config: ChainConfig, first_price: float | None = None) -> ChainSpec | None:
    """The chain's contracts; None while its strikes wait for a first underlying price."""
    if config.options:
        opts = config.options
        return ChainSpec(
            underlying=config.underlying,
            strike=np.array([o.strike for o in opts], np.float64),
            expiry=np.array([o.expiry for o in opts], np.float64),
            is_call=np.array([o.call for o in opts], np.bool_),
            vol=np.array([config.vol if o.vol is None else o.vol for o in opts], np.float64),
            option_symbol=np.array(
                [s.NO_SYMBOL if o.symbol is None else o.symbol for o in opts], np.uint32
            ),
            rate=config.rate,
            dividend=config.dividend,
            use_implied=config.greeks_vol == "implied",
        )
    if config.strikes:
        strikes = list(config.strikes)
    elif first_price is None or not first_price > 0:
        return None
    else:
        strikes = generated_strikes(config, first_price)
    flags = [f for f, on in ((True, config.calls), (False, config.puts)) if on]
    grid = [(t, k, c) for t in config.expiries for k in strikes for c in flags]
    n = len(grid)
    if config.option_symbol_base is None:
        symbols = np.full(n, s.NO_SYMBOL, np.uint32)
    else:
        # the symbol range is reserved for the configured strike_count (see config)
        symbols = np.arange(n, dtype=np.uint32) + np.uint32(config.option_symbol_base)
    return ChainSpec(
        underlying=config.underlying,
        strike=np.array([k for _, k, _ in grid], np.float64),
        expiry=np.array([t for t, _, _ in grid], np.float64),
        is_call=np.array([c for _, _, c in grid], np.bool_),
        vol=np.full(n, config.vol, np.float64),
        option_symbol=symbols,
        rate=config.rate,
        dividend=config.dividend,
        use_implied=config.greeks_vol == "implied",
    )


class Provenance(NamedTuple):
    """The input record that triggered a repricing (the common block of its results)."""

    ts_ns: int = 0
    in_seq: int = 0
    in_send_ns: int = 0
    recv_ns: int = 0
    in_stream: int = 0


class ChainValues(NamedTuple):
    """What one repricing computed, per contract."""

    sigma: np.ndarray  # vol used for price and greeks
    implied_vol: np.ndarray  # NaN without a quote
    price: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    vega: np.ndarray
    theta: np.ndarray
    rho: np.ndarray


def compute_chain_values(
    backend: Any,
    S: np.ndarray,
    K: np.ndarray,
    T: np.ndarray,
    r: np.ndarray,
    q: np.ndarray,
    vol: np.ndarray,
    is_call: np.ndarray,
    option_mid: np.ndarray,
    use_implied: np.ndarray,
) -> ChainValues:
    """Implied vols where quoted, then prices and greeks, on `backend` (flat arrays)."""
    implied = np.full(K.size, np.nan)
    quoted = np.flatnonzero(np.isfinite(option_mid))
    if quoted.size:
        implied[quoted] = backend.implied_vol(
            option_mid[quoted], S[quoted], K[quoted], T[quoted], r[quoted], q[quoted],
            is_call[quoted],
        )  # fmt: skip
    sigma = vol.copy()
    take = use_implied & np.isfinite(implied)
    sigma[take] = implied[take]
    bs = backend.black_scholes(S, K, T, r, q, sigma, is_call)
    return ChainValues(
        sigma, implied, *(np.asarray(getattr(bs, f)) for f in ChainValues._fields[2:])
    )


def check_chain_values(values: ChainValues) -> str | None:
    """Prices and greeks must be finite; implied vols finite and >= 0, or NaN (no vol)."""
    problem = non_finite("black_scholes", *values[2:])
    if problem is not None:
        return problem
    iv = values.implied_vol
    bad = int(np.count_nonzero(np.isinf(iv) | (iv < 0)))
    return _bad_implied(bad)


def _bad_implied(count: int) -> str | None:
    return f"implied_vol: {count} infinite or negative value(s)" if count else None


class ChainRecords(NamedTuple):
    """What the fast path computed: the records themselves, and what its check needs."""

    records: np.ndarray  # RESULT_CHAIN[n], all but done_ns and the outcome's flags
    n_non_finite: int  # price and greek values that are not finite
    n_bad_implied: int  # implied vols that are infinite or negative


def reprice_chains(backend: Any, jobs: list[ChainJob]) -> ChainRecords:
    """The fast path: one ``reprice_chain`` call per chain, into one array for all `jobs`
    (each call copies its chain's template in the kernel: a numpy copy or concatenation
    of structured arrays would hold the GIL longer than the computation)."""
    records = np.empty(sum(job.size for job in jobs), s.RESULT_CHAIN)
    n_non_finite = n_bad_implied = start = 0
    for job in jobs:
        stop = start + job.size
        spec = job.spec
        bad, bad_implied = backend.reprice_chain(
            records[start:stop], spec.template, job.option_mid, job.S, spec.use_implied,
            job.provenance,
        )  # fmt: skip
        n_non_finite += bad
        n_bad_implied += bad_implied
        start = stop
    return ChainRecords(records, n_non_finite, n_bad_implied)


def check_chain_result(result: ChainValues | ChainRecords) -> str | None:
    """`check_chain_values`, or the same verdict from the fast path's counts."""
    if isinstance(result, ChainRecords):
        if result.n_non_finite:
            return f"black_scholes: {result.n_non_finite} non-finite value(s) for finite inputs"
        return _bad_implied(result.n_bad_implied)
    return check_chain_values(result)


class ChainJob(Job):
    """Reprice one chain at one underlying price (coalesced per underlying)."""

    analytic = "chain"

    def __init__(
        self,
        spec: ChainSpec,
        underlying_price: float,
        option_mid: np.ndarray,
        provenance: Provenance,
        sink: Sink,
    ) -> None:
        self.spec = spec
        self.key = ("chain", spec.underlying)
        self.size = spec.size
        self.S = float(underlying_price)
        self.option_mid = option_mid  # a snapshot, owned by the job
        self.provenance = provenance
        self.sink = sink
        self.deadline_ns = 0

    def prepare(self) -> None:
        """Refuse an underlying price that is not finite and > 0, or mids of the wrong
        layout (the chain's own arrays were validated when it was built)."""
        if not (math.isfinite(self.S) and self.S > 0):
            raise JobRejected(
                "invalid", f"chain {self.spec.underlying}: underlying price {self.S!r}"
            )
        mid = self.option_mid
        if not (isinstance(mid, np.ndarray) and mid.dtype == np.float64
                and mid.shape == (self.size,) and mid.flags.c_contiguous):  # fmt: skip
            raise JobRejected(
                "invalid", f"chain {self.spec.underlying}: option mids must be float64[{self.size}]"
            )

    def inputs(self) -> tuple[np.ndarray, ...]:
        """Flat per-contract inputs ``(S, K, T, r, q, vol, is_call, mid, use_implied)``."""
        spec, n = self.spec, self.spec.size
        return (
            np.full(n, self.S), spec.strike, spec.expiry, np.full(n, spec.rate),
            np.full(n, spec.dividend), spec.vol, spec.is_call, self.option_mid,
            np.full(n, spec.use_implied),
        )  # fmt: skip

    def compute(self, backend: Any) -> ChainValues | ChainRecords:
        """Implied vols, prices and greeks of the chain on `backend` (fast path if it can)."""
        if backend.supports(REPRICE_CHAIN):
            return reprice_chains(backend, [self])
        return compute_chain_values(backend, *self.inputs())

    def check(self, result: ChainValues | ChainRecords) -> str | None:
        """See `check_chain_result`."""
        return check_chain_result(result)

    def records(self, values: ChainValues | ChainRecords, outcome: Outcome) -> np.ndarray:
        """The ``RESULT_CHAIN`` records of this repricing."""
        if isinstance(values, ChainRecords):
            rec = values.records
            rec["done_ns"] = outcome.done_ns or time.time_ns()
            if outcome.fallback or outcome.late:
                rec["flags"] |= (s.RESULT_FLAG_FALLBACK if outcome.fallback else 0) | (
                    s.RESULT_FLAG_LATE if outcome.late else 0
                )
            return rec
        spec, n = self.spec, self.spec.size
        rec = np.zeros(n, s.RESULT_CHAIN)
        p = self.provenance
        rec["ts_ns"] = p.ts_ns
        rec["in_seq"] = p.in_seq
        rec["in_send_ns"] = p.in_send_ns
        rec["recv_ns"] = p.recv_ns
        rec["done_ns"] = outcome.done_ns or time.time_ns()
        rec["in_stream"] = p.in_stream
        rec["symbol"] = spec.underlying
        rec["option_symbol"] = spec.option_symbol
        rec["index"] = np.arange(n, dtype=np.uint32)
        rec["is_call"] = spec.is_call
        rec["backend"] = s.BACKEND_CODES.get(outcome.backend, s.BACKEND_OTHER)
        flags = np.where(np.isfinite(self.option_mid), s.RESULT_FLAG_QUOTED, 0)
        if outcome.fallback:
            flags |= s.RESULT_FLAG_FALLBACK
        if outcome.late:
            flags |= s.RESULT_FLAG_LATE
        rec["flags"] = flags
        rec["strike"] = spec.strike
        rec["expiry"] = spec.expiry
        rec["underlying"] = self.S
        rec["rate"] = spec.rate
        rec["dividend"] = spec.dividend
        rec["option_mid"] = self.option_mid
        for name in ChainValues._fields:
            rec[name] = getattr(values, name)
        return rec

    def finish(self, outcome: Outcome) -> None:
        """Publish the chain's records (nothing on failure: the failure is counted)."""
        if outcome.ok:
            topic = b"chain.%d" % self.spec.underlying
            self.sink(topic, s.KIND_RESULT_CHAIN, self.spec.underlying,
                      self.records(outcome.result, outcome))  # fmt: skip

    @classmethod
    def fuse(cls, jobs: list[Job]) -> Job | None:
        """All chains in one implied-vol call and one Black-Scholes call."""
        return FusedChainJob(jobs)


class FusedChainJob(Job):
    """Several `ChainJob`s computed together; each is finished with its own slice."""

    analytic = "chain"

    def __init__(self, jobs: list[ChainJob]) -> None:
        self.jobs = jobs
        self.size = sum(job.size for job in jobs)
        self.deadline_ns = min(job.deadline_ns for job in jobs)
        self.key = None
        self.bounds = np.cumsum([0] + [job.size for job in jobs])

    def compute(self, backend: Any) -> ChainValues | ChainRecords:
        """One fast-path call, or one call per kernel over the concatenated chains."""
        if backend.supports(REPRICE_CHAIN):
            return reprice_chains(backend, self.jobs)
        parts = [job.inputs() for job in self.jobs]
        return compute_chain_values(backend, *(np.concatenate(column) for column in zip(*parts)))

    def check(self, result: ChainValues | ChainRecords) -> str | None:
        """See `check_chain_result`."""
        return check_chain_result(result)

    def finish(self, outcome: Outcome) -> None:
        """Finish each chain with its slice of the values (or records)."""
        for i, job in enumerate(self.jobs):
            part = outcome
            if outcome.ok:
                lo, hi = int(self.bounds[i]), int(self.bounds[i + 1])
                result = outcome.result
                if isinstance(result, ChainRecords):
                    sliced: Any = ChainRecords(result.records[lo:hi], 0, 0)
                else:
                    sliced = ChainValues(*(a[lo:hi] for a in result))
                part = Outcome(**{**outcome.__dict__, "result": sliced})
            job.finish(part)
