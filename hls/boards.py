"""One record per board: the part and board files, the processing system's ports, the fabric's resources,
DDR and the contiguous memory (CMA) pynq allocates from, and the accelerator preset. Each fact is written
once here; the block design (bd.py), the fit and speed estimates (fit.py, perf.py) and the presets read it.

Presets. Zynq UltraScale+ (KV260, ZCU104): 250 MHz as TeLLMe, and the weights striped over six 128-bit
masters, HP0-HP3 and HPC0-HPC1. Four HP ports stream at most 16 GB/s at 250 MHz and were measured at
12.7 GB/s streaming ternary weights in lockstep on a KV260; with the two HPC ports added the ports offer
more than the DDR delivers, so the stream is bounded by DDR (hls/perf.py). The io master (params, hidden
states, K/V writes) shares the last port. Two token lanes make prefill compute bound on the lookups; 16-token
blocks keep the activations of a 0.73B model within the URAMs. Zynq-7000 (PYNQ-Z2): two 64-bit HP ports at
100 MHz, BRAM only, one token lane, and within its 220 DSPs: norms of three lanes, four attention lanes and
the fp32 adders in LUTs.

Port order follows each PS's DDR controller: on Zynq UltraScale+ HP1 and HP2 share one DDR port, so
HP0, HP1, HP3 come first (TeLLMe's choice on the KV260), then HP2, then the coherent HPC0, HPC1; on
Zynq-7000 HP0/HP1 and HP2/HP3 share the two AFI paths to DDR, so HP0, HP2, then HP1, HP3.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from tellme.models.errors import UserError

from .config import AcceleratorConfig, TlmmParams, apply_overrides

MIB = 1 << 20
GIB = 1 << 30


@dataclass(frozen=True)
class HpPort:
    """A PS slave port to DDR: interface pin, the CONFIG keys that enable it and set its width, its clock."""

    name: str
    enable: str
    width_key: str
    clock_pin: str


@dataclass(frozen=True)
class ProcessingSystem:
    """What the block design needs to know about a board's processing system."""

    family: str  # "zynqmp" or "zynq7"
    ip: str  # VLNV without version: Vivado picks the installed one
    rule: str  # board automation rule that applies the board preset (DDR, MIO, clocks)
    rule_config: str
    hp_ports: tuple[HpPort, ...]  # in order of preference
    hp_max_width: int
    control_port: str
    control_clock_pin: str
    control_base: int
    clock_pin: str  # PL clock out of the PS
    reset_pin: str  # PL reset out of the PS (active low)
    clock_key: str  # CONFIG key of the PL clock frequency (MHz)
    config: dict[str, str] = field(default_factory=dict)  # always set: control master on, others off
    address_space: str = "ps/Data"


@dataclass(frozen=True)
class Resources:
    """What the fabric offers (device data sheets: DS987 for XCK26, DS891 for XCZU7EV, DS190 for XC7Z020)."""

    device: str
    lut: int
    ff: int
    bram36: int
    uram: int
    dsp: int
    lutram: int  # LUTs in SLICEM that can be distributed RAM


@dataclass(frozen=True)
class Board:
    name: str
    part: str
    board_part: str  # the board-files revision we document (manifest, README)
    board_part_glob: str  # for get_board_parts: any installed revision of the board files
    board_connections: str  # carrier connection for a SOM board part, else ""
    board_files_hint: str  # where to get the board files when Vivado lacks them
    ps: ProcessingSystem
    resources: Resources
    ddr_bytes: int
    ddr_peak_bytes_s: float  # the DDR's peak transfer rate: bus width x transfers per second
    cma_bytes: int  # contiguous memory of the board's default boot: every buffer the PL reads comes from it
    host_reserved_bytes: int  # assumption: DDR kept by Linux, PYNQ and Jupyter, never ours
    preset: dict  # AcceleratorConfig fields beyond board, part and clock
    clock_mhz: float
    carrier_glob: str = ""  # get_boards pattern of the carrier's board files a SOM needs (checked by build_bd.tcl)

    @property
    def has_uram(self) -> bool:
        return self.resources.uram > 0

    @property
    def defaults(self) -> AcceleratorConfig:
        fields = dict(self.preset)
        if "tlmm" in fields:
            fields["tlmm"] = TlmmParams(**fields["tlmm"])
        return AcceleratorConfig(board=self.name, part=self.part, clock_mhz=self.clock_mhz, **fields)


def _mpsoc_hp(n: int) -> HpPort:
    gp = n + 2  # S_AXI_GP2..GP5 are HP0..HP3
    return HpPort(f"S_AXI_HP{n}_FPD", f"PSU__USE__S_AXI_GP{gp}", f"PSU__SAXIGP{gp}__DATA_WIDTH", f"saxihp{n}_fpd_aclk")


def _mpsoc_hpc(n: int) -> HpPort:
    return HpPort(f"S_AXI_HPC{n}_FPD", f"PSU__USE__S_AXI_GP{n}", f"PSU__SAXIGP{n}__DATA_WIDTH", f"saxihpc{n}_fpd_aclk")


def _zynq7_hp(n: int) -> HpPort:
    return HpPort(f"S_AXI_HP{n}", f"PCW_USE_S_AXI_HP{n}", f"PCW_S_AXI_HP{n}_DATA_WIDTH", f"S_AXI_HP{n}_ACLK")


ZYNQ_MPSOC = ProcessingSystem(
    family="zynqmp",
    ip="xilinx.com:ip:zynq_ultra_ps_e",
    rule="xilinx.com:bd_rule:zynq_ultra_ps_e",
    rule_config='apply_board_preset "1"',
    hp_ports=tuple(_mpsoc_hp(n) for n in (0, 1, 3, 2)) + tuple(_mpsoc_hpc(n) for n in (0, 1)),
    hp_max_width=128,
    control_port="M_AXI_HPM0_FPD",
    control_clock_pin="maxihpm0_fpd_aclk",
    control_base=0xA000_0000,
    clock_pin="pl_clk0",
    reset_pin="pl_resetn0",
    clock_key="PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ",
    config={
        "PSU__FPGA_PL0_ENABLE": "1",
        "PSU__USE__M_AXI_GP0": "1",  # HPM0_FPD: the accelerator's control registers
        "PSU__MAXIGP0__DATA_WIDTH": "32",
        "PSU__USE__M_AXI_GP1": "0",  # HPM1_FPD and HPM0_LPD unused (presets may enable them)
        "PSU__USE__M_AXI_GP2": "0",
    },
)

ZYNQ_7000 = ProcessingSystem(
    family="zynq7",
    ip="xilinx.com:ip:processing_system7",
    rule="xilinx.com:bd_rule:processing_system7",
    rule_config='make_external "FIXED_IO, DDR" apply_board_preset "1" Master "Disable" Slave "Disable"',
    hp_ports=tuple(_zynq7_hp(n) for n in (0, 2, 1, 3)),
    hp_max_width=64,
    control_port="M_AXI_GP0",
    control_clock_pin="M_AXI_GP0_ACLK",
    control_base=0x4000_0000,
    clock_pin="FCLK_CLK0",
    reset_pin="FCLK_RESET0_N",
    clock_key="PCW_FPGA0_PERIPHERAL_FREQMHZ",
    config={
        "PCW_EN_CLK0_PORT": "1",
        "PCW_EN_RST0_PORT": "1",
        "PCW_USE_M_AXI_GP0": "1",  # GP0: the accelerator's control registers
        "PCW_USE_M_AXI_GP1": "0",
    },
)

BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        Board(
            name="kv260",
            part="xck26-sfvc784-2LV-c",
            board_part="xilinx.com:kv260_som:part0:1.4",
            board_part_glob="*:kv260_som:*",
            board_connections="som240_1_connector xilinx.com:kv260_carrier:som240_1_connector:1.3",
            board_files_hint="install the Kria K26 SOM and KV260 carrier board files from the Vivado board store "
                             "(Tools > Vivado Store > Boards, or xhub::install in Tcl), or point "
                             "TELLME_BOARD_REPO_PATHS at a folder holding them",
            carrier_glob="*kv260_carrier*",
            ps=ZYNQ_MPSOC,
            resources=Resources("XCK26", 117_120, 234_240, 144, 64, 1_248, 57_600),
            ddr_bytes=4 * GIB,
            ddr_peak_bytes_s=19.2e9,  # DDR4-2400, 64 bits (DS987)
            cma_bytes=900 * MIB,  # Kria starter-kit boot arguments: cma=900M
            host_reserved_bytes=1 * GIB,
            clock_mhz=250.0,
            preset=dict(weight_ports=6, max_context=1024, prefill_block=16, kv_block=16, attention_lanes=24,
                        fifo_depth=4096, storage="uram", tlmm=dict(token_lanes=2, tile_words=4096)),
        ),
        Board(
            name="zcu104",
            part="xczu7ev-ffvc1156-2-e",
            board_part="xilinx.com:zcu104:part0:1.1",
            board_part_glob="*:zcu104:*",
            board_connections="",
            board_files_hint="the ZCU104 board files ship with Vivado; reinstall Vivado with Zynq UltraScale+ devices",
            ps=ZYNQ_MPSOC,
            resources=Resources("XCZU7EV", 230_400, 460_800, 312, 96, 1_728, 101_760),
            ddr_bytes=2 * GIB,
            ddr_peak_bytes_s=19.2e9,  # PS DDR4 at the board preset's 2400 MT/s, 64 bits (UG1267)
            cma_bytes=512 * MIB,  # PYNQ image device tree
            host_reserved_bytes=512 * MIB,
            clock_mhz=250.0,
            preset=dict(weight_ports=6, max_context=2048, prefill_block=16, kv_block=16, attention_lanes=24,
                        fifo_depth=4096, storage="uram", tlmm=dict(token_lanes=2, tile_words=4096)),
        ),
        Board(
            name="pynq-z2",
            part="xc7z020clg400-1",
            board_part="tul.com.tw:pynq-z2:part0:1.0",
            board_part_glob="*:pynq-z2:*",
            board_connections="",
            board_files_hint="install the PYNQ-Z2 board files from TUL into <Vivado>/data/boards/board_files",
            ps=ZYNQ_7000,
            resources=Resources("XC7Z020", 53_200, 106_400, 140, 0, 220, 17_400),
            ddr_bytes=512 * MIB,
            ddr_peak_bytes_s=2.1e9,  # DDR3-1050, 16 bits
            cma_bytes=128 * MIB,  # PYNQ image device tree
            host_reserved_bytes=192 * MIB,
            clock_mhz=100.0,
            preset=dict(weight_ports=2, max_context=256, prefill_block=4, kv_block=16, attention_lanes=4,
                        fifo_depth=512, storage="bram", elementwise_lanes=3, float_adders="fabric",
                        tlmm=dict(token_lanes=1, tile_words=1024)),
        ),
    )
}


def get_board(name: str) -> Board:
    if name not in BOARDS:
        raise UserError(f"unknown board {name!r}: choose one of {', '.join(BOARDS)}")
    return BOARDS[name]


def board_config(name: str, overrides: list[str] | tuple[str, ...] = (), **fields: object) -> AcceleratorConfig:
    """The board's preset, then `fields` (e.g. model sizes), then user overrides, checked against the
    board (no URAM on Zynq-7000)."""
    board = get_board(name)
    config = dataclasses.replace(board.defaults, **fields) if fields else board.defaults
    config = apply_overrides(config, list(overrides))
    if config.storage == "uram" and not board.has_uram:
        raise UserError(f"board {name} has no URAM: use --set storage=bram")
    if config.weight_ports > len(board.ps.hp_ports):
        raise UserError(f"weight_ports={config.weight_ports}: {name} has {len(board.ps.hp_ports)} ports to DDR")
    return config
