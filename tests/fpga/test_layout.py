"""The RTL header, the docs and the Vivado scripts agree with the one layout definition."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from tickpath.engine.wire import schema
from tickpath.kernels.fixedpoint import layout as L

ROOT = Path(__file__).resolve().parents[2]
BLOCK = ROOT / "fpga" / "tick_features"
DOC = ROOT / "docs" / "fpga.md"


def section(text: str, name: str) -> str:
    m = re.search(rf"<!-- {name}:begin -->\n(.*?)<!-- {name}:end -->", text, re.S)
    assert m, f"docs/fpga.md lacks the {name} section"
    return m.group(1)


def test_committed_verilog_header_is_generated_from_the_schema():
    committed = (BLOCK / "rtl" / "tick_features_fields.vh").read_text()
    assert committed == L.render_verilog_header(), (
        "rtl/tick_features_fields.vh is stale: run python fpga/tick_features/gen_fields.py"
    )


def test_header_offsets_are_the_schema_offsets():
    header = (BLOCK / "rtl" / "tick_features_fields.vh").read_text()
    defines = dict(re.findall(r"`define (\w+) (\S+)", header))
    for prefix, rec in (("TF_IN_TRADE", schema.TRADE), ("TF_IN_QUOTE", schema.QUOTE)):
        for name, (off, width) in schema.field_offsets(rec).items():
            if name.startswith("_"):
                continue
            assert int(defines[f"{prefix}_{name.upper()}_LSB"]) == 8 * off
            assert int(defines[f"{prefix}_{name.upper()}_W"]) == 8 * width
    assert int(defines["TF_IN_W"]) == 8 * L.SLOT_SIZE
    assert int(defines["TF_OUT_W"]) == 8 * L.FEATURE_SIZE
    assert int(defines["TF_KIND_TRADE"]) == schema.KIND_TRADE
    assert int(defines["TF_KIND_QUOTE"]) == schema.KIND_QUOTE


def test_slot_overlays_the_wire_records():
    for rec in (schema.TRADE, schema.QUOTE):
        for name, (off, width) in schema.field_offsets(rec).items():
            if not name.startswith("_"):
                assert L.IN_SLOT.fields[name][1] == off
                assert L.IN_SLOT.fields[name][0].itemsize == width
    assert max(schema.TRADE.itemsize, schema.QUOTE.itemsize) <= L.SLOT_KIND_OFFSET
    t = np.zeros(1, dtype=schema.TRADE)
    t["price"] = 123
    assert np.frombuffer(t.tobytes() + bytes(24), dtype=L.IN_SLOT)["price"][0] == 123


def test_rtl_uses_the_header_for_every_register_offset():
    axil = (BLOCK / "rtl" / "tick_features_axil.v").read_text()
    for reg in L.REGISTERS:
        if reg.name not in ("MMIO_IN", "MMIO_OUT"):
            assert f"`TF_REG_{reg.name}" in axil, reg.name
    assert not re.search(r"8'h[0-9A-Fa-f]{2}\s*:", axil), "a register offset hard-coded in RTL"


def test_docs_tables_are_the_generated_ones():
    text = DOC.read_text()
    assert section(text, "register-map") == L.register_table_markdown()
    assert section(text, "feature-record") == L.feature_table_markdown()
    assert section(text, "input-slot") == L.slot_table_markdown()


def test_vivado_packaging_uses_the_driver_vlnv():
    tcl = (BLOCK / "syn" / "package_ip.tcl").read_text()
    parts = {
        key: re.search(rf'set ip_{key}\s+"([^"]+)"', tcl).group(1)
        for key in ("vendor", "library", "name", "version")
    }
    assert ":".join(parts[k] for k in ("vendor", "library", "name", "version")) == L.VLNV
    overlay = (BLOCK / "syn" / "build_overlay.tcl").read_text()
    assert f"-vlnv {L.VLNV} " in overlay


def test_rtl_conventions():
    for path in sorted((BLOCK / "rtl").glob("*.v")):
        text = path.read_text()
        directives = [ln for ln in text.splitlines() if ln.startswith("`")]
        assert directives[0] == "`default_nettype none", path.name
        for line in text.splitlines():
            if re.match(r"\s*parameter\s+[A-Za-z_]", line):
                name = re.match(r"\s*parameter\s+(\w+)", line).group(1)
                assert name.isupper(), (path.name, name)
                assert "//" in line, f"{path.name}: parameter {name} has no comment"
