"""The accelerator's float arithmetic, in numpy, operation for operation: so that the reference model
predicts the accelerator bit for bit (hls/kernels/elementwise.h, attention.h, common.h do the same).

Every function here uses only float32 operations IEEE 754 defines exactly (+, -, *, /, sqrt, floor,
scaling by powers of two) in a fixed order, so numpy, the g++ C simulation and the synthesised hardware
agree to the bit:
  tree_sum          a fixed pairwise tree (first half + second half, recursively)
  sum_of_squares    V lanes into S rotating partial sets, then a tree (the element-wise unit)
  exp               2^k * p(f) with a degree-6 polynomial p (instead of a library exp, whose last bits
                    differ between libm, numpy and the HLS math library)
  block_attention   block online softmax over R-aligned blocks, dot products as trees of A-lane folds
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

F32 = np.float32
LANES = 15  # elementwise.h: V values a cycle
PARTIALS = 8  # elementwise.h: S rotating partial sums
LOG2E = F32(1.44269502)
EXP_LOW, EXP_HIGH = F32(-87.0), F32(88.0)  # below: 0; above: inf (no subnormal results)
# 2^f on [0, 1), relative error < 9e-8 in float32 (a least-squares fit in relative error)
EXP_POLY = tuple(F32(c) for c in (1.0, 0.6931470036506653, 0.24022983014583588, 0.055483341217041016,
                                  0.009678840637207031, 0.0012439690763130784, 0.00021702246158383787))


def tree_sum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis as a fixed tree: sum(first half) + sum(second half), recursively."""
    n = x.shape[-1]
    if n == 1:
        return x[..., 0]
    return tree_sum(x[..., : n // 2]) + tree_sum(x[..., n // 2 :])


def sum_of_squares(x: np.ndarray, lanes: int = LANES) -> np.ndarray:
    """sum(x^2) over the last axis as elementwise.h adds it, V = `lanes` values a step: lane v of step i
    goes to partial set i % S."""
    x = np.asarray(x, dtype=F32)
    n = x.shape[-1]
    steps = -(-n // lanes)
    padded = np.zeros((*x.shape[:-1], steps * lanes), dtype=F32)
    padded[..., :n] = x
    squares = (padded * padded).reshape(*x.shape[:-1], steps, lanes)
    part = np.zeros((*x.shape[:-1], PARTIALS, lanes), dtype=F32)
    for i in range(steps):  # step i adds to the set it left S steps before
        part[..., i % PARTIALS, :] = part[..., i % PARTIALS, :] + squares[..., i, :]
    # the hardware shifts its sets by one each step: after `steps` steps set s holds what was added at
    # steps i with (steps - 1 - i) % S == s
    order = [(steps - 1 - s) % PARTIALS for s in range(PARTIALS)]
    flat = part[..., order, :].reshape(*x.shape[:-1], PARTIALS * lanes)
    return tree_sum(flat)


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float, lanes: int = LANES) -> np.ndarray:
    """weight * (x * (1 / sqrt(sum(x^2) / n + eps))), the sum as the element-wise unit adds it."""
    x = np.asarray(x, dtype=F32)
    variance = sum_of_squares(x, lanes) / F32(x.shape[-1])
    inv = F32(1.0) / np.sqrt(variance + F32(eps))
    return weight * (x * inv[..., None])


def exp(x: np.ndarray) -> np.ndarray:
    """e^x as the accelerator computes it: t = x * log2(e), 2^floor(t) * p(t - floor(t))."""
    x = np.asarray(x, dtype=F32)
    clamped = np.clip(x, EXP_LOW, EXP_HIGH)
    t = clamped * LOG2E
    k = np.floor(t)
    f = t - k
    p = np.full_like(f, EXP_POLY[-1])
    for c in EXP_POLY[-2::-1]:
        p = p * f + c
    scaled = (p.view(np.int32) + (k.astype(np.int32) << 23)).view(F32)
    out = np.where(x < EXP_LOW, F32(0.0), np.where(x > EXP_HIGH, F32(np.inf), scaled))
    return out.astype(F32)


def silu(x: np.ndarray) -> np.ndarray:
    return x / (F32(1.0) + exp(-x))


@dataclass(frozen=True)
class AcceleratorOrder:
    """How the accelerator orders its float operations: attention in chunks of `chunk` values (8 x weight
    ports), `lanes` products a cycle, heads padded to head_dim_pad, positions in blocks of kv_block; the
    norms' sums of squares `norm_lanes` values a step."""

    chunk: int
    lanes: int
    head_dim_pad: int
    kv_block: int
    norm_lanes: int = LANES


def _scores(q: np.ndarray, k: np.ndarray, order: AcceleratorOrder) -> np.ndarray:
    """q [H, dp], k [t, H, dp] (K heads repeated per query head) -> scores [t, H] before the scale:
    per chunk and fold a tree of `lanes` products, then a tree over the parts."""
    prod = (q[None] * k).reshape(k.shape[0], k.shape[1], -1, order.lanes)
    return tree_sum(tree_sum(prod))


def block_attention(q: np.ndarray, keys: np.ndarray, values: np.ndarray, head_dim: int,
                    order: AcceleratorOrder) -> np.ndarray:
    """One query [H, d] against positions 0..p (keys, values [p+1, H, d], float32 from fp16), as
    attention.h computes it. Returns [H, d]."""
    heads, d = q.shape
    dp = order.head_dim_pad
    qp = np.zeros((heads, dp), dtype=F32)
    qp[:, :d] = q
    kp = np.zeros((keys.shape[0], heads, dp), dtype=F32)
    kp[..., :d] = keys
    vp = np.zeros_like(kp)
    vp[..., :d] = values
    scale = F32(1.0 / np.sqrt(np.float64(head_dim)))
    m = np.full(heads, -np.inf, dtype=F32)
    total = np.zeros(heads, dtype=F32)
    acc = np.zeros((heads, dp), dtype=F32)
    r = order.kv_block
    for begin in range(0, keys.shape[0], r):
        rows = slice(begin, min(begin + r, keys.shape[0]))
        scores = _scores(qp, kp[rows], order) * scale  # [t, H]
        top = np.maximum(m, scores.max(axis=0))
        corr = exp(m - top)
        p = exp(scores - top[None])
        column = np.zeros((r, heads), dtype=F32)
        column[: p.shape[0]] = p
        total = total * corr + tree_sum(column.T)
        for i, t in enumerate(range(rows.start, rows.stop)):
            base = acc * corr[:, None] if i == 0 else acc
            acc = base + p[i][:, None] * vp[t]
        m = top
    return (acc / total[:, None])[:, :d]
