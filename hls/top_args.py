"""The decoder top's argument list, written once: top.cpp.j2 renders the C signature and the INTERFACE
pragmas from it, and the design's manifest.json records it (tellme.host.top_interface) for the host,
which allocates the named buffers and writes each argument's register from it.

Names are prefixed so that no tool renames them (Vitis HLS turns `pos` into `pos_r`, `in` into `in_r`;
see tellme.host.top_interface.RENAMED_NAMES). A new top (more weight ports, read masters aliasing one
cache buffer) is described by another function returning a GeneratedTop: several TopArgs may name one
buffer, and every buffer the host must allocate is listed once with its role, dtype and shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tellme.host.registers import argument_words, parse_hw_header, parse_hwh_registers
from tellme.host.top_interface import HIDDEN_IN, HIDDEN_OUT, Argument, BufferSpec, TopInterface
from tellme.models.errors import UserError

if TYPE_CHECKING:
    from .design import Design

CONTROL_BUNDLE = "control"


@dataclass(frozen=True)
class TopArg:
    """One argument: the host's view (Argument) plus what only the C source needs."""

    name: str
    c_type: str  # e.g. "const float *" for a pointer, "unsigned" for a scalar
    kind: str  # "buffer" | "scalar"
    target: str  # buffer name, or scalar value ("tokens", "position")
    bundle: str
    depth: int = 0  # m_axi depth (co-simulation array size, in elements)
    options: str = ""  # extra m_axi pragma options

    @property
    def declaration(self) -> str:
        sep = "" if self.c_type.endswith("*") else " "
        return f"{self.c_type}{sep}{self.name}"

    @property
    def pragma(self) -> str:
        if self.kind == "scalar":
            return f"#pragma HLS INTERFACE s_axilite port={self.name} bundle={self.bundle}"
        extra = f" {self.options}" if self.options else ""
        return (f"#pragma HLS INTERFACE m_axi port={self.name} offset=slave bundle={self.bundle} "
                f"depth={self.depth}{extra}")

    def argument(self) -> Argument:
        return Argument(self.name, self.kind, self.target, self.bundle)


@dataclass(frozen=True)
class GeneratedTop:
    """The top's arguments in signature order and the buffers they point at."""

    args: tuple[TopArg, ...]
    buffers: tuple[BufferSpec, ...]
    control: str = CONTROL_BUNDLE

    @property
    def interface(self) -> TopInterface:
        return TopInterface(tuple(a.argument() for a in self.args), self.buffers).validate()

    @property
    def names(self) -> str:
        """The arguments as a C call's argument list."""
        return ", ".join(a.name for a in self.args)


# Every m_axi port: 128 bits in both flows, bursts of 256 beats, and two of them in flight: 512 beats cover
# the DDR's latency (about 150-200 cycles at 250 MHz) while the adapter's read buffer (outstanding x burst
# beats, UG1399) stays at 512 x 128 bits, two BRAM36 a port (hls/fit.py counts it).
READ_BURST = 256
READ_OUTSTANDING = 2
M_AXI_OPTIONS = (f"max_widen_bitwidth=128 max_read_burst_length={READ_BURST} max_write_burst_length=64 "
                 f"num_read_outstanding={READ_OUTSTANDING} num_write_outstanding=4 latency=64")
WORD_TYPE = "tellme::word_t"


def decoder_top(design: Design) -> GeneratedTop:
    """tellme_top(weights0.., kv0.., params, hidden_in, kv_out, results, n_tokens, first_pos): a weight
    stripe per weight master, the one K/V cache read through every weight master (kv0..) and written
    through the io master (kv_out), and the results: hidden states, or the logits with the head on the PL."""
    cfg, lay, depth = design.config, design.layout, design.depth
    ports = range(cfg.weight_ports)
    results = "logits" if cfg.head_on_pl else HIDDEN_OUT
    buffers = tuple(BufferSpec(f"weights{p}", "image", "uint8", (lay.stripe_words * 16,)) for p in ports) + (
        BufferSpec("params", "image", "float32", (lay.param_offsets["total"],)),
        BufferSpec("kv", "state", "uint16", (lay.kv_words * 8,)),
        BufferSpec(HIDDEN_IN, "input", "float32", (design.context, lay.hidden_pad)),
        BufferSpec(results, "output", "float32", (1, lay.vocab_pad) if cfg.head_on_pl
                   else (design.context, lay.hidden_pad)),
    )
    const = f"const {WORD_TYPE} *"
    args = tuple(TopArg(f"weights{p}", const, "buffer", f"weights{p}", f"gmem{p}", depth["weights"], M_AXI_OPTIONS)
                 for p in ports)
    args += tuple(TopArg(f"kv{p}", const, "buffer", "kv", f"gmem{p}", depth["weights"], M_AXI_OPTIONS) for p in ports)
    args += (
        TopArg("params", const, "buffer", "params", "gmem_io", depth["io"], M_AXI_OPTIONS),
        TopArg("hidden_in", const, "buffer", HIDDEN_IN, "gmem_io", depth["io"], M_AXI_OPTIONS),
        TopArg("kv_out", f"{WORD_TYPE} *", "buffer", "kv", "gmem_io", depth["io"], M_AXI_OPTIONS),
        TopArg("results", f"{WORD_TYPE} *", "buffer", results, "gmem_io", depth["io"], M_AXI_OPTIONS),
        TopArg("n_tokens", "unsigned", "scalar", "tokens", CONTROL_BUNDLE),
        TopArg("first_pos", "unsigned", "scalar", "position", CONTROL_BUNDLE),
    )
    return GeneratedTop(args, buffers)


# --- the built IP against the description ---

def check_pragmas(ports: dict[str, str], top: GeneratedTop, source: str) -> None:
    """The top's INTERFACE pragmas (bd.parse_interfaces) must be exactly the described arguments, on
    their bundles: a hand-edited or stale top.cpp would otherwise bind registers to the wrong buffers."""
    want = {a.name: a.bundle for a in top.args} | {"return": top.control}
    if ports != want:
        diff = sorted(set(ports.items()) ^ set(want.items()))
        raise UserError(f"{source}: the top's INTERFACE pragmas {diff} differ from its description "
                        "(tellme.hls.top_args): regenerate the project with tellme hls")


def header_registers(ip_dir: Path, top: str, interface: TopInterface) -> dict[str, list[int]] | None:
    """Each argument's register words from the exported driver header x<top>_hw.h; None when Vitis HLS
    exported no driver (the host then trusts the .hwh alone)."""
    headers = sorted(Path(ip_dir).glob(f"drivers/*/src/x{top}_hw.h"))
    if not headers:
        return None
    registers = parse_hw_header(headers[0])
    words = argument_words(registers, [a.name for a in interface.arguments], str(headers[0]))
    return {name: list(offsets) for name, offsets in words.items()}


def check_hwh_registers(hwh: Path, instance: str, interface: TopInterface,
                        recorded: dict[str, list[int]] | None) -> None:
    """The .hwh the host will read must hold every argument, at the offsets the driver header gave."""
    words = argument_words(parse_hwh_registers(hwh, instance), [a.name for a in interface.arguments],
                           f"{instance} in {hwh.name}")
    for name, offsets in (recorded or {}).items():
        if list(words[name]) != list(offsets):
            raise UserError(f"{hwh.name}: {name} at {[hex(x) for x in words[name]]}, the driver header says "
                            f"{[hex(x) for x in offsets]}: the block design used another export of the IP")
