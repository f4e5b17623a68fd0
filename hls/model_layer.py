"""What the generator needs from a converted model folder: the layer sizes that bound the buffers, and
one layer's stored TLMM weights for the engine testbench's golden vectors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tellme.models.config import ModelConfig
from tellme.models.errors import UserError
from tellme.models.model_folder import open_model_folder


@dataclass(frozen=True)
class ModelSizes:
    """The layer shapes of a model, for sizing the engine's buffers."""

    config: ModelConfig

    def linear_shape(self, proj: str) -> tuple[int, int]:
        """(out_features, in_features) of a decoder-layer linear."""
        shapes = self.config.linear_shapes()
        if proj not in shapes:
            raise UserError(f"unknown projection {proj!r}: use one of {', '.join(shapes)}")
        return shapes[proj]

    @property
    def max_k(self) -> int:
        return max(k for _, k in self.config.linear_shapes().values())

    @property
    def max_n(self) -> int:
        return max(n for n, _ in self.config.linear_shapes().values())


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
    """Sizes from the manifest (files are verified when the design reads them)."""
    return ModelSizes(open_model_folder(Path(model_dir), verify=False).config)


def read_layer(model_dir: Path, layer: int = 0, proj: str = "gate_proj") -> LayerWeights:
    """One ternary linear's stored TLMM weights and scale."""
    folder = open_model_folder(Path(model_dir), verify=False)
    _, k = ModelSizes(folder.config).linear_shape(proj)
    name = f"layers.{layer}.{proj}"
    packed = folder.tensor(f"{name}.tlmm")
    scale = folder.tensor(f"{name}.scale")
    return LayerWeights(name=name, packed=packed, scale=np.float32(scale.reshape(-1)[0]), k=k)
