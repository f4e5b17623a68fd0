"""Finding the AMD tools and checking them before hours of work: which form of Vitis HLS is installed
(`vitis_hls -f` up to 2024.1, `vitis-run --mode hls --tcl` from 2024.2, when vitis_hls was deprecated
and then dropped), the release against the supported range, and AMD's Y2K22 patch on 2021.x and
older, without which export_design fails with "bad lexical cast" (AR 76960).

Supported: 2021.1 (the first release with the Kria KV260 board files) to 2025.2 (the newest whose
documentation this flow was checked against). Older releases are refused; newer ones are tried with a
warning. Releases are read from the install path (/tools/Xilinx/Vitis_HLS/2023.2/bin/vitis_hls,
/tools/Xilinx/2025.1/Vitis/bin/vitis-run) or $XILINX_HLS / $XILINX_VIVADO.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tellme.models.errors import UserError

SUPPORTED = ((2021, 1), (2025, 2))
VITIS_RUN_FROM = (2024, 2)  # vitis_hls is deprecated from here (gone in later releases): use vitis-run
Y2K22_LAST = (2021, 2)  # the Y2K22 patch covers 2014.x-2021.x; 2022.1 ships fixed
Y2K22_FILE = Path("common") / "scripts" / "automg_patch_20220104.tcl"
HLS_KINDS = ("vitis_hls", "vitis-run")
_RELEASE = re.compile(r"(?<![\d.])(20\d\d)\.(\d)(?![\d])")

Version = tuple[int, int]


def show(version: Version | None) -> str:
    return "unknown" if version is None else f"{version[0]}.{version[1]}"


@dataclass(frozen=True)
class HlsTool:
    """One way of running run_hls.tcl."""

    kind: str  # "vitis_hls" or "vitis-run"
    path: str | None = None  # None: not installed (a dry run lists the form anyway)
    version: Version | None = None

    def argv(self, script: str = "run_hls.tcl") -> list[str]:
        if self.kind == "vitis_hls":
            return ["vitis_hls", "-f", script]
        return ["vitis-run", "--mode", "hls", "--tcl", script]

    @property
    def releases(self) -> str:
        """The releases that need this form, for the dry run's listing."""
        if self.kind == "vitis_hls":
            return f"Vitis HLS {show(SUPPORTED[0])} to 2024.1"
        return f"Vitis {show(VITIS_RUN_FROM)} and later"

    @property
    def root(self) -> Path | None:
        """The install folder holding bin/ and common/ (where the Y2K22 patch puts its file)."""
        return Path(self.path).resolve().parent.parent if self.path else None


def release(path: str | None, env: Mapping[str, str], env_var: str) -> Version | None:
    """The release in the tool's install path, else in $env_var; None when neither names one."""
    for text in (str(Path(path).resolve()) if path else "", path or "", env.get(env_var, "")):
        found = _RELEASE.findall(text)
        if found:
            year, minor = found[-1]
            return int(year), int(minor)
    return None


def find_hls(which: Callable[[str], str | None] = shutil.which,
             env: Mapping[str, str] | None = None) -> HlsTool | None:
    """The installed form to use: vitis_hls where it is a release before 2024.2, else vitis-run, else
    whichever is on PATH; None when neither is."""
    env = os.environ if env is None else env
    found = [HlsTool(kind, path, release(path, env, "XILINX_HLS"))
             for kind in HLS_KINDS if (path := which(kind)) is not None]
    if not found:
        return None
    classic = next((t for t in found if t.kind == "vitis_hls"), None)
    unified = next((t for t in found if t.kind == "vitis-run"), None)
    if classic and (unified is None or (classic.version is not None and classic.version < VITIS_RUN_FROM)):
        return classic
    return unified


def find_vivado(which: Callable[[str], str | None] = shutil.which,
                env: Mapping[str, str] | None = None) -> tuple[str | None, Version | None]:
    env = os.environ if env is None else env
    path = which("vivado")
    return path, release(path, env, "XILINX_VIVADO")


def check_tools(hls: HlsTool, vivado: tuple[str | None, Version | None]) -> list[str]:
    """UserError for a release outside the supported range (too old), an HLS newer than Vivado (Vivado
    cannot read its IP) or a 2021.x-or-older install without the Y2K22 patch; warnings for the rest."""
    warnings = []
    lo, hi = SUPPORTED
    for name, version in ((hls.kind, hls.version), ("vivado", vivado[1])):
        if version is None:
            warnings.append(f"cannot tell the release of {name} from its path: supported are {show(lo)} to {show(hi)}")
        elif version < lo:
            raise UserError(f"{name} is release {show(version)}; tellme build supports {show(lo)} to {show(hi)} "
                            "(the KV260 board files and Vitis HLS's interface pragmas need 2021.1): install a newer "
                            "release")
        elif version > hi:
            warnings.append(f"{name} {show(version)} is newer than the releases this flow was checked against "
                            f"({show(lo)} to {show(hi)}): trying it")
    if hls.version and vivado[1] and hls.version != vivado[1]:
        if hls.version > vivado[1]:
            raise UserError(f"{hls.kind} {show(hls.version)} is newer than vivado {show(vivado[1])}: Vivado cannot "
                            "use its IP; source the settings64.sh of one release for both")
        warnings.append(f"{hls.kind} {show(hls.version)} and vivado {show(vivado[1])} differ: use one release")
    if hls.version is not None and hls.version <= Y2K22_LAST and hls.root is not None:
        if not (hls.root / Y2K22_FILE).is_file():
            raise UserError(f"{hls.kind} {show(hls.version)} at {hls.root} lacks AMD's Y2K22 patch "
                            f"({Y2K22_FILE.name}), so export_design fails with 'bad lexical cast': apply AR 76960's "
                            "y2k22_patch (python y2k22_patch/patch.py in the install root) and build again")
    return warnings
