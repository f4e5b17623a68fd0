"""Speed estimate of a generated design, from the loop structure of its C++ (not a measurement).

The model counts the cycles of the kernels' pipelined loops at II=1, one after another, as the code is
written today: for each weight tile, load it (one AXI word per cycle on gmem_w), then for each token of
the block build its table (Q vectors per cycle) and look up every row (one line per cycle); element-wise
passes take one element per cycle; attention reads each position's K and V rows an AXI beat per cycle,
then takes one query head per cycle (head_dim lanes). It leaves out AXI latency, DDR
efficiency, pipeline fill and float-add recurrences (all make the real design slower) and any overlap
of loading and computing (which would make it faster). Use it to compare designs, not to quote speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tellme.models.config import ModelConfig

from .config import AcceleratorConfig

if TYPE_CHECKING:
    from .design import Design

ELEMENTWISE_PASSES = 4  # rmsnorm: sum of squares, scale; quantisation: peak, round


@dataclass(frozen=True)
class SpeedEstimate:
    decode_cycles: int  # one token at the middle of the context
    prefill_cycles_per_token: int  # a full prefill block at the middle of the context
    weight_load_share: float  # of decode cycles, the part spent loading weights
    clock_mhz: float
    axi_width: int

    @property
    def decode_tok_s(self) -> float:
        return self.clock_mhz * 1e6 / self.decode_cycles

    @property
    def prefill_tok_s(self) -> float:
        return self.clock_mhz * 1e6 / self.prefill_cycles_per_token

    def describe(self) -> str:
        return (
            f"speed estimate (cycle model of the generated loops at {self.clock_mhz:g} MHz, no AXI latency or "
            f"overlap; hls/perf.py): decode {self.decode_tok_s:.1f} tok/s, prefill {self.prefill_tok_s:.1f} tok/s; "
            f"{self.weight_load_share:.0%} of decode is loading weights through one {self.axi_width}-bit port"
        )

    def to_dict(self) -> dict:
        return {"decode_tok_s": round(self.decode_tok_s, 2), "prefill_tok_s": round(self.prefill_tok_s, 2),
                "decode_cycles": self.decode_cycles, "prefill_cycles_per_token": self.prefill_cycles_per_token,
                "weight_load_share": round(self.weight_load_share, 3), "model": "hls/perf.py cycle model"}


def matrix_cycles(config: AcceleratorConfig, n: int, k: int, block: int) -> tuple[int, int]:
    """(load cycles, compute cycles) of one n x k matrix for a block of tokens (tlmm_compute)."""
    cycles = config.cycles(k)
    tiles = math.ceil(n / config.tile_rows)
    load = n * cycles * config.line_words
    tables = (tiles if block > 1 else 1) * block * cycles * config.tlmm.q
    compute = tables + block * (n * cycles + n)  # lookups, then the stores of the finished rows
    return load, compute


def _elementwise_cycles(model: ModelConfig) -> int:
    """Per token and layer: four fused norms, RoPE, KV append, gate x up, two residual adds."""
    h, i, qs = model.hidden_size, model.intermediate_size, model.q_size
    norms = ELEMENTWISE_PASSES * (h + qs + h + i)
    rope = (model.num_attention_heads + model.num_key_value_heads) * model.head_dim // 2
    return norms + rope + model.kv_size + i + 2 * h


def _attention_cycles(config: AcceleratorConfig, model: ModelConfig, rows: int) -> int:
    """One K/V stream of `rows` positions, shared by the PEs of a block (unrolled): per row, the K and V
    rows of every KV head at one AXI beat of fp16 values per cycle, then one query head per cycle."""
    per_row = math.ceil(model.kv_size / (config.axi_width // 16)) + model.num_attention_heads
    return rows * per_row


def estimate_speed(design: Design) -> SpeedEstimate:
    """Decode at the middle of the design's context, and a full prefill block there."""
    config, model, context = design.config, design.model, design.context
    shapes = model.linear_shapes().values()
    position = context // 2
    load = compute = 0
    for n, k in shapes:
        matrix_load, matrix_compute = matrix_cycles(config, n, k, 1)
        load, compute = load + matrix_load, compute + matrix_compute
    per_layer = load + compute + _elementwise_cycles(model) + _attention_cycles(config, model, position + 1)
    decode = model.num_hidden_layers * per_layer

    b = config.prefill_block
    block_cycles = 0
    for n, k in shapes:
        matrix_load, matrix_compute = matrix_cycles(config, n, k, b)
        block_cycles += matrix_load + matrix_compute
    blocks_of_queries = math.ceil(b / config.attention_pes)
    block_cycles += b * _elementwise_cycles(model) + blocks_of_queries * _attention_cycles(config, model, position + b)
    prefill = model.num_hidden_layers * block_cycles // b
    return SpeedEstimate(decode, prefill, model.num_hidden_layers * load / decode, config.clock_mhz,
                         config.axi_width)
