"""Install pymesos 0.3.15 on Python 3.11+, where its ``http-parser`` dependency does not build.

``http-parser`` 0.9.0 (the last release, required by pymesos) ships a C file generated
by Cython 0.29.16 that includes ``longintrepr.h``, which moved in Python 3.11, so
``pip install pymesos`` fails while compiling it.  This installer, run with the
interpreter of the target environment, fetches the ``http-parser`` source release
from the package index (its sha256 is pinned), and then, in a scratch directory:

1. ``cython`` mode: regenerates ``http_parser/parser.c`` from the shipped
   ``parser.pyx`` with Cython 0.29.x (installed into the scratch directory only)
   and builds the package with its C extension;
2. ``pure`` mode: builds it without the C extension, through the package's own
   ``run_setup(with_binary=False)`` (what its setup does on PyPy); ``http_parser``
   then uses its pure-Python parser, which pymesos supports.

``auto`` (the default) tries ``cython`` and falls back to ``pure`` when there is no
working C compiler.  Then ``pymesos==0.3.15`` and ``kazoo`` are installed with pip
(``http-parser`` is already satisfied), and the result is checked by importing
``pymesos`` in a child process.  Nothing of either package is kept in this project.

Usage (from the repository root, with the project's virtual environment)::

    .venv/bin/python engine/cluster/install.py            # auto
    .venv/bin/python engine/cluster/install.py --mode pure

The module uses the standard library only, so it runs before the project itself
is installed.  It does nothing when a working pymesos is already there.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HTTP_PARSER_VERSION = "0.9.0"
HTTP_PARSER_SDIST = f"http-parser-{HTTP_PARSER_VERSION}.tar.gz"
HTTP_PARSER_SHA256 = "441d3a57c6227230f98aa97539da006fda0f8f4880bc4c5cd895ff2138a52621"
PYMESOS_REQUIREMENT = "pymesos==0.3.15"
KAZOO_REQUIREMENT = "kazoo>=2.9"
CYTHON_REQUIREMENT = "cython>=0.29.37,<3"  # 0.29.x generates C that builds on 3.11+
BUILD_TOOLS = ("setuptools>=68", "wheel")

# Builds the wheel without the C extension through http-parser's own setup entry point.
_PURE_BUILD = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("http_parser_setup", "setup.py")
module = importlib.util.module_from_spec(spec)
sys.argv = ["setup.py", "bdist_wheel", "--dist-dir", sys.argv[1]]
spec.loader.exec_module(module)
module.run_setup(False)
"""

_CHECK = (
    "import http_parser, pymesos; from http_parser.http import HttpParser; "
    "print(pymesos.__VERSION__, http_parser.__version__, HttpParser.__module__)"
)


class InstallError(RuntimeError):
    """A step of the installation failed; the message says which."""


def _run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = done.stdout.decode(errors="replace")[-4000:]
        raise InstallError(f"{' '.join(cmd[:4])} ... failed ({done.returncode}):\n{tail}")


def _pip(python: str, *args: str) -> list[str]:
    return [python, "-m", "pip", "--disable-pip-version-check", *args]


def installed_versions(python: str = sys.executable) -> tuple[str, str, str] | None:
    """Return ``(pymesos, http_parser, parser module)`` versions if pymesos imports, else None."""
    done = subprocess.run([python, "-c", _CHECK], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    pymesos_version, parser_version, parser_module = done.stdout.split()
    return pymesos_version, parser_version, parser_module


def _fetch_sdist(python: str, work: Path) -> Path:
    _run(
        _pip(
            python,
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--dest",
            str(work),
            f"http-parser=={HTTP_PARSER_VERSION}",
        )
    )
    sdist = work / HTTP_PARSER_SDIST
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != HTTP_PARSER_SHA256:
        raise InstallError(f"{sdist.name}: sha256 {digest} != pinned {HTTP_PARSER_SHA256}")
    with tarfile.open(sdist) as archive:
        if hasattr(tarfile, "data_filter"):  # 3.11.4+: refuse links and paths out of `work`
            archive.extractall(work, filter="data")
        else:
            archive.extractall(work)
    return work / f"http-parser-{HTTP_PARSER_VERSION}"


def _tools(python: str, work: Path, *requirements: str) -> dict[str, str]:
    """Install build tools into a scratch directory; return an environment that sees them."""
    target = work / "tools"
    _run(_pip(python, "install", "--quiet", "--target", str(target), *requirements))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), env.get("PYTHONPATH")]))
    return env


def _build_cython(python: str, source: Path, work: Path) -> Path:
    env = _tools(python, work, CYTHON_REQUIREMENT, *BUILD_TOOLS)
    parser_c = source / "http_parser" / "parser.c"
    parser_c.unlink()
    _run(
        [python, "-m", "cython", "-o", str(parser_c), str(source / "http_parser" / "parser.pyx")],
        env=env,
    )
    wheels = work / "wheels-cython"
    # The regenerated C file must be compiled, so the build runs with the scratch tools.
    _run(
        _pip(python, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)),
        env=env,
    )
    return _single_wheel(wheels)


def _build_pure(python: str, source: Path, work: Path) -> Path:
    env = _tools(python, work, *BUILD_TOOLS)
    wheels = work / "wheels-pure"
    _run([python, "-c", _PURE_BUILD, str(wheels)], cwd=source, env=env)
    return _single_wheel(wheels)


def _single_wheel(folder: Path) -> Path:
    wheels = sorted(folder.glob("http_parser-*.whl"))
    if len(wheels) != 1:
        raise InstallError(f"expected one http_parser wheel in {folder}, found {wheels}")
    return wheels[0]


def install(mode: str = "auto", python: str = sys.executable, force: bool = False) -> str:
    """Install http-parser (built for this Python), pymesos and kazoo; return a summary line.

    ``mode`` is ``auto``, ``cython`` or ``pure`` (see the module docstring).
    """
    if mode not in ("auto", "cython", "pure"):
        raise ValueError(f"mode must be auto, cython or pure, not {mode!r}")
    if not force:
        versions = installed_versions(python)
        if versions is not None:
            return "already installed: pymesos {} http-parser {} ({})".format(*versions)
    with tempfile.TemporaryDirectory(prefix="tickpath-pymesos-") as scratch:
        work = Path(scratch)
        source = _fetch_sdist(python, work)
        if mode == "pure":
            wheel = _build_pure(python, source, work)
        else:
            pristine = work / "pristine"
            shutil.copytree(source, pristine)
            try:
                wheel = _build_cython(python, source, work)
            except InstallError as exc:
                if mode == "cython":
                    raise
                print(f"C extension build failed, building without it:\n{exc}", file=sys.stderr)
                wheel = _build_pure(python, pristine, work)
        _run(_pip(python, "install", "--force-reinstall", "--no-deps", str(wheel)))
        _run(_pip(python, "install", PYMESOS_REQUIREMENT, KAZOO_REQUIREMENT))
    versions = installed_versions(python)
    if versions is None:
        raise InstallError("pymesos still does not import after the installation")
    return "installed: pymesos {} http-parser {} ({})".format(*versions)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``python engine/cluster/install.py [--mode M] [--force]``."""
    parser = argparse.ArgumentParser(
        prog="python engine/cluster/install.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--mode", choices=("auto", "cython", "pure"), default="auto")
    parser.add_argument("--force", action="store_true", help="rebuild even if pymesos imports")
    args = parser.parse_args(argv)
    try:
        print(install(args.mode, force=args.force))
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
