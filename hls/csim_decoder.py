"""C simulation of the whole decoder: the design's tellme_top compiled by g++ and driven through ctypes
with the same DDR images and KV cache buffers the board gets."""

from __future__ import annotations

import ctypes
import itertools
from pathlib import Path

import numpy as np

from tellme.models.config import PROJECTIONS
from tellme.models.ddr_image import DdrImage, build_ddr_image
from tellme.models.errors import UserError
from tellme.models.model_folder import ModelFolder

from . import toolchain
from .config import AcceleratorConfig
from .decoder_design import DecoderSpec
from .layout import line_layout
from .project import design_sources

LIBRARY = "libtellme_decoder.so"
LIBRARY_UNITS = ["src/top.cpp", "tb/csim_decoder.cpp"]
_F32 = np.float32
# a library's weights live in its static storage: which DecoderSim loaded them last, per library
_WEIGHTS_OWNER: dict[str, int] = {}
_INSTANCE_IDS = itertools.count()


def _ptr(array: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(array.ctypes.data)


class DecoderSim:
    """tellme_top for one model and AcceleratorConfig, with its weights image loaded."""

    def __init__(self, library: Path, spec: DecoderSpec, image: DdrImage):
        self.library = str(library)
        self.spec = spec
        self.image = image
        self._id = next(_INSTANCE_IDS)
        lib = ctypes.CDLL(self.library)
        self._load = lib.tellme_decoder_load_weights
        self._load.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self._forward = lib.tellme_decoder_forward
        self._forward.restype = ctypes.c_int
        self._forward.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_uint, ctypes.c_uint]
        self._matvec = lib.tellme_decoder_matvec
        self._matvec.restype = ctypes.c_int
        self._matvec.argtypes = [ctypes.c_size_t, ctypes.c_void_p, ctypes.c_float, ctypes.c_float,
                                 ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        self._describe = lib.tellme_decoder_describe

    @classmethod
    def build(cls, folder: ModelFolder, config: AcceleratorConfig, cache_dir: Path | None = None) -> DecoderSim:
        """Generate the design for this model, compile it (or reuse the cached build), build the images."""
        spec = DecoderSpec.for_model(folder.config, config)
        sources = design_sources(config, spec)
        sources["config.json"] = config.to_json()
        library = toolchain.build(sources, LIBRARY_UNITS, output=LIBRARY, shared=True, cache_dir=cache_dir,
                                  label="decoder C simulation")
        image = build_ddr_image(folder, line_layout(config), spec.max_context)
        return cls(library, spec, image)

    def constants(self) -> dict[str, str]:
        buf = ctypes.create_string_buffer(1024)
        self._describe(buf, ctypes.c_uint(len(buf)))
        return dict(item.split("=", 1) for item in buf.value.decode().split())

    def _ensure_weights(self) -> None:
        if _WEIGHTS_OWNER.get(self.library) != self._id:
            self._load(_ptr(self.image.weights), self.image.weights.nbytes)
            _WEIGHTS_OWNER[self.library] = self._id

    def new_cache(self) -> tuple[np.ndarray, np.ndarray]:
        """Zeroed K and V caches [layers, max_context, kv_size] of fp16 bit patterns."""
        c = self.spec.config
        shape = (c.num_hidden_layers, self.spec.max_context, c.kv_size)
        return np.zeros(shape, dtype=np.uint16), np.zeros(shape, dtype=np.uint16)

    def forward(self, hidden_in: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, pos: int) -> np.ndarray:
        """Run tokens (embeddings [n, hidden]) at positions [pos, pos + n); caches update in place."""
        hidden_in = np.ascontiguousarray(hidden_in, dtype=_F32)
        n = hidden_in.shape[0]
        if pos + n > self.spec.max_context:
            raise UserError(
                f"{pos + n} positions exceed the design's context of {self.spec.max_context}: "
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
        The weights are this instance's image (loaded into the library when another instance had it)."""
        self._ensure_weights()
        return int(self._forward(_ptr(params), _ptr(k_cache), _ptr(v_cache), _ptr(hidden_in), _ptr(hidden_out),
                                 n, pos))

    def matvec(self, layer: int, proj: str, xq: np.ndarray, s_x: float, s_w: float) -> np.ndarray:
        """One matrix of the weights image through the decoder's on-chip TLMM path."""
        n, k = self.spec.config.linear_shapes()[proj]
        o = self.spec.offsets
        offset = layer * o.weight_layer_stride + o.weight_proj[PROJECTIONS.index(proj)]
        xq = np.ascontiguousarray(xq, dtype=np.int8).reshape(k)
        y = np.zeros(n, dtype=_F32)
        self._ensure_weights()
        rc = self._matvec(offset, _ptr(xq), float(s_x), float(s_w), _ptr(y), k, n)
        if rc != 0:
            raise RuntimeError(f"tellme_decoder_matvec returned {rc}")
        return y
