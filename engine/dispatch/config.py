"""Configuration of the milli path: routing, queues, health, calibration, chains, correlation.

The ``[dispatch]`` section of the engine's TOML config (docs/dispatch.md). Every struct is a
frozen ``msgspec.Struct`` with ``kw_only`` and ``forbid_unknown_fields``; values are checked
in ``__post_init__`` and a bad one is refused with a one-line ``ValueError`` (which
``tickpath.engine.config.load_config`` turns into a ``ConfigError``). Checks that need the rest of
the engine's config (symbol ids against ``analytics.n_symbols``) are in
:func:`check_against_engine`.

Example::

    [dispatch.routes]
    chain = "auto"            # cuda/cupy above the measured crossover, else cpu

    [[dispatch.chains]]
    underlying = 0            # symbol id whose quote mids and trades reprice the chain
    expiries = [0.083, 0.25, 0.5]
    strike_count = 11         # strikes generated around the first underlying price
    strike_step = 0.025
    vol = 0.3
    option_symbol_base = 100  # QUOTEs on symbols 100.. are this chain's options

    [dispatch.correlation]
    symbols = [0, 1, 2, 3]
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

# Analytics the milli path routes (the micro path's "tick" is reported, never queued here).
MILLI_ANALYTICS = ("chain", "corr", "iv_surface", "var")
# The batch kernel whose crossover decides each analytic's "auto" route.
KERNEL_OF_ANALYTIC = {
    "chain": "chain",  # calibrated as the whole repricing job (engine.dispatch.calibration)
    "corr": "covariance",
    "iv_surface": "implied_vol",
    "var": "portfolio_var",
}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


class _Struct(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    pass


class LaneConfig(_Struct):
    """One bounded job queue and the worker threads that drain it.

    Overflow policy: a job whose coalescing key is already queued replaces the queued one
    in place (counted ``coalesced``); a job with a new key when ``capacity`` keys are
    queued is refused (counted ``refused``): the producer is never blocked.
    """

    capacity: int = 1024  # queued jobs (distinct keys); beyond: refused
    max_batch: int = 32  # jobs a worker takes at once (same-analytic jobs are fused)
    max_wait_ms: float = 1.0  # how long the oldest job may wait for a batch to fill
    deadline_ms: float = 250.0  # default deadline of a job, from submission
    expired: Literal["run", "drop"] = "run"  # a job taken after its deadline: run or drop
    workers: int = 1  # worker threads
    timeout_s: float = 2.0  # a non-CPU backend call longer than this is a failure

    def __post_init__(self) -> None:
        _require(1 <= self.capacity <= 1 << 20, "dispatch lane capacity must be in 1..1048576")
        _require(1 <= self.max_batch <= 4096, "dispatch lane max_batch must be in 1..4096")
        _require(
            _finite(self.max_wait_ms) and 0 <= self.max_wait_ms <= 1000,
            "dispatch lane max_wait_ms must be in 0..1000",
        )
        _require(
            _finite(self.deadline_ms) and self.deadline_ms > 0,
            "dispatch lane deadline_ms must be > 0",
        )
        _require(1 <= self.workers <= 64, "dispatch lane workers must be in 1..64")
        _require(_finite(self.timeout_s) and self.timeout_s > 0, "dispatch timeout_s must be > 0")


class HealthConfig(_Struct):
    """When a failed backend is tried again."""

    retry_after_s: float = 5.0  # first pause after a failure
    max_retry_after_s: float = 60.0  # the pause doubles per consecutive failure, up to this

    def __post_init__(self) -> None:
        _require(
            _finite(self.retry_after_s) and self.retry_after_s > 0,
            "dispatch.health.retry_after_s must be > 0",
        )
        _require(
            _finite(self.max_retry_after_s) and self.max_retry_after_s >= self.retry_after_s,
            "dispatch.health.max_retry_after_s must be >= retry_after_s",
        )


class CalibrationConfig(_Struct):
    """How the GPU batch-size crossover N* of each kernel is found."""

    # "startup": measure on a usable GPU at start-up (unless `file` holds a figure for it);
    # "file": only read `file`; "off": no crossover, so "auto" routes stay on the cpu.
    mode: Literal["startup", "file", "off"] = "startup"
    file: str | None = None  # JSON written by `python -m tickpath.engine.dispatch.calibration`
    sizes: tuple[int, ...] = (256, 4096, 65536)  # items per measured batch (element-wise kernels)
    repeats: int = 3  # best of

    def __post_init__(self) -> None:
        _require(
            len(self.sizes) >= 2 and all(1 <= n <= 1 << 26 for n in self.sizes),
            "dispatch.calibration.sizes needs at least two sizes in 1..67108864",
        )
        _require(1 <= self.repeats <= 100, "dispatch.calibration.repeats must be in 1..100")
        _require(
            self.mode != "file" or self.file is not None,
            "dispatch.calibration.mode = 'file' needs dispatch.calibration.file",
        )


class RoutesConfig(_Struct):
    """Backend per milli-path analytic: "auto", or a backend name ("cpu", "cuda", ...).

    "auto": the GPU backend (in ``gpu_preference`` order) whose measured crossover the
    job's size reaches, else cpu. A named backend that is unusable or unhealthy: cpu.
    """

    chain: str = "auto"
    corr: str = "auto"
    iv_surface: str = "auto"
    var: str = "auto"

    def __post_init__(self) -> None:
        for analytic in MILLI_ANALYTICS:
            value = getattr(self, analytic)
            _require(
                isinstance(value, str) and value.replace("-", "").replace("_", "").isalnum(),
                f"dispatch.routes.{analytic} must be 'auto' or a backend name, got {value!r}",
            )

    def route(self, analytic: str) -> str:
        """The configured route of `analytic`."""
        return getattr(self, analytic)


class OptionConfig(_Struct):
    """One explicit option contract of a chain."""

    strike: float
    expiry: float  # years
    call: bool
    symbol: int | None = None  # symbol id of its QUOTEs (for implied vol); None: not quoted
    vol: float | None = None  # model volatility; None: the chain's `vol`

    def __post_init__(self) -> None:
        _require(_finite(self.strike) and self.strike > 0, "option strike must be > 0")
        _require(_finite(self.expiry) and self.expiry > 0, "option expiry must be > 0 years")
        _require(self.symbol is None or self.symbol >= 0, "option symbol must be >= 0")
        _require(self.vol is None or (_finite(self.vol) and self.vol > 0), "option vol must be > 0")


class ChainConfig(_Struct):
    """The option chain of one underlying.

    Contracts are the explicit ``options``, or else the grid ``strikes x expiries x
    (calls, puts)``. With no ``strikes`` the grid's strikes are generated around the first
    underlying price seen: ``strike_count`` strikes ``strike_step`` apart (relative),
    centred on that price, rounded to ``strike_tick``. Grid contracts are quoted on
    symbol ids ``option_symbol_base + index`` when ``option_symbol_base`` is set (index:
    expiry-major, then strike, then call before put).
    """

    underlying: int
    rate: float = 0.0
    dividend: float = 0.0
    vol: float = 0.2  # model volatility
    expiries: tuple[float, ...] = (1 / 12, 0.25, 0.5)
    strikes: tuple[float, ...] = ()
    strike_count: int = 11
    strike_step: float = 0.025
    strike_tick: float = 0.01
    calls: bool = True
    puts: bool = True
    option_symbol_base: int | None = None
    options: tuple[OptionConfig, ...] = ()
    # "model": price and greeks at the model vol; "implied": at the quote's implied vol
    # where the option has a quote with a finite implied vol, else the model vol.
    greeks_vol: Literal["model", "implied"] = "model"
    reprice_on_option_quote: bool = True

    def __post_init__(self) -> None:
        _require(self.underlying >= 0, "chain underlying must be a symbol id >= 0")
        _require(
            _finite(self.rate) and _finite(self.dividend), "chain rate/dividend must be finite"
        )
        _require(_finite(self.vol) and self.vol > 0, "chain vol must be > 0")
        if self.options:
            _require(
                not self.strikes and self.option_symbol_base is None,
                "a chain takes either explicit options or a strikes/expiries grid, not both",
            )
            _require(len(self.options) <= 100_000, "a chain holds at most 100000 options")
            return
        _require(len(self.expiries) >= 1, "chain expiries must not be empty")
        _require(
            all(_finite(t) and t > 0 for t in self.expiries), "chain expiries must be > 0 years"
        )
        _require(all(_finite(k) and k > 0 for k in self.strikes), "chain strikes must be > 0")
        _require(1 <= self.strike_count <= 10_001, "chain strike_count must be in 1..10001")
        _require(
            _finite(self.strike_step) and 0 < self.strike_step < 2.0 / max(self.strike_count, 2),
            "chain strike_step must be > 0 and keep every strike positive",
        )
        _require(_finite(self.strike_tick) and self.strike_tick > 0, "strike_tick must be > 0")
        _require(self.calls or self.puts, "a chain needs calls or puts")
        _require(
            self.option_symbol_base is None or self.option_symbol_base >= 0,
            "chain option_symbol_base must be >= 0",
        )
        n_strikes = len(self.strikes) or self.strike_count
        size = n_strikes * len(self.expiries) * (int(self.calls) + int(self.puts))
        _require(size <= 100_000, f"a chain holds at most 100000 options, this grid has {size}")


class CorrelationConfig(_Struct):
    """Rolling covariance and correlation of log returns across symbols (topic ``corr``).

    Prices (quote mid or last trade) are sampled every ``sample_interval_s``; a row of
    log returns between consecutive samples enters a window of ``window`` rows, and every
    ``every_samples`` samples the matrices of the window are computed on the milli path.
    Empty ``symbols``: off.
    """

    symbols: tuple[int, ...] = ()
    source: Literal["mid", "trade"] = "mid"
    window: int = 128
    sample_interval_s: float = 0.1
    every_samples: int = 10

    def __post_init__(self) -> None:
        _require(len(self.symbols) != 1, "dispatch.correlation.symbols needs at least two symbols")
        _require(
            len(set(self.symbols)) == len(self.symbols) and all(x >= 0 for x in self.symbols),
            "dispatch.correlation.symbols must be distinct symbol ids",
        )
        _require(len(self.symbols) <= 4096, "dispatch.correlation.symbols: at most 4096")
        _require(3 <= self.window <= 1 << 20, "dispatch.correlation.window must be in 3..1048576")
        _require(
            _finite(self.sample_interval_s) and self.sample_interval_s > 0,
            "dispatch.correlation.sample_interval_s must be > 0",
        )
        _require(self.every_samples >= 1, "dispatch.correlation.every_samples must be >= 1")


class RequestsConfig(_Struct):
    """The request/reply endpoint (``tickpath serve --requests ENDPOINT``)."""

    endpoint: str | None = None  # a ROUTER the request process binds; None: no endpoint
    max_message_bytes: int = 256 << 20  # larger requests are dropped by libzmq (MAXMSGSIZE)
    max_items: int = 20_000_000  # options, grid points or scenarios in one request
    # A JSON body longer than this is answered too_large before anything is decoded: large
    # arrays travel as msgpack ``bin`` (raw little-endian float64), never as JSON lists.
    max_json_bytes: int = 1 << 20
    # The request process's CPU priority below the engine's, so that on a busy machine the
    # kernel's scheduler gives the tick thread the CPU first: this niceness added to the
    # engine's, on every thread; or SCHED_IDLE (preempted as soon as the tick thread wakes,
    # but also by every other process: for a host that runs the engine alone).
    sched_idle: bool = False
    nice: int = 10
    # ZMQ_RCVBUF of each client connection (0: the kernel's autotuning). Small: a request
    # is read in copies of at most this much, so that a 190 MiB body never holds a CPU in
    # the kernel for long (see connections.receive_buffer_bytes); heartbeats and the
    # handshake deadline come from the engine's connections section.
    receive_buffer_bytes: int = 64 << 10
    # ZMQ_SNDBUF of each client connection (0: autotuned): a large reply is written in
    # copies of at most this much (see connections.send_buffer_bytes).
    send_buffer_bytes: int = 64 << 10

    def __post_init__(self) -> None:
        _require(
            self.endpoint is None or "://" in self.endpoint,
            f"dispatch.requests.endpoint {self.endpoint!r} is not a ZeroMQ endpoint",
        )
        _require(
            1024 <= self.max_message_bytes <= 1 << 31,
            "dispatch.requests.max_message_bytes must be in 1024..2147483648",
        )
        _require(1 <= self.max_items <= 1 << 31, "dispatch.requests.max_items must be >= 1")
        _require(
            256 <= self.max_json_bytes <= self.max_message_bytes,
            "dispatch.requests.max_json_bytes must be in 256..max_message_bytes",
        )
        _require(0 <= self.nice <= 19, "dispatch.requests.nice must be in 0..19")
        _require(
            self.receive_buffer_bytes == 0 or 4096 <= self.receive_buffer_bytes <= 64 << 20,
            "dispatch.requests.receive_buffer_bytes must be 0 or in 4096..67108864",
        )
        _require(
            self.send_buffer_bytes == 0 or 4096 <= self.send_buffer_bytes <= 64 << 20,
            "dispatch.requests.send_buffer_bytes must be 0 or in 4096..67108864",
        )


class RequestLaneConfig(LaneConfig):
    """The request lane: the same knobs with defaults for client jobs (large, one at a time,
    dropped with an error reply once their deadline has passed)."""

    capacity: int = 64
    max_batch: int = 1
    max_wait_ms: float = 0.0
    deadline_ms: float = 30_000.0
    expired: Literal["run", "drop"] = "drop"
    timeout_s: float = 30.0


class LanesConfig(_Struct):
    """The two job queues: stream-driven jobs and client requests, each with its workers.

    Separate lanes, so a large client request never delays the repricing of a chain.
    """

    stream: LaneConfig = LaneConfig()
    requests: RequestLaneConfig = RequestLaneConfig()


class DispatchConfig(_Struct):
    """The milli path: backends, routing, queues, health, and what feeds it."""

    enabled: bool = True
    # numba threads per worker for parallel CPU kernels; 0: cores - 1 (one core stays
    # with the ingest thread), at least 1.
    cpu_threads: int = 0
    gpu_preference: tuple[str, ...] = ("cuda", "cupy")
    routes: RoutesConfig = RoutesConfig()
    lanes: LanesConfig = LanesConfig()
    health: HealthConfig = HealthConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    chains: tuple[ChainConfig, ...] = ()
    correlation: CorrelationConfig = CorrelationConfig()
    requests: RequestsConfig = RequestsConfig()
    result_hwm: int = 10_000  # finished results queued from workers to the engine thread
    # Where chain repricing and correlation run (docs/architecture.md): "process", a child
    # process of the engine, so no milli-path Python shares the tick thread's GIL; or
    # "thread", worker threads of the engine process (tests of the dispatcher's internals).
    stream_isolation: Literal["process", "thread"] = "process"
    # The stream process's scheduling niceness (added to the engine's): ticks come first.
    # Not SCHED_IDLE by default: a tick flood that keeps the CPUs busy would stop chain
    # results altogether, where a niceness of 5 still gives the stream jobs a share.
    stream_nice: int = 5
    stream_sched_idle: bool = False
    # Tick events and samples queued for the stream process; beyond, dropped and counted.
    event_hwm: int = 10_000
    # CPython's GIL switch interval once milli-path workers run, in us: about the longest
    # the ingest thread waits while a worker runs Python (CPython's default is 5000 us;
    # 200 cut the micro path's p99 with chains on, docs/dispatch.md). 0: leave it alone.
    gil_switch_interval_us: float = 200.0

    def __post_init__(self) -> None:
        _require(0 <= self.cpu_threads <= 1024, "dispatch.cpu_threads must be in 0..1024")
        _require(
            _finite(self.gil_switch_interval_us)
            and (self.gil_switch_interval_us == 0 or 1 <= self.gil_switch_interval_us <= 1e6),
            "dispatch.gil_switch_interval_us must be 0 (leave it) or in 1..1000000",
        )
        _require(
            len(set(self.gpu_preference)) == len(self.gpu_preference),
            "dispatch.gpu_preference must not repeat a backend",
        )
        underlyings = [c.underlying for c in self.chains]
        _require(
            len(set(underlyings)) == len(underlyings),
            "dispatch.chains: one chain per underlying",
        )
        _require(self.result_hwm >= 1, "dispatch.result_hwm must be >= 1")
        _require(self.event_hwm >= 1, "dispatch.event_hwm must be >= 1")
        _require(0 <= self.stream_nice <= 19, "dispatch.stream_nice must be in 0..19")


def chain_option_symbols(chain: ChainConfig) -> list[int]:
    """Symbol ids on which the options of `chain` are quoted (no generated strikes needed)."""
    if chain.options:
        return [o.symbol for o in chain.options if o.symbol is not None]
    if chain.option_symbol_base is None:
        return []
    n_strikes = len(chain.strikes) or chain.strike_count
    size = n_strikes * len(chain.expiries) * (int(chain.calls) + int(chain.puts))
    return list(range(chain.option_symbol_base, chain.option_symbol_base + size))


def check_against_engine(config: DispatchConfig, n_symbols: int) -> None:
    """Symbol ids of chains and correlation against ``analytics.n_symbols``.

    Raises ``ValueError`` (one line) for an id out of range or a symbol that is both an
    underlying and an option, or the option of two chains.
    """
    seen: dict[int, str] = {}

    def claim(symbol: int, what: str) -> None:
        _require(
            symbol < n_symbols,
            f"dispatch: {what} symbol {symbol} >= analytics.n_symbols ({n_symbols})",
        )
        _require(symbol not in seen, f"dispatch: symbol {symbol} is both {seen.get(symbol)} "
                 f"and {what}")  # fmt: skip
        seen[symbol] = what

    for chain in config.chains:
        claim(chain.underlying, f"the underlying of chain {chain.underlying}")
    for chain in config.chains:
        for symbol in chain_option_symbols(chain):
            claim(symbol, f"an option of chain {chain.underlying}")
    for symbol in config.correlation.symbols:
        _require(
            symbol < n_symbols,
            f"dispatch.correlation: symbol {symbol} >= analytics.n_symbols ({n_symbols})",
        )
