"""BitNet b1.58 quantisers, written to round exactly as transformers' BitNet does (float32)."""

from __future__ import annotations

import numpy as np

ACT_QMAX = 127.0
ACT_MIN = -128
ACT_MAX = 127
SCALE_FLOOR = np.float32(1e-5)


def act_quant(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-token absmax int8: s = 127 / max|x| (floored at 1e-5), xq = clamp(round(x*s)).

    Returns (xq int8 [..., K], s float32 [..., 1]). numpy rounds half to even, as torch does.
    """
    x = np.asarray(x, dtype=np.float32)
    peak = np.maximum(np.abs(x).max(axis=-1, keepdims=True), SCALE_FLOOR)
    scale = np.float32(ACT_QMAX) / peak
    xq = np.clip(np.round(x * scale), ACT_MIN, ACT_MAX).astype(np.int8)
    return xq, scale.astype(np.float32)


def weight_quant(w: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """Per-tensor absmean ternary: s_w = 1 / mean|W| (mean floored at 1e-5), Wq = clamp(round(W*s_w)).

    Returns (Wq int8, s_w) so that W ~= Wq / s_w.
    """
    w = np.asarray(w, dtype=np.float32)
    scale = np.float32(1.0) / np.maximum(np.abs(w).mean(dtype=np.float32), SCALE_FLOOR)
    wq = np.clip(np.round(w * scale), -1, 1).astype(np.int8)
    return wq, np.float32(scale)


def row_quant_int8(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An embedding or LM-head table -> (int8 rows, float32 divisor per row): each row quantised exactly as
    an activation is (act_quant), so that row ~= q / divisor and a logit is acc / (s_x * divisor)."""
    q, divisor = act_quant(np.asarray(table, dtype=np.float32))
    return q, divisor.reshape(-1)
