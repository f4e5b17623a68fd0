"""Speed model of a generated design (hls/perf.py v2): modelled, never measured.

It follows the code. `loop_counts` gives, for one call of tellme_top (n tokens at position pos), the
iterations of every pipelined loop by its label (TELLME_COUNT in hls/kernels/*.h); a test runs the
C simulation built with -DTELLME_PROFILE and checks every count. `estimate_speed` turns the same walk
into time:

- Engine: every loop is pipelined at II=1 (the kernels are written for it: rotating partial sums, trees,
  no float recurrence), so a loop takes its iterations plus its pipeline depth each time it is entered
  (LOOP_DEPTH, estimates from Xilinx floating-point operator latencies at 250 MHz).
- Prefetcher: each read loop streams its words at the DDR rate (below) after a first-data latency
  (BURST_LATENCY_CYCLES) each time it is entered.
- Overlap: exactly where the code overlaps: prefetcher and engine are the two processes of a DATAFLOW
  region joined by FIFOs (stripe FIFOs of fifo_depth words, the io FIFO), so the prefetcher runs ahead
  by at most a FIFO's worth. The model is that bounded-buffer pipeline, over the block's schedule cut in
  pieces of a quarter FIFO. Blocks run one after another (the FIFOs drain in between).
- DDR: the weight ports stream in lockstep (one word per stripe per row-step); their rate is
  ports x 16 bytes x PORT_EFFICIENCY (x HPC_PENALTY when HPC ports are in the set), capped by the DDR's
  delivered rate, DDR peak x DDR_EFFICIENCY, shared by all ports and the ARM cores.
- The two-pass LM head's second pass runs after the last block, alone: per candidate two read loops
  (each its first-data latency and words) and a read-modify-write of one output word.
- A whole token (decode_tok_s) adds the host's work per token (HOST_MS_PER_TOKEN) and, with the LM
  head on the host, the ARM cores' float32 head (vocab x hidden x 4 bytes at ARM_HEAD_BYTES_PER_S).

Every constant is named below with its source; recalibrate them from a csynth report (loop latencies)
or a board run (rates) and the estimates follow.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tellme.models.ddr_image import FLOATS_PER_WORD, WORD_BYTES

if TYPE_CHECKING:
    from .design import Design

MODEL_VERSION = "hls/perf.py v2"
# DDR delivered to the PL: 16.0 GB/s measured on a KV260 (four HP ports streaming an LM head at their full
# beat rate; MerlijnW70/bitnet-kv260 docs/measurements.md) of the 19.2 GB/s DDR4-2400 x64 peak.
DDR_EFFICIENCY = 16.0 / 19.2
# Weight ports streaming in lockstep: 12.73 GB/s of the 16.0 GB/s beat rate of four HP ports at 250 MHz,
# measured streaming ternary weights on a KV260 (same source): 79.6 %.
PORT_EFFICIENCY = 12.73 / 16.0
# The same measurement with two of the four engines on HPC0/HPC1: 6.4 % slower.
HPC_PENALTY = 1.0 - 0.064
# First data of a read loop after its first request (AXI + interconnect + DDR), about 0.5 us: assumption.
BURST_LATENCY_CYCLES = 128
# Entering a DATAFLOW region (both processes start, then drain): assumption.
BLOCK_OVERHEAD_CYCLES = 200
# The host per generated token on the board's ARM cores: sampling, the embedding gather, register writes
# and polling (bench_host measures 0.05-0.10 ms on an x86 core; a Cortex-A53 taken as 5x slower).
HOST_MS_PER_TOKEN = 0.5
# The ARM cores streaming a float32 LM head (vocab x hidden x 4 bytes a token): 6.5 GB/s, which gives the
# ~30 ms a token reported for the 0.73B head on a Cortex-A53.
ARM_HEAD_BYTES_PER_S = 6.5e9
# Pipeline depth (cycles from first input to last output) of each loop, paid every time it is entered:
# estimates at 250 MHz (fadd 4-5, fmul 3-4, fdiv and fsqrt ~15, the polynomial exp ~40 cycles).
LOOP_DEPTH = {
    "read_stripes": 2, "read_kv": 2, "read_io": 2, "read_floats": 3, "read_scales": 3,
    # sum_squares: the loop, then the tree of 120 partials (4 shared adders: ~30 issues + 7 levels);
    # normalize: the loop, then a tree of V integer maxima
    "sum_squares": 90, "normalize": 30, "quantize": 12,
    "tlmm_build_table": 6, "tlmm_rows": 30, "write_kv": 4,
    "attention_init": 2, "attention_qk": 35, "attention_scores": 25, "attention_max": 45, "attention_exps": 45,
    "attention_sums": 30, "attention_pv": 15, "attention_out": 18,
    "write_hidden": 4, "head_vector": 3, "lm_head": 25, "residual": 8, "clear_padding": 3, "rescore": 8,
}
# The two-pass head's read-modify-write of a rescored logit's output word: a read's first data, then the
# write's response, before the next candidate's reads (lm_head.h lm_head_rescore): assumption.
RESCORE_WRITE_CYCLES = 2 * BURST_LATENCY_CYCLES
RESIDUAL_II = 2  # decoder.h residual(): each bank of act read twice and written once an iteration
NORM_SCALAR_CYCLES = 35  # between the norm's passes: the variance's divide, sqrt and reciprocal
POSITIONS = (64, 256, 512, 1024)
PROMPTS = (64, 128)


def gearbox_iterations(words: int, lanes: int) -> int:
    """Iterations of decoder.h read_floats for `words` words into lane sets of `lanes` floats."""
    return words + 1 if lanes >= FLOATS_PER_WORD else -(-FLOATS_PER_WORD * words // lanes) + 1


@dataclass
class Piece:
    """A stretch of a block's schedule: what the engine does, and the words it takes from a FIFO."""

    engine: float  # engine cycles
    fifo: str | None = None  # "stripes", "io" or None
    words: float = 0.0  # words per stripe (stripes) or words (io)
    fetch: float = 0.0  # prefetcher cycles to read them


@dataclass
class Schedule:
    """One block's schedule (engine pieces in order) and the loop counts it implies."""

    pieces: list[Piece] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def loop(self, label: str, iterations: int, ii: int = 1) -> int:
        """Count a loop entered once; returns its engine cycles (iterations at its II plus its depth)."""
        self.counts[label] = self.counts.get(label, 0) + iterations
        return iterations * ii + LOOP_DEPTH[label]

    def engine(self, cycles: float) -> None:
        self.pieces.append(Piece(cycles))

    def stream(self, fifo: str, words: float, fetch: float, engine: float) -> None:
        self.pieces.append(Piece(engine, fifo, words, fetch))


class Model:
    """The walk of tellme_top's code for one design (the kernels' loop structure, hls/kernels/*.h)."""

    def __init__(self, design: Design):
        self.design = design
        cfg, lay, m = design.config, design.layout, design.model
        self.cfg, self.lay, self.m = cfg, lay, m
        self.consts = design.constants["model_config"]
        self.v = design.config.elementwise_lanes  # V: the norms' values a cycle
        self.att = design.constants["attention_config"]
        board = design.board
        clock = cfg.clock_mhz * 1e6
        ports = board.ps.hp_ports[: cfg.weight_ports]
        port_bytes = min(WORD_BYTES, board.ps.hp_max_width // 8)  # per port per cycle (a 64-bit HP port: 8)
        lockstep = PORT_EFFICIENCY * (HPC_PENALTY if any("HPC" in p.name for p in ports) else 1.0)
        self.ddr_bytes_per_cycle = board.ddr_peak_bytes_s * DDR_EFFICIENCY / clock
        self.stripe_bytes_per_cycle = min(cfg.weight_ports * port_bytes * lockstep, self.ddr_bytes_per_cycle)
        self.io_bytes_per_cycle = min(port_bytes * PORT_EFFICIENCY, self.ddr_bytes_per_cycle)
        self.capacity = {"stripes": cfg.fifo_depth, "io": self.consts["io_fifo_depth"]}

    # --- prefetcher reads ---
    def stripes_fetch(self, words: float, entered: bool = True) -> float:
        """Cycles for `words` words from every stripe (a read loop entered once, when entered)."""
        return (BURST_LATENCY_CYCLES if entered else 0) + words * self.cfg.weight_ports * WORD_BYTES / \
            self.stripe_bytes_per_cycle

    def io_fetch(self, words: float) -> float:
        return BURST_LATENCY_CYCLES + words * WORD_BYTES / self.io_bytes_per_cycle

    # --- the engine's steps ---
    def read_io(self, s: Schedule, words: int, reads: list[tuple[int, int]]) -> None:
        """One prefetcher io loop of `words`, consumed by engine read_floats loops of (words, lanes)."""
        s.counts["read_io"] = s.counts.get("read_io", 0) + words
        engine = sum(s.loop("read_floats", gearbox_iterations(r, lanes)) for r, lanes in reads)
        s.stream("io", words, self.io_fetch(words), engine)

    def norm(self, s: Schedule, n: int, wpr: int, b: int) -> None:
        cycles = 0
        for _ in range(b):
            steps = -(-n // self.v)
            cycles += s.loop("sum_squares", steps) + NORM_SCALAR_CYCLES + s.loop("normalize", steps)
            cycles += s.loop("quantize", -(-wpr * 25 // (self.v // 3)))
        s.engine(cycles)

    def matrix(self, s: Schedule, rows: int, wpr: int, b: int) -> None:
        cfg = self.cfg
        tp, ports = cfg.tlmm.token_lanes, cfg.weight_ports
        lanes = ports * tp
        tile_steps = cfg.tlmm.tile_words // wpr
        groups = -(-b // tp)
        first_read = True
        for rs0 in range(0, rows, tile_steps):
            steps = min(tile_steps, rows - rs0)
            for g in range(groups):
                active = min(tp, b - g * tp)
                if rs0 == 0 or groups > 1:
                    s.engine(sum(s.loop("tlmm_build_table", wpr * 5) for _ in range(active)))
                engine = s.loop("tlmm_rows", steps * max(wpr, lanes) + lanes)
                if g == 0:
                    words = steps * wpr
                    s.counts["read_stripes"] = s.counts.get("read_stripes", 0) + words
                    s.stream("stripes", words, self.stripes_fetch(words, first_read), engine)
                    first_read = False
                else:
                    s.engine(engine)

    def attention(self, s: Schedule, first: int, b: int) -> None:
        m, lay, cfg = self.m, self.lay, self.cfg
        r, heads = cfg.kv_block, m.num_attention_heads
        rc = lay.kv_row_words
        group = heads // m.num_key_value_heads
        folds = cfg.chunk // cfg.attention_lanes
        q_pad = heads * lay.head_dim_pad
        s.engine(s.loop("attention_init", b * q_pad // cfg.attention_lanes))
        whole, rest = divmod(first, r)
        kv_fetches = ([whole * 2 * r * rc] if whole else []) + ([rest * rc, rest * rc] if rest else [])
        s.counts["read_kv"] = s.counts.get("read_kv", 0) + sum(kv_fetches)
        entered = {0: True}  # latency: once for the whole blocks, once for each part of the partial block
        for kb in range((first + b - 1) // r + 1):
            begin, end = kb * r, kb * r + r
            cached = max(0, min(first, end) - begin)
            for i in range(b):
                pos = first + i
                if kb > pos // r:
                    continue
                own = max(0, min(pos + 1, end) - max(first, begin))
                rows = cached + own
                per_row = rc * group * folds
                qk = s.loop("attention_qk", rows * per_row)
                middle = (s.loop("attention_scores", rows * heads, self.att["score_ii"])
                          + s.loop("attention_max", heads) + s.loop("attention_exps", rows * heads)
                          + s.loop("attention_sums", heads, self.att["sum_ii"]))
                pv = s.loop("attention_pv", rows * per_row)
                if i == 0 and cached:
                    partial = cached < r
                    for engine in (qk, pv):
                        key = ("partial", engine is pv) if partial else 0
                        latency = entered.pop(key, partial)
                        s.stream("stripes", cached * rc, self.stripes_fetch(cached * rc, latency), engine)
                        if engine is qk:
                            s.engine(middle)
                else:
                    s.engine(qk + middle + pv)
        s.engine(sum(s.loop("attention_out", heads * m.head_dim) for _ in range(b)))

    def block(self, first: int, b: int, head: bool) -> Schedule:
        """The schedule of one block of b tokens at positions first .. first+b-1."""
        s = Schedule()
        c, m, cfg, lay = self.consts, self.m, self.cfg, self.lay
        f = FLOATS_PER_WORD
        v = self.v
        self.read_io(s, b * lay.hidden_pad // f, [(lay.hidden_pad // f, v)] * b)
        self.read_io(s, b * lay.rope_half_pad // f, [(lay.rope_half_pad // f, f)] * b)
        self.read_io(s, b * lay.rope_half_pad // f, [(lay.rope_half_pad // f, f)] * b)
        pad = lay.head_dim_pad - m.head_dim
        if pad:
            s.engine(s.loop("clear_padding", b * m.num_attention_heads * pad))
        mats = {mx.name: mx for mx in lay.matrices}
        for _ in range(m.num_hidden_layers):
            reads = [(lay.hidden_pad // f, v), (lay.hidden_pad // f, v), (c["q_size_pad"] // f, v),
                     (c["intermediate_pad"] // f, v)]
            self.read_io(s, c["p_layer_stride"] // f, reads)
            s.engine(s.loop("read_scales", 2))
            for name, n in (("qkv", m.hidden_size), ("o", m.q_size), ("gateup", m.hidden_size),
                            ("down", m.intermediate_size)):
                mx = mats[name]
                self.norm(s, n, mx.wpr, b)
                self.matrix(s, mx.rows_per_stripe, mx.wpr, b)
                if name == "qkv":
                    s.engine(sum(s.loop("write_kv", lay.kv_row_words) for _ in range(b * 2 * cfg.weight_ports)))
                    self.attention(s, first, b)
                if name in ("o", "down"):  # RESIDUAL: two reads and a write a bank, at II=2
                    s.engine(s.loop("residual", b * -(-m.hidden_size // self.v), RESIDUAL_II))
        self.read_io(s, lay.hidden_pad // f, [(lay.hidden_pad // f, v)])
        self.norm(s, m.hidden_size, c["final_wpr"], b)
        if not cfg.head_on_pl:
            s.engine(sum(s.loop("write_hidden", lay.hidden_pad // f) for _ in range(b)))
        elif head:
            s.engine(s.loop("head_vector", c["head_values"]))
            words = lay.head_rows_per_stripe * lay.head_row_words
            s.counts["read_stripes"] = s.counts.get("read_stripes", 0) + words
            engine = s.loop("lm_head", lay.head_rows_per_stripe * max(lay.head_row_words, cfg.weight_ports)
                            + cfg.weight_ports)
            s.stream("stripes", words, self.stripes_fetch(words), engine)
        return s

    def blocks(self, n: int, pos: int) -> list[tuple[int, int, bool]]:
        size = self.cfg.prefill_block
        return [(pos + t0, min(size, n - t0), t0 + size >= n) for t0 in range(0, n, size)]

    def cycles(self, schedule: Schedule) -> float:
        """The bounded-buffer pipeline of prefetcher and engine over the block's pieces."""
        fetch_done = engine_done = 0.0
        history: dict[str, tuple[list[float], list[float]]] = {"stripes": ([], []), "io": ([], [])}
        consumed = {"stripes": 0.0, "io": 0.0}
        for piece in self._pieces(schedule):
            if piece.fifo is None:
                engine_done += piece.engine
                continue
            ends, times = history[piece.fifo]
            end = consumed[piece.fifo] + piece.words
            # room in the FIFO: the engine has taken everything but the last `capacity` words
            need = end - self.capacity[piece.fifo]
            room = times[bisect.bisect_left(ends, need)] if need > 0 and ends and ends[-1] >= need else 0.0
            fetch_done = max(fetch_done, room) + piece.fetch
            engine_done = max(engine_done + piece.engine, fetch_done)
            consumed[piece.fifo] = end
            ends.append(end)
            times.append(engine_done)
        return engine_done + BLOCK_OVERHEAD_CYCLES

    def _pieces(self, schedule: Schedule):
        """Pieces with data cut to a quarter of their FIFO, so the pipeline is followed closely."""
        for piece in schedule.pieces:
            if piece.fifo is None or piece.words <= self.capacity[piece.fifo] / 4:
                yield piece
                continue
            parts = math.ceil(piece.words / (self.capacity[piece.fifo] / 4))
            for _ in range(parts):
                yield Piece(piece.engine / parts, piece.fifo, piece.words / parts, piece.fetch / parts)

    def rescore(self, counts: dict[str, int] | None = None) -> float:
        """The two-pass head's second pass after the last block (lm_head_rescore): per candidate, two loops
        reading its high words (and divisor) and its low words from every stripe in lockstep, then its
        output word rewritten. Nothing overlaps it."""
        if not (self.cfg.head_on_pl and self.cfg.head_twopass):
            return 0.0
        lay, k = self.lay, self.cfg.head_candidates
        high, low = lay.head_row_words, lay.head_low_row_words
        if counts is not None:
            counts["rescore"] = counts.get("rescore", 0) + k * (high + low)
        loops = sum(max(self.stripes_fetch(words), words) + LOOP_DEPTH["rescore"] for words in (high, low))
        return k * (loops + RESCORE_WRITE_CYCLES)

    def call_cycles(self, n: int, pos: int) -> float:
        blocks = sum(self.cycles(self.block(first, b, head)) for first, b, head in self.blocks(n, pos))
        return blocks + self.rescore()


def loop_counts(design: Design, n: int, pos: int) -> dict[str, int]:
    """Iterations of every pipelined loop in one call of tellme_top (n tokens at position pos): what the
    C simulation built with -DTELLME_PROFILE counts."""
    model = Model(design)
    counts: dict[str, int] = {}
    for first, b, head in model.blocks(n, pos):
        for label, value in model.block(first, b, head).counts.items():
            counts[label] = counts.get(label, 0) + value
    model.rescore(counts)
    return {k: v for k, v in counts.items() if v}


@dataclass(frozen=True)
class SpeedEstimate:
    """Modelled speed of one design (see the module docstring); every figure an estimate."""

    clock_mhz: float
    decode_tok_s: dict[str, float]  # a whole token at KV length p: accelerator, LM head, host
    decode_ms_accelerator: dict[str, float]
    prefill_tok_s: dict[str, float]
    ttft_s: dict[str, float]
    bytes_per_token: dict[str, int]
    bound_tok_s: dict[str, float]  # DDR peak / bytes per token: no design can beat it
    bottleneck: str
    model: str = MODEL_VERSION

    def describe(self) -> str:
        decode = ", ".join(f"{v:.1f} tok/s at {k}" for k, v in self.decode_tok_s.items())
        prefill = ", ".join(f"{k} tokens {v:.0f} tok/s (TTFT {self.ttft_s[k]:.2f} s)"
                            for k, v in self.prefill_tok_s.items())
        return (f"speed estimate (modelled, {self.model}, {self.clock_mhz:g} MHz): decode {decode}; prefill "
                f"{prefill}; {self.bottleneck}")

    def to_dict(self) -> dict:
        return {"decode_tok_s": self.decode_tok_s, "decode_ms_accelerator": self.decode_ms_accelerator,
                "prefill_tok_s": self.prefill_tok_s, "ttft_s": self.ttft_s,
                "bytes_per_token": self.bytes_per_token, "bound_tok_s": self.bound_tok_s,
                "bottleneck": self.bottleneck, "model": self.model}


def host_ms(design: Design) -> float:
    """Host work per token on the board, with the float32 head when the design leaves the head to the host."""
    m = design.model
    head = 0.0 if design.config.head_on_pl else m.vocab_size * m.hidden_size * 4 / ARM_HEAD_BYTES_PER_S * 1e3
    return HOST_MS_PER_TOKEN + head


def rescore_bytes(design: Design) -> int:
    """What the two-pass head's second pass reads a token: every stripe's words at each candidate's rows."""
    cfg, lay = design.config, design.layout
    if not (cfg.head_on_pl and cfg.head_twopass):
        return 0
    return cfg.head_candidates * lay.ports * (lay.head_row_words + lay.head_low_row_words) * WORD_BYTES


def estimate_speed(design: Design) -> SpeedEstimate:
    model = Model(design)
    clock = design.config.clock_mhz * 1e6
    lay = design.layout
    positions = [p for p in POSITIONS if p < design.context]
    extra_ms = host_ms(design)
    decode_ms = {str(p): model.call_cycles(1, p) / clock * 1e3 for p in positions}
    decode = {k: round(1e3 / (v + extra_ms), 2) for k, v in decode_ms.items()}
    prefill, ttft = {}, {}
    for n in PROMPTS:
        if n <= design.context:
            seconds = model.call_cycles(n, 0) / clock
            prefill[str(n)] = round(n / seconds, 1)
            ttft[str(n)] = round(seconds + extra_ms / 1e3, 4)
    per_token = lay.bytes_per_token(256)
    head = per_token["lm_head"] + rescore_bytes(design) if design.config.head_on_pl else \
        design.model.vocab_size * design.model.hidden_size * 4
    kv_per_position = lay.ports * design.model.num_hidden_layers * 2 * lay.kv_row_words * WORD_BYTES
    peak = design.board.ddr_peak_bytes_s
    bound = {str(p): round(peak / (per_token["weights"] + head + p * kv_per_position), 2)
             for p in (256,) if p <= design.context}
    stripe_share = model.stripe_bytes_per_cycle / model.ddr_bytes_per_cycle
    limit = "the DDR" if stripe_share >= 0.999 else f"the {design.config.weight_ports} weight ports"
    bottleneck = (f"decode streams {per_token['weights'] / 1e6:.1f} MB of weights and {head / 1e6:.1f} MB of LM head "
                  f"a token, bounded by {limit} ({model.stripe_bytes_per_cycle * clock / 1e9:.1f} GB/s modelled)")
    return SpeedEstimate(
        clock_mhz=design.config.clock_mhz, decode_tok_s=decode,
        decode_ms_accelerator={k: round(v, 3) for k, v in decode_ms.items()}, prefill_tok_s=prefill, ttft_s=ttft,
        bytes_per_token={"weights": per_token["weights"], "lm_head": head, "kv_per_position": kv_per_position},
        bound_tok_s=bound, bottleneck=bottleneck,
    )
