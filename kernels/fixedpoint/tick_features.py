"""Golden model of the tick-features FPGA core, bit-exact with the RTL.

The core keeps per-symbol state (last trade, two EMAs of trade price, VWAP
accumulators, last quote) and emits one :data:`~tickpath.kernels.fixedpoint.layout.FEATURE`
record per input record.  All arithmetic is two's-complement integer
arithmetic on 64-bit words (and one 128-bit accumulator), exactly as the RTL
does it; overflow wraps.

Per trade (price ``p`` ticks, size ``s`` lots), with ``F = EMA_FRAC_BITS``::

    ema_j = p << F                                   (the symbol's first trade)
    ema_j = ema_j + (((p << F) - ema_j) >>> k_j)     (afterwards; >>> is arithmetic)
    pv    = pv + p * s                               (128-bit, signed product)
    vol   = vol + s

Per quote: bid/ask prices and sizes replace the stored ones.  Every output
carries the quote features of the symbol's latest quote::

    mid_x2 = bid + ask, spread = ask - bid,
    imb_num = bid_size - ask_size, imb_den = bid_size + ask_size

Records with a kind other than TRADE/QUOTE or a symbol >= ``n_symbols`` leave
the state untouched; their output has only ts_ns, symbol, kind, seq and a
``FLAG_BAD_*`` bit.

:func:`process` runs a whole numpy array through one numba call; it is the
cocotb scoreboard and the engine's emulation of the overlay.
"""

from __future__ import annotations

import numba
import numpy as np

from tickpath.engine.wire import schema
from tickpath.kernels.fixedpoint import layout as L

# Per-symbol state: one row of N_STATE uint64 words.
S_FLAGS = 0
S_LAST_PRICE = 1
S_LAST_SIZE = 2
S_EMA0 = 3
S_EMA1 = 4
S_PV_LO = 5
S_PV_HI = 6
S_VOL = 7
S_BID_PRICE = 8
S_BID_SIZE = 9
S_ASK_PRICE = 10
S_ASK_SIZE = 11
N_STATE = 12

# Counters: records accepted, rejected for the symbol, rejected for the kind.
C_IN = 0
C_REJECT_SYMBOL = 1
C_REJECT_KIND = 2
N_COUNTERS = 3

# Input words (uint64 view of TRADE, QUOTE or IN_SLOT rows).
_I_TS = L.word_index(L.IN_SLOT, "ts_ns")
_I_SYM = L.word_index(L.IN_SLOT, "symbol")
_I_A = L.word_index(L.IN_SLOT, "price")
_I_B = L.word_index(L.IN_SLOT, "size")
_I_C = L.word_index(L.IN_SLOT, "ask_price")
_I_D = L.word_index(L.IN_SLOT, "ask_size")
_I_KIND = L.word_index(L.IN_SLOT, "kind")
_KIND_SHIFT = (L.IN_SLOT.fields["kind"][1] % 8) * 8
assert L.IN_SLOT.fields["bid_price"][1] == L.IN_SLOT.fields["price"][1]
assert L.IN_SLOT.fields["bid_size"][1] == L.IN_SLOT.fields["size"][1]
for _rec in (schema.TRADE, schema.QUOTE):
    for _name in ("ts_ns", "symbol"):
        assert _rec.fields[_name][1] == L.IN_SLOT.fields[_name][1]

# Output words (uint64 view of FEATURE rows).
_O_TS = L.word_index(L.FEATURE, "ts_ns")
_O_SYM = L.word_index(L.FEATURE, "symbol")
_O_KIND_SHIFT = (L.FEATURE.fields["kind"][1] - 8 * _O_SYM) * 8
_O_FLAGS_SHIFT = (L.FEATURE.fields["flags"][1] - 8 * _O_SYM) * 8
_O_SEQ = L.word_index(L.FEATURE, "seq")
_O_LAST_PRICE = L.word_index(L.FEATURE, "last_price")
_O_LAST_SIZE = L.word_index(L.FEATURE, "last_size")
_O_EMA0 = L.word_index(L.FEATURE, "ema0")
_O_EMA1 = L.word_index(L.FEATURE, "ema1")
_O_PV_LO = L.word_index(L.FEATURE, "pv_lo")
_O_PV_HI = L.word_index(L.FEATURE, "pv_hi")
_O_VOL = L.word_index(L.FEATURE, "volume")
_O_BID = L.word_index(L.FEATURE, "bid_price")
_O_ASK = L.word_index(L.FEATURE, "ask_price")
_O_MID = L.word_index(L.FEATURE, "mid_x2")
_O_SPREAD = L.word_index(L.FEATURE, "spread")
_O_IMB_NUM = L.word_index(L.FEATURE, "imb_num")
_O_IMB_DEN = L.word_index(L.FEATURE, "imb_den")
assert L.FEATURE.itemsize == 8 * 16

_U32_MASK = np.uint64(0xFFFFFFFF)
_U8_MASK = np.uint64(0xFF)
_ZERO = np.uint64(0)
_ONE = np.uint64(1)
_SHIFT32 = np.uint64(32)
_FRAC = np.uint64(L.EMA_FRAC_BITS)
_KIND_TRADE = np.uint64(schema.KIND_TRADE)
_KIND_QUOTE = np.uint64(schema.KIND_QUOTE)
_F_HAS_TRADE = np.uint64(L.FLAG_HAS_TRADE)
_F_HAS_QUOTE = np.uint64(L.FLAG_HAS_QUOTE)
_F_BAD_SYMBOL = np.uint64(L.FLAG_BAD_SYMBOL)
_F_BAD_KIND = np.uint64(L.FLAG_BAD_KIND)


@numba.njit(cache=True, nogil=True)
def mul_64x64_128(a: np.uint64, b: np.uint64) -> tuple[np.uint64, np.uint64]:
    """Signed 64 x 64 -> 128-bit product of two words; returns (low, high) words."""
    a0 = a & _U32_MASK
    a1 = a >> _SHIFT32
    b0 = b & _U32_MASK
    b1 = b >> _SHIFT32
    p00 = a0 * b0
    p01 = a0 * b1
    p10 = a1 * b0
    p11 = a1 * b1
    mid = (p00 >> _SHIFT32) + (p01 & _U32_MASK) + (p10 & _U32_MASK)
    lo = (p00 & _U32_MASK) | (mid << _SHIFT32)
    hi = p11 + (p01 >> _SHIFT32) + (p10 >> _SHIFT32) + (mid >> _SHIFT32)
    # Unsigned product -> signed: subtract b << 64 if a < 0, a << 64 if b < 0.
    if np.int64(a) < 0:
        hi = hi - b
    if np.int64(b) < 0:
        hi = hi - a
    return lo, hi


@numba.njit(cache=True, nogil=True)
def ema_step(ema: np.uint64, price: np.uint64, k: int) -> np.uint64:
    """One EMA update ``ema + (((price << F) - ema) >>> k)`` on 64-bit words."""
    diff = (price << _FRAC) - ema
    return ema + np.uint64(np.int64(diff) >> np.int64(k))


@numba.njit(cache=True, nogil=True)
def _process_words(words, kind_const, n_symbols, k0, k1, state, counters, out):  # noqa: ANN001
    n = words.shape[0]
    n_sym = np.uint64(n_symbols)
    for i in range(n):
        if kind_const != 0:
            kind = np.uint64(kind_const)
        else:
            kind = (words[i, _I_KIND] >> np.uint64(_KIND_SHIFT)) & _U8_MASK
        symbol = words[i, _I_SYM] & _U32_MASK
        seq = counters[C_IN]
        counters[C_IN] = seq + _ONE
        o = out[i]
        o[_O_TS] = words[i, _I_TS]
        o[_O_SEQ] = seq
        flags = _ZERO
        if kind != _KIND_TRADE and kind != _KIND_QUOTE:
            counters[C_REJECT_KIND] += _ONE
            flags = _F_BAD_KIND
        elif symbol >= n_sym:
            counters[C_REJECT_SYMBOL] += _ONE
            flags = _F_BAD_SYMBOL
        if flags != _ZERO:
            o[_O_SYM] = (
                symbol | (kind << np.uint64(_O_KIND_SHIFT)) | (flags << np.uint64(_O_FLAGS_SHIFT))
            )
            for w in range(_O_LAST_PRICE, out.shape[1]):
                o[w] = _ZERO
            continue
        st = state[symbol]
        a = words[i, _I_A]
        b = words[i, _I_B]
        if kind == _KIND_TRADE:
            if st[S_FLAGS] & _F_HAS_TRADE:
                st[S_EMA0] = ema_step(st[S_EMA0], a, k0)
                st[S_EMA1] = ema_step(st[S_EMA1], a, k1)
            else:
                st[S_EMA0] = a << _FRAC
                st[S_EMA1] = a << _FRAC
            st[S_LAST_PRICE] = a
            st[S_LAST_SIZE] = b
            plo, phi = mul_64x64_128(a, b)
            lo = st[S_PV_LO] + plo
            carry = _ONE if lo < plo else _ZERO
            st[S_PV_HI] = st[S_PV_HI] + phi + carry
            st[S_PV_LO] = lo
            st[S_VOL] = st[S_VOL] + b
            st[S_FLAGS] = st[S_FLAGS] | _F_HAS_TRADE
        else:
            st[S_BID_PRICE] = a
            st[S_BID_SIZE] = b
            st[S_ASK_PRICE] = words[i, _I_C]
            st[S_ASK_SIZE] = words[i, _I_D]
            st[S_FLAGS] = st[S_FLAGS] | _F_HAS_QUOTE
        o[_O_SYM] = (
            symbol | (kind << np.uint64(_O_KIND_SHIFT)) | (st[S_FLAGS] << np.uint64(_O_FLAGS_SHIFT))
        )
        o[_O_LAST_PRICE] = st[S_LAST_PRICE]
        o[_O_LAST_SIZE] = st[S_LAST_SIZE]
        o[_O_EMA0] = st[S_EMA0]
        o[_O_EMA1] = st[S_EMA1]
        o[_O_PV_LO] = st[S_PV_LO]
        o[_O_PV_HI] = st[S_PV_HI]
        o[_O_VOL] = st[S_VOL]
        o[_O_BID] = st[S_BID_PRICE]
        o[_O_ASK] = st[S_ASK_PRICE]
        o[_O_MID] = st[S_BID_PRICE] + st[S_ASK_PRICE]
        o[_O_SPREAD] = st[S_ASK_PRICE] - st[S_BID_PRICE]
        o[_O_IMB_NUM] = st[S_BID_SIZE] - st[S_ASK_SIZE]
        o[_O_IMB_DEN] = st[S_BID_SIZE] + st[S_ASK_SIZE]


class FeatureState:
    """Per-symbol state, counters and configuration of one tick-features core.

    Mirrors what the core holds: ``n_symbols`` (the RTL's ``N_SYMBOLS``) rows of
    symbol state, the counters, and the two EMA shifts ``k`` (registers K0, K1).
    """

    def __init__(self, n_symbols: int = 4096, k: tuple[int, int] = L.K_RESET) -> None:
        if not 1 <= n_symbols <= 1 << 24:
            raise ValueError(f"n_symbols must be in 1..2**24, got {n_symbols}")
        self.n_symbols = n_symbols
        self.set_k(*k)
        self.words = np.zeros((n_symbols, N_STATE), dtype=np.uint64)
        self.counters = np.zeros(N_COUNTERS, dtype=np.uint64)

    def set_k(self, k0: int, k1: int) -> None:
        """Set the EMA shifts (alpha = 2**-k), as writing registers K0 and K1 does."""
        for k in (k0, k1):
            if not 0 <= k <= L.K_MAX:
                raise ValueError(f"k must be in 0..{L.K_MAX}, got {k}")
        self.k = (int(k0), int(k1))

    def reset(self) -> None:
        """Clear all symbol state and counters (the core's soft reset); k is kept."""
        self.words[:] = 0
        self.counters[:] = 0

    @property
    def records_in(self) -> int:
        """Records processed since the last reset, rejects included."""
        return int(self.counters[C_IN])

    @property
    def rejected_symbol(self) -> int:
        """Records rejected for a symbol >= n_symbols."""
        return int(self.counters[C_REJECT_SYMBOL])

    @property
    def rejected_kind(self) -> int:
        """Records rejected for a kind other than TRADE or QUOTE."""
        return int(self.counters[C_REJECT_KIND])


def to_slots(records: np.ndarray) -> np.ndarray:
    """Pack a TRADE or QUOTE array (or pass an IN_SLOT array) into input slots."""
    if records.dtype == L.IN_SLOT:
        return records
    kind = _kind_of(records.dtype)
    n = records.shape[0]
    slots = np.zeros(n, dtype=L.IN_SLOT)
    raw = np.ascontiguousarray(records).view(np.uint8).reshape(n, records.dtype.itemsize)
    slots.view(np.uint8).reshape(n, L.SLOT_SIZE)[:, : records.dtype.itemsize] = raw
    slots["kind"] = kind
    return slots


def _kind_of(dtype: np.dtype) -> int:
    if dtype == schema.TRADE:
        return schema.KIND_TRADE
    if dtype == schema.QUOTE:
        return schema.KIND_QUOTE
    raise TypeError(f"expected a TRADE, QUOTE or IN_SLOT array, got dtype {dtype}")


def process(records: np.ndarray, state: FeatureState, out: np.ndarray | None = None) -> np.ndarray:
    """Run records through the core model; return one FEATURE record per input.

    ``records`` is a 1-D array of ``schema.TRADE``, ``schema.QUOTE`` or (mixed
    kinds) ``layout.IN_SLOT``.  ``state`` is updated in place.  ``out``, if
    given, is a FEATURE array of the same length to write into.
    """
    if records.ndim != 1:
        raise ValueError("records must be a 1-D array")
    if records.dtype != L.IN_SLOT and records.dtype.names == L.IN_SLOT.names:
        # numpy's structured-dtype promotion (np.concatenate, ...) repacks the
        # overlaid fields; restore the slot layout by field.
        records = records.astype(L.IN_SLOT)
    kind_const = 0 if records.dtype == L.IN_SLOT else _kind_of(records.dtype)
    n = records.shape[0]
    if out is None:
        out = np.empty(n, dtype=L.FEATURE)
    elif out.dtype != L.FEATURE or out.shape != (n,):
        raise ValueError(f"out must be a FEATURE array of shape ({n},)")
    if n == 0:
        return out
    recs = np.ascontiguousarray(records)
    words = recs.view(np.uint64).reshape(n, records.dtype.itemsize // 8)
    out_words = out.view(np.uint64).reshape(n, L.FEATURE_SIZE // 8)
    k0, k1 = state.k
    _process_words(
        words, kind_const, state.n_symbols, k0, k1, state.words, state.counters, out_words
    )
    return out


def vwap(features: np.ndarray) -> np.ndarray:
    """VWAP in ticks from the 128-bit ``pv`` and the ``volume`` of FEATURE records.

    Within a few float64 ulps (the 128-bit sum is rounded once to float64 before
    the division); NaN where volume is 0.
    """
    pv = features["pv_hi"].astype(np.float64) * 2.0**64 + features["pv_lo"].astype(np.float64)
    vol = features["volume"].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(vol != 0, pv / vol, np.nan)
