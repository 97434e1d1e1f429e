"""Per-tick update formulas of the streaming analytics: the one source of each.

The frame kernels (:mod:`tickpath.kernels.cpu.streaming`) and the array kernels
behind :mod:`tickpath.analytics` (:mod:`tickpath.kernels.cpu.analytics`) both call
these functions, so an EMA, a window sum or a rolling variance is computed by
the same instructions whichever way the ticks arrive.  Every function is
``inline="always"``: numba pastes it into its caller's loop, so sharing it costs
the hot path nothing.

State that spans several values lives in a block of consecutive columns of a
2-D ``[symbol, column]`` array; a function takes the array, the symbol (row)
and the block's first column (``base``), so each caller keeps its own layout.

Blocks:

* rolling moments (float, :func:`moments_push` takes and returns them as
  values): ``base + MOM_MEAN`` mean, ``base + MOM_M2`` sum of squared deviations
  from the mean, ``base + MOM_SUMSQ`` (and ``+ 1``, its compensation term) sum of
  squares; the window's values in a ring row.
* window sums (float): four compensated ``(value, error)`` pairs at ``base +
  WIN_PV``, ``WIN_V``, ``WIN_BUY``, ``WIN_SELL``; the window's trades in a ring of
  timestamps and a ring of ``RING_*`` columns.
* session VWAP (float): ``base + 0`` sum of price * size, ``base + 1`` sum of size.
* OHLCV bar: times (int) at ``t[sym, c_start]`` and ``t[sym, c_end]``; open,
  high, low, close, volume, trade count at ``v[sym, c_open + BAR_*]``.
"""

from __future__ import annotations

import numba
import numpy as np

# rolling-moments block (float columns from base)
MOM_MEAN = 0
MOM_M2 = 1
MOM_SUMSQ = 2  # + 1: its compensation term
MOM_WIDTH = 4

# window-sums block (float columns from base): (value, error) pairs
WIN_PV = 0
WIN_V = 2
WIN_BUY = 4
WIN_SELL = 6
WIN_WIDTH = 8

# trade ring columns: float[symbol, capacity, RING_WIDTH]
RING_PV = 0
RING_V = 1
RING_BUY = 2
RING_SELL = 3
RING_WIDTH = 4

# bar values (columns from c_open)
BAR_OPEN = 0
BAR_HIGH = 1
BAR_LOW = 2
BAR_CLOSE = 3
BAR_VOLUME = 4
BAR_TRADES = 5

_jit = numba.njit(cache=True, nogil=True, inline="always", _nrt=False)


# ---------------------------------------------------------------------------
# Scalars
# ---------------------------------------------------------------------------


@_jit
def ema_update(ema, alpha, x):
    """EMA after the value ``x``: ``ema + alpha * (x - ema)``."""
    return ema + alpha * (x - ema)


@_jit
def log_return(price, previous):
    """Log return ``log(price / previous)`` (ticks or price units: the ratio is unitless)."""
    return np.log(price / previous)


@_jit
def imbalance(a, b):
    """``(a - b) / (a + b)``; NaN when ``a + b == 0``."""
    d = a + b
    if d == 0.0:
        return np.nan
    return (a - b) / d


@_jit
def sample_variance(m2, n, ddof):
    """Variance from a sum of squared deviations ``m2`` of ``n`` values (``n > ddof``).

    Multiplies by ``1 / (n - ddof)``: a loop over a full window hoists that
    reciprocal, and every caller gets the same bits."""
    return max(m2, 0.0) * (1.0 / (n - ddof))


@_jit
def root_sum_squares(sumsq):
    """Realised volatility ``sqrt(sum r^2)`` from a (possibly slightly negative) running sum."""
    return np.sqrt(max(sumsq, 0.0))


@_jit
def l1_features(bid, bid_size, ask, ask_size, scale):
    """``(mid, spread, microprice, imbalance)`` of a top of book.

    Prices in ticks with ``scale`` ticks per price unit (1.0 for prices already
    in price units); mid, spread and microprice come out in price units.  NaN
    unless both prices are positive (and, for microprice and imbalance, the
    sizes add up to more than 0).
    """
    if bid > 0 and ask > 0:
        mid = (bid + ask) / (2.0 * scale)
        spread = (ask - bid) / scale
    else:
        mid = np.nan
        spread = np.nan
    if bid > 0 and ask > 0 and bid_size + ask_size > 0:
        micro = (bid * float(ask_size) + ask * float(bid_size)) / (
            float(bid_size + ask_size) * scale
        )
        imb = (bid_size - ask_size) / float(bid_size + ask_size)
    else:
        micro = np.nan
        imb = np.nan
    return mid, spread, micro, imb


# ---------------------------------------------------------------------------
# Compensated sums (TwoSum): a value and its rounding error in two columns
# ---------------------------------------------------------------------------


@_jit
def two_sum(total, err, x):
    """``(total + x, err + rounding error of that addition)`` (Knuth's TwoSum)."""
    a = total
    new_total = a + x
    bp = new_total - a
    return new_total, err + ((a - (new_total - bp)) + (x - bp))


@_jit
def add_compensated(f, sym, col, x):
    """f[sym, col] += x, keeping the rounding error in f[sym, col + 1] (TwoSum)."""
    f[sym, col], f[sym, col + 1] = two_sum(f[sym, col], f[sym, col + 1], x)


@_jit
def compensated_sum(f, sym, col):
    """The value of a compensated pair."""
    return f[sym, col] + f[sym, col + 1]


# ---------------------------------------------------------------------------
# Session VWAP
# ---------------------------------------------------------------------------


@_jit
def session_add(f, sym, base, pv, size):
    """Add one trade (``pv = price * size``) to the session sums."""
    f[sym, base] += pv
    f[sym, base + 1] += size


@_jit
def session_vwap(f, sym, base):
    """Session VWAP: sum of price * size over sum of size."""
    return f[sym, base] / f[sym, base + 1]


# ---------------------------------------------------------------------------
# Rolling moments over the last ``window`` values (Welford add / replace)
# ---------------------------------------------------------------------------


# A rolling window's running moments are replaced by exact two-pass values once every
# rebuild_turns(window) full turns of its ring: after REBUILD_VALUES values or fewer
# (every turn for windows of REBUILD_VALUES or more).
REBUILD_VALUES = 64


@_jit
def rebuild_turns(window):
    """Full turns of a ring of ``window`` values between two exact rebuilds of its moments."""
    return max(1, REBUILD_VALUES // window)


@_jit
def moments_add(mean, m2, x, n):
    """Welford's add of ``x`` as the ``n``-th value: ``(mean, m2)`` after it."""
    delta = x - mean
    new_mean = mean + delta / n
    return new_mean, m2 + delta * (x - new_mean)


@_jit
def moments_replace(mean, m2, x, old, inv_window):
    """``(mean, m2)`` of a full window after ``x`` replaces ``old`` (``inv_window`` is
    ``1.0 / window``)."""
    d = x - old
    new_mean = mean + d * inv_window
    return new_mean, m2 + d * (x - new_mean + old - mean)


@_jit
def moments_rebuild(ring, sym, inv_window):
    """Exact two-pass ``(mean, m2)`` of the full window ``ring[sym]``."""
    window = ring.shape[1]
    total = 0.0
    for j in range(window):
        total += ring[sym, j]
    mean = total * inv_window
    m2 = 0.0
    for j in range(window):
        d = ring[sym, j] - mean
        m2 += d * d
    return mean, m2


@_jit
def sumsq_rebuild(ring, sym):
    """Compensated ``(sum, error)`` of the squares of the full window ``ring[sym]``."""
    sumsq = 0.0
    sumsq_err = 0.0
    for j in range(ring.shape[1]):
        # compensated, like the running sum: the squares that later leave the
        # window must cancel exactly, or sqrt turns a residue into a volatility
        sumsq, sumsq_err = two_sum(sumsq, sumsq_err, ring[sym, j] * ring[sym, j])
    return sumsq, sumsq_err


@_jit
def moments_push(ring, sym, count, slot, mean, m2, sumsq, sumsq_err, x, with_sumsq):
    """Push ``x`` into the rolling window of ``sym``.

    Returns ``(count, slot, mean, m2, sumsq, sumsq_err)`` after it.  ``ring[sym]``
    holds the window (its length is the window); ``count`` is the number of
    values ever pushed, ``slot`` the ring slot ``x`` goes to (``count % window``);
    ``m2`` is the sum of squared deviations from the mean, ``(sumsq, sumsq_err)``
    the compensated sum of squares (kept only ``with_sumsq``).  Welford's add
    (window not yet full) and replace updates; once every :func:`rebuild_turns`
    full turns of the ring the running values are replaced by exact two-pass
    values, so rounding errors cannot accumulate without bound.  The values live
    in the caller's registers or columns.
    """
    window = ring.shape[1]
    if count < window:
        mean, m2 = moments_add(mean, m2, x, count + 1)
        if with_sumsq:
            sumsq, sumsq_err = two_sum(sumsq, sumsq_err, x * x)
    else:
        old = ring[sym, slot]
        mean, m2 = moments_replace(mean, m2, x, old, 1.0 / window)
        if with_sumsq:
            sumsq, sumsq_err = two_sum(sumsq, sumsq_err, x * x)
            sumsq, sumsq_err = two_sum(sumsq, sumsq_err, -(old * old))
    ring[sym, slot] = x
    slot += 1
    count += 1
    if slot == window:
        slot = 0
        if (count // window) % rebuild_turns(window) == 0:
            mean, m2 = moments_rebuild(ring, sym, 1.0 / window)
            if with_sumsq:
                sumsq, sumsq_err = sumsq_rebuild(ring, sym)
    return count, slot, mean, m2, sumsq, sumsq_err


# ---------------------------------------------------------------------------
# Time-window sums over a ring of trades
# ---------------------------------------------------------------------------


@_jit
def _window_recompute(f, ring_f, sym, base, tail, head, mask):
    """Window sums rebuilt from the ring (compensated): drops accumulated rounding."""
    for col in (WIN_PV, WIN_V, WIN_BUY, WIN_SELL):
        f[sym, base + col] = 0.0
        f[sym, base + col + 1] = 0.0
    for j in range(tail, head):
        k = j & mask
        add_compensated(f, sym, base + WIN_PV, ring_f[sym, k, RING_PV])
        add_compensated(f, sym, base + WIN_V, ring_f[sym, k, RING_V])
        add_compensated(f, sym, base + WIN_BUY, ring_f[sym, k, RING_BUY])
        add_compensated(f, sym, base + WIN_SELL, ring_f[sym, k, RING_SELL])


@_jit
def window_push(ring_ts, ring_f, f, sym, base, head, tail, ts, pv, size, buy, sell, window_ns):
    """Add a trade at ``ts`` to the time window of ``sym``; return ``(head, tail, truncated)``.

    Trades at or before ``ts - window_ns`` leave first, oldest first; when the
    ring (capacity ``ring_ts.shape[1]``, a power of two) is full the oldest
    trade leaves even if still inside the window (``truncated`` counts those).
    ``head`` counts trades ever pushed, ``tail`` is the oldest still in the
    window (ring index ``& mask``).  The sums are compensated and rebuilt
    exactly when the window restarts and once per turn of the ring.
    """
    cap = ring_ts.shape[1]
    mask = cap - 1
    cutoff = ts - window_ns
    evicted = False
    truncated = 0
    while tail < head and (ring_ts[sym, tail & mask] <= cutoff or head - tail >= cap):
        if head - tail >= cap and ring_ts[sym, tail & mask] > cutoff:
            truncated += 1
        k = tail & mask
        add_compensated(f, sym, base + WIN_PV, -ring_f[sym, k, RING_PV])
        add_compensated(f, sym, base + WIN_V, -ring_f[sym, k, RING_V])
        add_compensated(f, sym, base + WIN_BUY, -ring_f[sym, k, RING_BUY])
        add_compensated(f, sym, base + WIN_SELL, -ring_f[sym, k, RING_SELL])
        tail += 1
        evicted = True
    k = head & mask
    ring_ts[sym, k] = ts
    ring_f[sym, k, RING_PV] = pv
    ring_f[sym, k, RING_V] = size
    ring_f[sym, k, RING_BUY] = buy
    ring_f[sym, k, RING_SELL] = sell
    head += 1
    add_compensated(f, sym, base + WIN_PV, pv)
    add_compensated(f, sym, base + WIN_V, size)
    add_compensated(f, sym, base + WIN_BUY, buy)
    add_compensated(f, sym, base + WIN_SELL, sell)
    if (evicted and tail == head - 1) or (head & mask) == 0:
        _window_recompute(f, ring_f, sym, base, tail, head, mask)
    return head, tail, truncated


@_jit
def window_vwap(f, sym, base):
    """VWAP over the window: sum of price * size over sum of size."""
    return compensated_sum(f, sym, base + WIN_PV) / compensated_sum(f, sym, base + WIN_V)


@_jit
def window_flow_imbalance(f, sym, base):
    """Trade-flow imbalance over the window: ``(buy - sell) / (buy + sell)`` aggressor volume."""
    return imbalance(
        compensated_sum(f, sym, base + WIN_BUY), compensated_sum(f, sym, base + WIN_SELL)
    )


# ---------------------------------------------------------------------------
# OHLCV bars
# ---------------------------------------------------------------------------


@_jit
def bar_bucket(ts, bar_ns):
    """Start of the bar bucket holding ``ts``."""
    return ts - ts % bar_ns


@_jit
def bar_is_past(t, sym, c_start, c_end, ts):
    """True when ``ts`` needs a new bar: none is open, or ``ts`` is at or past its end."""
    return t[sym, c_start] < 0 or ts >= t[sym, c_end]


@_jit
def bar_open(t, sym, c_start, c_end, v, c_open, ts, price, bar_ns):
    """Open the bar of ``ts``'s bucket with ``price`` (no volume, no trades yet)."""
    start = bar_bucket(ts, bar_ns)
    t[sym, c_start] = start
    t[sym, c_end] = start + bar_ns
    v[sym, c_open + BAR_OPEN] = price
    v[sym, c_open + BAR_HIGH] = price
    v[sym, c_open + BAR_LOW] = price
    v[sym, c_open + BAR_VOLUME] = 0
    v[sym, c_open + BAR_TRADES] = 0


@_jit
def bar_add(v, sym, c_open, price, size):
    """Add one trade to the open bar."""
    v[sym, c_open + BAR_HIGH] = max(v[sym, c_open + BAR_HIGH], price)
    v[sym, c_open + BAR_LOW] = min(v[sym, c_open + BAR_LOW], price)
    v[sym, c_open + BAR_CLOSE] = price
    v[sym, c_open + BAR_VOLUME] += size
    v[sym, c_open + BAR_TRADES] += 1
