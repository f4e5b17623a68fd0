"""C simulation: the very C++ that goes to Vitis HLS, compiled by g++ and called from Python.

`TlmmSim` loads the design as a shared library (through the C bridge in tb/csim_bridge.cpp) and runs
numpy arrays through the TLMM top. `run_testbench` builds a project's standalone testbench, optionally
with AddressSanitizer and UBSan (a subprocess, since ASan cannot be loaded into a running Python).
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
from pathlib import Path

import numpy as np

from tellme.models.errors import UserError

from . import toolchain
from .config import AcceleratorConfig
from .layout import ddr_weights
from .project import design_sources

LIBRARY = "libtellme_csim.so"
LIBRARY_UNITS = ["src/tlmm_top.cpp", "tb/csim_bridge.cpp"]
# testbench -> (translation units, binary, golden data folder)
TESTBENCHES = {
    "decoder": (["src/top.cpp", "tb/tb_decoder.cpp"], "tb_decoder", "tb/data/decoder"),
    "tlmm": (["src/tlmm_top.cpp", "tb/tb_tlmm.cpp"], "tb_tlmm", "tb/data/tlmm"),
}
_SOURCE_SUFFIXES = (".h", ".cpp")
_RC_MESSAGES = {1: "the top refused the shape (K must be 1..max_k, N at most max_n)",
                2: "the weight buffer size does not match K and N"}


def _project_sources(project_dir: Path) -> dict[str, str]:
    """A written project's C++ sources, as they are on disk (so hand edits are simulated too)."""
    project_dir = Path(project_dir)
    files = {}
    for folder in ("src", "tb"):
        for path in sorted((project_dir / folder).glob("*")):
            if path.suffix in _SOURCE_SUFFIXES:
                files[f"{folder}/{path.name}"] = path.read_text()
    if "src/top.cpp" not in files:
        raise UserError(f"{project_dir} is not an HLS project written by tellme hls (no src/top.cpp)")
    return files


def read_project_config(project_dir: Path) -> AcceleratorConfig:
    path = Path(project_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{project_dir} is not an HLS project written by tellme hls (no config.json)")
    return AcceleratorConfig.from_dict(json.loads(path.read_text()))


class TlmmSim:
    """The TLMM layer top, compiled for one AcceleratorConfig."""

    def __init__(self, library: Path, config: AcceleratorConfig):
        self.config = config
        self.library = library
        self._lib = ctypes.CDLL(str(library))
        self._run = self._lib.tellme_csim_tlmm
        self._run.restype = ctypes.c_int
        self._run.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float,
            ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint,
        ]
        self._check_constants()

    @classmethod
    def build(cls, config: AcceleratorConfig, cache_dir: Path | None = None) -> TlmmSim:
        """Compile (or reuse from the cache) the design that `config` generates."""
        sources = design_sources(config)
        sources["config.json"] = config.to_json()
        library = toolchain.build(sources, LIBRARY_UNITS, output=LIBRARY, shared=True, cache_dir=cache_dir)
        return cls(library, config)

    @classmethod
    def from_project(cls, project_dir: Path, cache_dir: Path | None = None) -> TlmmSim:
        """Compile a project folder written by `tellme hls`."""
        config = read_project_config(project_dir)
        sources = _project_sources(project_dir)
        sources["config.json"] = config.to_json()
        library = toolchain.build(sources, LIBRARY_UNITS, output=LIBRARY, shared=True, cache_dir=cache_dir)
        return cls(library, config)

    def constants(self) -> dict[str, str]:
        """The constants the library was compiled with (from its config.h)."""
        buf = ctypes.create_string_buffer(1024)
        self._lib.tellme_csim_describe(buf, ctypes.c_uint(len(buf)))
        return dict(item.split("=", 1) for item in buf.value.decode().split())

    def _check_constants(self) -> None:
        cfg = self.config
        expected = {
            "top": cfg.top, "T": str(cfg.tlmm.t), "Q": str(cfg.tlmm.q), "half_table": str(int(cfg.half_table)),
            "axi_width": str(cfg.axi_width), "vector_bytes": str(cfg.vector_bytes),
            "line_words": str(cfg.line_words), "max_k": str(cfg.max_k), "max_cycles": str(cfg.max_cycles),
            "tile_rows": str(cfg.tile_rows),
        }
        got = self.constants()
        wrong = {key: (got.get(key), value) for key, value in expected.items() if got.get(key) != value}
        if wrong:
            raise RuntimeError(f"{self.library} was built for other parameters: {wrong}")

    def run_lines(
        self, lines: np.ndarray, k: int, xq: np.ndarray, s_x: np.ndarray, s_w: float
    ) -> np.ndarray:
        """Weights already in the DDR layout ([N, cycles, line_bytes]); xq int8 [M, K], s_x [M] ->
        y float32 [M, N]."""
        lines = np.ascontiguousarray(lines, dtype=np.uint8)
        xq = np.ascontiguousarray(np.asarray(xq).reshape(-1, k), dtype=np.int8)
        m, n = xq.shape[0], lines.shape[0]
        s_x = np.ascontiguousarray(np.asarray(s_x, dtype=np.float32).reshape(-1))
        if s_x.size != m:
            raise ValueError(f"s_x has {s_x.size} scales for {m} tokens")
        y = np.zeros((m, n), dtype=np.float32)
        rc = self._run(
            lines.ctypes.data, lines.nbytes, xq.ctypes.data, s_x.ctypes.data, float(np.float32(s_w)),
            y.ctypes.data, m, k, n,
        )
        if rc:
            raise ValueError(f"C simulation rejected K={k}, N={n}: {_RC_MESSAGES.get(rc, f'error {rc}')}")
        return y

    def matmul(
        self, packed: np.ndarray, k: int, xq: np.ndarray, s_x: np.ndarray, s_w: float
    ) -> np.ndarray:
        """Stored TLMM weights [N, Kp/84, 18] -> y = (xq @ W^T) / (s_x * s_w), float32 [M, N]."""
        return self.run_lines(ddr_weights(packed, k, self.config), k, xq, s_x, s_w)


def build_testbench(
    project_dir: Path, which: str = "tlmm", *, sanitize: bool = False, cache_dir: Path | None = None
) -> Path:
    """One of the project's testbenches (TESTBENCHES) as a standalone binary (cached like the library)."""
    units, binary, _ = TESTBENCHES[which]
    flags = toolchain.SANITIZE_FLAGS if sanitize else toolchain.BASE_FLAGS
    label = f"{which} testbench" + (" with ASan/UBSan" if sanitize else "")
    return toolchain.build(
        _project_sources(project_dir), units, output=binary, flags=flags, cache_dir=cache_dir, label=label,
    )


def run_testbench(
    project_dir: Path, which: str = "tlmm", *, sanitize: bool = False, cache_dir: Path | None = None,
    timeout: float = 900,
) -> subprocess.CompletedProcess:
    """Build and run a testbench on the project's golden vectors; returncode 0 means it passed
    (bit-exact for the TLMM engine, within float rounding of the reference for the decoder)."""
    binary = build_testbench(project_dir, which, sanitize=sanitize, cache_dir=cache_dir)
    data = TESTBENCHES[which][2]
    env = dict(os.environ)
    if sanitize:
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    return subprocess.run(
        [str(binary), str(Path(project_dir).resolve() / data)],
        capture_output=True, text=True, env=env, timeout=timeout, check=False,
    )
