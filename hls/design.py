"""A Design: one accelerator configuration for one model on one board, built once and asked everything.

    design = Design.for_model("models/my-model", "kv260", ["prefill_block=8"])
    design.write_project("out/hls")        # the Vitis HLS project (tellme hls)
    sim = design.csim()                     # the decoder top compiled by g++ (tellme run --backend csim)
    print(design.fit().describe(), design.speed().describe())
    design.build("bitstreams/kv260/x")      # Vitis HLS + Vivado (tellme build)

It holds the accelerator config (board preset, checked against the model, then overrides), the model's
shape, the KV context the design holds, the DDR layout (tellme.models.ddr_image) and, from a model
folder, the weights for the DDR image, the golden vectors and the C simulation. `Design.for_shape`
makes one from a shape alone, for estimates. The CLI only parses arguments, calls these and prints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tellme.models.config import ModelConfig
from tellme.models.ddr_image import (
    FLOATS_PER_WORD,
    DdrImage,
    DdrLayout,
    build_ddr_image,
    qkv_row_order,
    round_up,
    words_per_row,
)
from tellme.models.errors import UserError
from tellme.models.model_folder import ModelFolder, open_model_folder
from tellme.models.numerics import AcceleratorOrder
from tellme.models.reference import ReferenceModel

from .boards import Board, board_config, get_board
from .config import AcceleratorConfig, parse_overrides

if TYPE_CHECKING:
    from .csim import DecoderSim
    from .fit import FitEstimate
    from .perf import SpeedEstimate
    from .top_args import GeneratedTop

ACT_ENUM = {"relu2": 0, "silu": 1}  # elementwise.h activation_t
ELEMENTWISE_PARTIALS = 8  # rotating partial sums: at least the float adder's latency
VECTOR_ALIGN = 60  # on-chip vectors start at multiples of the lanes (15) and of a word of floats (4)
MIN_ACC_DISTANCE = 16  # attention.h: iterations between updates of one accumulator (> fmul + fadd latency)
DECODER_GOLDEN_TOKENS = 4
TLMM_GOLDEN_TOKENS = 3


def attention_distance(model: ModelConfig, config: AcceleratorConfig, lanes: int) -> int:
    """Iterations between two updates of one attention accumulator (attention.h, PV loop)."""
    chunk = config.chunk
    row_chunks = model.num_key_value_heads * round_up(model.head_dim, chunk) // chunk
    group = model.num_attention_heads // model.num_key_value_heads
    return row_chunks * group * (chunk // lanes)


# The two-pass LM head halves the head's bytes a token for a few thousand LUTs more than the whole-row one
# (hls/fit.py): taken by default where the int8 head is at least this share of a decode step's weight bytes.
TWOPASS_HEAD_SHARE = 1 / 3


def default_head(model: ModelConfig, ports: int) -> str:
    """The PL head a design gets when the user sets none: the two-pass one where the int8 head's bytes are
    a large share of a token's (a large vocabulary: bitnet-2b-4t's 128k rows are 42 % of its bytes), the
    whole-row one otherwise (bitnet-0.73b: 25 %; its LUTs go to prefill's token lanes instead)."""
    per_token = DdrLayout(model, ports, 1, 1, True).bytes_per_token(0)
    share = per_token["lm_head"] / (per_token["weights"] + per_token["lm_head"])
    return "pl-int8-twopass" if share >= TWOPASS_HEAD_SHARE else "pl-int8"


def sized_config(board: str, model: ModelConfig, overrides: list[str] | tuple[str, ...] = (),
                 auto: bool = True) -> AcceleratorConfig:
    """The board preset checked against the model, then the user's overrides. Where the preset's attention
    lanes would let one accumulator update overtake another for this shape, fewer lanes are taken
    (an override that does is refused); an LM head the user did not set is default_head's. With `auto`,
    a prefill block the user did not set is the largest, up to the preset's, whose buffers fit the board
    (hls/fit.py), and a default two-pass head that fits nowhere gives way to the whole-row one."""
    get_board(board)  # an unknown board is reported before anything else
    preset = board_config(board)
    values = parse_overrides(preset, list(overrides))
    head_chosen = "lm_head" not in values
    if head_chosen:
        values["lm_head"] = default_head(model, values.get("weight_ports", preset.weight_ports))
    if "attention_lanes" not in values:
        chunk = dataclasses.replace(preset, attention_lanes=1, weight_ports=values.get("weight_ports",
                                                                                      preset.weight_ports)).chunk
        lanes = max(d for d in range(1, min(preset.attention_lanes, chunk) + 1) if chunk % d == 0)
        trial = dataclasses.replace(preset, attention_lanes=lanes, weight_ports=chunk // 8)
        while lanes > 1 and attention_distance(model, trial, lanes) < MIN_ACC_DISTANCE:
            lanes = max(d for d in range(1, lanes) if chunk % d == 0)
        values["attention_lanes"] = lanes
    config = board_config(board, [f"{k}={v}" for k, v in values.items()])
    distance = attention_distance(model, config, config.attention_lanes)
    if distance < MIN_ACC_DISTANCE:
        raise UserError(f"attention_lanes={config.attention_lanes}: an accumulator would be updated every "
                        f"{distance} cycles for this model (at least {MIN_ACC_DISTANCE}): use fewer lanes")
    if not auto:
        return config
    block, lanes = "prefill_block" not in values, "tlmm.token_lanes" not in values
    fitted, fits = _fitted(config, model, block, lanes)
    if not fits and head_chosen and config.head_twopass:  # the whole-row head is the smaller one
        return _fitted(dataclasses.replace(config, lm_head="pl-int8"), model, block, lanes)[0]
    return fitted


def _fitted(config: AcceleratorConfig, model: ModelConfig, block: bool, lanes: bool
            ) -> tuple[AcceleratorConfig, bool]:
    """The preset's prefill block and token lanes (those the user left alone) brought down until the design
    fits its board (hls/fit.py): the largest block first, then fewer token lanes; and whether it fits
    (unchanged when nothing does)."""
    from .fit import estimate_fit

    blocks = range(config.prefill_block, 0, -1) if block else [config.prefill_block]
    token_lanes = range(config.tlmm.token_lanes, 0, -1) if lanes else [config.tlmm.token_lanes]
    for tp in token_lanes:
        for b in blocks:
            trial = dataclasses.replace(config, prefill_block=b, tlmm=dataclasses.replace(config.tlmm, token_lanes=tp))
            if estimate_fit(Design("trial", trial, model), advise=False).fits:
                return trial, True
    return config, False


SHARED_TREE_ADDERS = 2  # float_adders=fabric: attention's once-a-row trees share this many adders


def tree_adders(config: AcceleratorConfig, head_dim_pad: int) -> dict[str, int]:
    """Adders of attention's SCORES tree (parts - 1 adds a score) and ROW_SUMS (kv_block adds a head), and
    the II that gives (attention.h): every add its own adder at II=1, unless the adders are in LUTs
    (float_adders=fabric, small devices), where a few are shared."""
    score_adds = (head_dim_pad // config.chunk) * (config.chunk // config.attention_lanes) - 1
    sum_adds = config.kv_block
    out = {}
    for name, adds in (("score", score_adds), ("sum", sum_adds)):
        adders = max(1, adds if config.float_adders == "dsp" else min(adds, SHARED_TREE_ADDERS))
        out[f"{name}_adders"], out[f"{name}_ii"] = adders, -(-max(adds, 1) // adders)
    return out


@dataclass(frozen=True)
class Design:
    """An accelerator for one model shape on one board (see the module docstring)."""

    name: str  # the model's name: its folder's, or the shape's
    config: AcceleratorConfig
    model: ModelConfig
    folder: ModelFolder | None = None  # the weights, when made from a model folder
    overrides: tuple[str, ...] = ()  # the user's --set items (the rest is the preset, sized to fit)

    def __post_init__(self) -> None:
        if self.config.tlmm.tile_words < self.layout.max_wpr:
            raise UserError(f"tlmm.tile_words={self.config.tlmm.tile_words} cannot hold one row of this model "
                            f"({self.layout.max_wpr} words): raise it")

    # --- construction ---
    @classmethod
    def for_model(cls, model: Path | str | ModelFolder, board: str = "kv260",
                  overrides: list[str] | tuple[str, ...] = (), *, config: AcceleratorConfig | None = None,
                  verify: bool = True) -> Design:
        """A model folder (opened and verified once) on a board; `config` replaces preset and overrides
        (a design folder's recorded parameters)."""
        folder = model if isinstance(model, ModelFolder) else open_model_folder(Path(model), verify=verify)
        config = config or sized_config(board, folder.config, overrides)
        return cls(Path(folder.path).resolve().name, config, folder.config, folder, tuple(overrides))

    @classmethod
    def for_shape(cls, model: ModelConfig, board: str = "kv260", overrides: list[str] | tuple[str, ...] = (),
                  name: str = "shape") -> Design:
        """A model shape without weights: enough for config.h, estimates and the build scripts' sizes."""
        return cls(name, sized_config(board, model, overrides), model, overrides=tuple(overrides))

    # --- what it is ---
    @property
    def board(self) -> Board:
        return get_board(self.config.board)

    @property
    def context(self) -> int:
        """Positions the KV cache holds: the board's max_context, capped by the model's."""
        return min(self.config.max_context, self.model.max_position_embeddings)

    @cached_property
    def layout(self) -> DdrLayout:
        return DdrLayout(self.model, self.config.weight_ports, self.context, self.config.kv_block,
                         self.config.head_on_pl, self.config.head_twopass)

    @property
    def reference_head(self) -> str:
        """The LM head the numpy reference computes to predict this design."""
        if self.config.head_twopass:
            return "int8-twopass"
        return "int8" if self.config.head_on_pl else "float32"

    @cached_property
    def constants(self) -> dict[str, dict[str, object]]:
        """Every constant of config.h: struct name -> field -> value (ints, bools, and floats: eps, the
        attention scale, as float32 values)."""
        m, cfg, lay = self.model, self.config, self.layout
        mats = {mx.name: mx for mx in lay.matrices}
        off = lay.param_offsets
        act_att = round_up(m.hidden_size, VECTOR_ALIGN)
        act_m = act_att + round_up(m.q_size, VECTOR_ALIGN)
        act_dim = act_m + round_up(m.intermediate_size, VECTOR_ALIGN)
        norm_dim = round_up(max(m.hidden_size, m.q_size, m.intermediate_size), VECTOR_ALIGN)
        norm_offsets, at = {}, 0  # the norm weights one after another on chip (decoder.h normw)
        for key, dim in (("input", m.hidden_size), ("post", m.hidden_size), ("attn_sub", m.q_size),
                         ("ffn_sub", m.intermediate_size), ("final", m.hidden_size)):
            norm_offsets[f"norm_offset_{key}"] = at
            at += round_up(dim, VECTOR_ALIGN)
        max_rows = max(mx.rows_per_stripe for mx in lay.matrices)
        phases = [mx.words for mx in lay.matrices] + [lay.head_rows_per_stripe * lay.head_row_words]
        b = cfg.prefill_block
        io_words = max(b * lay.hidden_pad, off["layer_stride"], b * lay.rope_half_pad) // FLOATS_PER_WORD
        lanes = cfg.weight_ports * cfg.tlmm.token_lanes
        tiles = [round_up(mx.rows_per_stripe, cfg.tlmm.tile_words // mx.wpr) // (cfg.tlmm.tile_words // mx.wpr)
                 for mx in lay.matrices]
        rows_iters = [min(mx.rows_per_stripe, cfg.tlmm.tile_words // mx.wpr) * max(mx.wpr, lanes) + lanes
                      for mx in lay.matrices]
        tlmm = {"ports": cfg.weight_ports, "token_lanes": cfg.tlmm.token_lanes, "max_block": b,
                "max_wpr": lay.max_wpr, "max_rows": max_rows, "tile_words": cfg.tlmm.tile_words,
                "max_tiles": max(tiles), "max_rows_iters": max(rows_iters), "half_table": cfg.tlmm.table == "half"}
        elementwise = {"lanes": cfg.elementwise_lanes, "partials": ELEMENTWISE_PARTIALS}
        attention = {"ports": cfg.weight_ports, "chunk": cfg.chunk, "lanes": cfg.attention_lanes,
                     "head_dim": m.head_dim, "head_dim_pad": lay.head_dim_pad, "heads": m.num_attention_heads,
                     "kv_heads": m.num_key_value_heads, "kv_block": cfg.kv_block, "max_block": b,
                     "max_context": self.context, "scale": float(np.float32(1.0 / np.sqrt(np.float64(m.head_dim)))),
                     **tree_adders(cfg, lay.head_dim_pad)}
        model = {
            "ports": cfg.weight_ports, "layers": m.num_hidden_layers, "hidden": m.hidden_size,
            "hidden_pad": lay.hidden_pad, "intermediate": m.intermediate_size,
            "intermediate_pad": round_up(m.intermediate_size, FLOATS_PER_WORD), "q_size": m.q_size,
            "q_size_pad": round_up(m.q_size, FLOATS_PER_WORD), "kv_size": m.kv_size,
            "heads": m.num_attention_heads, "kv_heads": m.num_key_value_heads, "head_dim": m.head_dim,
            "head_dim_pad": lay.head_dim_pad, "max_context": self.context, "act": ACT_ENUM[m.hidden_act],
            "act_att": act_att, "act_m": act_m, "act_dim": act_dim, "norm_dim": norm_dim, **norm_offsets,
            "norm_total": at,
            "layer_words": lay.layer_words, "final_wpr": words_per_row(m.hidden_size),
        }
        for name in ("qkv", "o", "gateup", "down"):
            mx = mats[name]
            model.update({f"{name}_rows": mx.rows_per_stripe, f"{name}_wpr": mx.wpr, f"{name}_offset": mx.offset})
        model.update({
            "kv_block": cfg.kv_block, "kv_row_words": lay.kv_row_words, "kv_layer_words": lay.kv_layer_words,
            "kv_stripe_words": lay.kv_stripe_words,
            "p_layer_stride": off["layer_stride"], "p_final_norm": off["final_norm"], "p_rope_cos": off["rope_cos"],
            "p_rope_sin": off["rope_sin"], "rope_half_pad": lay.rope_half_pad,
            "lm_head": cfg.head_on_pl, "head_offset": lay.head_offset, "head_rows": lay.head_rows_per_stripe,
            "head_row_words": lay.head_row_words, "head_lanes": lay.head_values_per_word,
            "head_values": round_up(m.hidden_size, lay.head_values_per_word),
            "head_twopass": cfg.head_twopass, "head_candidates": cfg.head_candidates,
            "head_low_offset": lay.head_low_offset, "head_low_row_words": lay.head_low_row_words,
            "vocab": m.vocab_size, "max_phase_words": max(phases), "max_io_words": io_words,
            "stripe_fifo_depth": cfg.fifo_depth, "eps": float(np.float32(m.rms_norm_eps)),
            # a layer's params, so the prefetcher writes them and goes on to the layer's weights
            "io_fifo_depth": round_up(off["layer_stride"] // FLOATS_PER_WORD, 64),
        })
        return {"tlmm_config": tlmm, "elementwise_config": elementwise, "attention_config": attention,
                "model_config": model}

    @property
    def depth(self) -> dict[str, int]:
        """m_axi depth in words per bundle kind (what C/RTL co-simulation allocates): every port of a
        bundle gets the same options, so the largest buffer any of its ports reaches."""
        lay, c = self.layout, self.context
        results = lay.vocab_pad if self.config.head_on_pl else c * lay.hidden_pad
        io = max(lay.param_offsets["total"], c * lay.hidden_pad, results) // FLOATS_PER_WORD
        return {"weights": max(lay.stripe_words, lay.kv_words), "io": max(io, lay.kv_words)}

    @cached_property
    def top_args(self) -> GeneratedTop:
        """The top's arguments and the buffers they point at (tellme.hls.top_args): rendered into top.cpp
        and config.h, recorded in the design manifest for the host."""
        from .top_args import decoder_top

        return decoder_top(self)

    # --- what it needs from the weights ---
    def _weights(self) -> ModelFolder:
        if self.folder is None:
            raise UserError(f"design {self.name} was made from a shape: this needs a model folder (--model)")
        return self.folder

    def image(self) -> DdrImage:
        """The weight stripes and params the board uploads (tellme.models.ddr_image)."""
        folder = self._weights()
        head = folder.int8_table(folder.head_name) if self.config.head_on_pl else None
        return build_ddr_image(folder, self.layout, head)

    @property
    def attention_order(self) -> AcceleratorOrder:
        """How this design cuts attention (what the reference needs to predict it bit for bit)."""
        return AcceleratorOrder(self.config.chunk, self.config.attention_lanes, self.layout.head_dim_pad,
                                self.config.kv_block, self.config.elementwise_lanes)

    def reference(self) -> ReferenceModel:
        """The numpy model with this design's arithmetic: fp16 KV cache, the design's LM head, every float
        operation in the accelerator's order (tellme.models.numerics)."""
        return ReferenceModel(self._weights(), kv_dtype=np.float16, lm_head=self.reference_head,
                              order=self.attention_order, head_candidates=self.config.head_candidates)

    def decoder_golden(self, n_tokens: int = DECODER_GOLDEN_TOKENS, seed: int = 0) -> dict[str, object]:
        """A prompt of random tokens through the reference: the embeddings in and what the top writes out
        (every token's hidden state, or the last token's logits)."""
        model = self.reference()
        n = min(n_tokens, self.context)
        tokens = np.random.default_rng(seed).integers(0, self.model.vocab_size, n).tolist()
        hidden = model.forward(tokens, model.new_cache(self.context))
        out = model.lm_head_logits(hidden[-1:])[0] if self.config.head_on_pl else hidden
        return {"tokens": tokens, "hidden_in": model.embed(tokens).astype(np.float32),
                "expected": np.asarray(out, dtype=np.float32)}

    def tlmm_golden(self, tokens: int = TLMM_GOLDEN_TOKENS, seed: int = 0) -> dict[str, np.ndarray]:
        """Layer 0's qkv matrix and random int8 activations: the integer sums numpy's TLMM gives, in the
        matrix's streamed row order (q and k in RoPE pairs)."""
        from tellme.models.tlmm import TlmmWeights

        folder = self._weights()
        qkv = self.layout.matrices[0]
        rng = np.random.default_rng(seed)
        xq = rng.integers(-128, 128, (tokens, qkv.k)).astype(np.int8)
        sums = np.concatenate([TlmmWeights(folder.tensor(f"layers.0.{p}.tlmm"), qkv.k).matmul(xq)
                               for p in ("q_proj", "k_proj", "v_proj")], axis=1)
        return {"xq": xq, "acc": sums[:, qkv_row_order(self.model)].astype(np.int32)}  # as the stripes carry it

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

