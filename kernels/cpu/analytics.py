"""Array kernels behind :mod:`tickpath.analytics`: one numba call per array (or chunk).

Each kernel runs the per-tick formulas of :mod:`tickpath.kernels.cpu.steps` (the
ones the frame kernels run) over whole arrays, reading and writing the caller's
state arrays, so feeding a series in chunks gives exactly the values of one call
over the whole of it.  They allocate nothing: results go into ``out`` arrays.

``symbols`` is either an integer array as long as the values (row of the state
to use per value) or an empty array, meaning one series (row 0).  Inputs are
assumed valid (the public wrappers check them).
"""

from __future__ import annotations

import numba
import numpy as np

from tickpath.kernels.cpu import steps
from tickpath.kernels.cpu.cache import stamp_dependencies

_jit = numba.njit(cache=True, nogil=True, _nrt=False)

# Completed (or open) OHLCV bars, in price and size units.
BAR = np.dtype(
    [
        ("symbol", "<i8"),
        ("bar_start_ns", "<i8"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("volume", "<f8"),
        ("n_trades", "<i8"),
        ("closed_by", "<i8"),  # index (in that call's input) of the trade that closed it, or -1
    ]
)


@_jit
def ema_series(prices, symbols, alpha, seed_period, state_e, state_n, out):
    """EMA after each price.  ``seed_period`` 0: seeded with the first price; ``p > 0``:
    NaN for the first ``p - 1`` prices, then the mean of the first ``p`` (TA-Lib's seed).
    ``state_e`` holds the EMA (or, while seeding, the running sum), ``state_n`` the count."""
    n = prices.shape[0]
    if symbols.shape[0] == 0:
        # one series: the EMA stays in a register
        e = state_e[0]
        c = state_n[0]
        i = 0
        while i < n and (c == 0 or c < seed_period):
            x = prices[i]
            if seed_period == 0:
                e = x
                out[i] = e
            else:
                e = x if c == 0 else e + x
                if c == seed_period - 1:
                    e = e / seed_period
                    out[i] = e
                else:
                    out[i] = np.nan
            c += 1
            i += 1
        for j in range(i, n):
            e = steps.ema_update(e, alpha, prices[j])
            out[j] = e
        state_e[0] = e
        state_n[0] = c + (n - i)
        return
    for i in range(n):
        sym = symbols[i]
        x = prices[i]
        c = state_n[sym]
        if c == 0 and seed_period <= 1:
            e = x
        elif c >= seed_period and c > 0:
            e = steps.ema_update(state_e[sym], alpha, x)
        else:
            e = x if c == 0 else state_e[sym] + x
            if c == seed_period - 1:
                e = e / seed_period
        state_e[sym] = e
        state_n[sym] = c + 1
        out[i] = e if c >= seed_period - 1 else np.nan


@_jit
def session_vwap_series(prices, sizes, symbols, f, out):
    """Session VWAP after each trade; ``f[sym] = (sum price * size, sum size)``."""
    multi = symbols.shape[0] > 0
    for i in range(prices.shape[0]):
        sym = symbols[i] if multi else 0
        steps.session_add(f, sym, 0, prices[i] * sizes[i], sizes[i])
        out[i] = steps.session_vwap(f, sym, 0)


@_jit
def window_series(
    prices, sizes, sides, timestamps, symbols, window_ns, ring_ts, ring_f, f, ht, out_vwap, out_flow
):  # fmt: skip
    """Window VWAP and trade-flow imbalance after each trade; return the trades that left
    the window early because the ring was full.  ``ht[sym] = (head, tail)``; ``sides``
    may be empty (no aggressor: the imbalance is NaN); an empty ``out_*`` is not written."""
    multi = symbols.shape[0] > 0
    with_sides = sides.shape[0] > 0
    write_vwap = out_vwap.shape[0] > 0
    write_flow = out_flow.shape[0] > 0
    truncated = 0
    for i in range(prices.shape[0]):
        sym = symbols[i] if multi else 0
        sz = sizes[i]
        side = sides[i] if with_sides else 0
        head, tail, cut = steps.window_push(
            ring_ts, ring_f, f, sym, 0, ht[sym, 0], ht[sym, 1], timestamps[i],
            prices[i] * sz, sz, sz if side == 1 else 0.0, sz if side == -1 else 0.0, window_ns,
        )  # fmt: skip
        ht[sym, 0] = head
        ht[sym, 1] = tail
        truncated += cut
        if write_vwap:
            out_vwap[i] = steps.window_vwap(f, sym, 0)
        if write_flow:
            out_flow[i] = steps.window_flow_imbalance(f, sym, 0)
    return truncated


@_jit
def rolling_series(values, ring, st, ci, min_periods, ddof, out_mean, out_var, out_std):
    """Rolling mean, variance (``ddof``) and standard deviation of one series after each
    value; NaN until ``min_periods`` values (variance: more than ``ddof``).
    ``st[0] = (mean, m2, -, -)``, ``ci[0] = (count, slot)``; an empty ``out_*`` is not written.

    Until the window is full each value goes through :func:`steps.moments_push`; then
    the loop runs one turn of the ring at a time with the same step functions
    (:func:`steps.moments_replace`, :func:`steps.moments_rebuild` at the same counts),
    so the values are the same bits either way, without a branch per value."""
    window = ring.shape[1]
    write_mean = out_mean.shape[0] > 0
    write_var = out_var.shape[0] > 0
    write_std = out_std.shape[0] > 0
    count = ci[0, 0]
    slot = ci[0, 1]
    mean = st[0, steps.MOM_MEAN]
    m2 = st[0, steps.MOM_M2]
    n = values.shape[0]
    unused = 0.0
    i = 0
    while i < n and count < window:  # filling the window
        count, slot, mean, m2, unused, unused = steps.moments_push(
            ring, 0, count, slot, mean, m2, unused, unused, values[i], False
        )
        k = min(count, window)
        ok = k >= min_periods
        if write_mean:
            out_mean[i] = mean if ok else np.nan
        if write_var or write_std:
            var = steps.sample_variance(m2, k, ddof) if ok and k > ddof else np.nan
            if write_var:
                out_var[i] = var
            if write_std:
                out_std[i] = np.sqrt(var)
        i += 1
    inv_window = 1.0 / window
    turns = steps.rebuild_turns(window)
    has_var = window > ddof  # min_periods <= window: every result of a full window is valid
    row = ring[0]
    std_only = write_std and not write_mean and not write_var and has_var
    while i < n:  # full window: one turn of the ring (or what is left of it) at a time
        stop = min(n, i + window - slot)
        if std_only:  # the common call, rolling_std: no test per value
            for j in range(i, stop):
                x = values[j]
                mean, m2 = steps.moments_replace(mean, m2, x, row[slot], inv_window)
                row[slot] = x
                slot += 1
                out_std[j] = np.sqrt(steps.sample_variance(m2, window, ddof))
        else:
            for j in range(i, stop):
                x = values[j]
                mean, m2 = steps.moments_replace(mean, m2, x, row[slot], inv_window)
                row[slot] = x
                slot += 1
                if write_mean:
                    out_mean[j] = mean
                if write_var or write_std:
                    var = steps.sample_variance(m2, window, ddof) if has_var else np.nan
                    if write_var:
                        out_var[j] = var
                    if write_std:
                        out_std[j] = np.sqrt(var)
        count += stop - i
        i = stop
        if slot == window:
            slot = 0
            if (count // window) % turns == 0:
                mean, m2 = steps.moments_rebuild(ring, 0, inv_window)
                # the per-tick step rebuilds before its result: so do the results here
                j = stop - 1
                if write_mean:
                    out_mean[j] = mean
                if write_var or write_std:
                    var = steps.sample_variance(m2, window, ddof) if has_var else np.nan
                    if write_var:
                        out_var[j] = var
                    if write_std:
                        out_std[j] = np.sqrt(var)
    ci[0, 0] = count
    ci[0, 1] = slot
    st[0, steps.MOM_MEAN] = mean
    st[0, steps.MOM_M2] = m2


@_jit
def returns_series(prices, symbols, ring, st, ci, last, out_mean, out_var, out_vol, out_n):
    """Log returns between consecutive prices of a symbol, and after each price their
    rolling mean, sample variance and realised volatility ``sqrt(sum r^2)`` over the last
    ``ring.shape[1]`` returns, and how many returns that window holds (the engine's trade
    analytics).  ``st[sym] = (mean, m2, sumsq, sumsq_err)``, ``ci[sym] = (count, slot,
    prices seen)``, ``last[sym]`` the previous price; an empty ``out_*`` is not written."""
    window = ring.shape[1]
    multi = symbols.shape[0] > 0
    write_mean = out_mean.shape[0] > 0
    write_var = out_var.shape[0] > 0
    write_vol = out_vol.shape[0] > 0
    write_n = out_n.shape[0] > 0
    for i in range(prices.shape[0]):
        sym = symbols[i] if multi else 0
        px = prices[i]
        if ci[sym, 2] > 0:
            r = steps.log_return(px, last[sym])
            (
                ci[sym, 0], ci[sym, 1], st[sym, steps.MOM_MEAN], st[sym, steps.MOM_M2],
                st[sym, steps.MOM_SUMSQ], st[sym, steps.MOM_SUMSQ + 1],
            ) = steps.moments_push(
                ring, sym, ci[sym, 0], ci[sym, 1], st[sym, steps.MOM_MEAN],
                st[sym, steps.MOM_M2], st[sym, steps.MOM_SUMSQ], st[sym, steps.MOM_SUMSQ + 1],
                r, True,
            )  # fmt: skip
        last[sym] = px
        ci[sym, 2] += 1
        k = min(ci[sym, 0], window)
        if write_n:
            out_n[i] = k
        if write_mean:
            out_mean[i] = st[sym, steps.MOM_MEAN] if k > 0 else np.nan
        if write_vol:
            out_vol[i] = (
                steps.root_sum_squares(steps.compensated_sum(st, sym, steps.MOM_SUMSQ))
                if k > 0
                else np.nan
            )
        if write_var:
            out_var[i] = steps.sample_variance(st[sym, steps.MOM_M2], k, 1) if k > 1 else np.nan


@_jit
def bars_series(prices, sizes, timestamps, symbols, bar_ns, t, v, out):
    """OHLCV bars of ``bar_ns`` buckets: write each bar that a trade closes into ``out``
    (at most one per trade) and return how many.  ``t[sym] = (start, end)`` of the open
    bar (start -1: none), ``v[sym] = (open, high, low, close, volume, trades)``."""
    multi = symbols.shape[0] > 0
    closed = 0
    for i in range(prices.shape[0]):
        sym = symbols[i] if multi else 0
        ts = timestamps[i]
        px = prices[i]
        if steps.bar_is_past(t, sym, 0, 1, ts):
            if t[sym, 0] >= 0:
                _write_bar(t, v, sym, out, closed, i)
                closed += 1
            steps.bar_open(t, sym, 0, 1, v, 0, ts, px, bar_ns)
        steps.bar_add(v, sym, 0, px, sizes[i])
    return closed


@_jit
def _write_bar(t, v, sym, out, j, closed_by):
    b = out[j : j + 1]
    b[0].symbol = sym
    b[0].bar_start_ns = t[sym, 0]
    b[0].open = v[sym, steps.BAR_OPEN]
    b[0].high = v[sym, steps.BAR_HIGH]
    b[0].low = v[sym, steps.BAR_LOW]
    b[0].close = v[sym, steps.BAR_CLOSE]
    b[0].volume = v[sym, steps.BAR_VOLUME]
    b[0].n_trades = np.int64(v[sym, steps.BAR_TRADES])
    b[0].closed_by = closed_by


@_jit
def open_bars(t, v, out):
    """Write the open bar of every symbol that has one into ``out``; return how many."""
    k = 0
    for sym in range(t.shape[0]):
        if t[sym, 0] >= 0:
            _write_bar(t, v, sym, out, k, -1)
            k += 1
    return k


@_jit
def l1_series(bid, bid_size, ask, ask_size, out_mid, out_spread, out_micro, out_imbalance):
    """Mid, spread, microprice and L1 imbalance of each top of book (price units in and
    out); an empty ``out_*`` is not written."""
    write_mid = out_mid.shape[0] > 0
    write_spread = out_spread.shape[0] > 0
    write_micro = out_micro.shape[0] > 0
    write_imb = out_imbalance.shape[0] > 0
    for i in range(bid.shape[0]):
        mid, spread, micro, imb = steps.l1_features(bid[i], bid_size[i], ask[i], ask_size[i], 1.0)
        if write_mid:
            out_mid[i] = mid
        if write_spread:
            out_spread[i] = spread
        if write_micro:
            out_micro[i] = micro
        if write_imb:
            out_imbalance[i] = imb


# The kernels inline steps.py: their cache entries must change when it does.
stamp_dependencies(globals(), [steps])
