"""Packing round trips (hypothesis) and the numpy TLMM against the plain integer matmul."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tellme.models import packing
from tellme.models.tlmm import TlmmWeights, build_tables, naive_matmul


def ternary(n_max: int = 12, k_max: int = 200):
    shapes = st.tuples(st.integers(1, n_max), st.integers(1, k_max))
    return shapes.flatmap(lambda s: arrays(np.int8, s, elements=st.integers(-1, 1)))


@given(ternary())
@settings(max_examples=60, deadline=None)
def test_tlmm_pack_round_trip(w):
    packed = packing.pack_tlmm(w)
    k = w.shape[1]
    assert packed.shape == (w.shape[0], packing.padded_k(k) // 84, 18)
    np.testing.assert_array_equal(packing.unpack_tlmm(packed, k), w)


@given(ternary())
@settings(max_examples=40, deadline=None)
def test_index_vectors_round_trip_and_padding(w):
    idx = packing.ternary_to_indices(w)
    assert idx.max() <= 26
    k = w.shape[1]
    assert (idx[:, -(-k // 3):] == packing.ZERO_INDEX).all()  # groups wholly in the padding are zero groups
    np.testing.assert_array_equal(packing.unpack_index_vectors(packing.pack_index_vectors(idx)), idx)


def test_index_encoding_and_bit_layout():
    # group (w0, w1, w2) -> 9*(w0+1) + 3*(w1+1) + (w2+1); index j sits at bits 5j..5j+4, little-endian
    w = np.zeros((1, 84), dtype=np.int8)
    w[0, :3] = (1, -1, 0)  # index 9*2 + 0 + 1 = 19
    w[0, 3:6] = (-1, -1, -1)  # index 0
    packed = packing.pack_tlmm(w)
    value = int.from_bytes(packed[0, 0].tobytes(), "little")
    assert value & 31 == 19
    assert (value >> 5) & 31 == 0
    assert (value >> 10) & 31 == packing.ZERO_INDEX
    assert value >> 140 == 0


@given(arrays(np.int8, st.tuples(st.integers(1, 4).map(lambda r: 4 * r), st.integers(1, 30)),
              elements=st.integers(-1, 1)))
@settings(max_examples=60, deadline=None)
def test_hf_2bit_round_trip(w):
    np.testing.assert_array_equal(packing.unpack_hf_2bit(packing.pack_hf_2bit(w)), w)


def test_hf_2bit_row_order():
    # bits 2i..2i+1 of packed row r hold original row i*(N/4) + r, stored as value + 1
    w = np.array([[1], [0], [-1], [1], [0], [0], [1], [-1]], dtype=np.int8)  # N = 8 -> 2 packed rows
    packed = packing.pack_hf_2bit(w)
    assert packed[0, 0] == (2 | (0 << 2) | (1 << 4) | (2 << 6))  # rows 0, 2, 4, 6
    assert packed[1, 0] == (1 | (2 << 2) | (1 << 4) | (0 << 6))  # rows 1, 3, 5, 7


@given(st.integers(1, 9), st.integers(1, 300), st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=None)
def test_tlmm_matches_naive_matmul(n, k, seed):
    rng = np.random.default_rng(seed)
    w = rng.integers(-1, 2, (n, k), dtype=np.int8)
    x = rng.integers(-128, 128, (3, k), dtype=np.int8)
    x[0, :] = -128  # the extremes, where an overflow would show
    x[1, :] = 127
    got = TlmmWeights(packing.pack_tlmm(w), k).matmul(x)
    np.testing.assert_array_equal(got, naive_matmul(x, w))


def test_tables_hold_all_27_sums():
    x = np.array([[5, -7, 127]], dtype=np.int8)
    table = build_tables(x)[0, 0]
    assert table[13] == 0
    assert table[26] == 5 - 7 + 127
    assert table[0] == -(5 - 7 + 127)
    assert table[9 * 2 + 3 * 0 + 1] == 5 + 7  # (1, -1, 0)
