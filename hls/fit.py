"""Will a design fit its board? A per-unit estimate of LUT, FF, DSP, BRAM36 and URAM, and of the memory
the board must give it: the contiguous memory (CMA) pynq allocates every PL buffer from, the largest
single buffer, and the host's RAM. Modelled, never measured: every constant below says where it comes
from, and a csynth report (tellme estimate --design DIR) shows how far off it is.

Units follow the code (hls/kernels/*.h):
- on-chip arrays (`ARRAYS`): every engine buffer, with the banks its ARRAY_PARTITION pragma makes and the
  memory its BIND_STORAGE pragma (or Vitis HLS's default) gives each bank;
- the TLMM engine: P x TP x 25 table lookups a cycle (a 27-to-1 multiplexer of 10-bit entries each), their
  adder trees and accumulators, and the table builder;
- floating-point operators, counted per pipelined loop as the code unrolls them (`fp_operators`): each
  loop's operators are their own hardware, since a pipelined loop at II=1 cannot share them;
- the int8 LM head: P x 16 multiply-accumulates a cycle, two per DSP; the two-pass head P x 32 nibble
  products a cycle, its candidate list (K compare-and-shift slots) and its second pass (two loops of 32
  products, its own divide);
- AXI masters (adapter logic and burst buffers), the stream FIFOs, control, and the block design's
  interconnect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tellme.models.errors import UserError

from .top_args import READ_BURST, READ_OUTSTANDING

if TYPE_CHECKING:
    from .design import Design

MB = 1 << 20
GB = 1 << 30
RESOURCES = ("LUT", "FF", "DSP", "BRAM36", "URAM")

# --- memories (UG573 for UltraScale+ BRAM/URAM, UG474 for 7-series; UG1399 for HLS's mapping) ---
URAM_SHAPE = (4096, 72)  # URAM288: depth x width, one shape
BRAM36_SHAPES = ((512, 72), (1024, 36), (2048, 18), (4096, 9), (8192, 4), (16384, 2), (32768, 1))
BRAM18_SHAPES = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))
# Vitis HLS leaves small arrays in LUTRAM or registers rather than block RAM: below this many bits a bank
# is counted as LUTRAM (assumption from csynth reports of small arrays; recalibrate from a report).
LUTRAM_BELOW_BITS = 1024

# --- floating-point operators: (LUT, FF, DSP) of one fp32 operator pipelined at 250 MHz, Vitis HLS's
# default implementations on UltraScale+ (fmul/fadd "fulldsp"; DESIGN note: a multiply ~3 DSPs, an add
# ~2); typical of csynth utilization tables, not measured here. A csynth report recalibrates them.
FP_COST = {
    "fmul": (80, 150, 3),
    "fadd": (220, 350, 2),
    "fadd_fabric": (450, 600, 0),  # config_op fadd -impl fabric (float_adders=fabric)
    "fdiv": (800, 1400, 0),
    "fsqrt": (500, 900, 0),
    "fcmp": (70, 30, 0),
    "int_compare": (20, 32, 0),  # 32-bit compare and select (the norms' maxima on float bit patterns)
    "int_to_float": (250, 350, 0),
    "float_to_int": (250, 300, 0),  # rint / clamp to int8
    "half_to_float": (40, 40, 0),
    "float_to_half": (150, 120, 0),
}
EXP_POLY = {"fmul": 7, "fadd": 7, "float_to_int": 1}  # common.h exp_poly: x*log2e, floor, six multiply-adds

# --- the TLMM engine (tlmm.h) ---
TABLE_ENTRY_BITS = 10  # entry_t: |sum of three int8| <= 384
# LUTs per entry bit of one lookup: a 27-to-1 multiplexer (two 16-to-1, 4 LUT6 + MUXF7/F8 each, and a
# 2-to-1), or a 14-to-1 one and the negation of the half table (UG574 slice structure)
LOOKUP_LUTS_PER_BIT = {"full": 9, "half": 5}
HALF_INDEX_LUTS = 3  # |idx - 13| and the sign from a 5-bit index
PART_BITS = 15  # part_t: 25 entries summed
ACC_BITS = 32
TABLE_BUILD_LUTS_PER_ENTRY = 20  # two 10-bit additions of signed activations per entry, 27 per group
# --- the int8 LM head (lm_head.h): DSP48E2 packs two int8 x int8 products sharing an operand (UG579) ---
INT8_MACS_PER_DSP = 2
# the two-pass head's candidate slot: a 32-bit key compare, a 3-way select of key and row (64 bits)
CANDIDATE_SLOT = (20 + 64, 64)  # LUT, FF
# --- interfaces, streams and glue (assumptions from Vitis HLS m_axi adapters at 128 bits) ---
AXI_ADAPTER = (1500, 2500)  # LUT, FF per m_axi bundle
FIFO_LOGIC = (60, 80)  # LUT, FF per stream FIFO (pointers, flags) besides its memory
CONTROL = (4000, 5000)  # s_axilite, DATAFLOW handshakes, loop counters and FSMs of both processes
BD_PER_PORT = (800, 1200)  # block design: an interconnect/protocol converter per HP port (build_bd.tcl)
LUT_WARN_FRACTION = 0.85  # above this, placement and routing at 250 MHz get hard (TeLLMe closes at 84 %)
# --- host and memory ---
TOKENIZER_BYTES_PER_TOKEN = 200  # the tokenizers library's vocabulary and merges in RAM: assumption


@dataclass(frozen=True)
class Memory:
    """One on-chip array as the code declares and partitions it."""

    name: str
    banks: int
    depth: int  # words per bank
    width: int  # bits per word
    storage: str  # uram | bram | lutram | auto (HLS's choice: LUTRAM when small, else BRAM)

    def blocks(self) -> dict[str, float]:
        """BRAM36 (BRAM18 halves count 0.5), URAM and LUTRAM LUTs of all banks."""
        bits = self.depth * self.width
        kind = self.storage
        if kind == "auto":
            kind = "lutram" if bits < LUTRAM_BELOW_BITS else "bram"
        if kind == "uram":
            return {"URAM": self.banks * memory_blocks(self.depth, self.width, (URAM_SHAPE,))}
        if kind == "lutram":
            return {"LUTRAM": self.banks * lutram_luts(self.depth, self.width)}
        return {"BRAM36": self.banks * bram36(self.depth, self.width)}


@dataclass(frozen=True)
class Unit:
    """Logic of one part of the design."""

    name: str
    lut: float = 0
    ff: float = 0
    dsp: float = 0
    note: str = ""


@dataclass(frozen=True)
class Check:
    """One budget: what the design needs, what the board has."""

    name: str
    need: float
    have: float
    unit: str = ""  # "bytes" for memory

    @property
    def fits(self) -> bool:
        return self.need <= self.have

    def text(self) -> str:
        if self.unit == "bytes":
            return f"{_bytes(self.need)} of {_bytes(self.have)}"
        return f"{self.need:,.0f} of {self.have:,.0f}"


@dataclass(frozen=True)
class FitEstimate:
    """The modelled fit of one design (see the module docstring)."""

    board: str
    device: str
    model_name: str
    resources: tuple[Check, ...]  # LUT, FF, DSP, BRAM36, URAM, then LUTRAM
    memory: tuple[Check, ...]  # cma, largest_buffer, host_ram
    units: tuple[Unit, ...]
    memories: tuple[Memory, ...]
    advice: str = ""  # what makes it fit, when it does not

    @property
    def fits(self) -> bool:
        return all(c.fits for c in self.resources + self.memory)

    @property
    def short(self) -> list[Check]:
        return [c for c in self.resources + self.memory if not c.fits]

    @property
    def warnings(self) -> list[str]:
        lut = self.resources[0]
        if lut.fits and lut.need > LUT_WARN_FRACTION * lut.have:
            return [f"LUT estimate {lut.need / lut.have:.0%} of the device: routing at this clock may fail"]
        return []

    def describe(self) -> str:
        lines = [f"fit estimate (modelled, hls/fit.py) for {self.model_name} on {self.board} ({self.device}):"]
        for c in self.resources + self.memory:
            share = f"{c.need / c.have:5.0%}" if c.have else "  n/a"
            lines.append(f"  {c.name:<15} {c.text():>26} {share}  {'ok' if c.fits else 'DOES NOT FIT'}")
        return "\n".join(lines)

    def check(self) -> None:
        """UserError, one line with the figures and the advice, when anything is short."""
        if self.short:
            figures = "; ".join(f"{c.name} {c.text()}" for c in self.short)
            raise UserError(f"does not fit: {self.model_name} on {self.board} ({self.device}), estimate "
                            f"{figures}{': ' + self.advice if self.advice else ''}")

    def resources_dict(self) -> dict[str, list[float]]:
        return {c.name: [round(c.need, 1), c.have] for c in self.resources if c.name in RESOURCES}

    def memory_dict(self) -> dict[str, list[int]]:
        return {c.name: [int(c.need), int(c.have)] for c in self.memory}

    def to_dict(self) -> dict:
        return {"fits": self.fits, "resources": self.resources_dict(), "memory": self.memory_dict(),
                "lutram": [round(self.resources[-1].need), self.resources[-1].have], "advice": self.advice,
                "units": {u.name: {"LUT": round(u.lut), "FF": round(u.ff), "DSP": round(u.dsp)} for u in self.units},
                "memories": {m.name: {"banks": m.banks, "depth": m.depth, "width": m.width, "storage": m.storage,
                                      **{k: round(v, 1) for k, v in m.blocks().items()}} for m in self.memories},
                "model": "hls/fit.py v2"}


def _bytes(value: float) -> str:
    return f"{value / GB:.2f} GB" if value >= GB else f"{value / MB:.1f} MB"


def memory_blocks(depth: int, width: int, shapes: tuple[tuple[int, int], ...]) -> int:
    """Blocks for a depth x width memory: the best of the block's aspect ratios."""
    return min(math.ceil(width / w) * math.ceil(depth / d) for d, w in shapes)


def bram36(depth: int, width: int) -> float:
    """BRAM36 for one memory, a BRAM18 counting half when that is all it needs."""
    return min(float(memory_blocks(depth, width, BRAM36_SHAPES)), memory_blocks(depth, width, BRAM18_SHAPES) / 2)


def lutram_luts(depth: int, width: int) -> int:
    """LUTs of a simple dual-port distributed RAM: RAM32M (4 LUTs, 32 x 6) up to depth 32, else RAM64M
    (4 LUTs, 64 x 3) per 64 words (UG574)."""
    if depth <= 32:
        return 4 * math.ceil(width / 6)
    return 4 * math.ceil(width / 3) * math.ceil(depth / 64)


def memories(design: Design) -> list[Memory]:
    """Every on-chip array of the engine and the streams (decoder.h engine(), attention.h attend_block,
    decoder_block's FIFOs), banked as their pragmas say."""
    c = design.constants
    t, a, m = c["tlmm_config"], c["attention_config"], c["model_config"]
    cfg = design.config
    b, lanes, chunk, ports = t["max_block"], a["lanes"], a["chunk"], t["ports"]
    v = c["elementwise_config"]["lanes"]
    q_pad = a["heads"] * a["head_dim_pad"]
    kv_pad = a["kv_heads"] * a["head_dim_pad"]
    row_chunks = kv_pad // chunk
    parts = (a["head_dim_pad"] // chunk) * (chunk // lanes)
    max_groups = t["max_wpr"] * 25
    big = cfg.storage  # uram on Zynq UltraScale+, bram on Zynq-7000 (config.h's storage macros)
    return [
        Memory("act", v, b * m["act_dim"] // v, 32, big),
        Memory("q", lanes, -(-b * q_pad // lanes), 32, "auto"),
        Memory("kcur", chunk, -(-b * kv_pad // chunk), 16, "lutram"),
        Memory("vcur", chunk, -(-b * kv_pad // chunk), 16, "lutram"),
        Memory("rope_cos", 4, b * m["rope_half_pad"] // 4, 32, "auto"),
        Memory("rope_sin", 4, b * m["rope_half_pad"] // 4, 32, "auto"),
        Memory("normw", v, -(-m["norm_total"] // v), 32, "auto"),
        Memory("y", v, -(-m["norm_dim"] // v), 32, "auto"),
        Memory("xq", 15, -(-b * max_groups // 5), 8, "auto"),
        Memory("xh", m["head_lanes"], m["head_values"] // m["head_lanes"], 8, "auto"),
        # the two-pass head's candidate rows (decoder_top; unused, and removed, with the whole-row head)
        Memory("candidates", m["head_candidates"] if m["head_twopass"] else 0, 1, 32, "auto"),
        Memory("table", t["token_lanes"] * 25, t["max_wpr"], (14 if t["half_table"] else 27) * TABLE_ENTRY_BITS,
               "lutram"),
        Memory("tile", ports, t["tile_words"], 128, big),
        Memory("kvbuf", ports, 2 * a["kv_block"] * row_chunks, 128, "bram"),
        Memory("att_acc", lanes, -(-b * q_pad // lanes), 32, "auto"),
        Memory("att_m", 1, b * a["heads"], 32, "auto"),
        Memory("att_l", 1, b * a["heads"], 32, "auto"),
        Memory("psum", parts, a["kv_block"] * a["heads"], 32, "auto"),
        Memory("stripe FIFOs", ports, m["stripe_fifo_depth"], 128, big),
        Memory("io FIFO", 1, m["io_fifo_depth"], 128, big),
        Memory("m_axi read buffers", ports + 1, READ_OUTSTANDING * READ_BURST, 128, "bram"),
    ]


def fp_operators(design: Design) -> dict[str, dict[str, int]]:
    """Floating-point operators per unit, as the pipelined loops unroll them."""
    c = design.constants
    a = c["attention_config"]
    v, lanes, chunk, r = c["elementwise_config"]["lanes"], a["lanes"], a["chunk"], a["kv_block"]
    tree = math.ceil(math.log2(v * c["elementwise_config"]["partials"]))  # unpipelined: one adder a level

    def plus(*ops: dict[str, int]) -> dict[str, int]:
        out: dict[str, int] = {}
        for op in ops:
            for k, n in op.items():
                out[k] = out.get(k, 0) + n
        return out

    silu = design.model.hidden_act == "silu"
    return {
        # sum_of_squares, normalize (w * (x * inv), the peak on bit patterns), quantize (y * s, rint, clamp),
        # the scalars
        "element-wise": {"fmul": v + 2 * v + v, "fadd": v + tree, "fcmp": 2 * v, "int_compare": 2 * v - 1,
                         "float_to_int": v, "fdiv": 3, "fsqrt": 1},
        # TLMM dequantisation and the step tails (step_sink): y = acc / (s_x * s_w), RoPE, gate x up, residual
        "dequantise": plus({"int_to_float": 1, "fmul": 1 + 4 + 1 + (0 if silu else 1), "fadd": 2 + 1,
                            "fdiv": 1 + (1 if silu else 0), "float_to_half": 3},
                           EXP_POLY if silu else {}),
        # QK (A products, a tree), PV (A weights x values, A rescales, A sums), the K/V conversions,
        # SCORES (a tree of partial dot products, the scale), BLOCK_MAX and EXPS (exp_poly each),
        # ROW_SUMS (a tree of R, the rescale), ATTENTION_OUT (acc / l)
        "attention": plus({"fmul": lanes + 2 * lanes + 1 + 1,
                           "fadd": (lanes - 1) + lanes + a["score_adders"] + a["sum_adders"] + 2,
                           "half_to_float": 2 * chunk, "fcmp": r, "fdiv": 1},
                          EXP_POLY, EXP_POLY),
        "LM head": {"int_to_float": 1, "fmul": 1, "fdiv": 1} if design.config.head_on_pl else {},
        # the two-pass head's second pass: the rescored logit acc / (s_x * s_h)
        "LM head rescore": {"int_to_float": 1, "fmul": 1, "fdiv": 1} if design.config.head_twopass else {},
    }


def units(design: Design) -> list[Unit]:
    c = design.constants
    t = c["tlmm_config"]
    ports, tp = t["ports"], t["token_lanes"]
    lookups = ports * tp * 25
    table = design.config.tlmm.table
    entries = 27 if table == "full" else 14
    index = ports * 25 * HALF_INDEX_LUTS if table == "half" else 0  # shared by the token lanes
    out = [
        Unit("TLMM lookups", lut=lookups * LOOKUP_LUTS_PER_BIT[table] * TABLE_ENTRY_BITS + index
             + ports * tp * (24 * (PART_BITS - 2) + ACC_BITS),
             ff=lookups * TABLE_ENTRY_BITS + ports * tp * (PART_BITS * 12 + 2 * ACC_BITS),
             note=f"{lookups} lookups a cycle (P={ports} x TP={tp} x 25, {table} table)"),
        Unit("TLMM table build", lut=5 * entries * TABLE_BUILD_LUTS_PER_ENTRY, ff=5 * entries * TABLE_ENTRY_BITS,
             note=f"5 groups x {entries} entries a cycle"),
    ]
    for name, ops in fp_operators(design).items():
        if design.config.float_adders == "fabric":
            ops = {("fadd_fabric" if k == "fadd" else k): n for k, n in ops.items()}
        lut = sum(FP_COST[k][0] * n for k, n in ops.items())
        ff = sum(FP_COST[k][1] * n for k, n in ops.items())
        dsp = sum(FP_COST[k][2] * n for k, n in ops.items())
        if name == "LM head" and design.config.head_on_pl:
            lanes = c["model_config"]["head_lanes"]  # products a port a cycle: 16 int8 or 32 nibbles
            dsp += ports * lanes / INT8_MACS_PER_DSP
            lut += ports * (lanes - 1) * 18  # the adder tree of a port's products
            ff += ports * lanes * 18
            if design.config.head_twopass:
                k = design.config.head_candidates
                lut += k * CANDIDATE_SLOT[0]
                ff += k * CANDIDATE_SLOT[1]
        if name == "LM head rescore" and ops:  # two loops of 32 products (high nibbles, low nibbles)
            dsp += 2 * 32 / INT8_MACS_PER_DSP
            lut += 2 * (31 * 18 + 128 * (ports - 1))  # adder trees; the stripe selects
            ff += 2 * 32 * 18
        out.append(Unit(name, lut, ff, dsp, ", ".join(f"{n} {k}" for k, n in ops.items())))
    bundles = ports + 1
    fifos = ports + 1
    out += [
        Unit("AXI masters", lut=bundles * AXI_ADAPTER[0], ff=bundles * AXI_ADAPTER[1], note=f"{bundles} bundles"),
        Unit("FIFOs and control", lut=fifos * FIFO_LOGIC[0] + CONTROL[0], ff=fifos * FIFO_LOGIC[1] + CONTROL[1]),
        Unit("block design", lut=ports * BD_PER_PORT[0], ff=ports * BD_PER_PORT[1],
             note="interconnect per HP port, outside the HLS IP"),
    ]
    return out


def memory_needs(design: Design) -> list[Check]:
    """CMA (every PL buffer), the largest one, and what the host keeps in RAM."""
    board, m = design.board, design.model
    sizes = [b.nbytes for b in design.top_args.buffers]
    host_tables = m.vocab_size * (m.hidden_size + 4)  # the int8 embedding table and its divisors
    if not design.config.head_on_pl:
        host_tables += m.vocab_size * m.hidden_size * 4  # the float32 LM head the host multiplies with
    host = host_tables + m.vocab_size * TOKENIZER_BYTES_PER_TOKEN + 2 * design.context * m.hidden_size * 4
    host_have = board.ddr_bytes - board.cma_bytes - board.host_reserved_bytes
    return [Check("cma", sum(sizes), board.cma_bytes, "bytes"),
            Check("largest_buffer", max(sizes), board.cma_bytes, "bytes"),
            Check("host_ram", host, host_have, "bytes")]


def estimate_fit(design: Design, advise: bool = True) -> FitEstimate:
    """The estimate for a design on its board; `advise` searches the overrides that would make it fit."""
    res = design.board.resources
    mems = memories(design)
    logic = units(design)
    blocks: dict[str, float] = {"BRAM36": 0.0, "URAM": 0.0, "LUTRAM": 0.0}
    for mem in mems:
        for k, n in mem.blocks().items():
            blocks[k] += n
    lut = sum(u.lut for u in logic) + blocks["LUTRAM"]
    ff = sum(u.ff for u in logic)
    dsp = sum(u.dsp for u in logic)
    resources = (Check("LUT", lut, res.lut), Check("FF", ff, res.ff), Check("DSP", dsp, res.dsp),
                 Check("BRAM36", blocks["BRAM36"], res.bram36), Check("URAM", blocks["URAM"], res.uram),
                 Check("LUTRAM", blocks["LUTRAM"], res.lutram))
    estimate = FitEstimate(design.config.board, res.device, design.name, resources,
                           tuple(memory_needs(design)), tuple(logic), tuple(mems))
    if advise and not estimate.fits:
        from dataclasses import replace

        estimate = replace(estimate, advice=advice(design, estimate))
    return estimate


def advice(design: Design, estimate: FitEstimate) -> str:
    """The first change, in order of least cost to speed, that makes the design fit (the parameters the
    user did not set are sized again around it)."""
    from .design import Design as DesignClass
    from .design import sized_config

    short = {c.name for c in estimate.short}
    cfg = design.config
    memory = bool(short & {"host_ram", "cma", "largest_buffer"})
    if memory:
        tries = [f"max_context={n}" for n in (1024, 512, 256, 128) if n < design.context]
    else:
        tries = [f"prefill_block={b}" for b in (8, 4, 2, 1) if b < cfg.prefill_block]
        tries += [f"tlmm.token_lanes={n}" for n in range(cfg.tlmm.token_lanes - 1, 0, -1)]
        tries += [f"attention_lanes={n}" for n in range(cfg.attention_lanes - 1, 0, -1) if cfg.chunk % n == 0]
        tries += ["lm_head=pl-int8"] if cfg.head_twopass else []  # the smaller head, at twice the head's bytes
        tries += [f"fifo_depth={n}" for n in (2048, 1024, 512) if n < cfg.fifo_depth]
        tries += [f"tlmm.tile_words={n}" for n in (4096, 2048, 1024) if n < cfg.tlmm.tile_words]
        tries += ["elementwise_lanes=3"] if cfg.elementwise_lanes > 3 else []
        tries += ["float_adders=fabric"] if cfg.float_adders == "dsp" else []
    for change in tries:
        try:
            config = sized_config(cfg.board, design.model, [*design.overrides, change])
            if estimate_fit(DesignClass(design.name, config, design.model), advise=False).fits:
                return f"--set {change}"
        except UserError:
            continue
    if memory:
        return (f"use a smaller model, or a board with more memory (the PL's buffers come from the CMA: "
                f"{_bytes(design.board.cma_bytes)} on {cfg.board} as booted; a larger cma= boot argument "
                "gives more)")
    return "use a smaller model or a larger device"
