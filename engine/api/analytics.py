"""Streaming analytics on your own numpy arrays: the engine's per-tick formulas, callable.

Every analytic comes two ways that give the same values:

* a function over whole arrays, e.g. ``ema(prices, span=15)``;
* a stateful object fed chunk by chunk, e.g. ``EMA(span=15).update(chunk)``, for
  data that arrives in pieces (a backtest reading a file block by block, a live
  loop).  Feeding a series in any split gives exactly the values of one call.

Both run numba kernels that use the same per-tick step functions as the engine's
frame kernels (``tickpath.kernels.cpu.steps``): one source of each formula.  Each
kernel is compiled on its first call (cached on disk afterwards), never on import.
Pass ``out=`` (a preallocated float64 array of the input's length) to write the
result without allocating.

Units: prices in price units (e.g. dollars; the engine's ticks divided by
``tickpath.wire.PRICE_SCALE``), sizes in size units, timestamps in int64
nanoseconds (any epoch; only differences matter, except for bar buckets, which are
``ts - ts % bar_ns``), windows in nanoseconds (time windows) or values (count
windows).  Returns are natural-log returns, unitless per trade.

Several symbols in one array: pass ``symbols`` (integers ``0 .. n - 1``, one per
value); each symbol then has its own state, as in the engine.  NaN inputs are not
rejected: they propagate into the results as IEEE arithmetic does.

Definitions (the engine's; ``tickpath.kernels.reference.streaming`` is the numpy oracle):

* EMA: ``alpha = 2 / (span + 1)``, ``ema += alpha * (price - ema)``, seeded with the
  first price (``seed="first"``, the engine's) or, like TA-Lib, with the mean of the
  first ``span`` prices, NaN before it (``seed="sma"``).
* VWAP: session ``sum(price * size) / sum(size)``; rolling over the trades with
  ``ts > now - window_ns``, at most the last ``max_trades`` of them.
* Trade-flow imbalance: ``(buy - sell) / (buy + sell)`` aggressor volume over the
  same window (``sides``: +1 buyer aggressor, -1 seller, 0 unknown).
* Rolling mean / variance / standard deviation of any series over the last
  ``window`` values (Welford updates, rebuilt by two passes once per window).
* Returns: log returns between consecutive prices of a symbol; their rolling mean,
  sample variance and realised volatility ``sqrt(sum r^2)`` over the last ``window``
  returns.
* OHLCV bars per ``bar_ns`` bucket; a trade in a later bucket closes the open bar.
* L1: ``mid``, ``spread``, ``microprice = (bid * ask_size + ask * bid_size) /
  (bid_size + ask_size)``, ``imbalance = (bid_size - ask_size) / (bid_size + ask_size)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from tickpath.kernels.cpu import analytics as _k

__all__ = [
    "BAR",
    "EMA",
    "VWAP",
    "TradeWindow",
    "WindowResult",
    "RollingMoments",
    "RollingResult",
    "Returns",
    "ReturnsResult",
    "Bars",
    "L1Result",
    "ema",
    "vwap",
    "rolling_vwap",
    "trade_flow_imbalance",
    "rolling_mean",
    "rolling_var",
    "rolling_std",
    "rolling_returns",
    "realized_volatility",
    "ohlcv_bars",
    "l1",
    "microprice",
    "l1_imbalance",
]

BAR = _k.BAR
"""dtype of an OHLCV bar: ``symbol``, ``bar_start_ns``, ``open``, ``high``, ``low``,
``close`` (price units), ``volume`` (size units), ``n_trades``, ``closed_by`` (index of
the trade, in that call's input, that closed the bar; -1 for a bar still open)."""

_NONE_F = np.empty(0, np.float64)  # "do not write this output"
_NONE_I = np.empty(0, np.int64)  # "one series" (no symbols) / no sides


# ---------------------------------------------------------------------------
# argument checks (one-line errors)
# ---------------------------------------------------------------------------


def _vector(name: str, value: npt.ArrayLike, dtype: type = np.float64) -> np.ndarray:
    """A 1-D C-contiguous array of ``dtype`` (no copy when it already is one)."""
    a = np.ascontiguousarray(value, dtype=dtype)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    return a


def _length(name: str, value: npt.ArrayLike) -> int:
    """Length of a 1-D input (checked, as :func:`_vector` does)."""
    return _vector(name, value).shape[0]


def _same_length(n: int, **arrays: np.ndarray) -> None:
    for name, a in arrays.items():
        if a.shape[0] != n:
            raise ValueError(f"{name} has {a.shape[0]} values, expected {n}")


def _ints(name: str, value: npt.ArrayLike) -> np.ndarray:
    a = np.asarray(value)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must be a 1-D integer array, got {a.dtype} shape {a.shape}")
    return np.ascontiguousarray(a)


def _symbols(symbols: npt.ArrayLike | None, n: int, n_symbols: int) -> np.ndarray:
    if symbols is None:
        if n_symbols != 1:
            raise ValueError(f"symbols is required with n_symbols={n_symbols}")
        return _NONE_I
    a = _ints("symbols", symbols)
    _same_length(n, symbols=a)
    if n and (int(a.min()) < 0 or int(a.max()) >= n_symbols):
        raise ValueError(f"symbols must be in 0..{n_symbols - 1}, got {a.min()}..{a.max()}")
    return a


def _n_symbols(symbols: npt.ArrayLike | None) -> int:
    """How many symbols a whole-array call needs: ``max(symbols) + 1``."""
    if symbols is None:
        return 1
    a = _ints("symbols", symbols)
    return int(a.max()) + 1 if a.size else 1


def _out(name: str, out: np.ndarray | None, n: int, dtype: type = np.float64) -> np.ndarray:
    if out is None:
        return np.empty(n, dtype)
    if not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != (n,):
        got = f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
        raise ValueError(f"{name} must be a {np.dtype(dtype)} array of shape ({n},), got {got}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writeable")
    return out


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------
# EMA
# ---------------------------------------------------------------------------


class EMA:
    """Exponential moving average of prices, fed chunk by chunk.

    Args:
        span: ``alpha = 2 / (span + 1)`` (the engine's and pandas' ``span``).
        alpha: the smoothing factor itself, in (0, 1]; give ``span`` or ``alpha``.
        seed: ``"first"`` (the engine's: the first price) or ``"sma"`` (TA-Lib's: NaN for
            the first ``span - 1`` prices, then the mean of the first ``span``).
        n_symbols: independent series, selected per value by ``symbols``.
    """

    def __init__(
        self,
        span: int | None = None,
        *,
        alpha: float | None = None,
        seed: str = "first",
        n_symbols: int = 1,
    ) -> None:
        if (span is None) == (alpha is None):
            raise ValueError("give exactly one of span and alpha")
        if span is not None:
            span = _positive_int("span", span)
            alpha = 2.0 / (span + 1.0)
        if not 0.0 < float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        if seed not in ("first", "sma"):
            raise ValueError(f"seed must be 'first' or 'sma', got {seed!r}")
        if seed == "sma" and span is None:
            raise ValueError("seed='sma' needs span (the SMA's length)")
        self.alpha = float(alpha)
        self.seed = seed
        self.n_symbols = _positive_int("n_symbols", n_symbols)
        self._seed_period = span if seed == "sma" else 0
        self._e = np.zeros(self.n_symbols)
        self._n = np.zeros(self.n_symbols, np.int64)

    def update(
        self,
        prices: npt.ArrayLike,
        symbols: npt.ArrayLike | None = None,
        *,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """The EMA after each price (price units), continuing from the previous chunk."""
        px = _vector("prices", prices)
        sym = _symbols(symbols, px.shape[0], self.n_symbols)
        res = _out("out", out, px.shape[0])
        _k.ema_series(px, sym, self.alpha, self._seed_period, self._e, self._n, res)
        return res

    def reset(self) -> None:
        """Forget every price seen."""
        self._e[:] = 0.0
        self._n[:] = 0


def ema(
    prices: npt.ArrayLike,
    span: int | None = None,
    *,
    alpha: float | None = None,
    seed: str = "first",
    symbols: npt.ArrayLike | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """EMA of ``prices`` after each price (price units); see :class:`EMA` for the arguments."""
    return EMA(span, alpha=alpha, seed=seed, n_symbols=_n_symbols(symbols)).update(
        prices, symbols, out=out
    )


# ---------------------------------------------------------------------------
# VWAP (session), window VWAP and trade-flow imbalance
# ---------------------------------------------------------------------------


class VWAP:
    """Session VWAP, ``sum(price * size) / sum(size)`` since the start (or :meth:`reset`)."""

    def __init__(self, *, n_symbols: int = 1) -> None:
        self.n_symbols = _positive_int("n_symbols", n_symbols)
        self._f = np.zeros((self.n_symbols, 2))

    def update(
        self,
        prices: npt.ArrayLike,
        sizes: npt.ArrayLike,
        symbols: npt.ArrayLike | None = None,
        *,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Session VWAP after each trade (price units)."""
        px, sz = _vector("prices", prices), _vector("sizes", sizes)
        _same_length(px.shape[0], sizes=sz)
        sym = _symbols(symbols, px.shape[0], self.n_symbols)
        res = _out("out", out, px.shape[0])
        _k.session_vwap_series(px, sz, sym, self._f, res)
        return res

    def reset(self) -> None:
        """Start a new session."""
        self._f[:] = 0.0


def vwap(
    prices: npt.ArrayLike,
    sizes: npt.ArrayLike,
    *,
    symbols: npt.ArrayLike | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Session VWAP after each trade (price units)."""
    return VWAP(n_symbols=_n_symbols(symbols)).update(prices, sizes, symbols, out=out)


class WindowResult(NamedTuple):
    """Per trade: VWAP over the window (price units) and trade-flow imbalance (-1 .. 1)."""

    vwap: np.ndarray
    flow_imbalance: np.ndarray


class TradeWindow:
    """Rolling time window of trades: window VWAP and trade-flow imbalance.

    Args:
        window_ns: a trade stays in the window while ``ts > now - window_ns`` (ns).
        max_trades: trades kept per symbol (a power of two); when the ring is full the
            oldest trade leaves early, and :attr:`truncated` counts it.
        n_symbols: independent windows, selected per trade by ``symbols``.
    """

    def __init__(self, window_ns: int, *, max_trades: int = 4096, n_symbols: int = 1) -> None:
        self.window_ns = _positive_int("window_ns", window_ns)
        cap = _positive_int("max_trades", max_trades)
        if cap & (cap - 1):
            raise ValueError(f"max_trades must be a power of two, got {cap}")
        self.n_symbols = _positive_int("n_symbols", n_symbols)
        self.truncated = 0
        """Trades that left a window early because its ring was full."""
        self._ring_ts = np.zeros((self.n_symbols, cap), np.int64)
        self._ring_f = np.zeros((self.n_symbols, cap, 4))
        self._f = np.zeros((self.n_symbols, 8))
        self._ht = np.zeros((self.n_symbols, 2), np.int64)

    def _run(
        self,
        prices: npt.ArrayLike,
        sizes: npt.ArrayLike,
        timestamps: npt.ArrayLike,
        sides: npt.ArrayLike | None,
        symbols: npt.ArrayLike | None,
        out_vwap: np.ndarray,
        out_flow: np.ndarray,
    ) -> None:
        px, sz = _vector("prices", prices), _vector("sizes", sizes)
        ts = _ints("timestamps", timestamps)
        n = px.shape[0]
        _same_length(n, sizes=sz, timestamps=ts)
        sd = _NONE_I if sides is None else _ints("sides", sides)
        if sides is not None:
            _same_length(n, sides=sd)
        sym = _symbols(symbols, n, self.n_symbols)
        self.truncated += int(
            _k.window_series(
                px,
                sz,
                sd,
                ts,
                sym,
                self.window_ns,
                self._ring_ts,
                self._ring_f,
                self._f,
                self._ht,
                out_vwap,
                out_flow,
            )  # fmt: skip
        )

    def update(
        self,
        prices: npt.ArrayLike,
        sizes: npt.ArrayLike,
        timestamps: npt.ArrayLike,
        sides: npt.ArrayLike | None = None,
        symbols: npt.ArrayLike | None = None,
        *,
        out_vwap: np.ndarray | None = None,
        out_flow_imbalance: np.ndarray | None = None,
    ) -> WindowResult:
        """Window VWAP and trade-flow imbalance after each trade (NaN imbalance without
        ``sides`` or without aggressor volume in the window)."""
        n = _length("prices", prices)
        res = WindowResult(
            _out("out_vwap", out_vwap, n), _out("out_flow_imbalance", out_flow_imbalance, n)
        )
        self._run(prices, sizes, timestamps, sides, symbols, res.vwap, res.flow_imbalance)
        return res

    def reset(self) -> None:
        """Empty every window."""
        self._ring_ts[:] = 0
        self._ring_f[:] = 0.0
        self._f[:] = 0.0
        self._ht[:] = 0
        self.truncated = 0


def rolling_vwap(
    prices: npt.ArrayLike,
    sizes: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    window_ns: int,
    *,
    max_trades: int = 4096,
    symbols: npt.ArrayLike | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """VWAP over the trades of the last ``window_ns`` nanoseconds, after each trade
    (price units); see :class:`TradeWindow`."""
    window = TradeWindow(window_ns, max_trades=max_trades, n_symbols=_n_symbols(symbols))
    res = _out("out", out, _length("prices", prices))
    window._run(prices, sizes, timestamps, None, symbols, res, _NONE_F)
    return res


def trade_flow_imbalance(
    sizes: npt.ArrayLike,
    sides: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    window_ns: int,
    *,
    max_trades: int = 4096,
    symbols: npt.ArrayLike | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``(buy - sell) / (buy + sell)`` aggressor volume over the last ``window_ns``
    nanoseconds, after each trade; ``sides`` +1 buyer, -1 seller, 0 unknown (NaN when
    the window holds no aggressor volume); see :class:`TradeWindow`."""
    window = TradeWindow(window_ns, max_trades=max_trades, n_symbols=_n_symbols(symbols))
    sz = _vector("sizes", sizes)
    res = _out("out", out, sz.shape[0])
    window._run(sz, sz, timestamps, sides, symbols, _NONE_F, res)
    return res


# ---------------------------------------------------------------------------
# Rolling mean / variance / standard deviation of a series
# ---------------------------------------------------------------------------


class RollingResult(NamedTuple):
    """Per value: rolling mean, variance and standard deviation (NaN before ``min_periods``)."""

    mean: np.ndarray
    var: np.ndarray
    std: np.ndarray


class RollingMoments:
    """Rolling mean, variance and standard deviation over the last ``window`` values.

    Args:
        window: values in the window.
        ddof: the variance divides by ``n - ddof`` (1: sample, pandas' and polars'
            default; 0: population, TA-Lib's ``STDDEV``).
        min_periods: values needed before a result (default ``window``, as pandas);
            earlier results are NaN.
    """

    def __init__(self, window: int, *, ddof: int = 1, min_periods: int | None = None) -> None:
        self.window = _positive_int("window", window)
        if ddof not in (0, 1):
            raise ValueError(f"ddof must be 0 or 1, got {ddof!r}")
        self.ddof = int(ddof)
        self.min_periods = self.window if min_periods is None else int(min_periods)
        if not 1 <= self.min_periods <= self.window:
            raise ValueError(f"min_periods must be in 1..{self.window}, got {min_periods!r}")
        self._ring = np.zeros((1, self.window))
        self._st = np.zeros((1, 4))
        self._ci = np.zeros((1, 2), np.int64)

    def _run(self, values: npt.ArrayLike, mean: np.ndarray, var: np.ndarray, std: np.ndarray):  # noqa: ANN202
        x = _vector("values", values)
        _k.rolling_series(
            x, self._ring, self._st, self._ci, self.min_periods, self.ddof, mean, var, std
        )

    def update(
        self,
        values: npt.ArrayLike,
        *,
        out_mean: np.ndarray | None = None,
        out_var: np.ndarray | None = None,
        out_std: np.ndarray | None = None,
    ) -> RollingResult:
        """Rolling mean, variance and standard deviation after each value."""
        n = _length("values", values)
        res = RollingResult(
            _out("out_mean", out_mean, n), _out("out_var", out_var, n), _out("out_std", out_std, n)
        )
        self._run(values, res.mean, res.var, res.std)
        return res

    def reset(self) -> None:
        """Empty the window."""
        self._ring[:] = 0.0
        self._st[:] = 0.0
        self._ci[:] = 0


def _rolling_one(
    which: int,
    values: npt.ArrayLike,
    window: int,
    ddof: int,
    min_periods: int | None,
    out: np.ndarray | None,
) -> np.ndarray:
    moments = RollingMoments(window, ddof=ddof, min_periods=min_periods)
    res = _out("out", out, _length("values", values))
    outs = [_NONE_F, _NONE_F, _NONE_F]
    outs[which] = res
    moments._run(values, *outs)
    return res


def rolling_mean(
    values: npt.ArrayLike,
    window: int,
    *,
    min_periods: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Mean of the last ``window`` values, after each value; see :class:`RollingMoments`."""
    return _rolling_one(0, values, window, 1, min_periods, out)


def rolling_var(
    values: npt.ArrayLike,
    window: int,
    *,
    ddof: int = 1,
    min_periods: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Variance of the last ``window`` values, after each value; see :class:`RollingMoments`."""
    return _rolling_one(1, values, window, ddof, min_periods, out)


def rolling_std(
    values: npt.ArrayLike,
    window: int,
    *,
    ddof: int = 1,
    min_periods: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Standard deviation of the last ``window`` values, after each value (``ddof=1``:
    pandas' ``rolling(window).std()``; ``ddof=0``: TA-Lib's ``STDDEV(x, window, 1)``)."""
    return _rolling_one(2, values, window, ddof, min_periods, out)


# ---------------------------------------------------------------------------
# Log returns: rolling mean, variance, realised volatility (the engine's trade analytics)
# ---------------------------------------------------------------------------


class ReturnsResult(NamedTuple):
    """Per price: rolling mean, sample variance (ddof 1) and realised volatility
    ``sqrt(sum r^2)`` of the log returns in the window, and how many returns it holds."""

    mean: np.ndarray
    var: np.ndarray
    realized_vol: np.ndarray
    n_returns: np.ndarray


class Returns:
    """Log returns between consecutive prices of a symbol, over the last ``window`` returns.

    Partial windows count (as in the engine): the mean and volatility exist from the
    first return on, the variance from the second; before that they are NaN.
    """

    def __init__(self, window: int = 64, *, n_symbols: int = 1) -> None:
        self.window = _positive_int("window", window)
        self.n_symbols = _positive_int("n_symbols", n_symbols)
        self._ring = np.zeros((self.n_symbols, self.window))
        self._st = np.zeros((self.n_symbols, 4))
        self._ci = np.zeros((self.n_symbols, 3), np.int64)
        self._last = np.zeros(self.n_symbols)

    def _run(
        self,
        prices: npt.ArrayLike,
        symbols: npt.ArrayLike | None,
        mean: np.ndarray,
        var: np.ndarray,
        vol: np.ndarray,
        count: np.ndarray,
    ) -> None:
        px = _vector("prices", prices)
        if px.size and not np.all(px > 0):
            raise ValueError("prices must be > 0 (log returns)")
        sym = _symbols(symbols, px.shape[0], self.n_symbols)
        _k.returns_series(
            px, sym, self._ring, self._st, self._ci, self._last, mean, var, vol, count
        )

    def update(
        self,
        prices: npt.ArrayLike,
        symbols: npt.ArrayLike | None = None,
        *,
        out_mean: np.ndarray | None = None,
        out_var: np.ndarray | None = None,
        out_realized_vol: np.ndarray | None = None,
        out_n_returns: np.ndarray | None = None,
    ) -> ReturnsResult:
        """The rolling return statistics after each price."""
        n = _length("prices", prices)
        res = ReturnsResult(
            _out("out_mean", out_mean, n),
            _out("out_var", out_var, n),
            _out("out_realized_vol", out_realized_vol, n),
            _out("out_n_returns", out_n_returns, n, np.int64),
        )
        self._run(prices, symbols, *res)
        return res

    def reset(self) -> None:
        """Forget every price seen."""
        self._ring[:] = 0.0
        self._st[:] = 0.0
        self._ci[:] = 0
        self._last[:] = 0.0


def rolling_returns(
    prices: npt.ArrayLike, window: int = 64, *, symbols: npt.ArrayLike | None = None
) -> ReturnsResult:
    """Rolling mean, variance and realised volatility of log returns; see :class:`Returns`."""
    return Returns(window, n_symbols=_n_symbols(symbols)).update(prices, symbols)


def realized_volatility(
    prices: npt.ArrayLike,
    window: int = 64,
    *,
    symbols: npt.ArrayLike | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``sqrt(sum r^2)`` of the last ``window`` log returns, after each price (unitless,
    per ``window`` trades; NaN before the first return)."""
    returns = Returns(window, n_symbols=_n_symbols(symbols))
    res = _out("out", out, _length("prices", prices))
    returns._run(prices, symbols, _NONE_F, _NONE_F, res, _NONE_I)
    return res


# ---------------------------------------------------------------------------
# OHLCV bars
# ---------------------------------------------------------------------------


class Bars:
    """OHLCV bars of ``bar_ns`` nanoseconds of exchange time, per symbol.

    A bar covers ``[start, start + bar_ns)`` with ``start = ts - ts % bar_ns``; a trade
    in a later bucket closes the open bar (empty buckets produce no bar); a trade with
    an earlier timestamp joins the open bar.  Timestamps must be >= 0.
    """

    def __init__(self, bar_ns: int, *, n_symbols: int = 1) -> None:
        self.bar_ns = _positive_int("bar_ns", bar_ns)
        self.n_symbols = _positive_int("n_symbols", n_symbols)
        self._t = np.full((self.n_symbols, 2), -1, np.int64)
        self._v = np.zeros((self.n_symbols, 6))

    def update(
        self,
        prices: npt.ArrayLike,
        sizes: npt.ArrayLike,
        timestamps: npt.ArrayLike,
        symbols: npt.ArrayLike | None = None,
        *,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """The bars these trades close, in closing order (a :data:`BAR` array).

        ``out``: a :data:`BAR` array at least as long as the input (each trade closes
        at most one bar); the result is a view of its first rows.
        """
        px, sz = _vector("prices", prices), _vector("sizes", sizes)
        ts = _ints("timestamps", timestamps)
        n = px.shape[0]
        _same_length(n, sizes=sz, timestamps=ts)
        if n and int(ts.min()) < 0:
            raise ValueError("timestamps must be >= 0")
        sym = _symbols(symbols, n, self.n_symbols)
        if out is None:
            out = np.empty(n, BAR)
        elif not isinstance(out, np.ndarray) or out.dtype != BAR or out.shape[0] < n:
            raise ValueError(f"out must be a BAR array of at least {n} rows")
        closed = _k.bars_series(px, sz, ts, sym, self.bar_ns, self._t, self._v, out)
        return out[:closed]

    def open_bars(self) -> np.ndarray:
        """The bar still open of each symbol that has one (``closed_by`` -1), by symbol."""
        out = np.empty(self.n_symbols, BAR)
        return out[: _k.open_bars(self._t, self._v, out)]

    def reset(self) -> None:
        """Drop the open bars."""
        self._t[:] = -1
        self._v[:] = 0.0


def ohlcv_bars(
    prices: npt.ArrayLike,
    sizes: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    bar_ns: int,
    *,
    symbols: npt.ArrayLike | None = None,
    include_open: bool = False,
) -> np.ndarray:
    """OHLCV bars (a :data:`BAR` array) in closing order; with ``include_open`` the bars
    still open at the end follow, by symbol.  See :class:`Bars`."""
    bars = Bars(bar_ns, n_symbols=_n_symbols(symbols))
    closed = bars.update(prices, sizes, timestamps, symbols)
    if not include_open:
        return closed
    return np.concatenate([closed, bars.open_bars()])


# ---------------------------------------------------------------------------
# L1: mid, spread, microprice, imbalance (stateless: any split gives the same values)
# ---------------------------------------------------------------------------


class L1Result(NamedTuple):
    """Per quote: mid, spread, microprice (price units) and imbalance (-1 .. 1)."""

    mid: np.ndarray
    spread: np.ndarray
    microprice: np.ndarray
    imbalance: np.ndarray


def _quotes(
    bid: npt.ArrayLike, bid_size: npt.ArrayLike, ask: npt.ArrayLike, ask_size: npt.ArrayLike
) -> tuple[np.ndarray, ...]:
    arrays = (
        _vector("bid", bid),
        _vector("bid_size", bid_size),
        _vector("ask", ask),
        _vector("ask_size", ask_size),
    )
    _same_length(arrays[0].shape[0], bid_size=arrays[1], ask=arrays[2], ask_size=arrays[3])
    return arrays


def l1(
    bid: npt.ArrayLike, bid_size: npt.ArrayLike, ask: npt.ArrayLike, ask_size: npt.ArrayLike
) -> L1Result:
    """Mid, spread, microprice and imbalance of each top of book (NaN unless both prices
    are > 0; microprice and imbalance also need ``bid_size + ask_size > 0``)."""
    q = _quotes(bid, bid_size, ask, ask_size)
    n = q[0].shape[0]
    res = L1Result(np.empty(n), np.empty(n), np.empty(n), np.empty(n))
    _k.l1_series(*q, *res)
    return res


def microprice(
    bid: npt.ArrayLike,
    bid_size: npt.ArrayLike,
    ask: npt.ArrayLike,
    ask_size: npt.ArrayLike,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``(bid * ask_size + ask * bid_size) / (bid_size + ask_size)`` per quote (price units)."""
    q = _quotes(bid, bid_size, ask, ask_size)
    res = _out("out", out, q[0].shape[0])
    _k.l1_series(*q, _NONE_F, _NONE_F, res, _NONE_F)
    return res


def l1_imbalance(
    bid: npt.ArrayLike,
    bid_size: npt.ArrayLike,
    ask: npt.ArrayLike,
    ask_size: npt.ArrayLike,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``(bid_size - ask_size) / (bid_size + ask_size)`` per quote (-1 .. 1)."""
    q = _quotes(bid, bid_size, ask, ask_size)
    res = _out("out", out, q[0].shape[0])
    _k.l1_series(*q, _NONE_F, _NONE_F, _NONE_F, res)
    return res
