"""The board backend against a stand-in for pynq: Overlay, allocate and an IP whose ap_start runs the
C-simulated tellme_top on the bytes the host synced into the stand-in's "DDR". A missing sync, a wrong
address, register or offset therefore shows up as wrong tokens, as it would on the board."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from tellme.hls.config import AcceleratorConfig
from tellme.hls.csim import DecoderSim
from tellme.hls.design import Design
from tellme.host.cli import main
from tellme.host.design_manifest import read_design
from tellme.host.pynq_device import AP_DONE, AP_IDLE, AP_START, CTRL, POINTERS, DeviceError
from tellme.host.session import Session
from tellme.models.ddr_image import DdrImage, build_ddr_image
from tellme.models.errors import UserError
from tellme.models.model_folder import open_model_folder

CLI = [sys.executable, "-m", "tellme.host.cli"]
DDR_BASE = 0x8_0000_0000  # the KV260's upper DDR: every address needs the high register word
PROMPT = "And the table"


# --- the stand-in for pynq -------------------------------------------------------------------------

class FakeBuffer(np.ndarray):
    """A pynq buffer: the numpy array is the CPU's (cached) view; `board.memory` is what the PL sees."""

    board: FakeBoard

    def __array_finalize__(self, obj):
        parent = obj if isinstance(obj, FakeBuffer) else None
        self.board = getattr(parent, "board", None)
        offset = self.ctypes.data - parent.ctypes.data if parent is not None and parent.board else 0
        self.device_address = parent.device_address + offset if parent is not None and parent.board else None

    def _span(self) -> slice:
        start = self.device_address - DDR_BASE
        return slice(start, start + self.nbytes)

    def sync_to_device(self):
        self.board.events.append(("sync_to_device", self.device_address, self.nbytes))
        self.board.memory[self._span()] = np.asarray(self).reshape(-1).view(np.uint8)

    def sync_from_device(self):
        self.board.events.append(("sync_from_device", self.device_address, self.nbytes))
        np.asarray(self).reshape(-1).view(np.uint8)[:] = self.board.memory[self._span()]

    def freebuffer(self):
        self.board.free(self.device_address)


class FakeIP:
    """tellme_top's s_axilite port: ap_start runs the kernel on the stand-in DDR; ap_done clears on read."""

    def __init__(self, board: FakeBoard, registers: dict):
        self.board = board
        self.registers = registers
        self.values: dict[int, int] = {}
        self.writes: list[tuple[int, int]] = []
        self.done = False
        self.interrupt_on_poll: int | None = None  # raise KeyboardInterrupt at this CTRL read after a start
        self.polls = 0

    def write(self, offset: int, value: int) -> None:
        assert isinstance(value, int) and 0 <= value < 2**32, (offset, value)
        self.writes.append((offset, value))
        if offset == CTRL:
            assert value == AP_START
            self.polls = 0
            self.board.starts += 1
            if not self.board.hang:
                self.values[self.ap_return] = self.board.kernel(self.argument)
                self.done = True
        else:
            self.values[offset] = value

    def read(self, offset: int) -> int:
        if offset != CTRL:
            return self.values.get(offset, 0)
        self.polls += 1
        if self.interrupt_on_poll is not None and self.polls == self.interrupt_on_poll:
            self.interrupt_on_poll = None
            raise KeyboardInterrupt
        value = (AP_DONE | AP_IDLE) if self.done else (0 if self.board.hang and self.board.starts else AP_IDLE)
        self.done = False
        return value

    @property
    def ap_return(self) -> int:
        return self.registers["ap_return"]["address_offset"]

    def argument(self, name: str) -> int:
        if name in self.registers:
            reg = self.registers[name]
            words = range(reg["size"] // 32)
            return sum(self.values.get(reg["address_offset"] + 4 * i, 0) << (32 * i) for i in words)
        low, high = (self.registers[f"{name}_{i}"]["address_offset"] for i in (1, 2))
        return self.values.get(low, 0) | self.values.get(high, 0) << 32


def hls_registers(split_pointers: bool) -> dict:
    """The register map pynq builds from a Vitis HLS .hwh for tellme_top: ap_return at 0x10, then each
    pointer in 12 bytes (two data words and a reserved one) and each scalar in 8."""
    def reg(offset, size=32):
        return {"address_offset": offset, "size": size, "access": "read-write", "description": ""}

    registers = {"CTRL": reg(0x00), "GIER": reg(0x04), "IP_IER": reg(0x08), "IP_ISR": reg(0x0C),
                 "ap_return": reg(0x10)}
    offset = 0x18
    for name in POINTERS:
        if split_pointers:
            registers[f"{name}_1"], registers[f"{name}_2"] = reg(offset), reg(offset + 4)
        else:
            registers[name] = reg(offset, 64)
        offset += 12
    for name in ("n", "pos"):
        registers[name] = reg(offset)
        offset += 8
    return registers


class FakeBoard:
    """The stand-in's DDR, allocator and kernel; `kernel` runs DecoderSim's top on the synced bytes."""

    def __init__(self, sim: DecoderSim, split_pointers: bool = False, hang: bool = False):
        self.sim = sim
        self.memory = np.zeros(64 << 20, dtype=np.uint8)
        self.next_address = DDR_BASE
        self.live: dict[int, int] = {}  # address -> bytes, allocated and not yet freed
        self.allocations = 0
        self.events: list[tuple] = []
        self.starts = 0
        self.hang = hang
        self.registers = hls_registers(split_pointers)
        self.ip: FakeIP | None = None

    def allocate(self, shape, dtype):
        buffer = np.zeros(shape, dtype=dtype).view(FakeBuffer)
        buffer.board = self
        buffer.device_address = self.next_address
        size = buffer.nbytes
        assert self.next_address - DDR_BASE + size <= self.memory.size
        self.live[self.next_address] = size
        self.allocations += 1
        self.next_address += (size + 0xFFF) & ~0xFFF
        return buffer

    def free(self, address: int) -> None:
        assert address in self.live, f"0x{address:x} freed twice or never allocated"
        del self.live[address]

    def view(self, address: int, nbytes: int, dtype) -> np.ndarray:
        """The DDR bytes at a device address, which must lie inside a live allocation."""
        assert any(a <= address and address + nbytes <= a + size for a, size in self.live.items()), hex(address)
        start = address - DDR_BASE
        return self.memory[start : start + nbytes].view(dtype)

    def kernel(self, argument) -> int:
        """One tellme_top call, exactly on what the registers point at; returns ap_return."""
        sim, c = self.sim, self.sim.design.model
        n, pos = argument("n"), argument("pos")
        image = sim.image
        weights = self.view(argument("weights"), image.weights.nbytes, np.uint8)
        params = self.view(argument("params"), image.params.nbytes, np.float32)
        cache_bytes = c.num_hidden_layers * sim.max_context * c.kv_size * 2
        k_cache = self.view(argument("k_cache"), cache_bytes, np.uint16)
        v_cache = self.view(argument("v_cache"), cache_bytes, np.uint16)
        rows = max(n, 1) * c.hidden_size * 4
        hidden_in = self.view(argument("hidden_in"), rows, np.float32)
        hidden_out = self.view(argument("hidden_out"), rows, np.float32)
        top = DecoderSim(sim.library, sim.design, DdrImage(weights.copy(), params, image.offsets, image.layout))
        return top.call(params, k_cache, v_cache, hidden_in, hidden_out, n, pos)  # weights as in DDR now

    def module(self, clock_mhz: float) -> types.ModuleType:
        board = self

        class Overlay:
            def __init__(self, bitfile: str):
                bit = Path(bitfile)
                assert bit.is_file() and bit.with_suffix(".hwh").is_file(), bitfile
                board.ip = FakeIP(board, board.registers)
                self.ip_dict = {"tellme_top_0": {"type": "xilinx.com:hls:tellme_top:1.0", "phys_addr": 0xA0000000,
                                                 "registers": board.registers}}
                self.tellme_top_0 = board.ip

        module = types.ModuleType("pynq")
        module.Overlay = Overlay
        module.allocate = lambda shape, dtype, **kw: board.allocate(shape, dtype)
        module.Clocks = types.SimpleNamespace(fclk0_mhz=clock_mhz)
        return module


# --- fixtures ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def design(bitlinear_model, tmp_path_factory) -> Path:
    """`tellme build --dry-run` for the tiny model, then marked built with stand-in .bit and .hwh files."""
    out = tmp_path_factory.mktemp("designs") / "tiny"
    assert main(["build", "--model", str(bitlinear_model.model_dir), "--out", str(out), "--dry-run"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["built"] = True
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / manifest["bitstream"]).write_bytes(b"stand-in bitstream")
    (out / manifest["hwh"]).write_bytes(b"<stand-in hwh/>")
    return out


@pytest.fixture(scope="module")
def sim(bitlinear_model, design) -> DecoderSim:
    manifest = json.loads((design / "manifest.json").read_text())
    config = AcceleratorConfig.from_dict(manifest["accelerator"])
    return Design.for_model(bitlinear_model.model_dir, config=config).csim()


def fake_pynq(monkeypatch, sim, design, **options) -> FakeBoard:
    board = FakeBoard(sim, **options)
    monkeypatch.setitem(sys.modules, "pynq", board.module(read_design(design).clock_mhz))
    return board


def run_text(session: Session, **options) -> str:
    return "".join(session.generate(PROMPT, max_new_tokens=16, **options))


# --- tests -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("split_pointers", [False, True], ids=["64-bit registers", "_1/_2 halves"])
def test_board_path_matches_csim_and_uploads_once(bitlinear_model, design, sim, monkeypatch, split_pointers):
    with Session(bitlinear_model.model_dir, backend="csim", bitstream=design) as csim:
        want = [run_text(csim), run_text(csim, temperature=0.8, seed=4)]
    board = fake_pynq(monkeypatch, sim, design, split_pointers=split_pointers)
    with Session(bitlinear_model.model_dir, backend="pynq", bitstream=design) as session:
        device = session.backend.device
        got = [run_text(session), run_text(session, temperature=0.8, seed=4)]
        assert got == want
        assert session.stats.new_tokens == 16 and session.stats.decode_tok_s > 0
        # two generations, 2 prefill + 30 decode calls; the images went up once, the caches were zeroed once
        assert board.starts == 32
        syncs = [e for e in board.events if e[0] == "sync_to_device"]
        for name in ("weights", "params", "k_cache", "v_cache"):
            address = getattr(device, name).device_address
            assert sum(1 for e in syncs if e[1] == address) == 1, name
        image = build_ddr_image(open_model_folder(bitlinear_model.model_dir), read_design(design).layout,
                                read_design(design).max_context)
        weights = device.weights.device_address - DDR_BASE
        assert np.array_equal(board.memory[weights : weights + image.weights.nbytes], image.weights)
        # per call only the rows in use cross the bus: one row for a decode step
        hidden_bytes = open_model_folder(bitlinear_model.model_dir).config.hidden_size * 4
        assert ("sync_from_device", device.hidden_out.device_address, hidden_bytes) in board.events
        assert len(board.live) == 6
    assert board.live == {} and board.allocations == 6


def test_register_sequence(bitlinear_model, design, sim, monkeypatch):
    """Addresses once (low word, then high), then per call n, pos and ap_start, in that order."""
    board = fake_pynq(monkeypatch, sim, design)
    with Session(bitlinear_model.model_dir, backend="pynq", bitstream=design) as session:
        setup = list(board.ip.writes)
        device = session.backend.device
        expected = []
        for name in POINTERS:
            address = getattr(device, name).device_address
            offset = board.registers[name]["address_offset"]
            expected += [(offset, address & 0xFFFFFFFF), (offset + 4, address >> 32)]
        assert setup == expected and all(high == 8 for (_, high) in expected[1::2])
        text = "".join(session.generate(PROMPT, max_new_tokens=2))
        assert text
        prompt_len = session.stats.prompt_tokens
        calls = board.ip.writes[len(setup):]
        n_reg, pos_reg = (board.registers[k]["address_offset"] for k in ("n", "pos"))
        assert calls == [(n_reg, prompt_len), (pos_reg, 0), (CTRL, AP_START),
                         (n_reg, 1), (pos_reg, prompt_len), (CTRL, AP_START)]


def test_ctrl_c_while_the_board_runs_frees_the_buffers(bitlinear_model, design, sim, monkeypatch):
    board = fake_pynq(monkeypatch, sim, design)
    session = Session(bitlinear_model.model_dir, backend="pynq", bitstream=design)
    pieces = session.generate(PROMPT, max_new_tokens=8)
    next(pieces)
    board.ip.interrupt_on_poll = 1  # Ctrl-C arrives while the host waits for ap_done
    with pytest.raises(KeyboardInterrupt):
        list(pieces)
    assert board.live == {}, "buffers left allocated after Ctrl-C"
    with pytest.raises(UserError, match="closed"):
        session.generate(PROMPT)
    session.close()  # idempotent


def test_ctrl_c_in_the_caller_frees_the_buffers(bitlinear_model, design, sim, monkeypatch):
    board = fake_pynq(monkeypatch, sim, design)
    with pytest.raises(KeyboardInterrupt):
        with Session(bitlinear_model.model_dir, backend="pynq", bitstream=design) as session:
            for i, _ in enumerate(session.generate(PROMPT, max_new_tokens=8)):
                if i == 2:
                    raise KeyboardInterrupt
    assert board.live == {} and board.allocations == 6


def test_a_hung_accelerator_is_a_clean_timeout(bitlinear_model, design, sim, monkeypatch, capsys):
    board = fake_pynq(monkeypatch, sim, design, hang=True)
    session = Session(bitlinear_model.model_dir, backend="pynq", bitstream=design, timeout_s=0.05)
    with pytest.raises(DeviceError, match="did not finish within 0.05 s") as info:
        run_text(session)
    assert "tiny" in str(info.value) and "\n" not in str(info.value)
    session.close()
    # the PL may still write into them: a hung run's buffers are kept, and the user is told
    assert len(board.live) == 6
    assert "never finished" in capsys.readouterr().err


def test_a_nonzero_ap_return_is_an_error(bitlinear_model, design, sim, monkeypatch):
    board = fake_pynq(monkeypatch, sim, design)
    with Session(bitlinear_model.model_dir, backend="pynq", bitstream=design) as session:
        board.kernel = lambda argument: 1
        with pytest.raises(DeviceError, match="returned 1"):
            run_text(session)
    assert board.live == {}


def test_manifest_mismatches_are_one_line_errors(bitlinear_model, design, tmp_path):
    def tellme_run(*args):
        return subprocess.run([*CLI, "run", "--prompt", "a", *map(str, args)], capture_output=True, text=True,
                              timeout=120)

    def one_line(result, *words):
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.startswith("tellme: error:")]
        assert len(lines) == 1, result.stderr
        for word in words:
            assert word in lines[0], lines[0]

    one_line(tellme_run("--backend", "pynq", "--model", bitlinear_model.model_dir, "--bitstream", design,
                        "--board", "zcu104"), "kv260")
    one_line(tellme_run("--backend", "pynq", "--model", bitlinear_model.model_dir), "--bitstream")
    one_line(tellme_run("--backend", "pynq", "--model", bitlinear_model.model_dir, "--bitstream", tmp_path),
             "manifest.json")
    # pynq is not installed here: a well-matched design gets as far as the import, and says so
    one_line(tellme_run("--backend", "pynq", "--model", bitlinear_model.model_dir, "--bitstream", design), "pynq")

    for edit, words in [
        (lambda m: m["model"].update(hash="0" * 64), ("built for model 000000000000",)),
        (lambda m: m["model"]["config"].update(hidden_size=64), ("hidden_size",)),
        (lambda m: m.update(max_context=4096), ("4096",)),
        (lambda m: m.update(built=False), ("never built",)),
        (lambda m: m.update(version=9), ("version",)),
        (lambda m: m["accelerator"].pop("tlmm"), ("accelerator.tlmm.t",)),
    ]:
        broken = tmp_path / "broken"
        if broken.exists():
            for f in broken.iterdir():
                f.unlink()
        broken.mkdir(exist_ok=True)
        manifest = json.loads((design / "manifest.json").read_text())
        edit(manifest)
        (broken / "manifest.json").write_text(json.dumps(manifest))
        for suffix in ("bit", "hwh"):
            (broken / f"{manifest['design']}.{suffix}").write_bytes(b"x")
        one_line(tellme_run("--backend", "pynq", "--model", bitlinear_model.model_dir, "--bitstream", broken), *words)


def test_cli_csim_and_board_stand_in_print_the_same_text(bitlinear_model, design, sim, monkeypatch, capsys):
    args = ["run", "--model", str(bitlinear_model.model_dir), "--prompt", PROMPT, "--max-new-tokens", "12",
            "--bitstream", str(design)]
    assert main([*args, "--backend", "csim"]) == 0
    csim = capsys.readouterr()
    board = fake_pynq(monkeypatch, sim, design)
    assert main([*args, "--backend", "pynq"]) == 0
    pynq = capsys.readouterr()
    assert pynq.out == csim.out and pynq.out.startswith(PROMPT)
    assert "[pynq]" in pynq.err and "device" in pynq.err and "LM head" in pynq.err
    assert board.live == {}


def test_the_board_notebook_runs_on_the_stand_in(bitlinear_model, design, sim, monkeypatch, capsys):
    """Every cell of host/notebooks/chat.ipynb but the interactive loop, on the stand-in board."""
    notebook = json.loads((Path(__file__).parents[1] / "host" / "notebooks" / "chat.ipynb").read_text())
    cells = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    board = fake_pynq(monkeypatch, sim, design)
    namespace: dict = {}
    exec(cells[0], namespace)
    assert namespace["BACKEND"] == "pynq"
    namespace.update(MODEL=bitlinear_model.model_dir, DESIGN=design)
    for source in cells[1:]:
        if "input(" not in source:
            exec(source, namespace)
    out = capsys.readouterr().out
    assert "pynq: context of 128 positions" in out and out.count("decode") >= 2
    assert board.live == {}
