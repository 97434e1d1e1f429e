"""The FPGA backend of the micro path: tick features from the overlay, published as ``fpga.<sym>``.

With ``tickpath serve --fpga-overlay PATH`` (a board) or ``--fpga-emulate``
(the bit-exact golden model on the CPU), every accepted TRADE and QUOTE frame
also streams its valid records through the tick-features core, and the core's
fixed-point features are published like the CPU analytics: one
``RESULT_FPGA`` frame per symbol touched by the input frame, under the topic
``fpga.<symbol>``, reflecting the symbol's last record in the frame.  The CPU
kernels keep computing everything the core does not (book, bars, volatility,
the float features).  Records the CPU rejects are not sent to the core, so
the two paths see the same ticks.
"""

from __future__ import annotations

import logging
import time

import numba
import numpy as np

from tickpath.engine.wire import schema as s
from tickpath.kernels.cpu import streaming as k
from tickpath.kernels.cpu.cache import stamp_dependencies

log = logging.getLogger("tickpath.fpga")

FRAME_FPGA = np.dtype(s.HEADER.descr + s.RESULT_FPGA.descr)
_FEATURE_FIELDS = [
    ("core_kind", "kind"), ("flags", "flags"), ("core_seq", "seq"), ("last_price", "last_price"),
    ("last_size", "last_size"), ("ema0", "ema0"), ("ema1", "ema1"), ("pv_lo", "pv_lo"),
    ("pv_hi", "pv_hi"), ("volume", "volume"), ("bid_price", "bid_price"),
    ("ask_price", "ask_price"), ("mid_x2", "mid_x2"), ("spread", "spread"),
    ("imb_num", "imb_num"), ("imb_den", "imb_den"),
]  # fmt: skip


@numba.njit(cache=True, nogil=True)
def select_valid_trades(trades, n, n_symbols, ts_max, out_index):  # noqa: ANN001, ANN201 (numba)
    """Indices of the records the CPU kernel accepts (its own rule); returns how many."""
    m = 0
    for i in range(n):
        if k.trade_reject_reason(trades[i], n_symbols, ts_max) < 0:
            out_index[m] = i
            m += 1
    return m


@numba.njit(cache=True, nogil=True)
def select_valid_quotes(quotes, n, n_symbols, ts_max, out_index):  # noqa: ANN001, ANN201 (numba)
    """Indices of the records the CPU kernel accepts (its own rule); returns how many."""
    m = 0
    for i in range(n):
        if k.quote_reject_reason(quotes[i], n_symbols, ts_max) < 0:
            out_index[m] = i
            m += 1
    return m


class FpgaMicroPath:
    """Engine extension streaming accepted trade/quote frames through the overlay."""

    name = "fpga"

    def __init__(self, overlay: object, description: str) -> None:
        self.overlay = overlay
        self.description = description
        self.records = 0
        self.results = 0
        self.frames = 0
        self._index: np.ndarray | None = None
        self._out_seq: np.ndarray | None = None
        self._frames: np.ndarray | None = None

    def on_start(self, engine: object) -> None:
        """Allocate the per-frame buffers; compile the selectors before any tick."""
        proc = engine.processor
        n_symbols = proc.state.params.n_symbols
        if n_symbols > self.overlay.n_symbols:
            raise ValueError(
                f"the FPGA core holds {self.overlay.n_symbols} symbols, the engine {n_symbols}"
            )
        self._index = np.zeros(proc.state.params.max_records, np.int64)
        self._out_seq = np.zeros(n_symbols, np.uint64)
        self._frames = np.zeros(n_symbols, FRAME_FPGA)
        select_valid_trades(proc.trades, 0, n_symbols, 0, self._index)
        select_valid_quotes(proc.quotes, 0, n_symbols, 0, self._index)
        log.info(
            "routing: micro path tick features (ema, vwap sums, bbo, mid, spread, L1 "
            "imbalance) -> fpga (%s); all other analytics -> cpu",
            self.description,
        )

    def on_results(self, engine: object, n_results: int) -> None:
        """Run the frame just processed through the core and publish its features."""
        proc = engine.processor
        kind = proc.kind
        if kind == s.KIND_TRADE:
            select, out = select_valid_trades, proc.state.out_trade
        elif kind == s.KIND_QUOTE:
            select, out = select_valid_quotes, proc.state.out_quote
        else:
            return
        records = proc.records(kind)  # after a 32- or 40-byte header
        header = proc.header[0]
        count = int(header["count"])
        ts_max = k.record_ts_limit(proc.state.limits, int(out[0]["recv_ns"]))
        m = select(records, count, proc.state.params.n_symbols, ts_max, self._index)
        if m == 0:
            return
        index = self._index[:m]
        features = self.overlay.process(records[index])
        done_ns = time.time_ns()
        # the last feature of each symbol in the frame (conflation, as on the CPU)
        symbols_rev = features["symbol"][::-1]
        symbols, first_rev = np.unique(symbols_rev, return_index=True)
        last = m - 1 - first_rev
        frames = self._frames[: len(symbols)]
        f = features[last]
        frames["magic"] = s.MAGIC
        frames["version"] = s.VERSION
        frames["kind"] = s.KIND_RESULT_FPGA
        frames["stream_id"] = symbols
        frames["count"] = 1
        frames["seq"] = self._out_seq[symbols]
        self._out_seq[symbols] += 1
        frames["send_ns"] = done_ns
        frames["ts_ns"] = f["ts_ns"]
        frames["in_seq"] = int(header["seq"]) + index[last]
        frames["in_send_ns"] = int(header["send_ns"])
        frames["recv_ns"] = int(out[0]["recv_ns"])
        frames["done_ns"] = done_ns
        frames["in_stream"] = int(header["stream_id"])
        frames["symbol"] = symbols
        for mine, theirs in _FEATURE_FIELDS:
            frames[mine] = f[theirs]
        engine.publisher.publish_frames("fpga", frames, symbols.tolist())
        self.frames += 1
        self.records += m
        self.results += len(symbols)

    def stats(self) -> dict:
        """Records and frames through the core, results published, the core's counters."""
        return {
            "backend": self.description,
            "frames": self.frames,
            "records": self.records,
            "results": self.results,
            "core": self.overlay.counters(),
        }

    def close(self) -> None:
        """Release the overlay."""
        self.overlay.close()


def fpga_extension(overlay_path: str | None, emulate: bool, n_symbols: int) -> FpgaMicroPath:
    """Open the overlay at ``overlay_path`` (or the emulation when ``emulate``)."""
    from tickpath.engine.backends.fpga import EmulatedOverlay, FpgaOverlay

    if overlay_path is not None:
        return FpgaMicroPath(FpgaOverlay(overlay_path), f"overlay {overlay_path}")
    if not emulate:
        raise ValueError("give an overlay path or ask for the emulation")
    return FpgaMicroPath(EmulatedOverlay(max(n_symbols, 1)), "golden-model emulation")


# the selectors inline the CPU kernels' record rules: recompile when those change
stamp_dependencies(globals(), [k, s])
