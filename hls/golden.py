"""Golden vectors for the testbench: numpy's answer for a weight matrix and quantised activations,
with the float dequantisation written exactly as the kernel computes it (so the check is bit-exact)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tellme.models.quant import act_quant
from tellme.models.tlmm import TlmmWeights

from .config import AcceleratorConfig
from .layout import ddr_weights


def reference(
    packed: np.ndarray, k: int, xq: np.ndarray, s_x: np.ndarray, s_w: float
) -> tuple[np.ndarray, np.ndarray]:
    """(acc int32 [M, N], y float32 [M, N]) with y = float32(acc) / (s_x * s_w), all float32."""
    acc = TlmmWeights(packed, k).matmul(np.asarray(xq, dtype=np.int8))
    s_x = np.asarray(s_x, dtype=np.float32).reshape(-1, 1)
    y = acc.astype(np.float32) / (s_x * np.float32(s_w))
    return acc, y.astype(np.float32)


@dataclass(frozen=True)
class Golden:
    source: str  # where the weights came from, for the testbench's comment
    k: int
    n: int
    weights: np.ndarray  # DDR lines uint8 [N, cycles, line_bytes]
    x: np.ndarray  # int8 [M, K]
    s_x: np.ndarray  # float32 [M]
    s_w: np.float32
    y: np.ndarray  # float32 [M, N]

    @property
    def m(self) -> int:
        return int(self.x.shape[0])

    @property
    def weight_bytes(self) -> int:
        return int(self.weights.nbytes)

    def files(self) -> dict[str, bytes]:
        """tb/data file name -> raw little-endian contents."""
        return {
            "weights.bin": self.weights.tobytes(),
            "x.bin": self.x.astype(np.int8).tobytes(),
            "s_x.bin": self.s_x.astype("<f4").tobytes(),
            "s_w.bin": np.array([self.s_w], dtype="<f4").tobytes(),
            "y.bin": self.y.astype("<f4").tobytes(),
        }


def make_golden(
    packed: np.ndarray,
    k: int,
    s_w: float,
    config: AcceleratorConfig,
    source: str,
    tokens: int = 2,
    seed: int = 0,
) -> Golden:
    """Quantise random normal activations per token (as the model does) and run numpy's TLMM."""
    rng = np.random.default_rng(seed)
    xq, s_x = act_quant(rng.standard_normal((tokens, k)).astype(np.float32))
    _, y = reference(packed, k, xq, s_x, s_w)
    return Golden(
        source=source,
        k=k,
        n=int(packed.shape[0]),
        weights=ddr_weights(packed, k, config),
        x=xq,
        s_x=s_x.reshape(-1),
        s_w=np.float32(s_w),
        y=y,
    )
