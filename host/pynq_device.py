"""The board: tellme_top in the programmable logic, driven through pynq (3.0.x on Kria-PYNQ, or 4.x).

Everything about the top's arguments comes from the design manifest's "interface"
(tellme.host.top_interface): load the overlay (the .bit with its .hwh beside it) after checking that
CMA holds every buffer, allocate each named buffer once, fill it by its role (the DDR image's weight
stripes and params uploaded, the K/V cache zeroed), and write every pointer argument's register once
(several arguments may point at one buffer: v2's kv0..kv{P-1} and kv_out all at the K/V cache). Each
call then copies n rows into the input buffer, writes the scalar arguments, sets ap_start, polls
ap_done with a timeout (no interrupt), checks ap_return and reads back only the rows in use: n hidden
states, or with the LM head on the PL the one row of logits. Register offsets come from the
register map pynq parsed from the .hwh, under every name Vitis HLS gives them (tellme.host.registers),
cross-checked against the map the build recorded from the driver header.

pynq is imported here only, inside the constructor, so nothing else on the host needs it.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tellme.models.ddr_image import HALVES_PER_WORD, DdrLayout, build_ddr_image
from tellme.models.errors import UserError
from tellme.models.model_folder import ModelFolder

from .cma import CmaError, check_cma, mib
from .design_manifest import DesignManifest
from .device import check_range
from .registers import argument_words
from .top_interface import HIDDEN_IN, BufferSpec, TopInterface

CTRL = 0x00  # ap_ctrl_hs: bit 0 ap_start, bit 1 ap_done (clear on read), bit 2 ap_idle
AP_START, AP_DONE, AP_IDLE = 0x1, 0x2, 0x4
AP_RETURN_DEFAULT = 0x10
SPIN_POLLS = 2000  # polls before the wait starts sleeping between reads (decode steps take ~10-50 ms)
POLL_SLEEP_S = 1e-4
CLOCK_TOLERANCE = 0.01  # PL clock within 1% of the design's: the PLL cannot hit every frequency exactly
IMAGES = "images"  # <design>/images/<buffer>.npy: static buffers shipped by tellme package --images


class DeviceError(UserError):
    """The board misbehaved (timeout, error code, wrong register map): one line saying what to do."""


def buffer_address(buffer: Any) -> int:
    """pynq 4.x calls it device_address; 3.0 has both (physical_address is the older name)."""
    address = getattr(buffer, "device_address", None)
    if address is None:
        address = buffer.physical_address
    return int(address)


def _sync_to_device(buffer: Any) -> None:
    (getattr(buffer, "sync_to_device", None) or buffer.flush)()


def _sync_from_device(buffer: Any) -> None:
    (getattr(buffer, "sync_from_device", None) or buffer.invalidate)()


def _free(buffer: Any) -> None:
    (getattr(buffer, "freebuffer", None) or buffer.close)()


class ControlRegisters:
    """The accelerator's s_axilite port, by argument name, over pynq's ip.read / ip.write (32-bit)."""

    def __init__(self, ip: Any, registers: dict, interface: TopInterface, where: str,
                 recorded: dict[str, tuple[int, ...]] | None = None):
        if not registers:
            raise DeviceError(f"{where} has no register map in its .hwh: rebuild the design with tellme build")
        self.ip = ip
        self.where = where
        self.words = argument_words(registers, [a.name for a in interface.arguments], where)
        if recorded:
            wrong = [a for a, w in self.words.items() if a in recorded and tuple(recorded[a]) != w]
            if wrong:
                a = wrong[0]
                raise DeviceError(f"{where}: register of {a} at {[hex(x) for x in self.words[a]]} in the .hwh, "
                                  f"{[hex(x) for x in recorded[a]]} in the build's driver header: the .bit/.hwh are "
                                  "from another build; copy the design folder again")
        ret = registers.get("ap_return")
        self.ap_return = int(ret["address_offset"]) if ret else AP_RETURN_DEFAULT

    def write(self, arg: str, value: int) -> None:
        words = self.words[arg]
        if value < 0 or value >> (32 * len(words)):
            raise DeviceError(f"{arg}=0x{value:x} does not fit the {32 * len(words)}-bit register of {self.where}")
        for i, offset in enumerate(words):
            self.ip.write(offset, (value >> (32 * i)) & 0xFFFFFFFF)

    def control(self) -> int:
        return int(self.ip.read(CTRL))

    def start(self) -> None:
        self.ip.write(CTRL, AP_START)

    def return_code(self) -> int:
        return int(self.ip.read(self.ap_return))


def find_ip(overlay: Any, design: DesignManifest) -> str:
    """The ip_dict key of the accelerator: the manifest's cell name, else the one IP of type tellme_top."""
    ip_dict = overlay.ip_dict
    if design.ip in ip_dict:
        return design.ip
    found = [key for key, info in ip_dict.items()
             if f":{design.top}:" in str(info.get("type", "")) or key.rsplit("/", 1)[-1].startswith(design.top)]
    if len(found) != 1:
        raise DeviceError(f"{design.bitstream.name} has {'no' if not found else 'several'} {design.top} IP "
                          f"(IPs: {', '.join(ip_dict) or 'none'}): rebuild the design with tellme build")
    return found[0]


def static_buffers(folder: ModelFolder, design: DesignManifest) -> dict[str, np.ndarray]:
    """The design's "image" buffers by name: shipped .npy files (tellme package --images) when the design
    folder has them, else the DDR image built from the model folder (numpy only)."""
    specs = design.interface.with_role("image")
    shipped = {b.name: design.path / IMAGES / f"{b.name}.npy" for b in specs}
    if specs and all(path.is_file() for path in shipped.values()):
        arrays = {name: np.load(path, mmap_mode="r") for name, path in shipped.items()}
    else:
        head = folder.int8_table(folder.head_name) if design.head_on_pl else None
        arrays = build_ddr_image(folder, design.layout(folder.config), head).named_buffers()
    for spec in specs:
        array = arrays.get(spec.name)
        if array is None or array.dtype != np.dtype(spec.dtype) or tuple(array.shape) != spec.shape:
            got = "none" if array is None else f"{array.dtype}{list(array.shape)}"
            raise DeviceError(f"design {design.name} expects buffer {spec.name} as {spec.dtype}{list(spec.shape)}, "
                              f"the DDR image gives {got}: the design was built by another tellme-hls version; "
                              "rebuild it")
    return {spec.name: arrays[spec.name] for spec in specs}


def check_run_buffers(design: DesignManifest, layout: DdrLayout) -> None:
    """The buffers run() writes and reads must be what the bitstream's layout makes of them: one input of
    hidden rows, one output (a row of logits with the LM head on the PL, else hidden rows) and one K/V
    cache; otherwise a call would feed or read the wrong bytes without any error from the board."""
    rows = (design.max_context, layout.hidden_pad)
    want = {"input": ("float32", rows), "output": ("float32", (1, layout.vocab_pad) if design.head_on_pl else rows),
            "state": ("uint16", (layout.kv_words * HALVES_PER_WORD,))}
    for role, (dtype, shape) in want.items():
        specs = design.interface.with_role(role)
        if (len(specs) != 1 or (specs[0].dtype, specs[0].shape) != (dtype, shape)
                or role == "input" and specs[0].name != HIDDEN_IN):
            got = ", ".join(f"{b.name} {b.dtype}{list(b.shape)}" for b in specs) or "none"
            raise DeviceError(f"design {design.name} has {role} buffer(s) {got}; its DDR layout needs one of "
                              f"{dtype}{list(shape)}: the manifest is damaged or from another version; rebuild it")


def set_pl_clock(pynq: Any, mhz: float) -> tuple[float | None, float | None]:
    """(the PL clock as found, as left): re-set to `mhz` when the overlay left it elsewhere (users report
    overlays stuck at 100 MHz). (None, None) where pynq cannot tell (no pynq.Clocks)."""
    clocks = getattr(pynq, "Clocks", None)
    found = getattr(clocks, "fclk0_mhz", None)
    if not isinstance(found, (int, float)):
        return None, None
    if abs(found - mhz) <= CLOCK_TOLERANCE * mhz:
        return float(found), float(found)
    clocks.fclk0_mhz = mhz
    return float(found), float(clocks.fclk0_mhz)


class PynqDevice:
    """tellme_top on the board. Buffers are freed by close(), by `with`, at interpreter exit and, through
    the session, on Ctrl-C; a run in flight is waited for first, since the PL may still be writing."""

    name = "pynq"

    def __init__(self, folder: ModelFolder, design: DesignManifest, timeout_s: float | None = None,
                 meminfo: Path | None = None):
        try:
            import pynq
        except ImportError:
            raise UserError("the pynq backend runs on a PYNQ board (pynq 3.0 or 4.x): there, pip install "
                            "'tellme-hls[board]'; elsewhere use --backend csim with the same --bitstream") from None
        self._pynq = pynq
        self.design = design
        self.interface = design.interface
        self.max_context = design.max_context
        self.timeout_s = timeout_s
        self.buffers: dict[str, Any] = {}
        self._owned: list[Any] = []
        self.clock: tuple[float | None, float | None] = (None, None)
        self._busy = False
        self._closed = False
        atexit.register(self.close)
        try:
            self._open(folder, meminfo)
        except BaseException:
            self.close()
            raise

    def _open(self, folder: ModelFolder, meminfo: Path | None) -> None:
        design = self.design
        self.cma = check_cma(self.interface, f"design {design.name}", meminfo)
        check_run_buffers(design, design.layout(folder.config))
        static = static_buffers(folder, design)
        importlib.import_module("tellme.host.pynq_driver")  # registers the driver before the overlay binds IPs

        self.overlay = self._pynq.Overlay(str(design.bitstream))
        key = find_ip(self.overlay, design)
        self.ip = functools.reduce(getattr, key.split("/"), self.overlay)
        self.regs = ControlRegisters(self.ip, self.overlay.ip_dict[key].get("registers") or {}, self.interface,
                                     f"{key} in {design.bitstream.name}", design.registers)
        self._check_clock()
        for spec in self.interface.buffers:
            self.buffers[spec.name] = self._fill(spec, static.get(spec.name))
        if not self.regs.control() & AP_IDLE:
            raise DeviceError(f"{self.regs.where} is not idle after loading the overlay: reboot the board")
        for arg in self.interface.pointers:
            self.regs.write(arg.name, buffer_address(self.buffers[arg.target]))

    def _check_clock(self) -> None:
        """pynq sets the PL clock from the .hwh, but overlays are seen left at 100 MHz: re-set it."""
        want = self.design.clock_mhz
        self.clock = found, now = set_pl_clock(self._pynq, want)
        if found is None or found == now:
            return
        if abs(now - want) > CLOCK_TOLERANCE * want:
            raise DeviceError(f"the PL clock runs at {now:g} MHz and stays there when set to {want:g} MHz for design "
                              f"{self.design.name}: reload the overlay or reboot the board")
        print(f"tellme: warning: the overlay left the PL clock at {found:g} MHz; set it to {now:g} MHz "
              f"(design {self.design.name})", file=sys.stderr)

    def _fill(self, spec: BufferSpec, static: np.ndarray | None) -> Any:
        """Allocate one named buffer and give it its first contents: the image, or zeros for the state."""
        try:
            buffer = self._pynq.allocate(shape=spec.shape, dtype=np.dtype(spec.dtype))
        except (MemoryError, RuntimeError, OSError) as exc:
            raise CmaError(f"allocating {spec.name} ({mib(spec.nbytes)}) for design {self.design.name} failed "
                           f"({exc}); {self.cma.describe()}: raise the kernel boot argument cma= and reboot") from None
        self._owned.append(buffer)
        if spec.role == "image":
            buffer[:] = static
            _sync_to_device(buffer)
        elif spec.role == "state":
            buffer[:] = 0
            _sync_to_device(buffer)
        return buffer

    def call(self, inputs: dict[str, np.ndarray], scalars: dict[str, int], outputs: tuple[str, ...] | list[str],
             rows: int) -> dict[str, np.ndarray]:
        """One run of the top: the first rows of each input buffer written, the scalar arguments set by
        what they carry ("tokens", "position"), the first `rows` rows of each output buffer read back."""
        if self._closed:
            raise DeviceError("the board device is closed: open a new session")
        for name, array in inputs.items():
            view = self.buffers[name][: len(array)]
            view[:] = array
            _sync_to_device(view)
        if self.regs.control() & AP_START:
            raise DeviceError(f"{self.regs.where} is still running a previous call: reload the overlay")
        for arg in self.interface.scalars:
            self.regs.write(arg.name, int(scalars[arg.target]))
        self._busy = True
        self.regs.start()
        what = ", ".join(f"{k}={v}" for k, v in scalars.items())
        # the run's length goes with its tokens, not with the rows read back (one row of logits for a prefill)
        tokens = int(scalars.get("tokens", rows))
        timeout = self.timeout_s if self.timeout_s is not None else 10.0 + 0.05 * tokens
        try:
            self._wait(timeout, what)
        except KeyboardInterrupt:
            self._drain(timeout)  # let the PL finish writing before anyone frees its buffers
            raise
        rc = self.regs.return_code()
        if rc:
            raise DeviceError(f"{self.design.top} returned {rc} for {what} on design {self.design.name}")
        out = {}
        for name in outputs:
            view = self.buffers[name][:rows]
            _sync_from_device(view)
            out[name] = np.array(view)
        return out

    @property
    def returns_logits(self) -> bool:
        """The design's LM head runs on the PL: a call returns the last token's logits."""
        return self.design.head_on_pl

    def run(self, hidden_in: np.ndarray, pos: int) -> np.ndarray:
        """Embeddings [n, hidden] at positions [pos, pos + n) -> hidden states [n, hidden], or with the LM head
        on the PL the last token's logits [vocab]."""
        n = len(hidden_in)
        check_range(n, pos, self.max_context)
        spec_in = self.interface.buffer(HIDDEN_IN)
        rows = np.zeros((n, spec_in.shape[1]), dtype=np.float32)
        rows[:, : hidden_in.shape[1]] = hidden_in
        output = self.interface.with_role("output")[0].name
        logits = self.returns_logits  # the top wrote one row of logits, else n rows of hidden states
        out = self.call({HIDDEN_IN: rows}, {"tokens": n, "position": pos}, (output,), 1 if logits else n)
        vocab, hidden = int(self.design.model_config["vocab_size"]), int(self.design.model_config["hidden_size"])
        if logits:
            return out[output][0, :vocab].astype(np.float32)
        return out[output][:, :hidden].astype(np.float32)

    def _wait(self, timeout: float, what: str) -> None:
        deadline = time.perf_counter() + timeout
        polls = 0
        while not self.regs.control() & AP_DONE:
            polls += 1
            if polls > SPIN_POLLS:
                if time.perf_counter() > deadline:
                    raise DeviceError(
                        f"{self.design.top} on design {self.design.name} did not finish within {timeout:g} s "
                        f"({what}): the accelerator hangs; reload the overlay (or reboot the board)")
                time.sleep(POLL_SLEEP_S)
        self._busy = False

    def _drain(self, timeout: float) -> None:
        """Wait for a started run to end, Ctrl-C or not; leaves _busy set if it never does."""
        deadline = time.perf_counter() + timeout
        while self._busy and time.perf_counter() < deadline:
            try:
                control = self.regs.control()
            except KeyboardInterrupt:
                continue
            if control & (AP_DONE | AP_IDLE):
                self._busy = False
            else:
                time.sleep(POLL_SLEEP_S)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        if self._busy:
            self._drain(self.timeout_s or 10.0)
        if self._busy:
            print(f"tellme: warning: {self.design.top} never finished; its buffers stay allocated (reboot the "
                  "board to reclaim them)", file=sys.stderr)
            return
        while self._owned:
            _free(self._owned.pop())

    def __enter__(self) -> PynqDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
