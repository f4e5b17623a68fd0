"""`tellme build`: a converted model + a board -> a design folder the host loads with --bitstream.

Steps: estimate whether the design fits the board; write the HLS project (tellme hls) into
<design>/hls and the Vivado script into <design>/vivado/build_bd.tcl; check the installed tools
(xilinx_tools.py: vitis_hls or vitis-run, release, Y2K22 patch); run `vitis_hls -f run_hls.tcl` or
`vitis-run --mode hls --tcl run_hls.tcl` (csynth and IP export) and `vivado -mode batch -source
build_bd.tcl` (block design, synthesis, implementation, bitstream, .xsa); check the top's registers in
the driver header and the .hwh against its argument list; copy <design>.bit, .hwh and .xsa next to
manifest.json and fill the manifest with figures from the HLS and Vivado reports. --dry-run writes
and checks everything and runs no tool. The folder layout is documented in bitstreams/README.md.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tellme.host.design_manifest import (
    HLS_IP_VERSION,
    HLS_LIBRARY,
    HLS_VENDOR,
    MANIFEST,
    is_design_folder,
    new_manifest,
    read_design,
    write_manifest,
)
from tellme.host.top_interface import TopInterface
from tellme.models.atomic import write_atomic
from tellme.models.errors import UserError
from tellme.models.interrupts import child_group
from tellme.models.output_path import check_output

from .bd import Interfaces, block_design, parse_interfaces
from .config import AcceleratorConfig
from .reports import ReportError, parse_csynth_xml, parse_timing_summary, parse_utilization
from .top_args import check_hwh_registers, check_pragmas, header_registers
from .xilinx_tools import HLS_KINDS, HlsTool, check_tools, find_hls, find_vivado

if TYPE_CHECKING:
    from .design import Design

HLS_STEPS = "csynth export"  # run_hls.tcl's steps for a bitstream: no C simulation or co-simulation
OUTPUTS = ("bit", "hwh", "xsa")  # what build_bd.tcl leaves in vivado/out/ and the build copies up
_NAME_CHARS = re.compile(r"[^a-z0-9._-]+")
# log lines worth echoing as progress: our own markers, errors, and the tools' phase lines
_PROGRESS = re.compile(r"^(tellme:|ERROR:|CRITICAL WARNING:)|(Starting|Finished|Launched|Running) ")


class BuildError(UserError):
    """A tool failed or left out an expected output: one line naming the log to read."""


@dataclass(frozen=True)
class HlsProject:
    """A generated HLS project as run_hls.tcl will build it."""

    path: Path
    config: AcceleratorConfig
    project: str  # open_project name: the folder Vitis HLS creates inside path
    solution: str
    interfaces: Interfaces

    @property
    def solution_dir(self) -> Path:
        return self.path / self.project / self.solution

    @property
    def csynth_xml(self) -> Path:
        return self.solution_dir / "syn" / "report" / "csynth.xml"

    @property
    def ip_dir(self) -> Path:
        return self.solution_dir / "impl" / "ip"


def read_hls_project(path: Path) -> HlsProject:
    """The project's config.json, and what its run_hls.tcl will do, checked against each other:
    the build needs the top, the part, the clock, IP export and the TELLME_HLS_STEPS switch."""
    config = AcceleratorConfig.from_dict(json.loads((path / "config.json").read_text()))
    tcl = (path / "run_hls.tcl").read_text()

    def one(pattern: str, what: str) -> str:
        match = re.search(pattern, tcl, re.M)
        if match is None:
            raise RuntimeError(f"{path / 'run_hls.tcl'} has no {what}: the generator and tellme build disagree")
        return match.group(1)

    project = one(r"^\s*open_project\s+(?:-reset\s+)?(\S+)", "open_project")
    solution = one(r"^\s*open_solution\s+(?:-reset\s+)?(\S+)", "open_solution")
    for value, pattern, what in (
        (config.top, r"^\s*set_top\s+(\S+)", "set_top"),
        (config.part, r"^\s*set_part\s+\{?([^\s}]+)", "set_part"),
    ):
        if one(pattern, what) != value:
            raise RuntimeError(f"{path / 'run_hls.tcl'}: {what} is not {value} (config.json)")
    one(r"^\s*(export_design)\b", "export_design")
    one(r"(TELLME_HLS_STEPS)", "TELLME_HLS_STEPS switch")
    return HlsProject(path, config, project, solution, parse_interfaces(path, config.top))


def design_name(design: Design) -> str:
    """<model>-<board>-p<weight ports>, lower case, safe as a file name and a Tcl word."""
    return sanitize(f"{design.name}-{design.config.board}-p{design.config.weight_ports}")


def sanitize(name: str) -> str:
    cleaned = _NAME_CHARS.sub("-", name.lower()).strip("-.")
    return cleaned or "design"


def _replaceable(out: Path, force: bool) -> None:
    """An existing out may be replaced if it is empty, or a design that was never built (dry run or a
    failed build: everything in it is regenerated), or with force a built design; never anything else."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"{out} exists and is not a folder: choose another --out")
    if not any(out.iterdir()):
        return
    if not is_design_folder(out):
        raise UserError(f"{out} exists and is not a tellme design folder: choose another --out")
    manifest = json.loads((out / MANIFEST).read_text())
    if manifest.get("built") and not force:
        raise UserError(f"{out} holds a built design: choose another --out or pass --force to replace it")
    shutil.rmtree(out)


def _commands(out: Path, hls: HlsTool) -> list[tuple[str, list[str], Path, dict[str, str]]]:
    """(tool, argv, working folder, extra environment) of each step; `hls` says which form runs run_hls.tcl
    (vitis-run cannot pass -tclargs, so the steps go through the environment in both)."""
    return [
        (hls.kind, hls.argv(), out / "hls", {"TELLME_HLS_STEPS": HLS_STEPS}),
        ("vivado", ["vivado", "-mode", "batch", "-source", "build_bd.tcl", "-notrace", "-nojournal", "-nolog"],
         out / "vivado", {}),
    ]


def _list_steps(out: Path, name: str, hls: HlsTool | None, label: str) -> list:
    """Print the steps; without an installed Vitis HLS both forms of the HLS step, each with its releases."""
    forms = [hls] if hls is not None else [HlsTool(kind) for kind in HLS_KINDS]
    commands = _commands(out, forms[0])
    print(f"{label}:")
    for i, (_, argv, cwd, env) in enumerate(commands, 1):
        if i == 1:
            for j, form in enumerate(forms):
                where = f"{form.kind} {form.path}" if form.path else form.releases
                lead = f"  {i}." if j == 0 else "     or"
                print(f"{lead} {_show(form.argv(), cwd, env)}   # {where}")
        else:
            print(f"  {i}. {_show(argv, cwd, env)}")
    print(f"  {len(commands) + 1}. copy vivado/out/{name}.bit, .hwh and .xsa to {out}/, figures into {MANIFEST}")
    return commands


def _show(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    assignments = [f"{k}={shlex.quote(v)}" for k, v in env.items()]
    return f"(cd {shlex.quote(str(cwd))} && {' '.join(assignments + [shlex.join(argv)])})"


def _elapsed(start: float) -> str:
    seconds = int(time.monotonic() - start)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def run_tool(tool: str, argv: list[str], cwd: Path, env: dict[str, str], log_path: Path) -> None:
    """Run a tool, its output into log_path, progress lines echoed to stderr; BuildError on failure."""
    start = time.monotonic()
    print(f"running {tool} in {cwd} (log: {log_path})", file=sys.stderr, flush=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    first_error = ours = last = ""
    with open(log_path, "w") as log, child_group(  # interrupted, the tool and its children are stopped
        argv, cwd=cwd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            line = line.rstrip()
            if line:
                last = line
            if "tellme: error:" in line and not ours:
                ours = line  # build_bd.tcl's own checks say what to do (later copies are the Tcl trace)
            elif line.startswith("ERROR:") and not first_error:
                first_error = line  # the root cause, usually; later ones tend to be consequences
            if _PROGRESS.search(line):
                print(f"  [{tool} {_elapsed(start)}] {line[:160]}", file=sys.stderr, flush=True)
        code = proc.wait()
    if code:
        reason = ours or first_error or last
        raise BuildError(f"{tool} failed (exit {code}) after {_elapsed(start)}: {reason[:300]} (log: {log_path})")
    print(f"{tool} done in {_elapsed(start)}", file=sys.stderr, flush=True)


def _expect(paths: list[Path], tool: str, log_path: Path) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise BuildError(f"{tool} finished but left no {', '.join(missing)} (log: {log_path})")


def build_design(design: Design, out: Path | None, *, dry_run: bool = False, force: bool = False) -> int:
    """Estimates (a design that does not fit stops here), the HLS project, the block design script and
    the manifest; then, unless dry_run, Vitis HLS and Vivado. Returns the exit code."""
    config = design.config
    if design.folder is None:
        raise UserError(f"design {design.name} was made from a shape: building needs a model folder (--model)")
    from .estimate import describe_report, estimate_report

    fit, speed = design.fit(), design.speed()
    report = estimate_report(design)
    print(describe_report(design, report))
    for warning in fit.warnings:
        print(f"tellme: warning: {warning}", file=sys.stderr)
    fit.check()

    if out is None:
        name = design_name(design)
        out = Path("bitstreams") / config.board / name
    else:
        name = sanitize(out.resolve().name)
    check_output(out, folder=True, inputs=[design.folder.path], what=f"--out {out}")
    _replaceable(out, force)
    with _removed_unless_written(out):
        return _write_and_run(design, out, name, {"report": report, "fit": fit.to_dict(), "speed": speed.to_dict()},
                              dry_run)


@contextmanager
def _removed_unless_written(out: Path) -> Iterator[None]:
    """If the run fails before the design's manifest is written, the folders it created are removed
    again: a refused or broken run leaves nothing behind. Once the manifest is there the folder stays,
    logs and all (a failed tool run is worth reading)."""
    created = out
    while not created.parent.exists() and created.parent != created:
        created = created.parent
    fresh = not created.exists()
    try:
        yield
    except BaseException:
        if fresh and not (out / MANIFEST).is_file():
            shutil.rmtree(created, ignore_errors=True)
        raise


def _write_and_run(design: Design, out: Path, name: str, estimate: dict, dry_run: bool) -> int:
    """The HLS project, the block design script and the manifest; then, unless dry_run, the tools."""
    config = design.config
    out.mkdir(parents=True, exist_ok=True)

    design.write_project(out / "hls", force=True)  # exactly what `tellme hls` writes
    project = read_hls_project(out / "hls")
    ip_rel = os.path.relpath(project.ip_dir, out / "vivado")
    bd = block_design(name, project.config, project.interfaces, Path(ip_rel).as_posix())
    (out / "vivado").mkdir(exist_ok=True)
    write_atomic(out / "vivado" / "build_bd.tcl", bd.render())
    check_pragmas(project.interfaces.ports, design.top_args, f"{out / 'hls' / project.interfaces.source}")
    vlnv = f"{HLS_VENDOR}:{HLS_LIBRARY}:{config.top}:{HLS_IP_VERSION}"
    manifest = new_manifest(
        design=name, board=config.board, part=config.part, board_part=bd.board.board_part,
        clock_mhz=config.clock_mhz, top=config.top, accelerator=config.to_dict(),
        ports={**bd.manifest_ports(), "vlnv": vlnv}, interface=design.top_args.interface.to_dict(),
        model_name=design.name, model_hash=design.folder.model_hash, model_config=design.model,
        max_context=design.context, estimate=estimate,
    )
    write_manifest(out, manifest)

    routes = ", ".join(f"{'+'.join(r.bundles)} -> {r.port.name}" for r in bd.routes)
    print(f"design {name}: {config.top} on {config.board} ({config.part}, {config.clock_mhz:g} MHz); "
          f"m_axi {routes}; s_axi_{bd.interfaces.control} -> {bd.board.ps.control_port} "
          f"at 0x{bd.board.ps.control_base:08X}")
    print(f"wrote {out}/: hls/ (project), vivado/build_bd.tcl, {MANIFEST}")
    hls, vivado = find_hls(), find_vivado()
    commands = _list_steps(out, name, hls, "would run" if dry_run else "steps")
    if dry_run:
        state = ", ".join(f"{t} {'at ' + p if p else 'not on PATH'}"
                          for t, p in ((hls.kind if hls else "vitis_hls/vitis-run", hls and hls.path),
                                       ("vivado", vivado[0])))
        print(f"dry run: nothing run ({state})")
        return 0
    missing = "vitis_hls (or vitis-run)" if hls is None else "vivado" if vivado[0] is None else None
    if missing:
        raise UserError(
            f"{missing} not found on PATH (source the AMD tools' settings64.sh); the design is written to "
            f"{out}: copy it to a machine with Vitis HLS and Vivado and run the commands listed above there"
        )
    assert hls is not None
    for warning in check_tools(hls, vivado):
        print(f"tellme: warning: {warning}", file=sys.stderr)
    return _run_build(out, name, project, manifest, commands)


def _header_registers(project: HlsProject, interface: TopInterface) -> dict[str, list[int]] | None:
    """The top's registers from the exported driver header, checked against its arguments."""
    try:
        registers = header_registers(project.ip_dir, project.config.top, interface)
    except UserError as exc:
        raise BuildError(f"the exported IP does not match the top's arguments: {exc}") from None
    if registers is None:
        print(f"tellme: warning: no driver header x{project.config.top}_hw.h under {project.ip_dir}: register "
              "offsets are checked against the .hwh only", file=sys.stderr)
    return registers


def built_summary(out: Path, name: str, hls: dict, utilization: dict, timing: dict) -> str:
    """The line printed after a build; a figure the reports leave out (N/A) reads n/a."""
    used, avail = utilization["used"], utilization["available"]
    parts = [f"{k.upper()} {_figure(used[k])}/{_figure(avail.get(k))}" for k in ("lut", "ff", "bram", "uram", "dsp")
             if k in used]
    worst = hls["latency_cycles"]["worst"]
    latency = worst if worst is not None else "undefined"
    return (f"built {out / (name + '.bit')}, {name}.hwh and {name}.xsa: {', '.join(parts)}; "
            f"WNS {_figure(timing['wns_ns'])} ns; HLS worst-case latency {latency} cycles")


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def _run_build(out: Path, name: str, project: HlsProject, manifest: dict, commands: list) -> int:
    logs = out / "logs"
    (tool, argv, cwd, env) = commands[0]
    run_tool(tool, argv, cwd, env, logs / f"{tool}.log")
    _expect([project.csynth_xml, project.ip_dir / "component.xml"], tool, logs / f"{tool}.log")
    interface = read_design(out).interface
    registers = _header_registers(project, interface)
    (tool, argv, cwd, env) = commands[1]
    run_tool(tool, argv, cwd, env, logs / f"{tool}.log")
    vivado_dir = out / "vivado"
    outputs = {ext: vivado_dir / "out" / f"{name}.{ext}" for ext in OUTPUTS}
    reports = {k: vivado_dir / "reports" / f"{k}.rpt" for k in ("utilization", "timing_summary")}
    _expect([*outputs.values(), *reports.values()], tool, logs / f"{tool}.log")
    try:
        hls = parse_csynth_xml(project.csynth_xml)
        utilization = parse_utilization(reports["utilization"])
        timing = parse_timing_summary(reports["timing_summary"])
    except ReportError as exc:
        raise BuildError(str(exc)) from None
    try:
        check_hwh_registers(outputs["hwh"], manifest["ports"]["ip"], interface, registers)
    except UserError as exc:
        raise BuildError(f"{exc} (log: {logs / (tool + '.log')})") from None
    summary = built_summary(out, name, hls, utilization, timing)  # what can fail, before anything says built

    for ext, src in outputs.items():
        write_atomic(out / f"{name}.{ext}", src.read_bytes())
    manifest.update(
        built=True,
        registers=registers,
        tools={"vitis_hls": hls.pop("tool"), "vivado": utilization.pop("tool") or timing.get("tool")},
        hls=hls,
        vivado={"utilization": utilization, "timing": {k: v for k, v in timing.items() if k != "tool"}},
    )
    write_manifest(out, manifest)  # the last write: built=true only once everything else is in place
    print(summary)
    if not timing["met"]:
        print(
            f"tellme: warning: timing not met (WNS {timing['wns_ns']:g} ns, WHS {timing['whs_ns']} ns): the "
            f"bitstream may misbehave at {project.config.clock_mhz:g} MHz; rebuild with a lower --set clock_mhz",
            file=sys.stderr,
        )
        return 1
    return 0
