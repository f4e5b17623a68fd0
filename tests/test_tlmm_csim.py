"""The TLMM kernel in C simulation (g++ + hls4ml's ap_types) against numpy, bit for bit."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tellme.hls import toolchain
from tellme.hls.boards import board_config
from tellme.hls.csim import TlmmSim
from tellme.hls.design import tlmm_reference as reference
from tellme.models.ddr_image import line_indices, tlmm_lines
from tellme.models.errors import UserError
from tellme.models.packing import pack_tlmm, unpack_index_vectors
from tellme.models.quant import act_quant, weight_quant
from tellme.models.tlmm import naive_matmul

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench_tlmm.py"
MAX_K, MAX_N = 1100, 600
# Small weight buffers so that every layer here spans several row tiles.
CONFIGS = {
    "full": ["max_k=1100", "max_n=600", "axi_width=256", "tlmm.weight_buffer_depth=64"],
    "half": [
        "max_k=1100", "max_n=600", "tlmm.table=half", "tlmm.q=5", "tlmm.t=20", "axi_width=64",
        "tlmm.weight_buffer_depth=40",
    ],
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("csim-cache")


@pytest.fixture(scope="module")
def sims(cache) -> dict[str, TlmmSim]:
    return {name: TlmmSim.build(board_config("kv260", sets), cache_dir=cache) for name, sets in CONFIGS.items()}


@pytest.fixture(params=sorted(CONFIGS))
def sim(request, sims) -> TlmmSim:
    return sims[request.param]


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def check(sim: TlmmSim, w: np.ndarray, xq: np.ndarray, s_x: np.ndarray | None = None, s_w: float = 1.0):
    """C-sim == numpy: integers exactly (unit scales make y the accumulator), floats bit for bit."""
    k = w.shape[1]
    packed = pack_tlmm(w)
    acc = naive_matmul(xq, w)
    ones = np.ones(len(xq), dtype=np.float32)
    y_int = sim.matmul(packed, k, xq, ones, 1.0)
    assert np.abs(acc).max(initial=0) < 2**24  # exactly representable, so y == acc is an integer check
    np.testing.assert_array_equal(y_int, acc.astype(np.float32))
    if s_x is not None:
        ref_acc, y_ref = reference(packed, k, xq, s_x, s_w)
        np.testing.assert_array_equal(ref_acc, acc)
        np.testing.assert_array_equal(_bits(sim.matmul(packed, k, xq, s_x, s_w)), _bits(y_ref))


def test_library_reports_its_config(sims):
    full = sims["full"].constants()
    assert (full["half_table"], full["Q"], full["line_words"]) == ("0", "8", "5")  # 1152 bits in 5 x 256
    half = sims["half"].constants()
    assert (half["half_table"], half["Q"], half["T"], half["axi_width"]) == ("1", "5", "20", "64")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    k=st.integers(1, MAX_K),
    n=st.integers(1, MAX_N),
    m=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_shapes_bit_exact(sim, k, n, m, seed):
    rng = np.random.default_rng(seed)
    w = rng.integers(-1, 2, (n, k))
    xq, s_x = act_quant(rng.standard_normal((m, k)).astype(np.float32) * rng.uniform(0.01, 100))
    _, s_w = weight_quant(rng.standard_normal((4, 4)).astype(np.float32))
    check(sim, w, xq, s_x.reshape(-1), float(s_w))


@pytest.mark.parametrize("k,n", [(3, 1), (3, 7), (84, 13), (85, 8), (167, 9), (1099, 599), (1100, 600)])
def test_awkward_shapes(sim, k, n):
    rng = np.random.default_rng(k * 1000 + n)
    w = rng.integers(-1, 2, (n, k))
    xq = rng.integers(-128, 128, (2, k)).astype(np.int8)
    check(sim, w, xq, np.array([0.37, 11.0], dtype=np.float32), 1.9)


def test_all_zero_weights(sim):
    xq = np.random.default_rng(0).integers(-128, 128, (2, 500)).astype(np.int8)
    y = sim.matmul(pack_tlmm(np.zeros((33, 500), dtype=np.int8)), 500, xq, np.ones(2, np.float32), 3.0)
    np.testing.assert_array_equal(_bits(y), np.zeros((2, 33), dtype=np.uint32))  # +0.0, as numpy


@pytest.mark.parametrize("value", [-128, 127])
def test_extreme_activations(sim, value):
    k = MAX_K
    rng = np.random.default_rng(value & 0xFF)
    w = np.concatenate([np.ones((1, k)), -np.ones((1, k)), rng.integers(-1, 2, (9, k))]).astype(np.int8)
    xq = np.full((2, k), value, dtype=np.int8)
    xq[1, ::2] = -128 if value == 127 else 127  # alternate both extremes in the second token
    check(sim, w, xq, np.array([1e-3, 7.5], dtype=np.float32), 0.61)


def test_refuses_shapes_beyond_the_buffers(sim):
    w = np.zeros((4, MAX_K + 1), dtype=np.int8)
    with pytest.raises(ValueError, match="max_k"):
        sim.matmul(pack_tlmm(w), MAX_K + 1, np.zeros((1, MAX_K + 1), np.int8), np.ones(1, np.float32), 1.0)
    w = np.zeros((MAX_N + 1, 10), dtype=np.int8)
    with pytest.raises(ValueError, match="max_n"):
        sim.matmul(pack_tlmm(w), 10, np.zeros((1, 10), np.int8), np.ones(1, np.float32), 1.0)


def test_cache_reuses_the_library(sims, cache, capsys):
    again = TlmmSim.build(board_config("kv260", CONFIGS["full"]), cache_dir=cache)
    assert again.library.path == sims["full"].library.path
    assert "compiling" not in capsys.readouterr().err
    assert sims["half"].library.path != sims["full"].library.path


def test_missing_compiler_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "no-such-compiler-tellme")
    with pytest.raises(UserError, match="install g\\+\\+"):
        TlmmSim.build(board_config("kv260", ["max_k=84"]), cache_dir=tmp_path)


def test_bench_script_quick(cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TELLME_CACHE", str(cache))
    spec = importlib.util.spec_from_file_location("bench_tlmm", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--repeat", "1", "--out", str(tmp_path / "b.json")]) == 0
    report = json.loads((tmp_path / "b.json").read_text())
    assert [(r["k"], r["n"]) for r in report["results"]] == bench.QUICK_SHAPES
    assert all(r["bit_exact"] for r in report["results"])
    assert "C-sim ms" in capsys.readouterr().out


def test_ap_types_come_from_hls4ml():
    assert (toolchain.ap_types_dir() / "ap_int.h").is_file()
    assert "hls4ml" in str(toolchain.ap_types_dir())


# --- the DDR layout ---

def test_default_layout_keeps_the_stored_vectors():
    config = board_config("kv260")
    k, n = 1000, 5
    w = np.random.default_rng(1).integers(-1, 2, (n, k))
    packed = pack_tlmm(w)  # [n, 12, 18]
    lines = tlmm_lines(packed, k, config.layout)
    assert lines.shape == (n, 2, 144) and config.line_bytes == 144
    vectors = lines.reshape(n, 2 * 8, 18)
    np.testing.assert_array_equal(vectors[:, :12], packed)
    np.testing.assert_array_equal(unpack_index_vectors(vectors[:, 12:]), 13)  # zero groups after the row


@pytest.mark.parametrize("sets", [[], ["tlmm.t=20", "tlmm.q=5", "axi_width=64"], ["tlmm.t=7", "tlmm.q=3"]])
@pytest.mark.parametrize("k", [1, 3, 84, 85, 700])
def test_layout_round_trip(sets, k):
    config = board_config("kv260", sets)
    w = np.random.default_rng(k).integers(-1, 2, (6, k))
    lines = tlmm_lines(pack_tlmm(w), k, config.layout)
    assert lines.shape == (6, config.cycles(k), config.line_bytes)
    assert config.line_bytes % (config.axi_width // 8) == 0
    idx = line_indices(lines, config.layout).astype(np.int32)
    digits = np.stack([idx // 9, (idx // 3) % 3, idx % 3], axis=-1) - 1
    ternary = digits.reshape(6, -1)
    np.testing.assert_array_equal(ternary[:, :k], w)
    assert not ternary[:, k:].any()


def test_layout_rejects_a_wrong_k():
    packed = pack_tlmm(np.ones((2, 90), dtype=np.int8))
    with pytest.raises(ValueError, match="K=80"):
        tlmm_lines(packed, 80, board_config("kv260").layout)
    with pytest.raises(ValueError, match="beyond K=200"):
        tlmm_lines(pack_tlmm(np.ones((2, 250), dtype=np.int8)), 200, board_config("kv260").layout)
