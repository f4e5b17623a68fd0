"""Register maps of a Vitis HLS top in the formats the tools write them: the .hwh's MODULE/REGISTER
entries (offsets in decimal, a 64-bit pointer as one 64-bit register or as halves x_1/x_2, renamed
arguments with _r) and the driver header x<top>_hw.h (one X_DATA macro of 64 bits per pointer, names
upper case). Layout as Vitis HLS places it: CTRL, GIER, IP_IER, IP_ISR, ap_return at 0x10, then each
pointer in 12 bytes and each scalar in 8."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reg:
    name: str  # the register's name in the .hwh (after any renaming)
    arg: str  # the C argument
    offset: int
    bits: int  # 32 or 64


def layout(args: list[tuple[str, str]], forms: dict[str, str] | None = None) -> list[Reg]:
    """args: (name, "buffer"|"scalar") in signature order. forms: name -> "single" (default), "halves",
    "renamed" (x_r), "renamed_halves" (x_r_1/x_r_2)."""
    forms = forms or {}
    regs = [Reg("ap_return", "ap_return", 0x10, 32)]
    offset = 0x18
    for name, kind in args:
        form = forms.get(name, "single")
        base = f"{name}_r" if form.startswith("renamed") else name
        if kind == "buffer":
            if form.endswith("halves"):
                regs += [Reg(f"{base}_1", name, offset, 32), Reg(f"{base}_2", name, offset + 4, 32)]
            else:
                regs.append(Reg(base, name, offset, 64))
            offset += 12
        else:
            regs.append(Reg(base, name, offset, 32))
            offset += 8
    return regs


def _register(name: str, offset: int, size: int, description: str, access: str) -> str:
    return f"""            <REGISTER NAME="{name}">
              <PROPERTY NAME="DESCRIPTION" VALUE="{description}"/>
              <PROPERTY NAME="ADDRESS_OFFSET" VALUE="{offset}"/>
              <PROPERTY NAME="SIZE" VALUE="{size}"/>
              <PROPERTY NAME="ACCESS" VALUE="{access}"/>
              <PROPERTY NAME="IS_ENABLED" VALUE="true"/>
              <PROPERTY NAME="RESET_VALUE" VALUE="0"/>
              <FIELDS>
                <FIELD NAME="{name}">
                  <PROPERTY NAME="DESCRIPTION" VALUE="Bit {size - 1} to 0 of {name}"/>
                  <PROPERTY NAME="BIT_OFFSET" VALUE="0"/>
                  <PROPERTY NAME="BIT_WIDTH" VALUE="{size}"/>
                </FIELD>
              </FIELDS>
            </REGISTER>
"""


def hwh(instance: str, vlnv: str, regs: list[Reg], device: str = "xck26", package: str = "sfvc784",
        speed: str = "-2LV", board: str = "xilinx.com:kv260_som:part0:1.4") -> str:
    """A .hwh with the SYSTEMINFO line, a PS module without registers, and the accelerator's module."""
    body = "".join(_register(n, o, 32, d, a) for n, o, d, a in (
        ("CTRL", 0, "Control signals", "read-write"), ("GIER", 4, "Global Interrupt Enable Register", "read-write"),
        ("IP_IER", 8, "IP Interrupt Enable Register", "read-write"),
        ("IP_ISR", 12, "IP Interrupt Status Register", "read-write")))
    for r in regs:
        access = "read-only" if r.name == "ap_return" else "write-only"
        body += _register(r.name, r.offset, r.bits, f"Data signal of {r.arg}", access)
    name = vlnv.split(":")[2]
    system = (f'<SYSTEMINFO ARCH="zynquplus" BOARD="{board}" DEVICE="{device}" NAME="tellme_bd" '
              f'PACKAGE="{package}" SPEEDGRADE="{speed}"/>')
    ps = ('<MODULE COREREVISION="1" FULLNAME="/ps" HWVERSION="3.5" INSTANCE="ps" IPTYPE="PERIPHERAL" '
          'IS_ENABLE="1" MODCLASS="PROCESSOR" MODTYPE="zynq_ultra_ps_e" VLNV="xilinx.com:ip:zynq_ultra_ps_e:3.5"/>')
    module = (f'<MODULE COREREVISION="2601010000" FULLNAME="/{instance}" HWVERSION="1.0" INSTANCE="{instance}" '
              f'IPTYPE="PERIPHERAL" IS_ENABLE="1" MODCLASS="PERIPHERAL" MODTYPE="{name}" VLNV="{vlnv}">')
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no" ?>
<EDKSYSTEM EDWVERSION="1.2" TIMESTAMP="Thu Jan  1 00:00:00 2026" VIVADOVERSION="2023.2">
  {system}
  <MODULES>
    {ps}
    {module}
      <DOCUMENTS/>
      <ADDRESSBLOCKS>
        <ADDRESSBLOCK ACCESS="read-write" INTERFACE="s_axi_control" NAME="Reg" RANGE="65536" USAGE="register">
          <REGISTERS>
{body}          </REGISTERS>
        </ADDRESSBLOCK>
      </ADDRESSBLOCKS>
    </MODULE>
  </MODULES>
</EDKSYSTEM>
"""


def hw_header(top: str, regs: list[Reg]) -> str:
    """x<top>_hw.h as Vitis HLS exports it: a comment block, then ADDR/BITS macros per argument."""
    prefix = f"X{top.upper()}_CONTROL"
    lines = ["// ==============================================================",
             "// Vitis HLS - High-Level Synthesis from C, C++ and OpenCL v2023.2 (64-bit)",
             "// ==============================================================", "// control",
             "// 0x00 : Control signals", "// 0x10 : Data signal of ap_return"]
    macros = [f"#define {prefix}_ADDR_AP_CTRL 0x00", f"#define {prefix}_ADDR_GIE     0x04",
              f"#define {prefix}_ADDR_IER     0x08", f"#define {prefix}_ADDR_ISR     0x0c",
              f"#define {prefix}_ADDR_AP_RETURN 0x10", f"#define {prefix}_BITS_AP_RETURN 32"]
    seen = set()
    for r in regs[1:]:
        if r.arg in seen:
            continue
        seen.add(r.arg)
        name = r.name[:-2] if r.name.endswith(("_1", "_2")) else r.name  # the header has one 64-bit entry
        bits = 64 if r.bits == 64 or r.name.endswith("_1") else 32
        lines.append(f"// 0x{r.offset:02x} : Data signal of {name}")
        macros += [f"#define {prefix}_ADDR_{name.upper()}_DATA 0x{r.offset:x}",
                   f"#define {prefix}_BITS_{name.upper()}_DATA {bits}"]
    return "\n".join(lines + [""] + macros) + "\n"


def pynq_registers(regs: list[Reg]) -> dict:
    """What pynq's ip_dict holds for the module: name -> address_offset, size, access, description."""
    base = {"CTRL": 0, "GIER": 4, "IP_IER": 8, "IP_ISR": 12}
    out = {k: {"address_offset": v, "size": 32, "access": "read-write", "description": ""} for k, v in base.items()}
    for r in regs:
        out[r.name] = {"address_offset": r.offset, "size": r.bits, "access": "write-only", "description": ""}
    return out
