"""Emulation of the tick-features overlay on the CPU, backed by the golden model.

:class:`EmulatedOverlay` has the batch interface of
:class:`~tickpath.engine.backends.fpga.driver.FpgaOverlay` and returns bit-for-bit what
the core returns (the RTL testbench checks the core against the same model),
so the engine runs the same code path with or without a board. It accepts the EMA
shifts a bitstream accepts (``k_sets``: the default build's :data:`layout.K_SETS`) and
refuses any other k in the driver's one-line words, as the board would.
"""

from __future__ import annotations

import numpy as np

from tickpath.engine.backends.fpga.driver import unsupported_k_message
from tickpath.kernels.fixedpoint import layout as L
from tickpath.kernels.fixedpoint.tick_features import FeatureState, process


class EmulatedOverlay:
    """The overlay's ``process`` / ``process_one`` / ``reset`` / ``counters`` on the CPU."""

    def __init__(
        self,
        n_symbols: int = 4096,
        k: tuple[int, int] = L.K_RESET,
        k_sets: tuple[tuple[int, ...], tuple[int, ...]] = L.K_SETS,
    ) -> None:
        self.k_supported = (tuple(k_sets[0]), tuple(k_sets[1]))
        self._check_k(*k)
        self.state = FeatureState(n_symbols, k)
        self._records_out = 0

    @property
    def n_symbols(self) -> int:
        """Symbol ids accepted: 0 .. n_symbols - 1."""
        return self.state.n_symbols

    @property
    def k(self) -> tuple[int, int]:
        """The EMA shifts in force."""
        return self.state.k

    def set_k(self, k0: int, k1: int) -> None:
        """Set the EMA shifts (alpha = 2**-k) for the records that follow; a k outside
        :attr:`k_supported` raises ValueError (one line) and changes nothing."""
        self._check_k(k0, k1)
        self.state.set_k(k0, k1)

    def _check_k(self, k0: int, k1: int) -> None:
        for j, (k, supported) in enumerate(zip((k0, k1), self.k_supported, strict=True)):
            if k not in supported:
                raise ValueError(unsupported_k_message(j, k, supported))

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
