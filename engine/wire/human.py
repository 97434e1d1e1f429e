"""Human forms of result frames: plain dicts for ``watch --json`` and one-line summaries."""

from __future__ import annotations

import math

import numpy as np

from tickpath.engine.wire import schema as s


def record_to_dict(record: np.void) -> dict:
    """All fields of a record except padding, as plain Python values (NaN becomes None)."""
    out = {}
    for name in record.dtype.names:
        if name.startswith("_"):
            continue
        value = record[name]
        if isinstance(value, np.ndarray):
            value = [None if isinstance(v, float) and math.isnan(v) else v for v in value.tolist()]
        else:
            value = value.item()
            if isinstance(value, float) and math.isnan(value):
                value = None
        out[name] = value
    return out


def result_to_dict(topic: str, header: np.void, record: np.void) -> dict:
    """The JSON object ``watch --json`` prints for one result frame."""
    analytic = s.ANALYTIC_OF_KIND.get(int(header["kind"]), str(int(header["kind"])))
    out = {"topic": topic, "analytic": analytic, "seq": int(header["seq"])}
    out.update(record_to_dict(record))
    return out


def _px(ticks: int) -> str:
    return f"{ticks / s.PRICE_SCALE:.4f}" if ticks else "-"


def summarize(topic: str, header: np.void, r: np.void) -> str:
    """A one-line human summary of a result frame."""
    kind = int(header["kind"])
    if kind == s.KIND_RESULT_QUOTE:
        return (
            f"{topic:<12} bid {_px(r['bid_price'])} x {r['bid_size'] / s.SIZE_SCALE:g}  "
            f"ask {_px(r['ask_price'])} x {r['ask_size'] / s.SIZE_SCALE:g}  mid {r['mid']:.4f}  "
            f"spread {r['spread']:.4f}  micro {r['microprice']:.4f}  imb {r['imbalance']:+.3f}"
        )
    if kind == s.KIND_RESULT_TRADE:
        emas = " ".join(f"{v:.4f}" for v in r["ema"] if not math.isnan(v))
        return (
            f"{topic:<12} last {_px(r['price'])} x {r['size'] / s.SIZE_SCALE:g}  ema [{emas}]  "
            f"vwap {r['vwap_session']:.4f}/{r['vwap_window']:.4f}  "
            f"rv {r['realized_vol']:.2e}  tfi {r['trade_flow_imbalance']:+.3f}"
        )
    if kind == s.KIND_RESULT_BAR:
        return (
            f"{topic:<12} bar@{r['bar_start_ns']} o {_px(r['open'])} h {_px(r['high'])} "
            f"l {_px(r['low'])} c {_px(r['close'])} v {r['volume'] / s.SIZE_SCALE:g} "
            f"n {r['n_trades']}"
        )
    if kind == s.KIND_RESULT_BOOK:
        bids = " ".join(_px(p) for p in r["bid_price"] if p)
        asks = " ".join(_px(p) for p in r["ask_price"] if p)
        return (
            f"{topic:<12} bids [{bids}] asks [{asks}] levels {r['bid_levels']}/{r['ask_levels']} "
            f"depth imb {r['depth_imbalance']:+.3f}"
        )
    if kind == s.KIND_RESULT_FPGA:
        ema_scale = 65536 * s.PRICE_SCALE  # ticks x 2^16
        return (
            f"{topic:<12} fpga last {_px(r['last_price'])} ema0 {r['ema0'] / ema_scale:.4f} "
            f"ema1 {r['ema1'] / ema_scale:.4f} bid {_px(r['bid_price'])} "
            f"ask {_px(r['ask_price'])} imb {r['imb_num']}/{r['imb_den']} flags {r['flags']}"
        )
    if kind == getattr(s, "KIND_RESULT_CHAIN", -1):
        kind_name = "C" if r["is_call"] else "P"
        return (
            f"{topic:<12} #{r['index']} {kind_name} K {r['strike']:.2f} T {r['expiry']:.3f} "
            f"S {r['underlying']:.4f} px {r['price']:.4f} delta {r['delta']:+.3f} "
            f"gamma {r['gamma']:.4f} vega {r['vega']:.3f} iv {r['implied_vol']:.4f}"
        )
    if kind == getattr(s, "KIND_RESULT_CORR", -1):
        return (
            f"{topic:<12} {r['symbol']}~{r['symbol_b']} corr {r['correlation']:+.4f} "
            f"cov {r['covariance']:.3e} n {r['n_rows']}"
        )
    return f"{topic:<12} kind {kind}"
