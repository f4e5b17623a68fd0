"""The decoder part of a design: the model's shape and DDR image offsets as the templates need them,
and golden vectors for the decoder testbench from the numpy reference model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tellme.models.config import LAYER_NORMS, PROJECTIONS, ModelConfig
from tellme.models.ddr_image import (
    DdrImage,
    ImageOffsets,
    build_ddr_image,
    image_offsets,
)
from tellme.models.model_folder import ModelFolder, open_model_folder
from tellme.models.reference import ReferenceModel

from .config import AcceleratorConfig
from .layout import line_layout

ACT_ENUM = {"relu2": 0, "silu": 1}  # elementwise.h activation_t
GOLDEN_TOKENS = 4


def design_context(config: AcceleratorConfig, model: ModelConfig) -> int:
    """Positions the design's KV cache holds: the board's max_context, capped by the model's."""
    return min(config.max_context, model.max_position_embeddings)


@dataclass(frozen=True)
class DecoderSpec:
    """Everything config.h and top.cpp say about the model."""

    config: ModelConfig
    offsets: ImageOffsets
    max_context: int

    @classmethod
    def for_model(cls, model: ModelConfig, config: AcceleratorConfig) -> DecoderSpec:
        context = design_context(config, model)
        return cls(model, image_offsets(model, line_layout(config), context), context)

    @property
    def max_dim(self) -> int:
        c = self.config
        return max(c.hidden_size, c.intermediate_size, c.q_size)

    @property
    def act_enum(self) -> int:
        return ACT_ENUM[self.config.hidden_act]

    @property
    def eps_literal(self) -> str:
        """The float32 epsilon as a C literal that reads back to the same float."""
        return f"{float(np.float32(self.config.rms_norm_eps)):.9g}f"

    @property
    def weight_offsets(self) -> list[tuple[str, int]]:
        o = self.offsets
        return [("w_layer_stride", o.weight_layer_stride)] + [
            (f"w_{name}", value) for name, value in zip(PROJECTIONS, o.weight_proj, strict=True)
        ]

    @property
    def param_offsets(self) -> list[tuple[str, int]]:
        o = self.offsets
        return (
            [("p_layer_stride", o.param_layer_stride)]
            + [(f"p_{name}", value) for name, value in zip(LAYER_NORMS, o.param_norms, strict=True)]
            + [("p_scales", o.param_scales), ("p_final_norm", o.param_final_norm),
               ("p_rope_cos", o.param_rope_cos), ("p_rope_sin", o.param_rope_sin)]
        )

    @property
    def depth(self) -> dict[str, int]:
        """Array sizes for the m_axi depth pragmas (what C/RTL co-simulation allocates)."""
        c = self.config
        return {
            "weights": self.offsets.weight_words,
            "params": self.offsets.param_floats,
            "cache": c.num_hidden_layers * self.max_context * c.kv_size,
            "hidden": self.max_context * c.hidden_size,
        }


@dataclass(frozen=True)
class DecoderGolden:
    """A prompt run from position 0 by the numpy reference (fp16 KV cache, as the design stores it)."""

    source: str
    tokens: list[int]
    image: DdrImage
    hidden_in: np.ndarray  # float32 [n, hidden]
    hidden_out: np.ndarray  # float32 [n, hidden], final-normed

    @property
    def n(self) -> int:
        return len(self.tokens)

    def files(self) -> dict[str, bytes]:
        return {
            "weights.bin": self.image.weights.tobytes(),
            "params.bin": self.image.params.astype("<f4").tobytes(),
            "hidden_in.bin": self.hidden_in.astype("<f4").tobytes(),
            "hidden_out.bin": self.hidden_out.astype("<f4").tobytes(),
        }


def make_decoder_golden(folder: ModelFolder, spec: DecoderSpec, config: AcceleratorConfig,
                        n_tokens: int = GOLDEN_TOKENS, seed: int = 0) -> DecoderGolden:
    model = ReferenceModel(folder, kv_dtype=np.float16)
    n = min(n_tokens, spec.max_context)
    tokens = np.random.default_rng(seed).integers(0, folder.config.vocab_size, n).tolist()
    hidden_out = model.forward(tokens, model.new_cache(spec.max_context))
    image = build_ddr_image(folder, line_layout(config), spec.max_context)
    return DecoderGolden(
        source=f"{n} random tokens through {Path(folder.path).resolve().name}, numpy reference with fp16 KV",
        tokens=tokens, image=image, hidden_in=model.embed(tokens), hidden_out=hidden_out.astype(np.float32),
    )


def load_spec(model_dir: Path, config: AcceleratorConfig) -> tuple[ModelFolder, DecoderSpec]:
    folder = open_model_folder(model_dir)
    return folder, DecoderSpec.for_model(folder.config, config)
