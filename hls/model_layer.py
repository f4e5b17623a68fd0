"""What the generator needs from a converted model folder: the layer sizes that bound the buffers, and
one layer's stored TLMM weights for the testbench's golden vectors. Reads only those tensors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from tellme.models.errors import UserError
from tellme.models.packing import VECTOR_BYTES, padded_k

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
FORMAT = "tellme-model"
SIZE_KEYS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim")


@dataclass(frozen=True)
class ModelSizes:
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int

    def linear_shape(self, proj: str) -> tuple[int, int]:
        """(out_features, in_features) of a decoder-layer linear."""
        h, i = self.hidden_size, self.intermediate_size
        q, kv = self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim
        shapes = {"q_proj": (q, h), "k_proj": (kv, h), "v_proj": (kv, h), "o_proj": (h, q),
                  "gate_proj": (i, h), "up_proj": (i, h), "down_proj": (h, i)}
        if proj not in shapes:
            raise UserError(f"unknown projection {proj!r}: use one of {', '.join(shapes)}")
        return shapes[proj]

    @property
    def max_k(self) -> int:
        return max(k for _, k in map(self.linear_shape, ("q_proj", "o_proj", "down_proj")))

    @property
    def max_n(self) -> int:
        return max(n for n, _ in map(self.linear_shape, ("q_proj", "k_proj", "o_proj", "gate_proj")))


@dataclass(frozen=True)
class LayerWeights:
    name: str  # e.g. layers.0.gate_proj
    packed: np.ndarray  # stored TLMM form uint8 [N, Kp/84, 18]
    scale: np.float32  # s_w: y = acc / (s_x * s_w)
    k: int

    @property
    def n(self) -> int:
        return int(self.packed.shape[0])


def read_sizes(model_dir: Path) -> ModelSizes:
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise UserError(f"{model_dir} is not a converted model folder (no {MANIFEST}): run tellme convert first")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}): re-run tellme convert") from None
    if manifest.get("format") != FORMAT:
        raise UserError(f"{path}: format {manifest.get('format')!r} is not {FORMAT!r}: re-run tellme convert")
    config = manifest.get("config", {})
    missing = [key for key in SIZE_KEYS if key not in config]
    if missing:
        raise UserError(f"{path}: config lacks {', '.join(missing)}: re-run tellme convert")
    return ModelSizes(**{key: int(config[key]) for key in SIZE_KEYS})


def read_layer(model_dir: Path, layer: int = 0, proj: str = "gate_proj") -> LayerWeights:
    """One ternary linear's stored TLMM weights and scale, checked against the manifest's sizes."""
    n, k = read_sizes(model_dir).linear_shape(proj)
    name = f"layers.{layer}.{proj}"
    path = Path(model_dir) / WEIGHTS
    try:
        with safe_open(str(path), framework="np") as f:
            names = set(f.keys())
            for tensor in (f"{name}.tlmm", f"{name}.scale"):
                if tensor not in names:
                    raise UserError(f"{path} lacks {tensor!r}: re-run tellme convert")
            packed = f.get_tensor(f"{name}.tlmm")
            scale = f.get_tensor(f"{name}.scale")
    except (SafetensorError, OSError) as exc:
        raise UserError(f"cannot read {path} ({exc}): re-run tellme convert") from None
    expected = (n, padded_k(k) // 84, VECTOR_BYTES)
    if packed.dtype != np.uint8 or packed.shape != expected or scale.size != 1:
        raise UserError(
            f"{path}: {name}.tlmm is {packed.dtype} {packed.shape}, expected uint8 {expected}: re-run tellme convert"
        )
    return LayerWeights(name=name, packed=packed, scale=np.float32(scale.reshape(-1)[0]), k=k)
