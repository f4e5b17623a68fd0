"""Contiguous memory on the board: every buffer the PL reads comes from the kernel's CMA pool, whose size
is a boot argument (PYNQ-Z2 images 128 MiB, the ZCU104 image 512 MiB, the Kria starter-kit boot 900 MiB).
Reading CmaFree before allocating turns "allocation failed" deep in pynq into a line that says what to
raise. /proc/meminfo is read directly (pynq's own CMA statistics differ between 2.x and 3.x).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tellme.models.errors import UserError

from .top_interface import TopInterface

MEMINFO = Path("/proc/meminfo")
MIB = 1 << 20


class CmaError(UserError):
    """Not enough contiguous memory for the design's buffers."""


def read_meminfo(path: Path | None = None) -> dict[str, int]:
    """/proc/meminfo in bytes ("CmaFree", "CmaTotal", "MemAvailable", ...); {} where it is unreadable."""
    try:
        text = (path or MEMINFO).read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            out[key.strip()] = int(fields[0]) * (1024 if fields[1:2] == ["kB"] else 1)
    return out


def mib(n: float) -> str:
    return f"{n / MIB:.1f} MiB"


@dataclass(frozen=True)
class CmaStatus:
    need: int  # every buffer, whole pages
    largest: int
    buffers: int
    free: int | None  # None: the kernel does not report CMA
    total: int | None

    @property
    def fits(self) -> bool:
        return self.free is None or self.need <= self.free

    def describe(self) -> str:
        have = "not reported by the kernel" if self.free is None else f"{mib(self.free)} free of {mib(self.total or 0)}"
        return (f"needs {mib(self.need)} in {self.buffers} buffers (largest {mib(self.largest)}); CMA {have}")


def cma_status(interface: TopInterface, meminfo: Path | None = None) -> CmaStatus:
    info = read_meminfo(meminfo)
    return CmaStatus(interface.cma_bytes, interface.largest.pages_bytes, len(interface.buffers),
                     info.get("CmaFree"), info.get("CmaTotal"))


def suggested_cma(need: int) -> int:
    """A cma= size in MiB that holds `need` with room for pynq's own buffers: the next multiple of 128 MiB
    above need + 64 MiB."""
    return -(-(need + 64 * MIB) // (128 * MIB)) * 128


def check_cma(interface: TopInterface, where: str, meminfo: Path | None = None) -> CmaStatus:
    """CmaError, one line, when the buffers cannot all be allocated from what CMA has free now."""
    status = cma_status(interface, meminfo)
    if status.fits:
        return status
    total = status.total or 0
    if total >= status.need:
        advice = ("other programs hold CMA buffers (another notebook or tellme process with an overlay): "
                  "close them or reboot the board")
    else:
        advice = (f"raise the kernel boot argument cma= (e.g. cma={suggested_cma(status.need)}M; see the README, "
                  "'On the board') and reboot, or build with a shorter KV cache (--set max_context=N)")
    raise CmaError(f"{where} {status.describe()}: {advice}")
