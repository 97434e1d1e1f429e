"""Plain numpy meaning of every streaming analytic: the oracle for the CPU, GPU and FPGA kernels.

Each function takes the accepted input records in arrival order and returns
the value of every analytic *after each record*, computed directly from its
definition (window sums are recomputed from scratch, variances with
``np.var``), independent of how the streaming kernels update their state.

Definitions (prices in price units = ticks / PRICE_SCALE, sizes in size units
= lots / SIZE_SCALE):

* quote: ``mid = (bid + ask) / 2``, ``spread = ask - bid`` (NaN unless both
  sides are present), ``microprice = (bid * ask_size + ask * bid_size) /
  (bid_size + ask_size)``, ``imbalance = (bid_size - ask_size) / (bid_size +
  ask_size)``.
* trade, per symbol: EMA of trade prices with ``alpha = 2 / (span + 1)``,
  seeded with the first price; session VWAP; window VWAP over the trades with
  ``ts > ts_now - vwap_window_ns``, at most the last ``vwap_ring`` of them;
  log returns between consecutive trades, their rolling mean and sample
  variance (ddof = 1) and realised volatility ``sqrt(sum r^2)`` over the last
  ``vol_window`` returns; trade-flow imbalance ``(buy - sell) / (buy + sell)``
  of aggressor volume over the VWAP window.
* bars: trades are bucketed by ``ts - ts % bar_ns``; a trade whose bucket is
  later than the open bar's closes it (empty buckets emit nothing); a trade
  with an earlier bucket joins the open bar.
"""

from __future__ import annotations

import numpy as np

from tickpath.engine.wire import schema as s


def quote_features(quotes: np.ndarray) -> dict[str, np.ndarray]:
    """Mid, spread, microprice and L1 imbalance of each QUOTE record."""
    bp = quotes["bid_price"].astype(np.float64)
    ap = quotes["ask_price"].astype(np.float64)
    bs = quotes["bid_size"].astype(np.float64)
    az = quotes["ask_size"].astype(np.float64)
    both = (bp > 0) & (ap > 0)
    depth = bs + az
    with np.errstate(invalid="ignore", divide="ignore"):
        mid = np.where(both, (bp + ap) / (2.0 * s.PRICE_SCALE), np.nan)
        spread = np.where(both, (ap - bp) / s.PRICE_SCALE, np.nan)
        weighted = both & (depth > 0)
        micro = np.where(weighted, (bp * az + ap * bs) / (depth * s.PRICE_SCALE), np.nan)
        imbalance = np.where(weighted, (bs - az) / depth, np.nan)
    return {"mid": mid, "spread": spread, "microprice": micro, "imbalance": imbalance}


def trade_features(
    trades: np.ndarray,
    ema_spans: tuple[int, ...],
    vwap_window_ns: int,
    vwap_ring: int,
    vol_window: int,
) -> dict[str, np.ndarray]:
    """Every trade analytic of each TRADE record, after that record."""
    n = len(trades)
    out = {
        "ema": np.full((n, s.N_EMA), np.nan),
        "vwap_session": np.empty(n),
        "vwap_window": np.empty(n),
        "ret_mean": np.full(n, np.nan),
        "ret_var": np.full(n, np.nan),
        "realized_vol": np.full(n, np.nan),
        "trade_flow_imbalance": np.full(n, np.nan),
        "n_returns": np.zeros(n, np.int64),
    }
    for sym in np.unique(trades["symbol"]):
        idx = np.flatnonzero(trades["symbol"] == sym)
        t = trades[idx]
        px = t["price"] / s.PRICE_SCALE
        sz = t["size"] / s.SIZE_SCALE
        pv = px * sz
        buy = np.where(t["side"] == s.SIDE_BUY, sz, 0.0)
        sell = np.where(t["side"] == s.SIDE_SELL, sz, 0.0)
        for k, span in enumerate(ema_spans):
            alpha = 2.0 / (span + 1.0)
            ema = np.empty(len(t))
            ema[0] = px[0]
            for j in range(1, len(t)):
                ema[j] = ema[j - 1] + alpha * (px[j] - ema[j - 1])
            out["ema"][idx, k] = ema
        out["vwap_session"][idx] = np.cumsum(pv) / np.cumsum(sz)
        returns = np.log(t["price"][1:] / t["price"][:-1])
        ts = t["ts_ns"]
        lo = 0
        for j in range(len(t)):
            # trades leave the window oldest first and never come back
            while lo < j and (ts[lo] <= ts[j] - vwap_window_ns or j + 1 - lo > vwap_ring):
                lo += 1
            window = slice(lo, j + 1)
            out["vwap_window"][idx[j]] = pv[window].sum() / sz[window].sum()
            b, sl = buy[window].sum(), sell[window].sum()
            out["trade_flow_imbalance"][idx[j]] = (b - sl) / (b + sl) if b + sl > 0 else np.nan
            r = returns[max(0, j - vol_window) : j]
            out["n_returns"][idx[j]] = len(r)
            if len(r):
                out["ret_mean"][idx[j]] = r.mean()
                out["realized_vol"][idx[j]] = np.sqrt(np.sum(r * r))
            if len(r) > 1:
                out["ret_var"][idx[j]] = r.var(ddof=1)
    return out


def completed_bars(trades: np.ndarray, bar_ns: int) -> np.ndarray:
    """The OHLCV bars that the TRADE records close, in the order they close.

    Returns a structured array with ``symbol, bar_start_ns, open, high, low,
    close, volume, n_trades`` and ``closed_by`` (index of the trade that closed it).
    """
    dtype = np.dtype(
        [
            ("symbol", "u4"),
            ("bar_start_ns", "i8"),
            ("open", "i8"),
            ("high", "i8"),
            ("low", "i8"),
            ("close", "i8"),
            ("volume", "i8"),
            ("n_trades", "u4"),
            ("closed_by", "i8"),
        ]
    )
    open_bars: dict[int, list[int]] = {}
    done = []
    for i, t in enumerate(trades):
        sym = int(t["symbol"])
        price, size, ts = int(t["price"]), int(t["size"]), int(t["ts_ns"])
        start = ts - ts % bar_ns
        bar = open_bars.get(sym)
        if bar is not None and start > bar[0]:
            done.append((sym, *bar, i))
            bar = None
        if bar is None:
            bar = [start, price, price, price, price, 0, 0]
            open_bars[sym] = bar
        bar[2] = max(bar[2], price)
        bar[3] = min(bar[3], price)
        bar[4] = price
        bar[5] += size
        bar[6] += 1
    return np.array(done, dtype=dtype)
