"""The numba golden model against a plain-Python statement of the same integer
arithmetic, and against float64 analytics (with the tolerance docs/fpga.md states)."""

from __future__ import annotations

import numpy as np
import pytest

from tickpath.engine.wire import schema
from tickpath.kernels.fixedpoint import layout as L
from tickpath.kernels.fixedpoint.float_reference import float_features
from tickpath.kernels.fixedpoint.tick_features import (
    FeatureState,
    mul_64x64_128,
    process,
    to_slots,
    vwap,
)

M64 = (1 << 64) - 1
M128 = (1 << 128) - 1


def signed64(x: int) -> int:
    x &= M64
    return x - (1 << 64) if x >> 63 else x


def python_model(slots: np.ndarray, n_symbols: int, k: tuple[int, int]) -> list[dict]:
    """Plain-Python, arbitrary-precision ints masked to the RTL's widths."""
    F = L.EMA_FRAC_BITS
    st: dict[int, dict] = {}
    out = []
    for seq, rec in enumerate(slots):
        sym, kind = int(rec["symbol"]), int(rec["kind"])
        row = dict(ts_ns=int(rec["ts_ns"]), symbol=sym, kind=kind, seq=seq)
        if kind not in (schema.KIND_TRADE, schema.KIND_QUOTE):
            out.append(row | {"flags": L.FLAG_BAD_KIND})
            continue
        if sym >= n_symbols:
            out.append(row | {"flags": L.FLAG_BAD_SYMBOL})
            continue
        s = st.setdefault(
            sym,
            dict.fromkeys(("lp", "ls", "e0", "e1", "pv", "vol", "bp", "bs", "ap", "as"), 0)
            | {"flags": 0},
        )
        if kind == schema.KIND_TRADE:
            p, q = int(rec["price"]), int(rec["size"])
            x = (p << F) & M64
            for key, kk in (("e0", k[0]), ("e1", k[1])):
                if s["flags"] & L.FLAG_HAS_TRADE:
                    s[key] = (s[key] + (signed64(x - s[key]) >> kk)) & M64
                else:
                    s[key] = x
            s["lp"], s["ls"] = p, q
            s["pv"] = (s["pv"] + p * q) & M128
            s["vol"] = signed64(s["vol"] + q)
            s["flags"] |= L.FLAG_HAS_TRADE
        else:
            s["bp"], s["bs"] = int(rec["bid_price"]), int(rec["bid_size"])
            s["ap"], s["as"] = int(rec["ask_price"]), int(rec["ask_size"])
            s["flags"] |= L.FLAG_HAS_QUOTE
        out.append(
            row
            | dict(
                flags=s["flags"],
                last_price=s["lp"],
                last_size=s["ls"],
                ema0=signed64(s["e0"]),
                ema1=signed64(s["e1"]),
                pv_lo=s["pv"] & M64,
                pv_hi=signed64(s["pv"] >> 64),
                volume=s["vol"],
                bid_price=s["bp"],
                ask_price=s["ap"],
                mid_x2=signed64(s["bp"] + s["ap"]),
                spread=signed64(s["ap"] - s["bp"]),
                imb_num=signed64(s["bs"] - s["as"]),
                imb_den=signed64(s["bs"] + s["as"]),
            )
        )
    return out


def random_slots(rng: np.random.Generator, n: int, n_symbols: int, wild: float) -> np.ndarray:
    slots = np.zeros(n, dtype=L.IN_SLOT)
    slots["ts_ns"] = np.arange(n) * 1000
    slots["symbol"] = rng.integers(0, n_symbols + 2, n)
    slots["kind"] = rng.choice([1, 2, 1, 2, 1, 2, 3], n)
    words = slots.view(np.uint64).reshape(n, 8)
    words[:, 2] = rng.integers(1, 10**7, n)
    words[:, 3] = rng.integers(1, 10**12, n)
    words[:, 4] = words[:, 2] + rng.integers(1, 100, n).astype(np.uint64)
    words[:, 5] = rng.integers(0, 10**12, n)
    is_wild = rng.random(n) < wild
    for w in (2, 3, 4, 5):
        words[is_wild, w] = rng.integers(0, 2**64, int(is_wild.sum()), dtype=np.uint64)
    return slots


def test_mul_64x64_128_matches_python_ints():
    rng = np.random.default_rng(0)
    edge = [0, 1, 2**63 - 1, 2**63, 2**64 - 1, 2**32, 2**32 - 1]
    values = edge + rng.integers(0, 2**64, 300, dtype=np.uint64).tolist()
    for a in values:
        for b in values[:40]:
            lo, hi = mul_64x64_128(np.uint64(a), np.uint64(b))
            want = (signed64(a) * signed64(b)) & M128
            assert (int(hi) << 64 | int(lo)) == want, (a, b)


@pytest.mark.parametrize("k", [(0, 1), (4, 8), (13, 31)])
def test_golden_matches_python_model(k):
    rng = np.random.default_rng(sum(k))
    slots = random_slots(rng, 3000, 8, wild=0.05)
    state = FeatureState(8, k)
    got = process(slots, state)
    want = python_model(slots, 8, k)
    for i, row in enumerate(want):
        for name in L.FEATURE.names:
            if name == "_pad":
                continue
            assert int(got[i][name]) == row.get(name, 0), (i, name, got[i], row)
    bad_kind = int((slots["kind"] == 3).sum())
    bad_sym = int(((slots["kind"] != 3) & (slots["symbol"] >= 8)).sum())
    assert (state.records_in, state.rejected_kind, state.rejected_symbol) == (
        3000,
        bad_kind,
        bad_sym,
    )


def test_trade_and_quote_arrays_equal_the_slot_path():
    rng = np.random.default_rng(5)
    trades = np.zeros(500, dtype=schema.TRADE)
    trades["symbol"] = rng.integers(0, 4, 500)
    trades["price"] = rng.integers(1, 10**6, 500)
    trades["size"] = rng.integers(1, 10**9, 500)
    quotes = np.zeros(300, dtype=schema.QUOTE)
    quotes["symbol"] = rng.integers(0, 4, 300)
    quotes["bid_price"] = rng.integers(1, 10**6, 300)
    quotes["ask_price"] = quotes["bid_price"] + 3
    quotes["bid_size"] = rng.integers(0, 10**9, 300)
    quotes["ask_size"] = rng.integers(0, 10**9, 300)
    a = FeatureState(4)
    by_kind = np.concatenate([process(trades, a), process(quotes, a)])
    b = FeatureState(4)
    by_slot = process(np.concatenate([to_slots(trades), to_slots(quotes)]), b)
    assert by_kind.tobytes() == by_slot.tobytes()
    assert np.array_equal(a.words, b.words)
    # A strided (non-contiguous) input gives the same answer.
    c = FeatureState(4)
    assert (
        process(trades[::2], c).tobytes() == process(trades[::2].copy(), FeatureState(4)).tobytes()
    )


def test_state_carries_across_calls_and_reset_clears_it():
    rng = np.random.default_rng(9)
    slots = random_slots(rng, 1000, 4, wild=0.0)
    whole = process(slots, FeatureState(4))
    st = FeatureState(4)
    parts = np.concatenate([process(slots[:333], st), process(slots[333:], st)])
    assert parts.tobytes() == whole.tobytes()
    st.reset()
    assert st.records_in == 0 and not st.words.any()
    assert process(slots, st).tobytes() == whole.tobytes()


def test_config_is_validated():
    with pytest.raises(ValueError):
        FeatureState(0)
    with pytest.raises(ValueError):
        FeatureState(16, (4, 32))
    with pytest.raises(TypeError):
        process(np.zeros(3, dtype=schema.ORDER), FeatureState(4))
    with pytest.raises(ValueError):
        process(np.zeros(3, dtype=L.IN_SLOT), FeatureState(4), out=np.zeros(2, dtype=L.FEATURE))


@pytest.mark.parametrize("k", [(2, 6), (4, 10), (8, 14)])
def test_fixed_point_against_float_analytics(k):
    """EMA within 2**(k - EMA_FRAC_BITS) ticks (and not above the exact value);
    VWAP within 1e-12 relative; mid, spread, imbalance to float rounding."""
    rng = np.random.default_rng(k[0])
    n, n_sym = 20_000, 8
    slots = random_slots(rng, n, n_sym - 2, wild=0.0)  # all symbols in range
    slots["kind"] = rng.choice([schema.KIND_TRADE, schema.KIND_QUOTE], n)
    # A random walk around 1,000.0000 (10^7 ticks) so EMAs have work to do.
    words = slots.view(np.uint64).reshape(n, 8)
    walk = (10**7 + np.cumsum(rng.integers(-50, 51, n))).astype(np.uint64)
    trade = slots["kind"] == schema.KIND_TRADE
    words[trade, 2] = walk[trade]
    words[~trade, 2] = walk[~trade] - 5
    words[~trade, 4] = walk[~trade] + 5
    fx = process(slots, FeatureState(n_sym, k))
    fl = float_features(slots, n_sym, k)
    scale = float(1 << L.EMA_FRAC_BITS)
    for j, kk in enumerate(k):
        has = (fx["flags"] & L.FLAG_HAS_TRADE) != 0
        err = fx[f"ema{j}"][has] / scale - fl[f"ema{j}"][has]
        bound = 2.0 ** (kk - L.EMA_FRAC_BITS)
        float_slack = 1e-6  # ticks: float64 EMA rounding (~1e-9 here), far below the bound
        assert err.max() <= float_slack, "fixed-point EMA floors: never above the exact EMA"
        assert err.min() >= -bound - float_slack, (kk, err.min(), bound)
        assert err.min() < 0, "the two are expected to differ by the flooring"
    has_t = (fx["flags"] & L.FLAG_HAS_TRADE) != 0
    np.testing.assert_allclose(vwap(fx)[has_t], fl["vwap"][has_t], rtol=1e-12)
    has_q = (fx["flags"] & L.FLAG_HAS_QUOTE) != 0
    np.testing.assert_array_equal(fx["mid_x2"][has_q] / 2.0, fl["mid"][has_q])
    np.testing.assert_array_equal(fx["spread"][has_q].astype(float), fl["spread"][has_q])
    imb = fx["imb_num"][has_q] / fx["imb_den"][has_q]
    np.testing.assert_allclose(imb, fl["imbalance"][has_q], rtol=1e-15)
