"""The DDR image of a model: what the accelerator reads through its m_axi ports (models/FORMAT.md).

Two contiguous buffers, built once and uploaded once:
  weights  uint8: every ternary matrix in the TLMM "line" layout, layer by layer, in PROJECTIONS order
  params   float32: per layer the four norm weights and the seven weight divisors s_w, then the final
           norm, then the RoPE cos and sin tables [max_context, head_dim]
Offsets are fixed by the model shape and the engine layout (T, Q, AXI width), so the generator writes
the same numbers into the design's config.h that this module uses to build the image. numpy only:
the board host builds the image too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import LAYER_NORMS, PROJECTIONS, ModelConfig
from .model_folder import ModelFolder
from .packing import (
    K_ALIGN,
    ZERO_INDEX,
    G,
    T,
    pack_vectors,
    padded_k,
    unpack_index_vectors,
    unpack_vectors,
    vector_bytes,
)

SCALE_SLOTS = 8  # s_w of the 7 projections, padded to 8 floats


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class LineLayout:
    """How one weight matrix is cut into lines of Q index vectors of T indices (see hls/kernels/tlmm.h)."""

    t: int = T
    q: int = 8
    axi_width: int = 128

    @property
    def vector_bytes(self) -> int:
        return vector_bytes(self.t)

    @property
    def line_words(self) -> int:
        return _ceil_div(self.q * self.vector_bytes * 8, self.axi_width)

    @property
    def line_bytes(self) -> int:
        return self.line_words * self.axi_width // 8

    def cycles(self, k: int) -> int:
        """Lines (lookup cycles) per row of in_features k."""
        return _ceil_div(_ceil_div(k, G * self.t), self.q)

    def matrix_words(self, n: int, k: int) -> int:
        return n * self.cycles(k) * self.line_words


def tlmm_lines(packed: np.ndarray, k: int, layout: LineLayout) -> np.ndarray:
    """Stored TLMM form [N, Kp/84, 18] of a K-input matrix -> DDR lines uint8 [N, cycles, line_bytes]."""
    packed = np.asarray(packed, dtype=np.uint8)
    if packed.ndim != 3 or packed.shape[1] * K_ALIGN != padded_k(k):
        raise ValueError(f"stored TLMM weights of shape {packed.shape} do not hold K={k}")
    idx = unpack_index_vectors(packed)  # [N, Kp/3]
    n = idx.shape[0]
    cycles = layout.cycles(k)
    used = _ceil_div(k, G)
    if np.any(idx[:, used:] != ZERO_INDEX):
        raise ValueError(f"stored TLMM weights have non-zero groups beyond K={k}")
    lanes = np.full((n, cycles * layout.q * layout.t), ZERO_INDEX, dtype=np.uint8)
    lanes[:, :used] = idx[:, :used]
    vectors = pack_vectors(lanes.reshape(n, cycles, layout.q * layout.t), layout.t)
    lines = np.zeros((n, cycles, layout.line_bytes), dtype=np.uint8)
    lines[:, :, : layout.q * layout.vector_bytes] = vectors.reshape(n, cycles, layout.q * layout.vector_bytes)
    return lines


def line_indices(lines: np.ndarray, layout: LineLayout) -> np.ndarray:
    """Inverse of tlmm_lines up to the padding: lines [N, cycles, line_bytes] -> indices [N, cycles*Q*T]."""
    lines = np.asarray(lines, dtype=np.uint8)
    n, cycles, _ = lines.shape
    vectors = lines[:, :, : layout.q * layout.vector_bytes].reshape(n, cycles * layout.q, layout.vector_bytes)
    return unpack_vectors(vectors, layout.t)


@dataclass(frozen=True)
class ImageOffsets:
    """Where everything sits. Weight offsets in AXI words, params offsets in floats."""

    weight_proj: tuple[int, ...]  # offset of each projection inside a layer
    weight_layer_stride: int
    weight_words: int
    param_norms: tuple[int, ...]  # offset of each LAYER_NORMS vector inside a layer
    param_scales: int  # offset of the SCALE_SLOTS divisors inside a layer
    param_layer_stride: int
    param_final_norm: int
    param_rope_cos: int
    param_rope_sin: int
    param_floats: int
    max_context: int


def image_offsets(config: ModelConfig, layout: LineLayout, max_context: int) -> ImageOffsets:
    shapes = config.linear_shapes()
    proj, at = [], 0
    for name in PROJECTIONS:
        proj.append(at)
        n, k = shapes[name]
        at += layout.matrix_words(n, k)
    layer_words = at
    dims = {"input_layernorm": config.hidden_size, "post_attention_layernorm": config.hidden_size,
            "attn_sub_norm": config.q_size, "ffn_sub_norm": config.intermediate_size}
    norms, p = [], 0
    for name in LAYER_NORMS:
        norms.append(p)
        p += dims[name]
    scales = p
    layer_floats = p + SCALE_SLOTS
    final = config.num_hidden_layers * layer_floats
    cos = final + config.hidden_size
    sin = cos + max_context * config.head_dim
    return ImageOffsets(
        weight_proj=tuple(proj), weight_layer_stride=layer_words,
        weight_words=config.num_hidden_layers * layer_words,
        param_norms=tuple(norms), param_scales=scales, param_layer_stride=layer_floats,
        param_final_norm=final, param_rope_cos=cos, param_rope_sin=sin,
        param_floats=sin + max_context * config.head_dim, max_context=max_context,
    )


@dataclass
class DdrImage:
    weights: np.ndarray  # uint8 [weight_words * axi_width / 8]
    params: np.ndarray  # float32 [param_floats]
    offsets: ImageOffsets
    layout: LineLayout

    def named_buffers(self) -> dict[str, np.ndarray]:
        """The static buffers by the names the design's top interface gives them (its "image" buffers):
        the board host uploads each into its own contiguous buffer."""
        return {"weights": self.weights, "params": self.params}


def build_ddr_image(folder: ModelFolder, layout: LineLayout, max_context: int) -> DdrImage:
    """The model's weights and parameters images for an engine with this layout and context."""
    from .reference import rope_tables

    c = folder.config
    if max_context > c.max_position_embeddings:
        raise ValueError(f"max_context {max_context} exceeds max_position_embeddings {c.max_position_embeddings}")
    off = image_offsets(c, layout, max_context)
    word_bytes = layout.axi_width // 8
    weights = np.zeros(off.weight_words * word_bytes, dtype=np.uint8)
    params = np.zeros(off.param_floats, dtype=np.float32)
    shapes = c.linear_shapes()
    for i in range(c.num_hidden_layers):
        for j, name in enumerate(PROJECTIONS):
            lines = tlmm_lines(folder.tensor(f"layers.{i}.{name}.tlmm"), shapes[name][1], layout).ravel()
            start = (i * off.weight_layer_stride + off.weight_proj[j]) * word_bytes
            weights[start : start + lines.size] = lines
            params[i * off.param_layer_stride + off.param_scales + j] = folder.tensor(f"layers.{i}.{name}.scale")[0]
        for j, name in enumerate(LAYER_NORMS):
            vector = folder.tensor(f"layers.{i}.{name}")
            start = i * off.param_layer_stride + off.param_norms[j]
            params[start : start + vector.size] = vector
    params[off.param_final_norm : off.param_final_norm + c.hidden_size] = folder.tensor("norm")
    cos, sin = rope_tables(c, max_context)
    params[off.param_rope_cos : off.param_rope_sin] = cos.ravel()
    params[off.param_rope_sin :] = sin.ravel()
    return DdrImage(weights=weights, params=params, offsets=off, layout=layout)
