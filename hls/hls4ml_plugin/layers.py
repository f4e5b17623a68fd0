"""hls4ml layer classes of the plugin: shapes, the TLMM parameters a user configures, on-chip weights.

The weights are written by hls4ml as decimal numbers in its weight headers; both layers store them as
32-bit unsigned words so that every bit survives: the ternary matrix as the limbs of its 128-bit TLMM
index words (tlmm_dense.h reads them back), the RMSNorm weights as their IEEE float bits.
"""

from __future__ import annotations

import numpy as np
from hls4ml.model.attributes import Attribute, ConfigurableAttribute, WeightAttribute
from hls4ml.model.layers import Layer
from hls4ml.model.types import IntegerPrecisionType, PrecisionType, UnspecifiedPrecisionType

from tellme.models.ddr_image import ceil_div, matrix_words, words_per_row
from tellme.models.packing import WORD_INDICES, ZERO_INDEX, G, ternary_to_indices

LIMB = IntegerPrecisionType(32, signed=False)
LIMBS_PER_WORD = 4  # 32-bit limbs of one 128-bit index word

PARALLEL_ROWS = (
    "P: weight rows looked up side by side. Every cycle reads one index word (75 ternary weights) of P "
    "rows from the weight ROM and looks it up in the tables: the lookup loop takes ceil(n_out / P) * "
    "words_per_row cycles per token group, and P times the table reads, adders and float dividers."
)
TOKEN_LANES = (
    "TP: tokens whose tables every weight word is looked up in (when the input has a sequence "
    "dimension). The weights are read once per TP tokens: ceil(n_tokens / TP) passes over the ROM, "
    "TP times the tables (LUTRAM), lookups and dividers."
)
TABLE = (
    "half: 14 table entries a group of three inputs, an index below 13 read as the negated entry of "
    "26 - idx (half the table and its multiplexers, one negation a lookup); full: all 27 entries."
)


def rom_limbs(wq: np.ndarray, ports: int) -> np.ndarray:
    """Ternary [n_out, n_in] -> the weight ROM of tlmm_dense.h: uint32 limbs ordered [row-step][column]
    [port][limb], row = row-step * ports + port, rows past n_out all-zero index words."""
    wq = np.asarray(wq)
    n, k = wq.shape
    wpr, steps, used = words_per_row(k), ceil_div(n, ports), ceil_div(k, G)
    indices = np.full((steps * ports, wpr * WORD_INDICES), ZERO_INDEX, dtype=np.uint8)
    indices[:n, :used] = ternary_to_indices(wq)[:, :used]
    words = matrix_words(indices, wpr).reshape(steps, ports, wpr, -1).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(words).view("<u4").reshape(-1)


def float_bits(values: np.ndarray) -> np.ndarray:
    """float32 values -> their IEEE bits as uint32."""
    return np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).reshape(-1)


def result_precision(layer: Layer) -> PrecisionType:
    """The configured result precision, float32 when 'auto' (these layers compute in float32)."""
    precision, _ = layer.model.config.get_precision(layer, var="result")
    if isinstance(precision, UnspecifiedPrecisionType):
        return layer.model.config.backend.convert_precision_string("float")
    return precision


def tokens(shape: list[int]) -> int:
    """Tokens of a tensor: the product of every dimension but the last (1 for a vector)."""
    return int(np.prod(shape[:-1], dtype=np.int64))


class BitLinear(Layer):
    """BitNet b1.58 linear without bias: per-token int8 activations, ternary weights looked up by TLMM."""

    _expected_attributes = [
        Attribute("n_in"),
        Attribute("n_out"),
        Attribute("n_tokens"),
        Attribute("weight_scale", value_type=float),
        WeightAttribute("weight"),
        ConfigurableAttribute("parallel_rows", default=1, description=PARALLEL_ROWS),
        ConfigurableAttribute("token_lanes", default=1, description=TOKEN_LANES),
        ConfigurableAttribute("table", value_type=str, default="half", description=TABLE),
    ]

    def initialize(self) -> None:
        for name in ("parallel_rows", "token_lanes"):
            if int(self.get_attr(name)) < 1:
                raise ValueError(f"layer {self.name}: {name} must be at least 1, got {self.get_attr(name)}")
        if self.get_attr("table") not in ("half", "full"):
            raise ValueError(f"layer {self.name}: table must be 'half' or 'full', got {self.get_attr('table')!r}")
        self.set_attr("half_table", "true" if self.get_attr("table") == "half" else "false")
        shape = list(self.get_input_variable().shape)
        n_in, n_out, ports = shape[-1], int(self.get_attr("n_out")), int(self.get_attr("parallel_rows"))
        self.set_attr("n_tokens", tokens(shape))
        self.set_attr("words_per_row", words_per_row(n_in))
        self.set_attr("row_steps", ceil_div(n_out, ports))
        self.add_output_variable([*shape[:-1], n_out], precision=result_precision(self))
        limbs = rom_limbs(self.get_attr("ternary_data"), ports)
        self.add_weights_variable(name="weight", var_name="w{index}", precision=LIMB, data=limbs)


class RMSNorm(Layer):
    """RMSNorm over the last dimension in float32, times a per-channel weight."""

    _expected_attributes = [
        Attribute("n_in"),
        Attribute("n_tokens"),
        Attribute("epsilon", value_type=float),
        WeightAttribute("weight"),
    ]

    def initialize(self) -> None:
        shape = list(self.get_input_variable().shape)
        self.set_attr("n_tokens", tokens(shape))
        self.add_output_variable(shape, precision=result_precision(self))
        bits = float_bits(self.get_attr("weight_data"))
        self.add_weights_variable(name="weight", var_name="w{index}", precision=LIMB, data=bits)
