"""The README's result tables are the schema's: generated, and checked field by field."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tickpath.engine.wire import doc
from tickpath.engine.wire import schema as s

README = Path(__file__).resolve().parents[2] / "README.md"

_TYPES = {"u8": "u1", "i8": "i1", "u16": "<u2", "u32": "<u4", "u64": "<u8", "i64": "<i8",
          "f64": "<f8"}  # fmt: skip


def test_readme_tables_are_the_generated_ones():
    assert doc.main(["--check", str(README)]) == 0


def _documented(section: str) -> dict[str, tuple[int, np.dtype]]:
    rows = re.findall(r"^\| (\d+) \| (\w+) \| (\w+)(?:\[(\d+)\])? \| (\d+) \|", section, re.M)
    out = {}
    for offset, name, typ, count, size in rows:
        dt = np.dtype((_TYPES[typ], (int(count),))) if count else np.dtype(_TYPES[typ])
        assert dt.itemsize == int(size), (name, size)
        out[name] = (int(offset), dt)
    return out


@pytest.mark.parametrize("title, kind, topic", doc.RESULTS)
def test_readme_result_tables_match_schema(title, kind, topic):
    """Parse the README (not the generator) back into offsets and types: every byte is there."""
    dtype = s.RECORD_DTYPES[kind]
    text = README.read_text()
    common = text.split("#### Common block", 1)[1].split("####", 1)[0]
    section = text.split(f"#### {title} (kind {kind},", 1)[1].split("####", 1)[0]
    assert f"{dtype.itemsize} bytes" in section.splitlines()[0]
    documented = _documented(common) | _documented(section)
    actual = {name: (off, dt) for name, (dt, off, *_) in dtype.fields.items()}
    assert documented == actual
    assert sum(dt.itemsize for _, dt in documented.values()) == dtype.itemsize  # no hole


def test_every_result_kind_is_documented():
    documented = {kind for _, kind, _ in doc.RESULTS}
    assert documented == set(s.ANALYTIC_OF_KIND)


def test_an_undocumented_field_fails_the_generator(monkeypatch):
    grown = np.dtype(s.RESULT_BAR.descr + [("extra", "<f8")])
    monkeypatch.setattr(s, "RESULT_BAR", grown)
    with pytest.raises(KeyError, match="extra"):
        doc.generate()


def test_check_reports_stale_tables(tmp_path, capsys):
    stale = tmp_path / "README.md"
    stale.write_text(
        README.read_text().replace("| 96 | n_trades | u32 |", "| 96 | n_trades | u64 |")
    )
    assert doc.main(["--check", str(stale)]) == 1
    assert "differ from the schema" in capsys.readouterr().err
    assert doc.main(["--write", str(stale)]) == 0
    assert doc.main(["--check", str(stale)]) == 0


def test_readme_stats_table_lists_every_key():
    """The stats keys the engine sends (extensions aside) are the README's, and back."""
    from tickpath.engine.config import load_config
    from tickpath.engine.service.engine import STATS_VERSION, StreamProcessor

    config = load_config(None, {"analytics.book_orders": 1024})
    stats = StreamProcessor(config).stats(0)
    section = README.read_text().split("### The stats message", 1)[1].split("\n## ", 1)[0]
    keys = set()
    for cell in re.findall(r"^\| (`[^|]+) \|", section, re.M):
        keys |= {name.split(".")[0] for name in re.findall(r"`([\w.<>]+)`", cell)}
    # objects the engine adds when a part is on (extensions, ingest.slice_records,
    # scheduling.realtime_priority)
    extensions = {"journal", "security", "dispatch", "requests", "fpga", "state_transfer"}
    extensions |= {"slicing", "scheduling"}
    assert keys - extensions == set(stats)
    assert stats["version"] == STATS_VERSION == 2
    # topics: one list per analytic of the README's "<analytic>" names, a seq per symbol
    assert set(stats["topics"]) == set(stats["processed"])  # quote, trade, bar, book
    assert {len(seqs) for seqs in stats["topics"].values()} == {config.analytics.n_symbols}
    assert f"| `version` | int | {STATS_VERSION}:" in section
    assert set(stats["book"]) == set(re.findall(r"`book\.(\w+)`", section))
