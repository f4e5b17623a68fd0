"""The accelerator's s_axilite registers by argument name, under every form Vitis HLS writes them.

Vitis HLS renames an argument that clashes with an HDL keyword or attribute (`pos` -> `pos_r`), and a
64-bit pointer is one 64-bit register in some releases' .hwh (`x`, SIZE 64) and two 32-bit halves in
others (`x_1` low, `x_2` high); the driver header x<top>_hw.h has one `X_DATA` macro of 64 bits. So an
argument `x` is looked up as `x`, `x_r`, `x_1`/`x_2`, `x_r_1`/`x_r_2`, in that order. Register maps are
dicts as pynq's Overlay.ip_dict[...]["registers"] holds them: name -> {"address_offset", "size", ...}.
Parsers for the .hwh and the _hw.h header let the build and the self-test check the map without pynq.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from tellme.models.errors import UserError


class RegisterError(UserError):
    """The register map lacks an argument: the bitstream is not the design the manifest describes."""


def register_words(registers: dict, arg: str, where: str) -> tuple[int, ...]:
    """Offsets of the 32-bit words holding argument `arg`, least significant first."""
    for name in (arg, f"{arg}_r"):
        if name in registers:
            reg = registers[name]
            offset, size = int(reg["address_offset"]), int(reg.get("size", 32))
            return tuple(offset + 4 * i for i in range(max(1, -(-size // 32))))
        halves = [registers[f"{name}_{i}"] for i in (1, 2) if f"{name}_{i}" in registers]
        if halves:
            return tuple(int(reg["address_offset"]) for reg in halves)
    raise RegisterError(f"the register map of {where} has no {arg!r} (it has {', '.join(sorted(registers))}): "
                        "the bitstream is not this design; rebuild it with tellme build")


def argument_words(registers: dict, args: list[str] | tuple[str, ...], where: str) -> dict[str, tuple[int, ...]]:
    """register_words for each argument; two arguments on one word means the map was misread."""
    words = {arg: register_words(registers, arg, where) for arg in args}
    seen: dict[int, str] = {}
    for arg, offsets in words.items():
        for offset in offsets:
            if offset in seen:
                raise RegisterError(f"{where}: {arg!r} and {seen[offset]!r} share register 0x{offset:x}: "
                                    "rebuild the design with tellme build")
            seen[offset] = arg
    return words


def _properties(element: ET.Element) -> dict[str, str]:
    return {p.get("NAME", ""): p.get("VALUE", "") for p in element.findall("PROPERTY")}


def _number(text: str) -> int:
    return int(text, 0) if text.lower().startswith("0x") else int(text)


def parse_hwh_registers(hwh: str | Path, instance: str) -> dict[str, dict]:
    """The register map of the module `instance` in a .hwh, as pynq builds it (offsets are decimal there)."""
    text = Path(hwh).read_text() if isinstance(hwh, Path) else hwh
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise RegisterError(f"the hardware handoff is not XML ({exc})") from None
    modules = [m for m in root.iter("MODULE") if m.get("INSTANCE") == instance]
    if not modules:
        raise RegisterError(f"the hardware handoff has no module {instance!r}")
    registers = {}
    for reg in modules[0].iter("REGISTER"):
        props = _properties(reg)
        registers[reg.get("NAME", "")] = {
            "address_offset": _number(props.get("ADDRESS_OFFSET", "0")),
            "size": _number(props.get("SIZE", "32")),
            "access": props.get("ACCESS", ""),
            "description": props.get("DESCRIPTION", ""),
        }
    return registers


def hwh_module(hwh: str | Path, instance: str) -> dict[str, str]:
    """VLNV and the like of one module, and the SYSTEMINFO (DEVICE, PACKAGE, SPEEDGRADE, BOARD) of the design."""
    text = Path(hwh).read_text() if isinstance(hwh, Path) else hwh
    root = ET.fromstring(text)
    info = next(root.iter("SYSTEMINFO"), None)
    module = next((m for m in root.iter("MODULE") if m.get("INSTANCE") == instance), None)
    out = {f"system.{k.lower()}": v for k, v in (info.attrib.items() if info is not None else ())}
    out.update({k.lower(): v for k, v in (module.attrib.items() if module is not None else ())})
    return out


_HW_ADDR = re.compile(r"^#define\s+X\w*?_ADDR_(\w+?)(_DATA)?\s+(0x[0-9a-fA-F]+)\s*$", re.M)
_HW_BITS = re.compile(r"^#define\s+X\w*?_BITS_(\w+)_DATA\s+(\d+)\s*$", re.M)
_HW_SKIP = {"ap_ctrl", "gie", "ier", "isr"}


def parse_hw_header(header: str | Path) -> dict[str, dict]:
    """The argument registers of a Vitis HLS driver header x<top>_hw.h: lower-cased name -> offset and
    size (a 64-bit pointer is one entry of 64 bits there)."""
    text = Path(header).read_text() if isinstance(header, Path) else header
    bits = {m.group(1).lower(): int(m.group(2)) for m in _HW_BITS.finditer(text)}
    registers = {}
    for m in _HW_ADDR.finditer(text):
        name = m.group(1).lower()
        if name not in _HW_SKIP and (m.group(2) or name == "ap_return"):
            registers[name] = {"address_offset": int(m.group(3), 16), "size": bits.get(name, 32)}
    return registers
