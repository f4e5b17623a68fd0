"""The decoder's element-wise and attention kernels (hls/kernels/{fp16,common,elementwise,attention}.h),
compiled with g++ -Wall -Wextra -Werror under AddressSanitizer and UBSan, against the numpy model of the
accelerator's arithmetic (tellme.models.numerics): bit for bit."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tellme.hls.toolchain import ap_types_dir
from tellme.models import numerics
from tellme.models.quant import act_quant
from tellme.models.reference import softmax

ROOT = Path(__file__).parents[1]
KERNELS = ROOT / "hls" / "kernels"
HEAD_DIM = 30
# -Wno-maybe-uninitialized: ap_types' ap_private, inlined into our code, trips it on its own members
FLAGS = ["-std=c++14", "-O1", "-g", "-ffp-contract=off", "-fsanitize=address,undefined", "-fno-sanitize=shift-base",
         "-fno-sanitize-recover=all", "-Wall", "-Wextra", "-Wno-unknown-pragmas", "-Wno-unused-label",
         "-Wno-maybe-uninitialized", "-Werror"]


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    exe = tmp_path_factory.mktemp("decoder_ops") / "decoder_ops_tb"
    scale = f"{float(np.float32(1.0 / np.sqrt(np.float64(HEAD_DIM)))):.9g}f"
    subprocess.run(["g++", *FLAGS, f"-DTB_HEAD_DIM={HEAD_DIM}", f"-DTB_SCALE={scale}", f"-I{KERNELS}", "-isystem",
                    str(ap_types_dir()), str(ROOT / "tests" / "cpp" / "decoder_ops_tb.cpp"), "-o", str(exe)],
                   check=True)
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


def test_norm_quant_is_the_reference_bit_for_bit(driver, tmp_path):
    """RMSNorm in the element-wise unit's lane order, then int8 quantisation: numerics.rms_norm and act_quant."""
    rng = np.random.default_rng(1)
    for dim in (7, 120, 256, 688, 1536, 4096):
        x = (rng.standard_normal((3, dim)) * rng.uniform(0.01, 30, (3, 1))).astype(np.float32)
        w = (1 + 0.1 * rng.standard_normal(dim)).astype(np.float32)
        eps = np.float32(1e-5)
        raw = run(driver, tmp_path, "norm_quant", [3, dim], eps, w, x)
        for row in range(3):
            chunk = raw[row * (dim * 5 + 4) : (row + 1) * (dim * 5 + 4)]
            y = np.frombuffer(chunk[: dim * 4], dtype=np.float32)
            q = np.frombuffer(chunk[dim * 4 : dim * 5], dtype=np.int8)
            scale = np.frombuffer(chunk[dim * 5 :], dtype=np.float32)[0]
            want = numerics.rms_norm(x[row], w, eps)
            wq, ws = act_quant(want[None])
            np.testing.assert_array_equal(y.view(np.uint32), want.view(np.uint32))
            np.testing.assert_array_equal(q, wq[0])
            assert scale == ws[0, 0]


def test_exp_is_the_reference_bit_for_bit(driver, tmp_path):
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(-90, 90, 20000), rng.standard_normal(5000) * 1e-3, [-87.0, -86.99, 88.0, 88.01,
                        0.0, -0.0, -np.inf, 1.0, -1.0]]).astype(np.float32)
    got = np.frombuffer(run(driver, tmp_path, "exp", [x.size], x), dtype=np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), numerics.exp(x).view(np.uint32))
    finite = (x > -80) & (x < 80)
    # t = x * log2(e) rounds to float32: relative error grows with |x|, 4e-6 at |x| = 80 (softmax arguments
    # are mostly near 0, where it is under 1e-7)
    np.testing.assert_allclose(got[finite], np.exp(x[finite].astype(np.float64)), rtol=5e-6)
    small = np.abs(x) < 1
    np.testing.assert_allclose(got[small], np.exp(x[small].astype(np.float64)), rtol=2e-7)


@pytest.mark.parametrize("act", [0, 1])
def test_activations(driver, tmp_path, act):
    x = np.random.default_rng(3).standard_normal(5000).astype(np.float32) * 8
    got = np.frombuffer(run(driver, tmp_path, "activate", [x.size, act], x), dtype=np.float32)
    want = np.square(np.maximum(x, 0)) if act == 0 else numerics.silu(x)
    np.testing.assert_array_equal(got.view(np.uint32), want.astype(np.float32).view(np.uint32))


@pytest.mark.parametrize("length", [1, 15, 16, 17, 40])
def test_block_attention_is_the_reference_bit_for_bit(driver, tmp_path, length):
    """A query over `length` positions in blocks of 16, GQA 4:2: numerics.block_attention, and close to a softmax."""
    rng = np.random.default_rng(length)
    heads, kv_heads = 4, 2
    q = rng.standard_normal((heads, HEAD_DIM)).astype(np.float32)
    k = rng.standard_normal((length, kv_heads, HEAD_DIM)).astype(np.float16)
    v = rng.standard_normal((length, kv_heads, HEAD_DIM)).astype(np.float16)
    raw = run(driver, tmp_path, "attention", [length], q, k.view(np.uint16), v.view(np.uint16))
    got = np.frombuffer(raw, dtype=np.float32).reshape(heads, HEAD_DIM)
    keys = np.repeat(k.astype(np.float32), 2, axis=1)
    values = np.repeat(v.astype(np.float32), 2, axis=1)
    order = numerics.AcceleratorOrder(chunk=48, lanes=12, head_dim_pad=-(-HEAD_DIM // 48) * 48, kv_block=16)
    want = numerics.block_attention(q, keys, values, HEAD_DIM, order)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    scores = np.einsum("hd,thd->ht", q, keys) * np.float32(HEAD_DIM**-0.5)
    plain = np.einsum("ht,thd->hd", softmax(scores), values)
    np.testing.assert_allclose(got, plain, rtol=1e-4, atol=1e-5)
