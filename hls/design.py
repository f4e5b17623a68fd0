"""A Design: one accelerator configuration for one model on one board, built once and asked everything.

    design = Design.for_model("models/my-model", "kv260", ["tlmm.q=8"])
    design.write_project("out/hls")        # the Vitis HLS project (tellme hls)
    sim = design.csim()                     # the decoder top compiled by g++ (tellme run --backend csim)
    print(design.fit().describe(), design.speed().describe())
    design.build("bitstreams/kv260/x")      # Vitis HLS + Vivado (tellme build)

It holds the accelerator config (board preset, sized for the model's largest layer, then overrides), the
model's shape, the KV context the design holds, the DDR image offsets, and (from a model folder) the
weights for golden vectors and the C simulation. `Design.for_shape` makes one from a shape alone, for
estimates. The CLI only parses arguments, calls these methods and prints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tellme.models.config import LAYER_NORMS, PROJECTIONS, ModelConfig
from tellme.models.ddr_image import DdrImage, ImageOffsets, LineLayout, build_ddr_image, image_offsets, tlmm_lines
from tellme.models.errors import UserError
from tellme.models.model_folder import ModelFolder, open_model_folder
from tellme.models.quant import act_quant
from tellme.models.reference import ReferenceModel
from tellme.models.tlmm import TlmmWeights

from .boards import Board, board_config, get_board
from .config import AcceleratorConfig

if TYPE_CHECKING:
    from .csim import DecoderSim
    from .fit import FitEstimate
    from .perf import SpeedEstimate
    from .top_args import GeneratedTop

ACT_ENUM = {"relu2": 0, "silu": 1}  # elementwise.h activation_t
TLMM_GOLDEN_LAYER, TLMM_GOLDEN_PROJ, TLMM_GOLDEN_TOKENS = 0, "gate_proj", 2
DECODER_GOLDEN_TOKENS = 4


def model_sizes(model: ModelConfig) -> tuple[int, int]:
    """(max in_features, max out_features) over a layer's ternary linears: what the buffers must hold."""
    shapes = model.linear_shapes().values()
    return max(k for _, k in shapes), max(n for n, _ in shapes)


def sized_config(board: str, model: ModelConfig, overrides: list[str] | tuple[str, ...] = ()) -> AcceleratorConfig:
    """The board preset sized for the model (largest layer), then the user's overrides, which must still fit."""
    get_board(board)  # an unknown board is reported before anything else
    max_k, max_n = model_sizes(model)
    config = board_config(board, overrides, max_k=max_k, max_n=max_n)
    if config.max_k < max_k or config.max_n < max_n:
        raise UserError(
            f"max_k={config.max_k}, max_n={config.max_n} are too small for the model's layers "
            f"(need {max_k}, {max_n}): drop those --set overrides"
        )
    return config


def tlmm_reference(packed: np.ndarray, k: int, xq: np.ndarray, s_x: np.ndarray,
                   s_w: float) -> tuple[np.ndarray, np.ndarray]:
    """(acc int32 [M, N], y float32 [M, N]) with y = float32(acc) / (s_x * s_w), all float32: the TLMM
    engine's arithmetic, written as the kernel computes it (so a check against it is bit-exact)."""
    acc = TlmmWeights(packed, k).matmul(np.asarray(xq, dtype=np.int8))
    s_x = np.asarray(s_x, dtype=np.float32).reshape(-1, 1)
    y = acc.astype(np.float32) / (s_x * np.float32(s_w))
    return acc, y.astype(np.float32)


@dataclass(frozen=True)
class TlmmGolden:
    """Golden vectors of the TLMM testbench: one stored matrix, quantised random activations, numpy's y."""

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


@dataclass(frozen=True)
class Design:
    """An accelerator for one model shape on one board (see the module docstring)."""

    name: str  # the model's name: its folder's, or the shape's
    config: AcceleratorConfig
    model: ModelConfig
    folder: ModelFolder | None = None  # the weights, when made from a model folder

    # --- construction ---
    @classmethod
    def for_model(cls, model: Path | str | ModelFolder, board: str = "kv260",
                  overrides: list[str] | tuple[str, ...] = (), *, config: AcceleratorConfig | None = None,
                  verify: bool = True) -> Design:
        """A model folder (opened and verified once) on a board; `config` replaces preset and overrides
        (a design folder's recorded parameters)."""
        folder = model if isinstance(model, ModelFolder) else open_model_folder(Path(model), verify=verify)
        config = config or sized_config(board, folder.config, overrides)
        return cls(Path(folder.path).resolve().name, config, folder.config, folder)

    @classmethod
    def for_shape(cls, model: ModelConfig, board: str = "kv260", overrides: list[str] | tuple[str, ...] = (),
                  name: str = "shape") -> Design:
        """A model shape without weights: enough for config.h, estimates and the build scripts' sizes."""
        return cls(name, sized_config(board, model, overrides), model)

    # --- what it is ---
    @property
    def board(self) -> Board:
        return get_board(self.config.board)

    @property
    def context(self) -> int:
        """Positions the KV cache holds: the board's max_context, capped by the model's."""
        return min(self.config.max_context, self.model.max_position_embeddings)

    @property
    def layout(self) -> LineLayout:
        """How the weights are cut into lines of Q index vectors (hls/kernels/tlmm.h)."""
        return self.config.layout

    @cached_property
    def offsets(self) -> ImageOffsets:
        return image_offsets(self.model, self.layout, self.context)

    @property
    def max_dim(self) -> int:
        c = self.model
        return max(c.hidden_size, c.intermediate_size, c.q_size)

    @property
    def act_enum(self) -> int:
        return ACT_ENUM[self.model.hidden_act]

    @property
    def eps_literal(self) -> str:
        """The float32 epsilon as a C literal that reads back to the same float."""
        return f"{float(np.float32(self.model.rms_norm_eps)):.9g}f"

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
        c, cfg = self.model, self.config
        return {
            "weights": self.offsets.weight_words,
            "params": self.offsets.param_floats,
            "cache": c.num_hidden_layers * self.context * c.kv_size,
            "hidden": self.context * c.hidden_size,
            "tlmm_weights": cfg.max_n * cfg.max_cycles * cfg.line_words,
            "tlmm_x": -(-cfg.max_k // (cfg.axi_width // 8)),
            "tlmm_y": cfg.max_n,
        }

    @cached_property
    def top_args(self) -> GeneratedTop:
        """The top's arguments and the buffers they point at (tellme.hls.top_args): rendered into top.cpp,
        recorded in the design manifest for the host."""
        from .top_args import decoder_top

        return decoder_top(self)

    def with_config(self, **changes: object) -> Design:
        """The same model with some accelerator parameters changed (validated)."""
        return dataclasses.replace(self, config=dataclasses.replace(self.config, **changes))

    # --- what it needs from the weights ---
    def _weights(self) -> ModelFolder:
        if self.folder is None:
            raise UserError(f"design {self.name} was made from a shape: this needs a model folder (--model)")
        return self.folder

    def image(self) -> DdrImage:
        """The weights and params images the board uploads (tellme.models.ddr_image)."""
        return build_ddr_image(self._weights(), self.layout, self.context)

    def tlmm_golden(self, tokens: int = TLMM_GOLDEN_TOKENS, seed: int = 0) -> TlmmGolden:
        """One matrix of the model (layer 0 gate_proj) and quantised random activations through numpy."""
        folder = self._weights()
        name = f"layers.{TLMM_GOLDEN_LAYER}.{TLMM_GOLDEN_PROJ}"
        n, k = self.model.linear_shapes()[TLMM_GOLDEN_PROJ]
        packed = folder.tensor(f"{name}.tlmm")
        s_w = np.float32(folder.tensor(f"{name}.scale").reshape(-1)[0])
        xq, s_x = act_quant(np.random.default_rng(seed).standard_normal((tokens, k)).astype(np.float32))
        _, y = tlmm_reference(packed, k, xq, s_x, s_w)
        return TlmmGolden(
            source=f"{name} of {self.name} (K={k}, N={n}), random activations", k=k, n=n,
            weights=tlmm_lines(packed, k, self.layout), x=xq, s_x=s_x.reshape(-1), s_w=s_w, y=y,
        )

    def decoder_golden(self, n_tokens: int = DECODER_GOLDEN_TOKENS, seed: int = 0) -> DecoderGolden:
        """A prompt of random tokens through the reference with an fp16 KV cache."""
        folder = self._weights()
        model = ReferenceModel(folder, kv_dtype=np.float16)
        n = min(n_tokens, self.context)
        tokens = np.random.default_rng(seed).integers(0, self.model.vocab_size, n).tolist()
        hidden_out = model.forward(tokens, model.new_cache(self.context))
        return DecoderGolden(
            source=f"{n} random tokens through {self.name}, numpy reference with fp16 KV",
            tokens=tokens, image=self.image(), hidden_in=model.embed(tokens),
            hidden_out=hidden_out.astype(np.float32),
        )

    # --- what it does ---
    def sources(self) -> dict[str, str]:
        """The design's C++ and the C-sim bridge, as tellme.hls.csim compiles them."""
        from .project import design_sources

        return design_sources(self)

    def write_project(self, out: Path | str, force: bool = False) -> Path:
        """The self-contained Vitis HLS project (`tellme hls`), written atomically."""
        from .project import write_project

        inputs = (Path(self.folder.path),) if self.folder is not None else ()
        return write_project(Path(out), self, force=force, inputs=inputs)

    def csim(self, cache_dir: Path | None = None) -> DecoderSim:
        """tellme_top compiled by g++ (cached by source hash), with this model's weights loaded."""
        from .csim import DecoderSim

        return DecoderSim.build(self, cache_dir=cache_dir)

    def fit(self) -> FitEstimate:
        from .fit import estimate_fit

        return estimate_fit(self)

    def speed(self) -> SpeedEstimate:
        from .perf import estimate_speed

        return estimate_speed(self)

    def build(self, out: Path | str | None = None, *, dry_run: bool = False, force: bool = False) -> int:
        """`tellme build`: estimates, project, block design, the Xilinx tools; returns the exit code."""
        from .build import build_design

        return build_design(self, Path(out) if out else None, dry_run=dry_run, force=force)
