"""Will a design fit its board? An estimate from the accelerator parameters and the model's shape,
made before hours of synthesis: on-chip memory (weight banks, lookup tables, the decoder's vectors)
and DDR (weights and params images, KV cache, the host's float32 embedding and LM head).

Block RAM and UltraRAM are what a TLMM engine runs out of first, and DDR is what a model runs out of
on the small boards, so those decide "does not fit"; the lookup tables' LUTRAM is reported and warned
about (how Vivado packs small tables is less certain). LUTs for logic and DSPs are left to csynth.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tellme.models.config import ModelConfig
from tellme.models.errors import UserError
from tellme.models.packing import INDEX_BITS

from .config import AcceleratorConfig

if TYPE_CHECKING:
    from .design import Design

MB = 1 << 20
GB = 1 << 30
TABLE_ENTRY_BITS = 10  # ap_int<10>: |sum of 3 int8| <= 384 (tlmm.h entry_t)
URAM_SHAPE = (4096, 72)  # URAM288: depth x width
BRAM36_SHAPES = ((512, 72), (1024, 36), (2048, 18), (4096, 9), (8192, 4), (16384, 2), (32768, 1))
FLOATS_PER_BRAM36 = 1024  # a float32 vector, unpartitioned, in the 1024 x 36 shape
INTERFACE_BRAM36 = 1  # per m_axi bundle: burst buffers of the HLS AXI adapter (allowance)
DECODER_BUNDLES = 5  # gmem_w, gmem_p, gmem_k, gmem_v, gmem_h (top.cpp)
TLMM_BUNDLES = 2  # gmem_w, gmem_io (tlmm_top.cpp)


@dataclass(frozen=True)
class Need:
    """One resource: the estimate, what the board has, and how the estimate was made."""

    resource: str
    need: float
    have: float
    model: str
    decides: bool  # False: reported and warned about, never "does not fit"

    @property
    def fits(self) -> bool:
        return self.need <= self.have


@dataclass(frozen=True)
class FitEstimate:
    board: str
    device: str
    model_name: str
    needs: tuple[Need, ...]
    block_hint: int | None = None  # the largest prefill_block whose buffers fit, when BRAM36 is short

    @property
    def fits(self) -> bool:
        return all(n.fits for n in self.needs if n.decides)

    @property
    def warnings(self) -> list[str]:
        return [
            f"{n.resource} may not fit: estimate {_amount(n)} of {_have(n)} ({n.model}); csynth will tell"
            for n in self.needs
            if not n.decides and not n.fits
        ]

    def describe(self) -> str:
        """Multi-line table for the terminal."""
        lines = [f"fit estimate for {self.model_name} on {self.board} ({self.device}):"]
        for n in self.needs:
            mark = "ok" if n.fits else ("DOES NOT FIT" if n.decides else "warning")
            lines.append(f"  {n.resource:<7} {_amount(n):>10} of {_have(n):<10} {mark:<12} {n.model}")
        return "\n".join(lines)

    def check(self) -> None:
        """UserError, one line with the figures, when a deciding resource is short."""
        short = [n for n in self.needs if n.decides and not n.fits]
        if short:
            figures = "; ".join(f"{n.resource} {_amount(n)} > {_have(n)} ({n.model})" for n in short)
            raise UserError(
                f"does not fit: {self.model_name} on {self.board} ({self.device}), estimate: {figures}"
                f"{_advice(self.board, short, self.block_hint)}"
            )

    def to_dict(self) -> dict:
        return {
            "model": self.model_name,
            "fits": self.fits,
            "needs": {n.resource: {"need": n.need, "have": n.have, "model": n.model} for n in self.needs},
        }


def _amount(n: Need) -> str:
    return _bytes(n.need) if n.resource == "DDR" else f"{n.need:,.0f}"


def _have(n: Need) -> str:
    return _bytes(n.have) if n.resource == "DDR" else f"{n.have:,.0f}"


def _bytes(value: float) -> str:
    return f"{value / GB:.2f} GB" if value >= GB else f"{value / MB:.1f} MB"


def _advice(board: str, short: list[Need], block_hint: int | None = None) -> str:
    kinds = {n.resource for n in short}
    if "DDR" in kinds:  # no on-chip setting helps then
        return ": use a smaller model, a board with more DDR, or a shorter KV cache (--set max_context=N)"
    if "BRAM36" in kinds and block_hint:
        return f": lower --set prefill_block={block_hint} (buffers are held per token of a prefill block)"
    if board == "pynq-z2":
        return ": PYNQ-Z2 (no URAM, 140 BRAM36) takes small models only; lower --set tlmm.q or tlmm.weight_buffer_depth"
    return ": lower --set tlmm.q or tlmm.weight_buffer_depth"


def memory_blocks(depth: int, width: int, shapes: tuple[tuple[int, int], ...]) -> int:
    """Blocks for a depth x width memory: the best of the block's aspect ratios."""
    return min(math.ceil(width / w) * math.ceil(depth / d) for d, w in shapes)


def lutram_luts(depth: int, width: int) -> int:
    """LUTs for a simple dual-port distributed RAM: RAM32M (4 LUTs, 32 x 6) up to depth 32,
    else RAM64M (4 LUTs, 64 x 3) per 64 words."""
    if depth <= 32:
        return 4 * math.ceil(width / 6)
    return 4 * math.ceil(width / 3) * math.ceil(depth / 64)


def decoder_vectors(model: ModelConfig, config: AcceleratorConfig) -> dict[str, int]:
    """float32 slots the decoder keeps on chip (decoder.h, attention.h, tlmm.h): name -> total length.
    Every per-token vector is held once per token of a prefill block (prefill_block copies), the
    attention accumulators once per query PE; int8 buffers count 4 to a float slot."""
    b, pes = config.prefill_block, config.attention_pes
    max_dim = max(model.hidden_size, model.intermediate_size, model.q_size)
    head_state = model.num_attention_heads * (model.head_dim + 2)  # acc, running max and sum
    return {
        "h, y": b * 2 * model.hidden_size,
        "q, att": b * 2 * model.q_size,
        "k, v": b * 2 * model.kv_size,
        "gate, up": b * 2 * model.intermediate_size,
        "normed": max_dim,
        "attention PEs": pes * head_state,
        "xq (int8)": -(-b * max_dim // 4),
        "TLMM activations (int8)": -(-b * config.max_cycles * config.tlmm.q * config.chunk // 4),
    }


def _bram36(config: AcceleratorConfig, model: ModelConfig | None) -> tuple[int, list[str]]:
    """BRAM36 blocks outside the weight banks, and how they were counted."""
    floats = [config.tile_rows]
    parts = [f"output tile {config.tile_rows} floats"]
    if model is not None:
        vectors = decoder_vectors(model, config)
        floats += list(vectors.values())
        parts.append(f"decoder buffers for a prefill block of {config.prefill_block} "
                     f"({sum(vectors.values()):,} float slots)")
    bundles = DECODER_BUNDLES if model is not None else TLMM_BUNDLES
    parts.append(f"{bundles} AXI adapters")
    return sum(math.ceil(n / FLOATS_PER_BRAM36) for n in floats) + bundles * INTERFACE_BRAM36, parts


def largest_fitting_block(config: AcceleratorConfig, model: ModelConfig, bram_budget: int) -> int:
    """The largest prefill_block (>= attention PEs is not required: PEs shrink with it) whose buffers fit."""
    for block in range(config.prefill_block, 0, -1):
        trial = dataclasses.replace(config, prefill_block=block, attention_pes=min(config.attention_pes, block))
        if _bram36(trial, model)[0] <= bram_budget:
            return block
    return 0


def estimate_fit(design: Design) -> FitEstimate:
    """The estimate for a design on its board, with its model and KV context."""
    config, model, context = design.config, design.model, design.context
    board = design.board
    res = board.resources
    t = config.tlmm
    vector_bits = t.t * INDEX_BITS
    decoder = config.top == "tellme_top"
    needs: list[Need] = []

    # weight banks: Q independent memories of weight_buffer_depth index vectors
    bank = f"{t.q} weight banks of {t.weight_buffer_depth} x {vector_bits} bits"
    uram = bram = 0
    if t.weight_storage == "uram":
        uram = t.q * memory_blocks(t.weight_buffer_depth, vector_bits, (URAM_SHAPE,))
        needs.append(Need("URAM", uram, res.uram, f"{bank} in URAM288 (4096 x 72)", True))
    else:
        bram = t.q * memory_blocks(t.weight_buffer_depth, vector_bits, BRAM36_SHAPES)

    # the rest in block RAM: the engine's output tile, the decoder's block buffers, AXI adapters
    banks_bram = bram
    rest, parts = _bram36(config, model if decoder else None)
    bram += rest
    if t.weight_storage == "bram":
        parts.insert(0, f"{bank} (best BRAM36 shape)")
    needs.append(Need("BRAM36", bram, res.bram36, ", ".join(parts) + ", 1024 floats per BRAM36", True))
    short_of_bram = decoder and bram > res.bram36
    block_hint = largest_fitting_block(config, model, res.bram36 - banks_bram) if short_of_bram else None

    # lookup tables in LUTRAM: Q x T memories of max_cycles words of (entries x 10) bits
    entries = 14 if config.half_table else 27
    width = entries * TABLE_ENTRY_BITS
    luts = t.q * t.t * lutram_luts(config.max_cycles, width)
    needs.append(Need(
        "LUTRAM", luts, res.lutram,
        f"tables: {t.q} x {t.t} memories of {config.max_cycles} x {width} bits (RAM32M 6 bits, RAM64M 3 bits "
        "per 4 LUTs)", False,
    ))

    # DDR: what the accelerator reads and writes, plus the host's float32 tensors
    offsets = design.offsets
    weights = offsets.weight_words * config.axi_width // 8
    params = offsets.param_floats * 4
    kv = model.num_hidden_layers * context * model.kv_size * 2 * 2
    hidden = 2 * context * model.hidden_size * 4
    host = model.vocab_size * model.hidden_size * 4 * (1 if model.tie_word_embeddings else 2)
    needs.append(Need(
        "DDR", weights + params + kv + hidden + host, board.ddr_bytes - board.host_reserved_bytes,
        f"weights image {_bytes(weights)} + params {_bytes(params)} + KV cache {_bytes(kv)} "
        f"({model.num_hidden_layers} layers x {context} positions x {model.num_key_value_heads} x {model.head_dim} "
        f"x K,V x fp16) + hidden "
        f"in/out {_bytes(hidden)} + host embedding/LM head {_bytes(host)}; "
        f"of {_bytes(board.ddr_bytes)} DDR, {_bytes(board.host_reserved_bytes)} kept for Linux", True,
    ))
    return FitEstimate(config.board, res.device, design.name, tuple(needs), block_hint)
