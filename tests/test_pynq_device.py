"""The board backend against a stand-in for pynq: Overlay, allocate and an IP whose ap_start runs the
C-simulated tellme_top on the bytes the host synced into the stand-in's "DDR", at the addresses its
registers hold. A missing sync, a wrong upload, address, register or offset therefore shows up as wrong
tokens, as it would on the board."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

import numpy as np
import pytest
from hls_formats import hwh, layout

from tellme.hls.config import AcceleratorConfig
from tellme.hls.csim import DecoderSim
from tellme.hls.design import Design
from tellme.host import cma
from tellme.host.cli import main
from tellme.host.design_manifest import read_design
from tellme.host.pynq_device import AP_DONE, AP_IDLE, AP_START, CTRL, DeviceError
from tellme.host.registers import parse_hwh_registers
from tellme.host.session import Session
from tellme.models.ddr_image import WORD_BYTES, DdrImage, build_ddr_image
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
    """tellme_top's s_axilite port: ap_start runs the kernel on the stand-in DDR; ap_done clears on read.
    It knows its registers from the layout it was built with, not from the host's lookup."""

    def __init__(self, board: FakeBoard, description: dict):
        self.board = board
        self.description = description
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
                self.values[0x10] = self.board.kernel(self.argument)
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

    def argument(self, name: str) -> int:
        """The value the host wrote for C argument `name`, from the registers the layout gave it."""
        regs = sorted((r for r in self.board.regs if r.arg == name), key=lambda r: r.offset)
        assert regs, name
        words = [r.offset + 4 * i for r in regs for i in range(r.bits // 32)]
        return sum(self.values.get(offset, 0) << (32 * i) for i, offset in enumerate(words))


class FakeBoard:
    """The stand-in's DDR, allocator, clock, CMA and kernel; `kernel` runs DecoderSim's top on the synced
    bytes the registers point at. Its register map is parsed from a .hwh written in Vitis HLS's format."""

    def __init__(self, sim: DecoderSim, design: Path, forms: dict[str, str] | None = None, hang: bool = False,
                 clock_mhz: float | None = None, cma_free: int = 512 << 20):
        self.sim = sim
        self.design = read_design(design)
        self.memory = np.zeros(64 << 20, dtype=np.uint8)
        self.next_address = DDR_BASE
        self.live: dict[int, int] = {}  # address -> bytes, allocated and not yet freed
        self.allocations = 0
        self.events: list[tuple] = []
        self.starts = 0
        self.hang = hang
        interface = self.design.interface
        self.regs = layout([(a.name, a.kind) for a in interface.arguments], forms)
        self.hwh_text = hwh(self.design.ip, self.design.vlnv, self.regs)
        self.ip: FakeIP | None = None
        self.clock = types.SimpleNamespace(fclk0_mhz=clock_mhz or self.design.clock_mhz)
        self.cma_free = cma_free

    def offset(self, register: str) -> int:
        return next(r.offset for r in self.regs if r.name == register)

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
        """One tellme_top call on what the registers point at; returns ap_return. The top is the hardware:
        what each argument means and how far it reads come from the simulated design (weights{p}: stripe
        p, kv0..kv{P-1} and kv_out: the one K/V cache, results: a row of logits or n hidden rows), never
        from the host's manifest. The static buffers are the bytes in DDR now, not the simulator's own
        image, so a wrong or missing upload gives wrong tokens; the cache and the results are updated in
        the stand-in's DDR. The scalars are read first: the rows in use depend on the token count."""
        assert abs(self.clock.fclk0_mhz - self.design.clock_mhz) < 1, "the kernel ran at the wrong clock"
        design = self.sim.design
        lay = design.layout
        pointers = {a.name: argument(a.name) for a in design.top_args.args if a.kind == "buffer"}
        stripes, kv_args = [f"weights{p}" for p in range(lay.ports)], [f"kv{p}" for p in range(lay.ports)]
        assert set(pointers) == {*stripes, *kv_args, "params", "hidden_in", "kv_out", "results"}, sorted(pointers)
        assert len({pointers[a] for a in (*kv_args, "kv_out")}) == 1, "kv0..kv{P-1} and kv_out differ"
        n, pos = argument("n_tokens"), argument("first_pos")
        rows = max(n, 1)
        f32 = np.dtype(np.float32)
        image = DdrImage(lay, [self.view(pointers[s], lay.stripe_words * WORD_BYTES, np.uint8) for s in stripes],
                         self.view(pointers["params"], lay.param_offsets["total"] * f32.itemsize, f32))
        kv = self.view(pointers["kv_out"], lay.kv_words * WORD_BYTES, np.uint16)
        hidden_in = self.view(pointers["hidden_in"], rows * lay.hidden_pad * f32.itemsize, f32)
        results = lay.vocab_pad if design.config.head_on_pl else rows * lay.hidden_pad
        results = self.view(pointers["results"], results * f32.itemsize, f32)
        return DecoderSim(self.sim.library, design, image).call(kv, hidden_in, results, n, pos)

    def module(self) -> types.ModuleType:
        board = self
        drivers: dict[str, type] = {}

        class DefaultIP:
            """pynq's base driver: subclasses register for the VLNVs in their bindto."""

            def __init_subclass__(cls, **kwargs):
                super().__init_subclass__(**kwargs)
                for vlnv in getattr(cls, "bindto", []):
                    drivers[vlnv] = cls

            def __init__(self, description):
                self._fake = FakeIP(board, description)
                board.ip = self._fake

            def read(self, offset):
                return self._fake.read(offset)

            def write(self, offset, value):
                self._fake.write(offset, value)

        class Overlay:
            def __init__(self, bitfile: str):
                bit = Path(bitfile)
                assert bit.is_file() and bit.with_suffix(".hwh").is_file(), bitfile
                key = board.design.ip
                registers = parse_hwh_registers(board.hwh_text, key)
                description = {"type": board.design.vlnv, "phys_addr": 0xA0000000, "registers": registers}
                self.ip_dict = {key: description}
                setattr(self, key, drivers.get(description["type"], DefaultIP)(description))

        module = types.ModuleType("pynq")
        module.__version__ = "3.0.1"
        module.DefaultIP = DefaultIP
        module.Overlay = Overlay
        module.allocate = lambda shape, dtype, **kw: board.allocate(shape, dtype)
        module.Clocks = board.clock
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
    args = [(a["name"], a["kind"]) for a in manifest["interface"]["arguments"]]
    (out / manifest["hwh"]).write_text(hwh(manifest["ports"]["ip"], manifest["ports"]["vlnv"], layout(args)))
    return out


@pytest.fixture(scope="module")
def sim(bitlinear_model, design) -> DecoderSim:
    manifest = json.loads((design / "manifest.json").read_text())
    config = AcceleratorConfig.from_dict(manifest["accelerator"])
    return Design.for_model(bitlinear_model.model_dir, config=config).csim()


def fake_pynq(monkeypatch, sim, design, **options) -> FakeBoard:
    """Install the stand-in as `pynq` (the driver module is re-imported against it) and its /proc/meminfo."""
    board = FakeBoard(sim, design, **options)
    monkeypatch.setitem(sys.modules, "pynq", board.module())
    monkeypatch.delitem(sys.modules, "tellme.host.pynq_driver", raising=False)
    meminfo = Path(tempfile.mkdtemp()) / "meminfo"
    meminfo.write_text(f"MemTotal:        4000000 kB\nMemAvailable:    3000000 kB\n"
                       f"CmaTotal:         {900 << 10} kB\nCmaFree:          {board.cma_free >> 10} kB\n")
    monkeypatch.setattr(cma, "MEMINFO", meminfo)
    return board


def run_text(session: Session, **options) -> str:
    return "".join(session.generate(PROMPT, max_new_tokens=16, **options))


def buffer_count(design: Path) -> int:
    """The host's allocations: one per named buffer (the K/V cache's several arguments share one)."""
    return len(read_design(design).interface.buffers)


def expand_forms(design: Path, forms: dict[str, str] | str) -> dict[str, str]:
    """A form for every pointer argument of the design, or the forms given per argument."""
    if isinstance(forms, str):
        return dict.fromkeys((a.name for a in read_design(design).interface.pointers), forms)
    return forms


# --- tests -------------------------------------------------------------------------------------------

FORMS = {
    "64-bit registers": {},
    "_1/_2 halves": "halves",  # every pointer argument
    # what Vitis HLS writes for arguments it renames: x_r, and x_r_1/x_r_2 for a pointer's halves
    "_r and _r_1/_r_2": {"weights0": "halves", "weights1": "renamed_halves", "params": "renamed",
                         "kv0": "renamed_halves", "kv_out": "renamed", "results": "halves", "n_tokens": "renamed",
                         "first_pos": "renamed"},
}


@pytest.mark.parametrize("forms", list(FORMS.values()), ids=list(FORMS))
def test_board_path_matches_csim_and_uploads_once(bitlinear_model, design, sim, monkeypatch, forms):
    with Session(bitlinear_model.model_dir, backend="csim", bitstream=design) as csim:
        want = [run_text(csim), run_text(csim, temperature=0.8, seed=4)]
    forms = expand_forms(design, forms)
    board = fake_pynq(monkeypatch, sim, design, forms=forms)
    names = {r.name for r in board.regs}
    for arg, form in forms.items():  # the stand-in's register map has the names asked for
        base = f"{arg}_r" if form.startswith("renamed") else arg
        assert ({f"{base}_1", f"{base}_2"} if form.endswith("halves") else {base}) <= names, arg
    manifest = read_design(design)
    interface, lay = manifest.interface, sim.design.layout
    assert manifest.head_on_pl and buffer_count(design) == lay.ports + 4  # stripes, params, K/V, hidden_in, logits
    with Session(bitlinear_model.model_dir, backend="pynq", bitstream=design) as session:
        device = session.backend.device
        got = [run_text(session), run_text(session, temperature=0.8, seed=4)]
        assert got == want
        assert session.stats.new_tokens == 16 and session.stats.decode_tok_s > 0
        # two generations, 2 prefill + 30 decode calls; the images went up once, the cache was zeroed once
        assert board.starts == 32
        syncs = [e for e in board.events if e[0] == "sync_to_device"]
        for spec in interface.with_role("image", "state"):
            address = device.buffers[spec.name].device_address
            assert sum(1 for e in syncs if e[1] == address) == 1, spec.name
        # what went up is the design's DDR image, as the C simulation has it
        for name, array in sim.image.named_buffers().items():
            start = device.buffers[name].device_address - DDR_BASE
            assert np.array_equal(board.memory[start : start + array.nbytes], array.reshape(-1).view(np.uint8)), name
        # per call only the rows in use cross the bus: the prompt's rows or one row in, one row of logits out
        row, prompt_len = lay.hidden_pad * 4, session.stats.prompt_tokens
        hidden_in = [e[2] for e in syncs if e[1] == device.buffers["hidden_in"].device_address]
        assert sorted(hidden_in) == sorted(([prompt_len * row] + [row] * 15) * 2)
        logits = ("sync_from_device", device.buffers["logits"].device_address, lay.vocab_pad * 4)
        assert [e for e in board.events if e[0] == "sync_from_device"] == [logits] * 32
        assert type(device.ip).__name__ == "TellmeAccelerator"  # the driver bound by VLNV
        assert len(board.live) == buffer_count(design)
    assert board.live == {} and board.allocations == buffer_count(design)


def test_register_sequence(bitlinear_model, design, sim, monkeypatch):
    """Addresses once (low word, then high), then per call n_tokens, first_pos and ap_start, in that order."""
    board = fake_pynq(monkeypatch, sim, design)
    with Session(bitlinear_model.model_dir, backend="pynq", bitstream=design) as session:
        setup = list(board.ip.writes)
        device = session.backend.device
        expected = []
        for arg in read_design(design).interface.pointers:
            address = device.buffers[arg.target].device_address
            offset = board.offset(arg.name)
            expected += [(offset, address & 0xFFFFFFFF), (offset + 4, address >> 32)]
        assert setup == expected and all(high == 8 for (_, high) in expected[1::2])
        readers_and_writer = [f"kv{p}" for p in range(sim.design.config.weight_ports)] + ["kv_out"]
        assert {board.ip.argument(a) for a in readers_and_writer} == {device.buffers["kv"].device_address}
        text = "".join(session.generate(PROMPT, max_new_tokens=2))
        assert text
        prompt_len = session.stats.prompt_tokens
        calls = board.ip.writes[len(setup):]
        n_reg, pos_reg = board.offset("n_tokens"), board.offset("first_pos")
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
    assert board.live == {} and board.allocations == buffer_count(design)


def test_a_hung_accelerator_is_a_clean_timeout(bitlinear_model, design, sim, monkeypatch, capsys):
    board = fake_pynq(monkeypatch, sim, design, hang=True)
    session = Session(bitlinear_model.model_dir, backend="pynq", bitstream=design, timeout_s=0.05)
    with pytest.raises(DeviceError, match="did not finish within 0.05 s") as info:
        run_text(session)
    assert "tiny" in str(info.value) and "\n" not in str(info.value)
    session.close()
    # the PL may still write into them: a hung run's buffers are kept, and the user is told
    assert len(board.live) == buffer_count(design)
    assert "never finished" in capsys.readouterr().err


def test_a_nonzero_ap_return_is_an_error(bitlinear_model, design, sim, monkeypatch):
    board = fake_pynq(monkeypatch, sim, design)
    with Session(bitlinear_model.model_dir, backend="pynq", bitstream=design) as session:
        board.kernel = lambda argument: 1
        with pytest.raises(DeviceError, match="returned 1"):
            run_text(session)
    assert board.live == {}


def test_run_buffers_must_match_the_layout(bitlinear_model, design, sim, monkeypatch, tmp_path):
    """A manifest whose LM head and output buffer disagree would read the wrong bytes without an error from
    the board: refused before the overlay is loaded or anything allocated."""
    board = fake_pynq(monkeypatch, sim, design)
    broken = tmp_path / "tiny"
    shutil.copytree(design, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["accelerator"]["lm_head"] = "host-float32"
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DeviceError, match=r"has output buffer\(s\) logits float32\[1, \d+\]; its DDR layout needs "
                                          r"one of float32\[128, \d+\]"):
        Session(bitlinear_model.model_dir, backend="pynq", bitstream=broken)
    assert board.ip is None and board.allocations == 0


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
        (lambda m: m["accelerator"].pop("weight_ports"), ("accelerator.weight_ports",)),
        (lambda m: m["accelerator"].update(kv_block=0), ("accelerator.kv_block", "damaged")),
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


# --- CMA, clock, package, self-test -------------------------------------------------------------------

def test_too_little_cma_is_refused_before_loading(bitlinear_model, design, sim, monkeypatch, capsys):
    board = fake_pynq(monkeypatch, sim, design, cma_free=64 << 10)
    args = ["run", "--backend", "pynq", "--model", str(bitlinear_model.model_dir), "--bitstream", str(design),
            "--prompt", "a"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tellme: error: design tiny needs ")
    assert "CMA 0.1 MiB free of 900.0 MiB" in err[0] and "close them or reboot" in err[0]  # others hold it
    assert board.ip is None and board.allocations == 0
    # a pool smaller than the need: raise cma=
    need = read_design(design).interface.cma_bytes
    assert 64 << 10 < need < 64 << 20 and cma.suggested_cma(need) == 128 and cma.suggested_cma(600 << 20) == 768
    small = Path(tempfile.mkdtemp()) / "meminfo"
    small.write_text("CmaTotal:  16 kB\nCmaFree:   16 kB\n")
    monkeypatch.setattr(cma, "MEMINFO", small)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"raise the kernel boot argument cma= (e.g. cma={cma.suggested_cma(need)}M" in err


def test_a_clock_left_at_100_mhz_is_set_back(bitlinear_model, design, sim, monkeypatch, capsys):
    board = fake_pynq(monkeypatch, sim, design, clock_mhz=100.0)
    with Session(bitlinear_model.model_dir, backend="csim", bitstream=design) as csim:
        want = run_text(csim)
    with Session(bitlinear_model.model_dir, backend="pynq", bitstream=design) as session:
        assert run_text(session) == want  # the stand-in kernel refuses to run at the wrong clock
    assert board.clock.fclk0_mhz == read_design(design).clock_mhz == 250.0
    assert "left the PL clock at 100 MHz; set it to 250 MHz" in capsys.readouterr().err


@pytest.fixture(scope="module")
def package(bitlinear_model, design, tmp_path_factory) -> Path:
    """`tellme package` of the stand-in design, unpacked as on the board."""
    from tellme.host.cli import main as cli

    out = tmp_path_factory.mktemp("package") / "tiny.tar.gz"
    assert cli(["package", str(design), "--model", str(bitlinear_model.model_dir), "--out", str(out),
                "--images"]) == 0
    with tarfile.open(out) as tar:
        names = tar.getnames()
        tar.extractall(out.parent / "board", filter="data")
    images = [f"images/{b.name}.npy" for b in read_design(design).interface.with_role("image")]
    assert images == [*(f"images/weights{p}.npy" for p in range(len(images) - 1)), "images/params.npy"]
    assert sorted(names) == sorted(f"tiny/{n}" for n in (
        "manifest.json", "tiny.bit", "tiny.hwh", "golden.npz", "notebooks/chat.ipynb", *images, "PACKAGE.json"))
    return out.parent / "board" / "tiny"


def selftest_lines(capsys) -> list[str]:
    return capsys.readouterr().out.strip().splitlines()


def test_package_round_trip(package, design, bitlinear_model):
    from tellme.host.board_package import designs_near, read_golden, verify_package

    manifest = read_design(design)
    images = manifest.interface.with_role("image")
    assert verify_package(package) == 5 + len(images)
    assert read_design(package).interface == manifest.interface
    golden = read_golden(package)
    folder = open_model_folder(bitlinear_model.model_dir)
    assert manifest.head_on_pl  # the top returns the last token's logits
    assert golden.n == 4 and golden.prefill_in.shape == (4, folder.config.hidden_size)
    assert golden.prefill_out.shape == golden.decode_out.shape == (folder.config.vocab_size,)
    image = build_ddr_image(folder, manifest.layout(folder.config), folder.int8_table(folder.head_name))
    for spec in images:
        assert np.array_equal(np.load(package / "images" / f"{spec.name}.npy"), image.named_buffers()[spec.name])
    assert designs_near(package / "notebooks") == [package]  # the notebook finds its design one folder up
    assert designs_near(package.parent) == [package]
    (package / "golden.npz").write_bytes((package / "golden.npz").read_bytes() + b"x")
    try:
        with pytest.raises(UserError, match="golden.npz differs from the archive"):
            verify_package(package)
    finally:
        (package / "golden.npz").write_bytes((package / "golden.npz").read_bytes()[:-1])


def test_selftest_on_the_stand_in_board(package, bitlinear_model, sim, monkeypatch, capsys):
    board = fake_pynq(monkeypatch, sim, package, clock_mhz=100.0, forms={"first_pos": "renamed"})
    monkeypatch.setenv("BOARD", "KV260")
    assert main(["selftest", "--backend", "pynq", "--bitstream", str(package), "--model",
                 str(bitlinear_model.model_dir)]) == 0
    lines = selftest_lines(capsys)
    assert [line.split()[1] for line in lines] == ["pynq", "design", "board", "cma", "clock", "prefill", "decode",
                                                   "speed"]
    status = {line.split()[1]: line.split()[0] for line in lines}
    assert status["clock"] == "warn" and "left the PL clock at 100 MHz; set to 250 MHz" in lines[4]
    assert all(status[k] == "ok" for k in ("pynq", "design", "board", "cma", "prefill", "decode"))
    files = 5 + len(read_design(package).interface.with_role("image"))
    assert f"package: {files} files verified" in lines[1] and "bit-exact" in lines[5] and "position 4" in lines[6]
    assert board.starts == 2 and board.live == {}


def test_selftest_stops_at_the_first_hard_failure(package, bitlinear_model, sim, monkeypatch, capsys):
    args = ["selftest", "--bitstream", str(package), "--model", str(bitlinear_model.model_dir)]
    board = fake_pynq(monkeypatch, sim, package)
    monkeypatch.setenv("BOARD", "ZCU104")
    assert main(args) == 1
    lines = selftest_lines(capsys)
    assert lines[-1].startswith("FAIL board    this board is ZCU104") and len(lines) == 3 and board.ip is None

    monkeypatch.setenv("BOARD", "KV260")
    board = fake_pynq(monkeypatch, sim, package)
    board.kernel = lambda argument: 0  # runs, returns 0, writes nothing: the logits stay zero
    assert main(args) == 1
    lines = selftest_lines(capsys)
    assert lines[-1].startswith("FAIL prefill  4 tokens:") and "differ" in lines[-1] and board.live == {}

    fake_pynq(monkeypatch, sim, package, cma_free=64 << 10)
    assert main(args) == 1
    assert selftest_lines(capsys)[-1].startswith("FAIL cma      needs ")

    monkeypatch.setitem(sys.modules, "pynq", None)  # not importable
    assert main(args) == 1
    assert selftest_lines(capsys) == [
        "FAIL pynq     pynq is not importable: run on the board inside its pynq environment (Kria-PYNQ: sudo -i, "
        "then source /etc/profile.d/pynq_venv.sh)"]
