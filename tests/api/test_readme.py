"""The README's "Use it as a library" section: its python code blocks run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Use it as a library"


def library_blocks() -> list[str]:
    """The python code blocks of the section, in order."""
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end >= 0 else None]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


def test_the_section_has_code_for_every_module():
    blocks = library_blocks()
    assert len(blocks) >= 4
    code = "\n".join(blocks)
    for module in ("analytics", "book", "options", "wire", "client"):
        assert f"tickpath.{module}" in code or f"from tickpath import {module}" in code, module


@pytest.mark.parametrize("index", range(len(library_blocks())))
def test_library_code_block_runs(tmp_path, index):
    # each block on its own, as a reader would paste it, outside the repository
    block = library_blocks()[index]
    script = tmp_path / f"block_{index}.py"
    script.write_text(block)
    out = subprocess.run(
        [sys.executable, "-P", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert out.returncode == 0, f"README block {index}:\n{block}\n{out.stderr[-3000:]}"
