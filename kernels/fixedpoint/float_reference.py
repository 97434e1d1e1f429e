"""Float64 numpy reference of the tick features, to compare the fixed-point core with.

The same features as :mod:`tickpath.kernels.fixedpoint.tick_features`, computed the way
float analytics compute them (the engine's CPU EMA with ``span = 2**(k+1) - 1``
has ``alpha = 2 / (span + 1) = 2**-k``).  The fixed-point results differ from
these in known, bounded ways:

* EMA: each fixed-point step floors ``(x - ema) >>> k`` to ``2**-EMA_FRAC_BITS``
  ticks; the error it leaves decays by ``1 - alpha`` per step, so the
  fixed-point EMA lies within ``2**(k - EMA_FRAC_BITS)`` ticks of the exact one
  (and below it or equal).  The float EMA carries its own rounding of about
  ``1e-16`` relative per step.
* VWAP: the core's sums are exact integers (128-bit price*size); the float sums
  round once past ``2**53``.  They agree to about ``1e-12`` relative.
* mid, spread, imbalance: exact integers in the core; the float versions are
  the correctly rounded quotients of the same integers.
"""

from __future__ import annotations

import numpy as np

from tickpath.engine.wire import schema
from tickpath.kernels.fixedpoint import layout as L

FLOAT_FEATURES = np.dtype(
    [
        ("ema0", "<f8"),  # ticks
        ("ema1", "<f8"),
        ("vwap", "<f8"),  # ticks
        ("mid", "<f8"),  # ticks
        ("spread", "<f8"),  # ticks
        ("imbalance", "<f8"),  # (bid_size - ask_size) / (bid_size + ask_size)
    ]
)


def float_features(slots: np.ndarray, n_symbols: int, k: tuple[int, int] = L.K_RESET) -> np.ndarray:
    """Float64 features after each record of an IN_SLOT array (NaN until defined).

    A plain per-record loop: it is the readable meaning, not a fast path.
    Records with a bad kind or symbol give all-NaN rows.
    """
    alphas = [2.0**-kk for kk in k]
    ema = np.full((n_symbols, 2), np.nan)
    pv = np.zeros(n_symbols)
    vol = np.zeros(n_symbols)
    quote = np.full((n_symbols, 4), np.nan)  # bid, bid_size, ask, ask_size
    out = np.full(slots.shape[0], np.nan, dtype=FLOAT_FEATURES)
    for i, rec in enumerate(slots):
        sym = int(rec["symbol"])
        kind = int(rec["kind"])
        if kind not in (schema.KIND_TRADE, schema.KIND_QUOTE) or sym >= n_symbols:
            continue
        if kind == schema.KIND_TRADE:
            price = float(rec["price"])
            size = float(rec["size"])
            for j, alpha in enumerate(alphas):
                prev = ema[sym, j]
                ema[sym, j] = price if np.isnan(prev) else prev + alpha * (price - prev)
            pv[sym] += price * size
            vol[sym] += size
        else:
            quote[sym] = (rec["bid_price"], rec["bid_size"], rec["ask_price"], rec["ask_size"])
        bid, bid_size, ask, ask_size = quote[sym]
        row = out[i]
        row["ema0"], row["ema1"] = ema[sym]
        row["vwap"] = pv[sym] / vol[sym] if vol[sym] != 0 else np.nan
        row["mid"] = (bid + ask) / 2.0
        row["spread"] = ask - bid
        den = bid_size + ask_size
        row["imbalance"] = (bid_size - ask_size) / den if den != 0 else np.nan
    return out
