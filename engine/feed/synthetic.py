"""A seeded synthetic multi-symbol market: TRADE, QUOTE and L3 ORDER records.

Model, per symbol:

* a latent top of book: the bid walks in whole symbol ticks (a rounded normal
  step of the symbol's tick volatility at every quote update) and the spread is
  redrawn now and then (``1 + geometric`` symbol ticks, so never below one tick).
  A symbol tick is a per-symbol number of wire price units (``schema.PRICE_SCALE``
  per currency unit), e.g. 100 for a cent;
* QUOTE records publish that latent touch with random sizes;
* TRADE records print at the touch: a buyer-aggressor trade at the ask, a
  seller-aggressor trade at the bid;
* ORDER records are L3 flow over a book the generator keeps itself (a pool of
  resting orders per symbol and side).  ADD places an order at or behind the
  latent touch, clamped so the L3 book never crosses; MODIFY gives a live order a
  new remaining size and sometimes moves it a tick or two on its own side;
  CANCEL removes a live order (first any order left through the latent touch,
  otherwise a random one); EXECUTE fills part or all of the best order of a side.
  Every MODIFY / CANCEL / EXECUTE names a live order with its own symbol and
  side, an EXECUTE never exceeds the remaining size, a removed order is never
  named again, and order ids are unique over the whole market (a global u64
  counter from 1).

The QUOTE/TRADE streams and the L3 book describe the same latent market but are
not derived from each other: the best L3 prices follow the latent touch (through
clamping and stale-order cancels) without being equal to it.

Symbols are drawn with Zipf-like activity weights (symbol 0 busiest).  Event
times advance by exponential gaps (``mean_gap_ns``) floored to whole
nanoseconds, so timestamps are non-decreasing over the whole market and within
every kind.  Everything is driven by a splitmix64 generator seeded from
``seed``: the same arguments give identical records.

The hot loop is one ``@njit`` kernel that writes into preallocated per-kind
buffers; :meth:`SyntheticMarket.next_batch` returns the next full frame of one
kind, and frames come out in order of their last record's timestamp.
"""

from __future__ import annotations

import numba
import numpy as np

from tickpath.engine.wire import schema as s

DEFAULT_START_NS = 1_704_205_800_000_000_000  # 2024-01-02T14:30:00Z, a fixed epoch
KINDS = (s.KIND_TRADE, s.KIND_QUOTE, s.KIND_ORDER)
_DTYPES = (s.TRADE, s.QUOTE, s.ORDER)

# Columns of the per-symbol int64 state.
_BID = 0  # latent bid, symbol ticks
_SPREAD = 1  # latent spread, symbol ticks (>= 1)
_TICK = 2  # wire price units per symbol tick
_UNIT = 3  # wire size lots per size unit
_BEST_BID = 4  # cached best resting bid (symbol ticks), valid if _BEST_BID_OK
_BEST_ASK = 5
_BEST_BID_OK = 6
_BEST_ASK_OK = 7
_N_SYM_I = 8

# Columns of the per-symbol float64 state.
_VOL = 0  # sd of the bid step per quote update, symbol ticks
_MEAN_SIZE = 1  # mean of the size draw, size units
_N_SYM_F = 2

# Parameter vector.
_P_TRADE = 0  # cumulative probability of a trade event
_P_QUOTE = 1  # cumulative probability of trade or quote
_MEAN_GAP = 2  # ns
_SPREAD_EXTRA = 3  # mean of the geometric spread extra, ticks
_P_SPREAD = 4  # probability a quote update redraws the spread
_DEPTH = 5  # mean distance of an ADD behind the touch, ticks
_N_PARAMS = 6

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0


@numba.njit(cache=True, nogil=True, inline="always")
def _next_u64(rng: np.ndarray) -> np.uint64:
    x = rng[0] + _GOLDEN
    rng[0] = x
    z = x
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@numba.njit(cache=True, nogil=True, inline="always")
def _uniform(rng: np.ndarray) -> float:
    """Uniform in [0, 1)."""
    return float(_next_u64(rng) >> _S11) * _INV53


@numba.njit(cache=True, nogil=True)
def _exponential(rng: np.ndarray, mean: float) -> float:
    return -mean * np.log(1.0 - _uniform(rng))


@numba.njit(cache=True, nogil=True)
def _normal(rng: np.ndarray) -> float:
    u1 = 1.0 - _uniform(rng)
    u2 = _uniform(rng)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


@numba.njit(cache=True, nogil=True)
def _below(rng: np.ndarray, n: int) -> int:
    """Uniform integer in [0, n)."""
    return int(_uniform(rng) * n)


@numba.njit(cache=True, nogil=True)
def _size_lots(rng: np.ndarray, sym_i: np.ndarray, sym_f: np.ndarray, sym: int) -> int:
    units = 1 + int(_exponential(rng, sym_f[sym, _MEAN_SIZE]))
    return units * sym_i[sym, _UNIT]


@numba.njit(cache=True, nogil=True)
def _best(sym_i: np.ndarray, pool_px: np.ndarray, pool_n: np.ndarray, sym: int, side: int) -> int:
    """Best resting price of a side in symbol ticks (max bid / min ask); -1 if empty."""
    n = pool_n[sym, side]
    if n == 0:
        return -1
    col = _BEST_BID + side
    ok = _BEST_BID_OK + side
    if sym_i[sym, ok] == 0:
        best = pool_px[sym, side, 0]
        for i in range(1, n):
            p = pool_px[sym, side, i]
            if (side == 0 and p > best) or (side == 1 and p < best):
                best = p
        sym_i[sym, col] = best
        sym_i[sym, ok] = 1
    return sym_i[sym, col]


@numba.njit(cache=True, nogil=True)
def _note_price(sym_i: np.ndarray, sym: int, side: int, old: int, new: int) -> None:
    """Keep the best-price cache right after an order of ``side`` moved from old to new.

    ``old < 0`` means a new order, ``new < 0`` a removed one.
    """
    ok = _BEST_BID_OK + side
    if sym_i[sym, ok] == 0:
        return
    best = sym_i[sym, _BEST_BID + side]
    better = new >= 0 and ((side == 0 and new > best) or (side == 1 and new < best))
    if better:
        sym_i[sym, _BEST_BID + side] = new
    elif old == best and new != best:
        sym_i[sym, ok] = 0


@numba.njit(cache=True, nogil=True)
def _remove(
    sym_i: np.ndarray,
    pool_id: np.ndarray,
    pool_px: np.ndarray,
    pool_sz: np.ndarray,
    pool_n: np.ndarray,
    sym: int,
    side: int,
    i: int,
) -> None:
    old = pool_px[sym, side, i]
    last = pool_n[sym, side] - 1
    pool_id[sym, side, i] = pool_id[sym, side, last]
    pool_px[sym, side, i] = pool_px[sym, side, last]
    pool_sz[sym, side, i] = pool_sz[sym, side, last]
    pool_n[sym, side] = last
    if last == 0:
        sym_i[sym, _BEST_BID_OK + side] = 0
    else:
        _note_price(sym_i, sym, side, old, -1)


@numba.njit(cache=True, nogil=True)
def _index_of_best(pool_px: np.ndarray, pool_n: np.ndarray, sym: int, side: int, best: int) -> int:
    for i in range(pool_n[sym, side]):
        if pool_px[sym, side, i] == best:
            return i
    return -1


@numba.njit(cache=True, nogil=True)
def _emit_order(
    orders: np.ndarray,
    counts: np.ndarray,
    ts: int,
    sym: int,
    action: int,
    side: int,
    order_id: np.uint64,
    price: int,
    size: int,
) -> None:
    j = counts[2]
    r = orders[j]
    r["ts_ns"] = ts
    r["symbol"] = sym
    r["action"] = action
    r["side"] = s.SIDE_BUY if side == 0 else s.SIDE_SELL
    r["order_id"] = order_id
    r["price"] = price
    r["size"] = size
    counts[2] = j + 1


@numba.njit(cache=True, nogil=True)
def _order_event(
    rng: np.ndarray,
    glob: np.ndarray,
    sym_i: np.ndarray,
    sym_f: np.ndarray,
    params: np.ndarray,
    pool_id: np.ndarray,
    pool_px: np.ndarray,
    pool_sz: np.ndarray,
    pool_n: np.ndarray,
    orders: np.ndarray,
    counts: np.ndarray,
    ts: int,
    sym: int,
) -> None:
    cap = pool_id.shape[2]
    tick = sym_i[sym, _TICK]
    bid = sym_i[sym, _BID]
    ask = bid + sym_i[sym, _SPREAD]
    total = pool_n[sym, 0] + pool_n[sym, 1]
    p_add = 0.55 if total < cap else 0.42
    u = _uniform(rng)
    if total == 0 or u < p_add:
        side = _below(rng, 2)
        if pool_n[sym, side] == cap:
            side = 1 - side
        if pool_n[sym, side] < cap:
            off = int(_exponential(rng, params[_DEPTH]))
            price = 0
            if side == 0:
                price = bid - off
                best_ask = _best(sym_i, pool_px, pool_n, sym, 1)
                if best_ask >= 0 and price >= best_ask:
                    price = best_ask - 1
                if price < 1:  # no room for a bid above zero: add an ask instead
                    side = 1
            if side == 1:
                price = ask + off
                best_bid = _best(sym_i, pool_px, pool_n, sym, 0)
                if price <= best_bid:
                    price = best_bid + 1
            size = _size_lots(rng, sym_i, sym_f, sym)
            oid = np.uint64(glob[1])
            glob[1] += 1
            k = pool_n[sym, side]
            pool_id[sym, side, k] = oid
            pool_px[sym, side, k] = price
            pool_sz[sym, side, k] = size
            pool_n[sym, side] = k + 1
            if k == 0:
                sym_i[sym, _BEST_BID + side] = price
                sym_i[sym, _BEST_BID_OK + side] = 1
            else:
                _note_price(sym_i, sym, side, -1, price)
            _emit_order(orders, counts, ts, sym, s.ACTION_ADD, side, oid, price * tick, size)
            return
        # both sides full: fall through to a removal
        u = 1.0
    v = (u - p_add) / (1.0 - p_add) if u < 1.0 else 0.5
    side = _below(rng, 2)
    if pool_n[sym, side] == 0:
        side = 1 - side
    if v < 0.2:  # MODIFY
        i = _below(rng, pool_n[sym, side])
        old = pool_px[sym, side, i]
        price = old
        if _uniform(rng) < 0.3:
            step = 1 + _below(rng, 2)
            price = old + step if _uniform(rng) < 0.5 else old - step
            if side == 0:
                best_ask = _best(sym_i, pool_px, pool_n, sym, 1)
                if best_ask >= 0 and price >= best_ask:
                    price = best_ask - 1
                if price < 1:
                    price = old
            else:
                best_bid = _best(sym_i, pool_px, pool_n, sym, 0)
                if price <= best_bid:
                    price = best_bid + 1
        size = _size_lots(rng, sym_i, sym_f, sym)
        pool_px[sym, side, i] = price
        pool_sz[sym, side, i] = size
        if price != old:
            _note_price(sym_i, sym, side, old, price)
        _emit_order(
            orders,
            counts,
            ts,
            sym,
            s.ACTION_MODIFY,
            side,
            pool_id[sym, side, i],
            price * tick,
            size,
        )
    elif v < 0.75:  # CANCEL: a stale order through the latent touch first
        i = -1
        best_ask = _best(sym_i, pool_px, pool_n, sym, 1)
        best_bid = _best(sym_i, pool_px, pool_n, sym, 0)
        if best_ask >= 0 and best_ask <= bid:
            side = 1
            i = _index_of_best(pool_px, pool_n, sym, 1, best_ask)
        elif best_bid >= ask:
            side = 0
            i = _index_of_best(pool_px, pool_n, sym, 0, best_bid)
        if i < 0:
            i = _below(rng, pool_n[sym, side])
        oid = pool_id[sym, side, i]
        price = pool_px[sym, side, i]
        size = pool_sz[sym, side, i]
        _remove(sym_i, pool_id, pool_px, pool_sz, pool_n, sym, side, i)
        _emit_order(orders, counts, ts, sym, s.ACTION_CANCEL, side, oid, price * tick, size)
    else:  # EXECUTE against the best order of the side
        best = _best(sym_i, pool_px, pool_n, sym, side)
        i = _index_of_best(pool_px, pool_n, sym, side, best)
        remaining = pool_sz[sym, side, i]
        size = remaining
        if _uniform(rng) < 0.5:
            size = min(remaining, _size_lots(rng, sym_i, sym_f, sym))
        oid = pool_id[sym, side, i]
        _emit_order(orders, counts, ts, sym, s.ACTION_EXECUTE, side, oid, best * tick, size)
        if size == remaining:
            _remove(sym_i, pool_id, pool_px, pool_sz, pool_n, sym, side, i)
        else:
            pool_sz[sym, side, i] = remaining - size


@numba.njit(cache=True, nogil=True)
def _run(
    stop_at: int,
    max_events: int,
    rng: np.ndarray,
    glob: np.ndarray,
    sym_i: np.ndarray,
    sym_f: np.ndarray,
    params: np.ndarray,
    cum_weight: np.ndarray,
    pool_id: np.ndarray,
    pool_px: np.ndarray,
    pool_sz: np.ndarray,
    pool_n: np.ndarray,
    trades: np.ndarray,
    quotes: np.ndarray,
    orders: np.ndarray,
    counts: np.ndarray,
) -> int:
    """Generate events until a kind's buffer holds ``stop_at`` records or ``max_events`` ran.

    Returns the index (0 trade, 1 quote, 2 order) of the kind that reached
    ``stop_at``, or -1 if ``max_events`` events were generated first.
    """
    for k in range(3):
        if counts[k] >= stop_at:
            return k
    for _ in range(max_events):
        ts = glob[0] + int(_exponential(rng, params[_MEAN_GAP]))
        glob[0] = ts
        sym = int(np.searchsorted(cum_weight, _uniform(rng) * cum_weight[-1], side="right"))
        if sym >= cum_weight.shape[0]:
            sym = cum_weight.shape[0] - 1
        u = _uniform(rng)
        tick = sym_i[sym, _TICK]
        if u < params[_P_TRADE]:
            bid = sym_i[sym, _BID]
            buy = _uniform(rng) < 0.5
            j = counts[0]
            r = trades[j]
            r["ts_ns"] = ts
            r["symbol"] = sym
            r["side"] = s.SIDE_BUY if buy else s.SIDE_SELL
            r["price"] = (bid + sym_i[sym, _SPREAD] if buy else bid) * tick
            r["size"] = _size_lots(rng, sym_i, sym_f, sym)
            r["trade_id"] = np.uint64(glob[2])
            glob[2] += 1
            counts[0] = j + 1
            k = 0
        elif u < params[_P_QUOTE]:
            bid = sym_i[sym, _BID] + int(np.round(sym_f[sym, _VOL] * _normal(rng)))
            if bid < 1:
                bid = 2 - bid  # reflect off zero, stay >= 1 tick
            sym_i[sym, _BID] = bid
            if _uniform(rng) < params[_P_SPREAD]:
                p = 1.0 / (1.0 + params[_SPREAD_EXTRA])
                extra = int(np.log(1.0 - _uniform(rng)) / np.log(1.0 - p)) if p < 1.0 else 0
                sym_i[sym, _SPREAD] = 1 + extra
            j = counts[1]
            r = quotes[j]
            r["ts_ns"] = ts
            r["symbol"] = sym
            r["bid_price"] = bid * tick
            r["bid_size"] = _size_lots(rng, sym_i, sym_f, sym)
            r["ask_price"] = (bid + sym_i[sym, _SPREAD]) * tick
            r["ask_size"] = _size_lots(rng, sym_i, sym_f, sym)
            counts[1] = j + 1
            k = 1
        else:
            _order_event(
                rng,
                glob,
                sym_i,
                sym_f,
                params,
                pool_id,
                pool_px,
                pool_sz,
                pool_n,
                orders,
                counts,
                ts,
                sym,
            )
            k = 2
        if counts[k] >= stop_at:
            return k
    return -1


class SyntheticMarket:
    """A deterministic synthetic market of ``n_symbols`` symbols (see the module docstring).

    ``trade_ratio``, ``quote_ratio`` and ``order_ratio`` are relative weights of
    the three event kinds (normalised; any may be 0, not all).  ``max_orders``
    bounds the resting orders per symbol and side.  ``mean_gap_ns`` is the mean
    time between consecutive events of the whole market.
    """

    def __init__(
        self,
        n_symbols: int = 8,
        seed: int = 1,
        *,
        trade_ratio: float = 0.1,
        quote_ratio: float = 0.4,
        order_ratio: float = 0.5,
        start_ns: int = DEFAULT_START_NS,
        mean_gap_ns: float = 1_000.0,
        max_orders: int = 64,
        mean_spread_extra: float = 1.0,
        spread_change_prob: float = 0.1,
        mean_depth_ticks: float = 3.0,
    ) -> None:
        if not 1 <= n_symbols <= 1 << 20:
            raise ValueError(f"n_symbols must be in 1..{1 << 20}, got {n_symbols}")
        ratios = np.array([trade_ratio, quote_ratio, order_ratio], dtype=np.float64)
        if not np.all(np.isfinite(ratios)) or np.any(ratios < 0) or ratios.sum() <= 0:
            raise ValueError(f"kind ratios must be finite, >= 0 and not all 0, got {ratios}")
        if max_orders < 1:
            raise ValueError(f"max_orders must be >= 1, got {max_orders}")
        if not mean_gap_ns >= 0 or start_ns < 0:
            raise ValueError("mean_gap_ns and start_ns must be >= 0")
        self.n_symbols = n_symbols
        self.seed = seed
        self.ratios = ratios / ratios.sum()

        setup = np.random.default_rng(seed)
        self._sym_i = np.zeros((n_symbols, _N_SYM_I), np.int64)
        self._sym_f = np.zeros((n_symbols, _N_SYM_F), np.float64)
        # A mix of cent-tick equities around $10-$500 and finer-tick instruments.
        tick = setup.choice(np.array([100, 100, 100, 50, 10, 1]), n_symbols)
        base_price = np.exp(setup.uniform(np.log(10.0), np.log(500.0), n_symbols))
        self._sym_i[:, _TICK] = tick
        self._sym_i[:, _BID] = np.maximum(
            1, np.round(base_price * s.PRICE_SCALE / tick).astype(np.int64)
        )
        self._sym_i[:, _SPREAD] = 1 + setup.integers(0, 3, n_symbols)
        self._sym_i[:, _UNIT] = setup.choice(
            np.array([s.SIZE_SCALE, 100 * s.SIZE_SCALE, s.SIZE_SCALE // 1000]), n_symbols
        )
        self._sym_f[:, _VOL] = setup.uniform(0.3, 2.0, n_symbols)
        self._sym_f[:, _MEAN_SIZE] = setup.uniform(2.0, 20.0, n_symbols)
        self.base_price_ticks = (self._sym_i[:, _BID] * tick).copy()
        self.tick_size = tick.astype(np.int64)
        self.tick_volatility = self._sym_f[:, _VOL].copy()

        self._cum_weight = np.cumsum(1.0 / (1.0 + np.arange(n_symbols)))
        self._params = np.zeros(_N_PARAMS, np.float64)
        self._params[_P_TRADE] = self.ratios[0]
        self._params[_P_QUOTE] = self.ratios[0] + self.ratios[1]
        if self.ratios[2] == 0:
            self._params[_P_QUOTE] = 2.0  # rounding must never select an order event
        self._params[_MEAN_GAP] = mean_gap_ns
        self._params[_SPREAD_EXTRA] = mean_spread_extra
        self._params[_P_SPREAD] = spread_change_prob
        self._params[_DEPTH] = mean_depth_ticks

        self._rng = np.array([np.uint64(seed & 0xFFFFFFFFFFFFFFFF)], np.uint64)
        self._glob = np.array([start_ns, 1, 1], np.int64)  # ts, next order id, next trade id
        self._pool_id = np.zeros((n_symbols, 2, max_orders), np.uint64)
        self._pool_px = np.zeros((n_symbols, 2, max_orders), np.int64)
        self._pool_sz = np.zeros((n_symbols, 2, max_orders), np.int64)
        self._pool_n = np.zeros((n_symbols, 2), np.int64)
        self._counts = np.zeros(3, np.int64)
        self._bufs = [np.zeros(1024, dt) for dt in _DTYPES]

    def _reserve(self, extra: int) -> None:
        for k, buf in enumerate(self._bufs):
            need = int(self._counts[k]) + extra
            if len(buf) < need:
                grown = np.zeros(max(need, 2 * len(buf)), buf.dtype)
                grown[: self._counts[k]] = buf[: self._counts[k]]
                self._bufs[k] = grown

    def _call(self, stop_at: int, max_events: int) -> int:
        return int(
            _run(
                stop_at,
                max_events,
                self._rng,
                self._glob,
                self._sym_i,
                self._sym_f,
                self._params,
                self._cum_weight,
                self._pool_id,
                self._pool_px,
                self._pool_sz,
                self._pool_n,
                self._bufs[0],
                self._bufs[1],
                self._bufs[2],
                self._counts,
            )
        )

    def _take(self, k: int, n: int) -> np.ndarray:
        buf = self._bufs[k]
        c = int(self._counts[k])
        out = buf[:n].copy()
        if c > n:
            buf[: c - n] = buf[n:c]
        self._counts[k] = c - n
        return out

    def next_batch(self, n: int) -> tuple[int, np.ndarray]:
        """Generate until one kind has ``n`` records; return ``(kind, records)``.

        ``records`` is a fresh array of exactly ``n`` records of that kind's
        dtype, in time order.  Records of the other kinds stay buffered for later
        calls, so successive batches are ordered by their last timestamp.
        """
        if n < 1:
            raise ValueError(f"batch size must be >= 1, got {n}")
        self._reserve(n)
        while True:
            k = self._call(n, 1 << 30)
            if k >= 0:
                return KINDS[k], self._take(k, n)

    def generate(self, n_events: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Generate ``n_events`` more events; return ``(trades, quotes, orders)``.

        Any records buffered by earlier :meth:`next_batch` calls come first.
        """
        if n_events < 0:
            raise ValueError(f"n_events must be >= 0, got {n_events}")
        self._reserve(n_events)
        self._call(1 << 62, n_events)
        return tuple(self._take(k, int(self._counts[k])) for k in range(3))  # type: ignore[return-value]

    def flush(self) -> list[tuple[int, np.ndarray]]:
        """Return the buffered partial batches as ``(kind, records)``, oldest last record first."""
        out = [(KINDS[k], self._take(k, int(self._counts[k]))) for k in range(3) if self._counts[k]]
        out.sort(key=lambda item: int(item[1]["ts_ns"][-1]))
        return out

    @property
    def next_order_id(self) -> int:
        """The id the next ADD will carry (ids run 1, 2, 3, ... over the whole market)."""
        return int(self._glob[1])

    def resting_orders(self) -> int:
        """Number of orders resting in the generator's own L3 book, all symbols."""
        return int(self._pool_n.sum())
