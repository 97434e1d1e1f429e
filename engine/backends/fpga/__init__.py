"""FPGA backend: the tick-features overlay through PYNQ, or its CPU emulation.

``FpgaOverlay(path)`` needs pynq and a board; ``EmulatedOverlay()`` runs the
bit-exact golden model anywhere.  Both have ``process(records) -> features``.
Importing this package never imports pynq.
"""

from __future__ import annotations

import logging

from tickpath.engine.backends.fpga.driver import (
    VLNV,
    FpgaOverlay,
    FpgaUnavailableError,
    TickFeaturesRegisters,
    driver_class,
)
from tickpath.engine.backends.fpga.emulated import EmulatedOverlay

__all__ = [
    "VLNV",
    "EmulatedOverlay",
    "FpgaOverlay",
    "FpgaUnavailableError",
    "TickFeaturesRegisters",
    "driver_class",
    "open_overlay",
]

_log = logging.getLogger(__name__)


def open_overlay(bitfile: str | None, n_symbols: int = 4096) -> FpgaOverlay | EmulatedOverlay:
    """``FpgaOverlay(bitfile)`` when it can be used, else an ``EmulatedOverlay``.

    The reason for falling back is logged as a warning; ``bitfile=None`` asks
    for the emulation directly.
    """
    if bitfile is not None:
        try:
            return FpgaOverlay(bitfile)
        except FpgaUnavailableError as exc:
            _log.warning("FPGA overlay unavailable (%s): using the CPU emulation", exc)
    return EmulatedOverlay(n_symbols)
