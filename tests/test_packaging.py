"""The installed package: one ``tickpath`` namespace, complete, and alone in it.

* the explicit package list in pyproject.toml names every package folder;
* no module of the repository imports a bare ``engine`` or ``kernels`` (generic
  top-level names other distributions install too);
* tickpath and PyPI's unrelated ``kernels`` package work side by side in one venv;
* the private numba attributes that keep the kernel cache honest still take effect.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"tickpath.engine": REPO / "engine", "tickpath.kernels": REPO / "kernels"}
API_FOLDER = REPO / "engine" / "api"  # the `tickpath` package itself


def _isolated_python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` as a user would: outside the repository, nothing of it on sys.path."""
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-P", "-c", code],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_package_list_names_every_package_folder():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {
        "tickpath": "engine/api",
        "tickpath.engine": "engine",
        "tickpath.kernels": "kernels",
    }
    found = {"tickpath"}
    for name, root in FOLDERS.items():
        for init in root.rglob("__init__.py"):
            folder = init.parent
            if folder == API_FOLDER or "sim_build" in folder.parts:
                continue
            found.add(".".join([name, *folder.relative_to(root).parts]))
    assert sorted(config["packages"]) == sorted(found)


def _python_files() -> list[Path]:
    tracked = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    return [REPO / f for f in tracked if (REPO / f).exists()]


def test_no_bare_engine_or_kernels_import():
    bare = []
    for path in _python_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] in {"engine", "kernels"}:
                    bare.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
    assert not bare, "bare imports (use tickpath.engine / tickpath.kernels):\n" + "\n".join(bare)


def test_installed_tickpath_is_a_package_outside_the_source_folders_or_editable(tmp_path):
    out = _isolated_python(
        "import tickpath, tickpath.engine, tickpath.kernels, pathlib; "
        "print(pathlib.Path(tickpath.__file__).parent / 'py.typed')",
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).is_file()  # typed: py.typed ships with the package


def test_tickpath_and_pypi_kernels_in_one_venv(tmp_path):
    """PyPI's ``kernels`` (Hugging Face; installed by the dev extra) and tickpath coexist."""
    code = (
        "import tickpath, kernels; "
        "from tickpath.options import black_scholes; "
        "from kernels import get_kernel; "
        "import tickpath.kernels as ours, pathlib; "
        "print(pathlib.Path(kernels.__file__).parent); print(pathlib.Path(ours.__file__).parent)"
    )
    out = _isolated_python(code, tmp_path, HF_HUB_OFFLINE="1")
    assert out.returncode == 0, out.stderr[-3000:]
    theirs, ours = out.stdout.split()
    assert theirs != ours and Path(theirs).name == "kernels"
    assert not (Path(theirs) / "batch.py").exists()  # nothing of ours mixed into theirs


def test_python_dash_m_tickpath(tmp_path):
    code = "import runpy, sys; sys.argv[1:] = ['--help']; "
    code += "runpy.run_module('tickpath', run_name='__main__')"
    out = _isolated_python(code, tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("usage: tickpath"), out.stderr


DEPENDENT_MODULE = """
import dep
from numba import njit
from tickpath.kernels.cpu.cache import stamp_dependencies

@njit(cache=True)
def f(x):
    return x + dep.A

STAMPED = stamp_dependencies(globals(), [dep])
f(1)
print(STAMPED, sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values()))
"""


def test_numba_cache_stamp_still_takes_effect(tmp_path):
    """stamp_dependencies relies on numba internals; an edit of a dependency must miss the cache.

    ``dep.A`` is frozen into ``f`` at compile time, so a cache keyed on ``f``'s own file
    alone would serve a stale kernel after ``dep.py`` changes.
    """
    (tmp_path / "kmod.py").write_text(DEPENDENT_MODULE)
    (tmp_path / "dep.py").write_text("A = 1\n")
    cache = tmp_path / "cache"

    def run() -> tuple[int, int, int]:
        out = _isolated_python(
            f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import kmod",
            tmp_path,
            NUMBA_CACHE_DIR=str(cache),
        )
        assert out.returncode == 0, out.stderr[-3000:]
        stamped, hits, misses = map(int, out.stdout.split())
        return stamped, hits, misses

    assert run() == (1, 0, 1)  # compiled and cached
    assert run() == (1, 1, 0)  # loaded from the cache
    (tmp_path / "dep.py").write_text("A = 2  # edited\n")
    assert run() == (1, 0, 1)  # the dependency changed: compiled again, not loaded stale


@pytest.mark.parametrize("module", ["tickpath.kernels.cpu.streaming", "tickpath.kernels.cpu.book"])
def test_frame_kernels_are_stamped(module):
    """Every cached dispatcher of the frame kernels carries the dependency digest."""
    import importlib

    from numba.core.registry import CPUDispatcher

    namespace = vars(importlib.import_module(module))
    dispatchers = [
        v
        for v in namespace.values()
        if isinstance(v, CPUDispatcher) and v.__module__ == module and v._cache is not None
    ]
    assert dispatchers
    for d in dispatchers:
        stamp = getattr(d._cache._cache_file, "_source_stamp", None)
        assert isinstance(stamp, tuple) and len(stamp) == 2, d
