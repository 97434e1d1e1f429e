"""Fixed-point golden model of the FPGA tick-features core (bit-exact with the RTL).

Public API::

    state = FeatureState(n_symbols=4096, k=(4, 8))
    features = process(records, state)   # TRADE, QUOTE or IN_SLOT array -> FEATURE array

``layout`` holds the stream record dtypes, flags and the register map that the
RTL header, the PYNQ driver and docs/fpga.md are generated from or checked
against; ``float_reference`` is the float64 meaning of the same features.
"""

from tickpath.kernels.fixedpoint.layout import (
    EMA_FRAC_BITS,
    FEATURE,
    FLAG_BAD_KIND,
    FLAG_BAD_SYMBOL,
    FLAG_HAS_QUOTE,
    FLAG_HAS_TRADE,
    IN_SLOT,
)
from tickpath.kernels.fixedpoint.tick_features import FeatureState, process, to_slots, vwap

__all__ = [
    "EMA_FRAC_BITS",
    "FEATURE",
    "FLAG_BAD_KIND",
    "FLAG_BAD_SYMBOL",
    "FLAG_HAS_QUOTE",
    "FLAG_HAS_TRADE",
    "IN_SLOT",
    "FeatureState",
    "process",
    "to_slots",
    "vwap",
]
