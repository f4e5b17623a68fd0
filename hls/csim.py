"""C simulation: the very C++ that goes to Vitis HLS, compiled by g++ and called from Python.

One library class does the common work: compile the design's sources with the bridge (tb/csim_bridge.cpp)
into the cache (toolchain.py, keyed by a hash of everything that affects the binary), load it with
ctypes, read back the constants it was compiled with and check them, and remember which simulator's
weights the library's static storage holds. Two thin simulators sit on it: `TlmmSim` (the engine's
standalone top, one matrix at a time) and `DecoderSim` (tellme_top, the whole decoder with its DDR
image). `run_testbench` builds a project's standalone testbench, optionally under AddressSanitizer and
UBSan (a subprocess: ASan cannot be loaded into a running Python).
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tellme.models.config import PROJECTIONS
from tellme.models.ddr_image import DdrImage, tlmm_lines
from tellme.models.errors import UserError

from . import toolchain
from .config import AcceleratorConfig
from .project import engine_sources

if TYPE_CHECKING:
    from .design import Design

LIBRARY = "libtellme_csim.so"
TLMM_UNITS = ["src/tlmm_top.cpp", "tb/csim_bridge.cpp"]
DECODER_UNITS = ["src/top.cpp", "src/tlmm_top.cpp", "tb/csim_bridge.cpp"]
# testbench -> (translation units, binary, golden data folder)
TESTBENCHES = {
    "decoder": (["src/top.cpp", "tb/tb_decoder.cpp"], "tb_decoder", "tb/data/decoder"),
    "tlmm": (["src/tlmm_top.cpp", "tb/tb_tlmm.cpp"], "tb_tlmm", "tb/data/tlmm"),
}
_SOURCE_SUFFIXES = (".h", ".cpp")
_RC_MESSAGES = {1: "the top refused the shape (K must be 1..max_k, N at most max_n)",
                2: "the weight buffer size does not match K and N"}
_F32 = np.float32
# a library's weights live in its static storage: which simulator loaded them last, per library
_WEIGHTS_OWNER: dict[str, int] = {}
_INSTANCE_IDS = itertools.count()


def _ptr(array: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(array.ctypes.data)


class CsimLibrary:
    """A compiled design loaded through ctypes, with the constants it was compiled with."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.lib = ctypes.CDLL(self.path)

    @classmethod
    def build(cls, sources: dict[str, str], units: list[str], cache_dir: Path | None = None,
              label: str = "C simulation") -> CsimLibrary:
        """Compile (or reuse from the cache) the sources into a shared library and load it."""
        path = toolchain.build(sources, units, output=LIBRARY, shared=True, cache_dir=cache_dir, label=label)
        return cls(path)

    def function(self, name: str, restype: type | None, *argtypes: type) -> ctypes._CFuncPtr:
        fn = getattr(self.lib, name)
        fn.restype = restype
        fn.argtypes = list(argtypes)
        return fn

    def constants(self) -> dict[str, str]:
        """The constants the library was compiled with (tellme_csim_describe)."""
        buf = ctypes.create_string_buffer(2048)
        self.lib.tellme_csim_describe(buf, ctypes.c_uint(len(buf)))
        return dict(item.split("=", 1) for item in buf.value.decode().split())

    def check(self, expected: dict[str, object]) -> None:
        """RuntimeError when the library was built for other parameters than `expected`."""
        got = self.constants()
        wrong = {key: (got.get(key), str(value)) for key, value in expected.items() if got.get(key) != str(value)}
        if wrong:
            raise RuntimeError(f"{self.path} was built for other parameters: {wrong}")

    def weights_owner(self) -> int | None:
        """Which simulator's weights the library's static storage holds (an id from new_owner)."""
        return _WEIGHTS_OWNER.get(self.path)

    def set_weights_owner(self, owner: int) -> None:
        _WEIGHTS_OWNER[self.path] = owner

    @staticmethod
    def new_owner() -> int:
        return next(_INSTANCE_IDS)


def engine_constants(config: AcceleratorConfig) -> dict[str, object]:
    """What tellme_csim_describe reports for an engine config."""
    return {"top": config.top, "T": config.tlmm.t, "Q": config.tlmm.q, "half_table": int(config.half_table),
            "axi_width": config.axi_width, "vector_bytes": config.vector_bytes, "line_words": config.line_words,
            "max_k": config.max_k, "max_cycles": config.max_cycles, "tile_rows": config.tile_rows}


def read_project_config(project_dir: Path) -> AcceleratorConfig:
    path = Path(project_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{project_dir} is not an HLS project written by tellme hls (no config.json)")
    return AcceleratorConfig.from_dict(json.loads(path.read_text()))


def project_sources(project_dir: Path) -> dict[str, str]:
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


class TlmmSim:
    """The TLMM engine's standalone top (one matrix, one token per call), for one engine config."""

    def __init__(self, library: CsimLibrary, config: AcceleratorConfig):
        self.config = config
        self.library = library
        library.check(engine_constants(config))
        self._run = library.function(
            "tellme_csim_tlmm", ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p,
            ctypes.c_float, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint,
        )

    @classmethod
    def build(cls, config: AcceleratorConfig, cache_dir: Path | None = None) -> TlmmSim:
        """Compile (or reuse from the cache) the engine that `config` generates."""
        sources = {**engine_sources(config), "config.json": config.to_json()}
        return cls(CsimLibrary.build(sources, TLMM_UNITS, cache_dir, "TLMM C simulation"), config)

    @classmethod
    def from_project(cls, project_dir: Path, cache_dir: Path | None = None) -> TlmmSim:
        """Compile a project folder written by `tellme hls` (which always holds the decoder too)."""
        config = read_project_config(project_dir)
        sources = {**project_sources(project_dir), "config.json": config.to_json()}
        return cls(CsimLibrary.build(sources, DECODER_UNITS, cache_dir, "TLMM C simulation"), config)

    def constants(self) -> dict[str, str]:
        return self.library.constants()

    def run_lines(self, lines: np.ndarray, k: int, xq: np.ndarray, s_x: np.ndarray, s_w: float) -> np.ndarray:
        """Weights already in the DDR layout ([N, cycles, line_bytes]); xq int8 [M, K], s_x [M] ->
        y float32 [M, N]."""
        lines = np.ascontiguousarray(lines, dtype=np.uint8)
        xq = np.ascontiguousarray(np.asarray(xq).reshape(-1, k), dtype=np.int8)
        m, n = xq.shape[0], lines.shape[0]
        s_x = np.ascontiguousarray(np.asarray(s_x, dtype=np.float32).reshape(-1))
        if s_x.size != m:
            raise ValueError(f"s_x has {s_x.size} scales for {m} tokens")
        y = np.zeros((m, n), dtype=np.float32)
        rc = self._run(_ptr(lines), lines.nbytes, _ptr(xq), _ptr(s_x), float(np.float32(s_w)), _ptr(y), m, k, n)
        if rc:
            raise ValueError(f"C simulation rejected K={k}, N={n}: {_RC_MESSAGES.get(rc, f'error {rc}')}")
        return y

    def matmul(self, packed: np.ndarray, k: int, xq: np.ndarray, s_x: np.ndarray, s_w: float) -> np.ndarray:
        """Stored TLMM weights [N, Kp/84, 18] -> y = (xq @ W^T) / (s_x * s_w), float32 [M, N]."""
        return self.run_lines(tlmm_lines(packed, k, self.config.layout), k, xq, s_x, s_w)


class DecoderSim:
    """tellme_top for one design, with the design's DDR image loaded."""

    def __init__(self, library: CsimLibrary, design: Design, image: DdrImage):
        self.library = library
        self.design = design
        self.image = image
        self._owner = library.new_owner()
        m = design.model
        library.check({**engine_constants(design.config), "hidden": m.hidden_size, "layers": m.num_hidden_layers,
                       "max_context": design.context, "attention_pes": design.config.attention_pes})
        self._load = library.function("tellme_decoder_load_weights", None, ctypes.c_void_p, ctypes.c_size_t)
        self._forward = library.function("tellme_decoder_forward", ctypes.c_int,
                                         *[ctypes.c_void_p] * 5, ctypes.c_uint, ctypes.c_uint)
        self._matvec = library.function("tellme_decoder_matvec", ctypes.c_int, ctypes.c_size_t, ctypes.c_void_p,
                                        ctypes.c_float, ctypes.c_float, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint)

    @classmethod
    def build(cls, design: Design, cache_dir: Path | None = None) -> DecoderSim:
        """Compile the design (or reuse the cached build) and build its DDR image."""
        sources = {**design.sources(), "config.json": design.config.to_json()}
        library = CsimLibrary.build(sources, DECODER_UNITS, cache_dir, "decoder C simulation")
        return cls(library, design, design.image())

    @property
    def max_context(self) -> int:
        return self.design.context

    def constants(self) -> dict[str, str]:
        return self.library.constants()

    def _ensure_weights(self) -> None:
        if self.library.weights_owner() != self._owner:
            self._load(_ptr(self.image.weights), self.image.weights.nbytes)
            self.library.set_weights_owner(self._owner)

    def new_cache(self) -> tuple[np.ndarray, np.ndarray]:
        """Zeroed K and V caches [layers, max_context, kv_size] of fp16 bit patterns."""
        c = self.design.model
        shape = (c.num_hidden_layers, self.max_context, c.kv_size)
        return np.zeros(shape, dtype=np.uint16), np.zeros(shape, dtype=np.uint16)

    def forward(self, hidden_in: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, pos: int) -> np.ndarray:
        """Run tokens (embeddings [n, hidden]) at positions [pos, pos + n); caches update in place."""
        hidden_in = np.ascontiguousarray(hidden_in, dtype=_F32)
        n = hidden_in.shape[0]
        if pos + n > self.max_context:
            raise UserError(
                f"{pos + n} positions exceed the design's context of {self.max_context}: "
                "shorten the prompt or lower --max-new-tokens"
            )
        for cache in (k_cache, v_cache):
            if cache.dtype != np.uint16 or not cache.flags.c_contiguous or cache.size != k_cache.size:
                raise ValueError("KV caches must be contiguous uint16 arrays from new_cache()")
        hidden_out = np.zeros_like(hidden_in)
        rc = self.call(self.image.params, k_cache, v_cache, hidden_in, hidden_out, n, pos)
        if rc != 0:
            raise RuntimeError(f"tellme_top returned {rc} for n={n}, pos={pos}")
        return hidden_out

    def call(self, params: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, hidden_in: np.ndarray,
             hidden_out: np.ndarray, n: int, pos: int) -> int:
        """tellme_top on caller-owned buffers, unchecked, as the board runs it; returns ap_return.
        The weights are this simulator's image (loaded into the library when another one had it)."""
        self._ensure_weights()
        return int(self._forward(_ptr(params), _ptr(k_cache), _ptr(v_cache), _ptr(hidden_in), _ptr(hidden_out),
                                 n, pos))

    def matvec(self, layer: int, proj: str, xq: np.ndarray, s_x: float, s_w: float) -> np.ndarray:
        """One matrix of the weights image through the decoder's on-chip TLMM path."""
        n, k = self.design.model.linear_shapes()[proj]
        o = self.design.offsets
        offset = layer * o.weight_layer_stride + o.weight_proj[PROJECTIONS.index(proj)]
        xq = np.ascontiguousarray(xq, dtype=np.int8).reshape(k)
        y = np.zeros(n, dtype=_F32)
        self._ensure_weights()
        rc = self._matvec(offset, _ptr(xq), float(s_x), float(s_w), _ptr(y), k, n)
        if rc != 0:
            raise RuntimeError(f"tellme_decoder_matvec returned {rc}")
        return y


def build_testbench(
    project_dir: Path, which: str = "tlmm", *, sanitize: bool = False, cache_dir: Path | None = None
) -> Path:
    """One of the project's testbenches (TESTBENCHES) as a standalone binary (cached like the library)."""
    units, binary, _ = TESTBENCHES[which]
    flags = toolchain.SANITIZE_FLAGS if sanitize else toolchain.BASE_FLAGS
    label = f"{which} testbench" + (" with ASan/UBSan" if sanitize else "")
    return toolchain.build(
        project_sources(project_dir), units, output=binary, flags=flags, cache_dir=cache_dir, label=label,
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
