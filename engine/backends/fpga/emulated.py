"""Emulation of the tick-features overlay on the CPU, backed by the golden model.

:class:`EmulatedOverlay` has the batch interface of
:class:`~tickpath.engine.backends.fpga.driver.FpgaOverlay` and returns bit-for-bit what
the core returns (the RTL testbench checks the core against the same model),
so the engine runs the same code path with or without a board.
"""

from __future__ import annotations

import numpy as np

from tickpath.kernels.fixedpoint import layout as L
from tickpath.kernels.fixedpoint.tick_features import FeatureState, process


class EmulatedOverlay:
    """The overlay's ``process`` / ``process_one`` / ``reset`` / ``counters`` on the CPU."""

    def __init__(self, n_symbols: int = 4096, k: tuple[int, int] = L.K_RESET) -> None:
        self.state = FeatureState(n_symbols, k)
        self._records_out = 0

    @property
    def n_symbols(self) -> int:
        """Symbol ids accepted: 0 .. n_symbols - 1."""
        return self.state.n_symbols

    def set_k(self, k0: int, k1: int) -> None:
        """Set the EMA shifts (alpha = 2**-k) for the records that follow."""
        self.state.set_k(k0, k1)

    def process(self, records: np.ndarray) -> np.ndarray:
        """TRADE, QUOTE or IN_SLOT records -> one FEATURE record each, in order."""
        out = process(records, self.state)
        self._records_out += len(out)
        return out

    def process_one(self, record: np.ndarray | np.void) -> np.ndarray:
        """One record; a 1-element FEATURE array (the MMIO path's contract)."""
        return self.process(np.asarray(record).reshape(1))

    def reset(self) -> None:
        """Clear symbol state and counters, as the core's soft reset does."""
        self.state.reset()
        self._records_out = 0

    def counters(self) -> dict[str, int]:
        """The counters the core keeps, with the driver's names."""
        return {
            "records_in": self.state.records_in,
            "records_out": self._records_out,
            "rejected_symbol": self.state.rejected_symbol,
            "rejected_kind": self.state.rejected_kind,
        }

    def close(self) -> None:
        """Nothing to release; present for interface parity with FpgaOverlay."""
