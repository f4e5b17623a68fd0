"""The board: tellme_top in the programmable logic, driven through pynq (3.0.x on Kria-PYNQ, or 4.x).

Sequence: load the overlay (the .bit with its .hwh beside it), allocate physically contiguous buffers,
upload the weights and params images once, zero the KV caches once, write the six buffer addresses into
the control registers once. Each run then copies n embeddings in, writes n and pos, sets ap_start,
polls ap_done with a timeout, checks ap_return and reads n hidden states back. Register offsets come
from the register map pynq parsed from the .hwh, never from a table of our own: Vitis HLS places a
64-bit pointer either as one 64-bit register (`weights`) or, in older releases, as two 32-bit halves
(`weights_1`, `weights_2`), and both occur on boards in the field.

pynq is imported here only, inside the constructor, so nothing else on the host needs it.
"""

from __future__ import annotations

import atexit
import functools
import sys
import time
from typing import Any

import numpy as np

from tellme.models.ddr_image import build_ddr_image
from tellme.models.errors import UserError
from tellme.models.model_folder import ModelFolder

from .design_manifest import DesignManifest
from .device import check_range

CTRL = 0x00  # ap_ctrl_hs: bit 0 ap_start, bit 1 ap_done (clear on read), bit 2 ap_idle
AP_START, AP_DONE, AP_IDLE = 0x1, 0x2, 0x4
AP_RETURN_DEFAULT = 0x10
POINTERS = ("weights", "params", "k_cache", "v_cache", "hidden_in", "hidden_out")
SCALARS = ("n", "pos")
SPIN_POLLS = 2000  # polls before the wait starts sleeping between reads (decode steps take ~10-50 ms)
POLL_SLEEP_S = 1e-4


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


def register_words(registers: dict, arg: str, where: str) -> tuple[int, ...]:
    """Offsets of the 32-bit words holding argument `arg`, least significant first."""
    if arg in registers:
        reg = registers[arg]
        offset, size = int(reg["address_offset"]), int(reg.get("size", 32))
        return tuple(offset + 4 * i for i in range(max(1, -(-size // 32))))
    halves = [registers[f"{arg}_{i}"] for i in (1, 2) if f"{arg}_{i}" in registers]
    if halves:
        return tuple(int(reg["address_offset"]) for reg in halves)
    raise DeviceError(f"the register map of {where} has no {arg!r} (it has {', '.join(sorted(registers))}): "
                      "the bitstream is not a tellme decoder design; rebuild it with tellme build")


class ControlRegisters:
    """The accelerator's s_axilite port, by argument name, over pynq's ip.read / ip.write (32-bit)."""

    def __init__(self, ip: Any, registers: dict, where: str):
        if not registers:
            raise DeviceError(f"{where} has no register map in its .hwh: rebuild the design with tellme build")
        self.ip = ip
        self.where = where
        self.words = {arg: register_words(registers, arg, where) for arg in POINTERS + SCALARS}
        ret = registers.get("ap_return")
        self.ap_return = int(ret["address_offset"]) if ret else AP_RETURN_DEFAULT

    def write(self, arg: str, value: int) -> None:
        words = self.words[arg]
        if value >> (32 * len(words)):
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


class PynqDevice:
    """tellme_top on the board. Buffers are freed by close(), by `with`, at interpreter exit and, through
    the session, on Ctrl-C; a run in flight is waited for first, since the PL may still be writing."""

    name = "pynq"

    def __init__(self, folder: ModelFolder, design: DesignManifest, timeout_s: float | None = None):
        try:
            import pynq
        except ImportError:
            raise UserError("the pynq backend runs on a PYNQ board (pynq 3.0 or 4.x): there, pip install "
                            "'tellme-hls[board]'; elsewhere use --backend csim with the same --bitstream") from None
        self._pynq = pynq
        self.design = design
        self.max_context = design.max_context
        self.timeout_s = timeout_s
        self._buffers: list[Any] = []
        self._busy = False
        self._closed = False
        atexit.register(self.close)
        try:
            self._open(folder)
        except BaseException:
            self.close()
            raise

    def _open(self, folder: ModelFolder) -> None:
        design, c = self.design, folder.config
        self.overlay = self._pynq.Overlay(str(design.bitstream))
        key = find_ip(self.overlay, design)
        ip = functools.reduce(getattr, key.split("/"), self.overlay)
        self.regs = ControlRegisters(ip, self.overlay.ip_dict[key].get("registers") or {},
                                     f"{key} in {design.bitstream.name}")
        self._check_clock()
        image = build_ddr_image(folder, design.layout, design.max_context)
        self.weights = self._upload(image.weights)
        self.params = self._upload(image.params)
        cache_shape = (c.num_hidden_layers, design.max_context, c.kv_size)
        self.k_cache = self._upload(np.zeros(cache_shape, dtype=np.uint16))
        self.v_cache = self._upload(np.zeros(cache_shape, dtype=np.uint16))
        self.hidden_in = self._allocate((design.max_context, c.hidden_size), np.float32)
        self.hidden_out = self._allocate((design.max_context, c.hidden_size), np.float32)
        if not self.regs.control() & AP_IDLE:
            raise DeviceError(f"{self.regs.where} is not idle after loading the overlay: reboot the board")
        for arg in POINTERS:
            self.regs.write(arg, buffer_address(getattr(self, arg)))

    def _check_clock(self) -> None:
        """pynq sets the PL clock from the .hwh; a different rate means the wrong files or a pynq quirk."""
        actual = getattr(getattr(self._pynq, "Clocks", None), "fclk0_mhz", None)
        want = self.design.clock_mhz
        if isinstance(actual, (int, float)) and abs(actual - want) > 0.02 * want:
            print(f"tellme: warning: the PL clock runs at {actual:g} MHz, design {self.design.name} was built "
                  f"for {want:g} MHz", file=sys.stderr)

    def _allocate(self, shape: tuple[int, ...], dtype: type) -> Any:
        buffer = self._pynq.allocate(shape=shape, dtype=dtype)
        self._buffers.append(buffer)
        return buffer

    def _upload(self, array: np.ndarray) -> Any:
        buffer = self._allocate(array.shape, array.dtype)
        buffer[:] = array
        _sync_to_device(buffer)
        return buffer

    def run(self, hidden_in: np.ndarray, pos: int) -> np.ndarray:
        if self._closed:
            raise DeviceError("the board device is closed: open a new session")
        n = len(hidden_in)
        check_range(n, pos, self.max_context)
        rows = self.hidden_in[:n]
        rows[:] = hidden_in
        _sync_to_device(rows)
        if self.regs.control() & AP_START:
            raise DeviceError(f"{self.regs.where} is still running a previous call: reload the overlay")
        self.regs.write("n", n)
        self.regs.write("pos", pos)
        self._busy = True
        self.regs.start()
        timeout = self.timeout_s if self.timeout_s is not None else 10.0 + 0.05 * n
        try:
            self._wait(timeout, n, pos)
        except KeyboardInterrupt:
            self._drain(timeout)  # let the PL finish writing before anyone frees its buffers
            raise
        rc = self.regs.return_code()
        if rc:
            raise DeviceError(f"{self.design.top} returned {rc} for n={n}, pos={pos} on design {self.design.name}")
        out = self.hidden_out[:n]
        _sync_from_device(out)
        return np.array(out, dtype=np.float32)

    def _wait(self, timeout: float, n: int, pos: int) -> None:
        deadline = time.perf_counter() + timeout
        polls = 0
        while not self.regs.control() & AP_DONE:
            polls += 1
            if polls > SPIN_POLLS:
                if time.perf_counter() > deadline:
                    raise DeviceError(
                        f"{self.design.top} on design {self.design.name} did not finish within {timeout:g} s "
                        f"(n={n}, pos={pos}): the accelerator hangs; reload the overlay (or reboot the board)")
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
        while self._buffers:
            _free(self._buffers.pop())

    def __enter__(self) -> PynqDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
