"""The weight layout the TLMM kernel reads from DDR, for an AcceleratorConfig.

The layout itself ("lines" of Q index vectors, see hls/kernels/tlmm.h) lives in
tellme.models.ddr_image, because the board host builds the same image with numpy only; this module
binds it to the generator's config.
"""

from __future__ import annotations

import numpy as np

from tellme.models.ddr_image import LineLayout, tlmm_lines, unpack_line_vectors

from .config import AcceleratorConfig


def line_layout(config: AcceleratorConfig) -> LineLayout:
    return config.layout


def ddr_weights(packed: np.ndarray, k: int, config: AcceleratorConfig) -> np.ndarray:
    """Stored TLMM form [N, Kp/84, 18] of a K-input matrix -> DDR lines uint8 [N, cycles, line_bytes]."""
    return tlmm_lines(packed, k, line_layout(config))


def ddr_indices(lines: np.ndarray, config: AcceleratorConfig) -> np.ndarray:
    """DDR lines [N, cycles, line_bytes] -> group indices [N, cycles*Q*T] (for checking a layout)."""
    lines = np.asarray(lines, dtype=np.uint8)
    n, cycles, _ = lines.shape
    q, vb = config.tlmm.q, config.vector_bytes
    vectors = lines[:, :, : q * vb].reshape(n, cycles, q, vb)
    return unpack_line_vectors(vectors, config.tlmm.t).reshape(n, -1)
