"""The weight layout the TLMM kernel reads from DDR, made from the stored TLMM form.

Stored form (models/packing.py): uint8 [N, Kp/84, 18], T=28 indices per 18-byte vector.
DDR form ("lines", see hls/kernels/tlmm.h): uint8 [N, cycles, line_bytes]. For the configured T, a
row's group indices are cut into vectors of T (5 bits each, little-endian, ceil(5T/8) bytes); Q
consecutive vectors make one line (vector c*Q + q at byte q*vector_bytes of line c), zero-filled up
to whole AXI words; vectors past the row's end hold the zero group 13. One line is what one lookup
cycle consumes, and its Q vectors land in Q separate weight banks, so the kernel reads Q vectors
per cycle while DDR sees one sequential burst per tile of rows.
"""

from __future__ import annotations

import numpy as np

from tellme.models.packing import ZERO_INDEX, padded_k, unpack_index_vectors

from .config import INDEX_BITS, AcceleratorConfig

_G = 3


def _pack_vectors(idx: np.ndarray, vector_bytes: int) -> np.ndarray:
    """[..., T] indices -> [..., vector_bytes] uint8, index t at bits 5t..5t+4 (little-endian)."""
    bits = (idx[..., None] >> np.arange(INDEX_BITS, dtype=np.uint8)) & 1
    bits = bits.reshape(*idx.shape[:-1], idx.shape[-1] * INDEX_BITS)
    pad = vector_bytes * 8 - bits.shape[-1]
    bits = np.concatenate([bits, np.zeros((*bits.shape[:-1], pad), dtype=np.uint8)], axis=-1)
    return np.packbits(bits, axis=-1, bitorder="little")


def _unpack_vectors(vectors: np.ndarray, t: int) -> np.ndarray:
    """Inverse of _pack_vectors: [..., vector_bytes] -> [..., T] uint8 indices."""
    bits = np.unpackbits(vectors, axis=-1, bitorder="little")[..., : t * INDEX_BITS]
    bits = bits.reshape(*vectors.shape[:-1], t, INDEX_BITS)
    return (bits << np.arange(INDEX_BITS, dtype=np.uint8)).sum(axis=-1, dtype=np.uint8)


def ddr_weights(packed: np.ndarray, k: int, config: AcceleratorConfig) -> np.ndarray:
    """Stored TLMM form [N, Kp/84, 18] of a K-input matrix -> DDR lines uint8 [N, cycles, line_bytes]."""
    packed = np.asarray(packed, dtype=np.uint8)
    if packed.ndim != 3 or packed.shape[1] * 84 != padded_k(k):
        raise ValueError(f"stored TLMM weights of shape {packed.shape} do not hold K={k}")
    idx = unpack_index_vectors(packed)  # [N, Kp/3]
    n = idx.shape[0]
    t, q = config.tlmm.t, config.tlmm.q
    cycles = config.cycles(k)
    groups = cycles * q * t
    used = -(-k // _G)
    if np.any(idx[:, used:] != ZERO_INDEX):
        raise ValueError(f"stored TLMM weights have non-zero groups beyond K={k}")
    lanes = np.full((n, groups), ZERO_INDEX, dtype=np.uint8)
    lanes[:, :used] = idx[:, :used]
    vectors = _pack_vectors(lanes.reshape(n, cycles, q, t), config.vector_bytes)
    lines = np.zeros((n, cycles, config.line_bytes), dtype=np.uint8)
    lines[:, :, : q * config.vector_bytes] = vectors.reshape(n, cycles, q * config.vector_bytes)
    return lines


def ddr_indices(lines: np.ndarray, config: AcceleratorConfig) -> np.ndarray:
    """DDR lines [N, cycles, line_bytes] -> group indices [N, cycles*Q*T] (for checking a layout)."""
    lines = np.asarray(lines, dtype=np.uint8)
    n, cycles, _ = lines.shape
    q, vb = config.tlmm.q, config.vector_bytes
    vectors = lines[:, :, : q * vb].reshape(n, cycles, q, vb)
    return _unpack_vectors(vectors, config.tlmm.t).reshape(n, -1)
