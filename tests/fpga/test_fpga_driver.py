"""The PYNQ driver and the emulated overlay, on x86 without a board.

With pynq installed, the driver class is the real ``pynq.DefaultIP`` subclass
and its registers go through the real ``pynq.MMIO`` onto mock ``pynq.Device``s,
as PYNQ's own tests do: one memory-mapped (a numpy array; checks where each
write lands) and one register device whose register file behaves like the
core (backed by the golden model).  The AXI DMA is the one part that cannot
run here: a stand-in with the same channel interface feeds the same model.
The register protocol itself also runs against the RTL in the cocotb test
``test_driver_register_protocol``.
"""

from __future__ import annotations

import importlib.util
import struct
from types import SimpleNamespace

import numpy as np
import pytest

import tickpath.engine.backends.fpga as fpga
from tickpath.engine.wire import schema
from tickpath.kernels.fixedpoint import layout as L
from tickpath.kernels.fixedpoint.tick_features import FeatureState, process, to_slots

HAVE_PYNQ = importlib.util.find_spec("pynq") is not None
needs_pynq = pytest.mark.skipif(
    not HAVE_PYNQ,
    reason="pynq is not installed (it pins numpy<2: run in a separate venv, see docs/fpga.md)",
)
BASE = 0xA000_0000
RANGE = 0x1_0000


def random_slots(seed: int, n: int, n_symbols: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    slots = np.zeros(n, dtype=L.IN_SLOT)
    slots["ts_ns"] = np.arange(n)
    slots["symbol"] = rng.integers(0, n_symbols + 1, n)
    slots["kind"] = rng.choice([schema.KIND_TRADE, schema.KIND_QUOTE, 9], n, p=[0.5, 0.45, 0.05])
    words = slots.view(np.uint64).reshape(n, 8)
    words[:, 2] = rng.integers(1, 10**7, n)
    words[:, 3] = rng.integers(1, 10**10, n)
    words[:, 4] = words[:, 2] + 10
    words[:, 5] = rng.integers(1, 10**10, n)
    return slots


# ---------------------------------------------------------------------------
# Without pynq.
# ---------------------------------------------------------------------------
@pytest.mark.skipif(HAVE_PYNQ, reason="checks the behaviour when pynq is absent")
def test_without_pynq_a_clear_error_and_the_emulation():
    with pytest.raises(fpga.FpgaUnavailableError, match="pynq is not installed"):
        fpga.FpgaOverlay("overlay.bit")
    with pytest.raises(fpga.FpgaUnavailableError, match="pynq is not installed"):
        fpga.driver_class()
    assert isinstance(fpga.open_overlay("overlay.bit", n_symbols=8), fpga.EmulatedOverlay)


def test_the_emulation_refuses_a_k_the_bitstream_would_refuse():
    """The emulation takes the k of the default build's sets and refuses any other in the
    driver's one line, changing nothing (the board ignores such a write)."""
    emu = fpga.EmulatedOverlay(n_symbols=8)
    assert emu.k_supported == L.K_SETS and emu.k == L.K_RESET
    with pytest.raises(ValueError) as err:
        emu.set_k(4, 11)  # span 4095: EMA 1 of this build has k 6, 8, 10, 12
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("EMA 1: k=11 (span 4095) is not supported by this bitstream")
    assert emu.k == L.K_RESET
    emu.set_k(5, 12)
    assert emu.k == (5, 12)
    with pytest.raises(ValueError, match="EMA 0: k=7 .* is not supported"):
        fpga.EmulatedOverlay(n_symbols=8, k=(7, 8))
    wide = fpga.EmulatedOverlay(n_symbols=8, k=(7, 8), k_sets=((1, 7, 9, 11), L.K_SETS[1]))
    assert wide.k == (7, 8)  # another build's sets


def test_emulated_overlay_is_the_golden_model():
    slots = random_slots(1, 500, 8)
    emu = fpga.EmulatedOverlay(n_symbols=8, k=(3, 10))  # neither is the reset value
    got = np.concatenate(
        [emu.process(slots[:200]), emu.process_one(slots[200]), emu.process(slots[201:])]
    )
    want = process(slots, FeatureState(8, (3, 10)))
    assert got.tobytes() == want.tobytes()
    c = emu.counters()
    assert c["records_in"] == c["records_out"] == 500
    assert c["rejected_kind"] == int((slots["kind"] == 9).sum()) > 0
    emu.reset()
    assert emu.counters() == dict.fromkeys(c, 0)
    trades = np.zeros(3, dtype=schema.TRADE)
    trades["price"] = [10, 20, 30]
    trades["size"] = 1
    out = emu.process(trades)
    assert list(out["last_price"]) == [10, 20, 30] and out["seq"][0] == 0


# ---------------------------------------------------------------------------
# With pynq: mock devices.
# ---------------------------------------------------------------------------
def _device_base():
    import pynq

    return pynq.Device


class CoreRegisterDevice:
    """Factory for a ``pynq.Device`` (REGISTER_RW) whose registers act like the core.

    Register semantics follow layout.REGISTERS; records go through an
    EmulatedOverlay, which the DMA stand-in shares (one state, as in the core).
    """

    @staticmethod
    def make(n_symbols: int = 16):
        Device = _device_base()

        class _Dev(Device):
            def __init__(self) -> None:
                super().__init__("tick-features-registers")
                self.capabilities = {"REGISTER_RW": True}
                self.model = fpga.EmulatedOverlay(n_symbols)
                self.ctrl = 0
                self.k = list(L.K_RESET)
                self.mmio_in = np.zeros(16, dtype=np.uint32)
                self.mmio_out = np.zeros(32, dtype=np.uint32)
                self.done = False
                self.hi = {}
                self.writes: list[tuple[int, int]] = []

            def _counter(self, name: str) -> int:
                c = self.model.counters()
                key = {
                    "RECORDS_IN": "records_in",
                    "RECORDS_OUT": "records_out",
                    "REJECT_SYMBOL": "rejected_symbol",
                    "REJECT_KIND": "rejected_kind",
                }[name]
                return c[key]

            def read_registers(self, address: int, length: int) -> bytes:
                off = address - BASE
                name = {r.offset: r.name for r in L.REGISTERS}.get(off)
                if off >= L.MMIO_OUT_BASE:
                    value = int(self.mmio_out[(off - L.MMIO_OUT_BASE) // 4])
                elif name == "ID":
                    value = L.CORE_ID
                elif name == "VERSION":
                    value = L.CORE_VERSION
                elif name == "CTRL":
                    value = self.ctrl
                elif name == "STATUS":
                    value = L.STATUS_IDLE | (L.STATUS_MMIO_DONE if self.done else 0)
                elif name in ("K0", "K1"):
                    j = int(name[1])
                    value = L.k_register_value(self.k[j], L.K_SETS[j])
                elif name == "N_SYMBOLS":
                    value = n_symbols
                elif name == "CONFIG":
                    value = L.N_EMA_HW << 16 | 6 << 8 | L.EMA_FRAC_BITS
                elif name and name.endswith("_LO"):
                    full = self._counter(name[:-3])
                    self.hi[name[:-3]] = full >> 32
                    value = full & 0xFFFFFFFF
                elif name and name.endswith("_HI"):
                    value = self.hi.get(name[:-3], 0)
                else:
                    value = 0
                return struct.pack("<I", value)[:length]

            def write_registers(self, address: int, data: bytes) -> None:
                off = address - BASE
                value = struct.unpack("<I", bytes(data[:4]))[0]
                self.writes.append((off, value))
                if L.MMIO_IN_BASE <= off < L.MMIO_OUT_BASE:
                    self.mmio_in[(off - L.MMIO_IN_BASE) // 4] = value
                elif off == L.REGISTER_OFFSETS["CTRL"]:
                    self.ctrl = value & L.CTRL_ENABLE
                    if value & L.CTRL_SOFT_RESET:
                        self.model.reset()
                    if value & L.CTRL_MMIO_SUBMIT and self.ctrl:
                        slot = self.mmio_in.view(L.IN_SLOT)
                        self.mmio_out[:] = self.model.process(slot).view(np.uint32)
                        self.done = True
                elif off in (L.REGISTER_OFFSETS["K0"], L.REGISTER_OFFSETS["K1"]):
                    j = 0 if off == L.REGISTER_OFFSETS["K0"] else 1
                    if value & L.K_MAX in L.K_SETS[j]:  # the core ignores other k
                        self.k[j] = value & L.K_MAX
                        self.model.set_k(*self.k)

        return _Dev()


@pytest.fixture
def core_device():
    import pynq

    dev = CoreRegisterDevice.make()
    saved = getattr(pynq.Device, "_active_device", None)
    pynq.Device.active_device = dev
    yield dev
    if saved is None:
        del pynq.Device._active_device
    else:
        pynq.Device.active_device = saved


@needs_pynq
def test_driver_binds_to_the_vlnv_as_a_default_ip():
    import pynq
    from pynq.overlay import _ip_drivers

    cls = fpga.driver_class()
    assert issubclass(cls, pynq.DefaultIP) and cls.bindto == [L.VLNV]
    assert _ip_drivers[L.VLNV] is cls
    assert _ip_drivers[L.VLNV.rpartition(":")[0]] is cls


@needs_pynq
def test_no_device_is_a_one_line_error(tmp_path):
    import pynq

    if hasattr(pynq.Device, "_active_device"):
        pytest.skip("a pynq device is active in this process")
    bit = tmp_path / "overlay.bit"
    bit.write_bytes(b"\0" * 64)
    with pytest.raises(fpga.FpgaUnavailableError, match="no FPGA device found") as info:
        fpga.FpgaOverlay(bit)
    assert "\n" not in str(info.value)


@needs_pynq
def test_registers_land_at_the_layout_offsets_on_a_memory_mapped_device():
    import pynq

    Device = _device_base()

    class MemoryDevice(Device):
        def __init__(self) -> None:
            super().__init__("memory-mapped")
            self.capabilities = {"MEMORY_MAPPED": True}
            self.memory = np.zeros(RANGE, dtype=np.uint8)

        def mmap(self, base_addr: int, length: int) -> np.ndarray:
            return self.memory[:length].view(np.uint32)

    dev = MemoryDevice()
    ip = fpga.driver_class()({"phys_addr": BASE, "addr_range": RANGE, "device": dev})
    assert isinstance(ip.mmio, pynq.MMIO)
    words = dev.memory.view(np.uint32)
    words[L.REGISTER_OFFSETS["ID"] // 4] = L.CORE_ID
    words[L.REGISTER_OFFSETS["VERSION"] // 4] = L.CORE_VERSION
    ip.check_identity()
    # The K registers carry the build's supported k (the core's reset values).
    words[L.REGISTER_OFFSETS["K0"] // 4] = L.k_register_value(4, L.K_SETS[0])
    words[L.REGISTER_OFFSETS["K1"] // 4] = L.k_register_value(8, L.K_SETS[1])
    assert ip.k_supported == L.K_SETS and ip.k == (4, 8)
    ip.set_k(3, 10)
    ip.enable()
    assert words[L.REGISTER_OFFSETS["K0"] // 4] == 3
    assert words[L.REGISTER_OFFSETS["K1"] // 4] == 10
    assert words[L.REGISTER_OFFSETS["CTRL"] // 4] == L.CTRL_ENABLE
    words[L.REGISTER_OFFSETS["RECORDS_IN_LO"] // 4] = 5
    words[L.REGISTER_OFFSETS["RECORDS_IN_HI"] // 4] = 2
    assert ip.counters()["records_in"] == (2 << 32) + 5
    words[L.REGISTER_OFFSETS["VERSION"] // 4] = 0x00020000
    with pytest.raises(fpga.FpgaUnavailableError, match="not a tick-features core"):
        ip.check_identity()


@needs_pynq
def test_mmio_single_record_path_through_pynq_mmio(core_device):
    ip = fpga.driver_class()({"phys_addr": BASE, "addr_range": RANGE})  # the active device
    ip.check_identity()
    with pytest.raises(RuntimeError, match="disabled"):
        ip.process_one(random_slots(0, 1, 16)[0])
    ip.set_k(2, 10)
    ip.enable()
    slots = random_slots(2, 40, 16)
    got = np.concatenate([ip.process_one(slots[i]) for i in range(40)])
    assert got.tobytes() == process(slots, FeatureState(16, (2, 10))).tobytes()
    # The slot went to MMIO_IN word by word before each submit.
    submit = (L.REGISTER_OFFSETS["CTRL"], L.CTRL_ENABLE | L.CTRL_MMIO_SUBMIT)
    last = len(core_device.writes) - 1 - core_device.writes[::-1].index(submit)
    sent = [v for off, v in core_device.writes[last - 16 : last]]
    assert sent == slots[-1:].view(np.uint32).tolist()
    c = ip.counters()
    assert c["records_in"] == 40 and c["rejected_kind"] == int((slots["kind"] == 9).sum())
    ip.soft_reset()
    assert ip.counters()["records_in"] == 0


class HostBuffer(np.ndarray):
    """What ``pynq.allocate`` returns, minus the physical memory."""

    flushes = 0
    invalidates = 0

    def flush(self) -> None:
        HostBuffer.flushes += 1

    def invalidate(self) -> None:
        HostBuffer.invalidates += 1


def host_allocate(shape: tuple[int, ...], dtype: np.dtype) -> HostBuffer:
    return np.zeros(shape, dtype=dtype).view(HostBuffer)


class StandInDma:
    """The AXI DMA's send/recv channel interface, moving data through the model.

    The send channel streams slots into the model on ``wait()``; the receive
    channel's buffer gets one FEATURE per slot, as the core's m_axis would.
    """

    def __init__(self, model: fpga.EmulatedOverlay) -> None:
        self.model = model
        self.pending: list[np.ndarray] = []
        self.transfers: list[int] = []
        outer = self

        class Send:
            def transfer(self, buf: np.ndarray, nbytes: int) -> None:
                outer._send = np.asarray(buf).view(np.uint8)[:nbytes].view(L.IN_SLOT)
                outer.transfers.append(nbytes)

            def wait(self) -> None:
                outer.pending.append(outer.model.process(outer._send))

        class Recv:
            def transfer(self, buf: np.ndarray, nbytes: int) -> None:
                outer._recv = (buf, nbytes)

            def wait(self) -> None:
                buf, nbytes = outer._recv
                result = outer.pending.pop(0)
                assert result.nbytes == nbytes
                np.asarray(buf).view(np.uint8)[:nbytes] = result.view(np.uint8)

        self.sendchannel = Send()
        self.recvchannel = Recv()


@needs_pynq
def test_overlay_batches_through_the_dma_and_shares_state_with_mmio(core_device):
    HostBuffer.flushes = HostBuffer.invalidates = 0  # this test's cache operations only
    ip = fpga.driver_class()({"phys_addr": BASE, "addr_range": RANGE})
    dma = StandInDma(core_device.model)
    overlay = SimpleNamespace(
        ip_dict={
            "hier/tick_features_0": {"type": L.VLNV},
            "axi_dma_0": {"type": "xilinx.com:ip:axi_dma:7.1"},
        },
        hier=SimpleNamespace(tick_features_0=ip),
        axi_dma_0=dma,
    )
    ol = fpga.FpgaOverlay.from_overlay(
        overlay, host_allocate, k=(5, 12), max_records_per_transfer=7
    )
    assert ol.n_symbols == 16 and ip.k == (5, 12) and ip.enabled
    trades = np.zeros(30, dtype=schema.TRADE)
    trades["symbol"] = np.arange(30) % 5
    trades["price"] = 1000 + np.arange(30)
    trades["size"] = 3
    slots = random_slots(4, 20, 16)
    got = np.concatenate([ol.process(trades), ol.process_one(slots[0]), ol.process(slots[1:])])
    state = FeatureState(16, (5, 12))
    want = np.concatenate([process(trades, state), process(slots, state)])
    assert got.tobytes() == want.tobytes()
    assert dma.transfers[:5] == [7 * 64] * 4 + [2 * 64]  # 30 records in chunks of 7
    assert HostBuffer.flushes >= 5 and HostBuffer.invalidates >= 5
    ol.close()
    assert not ip.enabled


@needs_pynq
def test_a_k_the_bitstream_does_not_support_is_refused_in_one_line(core_device):
    ip = fpga.driver_class()({"phys_addr": BASE, "addr_range": RANGE})
    assert ip.k_supported == L.K_SETS and ip.k == L.K_RESET
    writes = len(core_device.writes)
    with pytest.raises(ValueError) as err:
        ip.set_k(4, 11)  # span 4095: EMA 1 of this build has k 6, 8, 10, 12
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("EMA 1: k=11 (span 4095) is not supported by this bitstream")
    assert "k 6, 8, 10, 12 (spans 127, 511, 2047, 8191)" in message
    assert len(core_device.writes) == writes and ip.k == L.K_RESET  # nothing written
    overlay = SimpleNamespace(ip_dict={"tf": {"type": L.VLNV}}, tf=ip)
    with pytest.raises(fpga.FpgaUnavailableError, match="EMA 0: k=7 .* is not supported"):
        fpga.FpgaOverlay.from_overlay(overlay, host_allocate, k=(7, 8))


@needs_pynq
def test_an_overlay_without_the_core_is_refused(core_device):
    overlay = SimpleNamespace(ip_dict={"axi_dma_0": {"type": "xilinx.com:ip:axi_dma:7.1"}})
    with pytest.raises(
        fpga.FpgaUnavailableError, match="has no tickpath.dev:tickpath:tick_features"
    ):
        fpga.FpgaOverlay.from_overlay(overlay, host_allocate)
    ip = fpga.driver_class()({"phys_addr": BASE, "addr_range": RANGE})
    no_dma = SimpleNamespace(ip_dict={"tf": {"type": L.VLNV}}, tf=ip)
    ol = fpga.FpgaOverlay.from_overlay(no_dma, host_allocate)
    with pytest.raises(fpga.FpgaUnavailableError, match="no AXI DMA"):
        ol.process(to_slots(np.zeros(1, dtype=schema.TRADE)))
