"""The TLMM engine (hls/kernels/tlmm.h) in C simulation against numpy, bit for bit: random shapes, blocks
of tokens over several token groups and tiles, both presets' geometries, and the synthesised ap_int types
against the fast C simulation's native ones."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tellme.hls import toolchain
from tellme.hls.csim import DecoderSim
from tellme.hls.design import Design
from tellme.models.config import ModelConfig
from tellme.models.ddr_image import matrix_words, row_indices, ternary_stripes, word_indices, words_per_row
from tellme.models.errors import UserError
from tellme.models.packing import pack_tlmm
from tellme.models.tlmm import naive_matmul

MAX_K, MAX_N = 1100, 600
# a shape whose matrices reach K = 1100 and N = 600 rows per matrix (intermediate 600, hidden 1100)
SHAPE = ModelConfig(vocab_size=64, hidden_size=1100, intermediate_size=300, num_hidden_layers=1,
                    num_attention_heads=11, num_key_value_heads=1, head_dim=100, max_position_embeddings=64)
# small tiles, so that every matrix here spans several tiles
DESIGNS = {
    "kv260": ("kv260", ["tlmm.tile_words=64", "prefill_block=5"]),
    "pynq-z2": ("pynq-z2", ["tlmm.tile_words=64", "prefill_block=3"]),
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("tlmm-csim-cache")


@pytest.fixture(scope="module")
def sims(cache) -> dict[str, DecoderSim]:
    return {name: Design.for_shape(SHAPE, board, sets).csim(cache_dir=cache) for name, (board, sets) in
            DESIGNS.items()}


@pytest.fixture(params=sorted(DESIGNS))
def sim(request, sims) -> DecoderSim:
    return sims[request.param]


def check(sim: DecoderSim, w: np.ndarray, xq: np.ndarray, s_x: np.ndarray | None = None) -> None:
    """C-sim == numpy: the integer sums exactly (unit scales), and acc / s_x bit for bit."""
    ports = sim.design.config.weight_ports
    stripes, rows, wpr = ternary_stripes(w, ports)
    acc = naive_matmul(xq, w)
    ones = np.ones(len(xq), dtype=np.float32)
    got = sim.matrix(stripes, rows, wpr, xq, ones)[:, : w.shape[0]]
    assert np.abs(acc).max(initial=0) < 2**24  # exactly representable: y == acc is an integer check
    np.testing.assert_array_equal(got, acc.astype(np.float32))
    if s_x is not None:
        want = acc.astype(np.float32) / s_x.reshape(-1, 1)
        got = sim.matrix(stripes, rows, wpr, xq, s_x)[:, : w.shape[0]]
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.integers(1, MAX_K), n=st.integers(1, MAX_N), b=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_random_shapes_bit_exact(sim, k, n, b, seed):
    rng = np.random.default_rng(seed)
    w = rng.integers(-1, 2, (n, k))
    xq = rng.integers(-128, 128, (b, k)).astype(np.int8)
    check(sim, w, xq, rng.uniform(0.01, 100, b).astype(np.float32))


@pytest.mark.parametrize("k,n,b", [(3, 1, 1), (3, 7, 2), (75, 13, 3), (76, 8, 1), (1099, 599, 3), (1100, 600, 1)])
def test_awkward_shapes(sim, k, n, b):
    rng = np.random.default_rng(k * 1000 + n)
    w = rng.integers(-1, 2, (n, k))
    xq = rng.integers(-128, 128, (b, k)).astype(np.int8)
    check(sim, w, xq, np.linspace(0.37, 11.0, b).astype(np.float32))


def test_every_token_group_of_a_block(sim):
    """A full block: more tokens than token lanes, so tiles are replayed for later token groups."""
    b = sim.design.config.prefill_block
    rng = np.random.default_rng(5)
    w = rng.integers(-1, 2, (97, 500))
    check(sim, w, rng.integers(-128, 128, (b, 500)).astype(np.int8))


def test_all_zero_weights_and_extreme_activations(sim):
    xq = np.random.default_rng(0).integers(-128, 128, (2, 500)).astype(np.int8)
    check(sim, np.zeros((33, 500), dtype=np.int8), xq)
    for value in (-128, 127):
        k = MAX_K
        w = np.concatenate([np.ones((1, k)), -np.ones((1, k)), np.random.default_rng(1).integers(-1, 2, (9, k))])
        xq = np.full((2, k), value, dtype=np.int8)
        xq[1, ::2] = -128 if value == 127 else 127
        check(sim, w.astype(np.int8), xq)


def test_refuses_shapes_beyond_the_buffers(sim):
    ports = sim.design.config.weight_ports
    wide = sim.design.layout.max_wpr + 1
    with pytest.raises(ValueError, match="buffers do not hold"):
        sim.matrix(np.zeros((ports, 16 * wide), np.uint8), 1, wide, np.zeros((1, 10), np.int8), np.ones(1))
    big = sim.design.config.prefill_block + 1
    with pytest.raises(ValueError, match="buffers do not hold"):
        sim.matrix(np.zeros((ports, 16), np.uint8), 1, 1, np.zeros((big, 10), np.int8), np.ones(big))


def test_synthesised_types_give_the_same_sums(cache):
    """The fast C simulation's native integers against the ap_int types Vitis HLS synthesises."""
    design = Design.for_shape(SHAPE, "kv260", DESIGNS["kv260"][1])
    fast, exact = design.csim(cache_dir=cache), DecoderSim.build(design, cache_dir=cache, fast=False)
    assert fast.constants()["fast_csim"] == "1" and exact.constants()["fast_csim"] == "0"
    rng = np.random.default_rng(11)
    w = rng.integers(-1, 2, (200, 1100))
    xq = rng.integers(-128, 128, (5, 1100)).astype(np.int8)
    stripes, rows, wpr = ternary_stripes(w, 6)
    s_x = rng.uniform(0.1, 10, 5).astype(np.float32)
    np.testing.assert_array_equal(fast.matrix(stripes, rows, wpr, xq, s_x), exact.matrix(stripes, rows, wpr, xq, s_x))


def test_index_words_round_trip():
    rng = np.random.default_rng(2)
    for k in (1, 3, 74, 75, 76, 1100):
        w = rng.integers(-1, 2, (5, k))
        wpr = words_per_row(k)
        idx = row_indices(pack_tlmm(w), k, wpr)
        np.testing.assert_array_equal(word_indices(matrix_words(idx, wpr)), idx)
        digits = np.stack([idx // 9, (idx // 3) % 3, idx % 3], axis=-1).astype(np.int32) - 1
        ternary = digits.reshape(5, -1)
        np.testing.assert_array_equal(ternary[:, :k], w)
        assert not ternary[:, k:].any()
    with pytest.raises(ValueError, match="K=80"):
        row_indices(pack_tlmm(np.ones((2, 250), dtype=np.int8)), 80, 4)


def test_missing_compiler_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "no-such-compiler-tellme")
    with pytest.raises(UserError, match="install g\\+\\+"):
        Design.for_shape(SHAPE, "kv260").csim(cache_dir=tmp_path)


def test_ap_types_come_from_hls4ml():
    assert (toolchain.ap_types_dir() / "ap_int.h").is_file()
    assert "hls4ml" in str(toolchain.ap_types_dir())
