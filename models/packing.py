"""Ternary weight packings: the Hugging Face 2-bit layout and the TLMM index-vector layout.

TLMM layout (see models/FORMAT.md): a weight row of K ternary values is zero-padded to a multiple
of G*T = 84, cut into groups of G=3, each group becomes one index
``9*(w0+1) + 3*(w1+1) + (w2+1)`` in [0, 26] (13 is the all-zero group), and T=28 indices form one
140-bit index vector stored little-endian in 18 bytes (bits 140..143 are zero).
"""

from __future__ import annotations

import numpy as np

G = 3  # activations (and weights) per lookup group
T = 28  # indices per index vector
K_ALIGN = G * T  # 84: the K padding unit
INDEX_BITS = 5
VECTOR_BYTES = -(-T * INDEX_BITS // 8)  # 18 bytes hold the 140 bits
ZERO_INDEX = 13  # index of the all-zero group (0, 0, 0)
WORD_INDICES = 25  # indices per 128-bit index word of the accelerator's weight stripes (125 bits + 3 zero)
HF_VALUES_PER_BYTE = 4


def padded_k(k: int) -> int:
    """K rounded up to the TLMM padding unit (84)."""
    return -(-k // K_ALIGN) * K_ALIGN


def ternary_to_indices(w: np.ndarray) -> np.ndarray:
    """[N, K] ternary int -> [N, padded_k(K)/3] uint8 group indices (zero-padded groups are 13)."""
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"expected a 2-D weight matrix, got shape {w.shape}")
    if w.size and (w.min() < -1 or w.max() > 1):
        raise ValueError("weights must be ternary (-1, 0, 1)")
    n, k = w.shape
    padded = np.zeros((n, padded_k(k)), dtype=np.int16)
    padded[:, :k] = w
    groups = (padded + 1).reshape(n, -1, G)
    return (9 * groups[..., 0] + 3 * groups[..., 1] + groups[..., 2]).astype(np.uint8)


def indices_to_ternary(idx: np.ndarray, k: int) -> np.ndarray:
    """Inverse of ternary_to_indices: [N, n_groups] uint8 -> [N, k] int8."""
    idx = np.asarray(idx).astype(np.int16)
    if idx.size and idx.max() > 26:
        raise ValueError("group index out of range (> 26)")
    digits = np.stack([idx // 9, (idx // 3) % 3, idx % 3], axis=-1) - 1
    w = digits.reshape(idx.shape[0], -1).astype(np.int8)
    if k > w.shape[1]:
        raise ValueError(f"k={k} exceeds the {w.shape[1]} weights held by the indices")
    return np.ascontiguousarray(w[:, :k])


def vector_bytes(t: int = T) -> int:
    """Bytes of one index vector of t indices (5t bits, rounded up to whole bytes)."""
    return -(-t * INDEX_BITS // 8)


def pack_vectors(idx: np.ndarray, t: int = T) -> np.ndarray:
    """[..., n*t] uint8 indices -> [..., n, vector_bytes(t)] uint8: every t consecutive indices form one
    little-endian vector, index j at bits 5j..5j+4, zero bits up to the whole byte. The one packer of
    the project: the stored TLMM form (t=T) and the accelerator's DDR layouts both use it."""
    idx = np.asarray(idx, dtype=np.uint8)
    if idx.shape[-1] % t:
        raise ValueError(f"group count {idx.shape[-1]} is not a multiple of t={t}")
    vectors = idx.reshape(*idx.shape[:-1], idx.shape[-1] // t, t)
    bits = (vectors[..., None] >> np.arange(INDEX_BITS, dtype=np.uint8)) & 1
    bits = bits.reshape(*vectors.shape[:-1], t * INDEX_BITS)
    pad = np.zeros((*bits.shape[:-1], vector_bytes(t) * 8 - t * INDEX_BITS), dtype=np.uint8)
    return np.packbits(np.concatenate([bits, pad], axis=-1), axis=-1, bitorder="little")


def unpack_vectors(packed: np.ndarray, t: int = T) -> np.ndarray:
    """Inverse of pack_vectors: [..., n, vector_bytes(t)] uint8 -> [..., n*t] uint8 indices."""
    packed = np.asarray(packed, dtype=np.uint8)
    if packed.ndim < 2 or packed.shape[-1] != vector_bytes(t):
        raise ValueError(f"expected [..., {vector_bytes(t)}] index vectors of t={t}, got shape {packed.shape}")
    bits = np.unpackbits(packed, axis=-1, bitorder="little")[..., : t * INDEX_BITS]
    bits = bits.reshape(*packed.shape[:-1], t, INDEX_BITS)
    idx = (bits << np.arange(INDEX_BITS, dtype=np.uint8)).sum(axis=-1, dtype=np.uint8)
    return idx.reshape(*packed.shape[:-2], packed.shape[-2] * t)


def pack_index_vectors(idx: np.ndarray) -> np.ndarray:
    """[N, n_groups] indices (n_groups a multiple of T) -> [N, n_groups/T, 18] uint8: the stored form."""
    return pack_vectors(idx, T)


def unpack_index_vectors(packed: np.ndarray) -> np.ndarray:
    """Inverse of pack_index_vectors: [N, V, 18] uint8 -> [N, V*T] uint8 indices."""
    packed = np.asarray(packed, dtype=np.uint8)
    if packed.ndim != 3:
        raise ValueError(f"expected [N, V, {VECTOR_BYTES}] index vectors, got shape {packed.shape}")
    return unpack_vectors(packed, T)


def pack_tlmm(w: np.ndarray) -> np.ndarray:
    """[N, K] ternary -> [N, padded_k(K)/84, 18] uint8: the stored TLMM form of a weight matrix."""
    return pack_index_vectors(ternary_to_indices(w))


def unpack_tlmm(packed: np.ndarray, k: int) -> np.ndarray:
    """[N, V, 18] stored TLMM form -> [N, k] int8 ternary weights."""
    return indices_to_ternary(unpack_index_vectors(packed), k)


def unpack_hf_2bit(packed: np.ndarray) -> np.ndarray:
    """Hugging Face BitNet packing: uint8 [N/4, K], bits 2i..2i+1 of row r hold row i*(N/4)+r,
    stored as value+1. Returns int8 [N, K]."""
    packed = np.asarray(packed, dtype=np.uint8)
    rows = packed.shape[0]
    parts = [((packed >> (2 * i)) & 3).astype(np.int8) - 1 for i in range(HF_VALUES_PER_BYTE)]
    return np.concatenate(parts, axis=0).reshape(rows * HF_VALUES_PER_BYTE, *packed.shape[1:])


def pack_hf_2bit(w: np.ndarray) -> np.ndarray:
    """Inverse of unpack_hf_2bit for N divisible by 4 (the layout transformers writes)."""
    w = np.asarray(w)
    if w.shape[0] % HF_VALUES_PER_BYTE:
        raise ValueError(f"out_features {w.shape[0]} is not a multiple of {HF_VALUES_PER_BYTE}")
    rows = w.shape[0] // HF_VALUES_PER_BYTE
    values = (w.astype(np.int16) + 1).astype(np.uint8)
    packed = np.zeros((rows, *w.shape[1:]), dtype=np.uint8)
    for i in range(HF_VALUES_PER_BYTE):
        packed |= values[i * rows : (i + 1) * rows] << (2 * i)
    return packed
