"""PYNQ driver of the tick-features core (``fpga/tick_features``).

Three layers:

* :class:`TickFeaturesRegisters` speaks the core's AXI4-Lite register protocol
  (identity, enable, soft reset, k values, counters, the single-record MMIO
  path) over any object with ``read(offset) -> int`` and ``write(offset, value)``:
  a ``pynq.MMIO`` on a board, a simulation adapter in the RTL tests.
* :func:`driver_class` returns the ``pynq.DefaultIP`` subclass bound to the
  core's VLNV (created on first use, so that importing this module does not
  need pynq); ``Overlay`` then gives ``overlay.tick_features_0`` as one.
* :class:`FpgaOverlay` loads a bitstream with ``pynq.Overlay(path)`` and
  streams whole batches through the AXI DMA (``process``), or one record
  through MMIO (``process_one``).

Anything that keeps the overlay from being used (pynq missing, no device, a
bitstream without the core) raises :class:`FpgaUnavailableError` with a
one-line reason, so the engine can fall back to
:class:`~tickpath.engine.backends.fpga.emulated.EmulatedOverlay`.
"""

from __future__ import annotations

import operator
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tickpath.kernels.fixedpoint import layout as L
from tickpath.kernels.fixedpoint.tick_features import to_slots

VLNV = L.VLNV
DMA_VLNV_PREFIX = "xilinx.com:ip:axi_dma:"
# AXI DMA's buffer-length register is at most 26 bits wide: keep every
# transfer below 2**26 bytes (the 128-byte output side binds first).
MAX_RECORDS_PER_TRANSFER = ((1 << 26) - 1) // L.FEATURE_SIZE


class FpgaUnavailableError(RuntimeError):
    """The FPGA overlay cannot be used here; the message says why, in one line."""


def unsupported_k_message(ema: int, k: int, supported: tuple[int, ...]) -> str:
    """One line: EMA ``ema`` cannot use ``k`` on this bitstream, and what it can use."""
    spans = ", ".join(str(2 ** (s + 1) - 1) for s in supported)
    span = f" (span {2 ** (k + 1) - 1})" if isinstance(k, int) and 0 <= k <= L.K_MAX else ""
    return (
        f"EMA {ema}: k={k}{span} is not supported by this bitstream; it supports "
        f"k {', '.join(map(str, supported))} (spans {spans})"
    )


class RegisterWindow(Protocol):
    """What the register layer needs: 32-bit reads and writes at byte offsets."""

    def read(self, offset: int) -> int: ...

    def write(self, offset: int, value: int) -> None: ...


def _import_pynq() -> Any:
    try:
        import pynq
    except ImportError as exc:  # pynq is the optional 'fpga' extra
        raise FpgaUnavailableError(
            "pynq is not installed (pip install 'tickpath[fpga]' on the board)"
        ) from exc
    return pynq


class TickFeaturesRegisters:
    """The core's register protocol over a :class:`RegisterWindow`."""

    def __init__(self, mmio: RegisterWindow, poll_timeout_s: float = 1.0) -> None:
        self._mmio = mmio
        self.poll_timeout_s = poll_timeout_s

    # -- plain registers ---------------------------------------------------
    def read_reg(self, name: str) -> int:
        """Read a register by its name in ``layout.REGISTERS``."""
        return int(self._mmio.read(L.REGISTER_OFFSETS[name]))

    def write_reg(self, name: str, value: int) -> None:
        """Write a register by its name in ``layout.REGISTERS``."""
        self._mmio.write(L.REGISTER_OFFSETS[name], int(value) & 0xFFFFFFFF)

    def check_identity(self) -> None:
        """Raise :class:`FpgaUnavailableError` unless ID and major version match."""
        core_id = self.read_reg("ID")
        version = self.read_reg("VERSION")
        if core_id != L.CORE_ID or version >> 16 != L.CORE_VERSION >> 16:
            raise FpgaUnavailableError(
                f"not a tick-features core v{L.CORE_VERSION >> 16}: "
                f"ID 0x{core_id:08X}, VERSION 0x{version:08X}"
            )

    @property
    def n_symbols(self) -> int:
        """Symbol ids the core accepts: 0 .. n_symbols - 1."""
        return self.read_reg("N_SYMBOLS")

    @property
    def latency_cycles(self) -> int:
        """Clock cycles from the s_axis handshake to the m_axis handshake."""
        return (self.read_reg("CONFIG") >> 8) & 0xFF

    @property
    def k(self) -> tuple[int, int]:
        """The EMA shifts in force (alpha = 2**-k), from registers K0, K1."""
        k0 = L.k_register_fields(self.read_reg("K0"))[0]
        k1 = L.k_register_fields(self.read_reg("K1"))[0]
        return k0, k1

    @property
    def k_supported(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The four k each EMA of this bitstream supports (a per-build choice)."""
        s0 = L.k_register_fields(self.read_reg("K0"))[1]
        s1 = L.k_register_fields(self.read_reg("K1"))[1]
        return s0, s1

    def set_k(self, k0: int, k1: int) -> None:
        """Set the EMA shifts; takes effect for the records that follow.

        Raises ValueError (one line) for a k this bitstream does not support:
        the core ignores such a write, so it is refused here before any write.
        """
        for j, (k, supported) in enumerate(zip((k0, k1), self.k_supported)):
            if k not in supported:
                raise ValueError(unsupported_k_message(j, k, supported))
        self.write_reg("K0", k0)
        self.write_reg("K1", k1)
        if self.k != (k0, k1):
            raise RuntimeError(f"the core did not take k = {(k0, k1)}: it reads {self.k}")

    @property
    def enabled(self) -> bool:
        """Whether the core accepts records."""
        return bool(self.read_reg("CTRL") & L.CTRL_ENABLE)

    def enable(self, on: bool = True) -> None:
        """Let the core accept records (or stop it, holding s_axis_tready low)."""
        self.write_reg("CTRL", L.CTRL_ENABLE if on else 0)

    def status(self) -> int:
        """The STATUS register (``layout.STATUS_*`` bits)."""
        return self.read_reg("STATUS")

    def soft_reset(self) -> None:
        """Clear all symbol state and counters (k and enable are kept).

        The core waits until every accepted record has left it, then clears
        one symbol per clock; this polls STATUS until it is done.
        """
        ctrl = self.read_reg("CTRL") & L.CTRL_ENABLE
        self.write_reg("CTRL", ctrl | L.CTRL_SOFT_RESET)
        self._poll(lambda s: not s & L.STATUS_RESET_BUSY, "soft reset")

    def _read_counter(self, name: str) -> int:
        lo = self.read_reg(f"{name}_LO")  # latches the high word
        hi = self.read_reg(f"{name}_HI")
        return hi << 32 | lo

    def counters(self) -> dict[str, int]:
        """records_in, records_out, rejected_symbol, rejected_kind (64-bit each)."""
        return {
            "records_in": self._read_counter("RECORDS_IN"),
            "records_out": self._read_counter("RECORDS_OUT"),
            "rejected_symbol": self._read_counter("REJECT_SYMBOL"),
            "rejected_kind": self._read_counter("REJECT_KIND"),
        }

    # -- single-record MMIO path -------------------------------------------
    def process_one(self, record: np.ndarray | np.void) -> np.ndarray:
        """Run one TRADE, QUOTE or IN_SLOT record through the core via registers.

        Returns a 1-element FEATURE array.  The core must be enabled; MMIO
        records share the symbol state with the stream.
        """
        rec = np.asarray(record).reshape(1)
        slot = to_slots(rec)
        words = slot.view(np.uint32)
        for w in range(L.SLOT_SIZE // 4):
            self._mmio.write(L.MMIO_IN_BASE + 4 * w, int(words[w]))
        ctrl = self.read_reg("CTRL") & L.CTRL_ENABLE
        if not ctrl:
            raise RuntimeError("the core is disabled: call enable() first")
        self.write_reg("CTRL", ctrl | L.CTRL_MMIO_SUBMIT)
        self._poll(lambda s: s & L.STATUS_MMIO_DONE and not s & L.STATUS_MMIO_BUSY, "MMIO")
        out = np.empty(L.FEATURE_SIZE // 4, dtype=np.uint32)
        for w in range(out.size):
            out[w] = self._mmio.read(L.MMIO_OUT_BASE + 4 * w)
        return out.view(L.FEATURE)

    def _poll(self, done: Any, what: str) -> None:
        deadline = time.monotonic() + self.poll_timeout_s
        while True:
            if done(self.status()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: core did not finish in {self.poll_timeout_s} s")


_DRIVER_CLASS: type | None = None


def driver_class() -> type:
    """The ``pynq.DefaultIP`` subclass bound to :data:`VLNV` (created once).

    Creating it registers it with PYNQ, so an ``Overlay`` loaded afterwards
    gives the core as an instance of it.  Raises :class:`FpgaUnavailableError`
    without pynq.
    """
    global _DRIVER_CLASS
    if _DRIVER_CLASS is None:
        pynq = _import_pynq()

        class TickFeaturesIP(pynq.DefaultIP, TickFeaturesRegisters):
            """PYNQ driver of one tick-features core (see TickFeaturesRegisters)."""

            bindto = [VLNV]

            def __init__(self, description: dict) -> None:
                pynq.DefaultIP.__init__(self, description)
                TickFeaturesRegisters.__init__(self, self.mmio)

        _DRIVER_CLASS = TickFeaturesIP
    return _DRIVER_CLASS


class FpgaOverlay:
    """A loaded tick-features overlay: batches through the DMA, single records via MMIO.

    ``process(records)`` has the same contract as
    :meth:`tickpath.engine.backends.fpga.emulated.EmulatedOverlay.process`.
    """

    def __init__(
        self,
        bitfile: str | Path,
        *,
        download: bool = True,
        k: tuple[int, int] = L.K_RESET,
        max_records_per_transfer: int = 65536,
    ) -> None:
        pynq = _import_pynq()
        driver_class()
        try:
            overlay = pynq.Overlay(str(bitfile), download=download)
        except RuntimeError as exc:
            if "No Devices Found" in str(exc):
                raise FpgaUnavailableError("no FPGA device found (pynq: No Devices Found)") from exc
            raise FpgaUnavailableError(f"cannot load overlay {bitfile}: {exc}") from exc
        except (OSError, ValueError) as exc:
            raise FpgaUnavailableError(f"cannot load overlay {bitfile}: {exc}") from exc
        self._setup(overlay, pynq.allocate, k, max_records_per_transfer)

    @classmethod
    def from_overlay(
        cls,
        overlay: Any,
        allocate: Any,
        *,
        k: tuple[int, int] = L.K_RESET,
        max_records_per_transfer: int = 65536,
    ) -> FpgaOverlay:
        """Wrap an already loaded ``pynq.Overlay`` (``allocate``: ``pynq.allocate``)."""
        self = cls.__new__(cls)
        self._setup(overlay, allocate, k, max_records_per_transfer)
        return self

    def _setup(self, overlay: Any, allocate: Any, k: tuple[int, int], max_records: int) -> None:
        if not 1 <= max_records <= MAX_RECORDS_PER_TRANSFER:
            raise ValueError(f"max_records_per_transfer must be in 1..{MAX_RECORDS_PER_TRANSFER}")
        self.overlay = overlay
        self._allocate = allocate
        self.max_records_per_transfer = max_records
        ip_dict = overlay.ip_dict
        cores = [name for name, d in ip_dict.items() if d.get("type") == VLNV]
        if not cores:
            raise FpgaUnavailableError(f"the overlay has no {VLNV} core")
        dmas = [
            name
            for name, d in ip_dict.items()
            if str(d.get("type", "")).startswith(DMA_VLNV_PREFIX)
        ]
        self.core: TickFeaturesRegisters = _ip(overlay, cores[0])
        self.dma = _ip(overlay, dmas[0]) if dmas else None
        self.core.check_identity()
        try:
            self.core.set_k(*k)
        except ValueError as exc:  # a k this bitstream was not built for
            raise FpgaUnavailableError(str(exc)) from None
        self.core.enable()
        self._in_buf: Any = None
        self._out_buf: Any = None

    @property
    def n_symbols(self) -> int:
        """Symbol ids the core accepts."""
        return self.core.n_symbols

    def process(self, records: np.ndarray) -> np.ndarray:
        """Stream TRADE, QUOTE or IN_SLOT records through the core via the AXI DMA.

        Returns one FEATURE record per input, in order.  Large arrays go in
        several DMA transfers of at most ``max_records_per_transfer`` records.
        """
        if self.dma is None:
            raise FpgaUnavailableError("the overlay has no AXI DMA: use process_one")
        slots = to_slots(records)
        n = slots.shape[0]
        out = np.empty(n, dtype=L.FEATURE)
        if n == 0:
            return out
        if self._in_buf is None:
            cap = self.max_records_per_transfer
            self._in_buf = self._allocate(shape=(cap,), dtype=L.IN_SLOT)
            self._out_buf = self._allocate(shape=(cap,), dtype=L.FEATURE)
        send, recv = self.dma.sendchannel, self.dma.recvchannel
        for start in range(0, n, self.max_records_per_transfer):
            m = min(self.max_records_per_transfer, n - start)
            # Byte copies: the slot dtype overlays TRADE and QUOTE fields.
            _bytes(self._in_buf)[: m * L.SLOT_SIZE] = _bytes(slots[start : start + m])
            self._in_buf.flush()
            recv.transfer(self._out_buf, nbytes=m * L.FEATURE_SIZE)
            send.transfer(self._in_buf, nbytes=m * L.SLOT_SIZE)
            send.wait()
            recv.wait()
            self._out_buf.invalidate()
            _bytes(out[start : start + m])[:] = _bytes(self._out_buf)[: m * L.FEATURE_SIZE]
        return out

    def process_one(self, record: np.ndarray | np.void) -> np.ndarray:
        """One record through the MMIO path (no DMA); a 1-element FEATURE array."""
        return self.core.process_one(record)

    def reset(self) -> None:
        """Clear the core's symbol state and counters."""
        self.core.soft_reset()

    def counters(self) -> dict[str, int]:
        """The core's 64-bit counters."""
        return self.core.counters()

    def close(self) -> None:
        """Stop the core and free the DMA buffers."""
        self.core.enable(False)
        for buf in (self._in_buf, self._out_buf):
            if buf is not None and hasattr(buf, "freebuffer"):
                buf.freebuffer()
        self._in_buf = self._out_buf = None


def _bytes(array: np.ndarray) -> np.ndarray:
    return np.asarray(array).reshape(-1).view(np.uint8)


def _ip(overlay: Any, name: str) -> Any:
    # ip_dict names are hierarchical ("hier/ip"); the overlay exposes them as attributes.
    return operator.attrgetter(name.replace("/", "."))(overlay)


def __getattr__(name: str) -> Any:
    # ``driver.TickFeaturesIP`` builds the pynq class on first access.
    if name == "TickFeaturesIP":
        return driver_class()
    raise AttributeError(name)
