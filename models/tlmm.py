"""Table-lookup ternary matmul (TLMM) in numpy: the integer reference for the HLS kernel.

For every group of G=3 int8 activations the 27 possible sums w0*a0 + w1*a1 + w2*a2 are built once per
token; each output is then the sum of table entries picked by the weights' group indices.
"""

from __future__ import annotations

import numpy as np

from .packing import G, padded_k, unpack_index_vectors

# TERNARY_DIGITS[i] = (w0, w1, w2) for group index i = 9*(w0+1) + 3*(w1+1) + (w2+1)
TERNARY_DIGITS = np.array(
    [(i // 9 - 1, (i // 3) % 3 - 1, i % 3 - 1) for i in range(27)], dtype=np.int32
)


def build_tables(xq: np.ndarray) -> np.ndarray:
    """[M, K] int8 activations -> [M, padded_k(K)/3, 27] int32 lookup tables."""
    xq = np.asarray(xq)
    m, k = xq.shape
    padded = np.zeros((m, padded_k(k)), dtype=np.int32)
    padded[:, :k] = xq
    groups = padded.reshape(m, -1, G)
    return groups @ TERNARY_DIGITS.T


class TlmmWeights:
    """One ternary matrix in TLMM form, with the flat gather offsets precomputed once."""

    def __init__(self, packed: np.ndarray, k: int):
        self.idx = unpack_index_vectors(packed)  # [N, n_groups]
        self.n, n_groups = self.idx.shape
        self.k = k
        if padded_k(k) // G != n_groups:
            raise ValueError(f"index vectors hold {n_groups} groups, K={k} needs {padded_k(k) // G}")
        self.offsets = self.idx.astype(np.int64) + 27 * np.arange(n_groups, dtype=np.int64)

    def matmul(self, xq: np.ndarray) -> np.ndarray:
        """[M, K] int8 -> [M, N] int32, by table lookup."""
        tables = build_tables(xq).reshape(xq.shape[0], -1)
        return np.stack([row[self.offsets].sum(axis=1, dtype=np.int32) for row in tables])


def naive_matmul(xq: np.ndarray, w: np.ndarray) -> np.ndarray:
    """[M, K] int8 x [N, K] ternary -> [M, N] int32: the plain integer path the tests compare with."""
    return np.asarray(xq, dtype=np.int32) @ np.asarray(w, dtype=np.int32).T
