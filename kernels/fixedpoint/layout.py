"""Layout of the tick-features FPGA core: stream records, flags, registers.

This module is the single definition the RTL, the golden model, the PYNQ
driver and the docs share.  The RTL does not restate any of it: the Verilog
header ``fpga/tick_features/rtl/tick_features_fields.vh`` is rendered from
here by ``fpga/tick_features/gen_fields.py`` (and a test checks that the
committed header is up to date).  Input field offsets come from
:mod:`tickpath.engine.wire.schema`.

Input stream (``s_axis``, 512-bit ``tdata``, one record per beat)
    A 64-byte *slot*: bytes 0..47 hold one wire record exactly as it appears
    in a frame (a 40-byte TRADE or a 48-byte QUOTE, zero padded), byte 56 holds
    the record kind (``schema.KIND_TRADE`` or ``schema.KIND_QUOTE``).  Byte ``i``
    of the slot is ``tdata[8*i +: 8]`` (AXI4-Stream byte order, little-endian
    fields).  ``TLAST`` marks the last slot of a batch (the DMA sets it).

Output stream (``m_axis``, 1024-bit ``tdata``, one record per beat)
    One 128-byte :data:`FEATURE` record per input slot, in input order, with the
    input's ``TLAST``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tickpath.engine.wire import schema

# ---------------------------------------------------------------------------
# Fixed-point formats.
# ---------------------------------------------------------------------------
EMA_FRAC_BITS = 16  # EMA values are price ticks with this many fractional bits
N_EMA_HW = 2  # EMA spans computed by the core (k0, k1)
K_BITS = 5  # width of a k register: alpha = 2**-k with 0 <= k <= 31
K_MAX = (1 << K_BITS) - 1
K_RESET = (4, 8)  # k0, k1 after reset (engine spans 31 and 511)
# The k values a default build of the core supports, per EMA (parameters K0_SET,
# K1_SET: four each, selected by a one-LUT multiplexer in the update loop).  The
# K registers read back the k in force in [4:0] and the build's four in [24:5].
K_SET_SIZE = 4
K_SETS = ((2, 3, 4, 5), (6, 8, 10, 12))  # EMA 0 spans 7..63, EMA 1 spans 127..8191


def k_register_value(k: int, k_set: tuple[int, ...]) -> int:
    """What a K register reads: the k in force in [4:0], the build's set in [24:5]."""
    value = k
    for i, ks in enumerate(k_set):
        value |= ks << (K_BITS * (i + 1))
    return value


def k_register_fields(value: int) -> tuple[int, tuple[int, ...]]:
    """(k in force, the build's supported k values) from a K register's value."""
    ks = tuple((value >> (K_BITS * (i + 1))) & K_MAX for i in range(K_SET_SIZE))
    return value & K_MAX, ks


# ---------------------------------------------------------------------------
# Output record flags.
# ---------------------------------------------------------------------------
FLAG_HAS_TRADE = 1  # the symbol has seen a trade: last/EMA/VWAP fields are valid
FLAG_HAS_QUOTE = 2  # the symbol has seen a quote: bid/ask/mid/spread/imbalance are valid
FLAG_BAD_SYMBOL = 4  # rejected: symbol >= N_SYMBOLS; state untouched, features zero
FLAG_BAD_KIND = 8  # rejected: kind is neither TRADE nor QUOTE; state untouched

# ---------------------------------------------------------------------------
# Stream records.
# ---------------------------------------------------------------------------
SLOT_SIZE = 64  # bytes per input beat
SLOT_KIND_OFFSET = 56  # byte offset of the kind tag in a slot
FEATURE_SIZE = 128  # bytes per output beat


def _slot_dtype() -> np.dtype:
    # TRADE and QUOTE fields overlay each other (both start with ts_ns and
    # symbol); "_pad" fields are left out so that the names stay unique.
    names: list[str] = []
    formats: list[np.dtype] = []
    offsets: list[int] = []
    for rec in (schema.TRADE, schema.QUOTE):
        for name, (dt, off, *_) in rec.fields.items():
            if name.startswith("_") or name in names:
                continue
            names.append(name)
            formats.append(dt)
            offsets.append(off)
    names.append("kind")
    formats.append(np.dtype("u1"))
    offsets.append(SLOT_KIND_OFFSET)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": SLOT_SIZE})


IN_SLOT = _slot_dtype()
"""One input beat: a TRADE or QUOTE record (overlaid field names) and its kind."""

FEATURE_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("ts_ns", "<i8", "the input record's ts_ns"),
    ("symbol", "<u4", "the input record's symbol"),
    ("kind", "u1", "the input record's kind"),
    ("flags", "u1", "FLAG_* bits"),
    ("_pad", "<u2", "zero"),
    ("seq", "<u8", "index of the input record since (soft) reset, rejects included"),
    ("last_price", "<i8", "last trade price, ticks"),
    ("last_size", "<i8", "last trade size, lots"),
    ("ema0", "<i8", "EMA of trade price, alpha = 2^-K0, ticks * 2^EMA_FRAC_BITS"),
    ("ema1", "<i8", "EMA of trade price, alpha = 2^-K1, ticks * 2^EMA_FRAC_BITS"),
    ("pv_lo", "<u8", "sum of price*size (ticks*lots), low 64 bits of 128"),
    ("pv_hi", "<i8", "sum of price*size, high 64 bits (signed)"),
    ("volume", "<i8", "sum of size, lots (64-bit, wraps)"),
    ("bid_price", "<i8", "best bid, ticks"),
    ("ask_price", "<i8", "best ask, ticks"),
    ("mid_x2", "<i8", "bid + ask: the mid in half ticks"),
    ("spread", "<i8", "ask - bid, ticks"),
    ("imb_num", "<i8", "bid_size - ask_size, lots (L1 imbalance numerator)"),
    ("imb_den", "<i8", "bid_size + ask_size, lots (L1 imbalance denominator)"),
)
FEATURE = np.dtype([(name, fmt) for name, fmt, _ in FEATURE_FIELDS])
"""One output beat: the symbol's features after the input record was applied."""

assert IN_SLOT.itemsize == SLOT_SIZE
assert FEATURE.itemsize == FEATURE_SIZE


def _check_words() -> None:
    # The golden model and the RTL read and write whole 64-bit words: every
    # 8-byte field must be 8-byte aligned, and the symbol and kind sit in the
    # low bytes of their words.
    for dtype in (IN_SLOT, FEATURE):
        for name, (dt, off, *_) in dtype.fields.items():
            if dt.itemsize == 8:
                assert off % 8 == 0, (name, off)
    assert IN_SLOT.fields["symbol"][1] % 8 == 0
    assert FEATURE.fields["symbol"][1] % 8 == 0


_check_words()


def word_index(dtype: np.dtype, name: str) -> int:
    """Index of the 64-bit word that holds (the start of) field ``name``."""
    return dtype.fields[name][1] // 8


# ---------------------------------------------------------------------------
# Core identity and the AXI4-Lite register map (32-bit registers).
# ---------------------------------------------------------------------------
VLNV = "tickpath.dev:tickpath:tick_features:1.0"  # what the PYNQ driver binds to
CORE_ID = 0x54504B46  # "TPKF"
CORE_VERSION = 0x00010000  # major << 16 | minor

CTRL_ENABLE = 1 << 0  # accept records (s_axis_tready may rise)
CTRL_SOFT_RESET = 1 << 1  # write 1: clear all symbol state and counters once idle
CTRL_MMIO_SUBMIT = 1 << 2  # write 1: inject the MMIO_IN slot as one record

STATUS_RESET_BUSY = 1 << 0  # a soft (or power-on) reset has not finished clearing state
STATUS_IDLE = 1 << 1  # nothing in flight and the output FIFO is empty
STATUS_MMIO_DONE = 1 << 2  # MMIO_OUT holds the result of the last MMIO submit
STATUS_MMIO_BUSY = 1 << 3  # an MMIO submit is waiting or in flight

MMIO_IN_BASE = 0x40  # 16 words: one IN_SLOT, written by the host
MMIO_OUT_BASE = 0x80  # 32 words: one FEATURE record, read by the host
AXIL_ADDR_BITS = 8  # the register window is 256 bytes


@dataclass(frozen=True, kw_only=True)
class Register:
    """One 32-bit AXI4-Lite register (or a word of a wider window)."""

    name: str
    offset: int
    access: str  # "RO", "RW", "WO"
    reset: int | None  # value after reset, None where it depends on traffic
    doc: str


REGISTERS: tuple[Register, ...] = (
    Register(name="ID", offset=0x00, access="RO", reset=CORE_ID, doc='core id, "TPKF"'),
    Register(
        name="VERSION", offset=0x04, access="RO", reset=CORE_VERSION, doc="(major << 16) + minor"
    ),
    Register(
        name="CTRL",
        offset=0x08,
        access="RW",
        reset=0,
        doc="bit 0 ENABLE; bit 1 SOFT_RESET (write 1, reads 1 until done); "
        "bit 2 MMIO_SUBMIT (write 1, self-clearing)",
    ),
    Register(
        name="STATUS",
        offset=0x0C,
        access="RO",
        reset=None,
        doc="bit 0 RESET_BUSY; bit 1 IDLE; bit 2 MMIO_DONE; bit 3 MMIO_BUSY",
    ),
    Register(
        name="K0",
        offset=0x10,
        access="RW",
        reset=k_register_value(K_RESET[0], K_SETS[0]),
        doc="EMA 0: alpha = 2^-k; [4:0] k in force; [24:5] the four k of this build "
        "(5 bits each, RO): a write of any other k is ignored",
    ),
    Register(
        name="K1",
        offset=0x14,
        access="RW",
        reset=k_register_value(K_RESET[1], K_SETS[1]),
        doc="EMA 1: as K0",
    ),
    Register(
        name="N_SYMBOLS", offset=0x18, access="RO", reset=None, doc="symbol ids accepted: 0..N-1"
    ),
    Register(
        name="CONFIG",
        offset=0x1C,
        access="RO",
        reset=None,
        doc="[7:0] EMA_FRAC_BITS; [15:8] latency in cycles; [23:16] number of EMAs",
    ),
    Register(
        name="RECORDS_IN_LO",
        offset=0x20,
        access="RO",
        reset=0,
        doc="records accepted, low word (reading it latches the high word)",
    ),
    Register(name="RECORDS_IN_HI", offset=0x24, access="RO", reset=0, doc="high word, latched"),
    Register(
        name="RECORDS_OUT_LO",
        offset=0x28,
        access="RO",
        reset=0,
        doc="results delivered (m_axis beats and MMIO results), low word",
    ),
    Register(name="RECORDS_OUT_HI", offset=0x2C, access="RO", reset=0, doc="high word, latched"),
    Register(
        name="REJECT_SYMBOL_LO",
        offset=0x30,
        access="RO",
        reset=0,
        doc="records rejected for symbol >= N_SYMBOLS, low word",
    ),
    Register(name="REJECT_SYMBOL_HI", offset=0x34, access="RO", reset=0, doc="high word, latched"),
    Register(
        name="REJECT_KIND_LO",
        offset=0x38,
        access="RO",
        reset=0,
        doc="records rejected for a kind other than TRADE/QUOTE, low word",
    ),
    Register(name="REJECT_KIND_HI", offset=0x3C, access="RO", reset=0, doc="high word, latched"),
    Register(
        name="MMIO_IN",
        offset=MMIO_IN_BASE,
        access="WO",
        reset=None,
        doc="0x40..0x7C: one 64-byte input slot for the MMIO path",
    ),
    Register(
        name="MMIO_OUT",
        offset=MMIO_OUT_BASE,
        access="RO",
        reset=None,
        doc="0x80..0xFC: the 128-byte feature record of the last MMIO submit",
    ),
)
REGISTER_OFFSETS: dict[str, int] = {r.name: r.offset for r in REGISTERS}


def feature_table_markdown() -> str:
    """The FEATURE record layout as the Markdown table that docs/fpga.md carries."""
    lines = ["| byte | field | type | meaning |", "| --- | --- | --- | --- |"]
    for name, fmt, doc in FEATURE_FIELDS:
        off = FEATURE.fields[name][1]
        lines.append(f"| {off} | {name} | {np.dtype(fmt).name} | {doc} |")
    return "\n".join(lines) + "\n"


def slot_table_markdown() -> str:
    """The IN_SLOT layout (TRADE and QUOTE overlaid) as a Markdown table."""
    lines = ["| byte | TRADE field | QUOTE field | type |", "| --- | --- | --- | --- |"]
    trade = {off: name for name, (off, _) in schema.field_offsets(schema.TRADE).items()}
    quote = {off: name for name, (off, _) in schema.field_offsets(schema.QUOTE).items()}
    for off in sorted(set(trade) | set(quote)):
        name = trade.get(off) or quote[off]
        dt = (schema.TRADE if name in trade.values() else schema.QUOTE).fields[name][0]
        lines.append(f"| {off} | {trade.get(off, '-')} | {quote.get(off, '-')} | {dt.name} |")
    lines.append(f"| {SLOT_KIND_OFFSET} | kind | kind | uint8 |")
    return "\n".join(lines) + "\n"


def register_table_markdown() -> str:
    """The register map as the Markdown table that docs/fpga.md carries."""
    lines = ["| offset | name | access | reset | description |", "| --- | --- | --- | --- | --- |"]
    for r in REGISTERS:
        reset = "-" if r.reset is None else f"0x{r.reset:08X}"
        lines.append(f"| 0x{r.offset:02X} | {r.name} | {r.access} | {reset} | {r.doc} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# The Verilog header.
# ---------------------------------------------------------------------------
def _bit_fields(prefix: str, fields: dict[str, tuple[int, int]]) -> list[str]:
    out = []
    for name, (off, width) in fields.items():
        if name.startswith("_"):
            continue
        tag = f"{prefix}_{name.upper()}"
        out.append(f"`define {tag}_LSB {off * 8}")
        out.append(f"`define {tag}_W {width * 8}")
    return out


def render_verilog_header() -> str:
    """Render ``tick_features_fields.vh`` from the schema and this layout."""
    lines = [
        "// Generated by fpga/tick_features/gen_fields.py from engine/wire/schema.py",
        "// and kernels/fixedpoint/layout.py.  Do not edit: rerun the script.",
        "`ifndef TICK_FEATURES_FIELDS_VH",
        "`define TICK_FEATURES_FIELDS_VH",
        "",
        "// Record kinds (schema.KIND_*).",
        f"`define TF_KIND_TRADE {schema.KIND_TRADE}",
        f"`define TF_KIND_QUOTE {schema.KIND_QUOTE}",
        "",
        f"// Input slot: one wire record per 512-bit beat, kind tag in byte {SLOT_KIND_OFFSET}.",
        f"`define TF_IN_W {SLOT_SIZE * 8}",
    ]
    lines += _bit_fields("TF_IN_TRADE", schema.field_offsets(schema.TRADE))
    lines += _bit_fields("TF_IN_QUOTE", schema.field_offsets(schema.QUOTE))
    lines += [f"`define TF_IN_KIND_LSB {SLOT_KIND_OFFSET * 8}", "`define TF_IN_KIND_W 8", ""]
    lines += [
        "// Output feature record: one per 1024-bit beat.",
        f"`define TF_OUT_W {FEATURE_SIZE * 8}",
    ]
    lines += _bit_fields("TF_OUT", schema.field_offsets(FEATURE))
    lines += [
        "",
        "// Output flags.",
        f"`define TF_FLAG_HAS_TRADE {FLAG_HAS_TRADE}",
        f"`define TF_FLAG_HAS_QUOTE {FLAG_HAS_QUOTE}",
        f"`define TF_FLAG_BAD_SYMBOL {FLAG_BAD_SYMBOL}",
        f"`define TF_FLAG_BAD_KIND {FLAG_BAD_KIND}",
        "",
        "// Fixed point and configuration.",
        f"`define TF_EMA_FRAC_BITS {EMA_FRAC_BITS}",
        f"`define TF_N_EMA {N_EMA_HW}",
        f"`define TF_K_BITS {K_BITS}",
        f"`define TF_K0_RESET {K_RESET[0]}",
        f"`define TF_K1_RESET {K_RESET[1]}",
        f"`define TF_K0_SET {K_BITS * K_SET_SIZE}'h{k_register_value(0, K_SETS[0]) >> K_BITS:05X}",
        f"`define TF_K1_SET {K_BITS * K_SET_SIZE}'h{k_register_value(0, K_SETS[1]) >> K_BITS:05X}",
        "",
        "// Identity and AXI4-Lite register map (byte offsets).",
        f"`define TF_CORE_ID 32'h{CORE_ID:08X}",
        f"`define TF_CORE_VERSION 32'h{CORE_VERSION:08X}",
        f"`define TF_AXIL_ADDR_BITS {AXIL_ADDR_BITS}",
    ]
    for r in REGISTERS:
        lines.append(f"`define TF_REG_{r.name} 8'h{r.offset:02X}")
    lines += [
        f"`define TF_CTRL_ENABLE_BIT {CTRL_ENABLE.bit_length() - 1}",
        f"`define TF_CTRL_SOFT_RESET_BIT {CTRL_SOFT_RESET.bit_length() - 1}",
        f"`define TF_CTRL_MMIO_SUBMIT_BIT {CTRL_MMIO_SUBMIT.bit_length() - 1}",
        f"`define TF_STATUS_RESET_BUSY_BIT {STATUS_RESET_BUSY.bit_length() - 1}",
        f"`define TF_STATUS_IDLE_BIT {STATUS_IDLE.bit_length() - 1}",
        f"`define TF_STATUS_MMIO_DONE_BIT {STATUS_MMIO_DONE.bit_length() - 1}",
        f"`define TF_STATUS_MMIO_BUSY_BIT {STATUS_MMIO_BUSY.bit_length() - 1}",
        "",
        "`endif",
        "",
    ]
    return "\n".join(lines)
