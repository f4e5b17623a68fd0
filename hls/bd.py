"""The Vivado block design around the HLS accelerator: per-board processing-system data (IP, board part,
HP ports, control port, PL clock), the accelerator's AXI interfaces as its top function declares them,
the bundle -> HP port assignment, and build_bd.tcl rendered from templates/build_bd.tcl.j2.

Port order on each PS follows its DDR controller: on Zynq UltraScale+ HP1 and HP2 share one DDR port,
so HP0, HP1, HP3 come first (TeLLMe's choice on the KV260) and HP2 last; on Zynq-7000 HP0/HP1 and
HP2/HP3 share the two AFI paths to DDR, so HP0, HP2, then HP1, HP3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import jinja2

from tellme.models.errors import UserError

from .config import AcceleratorConfig

DEFAULT_M_AXI_BUNDLE = "gmem"  # Vitis HLS's bundle for an m_axi port that names none
DEFAULT_S_AXILITE_BUNDLE = "control"
BD_NAME = "tellme_bd"


@dataclass(frozen=True)
class HpPort:
    """A PS slave port to DDR: interface pin, the CONFIG keys that enable it and set its width, its clock."""

    name: str
    enable: str
    width_key: str
    clock_pin: str


@dataclass(frozen=True)
class Platform:
    """What build_bd.tcl needs to know about a board's processing system."""

    board: str
    family: str  # "zynqmp" or "zynq7"
    ps_ip: str  # VLNV without version: Vivado picks the installed one
    ps_rule: str  # board automation rule that applies the board preset (DDR, MIO, clocks)
    ps_rule_config: str
    board_part_glob: str  # for get_board_parts: any installed revision of the board files
    board_part: str  # the revision we document (manifest, README)
    board_connections: str  # carrier connection for a SOM board part, else ""
    board_files_hint: str  # where to get the board files when Vivado lacks them
    hp_ports: tuple[HpPort, ...]  # in order of preference
    hp_max_width: int
    control_port: str
    control_clock_pin: str
    control_base: int
    clock_pin: str  # PL clock out of the PS
    reset_pin: str  # PL reset out of the PS (active low)
    clock_key: str  # CONFIG key of the PL clock frequency (MHz)
    ps_config: dict[str, str] = field(default_factory=dict)  # always set: control master on, others off
    address_space: str = "ps/Data"


def _mpsoc_hp(n: int) -> HpPort:
    gp = n + 2  # S_AXI_GP2..GP5 are HP0..HP3
    return HpPort(f"S_AXI_HP{n}_FPD", f"PSU__USE__S_AXI_GP{gp}", f"PSU__SAXIGP{gp}__DATA_WIDTH", f"saxihp{n}_fpd_aclk")


def _zynq7_hp(n: int) -> HpPort:
    return HpPort(f"S_AXI_HP{n}", f"PCW_USE_S_AXI_HP{n}", f"PCW_S_AXI_HP{n}_DATA_WIDTH", f"S_AXI_HP{n}_ACLK")


_MPSOC = dict(
    family="zynqmp",
    ps_ip="xilinx.com:ip:zynq_ultra_ps_e",
    ps_rule="xilinx.com:bd_rule:zynq_ultra_ps_e",
    ps_rule_config='apply_board_preset "1"',
    hp_ports=tuple(_mpsoc_hp(n) for n in (0, 1, 3, 2)),
    hp_max_width=128,
    control_port="M_AXI_HPM0_FPD",
    control_clock_pin="maxihpm0_fpd_aclk",
    control_base=0xA000_0000,
    clock_pin="pl_clk0",
    reset_pin="pl_resetn0",
    clock_key="PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ",
    ps_config={
        "PSU__FPGA_PL0_ENABLE": "1",
        "PSU__USE__M_AXI_GP0": "1",  # HPM0_FPD: the accelerator's control registers
        "PSU__MAXIGP0__DATA_WIDTH": "32",
        "PSU__USE__M_AXI_GP1": "0",  # HPM1_FPD and HPM0_LPD unused (presets may enable them)
        "PSU__USE__M_AXI_GP2": "0",
    },
)

PLATFORMS: dict[str, Platform] = {
    "kv260": Platform(
        board="kv260",
        board_part_glob="*:kv260_som:*",
        board_part="xilinx.com:kv260_som:part0:1.4",
        board_connections="som240_1_connector xilinx.com:kv260_carrier:som240_1_connector:1.3",
        board_files_hint="install the Kria K26 SOM and KV260 carrier board files from the Vivado board store",
        **_MPSOC,
    ),
    "zcu104": Platform(
        board="zcu104",
        board_part_glob="*:zcu104:*",
        board_part="xilinx.com:zcu104:part0:1.1",
        board_connections="",
        board_files_hint="the ZCU104 board files ship with Vivado; reinstall Vivado with Zynq UltraScale+ devices",
        **_MPSOC,
    ),
    "pynq-z2": Platform(
        board="pynq-z2",
        family="zynq7",
        ps_ip="xilinx.com:ip:processing_system7",
        ps_rule="xilinx.com:bd_rule:processing_system7",
        ps_rule_config='make_external "FIXED_IO, DDR" apply_board_preset "1" Master "Disable" Slave "Disable"',
        board_part_glob="*:pynq-z2:*",
        board_part="tul.com.tw:pynq-z2:part0:1.0",
        board_connections="",
        board_files_hint="install the PYNQ-Z2 board files from TUL into <Vivado>/data/boards/board_files",
        hp_ports=tuple(_zynq7_hp(n) for n in (0, 2, 1, 3)),
        hp_max_width=64,
        control_port="M_AXI_GP0",
        control_clock_pin="M_AXI_GP0_ACLK",
        control_base=0x4000_0000,
        clock_pin="FCLK_CLK0",
        reset_pin="FCLK_RESET0_N",
        clock_key="PCW_FPGA0_PERIPHERAL_FREQMHZ",
        ps_config={
            "PCW_EN_CLK0_PORT": "1",
            "PCW_EN_RST0_PORT": "1",
            "PCW_USE_M_AXI_GP0": "1",  # GP0: the accelerator's control registers
            "PCW_USE_M_AXI_GP1": "0",
        },
    ),
}


def get_platform(board: str) -> Platform:
    if board not in PLATFORMS:
        raise UserError(f"no block design for board {board!r}: choose one of {', '.join(PLATFORMS)}")
    return PLATFORMS[board]


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
    """One HP port per bundle while ports last. With more bundles than ports the first bundle (the
    weight stream, which every top declares first) keeps a port to itself and the others share the
    remaining ports round robin."""
    if len(bundles) <= len(ports):
        groups = [[b] for b in bundles]
    elif len(ports) == 1:
        groups = [list(bundles)]
    else:
        groups = [[bundles[0]]] + [[] for _ in ports[1:]]
        for i, bundle in enumerate(bundles[1:]):
            groups[1 + i % (len(ports) - 1)].append(bundle)
    return [
        Route(port, tuple(group), f"smc_{port.name.lower()}")
        for port, group in zip(ports, groups, strict=False)
        if group
    ]


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
    platform: Platform
    config: AcceleratorConfig
    interfaces: Interfaces
    routes: tuple[Route, ...]
    hls_ip_dir: str  # the exported IP, relative to the vivado/ folder

    @property
    def ip_cell(self) -> str:
        return ip_cell(self.config.top)

    @property
    def hp_width(self) -> int:
        return min(self.config.axi_width, self.platform.hp_max_width)

    @property
    def ps_config(self) -> list[tuple[str, str]]:
        """Every PS CONFIG value the script sets: clock, control master, used and unused HP ports."""
        p = self.platform
        items = [(p.clock_key, f"{self.config.clock_mhz:g}")] + list(p.ps_config.items())
        used = {r.port.name for r in self.routes}
        for port in p.hp_ports:
            items.append((port.enable, "1" if port.name in used else "0"))
            if port.name in used:
                items.append((port.width_key, str(self.hp_width)))
        return items

    @property
    def clock_sinks(self) -> list[str]:
        """Every clock input driven by the PL clock."""
        pins = [f"{self.ip_cell}/ap_clk", "rst_pl/slowest_sync_clk", f"ps/{self.platform.control_clock_pin}",
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
            "control": {"bundle": self.interfaces.control, "port": self.platform.control_port,
                        "base_address": f"0x{self.platform.control_base:08X}"},
            "m_axi": {b: r.port.name for r in self.routes for b in r.bundles},
        }

    def render(self) -> str:
        return _environment().get_template("build_bd.tcl.j2").render(bd=self, bd_name=BD_NAME)


def block_design(design: str, config: AcceleratorConfig, interfaces: Interfaces, hls_ip_dir: str) -> BlockDesign:
    platform = get_platform(config.board)
    routes = assign_ports(interfaces.m_axi, platform.hp_ports)
    return BlockDesign(design, platform, config, interfaces, tuple(routes), hls_ip_dir)
