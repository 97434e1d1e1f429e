"""Write rtl/tick_features_fields.vh from engine/wire/schema.py and the core layout.

Usage (from the repository root): ``python fpga/tick_features/gen_fields.py``.
``tests/fpga/test_layout.py`` fails when the committed header is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

HEADER_PATH = Path(__file__).resolve().parent / "rtl" / "tick_features_fields.vh"


def main() -> int:
    """Render the header and write it next to the RTL."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tickpath.kernels.fixedpoint.layout import render_verilog_header

    HEADER_PATH.write_text(render_verilog_header())
    print(f"wrote {HEADER_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
