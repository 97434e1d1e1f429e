"""A typed, read-only view of the streaming kernels' per-symbol state.

The frame kernels keep each symbol's state in the columns of ``StreamingState.sym_i``
(:mod:`tickpath.kernels.cpu.streaming` defines them).  Code outside the kernels (the
milli path, the correlation sampler) reads it through :class:`SymbolView`, by name, so
only the kernels' module and this one know the column layout.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu import streaming as k


class Tick(NamedTuple):
    """The newest input of one analytic of a symbol: its price and its provenance."""

    price: float  # quote: the mid (0.0 unless both sides are present); trade: last price
    ts_ns: int  # exchange timestamp
    seq: int  # sequence number of the input record
    send_ns: int  # send_ns of the frame that carried it
    stream: int  # stream id of that frame


class SymbolView:
    """Named access to ``sym_i`` (``int64[n_symbols, I_COLS]``), without copying it.

    Prices come out in price units (ticks / ``PRICE_SCALE``).
    """

    __slots__ = ("_sym_i",)

    def __init__(self, sym_i: np.ndarray) -> None:
        if sym_i.ndim != 2 or sym_i.shape[1] != k.I_COLS:
            raise ValueError(f"sym_i must have shape (n_symbols, {k.I_COLS}), got {sym_i.shape}")
        self._sym_i = sym_i

    def last_price(self, symbols: np.ndarray) -> np.ndarray:
        """Last trade price of each symbol; NaN where it has traded not yet."""
        px = self._sym_i[symbols, k.I_LAST_PX].astype(np.float64)
        return np.where(px > 0, px / s.PRICE_SCALE, np.nan)

    def mid(self, symbols: np.ndarray) -> np.ndarray:
        """Quote mid of each symbol; NaN unless both sides are present."""
        bid = self._sym_i[symbols, k.I_BID_PX]
        ask = self._sym_i[symbols, k.I_ASK_PX]
        mid = (bid + ask) / (2.0 * s.PRICE_SCALE)
        return np.where((bid > 0) & (ask > 0), mid, np.nan)

    def newest_ts(self, symbols: np.ndarray, analytic: int) -> int:
        """Exchange time of the newest input of ``analytic`` (``k.A_QUOTE``...) among them."""
        return int(self._sym_i[symbols, k.I_PROV + 4 * analytic].max())

    def tick(self, symbol: int, analytic: int) -> Tick:
        """The newest quote (``k.A_QUOTE``) or trade (``k.A_TRADE``) of ``symbol``."""
        row = self._sym_i[symbol].tolist()
        if analytic == k.A_QUOTE:  # the same mid as the quote result's
            bid, ask = row[k.I_BID_PX], row[k.I_ASK_PX]
            price = (bid + ask) / (2.0 * s.PRICE_SCALE) if bid > 0 and ask > 0 else 0.0
        else:
            price = row[k.I_LAST_PX] / s.PRICE_SCALE
        base = k.I_PROV + 4 * analytic
        return Tick(price, row[base], row[base + 1], row[base + 3], row[base + 2])
