"""The decoder's element-wise and attention kernels (hls/kernels/{fp16,elementwise,attention}.h), compiled
with g++ under AddressSanitizer and UBSan, against numpy and the reference model's own functions."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tellme.models.quant import act_quant
from tellme.models.reference import rms_norm, rotate_half, softmax

ROOT = Path(__file__).parents[1]
KERNELS = ROOT / "hls" / "kernels"
HEAD_DIM = 30
FLAGS = ["-std=c++14", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
         "-Wall", "-Wno-unknown-pragmas", "-Wno-unused-label", "-Werror"]


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    exe = tmp_path_factory.mktemp("decoder_ops") / "decoder_ops_tb"
    subprocess.run(["g++", *FLAGS, f"-DTB_HEAD_DIM={HEAD_DIM}", f"-I{KERNELS}",
                    str(ROOT / "tests" / "cpp" / "decoder_ops_tb.cpp"), "-o", str(exe)], check=True)
    return exe


def run(driver: Path, tmp_path: Path, op: str, header: list[int], *arrays: np.ndarray) -> bytes:
    src, dst = tmp_path / f"{op}.in", tmp_path / f"{op}.out"
    with open(src, "wb") as f:
        f.write(np.asarray(header, dtype=np.int32).tobytes())
        for a in arrays:
            f.write(np.ascontiguousarray(a).tobytes())
    subprocess.run([str(driver), op, str(src), str(dst)], check=True, timeout=60)
    return dst.read_bytes()


def test_half_to_float_all_patterns(driver, tmp_path):
    bits = np.arange(1 << 16, dtype=np.uint16)
    got = np.frombuffer(run(driver, tmp_path, "half_to_float", [bits.size], bits), dtype=np.float32)
    want = bits.view(np.float16).astype(np.float32)
    finite = np.isfinite(want)
    np.testing.assert_array_equal(got[finite].view(np.uint32), want[finite].view(np.uint32))
    assert (np.isnan(got) == np.isnan(want)).all()


def test_float_to_half_rounds_as_numpy(driver, tmp_path):
    rng = np.random.default_rng(0)
    halves = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    halves = halves[np.isfinite(halves)]
    neighbours = np.concatenate([halves, np.nextafter(halves, np.float32(np.inf)),
                                 np.nextafter(halves, np.float32(-np.inf))])
    midpoints = ((halves[:-1].astype(np.float64) + halves[1:]) / 2).astype(np.float32)  # ties to even
    x = np.concatenate([
        neighbours, midpoints, rng.standard_normal(20000).astype(np.float32) * 10.0 ** rng.integers(-9, 6, 20000),
        np.array([0.0, -0.0, 65504.0, 65520.0, 1e9, -1e9, 5.96e-8, 2.98e-8, 2.99e-8, np.inf, -np.inf],
                 dtype=np.float32),
    ]).astype(np.float32)
    got = np.frombuffer(run(driver, tmp_path, "float_to_half", [x.size], x), dtype=np.uint16)
    with np.errstate(over="ignore"):  # 1e9 -> inf is the point
        want = x.astype(np.float16).view(np.uint16)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(float(x[i]), hex(got[i]), hex(want[i])) for i in bad[:5]]


def test_rmsnorm_quant_matches_reference(driver, tmp_path):
    rng = np.random.default_rng(1)
    dim, rows, eps = 200, 64, 1e-5
    w = (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32)
    x = (rng.standard_normal((rows, dim)) * 10.0 ** rng.uniform(-3, 3, (rows, 1))).astype(np.float32)
    x[0] = 0.0  # all-zero row: the 1e-5 scale floor
    raw = run(driver, tmp_path, "rmsnorm_quant", [rows, dim], np.float32(eps), w, x)
    record = np.dtype([("y", np.float32, dim), ("yq", np.int8, dim), ("scale", np.float32)])
    got = np.frombuffer(raw, dtype=record)
    y = rms_norm(x, w, eps)
    yq, scale = act_quant(y)
    np.testing.assert_allclose(got["y"], y, rtol=2e-6, atol=0)
    np.testing.assert_allclose(got["scale"], scale[:, 0], rtol=2e-6)
    # float32 reordering may move a value that sits on a rounding boundary by one step
    diff = np.abs(got["yq"].astype(int) - yq)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


@pytest.mark.parametrize("act", [0, 1])
def test_gate_up(driver, tmp_path, act):
    rng = np.random.default_rng(2)
    g, u = (rng.standard_normal((2, 1000)) * 4).astype(np.float32)
    got = np.frombuffer(run(driver, tmp_path, "gate_up", [g.size, act], g, u), dtype=np.float32)
    want = (np.square(np.maximum(g, 0)) if act == 0 else g / (1 + np.exp(-g))) * u
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_rope_matches_reference_bit_for_bit(driver, tmp_path):
    from tellme.models.config import ModelConfig
    from tellme.models.reference import rope_tables

    config = ModelConfig(320, 120, 200, 1, 4, 2, HEAD_DIM, "relu2", 1e-5, 500000.0, 128, False, 1, 2,
                         "bitnet", "bitlinear")
    cos, sin = rope_tables(config, 128)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, HEAD_DIM)).astype(np.float32)
    got = np.frombuffer(run(driver, tmp_path, "rope", [4], x, cos[77], sin[77]), dtype=np.float32)
    want = x * cos[77] + rotate_half(x) * sin[77]
    np.testing.assert_array_equal(got.reshape(4, HEAD_DIM), want)


@pytest.mark.parametrize("heads,kv_heads,length", [(4, 2, 1), (4, 2, 57), (4, 4, 9), (6, 1, 128)])
def test_decode_attention_online_softmax(driver, tmp_path, heads, kv_heads, length):
    rng = np.random.default_rng(heads * 1000 + length)
    q = rng.standard_normal((heads, HEAD_DIM)).astype(np.float32) * 2
    k = rng.standard_normal((length, kv_heads, HEAD_DIM)).astype(np.float32) * 2
    v = rng.standard_normal((length, kv_heads, HEAD_DIM)).astype(np.float32)
    raw = run(driver, tmp_path, "attention", [length, heads, kv_heads], q, k, v)
    cache_bytes = length * kv_heads * HEAD_DIM * 2
    k_cache = np.frombuffer(raw[:cache_bytes], dtype=np.uint16)
    out = np.frombuffer(raw[cache_bytes:], dtype=np.float32).reshape(heads, HEAD_DIM)
    np.testing.assert_array_equal(k_cache, k.astype(np.float16).view(np.uint16).ravel())
    # the reference's two-pass softmax over the same fp16 cache, GQA by repeating KV heads
    group = heads // kv_heads
    keys = np.repeat(k.astype(np.float16).astype(np.float32), group, axis=1)
    values = np.repeat(v.astype(np.float16).astype(np.float32), group, axis=1)
    scores = np.einsum("hd,thd->ht", q, keys) * np.float32(HEAD_DIM**-0.5)
    want = np.einsum("ht,thd->hd", softmax(scores), values)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("b,length", [(1, 1), (3, 3), (7, 20), (8, 8)])
def test_block_attention_reversed_order_is_causal(driver, tmp_path, b, length):
    """b queries at positions length-b .. length-1, 3 query PEs: each sees only the rows up to its own."""
    heads, kv_heads = 4, 2
    rng = np.random.default_rng(b * 100 + length)
    q = rng.standard_normal((b, heads, HEAD_DIM)).astype(np.float32)
    k = rng.standard_normal((length, kv_heads, HEAD_DIM)).astype(np.float32)
    v = rng.standard_normal((length, kv_heads, HEAD_DIM)).astype(np.float32)
    raw = run(driver, tmp_path, "attention_block", [length, heads, kv_heads, b], q, k, v)
    out = np.frombuffer(raw, dtype=np.float32).reshape(b, heads, HEAD_DIM)
    keys = np.repeat(k.astype(np.float16).astype(np.float32), 2, axis=1)
    values = np.repeat(v.astype(np.float16).astype(np.float32), 2, axis=1)
    for i in range(b):
        visible = length - b + i + 1
        scores = np.einsum("hd,thd->ht", q[i], keys[:visible]) * np.float32(HEAD_DIM**-0.5)
        want = np.einsum("ht,thd->hd", softmax(scores), values[:visible])
        np.testing.assert_allclose(out[i], want, rtol=1e-5, atol=1e-6)
