"""C simulation: the very C++ that goes to Vitis HLS, compiled by g++ and called from Python.

`CsimLibrary` does the common work: compile the design's sources with the bridge (tb/csim_bridge.cpp)
into the cache (toolchain.py, keyed by a hash of everything that affects the binary), load it with
ctypes, and read back the constants it was compiled with and the loop counters of a profiling build.
`DecoderSim` sits on it: tellme_top with the design's DDR image (and the TLMM engine alone, one matrix
at a time, for bit-exact tests). `run_testbench` builds a project's standalone testbench, optionally
under AddressSanitizer and UBSan (a subprocess: ASan cannot be loaded into a running Python).
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

from tellme.models.ddr_image import DdrImage
from tellme.models.errors import UserError

from . import toolchain
from .config import AcceleratorConfig

if TYPE_CHECKING:
    from .design import Design

LIBRARY = "libtellme_csim.so"
LIBRARY_UNITS = ["src/top.cpp", "tb/csim_bridge.cpp"]
FAST_CSIM = ("-DTELLME_FAST_CSIM",)  # native integer types in place of ap_int (common.h; tests prove them equal)
PROFILE = ("-DTELLME_PROFILE",)  # loop iteration counters (hls/perf.py predicts them)
# testbench -> (translation units, binary, golden data folder)
TESTBENCHES = {
    "decoder": (["src/top.cpp", "tb/tb_decoder.cpp"], "tb_decoder", "tb/data/decoder"),
    "tlmm": (["tb/tb_tlmm.cpp"], "tb_tlmm", "tb/data/tlmm"),
}
_SOURCE_SUFFIXES = (".h", ".cpp")
_F32 = np.float32
# a library's static buffers hold one simulator's image: which one loaded it last, per library
_IMAGE_OWNER: dict[str, int] = {}
_OWNER_IDS = itertools.count()


def _ptr(array: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(array.ctypes.data)


class CsimLibrary:
    """A compiled design loaded through ctypes, with the constants it was compiled with."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.lib = ctypes.CDLL(self.path)

    @classmethod
    def build(cls, sources: dict[str, str], units: list[str], defines: tuple[str, ...] = FAST_CSIM,
              cache_dir: Path | None = None, label: str = "C simulation") -> CsimLibrary:
        """Compile (or reuse from the cache) the sources into a shared library and load it."""
        path = toolchain.build(sources, units, output=LIBRARY, flags=toolchain.BASE_FLAGS + defines, shared=True,
                               cache_dir=cache_dir, label=label)
        return cls(path)

    def function(self, name: str, restype: type | None, *argtypes: type):
        fn = getattr(self.lib, name)
        fn.restype = restype
        fn.argtypes = list(argtypes)
        return fn

    def _text(self, name: str) -> str:
        buf = ctypes.create_string_buffer(1 << 16)
        getattr(self.lib, name)(buf, ctypes.c_uint(len(buf)))
        return buf.value.decode()

    def constants(self) -> dict[str, str]:
        """The constants the library was compiled with (tellme_csim_describe)."""
        return dict(item.split("=", 1) for item in self._text("tellme_csim_describe").split())

    def check(self, expected: dict[str, object]) -> None:
        """RuntimeError when the library was built for other parameters than `expected`."""
        got = self.constants()
        wrong = {key: (got.get(key), str(value)) for key, value in expected.items() if got.get(key) != str(value)}
        if wrong:
            raise RuntimeError(f"{self.path} was built for other parameters: {wrong}")

    def profile(self) -> dict[str, int]:
        """Loop iteration counts of a profiling build since the last reset."""
        return {k: int(v) for k, v in (item.split("=", 1) for item in self._text("tellme_csim_profile").split())}

    def reset_profile(self) -> None:
        self.lib.tellme_csim_profile_reset()


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


class DecoderSim:
    """tellme_top for one design, with the design's static buffers (weight stripes, params) loaded."""

    def __init__(self, library: CsimLibrary, design: Design, image: DdrImage | None):
        self.library = library
        self.design = design
        self.image = image
        self._owner = next(_OWNER_IDS)
        m, cfg = design.model, design.config
        library.check({"ports": cfg.weight_ports, "token_lanes": cfg.tlmm.token_lanes,
                       "max_block": cfg.prefill_block, "hidden": m.hidden_size, "layers": m.num_hidden_layers,
                       "max_context": design.context, "attention_lanes": cfg.attention_lanes,
                       "lm_head": int(cfg.head_on_pl)})
        vp, sz, ui = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint
        self._load_stripe = library.function("tellme_csim_load_stripe", None, ui, vp, sz)
        self._load_params = library.function("tellme_csim_load_params", None, vp, sz)
        self._forward = library.function("tellme_csim_forward", ctypes.c_int, vp, sz, vp, sz, vp, sz, ui, ui)
        self._matrix = library.function("tellme_csim_matrix", ctypes.c_int, vp, ui, ui, ui, vp, vp, vp)

    @classmethod
    def build(cls, design: Design, cache_dir: Path | None = None, profile: bool = False,
              fast: bool = True) -> DecoderSim:
        """Compile the design (or reuse the cached build) and build its DDR image (none for a design made
        from a shape: then only matrix() runs). `profile` counts loop iterations; `fast=False` keeps the
        synthesised ap_int types."""
        defines = (FAST_CSIM if fast else ()) + (PROFILE if profile else ())
        sources = {**design.sources(), "config.json": design.config.to_json()}
        library = CsimLibrary.build(sources, LIBRARY_UNITS, defines, cache_dir, "decoder C simulation")
        return cls(library, design, design.image() if design.folder is not None else None)

    @property
    def max_context(self) -> int:
        return self.design.context

    def constants(self) -> dict[str, str]:
        return self.library.constants()

    def _ensure_image(self) -> None:
        if self.image is None:
            raise UserError(f"design {self.design.name} was made from a shape: running it needs a model folder")
        if _IMAGE_OWNER.get(self.library.path) != self._owner:
            for p, stripe in enumerate(self.image.stripes):
                self._load_stripe(p, _ptr(stripe), stripe.nbytes)
            self._load_params(_ptr(self.image.params), self.image.params.nbytes)
            _IMAGE_OWNER[self.library.path] = self._owner

    def new_cache(self) -> np.ndarray:
        """A zeroed K/V cache: fp16 bit patterns in the design's striped layout (ddr_image)."""
        return np.zeros(self.design.layout.kv_words * 8, dtype=np.uint16)

    def forward(self, hidden_in: np.ndarray, kv: np.ndarray, pos: int) -> np.ndarray:
        """Tokens (embeddings [n, hidden]) at positions [pos, pos + n); the cache updates in place. Returns
        the final hidden states [n, hidden], or with the LM head on the PL the last token's logits [vocab]."""
        m, lay = self.design.model, self.design.layout
        hidden_in = np.asarray(hidden_in, dtype=_F32)
        n = hidden_in.shape[0]
        if pos + n > self.max_context:
            raise UserError(
                f"{pos + n} positions exceed the design's context of {self.max_context}: "
                "shorten the prompt or lower --max-new-tokens"
            )
        if kv.dtype != np.uint16 or not kv.flags.c_contiguous or kv.size != lay.kv_words * 8:
            raise ValueError("the K/V cache must be a contiguous uint16 array from new_cache()")
        rows = np.zeros((n, lay.hidden_pad), dtype=_F32)
        rows[:, : m.hidden_size] = hidden_in
        head = self.design.config.head_on_pl
        results = np.zeros(lay.vocab_pad if head else n * lay.hidden_pad, dtype=_F32)
        rc = self.call(kv, rows, results, n, pos)
        if rc != 0:
            raise RuntimeError(f"tellme_top returned {rc} for n={n}, pos={pos}")
        if head:
            return results[: m.vocab_size].copy()
        return results.reshape(n, lay.hidden_pad)[:, : m.hidden_size].copy()

    def call(self, kv: np.ndarray, hidden_in: np.ndarray, results: np.ndarray, n: int, pos: int) -> int:
        """tellme_top on caller-owned buffers, unchecked, as the board runs it; returns ap_return. The
        static buffers are this simulator's image (loaded into the library when another one had it)."""
        self._ensure_image()
        return int(self._forward(_ptr(kv), kv.nbytes, _ptr(hidden_in), hidden_in.nbytes, _ptr(results),
                                 results.nbytes, n, pos))

    def matrix(self, stripes: np.ndarray, rows: int, wpr: int, xq: np.ndarray, s_x: np.ndarray) -> np.ndarray:
        """One matrix through the TLMM engine alone: stripes uint8 [P, rows * wpr * 16] (ddr_image's layout),
        xq int8 [b, K] (K <= wpr * 75), s_x [b] -> float32 [b, rows * P] = acc / s_x."""
        b, k = xq.shape
        groups = wpr * 25
        padded = np.zeros((b, groups * 3), dtype=np.int8)
        padded[:, :k] = xq
        stripes = np.ascontiguousarray(stripes, dtype=np.uint8)
        s_x = np.ascontiguousarray(np.asarray(s_x, dtype=_F32).reshape(b))
        y = np.zeros((b, rows * self.design.config.weight_ports), dtype=_F32)
        rc = self._matrix(_ptr(stripes), rows, wpr, b, _ptr(padded), _ptr(s_x), _ptr(y))
        if rc:
            raise ValueError(f"the design's buffers do not hold a matrix of {rows} row-steps x {wpr} words "
                             f"for {b} tokens")
        return y

    def profile(self) -> dict[str, int]:
        return self.library.profile()

    def reset_profile(self) -> None:
        self.library.reset_profile()


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
