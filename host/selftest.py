"""`tellme selftest --backend pynq --bitstream DIR`: on the board, the checks that tell which of the usual
bring-up problems is the one (wrong install, wrong board, too little CMA, a PL clock left at another
frequency, a bitstream that computes something else), one line each, stopping at the first hard failure.

    ok   pynq     pynq 3.0.1
    ok   design   kv260-default-q8 for model 3f2a..., package: 12 files verified
    ok   board    kv260 (BOARD=KV260), part xck26-sfvc784-2LV-c matches the .hwh
    ok   cma      needs 41.3 MiB in 10 buffers (largest 6.0 MiB); CMA 880.0 MiB free of 900.0 MiB
    warn clock    the overlay left the PL clock at 100 MHz; set to 250 MHz
    ok   prefill  4 tokens: 32000 values bit-exact with the C simulation
    ok   decode   1 token at position 4: 32000 values bit-exact with the C simulation
    ok   speed    decode step 31.2 ms; estimate 24.0 ms (x1.30)

With the LM head on the PL (the default) the values compared are the last token's logits, else hidden states.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from tellme.models.default_model import resolve_model_dir
from tellme.models.errors import UserError
from tellme.models.model_folder import open_model_folder

from .board_package import bit_exact, read_golden, verify_package
from .cma import cma_status
from .design_manifest import DesignManifest, open_design
from .registers import hwh_module

MIN_PYNQ = (3, 0)
SPEED_WARN = (0.5, 5.0)  # decode step / estimate outside this: say so (the estimate ignores AXI latency)


class Failed(Exception):
    """A hard failure: the line is printed and the self-test stops."""


def _board_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:2])


class SelfTest:
    """The checks in order; each returns (status, message) or raises Failed."""

    def __init__(self, bitstream: Path, model: Path | None, emit: Callable[[str], None] = print,
                 meminfo: Path | None = None, environ: dict | None = None):
        self.bitstream = Path(bitstream)
        self.model = model
        self.emit = emit
        self.meminfo = meminfo
        self.environ = os.environ if environ is None else environ
        self.design: DesignManifest | None = None
        self.device = None

    def run(self) -> int:
        checks = [("pynq", self.check_pynq), ("design", self.check_design), ("board", self.check_board),
                  ("cma", self.check_cma), ("clock", self.check_clock), ("prefill", self.check_prefill),
                  ("decode", self.check_decode), ("speed", self.check_speed)]
        try:
            for name, check in checks:
                try:
                    status, message = check()
                except Failed as exc:
                    self.emit(f"FAIL {name:<8} {exc}")
                    return 1
                except UserError as exc:
                    self.emit(f"FAIL {name:<8} {exc}")
                    return 1
                self.emit(f"{status:<4} {name:<8} {message}")
            return 0
        finally:
            if self.device is not None:
                self.device.close()

    def check_pynq(self) -> tuple[str, str]:
        try:
            import pynq
        except ImportError:
            raise Failed("pynq is not importable: run on the board inside its pynq environment (Kria-PYNQ: "
                         "sudo -i, then source /etc/profile.d/pynq_venv.sh)") from None
        version = str(getattr(pynq, "__version__", "unknown"))
        if _version(version) < MIN_PYNQ:
            raise Failed(f"pynq {version}: this host needs pynq 3.0 or later (PYNQ 3.x images, Kria-PYNQ 3.x)")
        return "ok", f"pynq {version}"

    def check_design(self) -> tuple[str, str]:
        self.folder = open_model_folder(resolve_model_dir(self.model))
        self.design = open_design(self.bitstream, self.folder)
        verified = verify_package(self.design.path)
        self.golden = read_golden(self.design.path)
        where = f"package: {verified} files verified" if verified is not None else "not a package (no PACKAGE.json)"
        return "ok", f"{self.design.name} for model {self.design.model_hash[:12]}, {where}"

    def check_board(self) -> tuple[str, str]:
        design = self.design
        assert design is not None
        info = hwh_module(design.hwh, design.ip)
        parts = [info.get(f"system.{k}", "").lower().strip("-") for k in ("device", "package", "speedgrade")]
        if not all(parts) or not all(p in design.part.lower() for p in parts):
            raise Failed(f"the .hwh is for {'/'.join(parts) or 'an unknown part'}, the manifest for {design.part}: "
                         "the .bit/.hwh are from another design")
        board = self.environ.get("BOARD")
        if board is None:
            return "warn", f"part {design.part} matches the .hwh; $BOARD is unset, so the board is unchecked"
        if _board_key(board) != _board_key(design.board):
            raise Failed(f"this board is {board} ($BOARD), design {design.name} was built for {design.board}")
        return "ok", f"{design.board} (BOARD={board}), part {design.part} matches the .hwh"

    def check_cma(self) -> tuple[str, str]:
        assert self.design is not None
        status = cma_status(self.design.interface, self.meminfo)
        if not status.fits:
            raise Failed(f"{status.describe()}: raise the kernel boot argument cma= and reboot, or close other "
                         "programs holding pynq buffers")
        return ("ok" if status.free is not None else "warn"), status.describe()

    def check_clock(self) -> tuple[str, str]:
        """Loads the overlay (PynqDevice re-sets a clock the overlay left elsewhere, or fails)."""
        from .pynq_device import PynqDevice

        assert self.design is not None
        self.device = PynqDevice(self.folder, self.design, meminfo=self.meminfo)
        found, now = self.device.clock
        want = self.design.clock_mhz
        if found is None:
            return "warn", f"pynq cannot report the PL clock; the design needs {want:g} MHz"
        if found != now:
            return "warn", f"the overlay left the PL clock at {found:g} MHz; set to {now:g} MHz"
        return "ok", f"PL clock {now:g} MHz (design {want:g} MHz)"

    def check_prefill(self) -> tuple[str, str]:
        golden = self.golden
        out = self.device.run(golden.prefill_in, 0)
        same, detail = bit_exact(out, golden.prefill_out)
        if not same:
            raise Failed(f"{golden.n} tokens: {detail} against the C simulation: the bitstream computes "
                         "something else (timing not met, or another build of the design)")
        return "ok", f"{golden.n} tokens: {detail} with the C simulation"

    def check_decode(self) -> tuple[str, str]:
        golden = self.golden
        start = time.perf_counter()
        out = self.device.run(golden.decode_in, golden.n)
        self.decode_s = time.perf_counter() - start
        same, detail = bit_exact(out, golden.decode_out)
        if not same:
            raise Failed(f"1 token at position {golden.n}: {detail} against the C simulation")
        return "ok", f"1 token at position {golden.n}: {detail} with the C simulation"

    def check_speed(self) -> tuple[str, str]:
        assert self.design is not None
        ms = self.decode_s * 1000
        estimate = self.design.decode_ms_estimate
        if estimate is None:
            return "warn", f"decode step {ms:.1f} ms; the manifest has no speed estimate"
        ratio = ms / estimate
        status = "ok" if SPEED_WARN[0] <= ratio <= SPEED_WARN[1] else "warn"
        note = "" if status == "ok" else " (far from the estimate: check the clock and the DDR ports)"
        return status, f"decode step {ms:.1f} ms; estimate {estimate:.1f} ms at mid-context (x{ratio:.2f}){note}"


def selftest(bitstream: Path, model: Path | None = None, **options) -> int:
    return SelfTest(bitstream, model, **options).run()
