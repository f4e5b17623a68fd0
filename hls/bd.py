"""The Vivado block design around the HLS accelerator: the accelerator's AXI interfaces as its top function
declares them, the bundle -> HP port assignment, and build_bd.tcl rendered from templates/build_bd.tcl.j2.
The board's processing system (ports, clock, control address) comes from its record in boards.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jinja2

from tellme.models.errors import UserError

from .boards import Board, HpPort, get_board
from .config import AcceleratorConfig

DEFAULT_M_AXI_BUNDLE = "gmem"  # Vitis HLS's bundle for an m_axi port that names none
DEFAULT_S_AXILITE_BUNDLE = "control"
BD_NAME = "tellme_bd"
WORD_BITS = 128  # every m_axi port of the top (hls/kernels/common.h word_t)


# --- the accelerator's interfaces, read from its top function ---

@dataclass(frozen=True)
class Interfaces:
    """AXI bundles of the top function, in declaration order."""

    top: str
    source: str  # project path of the file defining the top
    m_axi: tuple[str, ...]  # bundle names -> IP pins m_axi_<bundle>
    control: str  # the s_axilite bundle -> IP pin s_axi_<bundle>
    ports: dict[str, str]  # C argument -> bundle (m_axi and s_axilite)


_PRAGMA = re.compile(r"^\s*#\s*pragma\s+HLS\s+interface\b(.*)$", re.I | re.M)
_OPTION = re.compile(r"(\w+)\s*=\s*([^\s]+)|(\w+)")
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


def _function_body(text: str, name: str) -> str | None:
    """The body (between its braces) of the C function `name` defined in text, or None."""
    for match in re.finditer(rf"\b{re.escape(name)}\s*\(", text):
        depth, i = 1, match.end()
        while i < len(text) and depth:  # skip the parameter list
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        rest = text[i:].lstrip()
        if not rest.startswith("{"):
            continue  # a declaration or a call
        start = len(text) - len(rest)
        depth, j = 0, start
        while j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
            if depth == 0:
                return text[start:j]
    return None


def parse_interfaces(project: Path, top: str) -> Interfaces:
    """Find the definition of `top` in the project's src/*.cpp (src/top.cpp first) and read its
    INTERFACE pragmas: m_axi bundles in order, and the one s_axilite bundle."""
    src = Path(project) / "src"
    files = sorted(src.glob("*.cpp"), key=lambda p: (p.name != "top.cpp", p.name))
    for path in files:
        body = _function_body(_COMMENTS.sub("", path.read_text()), top)
        if body is not None:
            break
    else:
        raise UserError(f"{src} defines no function {top}: regenerate the project (tellme hls)")
    m_axi: list[str] = []
    lite: list[str] = []
    ports: dict[str, str] = {}
    for match in _PRAGMA.finditer(body):
        options: dict[str, str] = {}
        words: list[str] = []
        for key, value, word in _OPTION.findall(match.group(1)):
            if key:
                options[key.lower()] = value
            else:
                words.append(word.lower())
        mode = options.get("mode", words[0] if words else "").lower()
        if mode == "m_axi":
            bundle = options.get("bundle", DEFAULT_M_AXI_BUNDLE)
            if bundle not in m_axi:
                m_axi.append(bundle)
        elif mode == "s_axilite":
            bundle = options.get("bundle", DEFAULT_S_AXILITE_BUNDLE)
            if bundle not in lite:
                lite.append(bundle)
        else:
            continue
        if "port" in options:
            ports[options["port"]] = bundle
    rel = path.relative_to(project).as_posix()
    if not m_axi:
        raise UserError(f"{rel}: {top} declares no m_axi interface: nothing would reach DDR")
    if len(lite) != 1:
        raise UserError(f"{rel}: {top} must have exactly one s_axilite bundle (found {len(lite)}: {lite})")
    return Interfaces(top=top, source=rel, m_axi=tuple(m_axi), control=lite[0], ports=ports)


# --- bundles on ports ---

@dataclass(frozen=True)
class Route:
    port: HpPort
    bundles: tuple[str, ...]
    smartconnect: str  # the SmartConnect cell in front of the port

    @property
    def shared(self) -> bool:
        return len(self.bundles) > 1


def assign_ports(bundles: tuple[str, ...], ports: tuple[HpPort, ...]) -> list[Route]:
    """One HP port per bundle, in the ports' order of preference, while ports last. The top declares its
    weight stripes first (they stream in lockstep, so each keeps a port to itself); bundles beyond the
    ports (the io bundle: params, hidden states, K/V writes, results) share the last port."""
    groups = [[b] for b in bundles[: len(ports)]]
    groups[-1] += list(bundles[len(ports):])
    return [Route(port, tuple(group), f"smc_{port.name.lower()}") for port, group in zip(ports, groups, strict=False)]


# --- build_bd.tcl ---

def ip_cell(top: str) -> str:
    """The accelerator's cell name in the block design (what pynq's Overlay calls it)."""
    return f"{top}_0"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: resources.files("tellme.hls").joinpath("templates", name).read_text()
        ),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True)
class BlockDesign:
    """Everything build_bd.tcl is rendered from."""

    design: str  # basename of the .bit and .hwh
    board: Board
    config: AcceleratorConfig
    interfaces: Interfaces
    routes: tuple[Route, ...]
    hls_ip_dir: str  # the exported IP, relative to the vivado/ folder

    @property
    def ip_cell(self) -> str:
        return ip_cell(self.config.top)

    @property
    def hp_width(self) -> int:
        return min(WORD_BITS, self.board.ps.hp_max_width)

    @property
    def ps_config(self) -> list[tuple[str, str]]:
        """Every PS CONFIG value the script sets: clock, control master, used and unused HP ports."""
        p = self.board.ps
        items = [(p.clock_key, f"{self.config.clock_mhz:g}")] + list(p.config.items())
        used = {r.port.name for r in self.routes}
        for port in p.hp_ports:
            items.append((port.enable, "1" if port.name in used else "0"))
            if port.name in used:
                items.append((port.width_key, str(self.hp_width)))
        return items

    @property
    def clock_sinks(self) -> list[str]:
        """Every clock input driven by the PL clock."""
        pins = [f"{self.ip_cell}/ap_clk", "rst_pl/slowest_sync_clk", f"ps/{self.board.ps.control_clock_pin}",
                "smc_control/aclk"]
        for route in self.routes:
            pins += [f"ps/{route.port.clock_pin}", f"{route.smartconnect}/aclk"]
        return pins

    @property
    def reset_sinks(self) -> list[str]:
        return [f"{self.ip_cell}/ap_rst_n", "smc_control/aresetn"] + [f"{r.smartconnect}/aresetn" for r in self.routes]

    def manifest_ports(self) -> dict:
        return {
            "ip": self.ip_cell,
            "control": {"bundle": self.interfaces.control, "port": self.board.ps.control_port,
                        "base_address": f"0x{self.board.ps.control_base:08X}"},
            "m_axi": {b: r.port.name for r in self.routes for b in r.bundles},
        }

    def render(self) -> str:
        return _environment().get_template("build_bd.tcl.j2").render(bd=self, bd_name=BD_NAME)


def block_design(design: str, config: AcceleratorConfig, interfaces: Interfaces, hls_ip_dir: str) -> BlockDesign:
    board = get_board(config.board)
    routes = assign_ports(interfaces.m_axi, board.ps.hp_ports)
    return BlockDesign(design, board, config, interfaces, tuple(routes), hls_ip_dir)
